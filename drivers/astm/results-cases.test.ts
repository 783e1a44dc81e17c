/**
 * The ASTM results cases (`results-cases/<name>/{input.astm, case.json, expected-observations.json,
 * expected-out.hl7}`) are run by the one golden runner, test/golden/golden.test.ts, which checks the
 * parsed observations and the outbound HL7 of every case, HL7 and ASTM. This file checks only that the
 * fidelity cases' inputs are the records of the copied fidelity sessions.
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
