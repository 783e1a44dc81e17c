/**
 * Small FHIR R4 (4.0.1) value mappings from the normalized observation (protocols.md §6.1).
 */
import { randomBytes } from 'node:crypto';
import type { Coding, ObservationStatus, ObservationValue } from '../contracts/observation';
import { isValidUcum } from '../units/ucum';
import type { FhirSiteConfig } from '../identifiers/site-config';

export const UCUM = 'http://unitsofmeasure.org';
export const LOINC = 'http://loinc.org';
export const MDC = 'urn:iso:std:iso:11073:10101';
export const V2_0203 = 'http://terminology.hl7.org/CodeSystem/v2-0203';
export const V2_0074 = 'http://terminology.hl7.org/CodeSystem/v2-0074';
export const V2_0487 = 'http://terminology.hl7.org/CodeSystem/v2-0487';
export const OBS_CATEGORY = 'http://terminology.hl7.org/CodeSystem/observation-category';
export const V3_INTERPRETATION = 'http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation';
export const DATA_ABSENT = 'http://terminology.hl7.org/CodeSystem/data-absent-reason';

export type Json = Record<string, unknown>;

/** HL7 v2.5.1 Table 0085 (OBX-11) → Observation.status (protocols.md §6.1; HL7 v2-to-FHIR OBX-11 map). */
const STATUS_FROM_0085: Record<string, ObservationStatus> = {
  F: 'final',
  U: 'final', // changed to final without retransmitting results
  C: 'corrected',
  P: 'preliminary',
  R: 'preliminary', // entered, not verified
  S: 'preliminary', // partial
  I: 'registered', // specimen in lab, results pending
  O: 'registered', // order detail only
  X: 'cancelled', // could not be obtained
  N: 'cancelled', // not asked
  D: 'entered-in-error', // delete the result
  W: 'entered-in-error', // post original as wrong
};

export function observationStatus(statusCode: string | undefined, status: ObservationStatus): ObservationStatus {
  return (statusCode && STATUS_FROM_0085[statusCode]) || status || 'unknown';
}

/** A coding's system as a FHIR URI: known URIs pass, HL7 names (LN, 99MRC) and 'local' get one. */
export function systemUri(system: string | undefined, cfg: FhirSiteConfig): string {
  const s = (system ?? '').trim();
  if (!s || s === 'local' || s === 'L') return `${cfg.systems.localCode}local`;
  if (s === 'LN' || s === 'LOINC') return LOINC;
  if (s === 'MDC') return MDC;
  if (s === 'UCUM') return UCUM;
  if (s === 'SCT' || s === 'SNM') return 'http://snomed.info/sct';
  if (/^[a-z][a-z0-9+.-]*:/i.test(s)) return s;
  return `${cfg.systems.localCode}${encodeURIComponent(s)}`;
}

export function coding(c: Coding, cfg: FhirSiteConfig): Json {
  return { system: systemUri(c.system, cfg), code: c.code, ...(c.display ? { display: c.display } : {}) };
}

/**
 * A FHIR decimal whose written precision differs from the shortest form of its number (36.80, 5.0): FHIR R4
 * 2.1.28.0.1 "decimal": the precision is significant (0.010 is not 0.01), and JSON carries it in the
 * number's text. JSON.stringify cannot write such a number, so `fhirJson` puts the text in place.
 * `valueOf` gives the number (comparisons, arithmetic); so does `toJSON` (plain JSON.stringify writes the
 * double, as before: it never shows the mark `fhirJson` uses).
 */
export class FhirDecimal {
  constructor(readonly text: string) {}
  valueOf(): number {
    return Number(this.text);
  }
  toJSON(): number {
    return Number(this.text);
  }
}

const DECIMAL_TEXT = '(-?(?:0|[1-9]\\d*)(?:\\.\\d+)?)';
const DECIMAL_GRAMMAR = new RegExp(`^${DECIMAL_TEXT}$`);

/**
 * JSON text of a FHIR resource or Bundle, with every FhirDecimal written as the number it was sent as.
 * Each FhirDecimal is written as a string holding a mark fresh for this call (128 random bits, never shown
 * anywhere), then that string is replaced by the number text: no device string (a display, a value) can
 * hold a mark made after it was written, so none becomes a bare number or breaks the JSON.
 */
export function fhirJson(resource: unknown): string {
  const mark = `\u0000fhir-decimal-${randomBytes(16).toString('hex')}:`;
  let marked = false;
  const json = JSON.stringify(resource, function (this: Record<string, unknown>, key: string, v: unknown) {
    const own = this[key];
    // a text outside the JSON number grammar (RFC 8259 6) goes out as the double
    if (!(own instanceof FhirDecimal) || !DECIMAL_GRAMMAR.test(own.text)) return v;
    marked = true;
    return mark + own.text;
  });
  if (!marked) return json;
  return json.replace(new RegExp(`"${JSON.stringify(mark).slice(1, -1).replace(/\\/g, '\\\\')}${DECIMAL_TEXT}"`, 'g'), '$1');
}

