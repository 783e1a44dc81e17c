/**
 * MQTT bedside payloads (issue 12 §2): validation and normalization to ObservationDraft.
 *
 * Topics (drivers/mqtt/README.md): `iomt/<clientId>/vitals` and `iomt/<clientId>/alarms`, JSON in UTF-8,
 * shapes in docs/schemas/vitals.schema.json and docs/schemas/alarms.schema.json (JSON Schema 2020-12).
 * There is no normative IHE/HL7 MQTT profile (protocols.md §4.4): the payload carries the same model as
 * PCD-01 (MDC code, UCUM unit, EUI-64, bed, time with zone) and PCD-04 ACM (source, priority, state, phase).
 *
 * Codes: MDC reference id (`MDC_PULS_OXIM_SAT_O2`), numeric (`150456` or 150456) or `partition::term`
 * (IEEE 11073-10101). Units: UCUM or MDC units. Both go through the shipped code map
 * (gateway/src/vitals/code-map.ts); an unknown code or unit is kept as sent and flagged `unmapped-code`,
 * never dropped. Validation errors are PayloadError (the message goes to quarantine with `reason`).
 * Numbers: a value keeps the text it was written with when that differs from the double's own text
 * (`36.80`, `120.0`, `1.50e2`): `decimal` in HL7 NM form (number-lexemes.ts), so outputs send the device's
 * precision; a non-zero number that would read as 0 is refused.
 */
import type { ObservationDraft, QualityFlag, AlarmInfo, Subject } from '../../gateway/src/contracts/observation';
import { lookupVital, normalizeUnit, unitFitsMetric, MDC_SYSTEM } from '../../gateway/src/vitals/code-map';
import { jsonNumberToNm, keptNumberTexts, NumberUnderflow } from './number-lexemes';

export const MAX_OBSERVATIONS = 200;
export const MAX_ALARMS = 100;
const MAX_TEXT = 256;
/** RFC 3339 date-time with a zone (Z or ±hh:mm): a time without zone is ambiguous (protocols.md §4.4). */
const RFC3339 = /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$/;
const EUI64 = /^[0-9A-Fa-f]{16}$/;
const PRIORITIES = ['PH', 'PM', 'PL', 'PN'] as const;
const STATES = ['inactive', 'active', 'latched', 'acknowledged', 'silenced'] as const;
const PHASES = ['start', 'start-only', 'continue', 'end', 'present', 'update', 'escalate', 'inactivate', 'de-escalate', 'reset'] as const;
const KINDS = ['physiological', 'technical'] as const;
/** HL7 Table 0078 abnormal flags a device may set on a value (as PCD-01 OBX-8); H/L/HH/LL are the usual ones. */
const TABLE_0078 = ['<', '>', 'A', 'AA', 'B', 'D', 'H', 'HH', 'I', 'L', 'LL', 'MS', 'N', 'R', 'S', 'U', 'VS', 'W'] as const;

/** A payload that does not match its schema; `path` is a JSON pointer-like location (no PHI in `message`). */
export class PayloadError extends Error {
  readonly code = 'GW_ERR_PARSE';
  constructor(readonly path: string, message: string) {
    super(`${path}: ${message}`);
    this.name = 'PayloadError';
  }
}

export type TopicKind = 'vitals' | 'alarms' | 'status';

export interface NormalizeContext {
  clientId: string;
  receivedAt: Date;
  /** |device time - receipt time| above this flags the message `device-clock-skew` (default 5 min). */
  maxSkewMs?: number;
}

export interface NormalizedPayload {
  drafts: ObservationDraft[];
  /** Message-level flags: `device-clock-skew`, `patient-unassociated`. */
  flags: string[];
  /** Device time minus receipt time (ms), for meta. */
  skewMs: number;
}

type Obj = Record<string, unknown>;

function isObj(v: unknown): v is Obj {
  return typeof v === 'object' && v !== null && !Array.isArray(v);
}

function onlyKeys(o: Obj, path: string, allowed: readonly string[]): void {
  for (const k of Object.keys(o)) if (!allowed.includes(k)) throw new PayloadError(`${path}/${k}`, 'unknown property');
}

