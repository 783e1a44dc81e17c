/**
 * Golden results cases as data (issue 8 §8): `results-cases/<name>/{input.astm, case.json,
 * expected-observations.json}`. Each input (records one per line, CR or LF) is decoded with the named
 * shipped profile's `encoding`, parsed with parseRecords + parseAstmMessage, and compared with
 * `{ drafts, withheld }` in expected-observations.json. `GOLDEN_UPDATE=1` writes the file instead
 * (commit only files read and checked by hand).
 */
import { existsSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadProfiles } from './profile';
import { parseRecords } from './records';
import { parseAstmMessage } from './results-parser';

const root = join(__dirname, 'results-cases');
const profiles = loadProfiles(join(__dirname, '../../firmware-config/profiles/astm'));
const update = process.env.GOLDEN_UPDATE === '1';

/** Shared subject/order/equipment objects become plain copies: JSON is what an output sees. */
const plain = (v: unknown): unknown => JSON.parse(JSON.stringify(v));

describe('ASTM results cases', () => {
  const names = readdirSync(root, { withFileTypes: true })
    .filter((e) => e.isDirectory())
    .map((e) => e.name)
    .sort();
  it('has cases', () => expect(names.length).toBeGreaterThan(10));
  for (const name of names) {
    it(name, () => {
      const dir = join(root, name);
      const c = JSON.parse(readFileSync(join(dir, 'case.json'), 'utf8')) as { profile: string };
      const profile = profiles.get(c.profile);
      expect(profile, `case.json names an unknown profile '${c.profile}'`).toBeDefined();
      const bytes = readFileSync(join(dir, 'input.astm'));
      const text = bytes.toString(profile!.encoding === 'utf8' ? 'utf8' : profile!.encoding === 'ascii' ? 'ascii' : 'latin1');
      const parsed = parseAstmMessage(parseRecords(text.split(/\r\n|\r|\n/)), profile!);
      const got = plain({ drafts: parsed.drafts, withheld: parsed.withheld });
      const file = join(dir, 'expected-observations.json');
      if (update) writeFileSync(file, `${JSON.stringify(got, null, 2)}\n`);
      expect(existsSync(file), `${file} missing (GOLDEN_UPDATE=1 writes it)`).toBe(true);
      expect(got).toEqual(JSON.parse(readFileSync(file, 'utf8')));
    });
  }
});

describe('fidelity case inputs', () => {
  it('are the records of the copied fidelity sessions (fixtures/fidelity)', () => {
    const pairs: Array<[string, string]> = [
      ['18-astm-architect-result-aspects.astm', 'fidelity-18-architect-aspects'],
      ['20-astm-pentra-fn-wrap-comments.astm', 'fidelity-20-pentra-w-status'],
      ['21-astm-vietnamese-utf8.astm', 'fidelity-21-vietnamese-utf8'],
    ];
    for (const [fixture, name] of pairs) {
      const session = readFileSync(join(__dirname, 'fixtures/fidelity', fixture));
      // STX FN text [CR] ETX/ETB checksum CR LF (LIS01 §1.2): the text of each frame is one record here
      const records = [...session.toString('latin1').matchAll(/\x02[0-7]([^\x03\x17]*?)\r?[\x03\x17][0-9A-F]{2}\r\n/g)].map((m) => Buffer.from(m[1], 'latin1').toString('utf8'));
      const input = readFileSync(join(root, name, 'input.astm'), 'utf8').split(/\r\n|\r|\n/).filter((l) => l);
      expect(records.length).toBeGreaterThan(4);
      expect(input).toEqual(records);
    }
  });
});
