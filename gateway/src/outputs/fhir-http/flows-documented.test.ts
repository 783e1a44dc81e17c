/**
 * Every ${VAR} of the shipped FHIR and ICU-vitals flows is in its README table (README.md
 * `fhir-flow-vars` / `vitals-flow-vars` sections), so a site can set up either flow from the README.
 * A name counts as documented when it appears in backquotes or is covered by a `PREFIX_*` entry.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';

const ROOT = join(__dirname, '../../../..');
const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');

function section(marker: string): string {
  const start = readme.indexOf(`<!-- ${marker} -->`);
  const end = readme.indexOf(`<!-- /${marker} -->`);
  expect(start, `README.md has <!-- ${marker} -->`).toBeGreaterThan(-1);
  expect(end).toBeGreaterThan(start);
  return readme.slice(start, end);
}

function undocumented(flowFile: string, text: string): string[] {
  const flow = readFileSync(join(ROOT, flowFile), 'utf8');
  const vars = [...new Set([...flow.matchAll(/\$\{([A-Z0-9_]+)/g)].map((m) => m[1]))];
  const names = new Set([...text.matchAll(/`([A-Z0-9_]+)(\*?)`/g)].map((m) => m[1] + m[2]));
  const wildcards = [...text.matchAll(/`([A-Z0-9_]+_)\*`/g)].map((m) => m[1]);
  expect(vars.length).toBeGreaterThan(10);
  return vars.filter((v) => !names.has(v) && !wildcards.some((w) => v.startsWith(w))).sort();
}

describe('README documents every variable of the shipped flows', () => {
  it.each([
    ['flows/lab-fhir.json', 'fhir-flow-vars'],
    ['flows/icu-vitals.json', 'vitals-flow-vars'],
  ])('%s', (flow, marker) => {
    expect(undocumented(flow, section(marker))).toEqual([]);
  });
});