function str(o: Obj, key: string, path: string, required: boolean, max = MAX_TEXT): string | undefined {
  const v = o[key];
  if (v === undefined) {
    if (required) throw new PayloadError(`${path}/${key}`, 'required');
    return undefined;
  }
  if (typeof v !== 'string' || v.length < 1 || v.length > max) throw new PayloadError(`${path}/${key}`, `must be a string of 1-${max} characters`);
  return v;
}

function time(o: Obj, key: string, path: string, required: boolean): string | undefined {
  const v = str(o, key, path, required, 40);
  if (v === undefined) return undefined;
  if (!RFC3339.test(v) || Number.isNaN(Date.parse(v))) throw new PayloadError(`${path}/${key}`, 'must be an RFC 3339 date-time with a zone (Z or +hh:mm)');
  return v;
}

function oneOf<T extends string>(o: Obj, key: string, path: string, values: readonly T[], required: boolean): T | undefined {
  const v = o[key];
  if (v === undefined) {
    if (required) throw new PayloadError(`${path}/${key}`, 'required');
    return undefined;
  }
  if (typeof v !== 'string' || !(values as readonly string[]).includes(v)) throw new PayloadError(`${path}/${key}`, `must be one of ${values.join(', ')}`);
  return v as T;
}

/** A code as a string: MDC reference id, numeric code (string or integer) or `partition::term`. */
function codeOf(o: Obj, key: string, path: string, required: boolean): string | undefined {
  const v = o[key];
  if (v === undefined && !required) return undefined;
  if (typeof v === 'number') {
    if (!Number.isInteger(v) || v < 0 || v > 0xffffffff) throw new PayloadError(`${path}/${key}`, 'a numeric MDC code must be an integer 0..4294967295');
    return String(v);
  }
  return str(o, key, path, true, 64);
}

/** Common envelope of both topics: time, bed, patient, eui64. */
interface Envelope {
  time: string;
  bed?: string;
  subject?: Subject;
  eui64?: string;
}

function envelope(o: Obj, listKey: string): Envelope {
  onlyKeys(o, '', ['time', 'bed', 'patient', 'eui64', listKey]);
  const t = time(o, 'time', '', true)!;
  const bed = str(o, 'bed', '', false, 64);
  const eui = str(o, 'eui64', '', false, 16);
  if (eui !== undefined && !EUI64.test(eui)) throw new PayloadError('/eui64', 'must be 16 hexadecimal digits (IEEE EUI-64)');
  let subject: Subject | undefined;
  if (o.patient !== undefined) {
    if (!isObj(o.patient)) throw new PayloadError('/patient', 'must be an object');
    onlyKeys(o.patient, '/patient', ['id', 'idType', 'authority']);
    const id = str(o.patient, 'id', '/patient', true, 64)!;
    const type = str(o.patient, 'idType', '/patient', false, 16);
    const authority = str(o.patient, 'authority', '/patient', false, 64);
    subject = { patientId: id, patientIds: [{ id, ...(type ? { type } : {}), ...(authority ? { authority } : {}) }] };
  }
  return { time: t, ...(bed ? { bed } : {}), ...(subject ? { subject } : {}), ...(eui ? { eui64: eui.toUpperCase() } : {}) };
}

const UTF8 = new TextDecoder('utf-8', { fatal: true });

/** A payload's JSON: the parsed object and the numbers that keep their text (number-lexemes.ts), by path. */
interface Parsed {
  o: Obj;
  texts: Map<string, string>;
}

function parseJson(raw: Buffer): Parsed {
  let text: string;
  try {
    text = UTF8.decode(raw);
  } catch {
    throw new PayloadError('', 'payload is not valid UTF-8');
  }
  let v: unknown;
  try {
    v = JSON.parse(text);
  } catch {
    throw new PayloadError('', 'payload is not JSON');
  }
  if (!isObj(v)) throw new PayloadError('', 'payload must be a JSON object');
  try {
    // JSON.parse turns 1e-400 into 0 and 36.80 into 36.8 without a word: the device's text is checked and kept
    return { o: v, texts: keptNumberTexts(text) };
  } catch (e) {
    if (e instanceof NumberUnderflow) throw new PayloadError('', e.message);
    throw e;
  }
}

