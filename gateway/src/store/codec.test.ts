import { describe, expect, it } from 'vitest';
import type { ObservationDraft } from '../contracts/observation';
import { decodeObservations, draftsFromJson, draftsToJson, encodeObservations, OBS_DEFLATE_JSON, OBS_PLAIN_JSON } from './codec';

const base = (k: number): ObservationDraft => ({
  code: { system: 'http://loinc.org', code: `${718 + k}-7`, display: `test ${k}` },
  value: { kind: 'quantity', value: 10 + k, unit: 'g/dL', raw: '4.20' } as ObservationDraft['value'],
  status: 'final',
  effectiveAt: '2024-01-01T00:00:00Z',
  subject: { patientId: 'PAT1', specimenId: 'S1' },
  interpretation: ['N'],
});

describe('observation codec', () => {
  it('round-trips drafts exactly, including drafts with differing keys and missing optional fields', () => {
    const drafts: ObservationDraft[] = [
      base(0),
      { ...base(1), interpretation: undefined, referenceRange: { low: 1, high: 2, text: '1-2' } } as unknown as ObservationDraft,
      { code: { system: '99X', code: 'FLAG' }, value: { kind: 'text', text: 'é ü ✓ \u0000 "quoted"' }, status: 'preliminary' } as unknown as ObservationDraft,
      { ...base(3), subject: { specimenId: 'S2' } },
      base(4),
    ];
    const blob = encodeObservations(JSON.stringify(drafts));
    expect(blob[0]).toBe(OBS_DEFLATE_JSON);
    const back = decodeObservations(blob);
    expect(back).toEqual(JSON.parse(JSON.stringify(drafts)));
    // keys a draft lacks stay absent (no leaking from the previous one)
    expect('interpretation' in back[1]).toBe(false);
    expect('referenceRange' in back[2]).toBe(false);
    expect(back[3].subject).toEqual({ specimenId: 'S2' });
    expect((back[0].value as { raw?: string }).raw).toBe('4.20');
  });

  it('is much smaller than the JSON for a typical analyzer message', () => {
    const drafts = Array.from({ length: 36 }, (_, k) => base(k));
    const json = JSON.stringify(drafts);
    const blob = encodeObservations(json);
    expect(blob.length).toBeLessThan(json.length / 4);
  });

  it('reads the plain-JSON format and empty arrays', () => {
    const plain = Buffer.concat([Buffer.from([OBS_PLAIN_JSON]), Buffer.from(JSON.stringify([base(1)]))]);
    expect(decodeObservations(plain)).toEqual([base(1)]);
    expect(decodeObservations(encodeObservations('[]'))).toEqual([]);
    expect(() => decodeObservations(Buffer.from([0x7f, 1, 2]))).toThrow(/unknown observations encoding/);
  });

  it('layout v2 writes an object shared by several drafts once and reads it back shared, equal to the drafts', () => {
    const subject = { patientId: 'PAT1', patientIds: [{ id: 'PAT1', authority: 'HIS', type: 'MR' }], specimenId: 'S1' };
    const order = { fillerOrderNumber: 'S1', service: { system: 'http://loinc.org', code: '58410-2', display: 'CBC panel' } };
    const equipment = { id: 'HEMA-1' };
    const drafts: ObservationDraft[] = Array.from({ length: 13 }, (_, k) => ({ ...base(k), subject, order, equipment }));
    drafts.push({ ...base(13), subject: { specimenId: 'OTHER' }, order: undefined, equipment }); // its own subject, no order
    const json = draftsToJson(drafts);
    expect(json.split('"PAT1"').length - 1).toBe(2); // patientId and patientIds[0].id, once each
    expect(json.length).toBeLessThan((JSON.stringify(drafts).length * 2) / 3);
    const back = decodeObservations(encodeObservations(json));
    expect(back).toEqual(JSON.parse(JSON.stringify(drafts)));
    expect(back[0].subject).toBe(back[12].subject);
    expect(back[0].order).toBe(back[1].order);
    expect(back[13].subject).toEqual({ specimenId: 'OTHER' });
    expect('order' in back[13]).toBe(false);
    // the caller's drafts are not changed by encoding
    expect(drafts[0].subject).toBe(subject);
    expect(draftsToJson([])).toBe('{"v":2,"shared":[],"drafts":[]}');
    expect(draftsFromJson(draftsToJson([]))).toEqual([]);
  });

  it('rejects a v2 text with a dangling shared reference or an unknown layout', () => {
    expect(() => draftsFromJson('{"v":2,"shared":[],"drafts":[{"code":{"system":"x","code":"y"},"status":"final","subject":0}]}')).toThrow(/bad shared reference in subject/);
    expect(() => draftsFromJson('{"v":2,"shared":[{}],"drafts":[{"order":"0"}]}')).toThrow(/bad shared reference in order/);
    expect(() => draftsFromJson('{"v":3,"shared":[],"drafts":[]}')).toThrow(/unknown observations layout/);
    expect(() => draftsFromJson('42')).toThrow(/unknown observations layout/);
  });
});
