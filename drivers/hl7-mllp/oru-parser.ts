/**
 * ORU^R01 (HL7 v2.3.1 – v2.6, incl. IHE PCD-01 DEC) → ObservationDraft[]. Pure function.
 * Structure: HL7 v2.5.1 7.3.1 ORU^R01 (protocols.md §3.4); PCD-01: IHE PCD TF-2 (protocols.md §4.1).
 */
import { ParseError, UnsupportedMessageError } from '../../gateway/src/contracts/errors';
import type { Coding, Comparator, ObservationDraft, ObservationStatus, ObservationValue, OrderInfo, PatientIdentifier, QualityFlag, Subject } from '../../gateway/src/contracts/observation';
import { readHeader, type Hl7Delimiters, type Hl7Header, type Hl7Message, type Hl7Segment } from './hl7-message';
import { pcdNormalizer } from '../../gateway/src/vitals/pcd-normalize';
import { mdcUnit } from '../../gateway/src/vitals/code-map';

export interface OruParseResult {
  drafts: ObservationDraft[];
  header: Hl7Header;
  /**
   * Parts of the message that could not become results (an OBX without OBX-3, a line that is not a
   * segment). The message is still accepted; the receiver keeps each of these in quarantine with its
   * reason, so nothing is dropped without a trace. Empty in strict mode (those are errors there).
   */
  withheld: WithheldPart[];
  /** Message-level data-quality flags (e.g. an unreadable PID-7 or OBR-7). */
  messageFlags: QualityFlag[];
}

export interface WithheldPart {
  location: string; // SEG^seq, or LINE^n for a line that is not a segment
  reason: string; // no PHI
  text: string; // the segment / line as received (PHI possible)
}

export interface OruParseOptions {
  /**
   * Strict (listener/profile option for sites that want it): any content fault is an AE, as before
   * issue 8. Default lenient: only structural faults (no MSH, unreadable encoding characters, missing
   * MSH-9/10/12) are errors; a malformed value is kept as text with a data-quality flag.
   */
  strict?: boolean;
  /** Table 0085 status for an OBX-11 that is empty (a device that never sends one). Default 'R' + flag. */
  defaultResultStatus?: string;
}

/** HL7 versions this parser accepts (MSH-12); others → AR 203. */
export const SUPPORTED_VERSIONS = ['2.3', '2.3.1', '2.4', '2.5', '2.5.1', '2.6'];

export const LOINC = 'http://loinc.org';
export const MDC = 'urn:iso:std:iso:11073:10101';

/** Table 0396 coding system name → system used in Coding (LN → LOINC, MDC → ISO/IEEE 11073; else as given). */
export function codingSystem(hl7: string): string {
  if (hl7 === 'LN') return LOINC;
  if (hl7 === 'MDC') return MDC;
  return hl7 === '' || hl7 === 'L' ? 'local' : hl7; // Table 0396 'L' = local code
}

/** OBX-11 Table 0085 (HL7 v2.5.1 7.4.2.11) → FHIR Observation.status (protocols.md §6.1). */
export const TABLE_0085: Record<string, ObservationStatus> = {
  F: 'final',
  P: 'preliminary',
  C: 'corrected',
  X: 'cancelled',
  I: 'registered',
  R: 'preliminary', // results entered, not verified
  D: 'entered-in-error', // delete
  W: 'entered-in-error', // wrong: post original as wrong (e.g. wrong patient)
  S: 'preliminary', // partial
  U: 'final', // changed to final without retransmitting results
  N: 'unknown', // not asked (2.5.1)
  O: 'registered', // order detail description only
  A: 'amended', // amended based on adjustments provided by the placer (v2.6+, tolerated)
};

// one way to match each digit (no `\d+\.?\d*`, which backtracks quadratically on a long digit run: issue 10)
const NUMBER = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?$/;