/** A quantity value with the device's own number text (`decimal`, HL7 NM form) when it prints differently. */
function quantity(v: number, unit: string, texts: Map<string, string>, path: string): Extract<ObservationDraft['value'], { kind: 'quantity' }> {
  const q: Extract<ObservationDraft['value'], { kind: 'quantity' }> = { kind: 'quantity', value: v, unit };
  if (texts.size) {
    const t = texts.get(path);
    const nm = t === undefined ? undefined : jsonNumberToNm(t);
    // the text must read as the very value validated (never a wrong text: a stale path reads differently)
    if (nm !== undefined && Number(nm) === v) q.decimal = nm;
  }
  return q;
}

/** Code-map answers per code as sent (a monitor sends the same few codes all day); fresh objects per draft. */
const mapped = new Map<string, { code: ObservationDraft['code']; codings?: ObservationDraft['codings']; ucum?: string } | null>();
const MAX_MAPPED = 4096;

/** The MDC coding of a code as sent: mapped when the code map knows it, else kept as sent and flagged. */
function mdcCode(code: string, location: string, quality: QualityFlag[]): { code: ObservationDraft['code']; codings?: ObservationDraft['codings']; ucum?: string } {
  let m = mapped.get(code);
  if (m === undefined) {
    const hit = lookupVital(code);
    const codings = hit ? [...(hit.loinc ? [hit.loinc] : []), ...(hit.loincAlso ?? [])] : [];
    m = hit ? { code: hit.mdc, codings: codings.length ? codings : undefined, ucum: hit.ucum } : null;
    if (mapped.size >= MAX_MAPPED) mapped.clear();
    mapped.set(code, m);
  }
  if (m) return { code: { ...m.code }, codings: m.codings?.map((c) => ({ ...c })), ucum: m.ucum };
  // unknown: kept as the device sent it (MDC system when it is written as an MDC code), flagged
  quality.push({ code: 'unmapped-code', location, original: code, text: 'code not in the MDC/LOINC/UCUM code map: kept as sent' });
  const looksMdc = /^MDCX?_[A-Z0-9_]+$/.test(code) || /^\d{1,10}$/.test(code) || /^\d{1,5}::\d{1,5}$/.test(code);
  return { code: looksMdc ? { system: MDC_SYSTEM, code } : { system: 'local', code } };
}

/** Unit answers per unit as sent, then per expected UCUM unit ('' none): a monitor sends the same few all
 * day. Two levels: no key string built per observation (measured 0.2 against 2.3 µs per 10 units). */
const units = new Map<string, Map<string, { ucum?: string; fits: boolean }>>();
const MAX_UNITS = 4096;

/** The UCUM unit of a unit as sent; `expected` = the metric's usual UCUM unit in the code map, when known. */
function unitOf(unit: string, location: string, quality: QualityFlag[], expected?: string): string {
  let byExpected = units.get(unit);
  if (byExpected === undefined) {
    if (units.size >= MAX_UNITS) units.clear();
    units.set(unit, (byExpected = new Map()));
  }
  let a = byExpected.get(expected ?? '');
  if (a === undefined) {
    const u = normalizeUnit(unit);
    a = { ucum: u?.ucum, fits: !u || !expected || unitFitsMetric(u.ucum, expected) };
    if (byExpected.size < 64) byExpected.set(expected ?? '', a);
  }
  if (a.ucum === undefined) {
    quality.push({ code: 'unmapped-code', location, original: unit, text: 'unit is neither UCUM nor a known MDC unit: kept as sent' });
    return unit;
  }
  // a heart rate in mm[Hg] is not a heart rate: kept as sent, flagged (and so never downsampled away)
  if (!a.fits) quality.push({ code: 'unmapped-code', location, original: unit, text: `unit does not fit the code (expected ${expected} or a unit convertible to it): kept as sent` });
  return a.ucum;
}

