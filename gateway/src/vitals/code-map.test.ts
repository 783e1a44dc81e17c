import { describe, expect, it } from 'vitest';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CodeMap, lookupVital, normalizeUnit, parseMdcNumeric, shippedCodeMap, type CodeMapFile } from './code-map';
import { isValidUcum } from '../units/ucum';

// Rows from protocols.md §4.2 (confirmed from vendor messages): code, LOINC, UCUM.
const vitals: [string, number, string | undefined, string][] = [
  ['MDC_ECG_HEART_RATE', 147842, '8867-4', '/min'],
  ['MDC_PULS_OXIM_PULS_RATE', 149530, '8889-8', '/min'],
  ['MDC_PULS_OXIM_SAT_O2', 150456, '2708-6', '%'],
  ['MDC_RESP_RATE', 151562, '9279-1', '/min'],
  ['MDC_TTHOR_RESP_RATE', 151578, '9279-1', '/min'],
  ['MDC_PRESS_BLD_NONINV_SYS', 150021, '8480-6', 'mm[Hg]'],
  ['MDC_PRESS_BLD_NONINV_DIA', 150022, '8462-4', 'mm[Hg]'],
  ['MDC_PRESS_BLD_NONINV_MEAN', 150023, '8478-0', 'mm[Hg]'],
  ['MDC_PRESS_CUFF_SYS', 150301, '8480-6', 'mm[Hg]'],
  ['MDC_PRESS_CUFF_DIA', 150302, '8462-4', 'mm[Hg]'],
  ['MDC_PRESS_CUFF_MEAN', 150303, '8478-0', 'mm[Hg]'],
  ['MDC_PRESS_BLD_ART_ABP_SYS', 150037, '76215-3', 'mm[Hg]'],
  ['MDC_PRESS_BLD_SYS', 150017, undefined, 'mm[Hg]'],
  ['MDC_TEMP', 150344, '8310-5', 'Cel'],
  ['MDC_TEMP_BODY', 150364, '8310-5', 'Cel'],
  ['MDC_AWAY_CO2_ET', 151708, '19889-5', 'mm[Hg]'],
  ['MDC_VENT_AWAY_CO2_ET', 151928, '19889-5', 'mm[Hg]'],
];