/** HL7 TS/DTM `YYYY[MM[DD[HH[MM[SS[.S+]]]]]][+/-ZZZZ]` → ISO 8601; no zone → local time without offset. */
export function hl7TimeToIso(ts: string, location: string): string | undefined {
  const t = ts.trim();
  if (!t) return undefined;
  // one message repeats the same timestamp in every OBX-14: remember the last conversion
  if (t === lastTs) return lastIso;
  const m = /^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\.\d{1,4})?([+-]\d{4})?$/.exec(t);
  if (!m) throw new ParseError(`${location}: not an HL7 date/time`, { location, hl7ErrorCode: 102 }); // Table 0357 102 data type error
  const [, y, mo, d, h, mi, s, frac, tz] = m;
  let out = y;
  if (mo) out += `-${mo}`;
  if (d) out += `-${d}`;
  if (h) out += `T${h}:${mi ?? '00'}:${s ?? '00'}${frac ?? ''}`;
  if (tz && h) out += `${tz.slice(0, 3)}:${tz.slice(3)}`;
  lastTs = t;
  lastIso = out;
  return out;
}
let lastTs = '';
let lastIso = '';

interface OrderCtx {
  order: OrderInfo;
  /** The PID before this OBR (a later PID ends the order group). */
  patient: Subject | undefined;
  specimenFromObr?: string;
  specimenFromSpm?: string;
  drafts: ObservationDraft[];
  /** IHE PCD: OBX-18 on the MDS row applies to the metrics it contains (OBX-4 containment). */
  mdsEquipment: Map<string, { id: string; name?: string }>;
}

/** Collects faults: strict → throw; lenient → keep as a data-quality flag. */
class Faults {
  constructor(readonly strict: boolean) {}
  /** A fault in a value or field: ParseError when strict, else the flag to attach. */
  fault(flag: QualityFlag, hl7ErrorCode = 102): QualityFlag {
    if (this.strict) throw new ParseError(`${flag.location}: ${flag.text ?? flag.code}`, { location: flag.location, hl7ErrorCode });
    return flag;
  }
}

/**
 * Map an ORU^R01 to drafts. Throws UnsupportedMessageError (200 type, 201 event, 203 version) and
 * ParseError (with `SEG^seq^field` location) for structural faults: missing MSH-9, MSH-10 or MSH-12
 * (the tokenizer already refused a message without MSH or with unreadable encoding characters).
 * Everything else keeps the good results (issue 8 "one bad part never costs the good parts"): a bad
 * value is kept as text with a data-quality flag, a bad date/time is flagged and left out, an OBX
 * without OBX-3 is withheld (quarantined by the receiver). With `strict`, those are ParseErrors (AE).
 * Zero OBX is valid.
 *
 * Specimen id: SPM-2 (v2.5+ specimen segment) when present, else OBR-3 (filler order number, which
 * analyzers use for the sample barcode), else OBR-2 (placer order number).
 *
 * The drafts of one order group share their `subject`, `order` and `equipment` objects (one object,
 * many references): the store writes a shared object once (store/codec.ts). Treat drafts as read-only.
 */