function finish(env: Envelope, drafts: ObservationDraft[], ctx: NormalizeContext): NormalizedPayload {
  const skewMs = Date.parse(env.time) - ctx.receivedAt.getTime();
  const flags: string[] = [];
  // the device's time is kept as sent (its meaning); a clock far from ours is flagged, not corrected
  if (Math.abs(skewMs) > (ctx.maxSkewMs ?? 300_000)) {
    flags.push('device-clock-skew');
    // on each result too: the message flag stays in the gateway, the result's flag reaches the EMR (NTE / FHIR note)
    const text = `device time ${skewMs > 0 ? 'ahead of' : 'behind'} the gateway's by ${Math.round(Math.abs(skewMs) / 1000)} s: kept as sent`;
    for (const d of drafts) (d.quality ??= []).push({ code: 'clock-skew', location: 'time', original: env.time, text });
  }
  if (!env.subject) flags.push('patient-unassociated');
  return { drafts, flags, skewMs };
}

/** The fields every draft of one message shares. Built by assignment, not object spread: spreading
 * several small objects per observation was most of the normalization's CPU (bench:vitals profile). */
function base(env: Envelope, ctx: NormalizeContext, effectiveAt: string, cache: Map<string, string>): ObservationDraft {
  let iso = cache.get(effectiveAt);
  if (iso === undefined) {
    iso = new Date(Date.parse(effectiveAt)).toISOString();
    cache.set(effectiveAt, iso);
  }
  const d = { code: undefined as unknown as ObservationDraft['code'], status: 'preliminary', statusCode: 'R', category: 'vital-signs', effectiveAt: iso } as ObservationDraft;
  d.equipment = env.eui64 ? { id: ctx.clientId, eui64: env.eui64 } : { id: ctx.clientId };
  if (env.bed) d.location = { bed: env.bed };
  if (env.subject) d.subject = env.subject;
  return d;
}

/**
 * `iomt/<clientId>/vitals` → drafts, one per observation, in payload order. Monitor values are
 * unverified device results: status preliminary, Table 0085 `R` (as PCD-01 OBX-11, protocols.md §4.1).
 * @throws PayloadError
 */
export function normalizeVitals(raw: Buffer, ctx: NormalizeContext): NormalizedPayload {
  const { o, texts } = parseJson(raw);
  const env = envelope(o, 'observations');
  const list = o.observations;
  if (!Array.isArray(list) || list.length < 1 || list.length > MAX_OBSERVATIONS) throw new PayloadError('/observations', `must be an array of 1-${MAX_OBSERVATIONS} observations`);
  const times = new Map<string, string>();
  const drafts = list.map((item, i): ObservationDraft => {
    const p = `/observations/${i}`;
    if (!isObj(item)) throw new PayloadError(p, 'must be an object');
    onlyKeys(item, p, ['code', 'value', 'unit', 'time', 'containment', 'interpretation']);
    const code = codeOf(item, 'code', p, true)!;
    const v = item.value;
    if (typeof v !== 'number' || !Number.isFinite(v)) throw new PayloadError(`${p}/value`, 'must be a finite number');
    const unitSent = str(item, 'unit', p, false, 64);
    const t = time(item, 'time', p, false) ?? env.time;
    const containment = str(item, 'containment', p, false, 64);
    if (containment !== undefined && !/^\d+(\.\d+){0,4}$/.test(containment)) throw new PayloadError(`${p}/containment`, 'must be an MDS.VMD.CHAN.METRIC path such as 1.3.1.150456');
    // the device's own limit check (OBX-8 in PCD-01): an abnormal value passes a destination's downsampling
    const interp = item.interpretation;
    if (interp !== undefined && (!Array.isArray(interp) || interp.length < 1 || interp.length > 5 || !interp.every((f) => (TABLE_0078 as readonly unknown[]).includes(f)))) throw new PayloadError(`${p}/interpretation`, `must be an array of 1-5 HL7 Table 0078 flags (${TABLE_0078.join(' ')})`);
    const quality: QualityFlag[] = [];
    const c = mdcCode(code, `${p}/code`, quality);
    // a value without a unit gets the metric's usual UCUM unit only when the map states one (never guessed)
    const unit = unitSent !== undefined ? unitOf(unitSent, `${p}/unit`, quality, c.ucum) : c.ucum;
    if (unit === undefined) quality.push({ code: 'unmapped-code', location: `${p}/unit`, text: 'no unit sent and none known for this code' });
    const d = base(env, ctx, t, times);
    d.code = c.code;
    if (c.codings) d.codings = c.codings;
    d.valueType = 'NM';
    d.value = quantity(v, unit ?? '', texts, `observations/${i}/value`);
    if (containment) d.subId = containment;
    if (interp) d.interpretation = [...(interp as string[])];
    if (quality.length) d.quality = quality;
    return d;
  });
  return finish(env, drafts, ctx);
}

