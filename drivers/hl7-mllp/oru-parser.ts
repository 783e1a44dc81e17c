/**
 * ORU^R01 (HL7 v2.3.1 – v2.6, incl. IHE PCD-01 DEC) → ObservationDraft[]. Pure function.
 * Structure: HL7 v2.5.1 7.3.1 ORU^R01 (protocols.md §3.4); PCD-01: IHE PCD TF-2 (protocols.md §4.1).
 */
import { ParseError, UnsupportedMessageError } from '../../gateway/src/contracts/errors';
import type { Coding, ObservationDraft, ObservationStatus, ObservationValue, OrderInfo, PatientIdentifier, Subject } from '../../gateway/src/contracts/observation';
import { readHeader, type Hl7Header, type Hl7Message, type Hl7Segment } from './hl7-message';

export interface OruParseResult {
  drafts: ObservationDraft[];
  header: Hl7Header;
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

/** OBX-11 Table 0085 → FHIR Observation.status (protocols.md §6.1). */
const STATUS: Record<string, ObservationStatus> = {
  F: 'final',
  P: 'preliminary',
  C: 'corrected',
  X: 'cancelled',
  I: 'registered',
  R: 'preliminary', // results entered, not verified
  D: 'entered-in-error', // delete
  W: 'entered-in-error', // wrong
  S: 'preliminary', // partial
  U: 'final', // changed to final without retransmitting results
};

/**
 * Small built-in ISO/IEEE 11073 unit → UCUM table for the units of protocols.md §4.2 (a standard
 * mapping, not a vendor difference). Unknown MDC units keep their REFID text.
 */
const MDC_UNITS: Record<string, string> = {
  '264864': '/min', MDC_DIM_BEAT_PER_MIN: '/min',
  '264928': '/min', MDC_DIM_RESP_PER_MIN: '/min',
  '262688': '%', MDC_DIM_PERCENT: '%',
  '266016': 'mm[Hg]', MDC_DIM_MMHG: 'mm[Hg]',
  '268192': 'Cel', MDC_DIM_DEGC: 'Cel',
  '266048': 'kPa', MDC_DIM_KILO_PASCAL: 'kPa',
};

const NUMBER = /^[+-]?(\d+\.?\d*|\.\d+)([eE][+-]?\d+)?$/;

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

/**
 * Map an ORU^R01 to drafts. Throws UnsupportedMessageError (200 type, 201 event, 203 version) and
 * ParseError (with `SEG^seq^field` location) for broken content. Zero OBX is valid.
 *
 * Specimen id: SPM-2 (v2.5+ specimen segment) when present, else OBR-3 (filler order number, which
 * analyzers use for the sample barcode), else OBR-2 (placer order number).
 *
 * The drafts of one order group share their `subject`, `order` and `equipment` objects (one object,
 * many references): the store writes a shared object once (store/codec.ts). Treat drafts as read-only.
 */
export function parseOru(msg: Hl7Message): OruParseResult {
  const header = readHeader(msg);
  checkSupported(header);
  const msh = msg.segment('MSH') as Hl7Segment;
  const defaultEquipment = hdToEquipment(msh.components(3));

  const drafts: ObservationDraft[] = [];
  let patient: Subject | undefined;
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
        patient = readPid(seg);
        lastObx = undefined;
        break;
      case 'OBR': {
        finishOrder();
        const order = readObr(seg);
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
          throw new ParseError('OBX before any OBR', { location: seg.location(), hl7ErrorCode: 100 });
        }
        const dr = readObx(seg, ctx, defaultEquipment);
        ctx.drafts.push(dr);
        lastObx = dr;
        break;
      }
      case 'NTE': {
        // NTE after OBX attaches to that result (7.3.1 OBSERVATION group); NTE-3 comment
        if (lastObx) {
          const text = seg.repetitions(3).map((_, i) => seg.get(3, 1, i + 1)).join('\n');
          if (text) (lastObx.comments ??= []).push(text);
        }
        break;
      }
      case 'SPM': {
        // HL7 v2.5.1 7.4.3 SPM-2 specimen ID (EIP placer^filler)
        if (ctx && !ctx.specimenFromSpm) ctx.specimenFromSpm = seg.get(2, 1, 1, 1) || seg.get(2, 2, 1, 1) || undefined;
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
  return { drafts, header };
}

function checkSupported(h: Hl7Header): void {
  if (!h.messageType) throw new ParseError('MSH-9 message type missing', { location: 'MSH^1^9', hl7ErrorCode: 101 });
  if (!h.controlId) throw new ParseError('MSH-10 control id missing', { location: 'MSH^1^10', hl7ErrorCode: 101 });
  // Table 0357 200 unsupported message type / 201 unsupported event code / 203 unsupported version id
  if (h.messageType !== 'ORU') throw new UnsupportedMessageError(`unsupported message type ${h.messageType}^${h.trigger}`, 200);
  if (h.trigger !== 'R01') throw new UnsupportedMessageError(`unsupported event ORU^${h.trigger}`, 201);
  if (!SUPPORTED_VERSIONS.includes(h.version)) throw new UnsupportedMessageError(`unsupported HL7 version '${h.version}'`, 203);
}

function readPid(seg: Hl7Segment): Subject | undefined {
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
  const dob = seg.get(7).slice(0, 8);
  if (dob) {
    if (!/^\d{4}(\d{2}(\d{2})?)?$/.test(dob)) throw new ParseError('PID-7 is not a date', { location: seg.location(7), hl7ErrorCode: 102 });
    s.birthDate = dob;
  }
  const sex = seg.get(8);
  if (sex) s.sex = sex;
  return Object.keys(s).length ? s : undefined;
}

function readObr(seg: Hl7Segment): OrderInfo {
  // HL7 v2.5.1 7.4.1 OBR: 2 placer, 3 filler, 4 universal service id, 7 observation date/time, 24 section
  const o: OrderInfo = {};
  const placer = seg.get(2);
  const filler = seg.get(3);
  if (placer) o.placerOrderNumber = placer;
  if (filler) o.fillerOrderNumber = filler;
  const svc = codingFrom(seg, 4);
  if (svc) o.service = svc;
  const collected = hl7TimeToIso(seg.get(7), seg.location(7));
  if (collected) o.collectedAt = collected;
  const section = seg.get(24);
  if (section) o.section = section;
  return o;
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

function readObx(seg: Hl7Segment, ctx: OrderCtx, defaultEquipment: { id: string; name?: string } | undefined): ObservationDraft {
  // HL7 v2.5.1 7.4.2 OBX
  const valueType = seg.get(2);
  const code = codingFrom(seg, 3);
  if (!code) throw new ParseError('OBX-3 observation identifier missing', { location: seg.location(3), hl7ErrorCode: 101 });
  const statusCode = seg.get(11);
  const dr: ObservationDraft = { code, status: statusCode ? STATUS[statusCode] ?? 'unknown' : 'unknown' };
  if (valueType) dr.valueType = valueType;
  if (statusCode) dr.statusCode = statusCode;
  const subId = seg.get(4);
  if (subId) dr.subId = subId;

  const unitComps = seg.components(6);
  const unit = unitFrom(unitComps);
  const value = readValue(seg, valueType, unit);
  if (value) dr.value = value;

  const range = seg.get(7);
  if (range) dr.referenceRange = range;
  // OBX-8 abnormal flags repeat (Table 0078); empty repetitions ignored (Erba sends `~N`, `L~A`)
  const flags = seg.repetitions(8).map((_, i) => seg.get(8, 1, i + 1).trim()).filter((f) => f !== '');
  if (flags.length) dr.interpretation = flags;

  const effective = hl7TimeToIso(seg.get(14), seg.location(14)) ?? ctx.order.collectedAt;
  if (effective) dr.effectiveAt = effective;
  const operator = seg.get(16, 1) || seg.get(16, 2);
  if (operator) dr.operator = operator;

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
  return dr; // subject and order: set for the whole order group in finishOrder
}

function unitFrom(c: string[]): string {
  // OBX-6 CE: unit^text^system; MDC units normalised to UCUM where known (protocols.md §4.1)
  const [id = '', text = '', sys = ''] = c;
  if (sys === 'MDC') return MDC_UNITS[id] ?? MDC_UNITS[text] ?? (text || id);
  return id || text;
}

function readValue(seg: Hl7Segment, valueType: string, unit: string): ObservationValue | undefined {
  const reps = seg.repetitions(5).length;
  if (reps === 0) return undefined;
  const loc = seg.location(5);
  switch (valueType) {
    case 'NM': {
      const v = seg.get(5).trim();
      if (v === '') return undefined;
      // HL7 v2.5.1 2.A.47 NM: optional sign, digits, optional decimal point; Table 0357 102
      if (!NUMBER.test(v)) throw new ParseError(`${loc}: NM value is not numeric`, { location: loc, hl7ErrorCode: 102 });
      return { kind: 'quantity', value: Number(v), unit, decimal: v };
    }
    case 'SN': {
      // HL7 v2.5.1 2.A.70 SN: comparator^num1^separator/suffix^num2
      const [cmp = '', n1 = '', sep = '', n2 = ''] = seg.components(5);
      if (!n1 && !n2) return undefined;
      if (n1 && !NUMBER.test(n1.trim())) throw new ParseError(`${loc}: SN number is not numeric`, { location: loc, hl7ErrorCode: 102 });
      if (!sep && !n2) {
        const c = cmp === '<' || cmp === '>' || cmp === '<=' || cmp === '>=' ? cmp : undefined;
        const q: ObservationValue = { kind: 'quantity', value: Number(n1), unit, decimal: n1.trim() };
        if (c) q.comparator = c;
        return q;
      }
      return { kind: 'text', text: `${cmp}${n1}${sep}${n2}` };
    }
    case 'CE':
    case 'CWE':
    case 'CNE':
    case 'CF': {
      const code = seg.get(5, 1);
      const display = seg.get(5, 2);
      if (!code) return display ? { kind: 'text', text: display } : undefined;
      const v: ObservationValue = { kind: 'coded', system: codingSystem(seg.get(5, 3)), code };
      if (display) v.display = display;
      return v;
    }
    default: {
      const parts: string[] = [];
      for (let r = 1; r <= reps; r++) {
        const t = seg.components(5, r).join('^').replace(/\^+$/, '');
        if (t !== '') parts.push(t);
      }
      return parts.length ? { kind: 'text', text: parts.join('\n') } : undefined;
    }
  }
}