export function parseOru(msg: Hl7Message, opts: OruParseOptions = {}): OruParseResult {
  const header = readHeader(msg);
  // IHE PCD (MSH-21 IHE_PCD_*): normalized to MDC/LOINC/UCUM after parsing (gateway/src/vitals); undefined for lab messages
  const pcd = pcdNormalizer(msg);
  checkSupported(header, pcd !== undefined);
  const faults = new Faults(opts.strict === true);
  const msh = msg.segment('MSH') as Hl7Segment;
  const defaultEquipment = hdToEquipment(msh.components(3));

  const drafts: ObservationDraft[] = [];
  const withheld: WithheldPart[] = [];
  const messageFlags: QualityFlag[] = [];
  const d = msg.delimiters;
  for (const line of msg.damagedLines) {
    // only a lenient parse has damaged lines (parseHl7 throws otherwise)
    withheld.push({ location: `LINE^${line.position}`, reason: line.reason, text: line.text });
  }
  let patient: Subject | undefined;
  // PV1-19 of the patient group (HL7 v2.5.1 7.3.1 ORU^R01: PID, PV1, then the order groups)
  let visitNumber: string | undefined;
  let ctx: OrderCtx | undefined;
  let lastObx: ObservationDraft | undefined;

  const finishOrder = () => {
    if (!ctx) return;
    const specimenId = ctx.specimenFromSpm || ctx.specimenFromObr;
    const subject = specimenId ? { ...ctx.patient, specimenId } : ctx.patient;
    const order = Object.keys(ctx.order).length ? ctx.order : undefined;
    for (const dr of ctx.drafts) {
      if (subject) dr.subject = subject;
      if (order) dr.order = order;
      drafts.push(dr);
    }
    ctx = undefined;
  };

  for (const seg of msg.segmentList) {
    switch (seg.name) {
      case 'PID':
        finishOrder();
        patient = readPid(seg, faults, messageFlags);
        visitNumber = undefined;
        lastObx = undefined;
        break;
      case 'PV1':
        // HL7 v2.5.1 3.4.3.19 PV1-19 visit number (CX): the id is its first component (the HIS's visit key, MA_LK)
        visitNumber = seg.get(19, 1).trim() || undefined;
        lastObx = undefined;
        break;
      case 'OBR': {
        finishOrder();
        const order = readObr(seg, faults, messageFlags);
        if (visitNumber) order.visitNumber = visitNumber;
        ctx = {
          order,
          patient,
          specimenFromObr: seg.get(3) || seg.get(2) || undefined,
          drafts: [],
          mdsEquipment: new Map(),
        };
        lastObx = undefined;
        break;
      }
      case 'OBX': {
        if (!ctx) {
          // HL7 v2.5.1 7.3.1: OBX belongs to an ORDER_OBSERVATION group (after OBR); Table 0357 100
          if (faults.strict) throw new ParseError('OBX before any OBR', { location: seg.location(), hl7ErrorCode: 100 });
          messageFlags.push({ code: 'invalid-value', location: seg.location(), text: 'OBX before any OBR: results kept in an order group of their own' });
          ctx = { order: visitNumber ? { visitNumber } : {}, patient, drafts: [], mdsEquipment: new Map() };
        }
        if (!codingFrom(seg, 3)) {
          // HL7 v2.5.1 7.4.2.3 OBX-3 is required: without it there is no result to send; kept in quarantine
          if (faults.strict) throw new ParseError('OBX-3 observation identifier missing', { location: seg.location(3), hl7ErrorCode: 101 });
          withheld.push({ location: seg.location(), reason: `${seg.location(3)}: observation identifier missing (the result cannot be identified)`, text: segmentText(seg, d) });
          lastObx = undefined;
          break;
        }
        const dr = readObx(seg, ctx, defaultEquipment, faults, opts);
        pcd?.obx(dr, seg);
        ctx.drafts.push(dr);
        lastObx = dr;
        break;
      }
      case 'NTE': {
        // NTE after OBX attaches to that result (7.3.1 OBSERVATION group); NTE-3 comment (repeats: lines)
        if (lastObx) {
          const text = seg.repetitions(3).map((_, i) => seg.get(3, 1, i + 1)).join('\n');
          if (text) (lastObx.comments ??= []).push(text);
        }
        break;
      }
      case 'SPM': {
        // HL7 v2.5.1 7.4.3 SPM-2 specimen ID (EIP placer^filler), SPM-4 specimen type (Table 0487)
        if (ctx && !ctx.specimenFromSpm) ctx.specimenFromSpm = seg.get(2, 1, 1, 1) || seg.get(2, 2, 1, 1) || undefined;
        if (ctx && !ctx.order.specimenType) {
          const type = codingFrom(seg, 4);
          if (type) ctx.order.specimenType = type;
        }
        lastObx = undefined;
        break;
      }
      case 'ORC': {
        finishOrder();
        lastObx = undefined;
        break;
      }
      default:
        lastObx = undefined;
    }
  }
  finishOrder();
  const result = { drafts, header, withheld, messageFlags };
  pcd?.finish(result);
  return result;
}

function segmentText(seg: Hl7Segment, d: { field: string }): string {
  return seg.name === 'MSH' ? seg.fields.slice(2).join(d.field) : seg.fields.join(d.field);
}