/**
 * FHIR decimal from the device's text when it is a valid decimal: its written precision is kept (a
 * FhirDecimal when it differs from the number's shortest form; `+` and leading zeros are dropped, they
 * carry none). Else the number.
 */
export function decimalOf(text: string | undefined, n?: number): number | FhirDecimal | undefined {
  const t = text?.trim();
  if (t !== undefined && /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)$/.test(t)) {
    const num = Number(t);
    // JSON number grammar (RFC 8259 6): no '+', no leading zeros, a digit on both sides of the point
    let w = t.replace(/^\+/, '');
    const neg = w.startsWith('-');
    w = w.replace(/^-/, '').replace(/\.$/, '');
    if (w.startsWith('.')) w = `0${w}`;
    w = w.replace(/^0+(?=\d)/, '');
    if (neg && num !== 0) w = `-${w}`;
    return w === String(num) ? num : new FhirDecimal(w);
  }
  return n !== undefined && Number.isFinite(n) ? n : undefined;
}

/** A Quantity: UCUM system/code only when the unit is valid UCUM (else the unit as text only). */
export function quantity(value: number | FhirDecimal | undefined, unit: string | undefined, comparator?: string): Json {
  const q: Json = {};
  if (value !== undefined) q.value = value;
  if (comparator && ['<', '<=', '>', '>='].includes(comparator)) q.comparator = comparator;
  if (unit) {
    q.unit = unit;
    if (isValidUcum(unit)) {
      q.system = UCUM;
      q.code = unit;
    }
  }
  return q;
}

/**
 * value[x] of an Observation (R4 allows Quantity, CodeableConcept, string, Range, Ratio ...). Returns the
 * element name and value, and notes for what has no place in value[x] (a unit sent with a text value).
 * ED/RP have no value[x] in R4: a string pointing to where the data went (DiagnosticReport.presentedForm).
 */
export function valueX(v: ObservationValue | undefined, cfg: FhirSiteConfig): { key?: string; value?: unknown; notes: string[] } {
  if (!v) return { notes: [] };
  switch (v.kind) {
    case 'quantity':
      return { key: 'valueQuantity', value: quantity(decimalOf(v.decimal, v.value), v.unit, v.comparator), notes: [] };
    case 'text':
      return { key: 'valueString', value: v.text, notes: v.unit ? [`unit sent with this text value: ${v.unit}`] : [] };
    case 'coded': {
      const codings = [coding({ system: v.system, code: v.code, display: v.display }, cfg)];
      if (v.alternate) codings.push(coding(v.alternate, cfg));
      const cc: Json = { coding: codings };
      if (v.originalText) cc.text = v.originalText;
      return { key: 'valueCodeableConcept', value: cc, notes: v.unit ? [`unit sent with this coded value: ${v.unit}`] : [] };
    }
    case 'structured-numeric': {
      // HL7 v2.5.1 2.A.70 SN comparator^num1^separator/suffix^num2
      const n1 = decimalOf(v.num1);
      const n2 = decimalOf(v.num2);
      const sep = v.separator ?? '';
      if (sep === '-' && n1 !== undefined && n2 !== undefined && !v.comparator) {
        return { key: 'valueRange', value: { low: quantity(n1, v.unit), high: quantity(n2, v.unit) }, notes: [] };
      }
      if ((sep === ':' || sep === '/') && n1 !== undefined && n2 !== undefined && !v.comparator) {
        return { key: 'valueRatio', value: { numerator: quantity(n1, undefined), denominator: quantity(n2, undefined) }, notes: v.unit ? [`unit: ${v.unit}`] : [] };
      }
      // a comparator FHIR has (Quantity.comparator: < <= >= >) or `=`; `<>` (not equal) has none: text below
      if (!sep && !v.num2 && n1 !== undefined && (!v.comparator || v.comparator === '=' || ['<', '<=', '>', '>='].includes(v.comparator))) {
        return { key: 'valueQuantity', value: quantity(n1, v.unit, v.comparator || undefined), notes: [] };
      }
      // `^2^+` (suffix), `<>^5`: the SN as text, nothing lost
      const text = `${v.comparator ?? ''}${v.num1 ?? ''}${sep}${v.num2 ?? ''}`;
      return { key: 'valueString', value: text, notes: v.unit ? [`unit: ${v.unit}`] : [] };
    }
    case 'encapsulated':
      return { key: 'valueString', value: `[${v.typeOfData}${v.dataSubtype ? `/${v.dataSubtype}` : ''} data, ${v.encoding}: see the DiagnosticReport presentedForm]`, notes: [] };
    case 'reference':
      return { key: 'valueString', value: v.pointer, notes: [`reference to data held by ${v.application ?? 'the sender'}${v.typeOfData ? ` (${v.typeOfData}${v.subtype ? `/${v.subtype}` : ''})` : ''}`] };
  }
}

