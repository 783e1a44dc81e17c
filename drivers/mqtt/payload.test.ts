import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import Ajv2020 from 'ajv/dist/2020';
import { normalizeAlarms, normalizeVitals, PayloadError } from './payload';
import type { Observation } from '../../gateway/src/contracts/observation';
import { Downsampler } from '../../gateway/src/vitals/downsample';

const ROOT = join(__dirname, '..', '..');
const vitalsSchema = JSON.parse(readFileSync(join(ROOT, 'docs', 'schemas', 'vitals.schema.json'), 'utf8'));
const alarmsSchema = JSON.parse(readFileSync(join(ROOT, 'docs', 'schemas', 'alarms.schema.json'), 'utf8'));
// the shipped schemas, compiled by an independent validator (ajv, JSON Schema 2020-12); formats are annotations only
const ajv = new Ajv2020({ strict: false, validateFormats: false });
ajv.addSchema(vitalsSchema, 'vitals.schema.json');
const checkVitals = ajv.compile(vitalsSchema);
const checkAlarms = ajv.compile(alarmsSchema);

const ctx = { clientId: 'bed-03', receivedAt: new Date('2026-11-30T10:15:01Z') };
const buf = (o: unknown) => Buffer.from(typeof o === 'string' ? o : JSON.stringify(o));
const ISSUE_EXAMPLE = {
  time: '2026-11-30T10:15:00.000Z',
  bed: 'ICU1-03',
  patient: { id: '12345', idType: 'MR' },
  observations: [
    { code: 'MDC_PULS_OXIM_SAT_O2', value: 97, unit: '%' },
    { code: 'MDC_ECG_HEART_RATE', value: 72, unit: '/min' },
    { code: 'MDC_PRESS_BLD_NONINV_SYS', value: 120, unit: 'mm[Hg]' },
  ],
};
const obs = (o: Record<string, unknown>) => ({ time: '2026-11-30T10:15:00Z', observations: [{ code: 150456, value: 97, unit: '%', ...o }] });