function checkSupported(h: Hl7Header, pcd = false): void {
  // structural: HL7 v2.5.1 2.15.9.9/10/12 MSH-9, MSH-10, MSH-12 are required; Table 0357 101
  if (!h.messageType) throw new ParseError('MSH-9 message type missing', { location: 'MSH^1^9', hl7ErrorCode: 101 });
  if (!h.controlId) throw new ParseError('MSH-10 control id missing', { location: 'MSH^1^10', hl7ErrorCode: 101 });
  if (!h.version) throw new ParseError('MSH-12 version id missing', { location: 'MSH^1^12', hl7ErrorCode: 101 });
  // Table 0357 200 unsupported message type / 201 unsupported event code / 203 unsupported version id
  if (h.messageType !== 'ORU') throw new UnsupportedMessageError(`unsupported message type ${h.messageType}^${h.trigger}`, 200);
  // IHE PCD-04 (ACM) reports alarms as ORU^R40 (IHE PCD TF-2 3.4; protocols.md §4.4)
  if (h.trigger !== 'R01' && !(pcd && h.trigger === 'R40')) throw new UnsupportedMessageError(`unsupported event ORU^${h.trigger}`, 201);
  if (!SUPPORTED_VERSIONS.includes(h.version)) throw new UnsupportedMessageError(`unsupported HL7 version '${h.version}'`, 203);
}

function readPid(seg: Hl7Segment, faults: Faults, messageFlags: QualityFlag[]): Subject | undefined {
  // HL7 v2.5.1 3.4.2 PID: 3 identifier list (CX id^^^authority^type), 5 name, 7 DOB, 8 sex
  const ids: PatientIdentifier[] = [];
  const reps = seg.repetitions(3).length;
  for (let r = 1; r <= reps; r++) {
    const id = seg.get(3, 1, r);
    if (!id) continue;
    const pi: PatientIdentifier = { id };
    const auth = seg.get(3, 4, r, 1);
    const type = seg.get(3, 5, r);
    if (auth) pi.authority = auth;
    if (type) pi.type = type;
    ids.push(pi);
  }
  // PID-2 (external id, v2.3.1) and PID-4 (alternate id) are identifiers of the same patient: kept, after PID-3
  for (const [f, type] of [[2, 'PT'], [4, 'U']] as const) {
    const id = seg.get(f, 1);
    if (!id || ids.some((x) => x.id === id)) continue;
    const pi: PatientIdentifier = { id, type: seg.get(f, 5) || type };
    const auth = seg.get(f, 4, 1, 1);
    if (auth) pi.authority = auth;
    ids.push(pi);
  }
  const nameComps = seg.components(5, 1);
  const s: Subject = {};
  if (ids.length) {
    s.patientId = ids[0].id;
    s.patientIds = ids;
  }
  if (nameComps.slice(0, 6).some((c) => c !== '')) {
    while (nameComps.length && nameComps[nameComps.length - 1] === '') nameComps.pop();
    s.patientName = nameComps.join('^');
  }
  const dobRaw = seg.get(7);
  const dob = dobRaw.slice(0, 8);
  if (dob) {
    // HL7 v2.5.1 3.4.2.7 PID-7 DTM
    if (/^\d{4}(\d{2}(\d{2})?)?$/.test(dob)) s.birthDate = dob;
    else messageFlags.push(faults.fault({ code: 'invalid-datetime', location: seg.location(7), original: dobRaw, text: 'PID-7 is not a date: birth date left out' }));
  }
  // HL7 v2.5.1 3.4.2.8 PID-8 administrative sex, Table 0001 (A F M N O U); case and spaces are not meaning
  const sexRaw = seg.get(8);
  const sex = sexRaw.trim().toUpperCase();
  if (TABLE_0001.has(sex)) s.sex = sex;
  else if (sex) messageFlags.push(faults.fault({ code: 'invalid-value', location: seg.location(8), original: sexRaw, text: 'PID-8 is not in HL7 Table 0001: sex left out' }, 103));
  return Object.keys(s).length ? s : undefined;
}

const TABLE_0001 = new Set(['A', 'F', 'M', 'N', 'O', 'U']);

function readObr(seg: Hl7Segment, faults: Faults, messageFlags: QualityFlag[]): OrderInfo {
  // HL7 v2.5.1 7.4.1 OBR: 2 placer, 3 filler, 4 universal service id, 7 observation date/time,
  // 15 specimen source (v2.3.1–2.4: SPS, component 1 Table 0070), 24 section
  const o: OrderInfo = {};
  const placer = seg.get(2);
  const filler = seg.get(3);
  if (placer) o.placerOrderNumber = placer;
  if (filler) o.fillerOrderNumber = filler;
  const svc = codingFrom(seg, 4);
  if (svc) o.service = svc;
  const collected = timeOf(seg, 7, faults);
  if (collected.flag) messageFlags.push(collected.flag);
  if (collected.iso) o.collectedAt = collected.iso;
  const section = seg.get(24);
  if (section) o.section = section;
  const source = seg.get(15, 1, 1, 1);
  if (source) o.specimenType = { system: 'HL70070', code: source };
  return o;
}

