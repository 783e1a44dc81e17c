import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseHl7 } from './hl7-message';
import { parseOru } from './oru-parser';

describe('README example', () => {
  it('parses', () => {
    const md = readFileSync(join(__dirname, 'README.md'), 'utf8');
    const block = /```hl7\n([\s\S]*?)```/.exec(md)![1];
    const r = parseOru(parseHl7(block));
    expect(r.header.controlId).toBe('GW-000123');
    expect(r.drafts).toHaveLength(1);
    expect(r.drafts[0]).toMatchObject({
      code: { system: 'http://loinc.org', code: '718-7' },
      value: { kind: 'quantity', value: 11.6, unit: 'g/dL' },
      interpretation: ['L'],
      comments: ['Platelet clumps?'],
      equipment: { id: 'XN1000-1', name: 'HEMA01' },
      subject: { patientId: 'BN0012345', specimenId: '2503010042' },
    });
  });
});
