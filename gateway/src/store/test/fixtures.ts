import type { InboundMessage } from '../../contracts/driver';
import type { ObservationDraft } from '../../contracts/observation';

/** A synthetic device message with `n` observations (fake identifiers, no real PHI). */
export function sampleMessage(i: number, opts: Partial<InboundMessage> & { n?: number; patientId?: string; specimenId?: string; rawBytes?: number } = {}): InboundMessage {
  const n = opts.n ?? 2;
  const patientId = opts.patientId ?? `PAT${i % 7}`;
  const specimenId = opts.specimenId ?? `SPEC${i}`;
  const drafts: ObservationDraft[] = Array.from({ length: n }, (_, k) => ({
    code: { system: 'http://loinc.org', code: `${718 + k}-7`, display: `test ${k}` },
    value: { kind: 'quantity', value: 10 + k + i / 1000, unit: 'g/dL' },
    status: 'final',
    effectiveAt: new Date(Date.UTC(2024, 0, 1, 0, 0, i % 60)).toISOString(),
    subject: { patientId, specimenId },
    interpretation: ['N'],
  }));
  const raw = opts.rawBytes
    ? Buffer.alloc(opts.rawBytes, `MSH|^~\\&|LAB|${i}|`)
    : Buffer.from(`MSH|^~\\&|LAB|X|GW|Y|20240101||ORU^R01|MSG${i}|P|2.5\rPID|||${patientId}\rOBX|1|NM|718-7||${10 + i}|g/dL\r`);
  const { n: _n, patientId: _p, specimenId: _s, rawBytes: _r, ...rest } = opts;
  return { deviceId: 'analyzer-1', driver: 'hl7-mllp', raw, messageType: 'ORU^R01', sourceMessageId: `MSG${i}`, drafts, meta: { remote: '10.0.0.5' }, ...rest };
}