/**
 * `iomt/<clientId>/alarms` → one draft per alarm with `alarm` set (IHE PCD ACM: priority PH/PM/PL/PN,
 * state, phase, kind, id, source, text). The draft's code is the event (`MDC_EVT_LO_VAL_LT_LIM`, a vendor
 * `MDCX_` code) when sent, else the source; its value is the alarming value when sent, else the text.
 * @throws PayloadError
 */
export function normalizeAlarms(raw: Buffer, ctx: NormalizeContext): NormalizedPayload {
  const { o, texts } = parseJson(raw);
  const env = envelope(o, 'alarms');
  const list = o.alarms;
  if (!Array.isArray(list) || list.length < 1 || list.length > MAX_ALARMS) throw new PayloadError('/alarms', `must be an array of 1-${MAX_ALARMS} alarms`);
  const times = new Map<string, string>();
  const drafts = list.map((item, i): ObservationDraft => {
    const p = `/alarms/${i}`;
    if (!isObj(item)) throw new PayloadError(p, 'must be an object');
    onlyKeys(item, p, ['id', 'source', 'event', 'priority', 'state', 'phase', 'kind', 'text', 'value', 'unit', 'time']);
    const alarm: AlarmInfo = { priority: oneOf(item, 'priority', p, PRIORITIES, true)! };
    const source = codeOf(item, 'source', p, true)!;
    const event = codeOf(item, 'event', p, false);
    const id = str(item, 'id', p, true, 64)!;
    const state = oneOf(item, 'state', p, STATES, false);
    const phase = oneOf(item, 'phase', p, PHASES, false);
    const kind = oneOf(item, 'kind', p, KINDS, false);
    const text = str(item, 'text', p, false);
    const t = time(item, 'time', p, false) ?? env.time;
    Object.assign(alarm, { id, source, ...(phase ? { phase } : {}), ...(state ? { state } : {}), ...(kind ? { kind } : {}), ...(text ? { text } : {}) });
    const quality: QualityFlag[] = [];
    const c = mdcCode(event ?? source, `${p}/${event ? 'event' : 'source'}`, quality);
    let value: ObservationDraft['value'];
    if (item.value !== undefined) {
      if (typeof item.value !== 'number' || !Number.isFinite(item.value)) throw new PayloadError(`${p}/value`, 'must be a finite number');
      const unitSent = str(item, 'unit', p, false, 64);
      value = quantity(item.value, unitSent !== undefined ? unitOf(unitSent, `${p}/unit`, quality, lookupVital(source)?.ucum) : '', texts, `alarms/${i}/value`);
    } else if (item.unit !== undefined) {
      throw new PayloadError(`${p}/unit`, 'a unit needs a value');
    } else if (text) {
      value = { kind: 'text', text };
    }
    const d = base(env, ctx, t, times);
    d.code = c.code;
    if (c.codings) d.codings = c.codings;
    if (value) {
      d.valueType = value.kind === 'quantity' ? 'NM' : 'ST';
      d.value = value;
    }
    d.alarm = alarm;
    if (quality.length) d.quality = quality;
    return d;
  });
  return finish(env, drafts, ctx);
}
