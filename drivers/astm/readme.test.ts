import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { loadProfiles } from './profile';
import { parseRecords } from './records';
import { parseAstmMessage } from './results-parser';

describe('README example', () => {
  it('parses', () => {
    const md = readFileSync(join(__dirname, 'README.md'), 'utf8');
    const block = /```astm\n([\s\S]*?)```/.exec(md)![1];
    const profile = loadProfiles(join(__dirname, '../../firmware-config/profiles/astm')).get('generic-lis2-a2')!;
    const r = parseAstmMessage(parseRecords(block.split('\n')), profile);
    expect(r.drafts).toHaveLength(1);
    expect(r.drafts[0]).toMatchObject({
      code: { system: 'http://loinc.org', code: '718-7' },
      value: { kind: 'quantity', value: 11.6, unit: 'g/dL', decimal: '11.6' },
      referenceRange: '13.0-17.0',
      interpretation: ['L'],
      status: 'final',
      comments: ['Platelet clumps?'],
      equipment: { id: 'XN1000-1', name: 'HEMA01' },
      subject: { patientId: 'BN0012345', specimenId: '2503010042' },
    });
  });
});