/** An HL7 date/time field → ISO, or the flag that says why not (lenient) / ParseError (strict). */
function timeOf(seg: Hl7Segment, field: number, faults: Faults): { iso?: string; flag?: QualityFlag } {
  const raw = seg.get(field);
  try {
    return { iso: hl7TimeToIso(raw, seg.location(field)) };
  } catch (e) {
    if (faults.strict) throw e;
    return { flag: { code: 'invalid-datetime', location: seg.location(field), original: raw, text: `${seg.name}-${field} is not an HL7 date/time` } };
  }
}

function codingFrom(seg: Hl7Segment, field: number): Coding | undefined {
  // CE/CWE: 1 id, 2 text, 3 system, 4 alt id, 5 alt text, 6 alt system (HL7 v2.5.1 2.A.13)
  let code = seg.get(field, 1);
  let display = seg.get(field, 2);
  let system = seg.get(field, 3);
  if (!code && seg.get(field, 4)) {
    code = seg.get(field, 4);
    display = seg.get(field, 5);
    system = seg.get(field, 6);
  }
  if (!code) return undefined;
  const c: Coding = { system: codingSystem(system), code };
  if (display) c.display = display;
  return c;
}

function hdToEquipment(c: string[]): { id: string; name?: string } | undefined {
  // MSH-3 HD namespace^universal id^type; PCD: NAME^EUI64^EUI-64 (protocols.md §4.1)
  const [ns = '', uid = ''] = c;
  if (uid) return ns ? { id: uid, name: ns } : { id: uid };
  return ns ? { id: ns } : undefined;
}