/** HL7 Table 0078 flags that are also v3-ObservationInterpretation codes (FHIR R4 binding). */
const V3_CODES = new Set(['<', '>', 'A', 'AA', 'B', 'D', 'H', 'HH', 'I', 'L', 'LL', 'N', 'R', 'S', 'U', 'W', 'NEG', 'POS', 'IND', 'HU', 'LU', 'IE', 'NS', 'MS', 'VS']);

export function interpretation(flags: string[] | undefined, cfg: FhirSiteConfig): Json[] {
  return (flags ?? [])
    .filter((f) => f)
    .map((f) => (V3_CODES.has(f) ? { coding: [{ system: V3_INTERPRETATION, code: f }] } : { coding: [{ system: cfg.systems.deviceFlag, code: f }], text: f }));
}

/** Reference range text → ObservationReferenceRange: `a-b`, `<b`, `<=b`, `>a`; else as text. */
export function referenceRange(text: string | undefined, unit: string | undefined): Json[] {
  const t = text?.trim();
  if (!t) return [];
  const num = '([+-]?(?:\\d+(?:\\.\\d*)?|\\.\\d+))';
  let m = new RegExp(`^${num}\\s*-\\s*${num}$`).exec(t);
  if (m) return [{ low: quantity(decimalOf(m[1]), unit), high: quantity(decimalOf(m[2]), unit), text: t }];
  m = new RegExp(`^<=?\\s*${num}$`).exec(t);
  if (m) return [{ high: quantity(decimalOf(m[1]), unit), text: t }];
  m = new RegExp(`^>=?\\s*${num}$`).exec(t);
  if (m) return [{ low: quantity(decimalOf(m[1]), unit), text: t }];
  return [{ text: t }];
}

const DATE_TIME = /^\d{4}(-\d{2}(-\d{2}(T\d{2}:\d{2}(:\d{2}(\.\d+)?)?(Z|[+-]\d{2}:\d{2}))?)?)?$/;

const LOCAL_TIME = /^(\d{4}-\d{2}-\d{2})T\d{2}:\d{2}(:\d{2}(\.\d+)?)?$/;

/**
 * A FHIR dateTime (a time needs its offset, R4 2.24.0.6), else undefined. A local time without an offset
 * (HL7 TS without +ZZZZ: most analysers) gets the site's `localOffset` (`+07:00`, vn-core.json
 * localTimeOffset); with none configured it is cut to its date (still true), never dropped.
 */
export function fhirDateTime(iso: string | undefined, localOffset?: string): string | undefined {
  const s = iso?.trim();
  if (!s) return undefined;
  if (DATE_TIME.test(s)) return s;
  const m = LOCAL_TIME.exec(s);
  if (m) return localOffset ? `${s}${localOffset}` : m[1];
  return undefined;
}

/** HL7 date YYYY[MM[DD]] (or ISO) → FHIR date. */
export function fhirDate(d: string | undefined): string | undefined {
  const s = d?.trim() ?? '';
  let m = /^(\d{4})(\d{2})?(\d{2})?/.exec(s);
  if (m && !s.includes('-')) return [m[1], m[2], m[3]].filter(Boolean).join('-');
  m = /^(\d{4})(-\d{2})?(-\d{2})?/.exec(s);
  return m ? m[0] : undefined;
}

/** HL7 Table 0001 → AdministrativeGender. */
export function gender(sex: string | undefined): string | undefined {
  switch (sex?.trim().toUpperCase()) {
    case 'M':
      return 'male';
    case 'F':
      return 'female';
    case 'O':
    case 'A':
    case 'N':
      return 'other';
    case 'U':
      return 'unknown';
    default:
      return undefined;
  }
}

/** FHIR search value escaping (R4 3.1.1.4.10: `\`, `,`, `$`, `|`). */
export function searchEscape(v: string): string {
  return v.replace(/[\\,$|]/g, (c) => `\\${c}`);
}

/** `identifier=system|value` for request.ifNoneExist / conditional update URLs. */
export function identifierQuery(system: string, value: string): string {
  return `identifier=${encodeURIComponent(`${searchEscape(system)}|${searchEscape(value)}`)}`;
}
