import { describe, expect, it } from 'vitest';
import { nmText } from './number-text';
import { buildOruR251 } from '../../../drivers/hl7-mllp/oru-builder';
import type { Observation } from '../contracts/observation';

const NM = /^-?(\d+(\.\d*)?|\.\d+)$/; // HL7 v2.5.1 2.A.47

describe('nmText: HL7 NM, never an exponent', () => {
  it.each([
    [1e-7, '0.0000001'],
    [-1e308, `-1${'0'.repeat(308)}`],
    [1.5e21, `15${'0'.repeat(20)}`],
    [2.5e-3, '0.0025'],
    [97, '97'],
    [-0.5, '-0.5'],
  ])('%s → %s', (n, want) => {
    const t = nmText(n);
    expect(t).toBe(want);
    expect(t).toMatch(NM);
    expect(Number(t)).toBe(n);
  });

  it('the v2.5.1 ORU builder sends a computed number (no device text) as NM, not 1e-7', () => {
    const o: Observation = {
      id: 'U1-1', messageId: 1, messageUid: 'U1', seq: 1, deviceId: 'd', driver: 'mqtt', receivedAt: '2026-01-01T00:00:00.000Z',
      code: { system: 'http://loinc.org', code: '2345-7' }, status: 'final', statusCode: 'F',
      value: { kind: 'quantity', value: 1e-7, unit: 'mmol/L' }, subject: { patientId: 'P1' },
    };
    const obx = buildOruR251([o], { sendingApp: 'GW', sendingFacility: 'H', receivingApp: 'HIS', receivingFacility: 'H', controlId: 'C1' } as never)
      .split('\r')
      .find((s) => s.startsWith('OBX'))!;
    expect(obx.split('|')[5]).toBe('0.0000001');
  });
});