function readObx(
  seg: Hl7Segment,
  ctx: OrderCtx,
  defaultEquipment: { id: string; name?: string } | undefined,
  faults: Faults,
  opts: OruParseOptions,
): ObservationDraft {
  // HL7 v2.5.1 7.4.2 OBX
  const valueType = seg.get(2);
  const code = codingFrom(seg, 3) as Coding;
  const quality: QualityFlag[] = [];
  if (seg.damage === 'truncated') {
    quality.push(faults.fault({ code: 'segment-truncated', location: seg.location(), text: 'segment cut off: it ran into the next segment without a terminator; what follows its last field was lost' }, 100));
  } else if (seg.damage === 'joined') {
    quality.push(faults.fault({ code: 'segment-terminator-missing', location: seg.location(), text: 'segment split off the end of the previous one (missing terminator)' }, 100));
  }
  // OBX-11 result status (Table 0085), mapped by meaning; unknown or empty → R (not verified) + flag
  const deviceStatus = seg.get(11).trim();
  let statusCode = deviceStatus.toUpperCase();
  if (!statusCode || !(statusCode in TABLE_0085)) {
    const fallback = !deviceStatus && opts.defaultResultStatus && opts.defaultResultStatus in TABLE_0085 ? opts.defaultResultStatus : undefined;
    if (fallback) statusCode = fallback;
    else {
      const flag: QualityFlag = {
        code: 'unknown-status',
        location: seg.location(11),
        ...(deviceStatus ? { original: deviceStatus } : {}),
          text: deviceStatus ? 'OBX-11 is not in HL7 Table 0085: sent as R (results entered, not verified)' : 'OBX-11 empty: sent as R (results entered, not verified)',
      };
      // an empty OBX-11 (optional before v2.5) is never an error, even strict; an unknown letter is (Table 0357 103)
      quality.push(deviceStatus ? faults.fault(flag, 103) : flag);
      statusCode = 'R';
    }
  }
  const dr: ObservationDraft = { code, status: TABLE_0085[statusCode], statusCode };
  if (valueType) dr.valueType = valueType;
  if (deviceStatus && deviceStatus !== statusCode) dr.deviceStatus = deviceStatus;
  const subId = seg.get(4);
  if (subId) dr.subId = subId;

  const unitComps = seg.components(6);
  const unit = unitFrom(unitComps);
  const value = readValue(seg, valueType, unit, faults, quality);
  if (value) dr.value = value;

  const range = seg.get(7);
  if (range) dr.referenceRange = range;
  // OBX-8 abnormal flags repeat (Table 0078); empty repetitions ignored (Erba sends `~N`, `L~A`)
  const flags = seg.repetitions(8).map((_, i) => seg.get(8, 1, i + 1).trim()).filter((f) => f !== '');
  if (flags.length) dr.interpretation = flags;

  const eff = timeOf(seg, 14, faults);
  if (eff.flag) quality.push(eff.flag);
  const effective = eff.iso ?? ctx.order.collectedAt;
  if (effective) dr.effectiveAt = effective;
  const operator = seg.get(16, 1) || seg.get(16, 2);
  if (operator) dr.operator = operator;
  // OBX-17 observation method (HL7 v2.5.1 7.4.2.17, CE; IHE PCD: AMEAS^auto-measurement^MDC ...): the first
  // repetition as sent; text only (`^APERIODIC`, CE-2) is kept with an empty code, never dropped
  const method = codingFrom(seg, 17) ?? (seg.get(17, 2) ? { system: codingSystem(seg.get(17, 3)), code: '', display: seg.get(17, 2) } : undefined);
  if (method) dr.method = method;

  // OBX-18 equipment instance identifier (EI entity^namespace^universal^type); PCD puts it on the
  // MDS row (OBX-4 `n.0.0.0`) and it applies to the metrics below it; else MSH-3.
  const eqId = seg.get(18, 1) || seg.get(18, 3);
  const mds = subId ? subId.split('.')[0] : '';
  let equipment: { id: string; name?: string } | undefined;
  if (eqId) {
    const name = seg.get(18, 2);
    equipment = name && name !== eqId ? { id: eqId, name } : { id: eqId };
    if (mds) ctx.mdsEquipment.set(mds, equipment);
  } else if (mds && ctx.mdsEquipment.has(mds)) {
    equipment = ctx.mdsEquipment.get(mds);
  } else {
    equipment = defaultEquipment;
  }
  if (equipment) dr.equipment = equipment;
  if (quality.length) dr.quality = quality;
  return dr; // subject and order: set for the whole order group in finishOrder
}

function unitFrom(c: string[]): string {
  // OBX-6 CE: unit^text^system; MDC units normalised to UCUM where known (protocols.md §4.1)
  // a haematology unit written `10^9/L` with an unescaped ^ is one unit, not unit `10` with text `9/L`
  if (c.length >= 2 && /^10$/.test(c[0]) && /^\d{1,2}(\/|$)/.test(c[1]) && (c[2] ?? '') === '') return `${c[0]}^${c[1]}`;
  const [id = '', text = '', sys = ''] = c;
  // IEEE 11073-10101 partition 4 units → UCUM from the shipped code map (firmware-config/code-maps, e.g.
  // 265987 = 4::3843 MDC_DIM_KILO_PASCAL → kPa); an MDC unit not in the map keeps its REFID text
  if (sys === 'MDC') return (mdcUnit(id) ?? mdcUnit(text))?.ucum ?? (text || id);
  return id || text;
}

// Linear-time forms (issue 10): each character has one way to match; `(?=(\s*))\2` is an atomic \s* (no backtracking into it)
const COMPARATOR = /^(<=|>=|<>|<|>|=)(?=(\s*))\2(.+)$/;
const NM_PLAIN = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)$/;
const SN_SEPARATOR = /^([+-]?(?:\d+(?:\.\d*)?|\.\d+))\s*([-:/+])\s*([+-]?(?:\d+(?:\.\d*)?|\.\d+))?$/;

/**
 * A number as sent in an NM field, read by meaning (issue 8): `4.20` → NM; `<0.5`, `>=1500` → a
 * quantity with a comparator (sent on as SN `<^0.5`, HL7 v2.5.1 2.A.70); `2-5`, `1:40`, `1/80` →
 * structured numeric (SN `^2^-^5`); undefined when it is none of these.
 */
