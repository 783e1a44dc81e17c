/**
 * PCD-01 / ACM out: the builders against the parser (a round trip keeps every code, unit, value,
 * containment, EUI-64, bed and alarm), and the output against an independent MLLP receiver
 * (test/helpers/independent-his.ts shares no code with the gateway).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { Observation, ObservationDraft } from '../../contracts/observation';
import type { OutboxEntry } from '../../contracts/output';
import { parseHl7 } from '../../../../drivers/hl7-mllp/hl7-message';
import { parseOru } from '../../../../drivers/hl7-mllp/oru-parser';
import { IndependentHis, seg, splitHl7 } from '../../../../test/helpers/independent-his';
import { buildPcd01, buildPcd04, isoToHl7 } from './pcd-builder';
import { PcdOutput } from './pcd-output';

const CASES = join(__dirname, '../../../../test/golden/cases');
const RECEIVED = '2026-11-30T03:15:00.000Z';

function observations(caseName: string): Observation[] {
  const text = readFileSync(join(CASES, caseName, 'input.hl7'), 'utf8');
  return expand(parseOru(parseHl7(text, { lenient: true })).drafts, caseName);
}
function expand(drafts: ObservationDraft[], uid: string): Observation[] {
  return drafts.map((d, i) => ({ ...d, id: `${uid}-${i + 1}`, messageId: 1, messageUid: uid, seq: i + 1, deviceId: 'pcd-in', driver: 'hl7-mllp', receivedAt: RECEIVED }));
}
const essentials = (o: ObservationDraft) => ({ code: o.code, codings: o.codings, value: o.value, eui64: o.equipment?.eui64, bed: o.location?.bed, patient: o.subject?.patientId, effectiveAt: o.effectiveAt, statusCode: o.statusCode, interpretation: o.interpretation?.filter((f) => f !== 'DEMO').join('~') || undefined, alarm: o.alarm, method: o.method }); // DEMO is not HL7 Table 0078: sent in an NTE
const OPTS = { controlId: 'K1', sendingApp: 'IOMT-GW', sendingEui64: '0A1B2C3D4E5F6071', now: new Date(RECEIVED) };

describe('PCD-01 builder (ORU^R01 v2.6, MSH-21 IHE_PCD_001)', () => {
  it.each(['pcd01-vitals-identified', 'pcd01-vitals-unassociated-abnormal', 'pcd01-vendor-codes-special-values'])('%s: parse → build → parse keeps codes, units, values, EUI-64, bed, patient', (name) => {
    const obs = observations(name);
    const text = buildPcd01(obs, OPTS);
    const back = parseOru(parseHl7(text, { lenient: true }));
    expect(back.drafts.map(essentials)).toEqual(obs.map(essentials));
    expect(back.drafts.map((d) => d.subId)).toEqual(obs.map((d) => d.subId)); // OBX-4 containment kept
    expect(obs.some((o) => o.method)).toBe(true); // every case sends OBX-17: the round trip above compares it
  });

  it('OBX-17 method goes out as the device sent it (CWE; text only stays text only); none → empty', () => {
    const [a] = observations('pcd01-vitals-identified');
    const out = (method: Observation['method']) => splitHl7(buildPcd01([{ ...a, method }], OPTS)).filter((s) => s.id === 'OBX')[1].field(17);
    expect(out({ system: 'urn:iso:std:iso:11073:10101', code: 'AMEAS', display: 'auto-measurement' })).toBe('AMEAS^auto-measurement^MDC');
    expect(out({ system: 'local', code: '', display: 'APERIODIC' })).toBe('^APERIODIC');
    expect(out({ system: 'local', code: 'M|1' })).toBe('M\\F\\1^^L');
    expect(out(undefined)).toBe('');
  });

  it('MSH, MDS row with OBX-18 EUI-64, containment, MDC units, unassociated PID', () => {
    const text = buildPcd01(observations('pcd01-vitals-unassociated-abnormal'), OPTS);
    const segs = splitHl7(text);
    const msh = seg(text, 'MSH')!;
    expect(msh.c(3, 1)).toBe('IOMT-GW');
    expect(msh.c(3, 2)).toBe('0A1B2C3D4E5F6071');
    expect(msh.field(9)).toBe('ORU^R01^ORU_R01');
    expect(msh.field(12)).toBe('2.6');
    expect(msh.field(21)).toBe('IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO');
    expect(seg(text, 'PID')!.field(3)).toBe(''); // unassociated: no id invented
    expect(seg(text, 'PV1')!.field(3)).toBe('ICU^^BED06^HOSP');
    const obx = segs.filter((s) => s.id === 'OBX');
    expect(obx[0].field(3)).toBe('69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC');
    expect(obx[0].field(4)).toBe('1.0.0.0');
    expect(obx[0].field(18)).toBe('0011223344556677^^0011223344556677^EUI-64');
    expect(obx[1].field(4)).toBe('1.1.1.1');
    expect(obx[1].field(6)).toBe('264864^MDC_DIM_BEAT_PER_MIN^MDC');
    expect(obx[1].field(8)).toBe('H');
    expect(obx[2].field(6)).toBe('262688^MDC_DIM_PERCENT^MDC');
  });

  it('observations without containment (MQTT devices) get m.1.1.n under their device; two devices → two MDS rows', () => {
    const base = observations('pcd01-vitals-identified').slice(0, 2).map((o) => ({ ...o, subId: undefined }));
    const other = { ...base[1], equipment: { id: 'esp32-07' } };
    const text = buildPcd01([base[0], base[1], other], OPTS);
    const obx = splitHl7(text).filter((s) => s.id === 'OBX');
    expect(obx.map((s) => s.field(4))).toEqual(['1.0.0.0', '1.1.1.1', '1.1.1.2', '2.0.0.0', '2.1.1.1']);
    expect(obx[3].field(18)).toBe('esp32-07');
  });

  it('isoToHl7', () => {
    expect(isoToHl7('2024-01-01T12:00:00+00:00')).toBe('20240101120000+0000');
    expect(isoToHl7('2026-11-30T10:15:00.000Z')).toBe('20261130101500.000+0000');
    expect(isoToHl7('2025-03-01T10:14:55+07:00')).toBe('20250301101455+0700');
    expect(isoToHl7('garbage')).toBe('');
  });
});

describe('ACM PCD-04 builder (ORU^R40 v2.6, MSH-21 IHE_PCD_ACM_001)', () => {
  it('parse → build → parse keeps every alarm (priority, phase, state, inactivation state, kind, id, source, text)', () => {
    const obs = observations('pcd04-alarm-acm');
    expect(obs.filter((o) => o.alarm && !o.code.display?.startsWith('MDC_ATTR_'))).toHaveLength(2);
    const text = buildPcd04(obs, OPTS);
    expect(seg(text, 'MSH')!.field(9)).toBe('ORU^R40^ORU_R40');
    expect(seg(text, 'MSH')!.field(21)).toBe('IHE_PCD_ACM_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.4.1^ISO');
    expect(splitHl7(text).filter((s) => s.id === 'OBR').map((s) => s.field(4))).toEqual(['196616^MDC_EVT_ALARM^MDC', '196616^MDC_EVT_ALARM^MDC']);
    const back = parseOru(parseHl7(text, { lenient: true }));
    const pick = (ds: ObservationDraft[]) => ds.map((d) => ({ code: d.code.code, value: d.value, priority: d.alarm?.priority, phase: d.alarm?.phase, state: d.alarm?.state, inactivationState: d.alarm?.inactivationState, kind: d.alarm?.kind, id: d.alarm?.id, text: d.alarm?.text }));
    expect(pick(back.drafts)).toEqual(pick(obs));
    // MDC attribute 68483 (IHE PCD ACM inactivation state) is in the alarm and goes out as its own attribute row
    expect(obs[0].alarm?.inactivationState).toBe('enabled');
    const inact = splitHl7(text).filter((s) => s.id === 'OBX' && s.field(3).startsWith('68483^'));
    expect(inact.map((s) => [s.field(4).replace(/\.\d+$/, '.f'), s.field(5)])).toEqual([['1.3.1.150456.f', 'enabled']]); // a facet under its alarm's event
  });

  it('refuses a message with no alarm', () => {
    expect(() => buildPcd04(observations('pcd01-vitals-identified'), OPTS)).toThrow(/no alarm/);
  });
});

describe('PcdOutput → independent MLLP receiver', () => {
  let his: IndependentHis | undefined;
  let out: PcdOutput | undefined;
  afterEach(async () => {
    await out?.close();
    await his?.stop();
    his = out = undefined;
  });
  const entry = (id: number, key: string, payload: Buffer): OutboxEntry => ({ id, destination: 'emr', key, payload, attempts: 0, createdAt: 0 });

  it('PCD-01 arrives as v2.6 with MSH-21 and is delivered on AA; AE is a dead letter with the reason', async () => {
    his = new IndependentHis();
    const port = await his.start();
    out = new PcdOutput({ destination: 'emr', host: '127.0.0.1', port, mode: 'pcd-01', sendingEui64: '0A1B2C3D4E5F6071' });
    const obs = out.select(observations('pcd01-vitals-identified'));
    const p = out.prepare(obs, 'msg-1');
    const ac = new AbortController();
    expect(await out.write([entry(1, 'msg-1', p.payload)], ac.signal)).toEqual([{ id: 1, outcome: 'delivered', detail: 'AA' }]);
    expect(his.received).toHaveLength(1);
    const got = his.received[0].text;
    expect(seg(got, 'MSH')!.field(12)).toBe('2.6');
    expect(seg(got, 'MSH')!.c(21, 1)).toBe('IHE_PCD_001');
    expect(splitHl7(got).filter((s) => s.id === 'OBX' && s.field(2) === 'NM')).toHaveLength(8);
    his.aePattern = /MDC_TEMP/;
    const p2 = out.prepare(obs, 'msg-2');
    const [r] = await out.write([entry(2, 'msg-2', p2.payload)], ac.signal);
    expect(r.outcome).toBe('dead');
  });

  it('ACM mode selects only alarms; PCD-01 mode only vitals', () => {
    const obs = observations('pcd04-alarm-acm');
    const acm = new PcdOutput({ destination: 'am', host: '127.0.0.1', port: 1, mode: 'acm' });
    const dec = new PcdOutput({ destination: 'emr2', host: '127.0.0.1', port: 1, mode: 'pcd-01' });
    expect(acm.select(obs)).toHaveLength(obs.length);
    expect(dec.select(obs)).toHaveLength(0);
    expect(() => new PcdOutput({ destination: 'x', host: '127.0.0.1', port: 1, mode: 'acm', sendingEui64: 'nothex' })).toThrow(/EUI-64/);
  });
});

describe('OBX-5 NM text (HL7 v2.6 2.A.47: sign, digits, decimal point; no exponent)', () => {
  const one = (value: number): Observation =>
    expand([{ code: { system: 'urn:iso:std:iso:11073:10101', code: '147842', display: 'MDC_ECG_HEART_RATE' }, status: 'preliminary', statusCode: 'R', valueType: 'NM', value: { kind: 'quantity', value, unit: '/min' }, effectiveAt: RECEIVED, equipment: { id: 'dev1' } }], 'nm')[0];
  it.each([
    [72, '72'],
    [36.8, '36.8'],
    [-0.5, '-0.5'],
    [1e-7, '0.0000001'],
    [1.25e-9, '0.00000000125'],
    [-1e21, '-1000000000000000000000'],
    [1.5e22, '15000000000000000000000'],
  ])('%s → %s', (value, text) => {
    const obx = splitHl7(buildPcd01([one(value)], OPTS)).filter((s) => s.id === 'OBX' && s.field(2) === 'NM');
    expect(obx).toHaveLength(1);
    expect(obx[0].field(5)).toBe(text);
    expect(obx[0].field(5)).toMatch(/^[+-]?\d+(\.\d*)?$/);
    expect(Number(obx[0].field(5))).toBe(value);
  });
});

describe('PCD-04 alarm value unit (IHE PCD TF-2: MDC units)', () => {
  it.each([
    ['MDC_ECG_HEART_RATE', '/min', '264864^MDC_DIM_BEAT_PER_MIN^MDC'],
    ['MDC_TTHOR_RESP_RATE', '/min', '264928^MDC_DIM_RESP_PER_MIN^MDC'],
    ['MDC_PRESS_BLD_NONINV_SYS', 'mm[Hg]', '266016^MDC_DIM_MMHG^MDC'],
  ])('an MQTT alarm from %s with a value in %s: OBX-6 %s (the source metric\'s unit, not the event\'s)', (source, unit, obx6) => {
    const [a] = expand([{ code: { system: 'urn:iso:std:iso:11073:10101', code: 'MDC_EVT_HI_VAL_GT_LIM' }, status: 'preliminary', statusCode: 'R', valueType: 'NM', value: { kind: 'quantity', value: 151, unit }, effectiveAt: RECEIVED, equipment: { id: 'dev1' }, alarm: { priority: 'PH', id: 'a1', source, phase: 'start', state: 'active' } }], 'acm');
    const event = splitHl7(buildPcd04([a], OPTS)).filter((s) => s.id === 'OBX' && s.field(2) === 'NM');
    expect(event.map((s) => `${s.field(5)} ${s.field(6)}`)).toEqual([`151 ${obx6}`]);
  });
});
