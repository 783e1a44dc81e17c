/**
 * The IHE PCD hook's rules that the golden cases (test/golden/cases/pcd*) do not show one by one.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { parseHl7 } from '../../../drivers/hl7-mllp/hl7-message';
import { parseOru } from '../../../drivers/hl7-mllp/oru-parser';
import { tempDir } from '../../../test/helpers/env';
import { isPcdMessage, pcdNormalizer } from './pcd-normalize';
import { loadVendorMaps } from './vendor-maps';

const MSH = (trigger = 'R01', profile = 'IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO') => `MSH|^~\\&|CS^0011223344556677^EUI-64|F|||20250301101500+0700||ORU^${trigger}^ORU_${trigger}|C1|P|2.6|||NE|AL||UNICODE UTF-8|||${profile}`;
const parse = (segs: string[]) => parseOru(parseHl7(segs.join('\r'), { lenient: true }));

describe('IHE PCD post-normalization', () => {
  it('a lab ORU (no MSH-21 IHE_PCD_*) is not touched: no hook, MDC codes stay as parsed', () => {
    const lab = ['MSH|^~\\&|LAB|F|||20250301101500+0700||ORU^R01^ORU_R01|C1|P|2.5.1', 'PID|||P1', 'OBR|1||S1|X^Y^L', 'OBX|1|NM|147842^MDC_ECG_HEART_RATE^MDC||72|bpm|||||F'];
    expect(isPcdMessage(parseHl7(lab.join('\r')))).toBe(false);
    expect(pcdNormalizer(parseHl7(lab.join('\r')))).toBeUndefined();
    const [d] = parse(lab).drafts;
    expect(d.category).toBeUndefined();
    expect(d.codings).toBeUndefined();
    expect(d.value).toMatchObject({ unit: 'bpm' }); // the lab path keeps units as it always did
  });

  it.each([
    ['147842^MDC_ECG_HEART_RATE^MDC', '266016^MDC_DIM_MMHG^MDC', 'mm[Hg]', ['unmapped-code']],
    ['150456^MDC_PULS_OXIM_SAT_O2^MDC', '268192^MDC_DIM_DEGC^MDC', 'Cel', ['unmapped-code']],
    ['147842^MDC_ECG_HEART_RATE^MDC', '264864^MDC_DIM_BEAT_PER_MIN^MDC', '/min', []],
    ['150021^MDC_PRESS_BLD_NONINV_SYS^MDC', 'kPa^kPa^UCUM', 'kPa', []],
  ])('OBX-3 %s in OBX-6 %s: unit %s, flags %j (a unit that cannot be the metric\'s is kept and flagged)', (code, unit, ucum, flags) => {
    const [d] = parse([MSH(), 'PID|||P1', 'OBR|1||S1|182777000^monitoring of patient^SCT', `OBX|1|NM|${code}|1.1.1.1|72|${unit}|||||R`]).drafts;
    expect(d.value).toMatchObject({ kind: 'quantity', value: 72, unit: ucum });
    expect((d.quality ?? []).map((q) => q.code)).toEqual(flags);
  });

  it('ORU^R40 (the ACM report) is accepted and read as alarms', () => {
    const r = parse([MSH('R40', 'IHE_PCD_ACM_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.4.1^ISO'), 'PID|||P1', 'OBR|1||A-1^CS|196616^MDC_EVT_ALARM^MDC', 'OBX|1|ST|196916^MDC_EVT_SENSOR_DISCONN^MDC|1.1.1.1.1|lead off||||||F']);
    expect(r.drafts).toHaveLength(1);
    // no priority sent: PM assumed and said so (never silently)
    expect(r.drafts[0].alarm).toMatchObject({ priority: 'PM', id: 'A-1^CS', text: 'lead off' });
    expect(r.drafts[0].quality?.map((q) => q.code)).toEqual(['value-missing']);
  });

  it('ACM attribute 68483 (inactivation state) goes into the alarm as sent; an attribute AlarmInfo has no field for stays its own row', () => {
    const r = parse([
      MSH('R40', 'IHE_PCD_ACM_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.4.1^ISO'),
      'PID|||P1',
      'OBR|1||A-2^CS|196616^MDC_EVT_ALARM^MDC',
      'OBX|1|ST|196916^MDC_EVT_SENSOR_DISCONN^MDC|1.1.1.1.1|lead off|||PM~ST|||F',
      'OBX|2|ST|68483^MDC_ATTR_ALARM_INACTIVATION_STATE^MDC|1.1.1.1.2|audio-paused||||||F',
      'OBX|3|ST|99999^MDC_ATTR_MADE_UP_FOR_THIS_TEST^MDC|1.1.1.1.3|x||||||F', // not a real attribute
    ]);
    expect(r.drafts[0].alarm).toMatchObject({ priority: 'PM', kind: 'technical', inactivationState: 'audio-paused' });
    expect(r.drafts.map((d) => d.code.code)).toEqual(['196916', '99999']);
    expect(r.drafts[1].alarm).toBe(r.drafts[0].alarm);
  });

  it('ORU^R02 stays unsupported (AR 201) even with a PCD profile', () => {
    expect(() => parse([MSH('R02'), 'OBR|1', 'OBX|1|NM|147842^MDC_ECG_HEART_RATE^MDC|1.1.1.1|72'])).toThrow(/unsupported event ORU\^R02/);
  });

  it('MSH-3 EUI-64 is the device of metrics without OBX-18; a non-hex id is never called an EUI-64', () => {
    const r = parse([MSH(), 'PID|||P1', 'PV1||I|ICU^^07', 'OBR|1', 'OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.2.1.1|97|262688^MDC_DIM_PERCENT^MDC||||||R']);
    expect(r.drafts[0].equipment).toEqual({ id: '0011223344556677', name: 'CS', eui64: '0011223344556677' });
    const r2 = parse([MSH().replace('CS^0011223344556677^EUI-64', 'CS^not-hex^EUI-64'), 'OBR|1', 'OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.2.1.1|97|262688^MDC_DIM_PERCENT^MDC']);
    expect(r2.drafts[0].equipment?.eui64).toBeUndefined();
  });

  it('11073 special values: NaN, NRes, +INF, -INF are never numbers', () => {
    for (const v of ['8388607', '-8388608', '8388606', '-8388606']) {
      const [d] = parse([MSH(), 'OBR|1', `OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.2.1.1|${v}|262688^MDC_DIM_PERCENT^MDC|||||R`]).drafts;
      expect(d.value).toEqual({ kind: 'text', text: v, unit: '%' });
      expect(d.quality?.[0]).toMatchObject({ code: 'value-missing', original: v });
    }
  });

  it('an MDC unit outside the table is kept as sent and flagged; a UCUM unit is kept', () => {
    const r = parse([MSH(), 'OBR|1', 'OBX|1|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.2.1.1|97|262999^MDC_DIM_NOPE^MDC|||||R', 'OBX|2|NM|150344^MDC_TEMP^MDC|1.4.1.1|36.6|Cel^Cel^UCUM|||||R']);
    expect(r.drafts[0].value).toMatchObject({ unit: 'MDC_DIM_NOPE' });
    expect(r.drafts[0].quality).toEqual([expect.objectContaining({ code: 'unmapped-code', location: 'OBX^1^6' })]);
    expect(r.drafts[1].value).toMatchObject({ unit: 'Cel' });
    expect(r.drafts[1].quality).toBeUndefined();
  });

  it('vendor maps: data only; a bad file or a system claimed twice is refused', () => {
    const t = tempDir();
    try {
      const dir = join(t.dir, 'vendor');
      mkdirSync(dir);
      writeFileSync(join(dir, 'a.json'), JSON.stringify({ id: 'a', systems: ['99ABC'], codes: { P1: 'MDC_ECG_HEART_RATE' } }));
      expect(loadVendorMaps(dir).get('99ABC')?.codes.P1).toBe('MDC_ECG_HEART_RATE');
      writeFileSync(join(dir, 'b.json'), JSON.stringify({ id: 'b', systems: ['99ABC'], codes: {} }));
      expect(() => loadVendorMaps(dir)).toThrow(/already mapped by a/);
      writeFileSync(join(dir, 'b.json'), JSON.stringify({ id: 'b', systems: ['99X'], codes: { Q: 'heart rate' } }));
      expect(() => loadVendorMaps(dir)).toThrow(/not an MDC reference id/);
    } finally {
      t.cleanup();
    }
  });
});