export function readNumeric(v: string, unit: string): ObservationValue | undefined {
  // NM has no exponent (2.A.47): `1.2e3` is kept as text, never silently 1200
  if (NM_PLAIN.test(v)) return { kind: 'quantity', value: Number(v), unit, decimal: v };
  const c = COMPARATOR.exec(v);
  if (c && NM_PLAIN.test(c[3].trim()) && c[1] !== '<>' && c[1] !== '=') {
    return { kind: 'quantity', value: Number(c[3].trim()), unit, decimal: c[3].trim(), comparator: c[1] as Comparator };
  }
  const sn = SN_SEPARATOR.exec(v);
  if (sn) {
    const out: ObservationValue = { kind: 'structured-numeric', num1: sn[1], separator: sn[2], unit };
    if (sn[3] !== undefined) out.num2 = sn[3];
    else if (sn[2] !== '+') return undefined; // only `2+` may end at the separator (2.A.70 suffix)
    return out;
  }
  return undefined;
}

/** Repetitions of OBX-5 in escaped form with the standard delimiters (FT/TX kept as sent, 2.7.6). */
function formattedReps(seg: Hl7Segment, d: { component: string; subcomponent: string; escape: string; repetition: string; field: string }): string[] | undefined {
  if (d.field !== '|' || d.component !== '^' || d.repetition !== '~' || d.escape !== '\\' || d.subcomponent !== '&') return undefined;
  return seg.repetitions(5).slice();
}