describe('vitals payload', () => {
  it('normalizes the issue example to MDC + LOINC + UCUM, device, bed, time, patient', () => {
    const n = normalizeVitals(buf(ISSUE_EXAMPLE), ctx);
    expect(n.flags).toEqual([]);
    expect(n.drafts.map((d) => [d.code.system, d.code.code, d.code.display, d.codings?.[0]?.code, d.value])).toEqual([
      ['urn:iso:std:iso:11073:10101', '150456', 'MDC_PULS_OXIM_SAT_O2', '2708-6', { kind: 'quantity', value: 97, unit: '%' }],
      ['urn:iso:std:iso:11073:10101', '147842', 'MDC_ECG_HEART_RATE', '8867-4', { kind: 'quantity', value: 72, unit: '/min' }],
      ['urn:iso:std:iso:11073:10101', '150021', 'MDC_PRESS_BLD_NONINV_SYS', '8480-6', { kind: 'quantity', value: 120, unit: 'mm[Hg]' }],
    ]);
    const d = n.drafts[0];
    expect(d).toMatchObject({ category: 'vital-signs', equipment: { id: 'bed-03' }, location: { bed: 'ICU1-03' }, effectiveAt: '2026-11-30T10:15:00.000Z', subject: { patientId: '12345', patientIds: [{ id: '12345', type: 'MR' }] }, status: 'preliminary', statusCode: 'R' });
    expect(d.quality).toBeUndefined();
  });

  // code / unit as sent → MDC code, UCUM unit, flags
  const mapped: Array<[string, Record<string, unknown>, string, string, string[]]> = [
    ['numeric code', { code: 150456 }, '150456', '%', []],
    ['numeric code as text', { code: '150456' }, '150456', '%', []],
    ['partition::term', { code: '2::19384' }, '150456', '%', []],
    ['MDC unit refid', { code: 'MDC_PRESS_BLD_NONINV_DIA', unit: 'MDC_DIM_MMHG' }, '150022', 'mm[Hg]', []],
    ['MDC unit numeric', { code: 'MDC_PRESS_BLD_NONINV_DIA', unit: '266016' }, '150022', 'mm[Hg]', []],
    ['no unit: the code map\'s UCUM unit', { code: 'MDC_ECG_HEART_RATE', unit: undefined }, '147842', '/min', []],
    ['unknown code kept and flagged', { code: 'MDC_NOT_A_REAL_CODE' }, 'MDC_NOT_A_REAL_CODE', '%', ['unmapped-code@/observations/0/code']],
    ['unknown vendor code kept (local)', { code: 'SPO2-VENDOR' }, 'SPO2-VENDOR', '%', ['unmapped-code@/observations/0/code']],
    ['unknown unit kept and flagged', { unit: 'percent-ish' }, '150456', 'percent-ish', ['unmapped-code@/observations/0/unit']],
    ['unit that cannot be the code\'s (heart rate in mm[Hg]) kept and flagged', { code: 'MDC_ECG_HEART_RATE', unit: 'mm[Hg]' }, '147842', 'mm[Hg]', ['unmapped-code@/observations/0/unit']],
    ['SpO2 in Cel kept and flagged', { unit: 'Cel' }, '150456', 'Cel', ['unmapped-code@/observations/0/unit']],
    ['convertible unit (NIBP in kPa) not flagged', { code: 'MDC_PRESS_BLD_NONINV_SYS', unit: 'kPa' }, '150021', 'kPa', []],
    ['convertible unit (temperature in [degF]) not flagged', { code: 'MDC_TEMP', unit: '[degF]' }, '150344', '[degF]', []],
  ];
  it.each(mapped)('%s', (_name, o, code, unit, flags) => {
    const d = normalizeVitals(buf(obs(o)), ctx).drafts[0];
    expect(d.code.code).toBe(code);
    expect(d.value).toEqual({ kind: 'quantity', value: 97, unit });
    expect((d.quality ?? []).map((q) => `${q.code}@${q.location}`)).toEqual(flags);
    if (flags.length) expect(d.quality![0].original).toBeTruthy();
  });

  it('flags a device clock far from ours and a device without patient; keeps the device time', () => {
    const n = normalizeVitals(buf({ time: '2026-11-30T11:15:00+01:00', observations: [{ code: 150456, value: 97 }] }), ctx);
    expect(n.flags).toEqual(['patient-unassociated']);
    const skewed = normalizeVitals(buf({ time: '2026-11-30T10:30:00Z', observations: [{ code: 150456, value: 97 }] }), ctx);
    expect(skewed.flags).toEqual(['device-clock-skew', 'patient-unassociated']);
    expect(skewed.drafts[0].effectiveAt).toBe('2026-11-30T10:30:00.000Z');
    expect(Math.round(skewed.skewMs / 1000)).toBe(899);
    // each result carries it too, so the EMR sees it (NTE / FHIR note), not only the gateway's message flag
    expect(skewed.drafts[0].quality).toEqual([{ code: 'clock-skew', location: 'time', original: '2026-11-30T10:30:00Z', text: "device time ahead of the gateway's by 899 s: kept as sent" }]);
    expect(n.drafts[0].quality ?? []).toEqual([]);
  });

  it('containment path → subId, per-observation time, EUI-64 upper-cased', () => {
    const d = normalizeVitals(buf({ time: '2026-11-30T10:15:00Z', eui64: '00a037009a0053de', observations: [{ code: 150456, value: 97, containment: '1.3.1.150456', time: '2026-11-30T10:14:59.5Z' }] }), ctx).drafts[0];
    expect(d.subId).toBe('1.3.1.150456');
    expect(d.effectiveAt).toBe('2026-11-30T10:14:59.500Z');
    expect(d.equipment).toEqual({ id: 'bed-03', eui64: '00A037009A0053DE' });
  });

  // [name, payload, error path]: each must also fail the shipped schema (checked below)
  const bad: Array<[string, unknown, string]> = [
    ['not JSON', '{"time":', ''],
    ['array', [1], ''],
    ['no time', { observations: [{ code: 1, value: 1 }] }, '/time'],
    ['time without zone', { time: '2026-11-30T10:15:00', observations: [{ code: 1, value: 1 }] }, '/time'],
    ['no observations', { time: '2026-11-30T10:15:00Z', observations: [] }, '/observations'],
    ['value is text', obs({ value: '97' }), '/observations/0/value'],
    ['value missing', { time: '2026-11-30T10:15:00Z', observations: [{ code: 150456 }] }, '/observations/0/value'],
    ['code missing', { time: '2026-11-30T10:15:00Z', observations: [{ value: 1 }] }, '/observations/0/code'],
    ['negative numeric code', obs({ code: -1 }), '/observations/0/code'],
    ['fractional code', obs({ code: 1.5 }), '/observations/0/code'],
    ['unknown property', obs({ colour: 'red' }), '/observations/0/colour'],
    ['unknown top-level property', { ...ISSUE_EXAMPLE, hr: 72 }, '/hr'],
    ['patient without id', { ...ISSUE_EXAMPLE, patient: { idType: 'MR' } }, '/patient/id'],
    ['bad EUI-64', { ...ISSUE_EXAMPLE, eui64: '00A037' }, '/eui64'],
    ['bad containment', obs({ containment: '1.x' }), '/observations/0/containment'],
    ['empty unit', obs({ unit: '' }), '/observations/0/unit'],
    ['interpretation not in Table 0078', obs({ interpretation: ['HIGH'] }), '/observations/0/interpretation'],
    ['interpretation not an array', obs({ interpretation: 'H' }), '/observations/0/interpretation'],
    ['empty interpretation', obs({ interpretation: [] }), '/observations/0/interpretation'],
  ];
  it.each(bad)('refuses %s (and so does the schema)', (_n, payload, path) => {
    let err: unknown;
    try {
      normalizeVitals(buf(payload), ctx);
    } catch (e) {
      err = e;
    }
    expect(err).toBeInstanceOf(PayloadError);
    expect((err as PayloadError).path).toBe(path);
    if (typeof payload !== 'string') expect(checkVitals(payload)).toBe(false);
  });

  it('the schema accepts what the validator accepts (issue example, schema examples, mapped cases)', () => {
    for (const p of [ISSUE_EXAMPLE, ...vitalsSchema.examples, ...mapped.map(([, o]) => JSON.parse(JSON.stringify(obs(o))))]) {
      expect(() => normalizeVitals(buf(p), ctx)).not.toThrow();
      expect(checkVitals(p), JSON.stringify(checkVitals.errors)).toBe(true);
    }
  });

  it.each([
    [['H'], true],
    [['LL', 'A'], true],
    [['N'], false],
    [undefined, false],
  ])('interpretation %j → OBX-8 flags; an abnormal value passes the EMR\'s downsampling (%s)', (interpretation, passes) => {
    const payload = (t: string) => ({ time: t, observations: [{ code: 'MDC_ECG_HEART_RATE', value: 190, unit: '/min', ...(interpretation ? { interpretation } : {}) }] });
    expect(checkVitals(payload('2026-11-30T10:15:00Z'))).toBe(true);
    const sampler = new Downsampler('emr', { intervalMs: 60_000 });
    const [first, second] = ['2026-11-30T10:15:00Z', '2026-11-30T10:15:10Z'].map((t, i) => {
      const d = normalizeVitals(buf(payload(t)), ctx).drafts[0];
      return { ...d, id: `o${i}`, messageId: i, messageUid: `m${i}`, seq: 1, deviceId: 'bedside-mqtt', driver: 'mqtt-monitor', receivedAt: t } as Observation;
    });
    expect(first.interpretation).toEqual(interpretation);
    expect(sampler.filter([first]).kept).toHaveLength(1);
    expect(sampler.filter([second]).kept).toHaveLength(passes ? 1 : 0);
  });

  it('refuses invalid UTF-8', () => {
    expect(() => normalizeVitals(Buffer.from([0x7b, 0xff, 0x7d]), ctx)).toThrow(/UTF-8/);
  });
});