describe('code map (firmware-config/code-maps/mdc-loinc-ucum.json)', () => {
  it.each(vitals)('%s = %i, LOINC %s, %s, by refid, numeric and partition::term', (refid, num, loinc, ucum) => {
    const pt = `${Math.floor(num / 65536)}::${num % 65536}`;
    for (const key of [refid, String(num), pt]) {
      const v = lookupVital(key);
      expect(v, key).toBeDefined();
      expect(v!.mdc).toMatchObject({ system: 'urn:iso:std:iso:11073:10101', code: String(num), display: refid });
      expect(v!.mdcNumeric).toBe(pt);
      expect(v!.loinc?.code).toBe(loinc);
      expect(v!.ucum).toBe(ucum);
    }
  });

  it('every term: numeric = partition * 65536 + term, metrics carry a valid UCUM unit; every unit row is valid UCUM', () => {
    const file = JSON.parse(readFileSync(join(__dirname, '../../../firmware-config/code-maps/mdc-loinc-ucum.json'), 'utf8')) as CodeMapFile;
    for (const t of file.terms) {
      expect(parseMdcNumeric(`${t.numeric >> 16}::${t.numeric & 0xffff}`)).toBe(t.numeric);
      if (t.kind === 'metric') expect(isValidUcum(t.ucum ?? ''), t.refid).toBe(true);
      if (t.loinc) expect(t.loinc, t.refid).toMatch(/^\d{1,6}-\d$/);
    }
    for (const u of file.units) expect(isValidUcum(u.ucum), u.refid).toBe(true);
    for (const [k, v] of Object.entries(file.unitSynonyms ?? {})) if (!k.startsWith('$')) expect(isValidUcum(v), k).toBe(true);
  });

  it('LOINC check digits (mod 10) are right', () => {
    // LOINC users' guide: the check digit is the Mod 10 of the code part.
    const mod10 = (s: string) => {
      let sum = 0;
      const digits = s.split('').reverse();
      digits.forEach((d, i) => {
        let n = Number(d);
        if (i % 2 === 0) {
          n *= 2;
          if (n > 9) n = Math.floor(n / 10) + (n % 10);
        }
        sum += n;
      });
      return (10 - (sum % 10)) % 10;
    };
    for (const t of shippedCodeMap().terms()) {
      for (const c of [t.loinc, ...(t.loincAlso ?? [])].filter(Boolean) as string[]) {
        const [body, check] = c.split('-');
        expect(mod10(body!), `${t.refid} ${c}`).toBe(Number(check));
      }
    }
  });

  it.each([
    ['266016', 'mm[Hg]', 'MDC_DIM_MMHG'],
    ['MDC_DIM_MMHG', 'mm[Hg]', 'MDC_DIM_MMHG'],
    ['4::3872', 'mm[Hg]', 'MDC_DIM_MMHG'],
    ['264864', '/min', 'MDC_DIM_BEAT_PER_MIN'],
    ['264928', '/min', 'MDC_DIM_RESP_PER_MIN'],
    ['262688', '%', 'MDC_DIM_PERCENT'],
    ['268192', 'Cel', 'MDC_DIM_DEGC'],
    ['mmHg', 'mm[Hg]', 'MDC_DIM_MMHG'],
    ['bpm', '/min', undefined], // /min has two MDC units (beats, breaths): not mapped back without the metric
    ['mm[Hg]', 'mm[Hg]', 'MDC_DIM_MMHG'],
    ['kPa', 'kPa', 'MDC_DIM_KILO_PASCAL'],
    ['mg/dL', 'mg/dL', undefined],
    ['263875', undefined, undefined], // an MDC unit code not in the table: not taken as the UCUM number 263875
    ['MDC_DIM_KILO_G', undefined, undefined],
  ])('normalizeUnit(%s) = %s (%s)', (input, ucum, mdc) => {
    const u = normalizeUnit(input);
    expect(u?.ucum).toBe(ucum);
    expect(u?.mdcUnit).toBe(mdc);
  });

  it('a metric names its own MDC unit: /min is beats for a heart rate, breaths for a respiration rate', () => {
    expect(lookupVital('MDC_ECG_HEART_RATE')?.mdcUnit).toEqual({ refid: 'MDC_DIM_BEAT_PER_MIN', code: '264864' });
    expect(lookupVital('151578')?.mdcUnit).toEqual({ refid: 'MDC_DIM_RESP_PER_MIN', code: '264928' });
    expect(lookupVital('MDC_PRESS_CUFF_SYS')?.mdcUnit).toEqual({ refid: 'MDC_DIM_MMHG', code: '266016' });
    for (const t of shippedCodeMap().terms()) if (t.kind === 'metric') expect(lookupVital(t.refid)?.mdcUnit, t.refid).toBeDefined();
  });

  it('unknown codes and units are undefined, not guessed', () => {
    expect(lookupVital('MDC_NOT_A_CODE')).toBeUndefined();
    expect(lookupVital('999999')).toBeUndefined();
    expect(lookupVital('')).toBeUndefined();
    expect(normalizeUnit('beats')).toBeUndefined();
    expect(normalizeUnit('')).toBeUndefined();
  });

  it('a table with a duplicate code is refused', () => {
    const row = { refid: 'MDC_A', numeric: 1, kind: 'metric' as const, confidence: 'C' as const };
    expect(() => new CodeMap({ terms: [row, { ...row, refid: 'MDC_B' }], units: [] })).toThrow(/duplicate/);
  });

  // Alarm/event codes (IEEE 11073-10101 partition 3), each [refid, partition, term] as the cited source writes it
  // (the row's $source): the table's numeric must be partition * 65536 + term and all three spellings resolve.
  const events: [string, number, number][] = [
    ['MDC_EVT_ALARM', 3, 8],
    ['MDC_EVT_HI_GT_LIM', 3, 42],
    ['MDC_EVT_LO_LT_LIM', 3, 64],
    ['MDC_EVT_LO_VAL_LT_LIM', 3, 66],
    ['MDC_EVT_BATT_LO', 3, 194],
    ['MDC_EVT_LEAD_DISCONN', 3, 268],
    ['MDC_EVT_SENSOR_DISCONN', 3, 308],
    ['MDC_EVT_APNEA', 3, 3072],
    ['MDC_EVT_ECG_ASYSTOLE', 3, 3076],
    ['MDC_EVT_DESAT', 3, 3246],
  ];
  it.each(events)('event %s = %i::%i', (refid, partition, term) => {
    const num = partition * 65536 + term;
    for (const key of [refid, String(num), `${partition}::${term}`]) {
      const v = lookupVital(key);
      expect(v, key).toBeDefined();
      expect(v!.kind).toBe('event');
      expect(v!.mdc).toEqual({ system: 'urn:iso:std:iso:11073:10101', code: String(num), display: refid });
    }
  });

  it('every event row with a cited partition::term in its $source matches its numeric; unconfirmed rows say so', () => {
    const file = JSON.parse(readFileSync(join(__dirname, '../../../firmware-config/code-maps/mdc-loinc-ucum.json'), 'utf8')) as { terms: Array<{ refid: string; numeric: number; kind: string; confidence: string; $source?: string }> };
    const cited = file.terms.filter((t) => t.kind === 'event' && t.$source);
    expect(cited.length).toBeGreaterThanOrEqual(14);
    for (const t of cited) {
      const m = /\b3::?(\d+)\b/.exec(t.$source!);
      if (m) expect(t.numeric, t.refid).toBe(3 * 65536 + Number(m[1]));
      else expect(t.confidence, `${t.refid}: no cited number, so it must be marked unconfirmed`).toBe('U');
      expect(t.numeric >> 16, t.refid).toBe(3);
    }
  });
});