function readValue(seg: Hl7Segment, valueType: string, unit: string, faults: Faults, quality: QualityFlag[]): ObservationValue | undefined {
  const reps = seg.repetitions(5).length;
  if (reps === 0) return undefined;
  const loc = seg.location(5);
  const asText = (code: 'invalid-number' | 'invalid-value', why: string): ObservationValue => {
    const original = seg.components(5).join('^');
    quality.push(faults.fault({ code, location: loc, original, text: why }));
    return unit ? { kind: 'text', text: original, unit } : { kind: 'text', text: original };
  };
  switch (valueType) {
    case 'NM': {
      // HL7 v2.5.1 2.A.47 NM: optional sign, digits, optional decimal point (no exponent, no components)
      if (reps > 1 || seg.components(5).length > 1) {
        // `^<^0.5` is an SN sent under NM; anything else with components or repetitions is kept whole as text
        const asSn = (() => {
          try {
            return reps === 1 ? readValue(seg, 'SN', unit, new Faults(true), []) : undefined;
          } catch {
            return undefined;
          }
        })();
        if (asSn && asSn.kind !== 'text') {
          if (faults.strict) throw new ParseError(`${loc}: NM value has components`, { location: loc, hl7ErrorCode: 102 });
          return asSn;
        }
        const original = seg.repetitions(5).map((_, i) => seg.components(5, i + 1).join('^')).join('~');
        quality.push(faults.fault({ code: 'invalid-number', location: loc, original, text: 'NM value with components or repetitions: kept whole as text (sent as ST)' }));
        const t: ObservationValue = { kind: 'text', text: original };
        if (unit) t.unit = unit;
        return t;
      }
      const v = seg.get(5).trim();
      if (v === '') return undefined;
      const n = readNumeric(v, unit);
      if (n && (n.kind !== 'quantity' || n.comparator === undefined) && n.kind !== 'structured-numeric') return n;
      if (n && faults.strict) throw new ParseError(`${loc}: NM value is not numeric`, { location: loc, hl7ErrorCode: 102 });
      if (n) return n; // a comparator, range or ratio in NM: the meaning is clear; sent on as SN
      return asText('invalid-number', 'NM value is not a number: kept as text (sent as ST)');
    }
    case 'SN': {
      // HL7 v2.5.1 2.A.70 SN: comparator^num1^separator/suffix^num2
      const [cmp = '', n1raw = '', sep = '', n2raw = ''] = seg.components(5);
      const n1 = n1raw.trim();
      const n2 = n2raw.trim();
      if (!n1 && !n2 && !cmp) return undefined;
      const numOk = (x: string) => x === '' || NUMBER.test(x);
      if (!numOk(n1) || !numOk(n2) || !['', '<', '>', '<=', '>=', '=', '<>'].includes(cmp) || !['', '-', '+', '/', '.', ':'].includes(sep)) {
        return asText('invalid-value', 'SN value is malformed: kept as text');
      }
      if (!sep && !n2 && n1 && cmp !== '=' && cmp !== '<>') {
        const q: ObservationValue = { kind: 'quantity', value: Number(n1), unit, decimal: n1 };
        if (cmp) q.comparator = cmp as Comparator;
        return q;
      }
      const out: ObservationValue = { kind: 'structured-numeric', unit };
      if (cmp) out.comparator = cmp;
      if (n1) out.num1 = n1;
      if (sep) out.separator = sep;
      if (n2) out.num2 = n2;
      return out;
    }
    case 'CE':
    case 'CWE':
    case 'CNE':
    case 'CF': {
      // HL7 v2.5.1 2.A.8 CE / 2.A.13 CWE: id^text^system^alt id^alt text^alt system^version^alt version^original text
      const [code = '', display = '', sys = '', altCode = '', altText = '', altSys = '', ver = '', altVer = '', original = ''] = seg.components(5);
      if (!code && !altCode) {
        const t = display || original;
        return t ? { kind: 'text', text: t } : undefined;
      }
      const v: ObservationValue = code
        ? { kind: 'coded', system: codingSystem(sys), code }
        : { kind: 'coded', system: codingSystem(altSys), code: altCode };
      if (code && display) v.display = display;
      if (!code && altText) v.display = altText;
      if (code && altCode) v.alternate = { system: codingSystem(altSys), code: altCode, ...(altText ? { display: altText } : {}) };
      if (ver) v.systemVersion = ver;
      if (altVer) v.alternateSystemVersion = altVer;
      if (original) v.originalText = original;
      if (unit) v.unit = unit;
      if (reps > 1) quality.push(faults.fault({ code: 'invalid-value', location: loc, original: seg.raw(5), text: `${reps} coded repetitions: the first is the value, all are in the raw message` }));
      return v;
    }
    case 'ED': {
      // HL7 v2.5.1 2.A.24 ED: source application^type of data^data subtype^encoding^data
      const [app = '', type = '', subtype = '', encoding = '', data = ''] = seg.components(5);
      if (!type || !encoding) return asText('invalid-value', 'ED value without type of data or encoding: kept as text');
      const v: ObservationValue = { kind: 'encapsulated', typeOfData: type, encoding, data };
      if (app) v.sourceApplication = app;
      if (subtype) v.dataSubtype = subtype;
      return v;
    }
    case 'RP': {
      // HL7 v2.5.1 2.A.65 RP: pointer^application ID^type of data^subtype
      const [pointer = '', app = '', type = '', subtype = ''] = seg.components(5);
      if (!pointer) return asText('invalid-value', 'RP value without a pointer: kept as text');
      const v: ObservationValue = { kind: 'reference', pointer };
      if (app) v.application = app;
      if (type) v.typeOfData = type;
      if (subtype) v.subtype = subtype;
      return v;
    }
    default: {
      // ST, TX, FT, IS, ID, DT, TM, DTM/TS …: every repetition kept, empty ones too (TX/FT blank lines)
      const parts: string[] = [];
      for (let r = 1; r <= reps; r++) parts.push(trimTrailing(seg.components(5, r).join('^'), '^'));
      if (parts.every((p) => p === '')) return undefined;
      const v: ObservationValue = { kind: 'text', text: parts.join('\n') };
      if (reps > 1) v.repetitions = parts;
      if (unit) v.unit = unit; // OBX-6 stays with the value whatever its type
      if (!valueType) quality.push(faults.fault({ code: 'invalid-value', location: seg.location(2), text: 'OBX-2 value type empty although OBX-5 is valued: sent as ST' }, 101));
      if (valueType === 'FT' || valueType === 'TX') {
        const f = formattedReps(seg, seg.delimiters);
        if (f && f.some((x) => /\\[.HN]/.test(x))) v.formatted = f; // only when it carries formatting commands
      }
      return v;
    }
  }
}

/** `s` without the run of `c` at its end. A loop, not `/\^+$/` (quadratic on a long run not at the end: issue 10). */
function trimTrailing(s: string, c: string): string {
  let end = s.length;
  while (end > 0 && s[end - 1] === c) end--;
  return end === s.length ? s : s.slice(0, end);
}