describe('alarms payload (IHE PCD ACM)', () => {
  const alarm = (a: Record<string, unknown>) => ({ time: '2026-11-30T10:15:02Z', bed: 'ICU1-03', alarms: [{ id: 'A-77', source: 'MDC_PULS_OXIM_SAT_O2', priority: 'PH', ...a }] });

  it('maps the schema example to AlarmInfo with the source and value', () => {
    const n = normalizeAlarms(buf(alarmsSchema.examples[0]), ctx);
    const d = n.drafts[0];
    expect(d.alarm).toEqual({ priority: 'PH', id: 'A-77', source: 'MDC_PULS_OXIM_SAT_O2', phase: 'start', state: 'active', kind: 'physiological', text: 'SpO2 LOW' });
    expect(d.value).toEqual({ kind: 'quantity', value: 84, unit: '%' });
    expect(d.code).toMatchObject({ system: 'urn:iso:std:iso:11073:10101', code: '196674' }); // MDC_EVT_LO_VAL_LT_LIM (3::66): the code map's numeric code
    expect(d.category).toBe('vital-signs');
    expect(checkAlarms(alarmsSchema.examples[0])).toBe(true);
  });

  it('without event: the source is the code; text-only alarm keeps its text as the value', () => {
    const d = normalizeAlarms(buf(alarm({ text: 'Lead off', kind: 'technical', phase: 'end', state: 'inactive' })), ctx).drafts[0];
    expect(d.code).toMatchObject({ code: '150456', display: 'MDC_PULS_OXIM_SAT_O2' });
    expect(d.value).toEqual({ kind: 'text', text: 'Lead off' });
    expect(d.alarm).toMatchObject({ phase: 'end', state: 'inactive', kind: 'technical' });
  });

  // the common alarm events are in the code map (IEEE 11073-10101 partition 3): they go out with their numeric
  // MDC code and are not flagged; an event outside it is kept as sent and flagged
  it.each([
    ['MDC_EVT_ECG_ASYSTOLE', '199684', false],
    ['MDC_EVT_APNEA', '199680', false],
    ['MDC_EVT_DESAT', '199854', false],
    ['MDC_EVT_LEAD_DISCONN', '196876', false],
    ['MDC_EVT_BATT_LO', '196802', false],
    ['3::66', '196674', false],
    ['MDCX_VENDOR_VFIB', 'MDCX_VENDOR_VFIB', true],
  ])('alarm event %s goes out as MDC %s (flagged: %s)', (event, code, flagged) => {
    const d = normalizeAlarms(buf(alarm({ event })), ctx).drafts[0];
    expect(d.code).toMatchObject({ system: 'urn:iso:std:iso:11073:10101', code });
    expect((d.quality ?? []).some((q) => q.code === 'unmapped-code' && q.location === '/alarms/0/event')).toBe(flagged);
  });

  const badAlarms: Array<[string, unknown, string]> = [
    ['priority outside PH/PM/PL/PN', alarm({ priority: 'HIGH' }), '/alarms/0/priority'],
    ['no id', { time: '2026-11-30T10:15:02Z', alarms: [{ source: 150456, priority: 'PL' }] }, '/alarms/0/id'],
    ['unknown phase', alarm({ phase: 'begin' }), '/alarms/0/phase'],
    ['unit without value', alarm({ unit: '%' }), '/alarms/0/unit'],
    ['no alarms', { time: '2026-11-30T10:15:02Z', alarms: [] }, '/alarms'],
  ];
  it.each(badAlarms)('refuses %s (and so does the schema)', (_n, payload, path) => {
    expect(() => normalizeAlarms(buf(payload), ctx)).toThrow(PayloadError);
    try {
      normalizeAlarms(buf(payload), ctx);
    } catch (e) {
      expect((e as PayloadError).path).toBe(path);
    }
    expect(checkAlarms(payload)).toBe(false);
  });

  it.each([
    ['1e-400', true],
    ['-2.5E-330', true],
    ['0.' + '0'.repeat(330) + '1', true],
    ['0e-400', false],
    ['1e-300', false],
    ['5e-324', false],
  ])('a value of %s is %s quarantined as an underflow (JSON.parse would read it as 0)', (num, bad) => {
    const raw = Buffer.from(`{"time":"2026-11-30T10:15:00Z","bed":"1e-400","observations":[{"code":150456,"value":${num},"unit":"%"}]}`);
    if (bad) expect(() => normalizeVitals(raw, ctx)).toThrow(/too small for a double/);
    else {
      // read as the double; a text that does not print back as written is kept in NM form (no exponent)
      const v = normalizeVitals(raw, ctx).drafts[0].value as { kind: 'quantity'; value: number; unit: string; decimal?: string };
      expect(v).toMatchObject({ kind: 'quantity', value: Number(num), unit: '%' });
      if (String(Number(num)) === num) expect(v.decimal).toBeUndefined();
      else {
        expect(v.decimal).toMatch(/^-?\d+(\.\d+)?$/);
        expect(Number(v.decimal)).toBe(Number(num));
      }
    }
  });
});
