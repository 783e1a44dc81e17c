/**
 * E1394 / LIS02 records → ObservationDraft[] (protocols.md §2.2). Pure; throws ParseError.
 * Field positions and code layouts come from the device profile.
 */
import type { ObservationDraft, ObservationStatus, ObservationValue, OrderInfo, PatientIdentifier, Subject } from '../../gateway/src/contracts/observation';
import { ParseError } from '../../gateway/src/contracts/errors';
import { component, components, field, readHeader, readQuery, repeats, text, type AstmMessage, type AstmRecord, type Delimiters } from './records';
import { defaultProfile, type AstmProfile } from './profile';

/** Host query (Q record) in a transport-neutral form. */
export interface AstmHostQuery {
  patientId?: string;
  specimenIds: string[];
  /** Local test codes, or ['ALL']. */
  tests: string[];
  /** Q.13 request information status ('O' orders and demographics). */
  status: string;
  /** H.5 of the querying instrument (echoed as H.10 of the reply). */
  requester?: string;
}

export interface ParsedAstm {
  header: ReturnType<typeof readHeader>;
  drafts: ObservationDraft[];
  queries: AstmHostQuery[];
  terminationCode?: string;
}

/** LIS02 R.9 → FHIR status (protocols.md §2.2). */
const STATUS: Record<string, ObservationStatus> = {
  F: 'final',
  V: 'final', // operator verified
  R: 'final', // previously transmitted
  M: 'final', // MIC level
  Q: 'final', // response to query
  C: 'corrected',
  P: 'preliminary',
  S: 'preliminary', // partial
  W: 'preliminary', // warning: validity doubtful
  N: 'preliminary', // info for a new order
  I: 'registered', // pending in instrument
  X: 'cancelled', // cannot be done
};

/** `YYYYMMDD[HHMM[SS]]` (local) → ISO 8601; undefined when not a timestamp. */
export function astmTimeToIso(ts: string, utcOffset?: string): string | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})(?:(\d{2})(\d{2})(\d{2})?)?/.exec(ts.trim());
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s] = m;
  if (+mo < 1 || +mo > 12 || +d < 1 || +d > 31) return undefined;
  if (h === undefined) return `${y}-${mo}-${d}`;
  return `${y}-${mo}-${d}T${h}:${mi}:${s ?? '00'}${utcOffset ?? ''}`;
}

const NUMBER = /^([<>]=?)?\s*([+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)$/;

function parseValue(raw: string, unit: string | undefined): ObservationValue | undefined {
  const v = raw.trim();
  if (!v) return undefined;
  const m = NUMBER.exec(v);
  if (m) {
    // keep the number as sent: '4.20' states a precision that 4.2 loses (contracts/observation.ts)
    const q: ObservationValue = { kind: 'quantity', value: Number(m[2]), unit: unit ?? '', decimal: m[2] };
    if (m[1]) q.comparator = m[1] as '<' | '>' | '<=' | '>=';
    return q;
  }
  return { kind: 'text', text: v };
}

/** `low to high`, `low-high`, `low^high` → `low-high` (protocols.md §2.2 R.6). */
function referenceRange(raw: string, d: Delimiters): string | undefined {
  const comps = components(raw, d).map((c) => c.trim());
  let r: string;
  if (comps.length >= 2 && /^[-+.\d]+$/.test(comps[0]) && /^[-+.\d]+$/.test(comps[1])) r = `${comps[0]}-${comps[1]}`;
  else r = comps[0] ?? '';
  r = r.replace(/^\s*([-+]?[\d.]+)\s+to\s+([-+]?[\d.]+)\s*$/i, '$1-$2').trim();
  return r || undefined;
}

/** Local code from the universal test ID using the profile's component (and separator) rule. */
export function localTestCode(value: string, d: Delimiters, profile: AstmProfile): { code: string; name?: string } {
  const comps = components(value, d).map((c) => c.trim());
  let code = comps[profile.records.testIdComponent - 1] ?? '';
  // lenient: the profile's component is empty → first non-empty component
  if (!code) code = comps.find((c) => c) ?? '';
  const sep = profile.records.testIdSeparator;
  if (sep && code.includes(sep)) code = code.slice(0, code.indexOf(sep)); // Roche `717/` (code before '/')
  const name = profile.records.testIdComponent !== 2 ? comps[1] || undefined : undefined;
  return { code, name };
}

function trimComps(v: string, d: Delimiters): string {
  const c = components(v, d).map((x) => x.trim());
  while (c.length && !c[c.length - 1]) c.pop();
  return c.join(d.component);
}

export function parseAstmMessage(msg: AstmMessage, profile: AstmProfile = defaultProfile()): ParsedAstm {
  const d = msg.delimiters;
  const recs = msg.records;
  const header = readHeader(recs[0], d);
  const senderId = header.sender.find((s) => s) ?? undefined;
  const offset = profile.records.utcOffset;
  const drafts: ObservationDraft[] = [];
  const queries: AstmHostQuery[] = [];
  let subject: Subject | undefined;
  let order: { specimenId?: string; instrumentSpecimenId?: string; collectedAt?: string; service?: string } | undefined;
  const shared: { subjectOf?: Subject; orderOf?: typeof order; subject?: Subject; order?: OrderInfo; equipment?: { id: string; name?: string } } = {};
  let last: ObservationDraft | undefined;
  let lastType = 'H';
  let terminationCode: string | undefined;

  for (let i = 1; i < recs.length; i++) {
    const r = recs[i];
    const loc = (n: number): string => `${r.type}^${i + 1}^${n}`;
    switch (r.type) {
      case 'H':
        throw new ParseError('second H record inside one message', { location: loc(1) });
      case 'P': {
        const ids: PatientIdentifier[] = [];
        // P.3 practice-assigned (HIS), P.4 laboratory-assigned, P.5 patient ID #3 (e.g. national ID)
        const p3 = component(field(r, 3), 1, d).trim();
        const p4 = component(field(r, 4), 1, d).trim();
        const p5 = component(field(r, 5), 1, d).trim();
        if (p3) ids.push({ id: p3, type: 'PRACTICE' });
        if (p4) ids.push({ id: p4, type: 'LAB' });
        if (p5) ids.push({ id: p5, type: 'PID3' });
        subject = {};
        if (ids.length) {
          subject.patientId = ids[0].id;
          subject.patientIds = ids;
        }
        const name = trimComps(field(r, 6), d);
        if (name) subject.patientName = name;
        const dob = text(r, 8, d).trim();
        if (dob) subject.birthDate = dob.slice(0, 8);
        const sex = text(r, 9, d).trim();
        if (sex) subject.sex = sex;
        order = undefined;
        last = undefined;
        break;
      }
      case 'O': {
        // O.3 specimen ID (LIS side); O.4 instrument specimen ID, often `id^rack^pos`, padded
        const o3 = component(field(r, 3), 1, d).trim();
        const o4c = components(field(r, 4), d).map((c) => c.trim());
        const o4 = o4c[profile.records.instrumentSpecimenIdComponent - 1] || o4c.find((c) => c) || '';
        order = {
          specimenId: o3 || o4 || undefined,
          instrumentSpecimenId: o4 || undefined,
          collectedAt: astmTimeToIso(text(r, 8, d), offset),
        };
        last = undefined;
        break;
      }
      case 'R': {
        const testField = field(r, 3);
        const { code: local, name } = localTestCode(testField, d, profile);
        if (!local) throw new ParseError('R record without a test ID', { location: loc(3) });
        const mapped = profile.codeMap[local];
        const rawUnit = text(r, 5, d).trim();
        const unit = mapped?.ucum ?? (rawUnit ? profile.unitMap[rawUnit] ?? rawUnit : undefined);
        const valueRaw = components(field(r, 4), d)[profile.records.valueComponent - 1] ?? '';
        const value = parseValue(valueRaw, unit);
        const flags = repeats(field(r, 7), d)
          .map((f) => components(f, d)[0].trim())
          .filter((f) => f);
        const statusCode = text(r, 9, d).trim();
        const status: ObservationStatus = STATUS[statusCode.toUpperCase()] ?? profile.records.defaultResultStatus ?? 'unknown';
        const localCode = { system: profile.records.localCodeSystem, code: local, ...(name ? { display: name } : {}) };
        const draft: ObservationDraft = {
          code: mapped ? { system: mapped.system, code: mapped.code, ...(mapped.display ? { display: mapped.display } : {}) } : localCode,
          status,
        };
        if (mapped) draft.localCode = localCode;
        if (value) draft.value = value;
        const rr = referenceRange(field(r, 6), d);
        if (rr) draft.referenceRange = rr;
        if (flags.length) draft.interpretation = flags;
        if (statusCode) draft.statusCode = statusCode;
        const eff = astmTimeToIso(text(r, 13, d), offset) ?? astmTimeToIso(text(r, 12, d), offset) ?? order?.collectedAt ?? (header.timestamp ? astmTimeToIso(header.timestamp, offset) : undefined);
        if (eff) draft.effectiveAt = eff;
        const op = component(field(r, 11), 1, d).trim();
        if (op) draft.operator = op;
        const instr = component(field(r, 14), 1, d).trim() || senderId;
        if (instr) {
          // one equipment object per instrument id: the results share it (store/codec.ts writes it once)
          if (shared.equipment?.id !== instr) shared.equipment = senderId && senderId !== instr ? { id: instr, name: senderId } : { id: instr };
          draft.equipment = shared.equipment;
        }
        if (shared.subjectOf !== subject || shared.orderOf !== order) {
          // one subject and one order object per P/O context, shared by its results
          shared.subjectOf = subject;
          shared.orderOf = order;
          const subj: Subject = { ...(subject ?? {}) };
          if (order?.specimenId) subj.specimenId = order.specimenId;
          if (order?.instrumentSpecimenId) subj.instrumentSpecimenId = order.instrumentSpecimenId;
          shared.subject = Object.keys(subj).length ? subj : undefined;
          shared.order = undefined;
          if (order?.specimenId || order?.collectedAt) {
            shared.order = {};
            if (order.specimenId) shared.order.placerOrderNumber = order.specimenId;
            if (order.collectedAt) shared.order.collectedAt = order.collectedAt;
          }
        }
        if (shared.subject) draft.subject = shared.subject;
        if (shared.order) draft.order = shared.order;
        drafts.push(draft);
        last = draft;
        break;
      }
      case 'C': {
        // C follows the record it comments on; attached to the preceding R (C.4 text)
        const t = components(field(r, 4), d)
          .map((c) => c.trim())
          .filter((c) => c)
          .join(' ');
        if (t && last && lastType === 'R') (last.comments ??= []).push(t);
        else if (t && last && lastType === 'C') (last.comments ??= []).push(t);
        break;
      }
      case 'Q': {
        const q = readQuery(r, d);
        const pc = profile.query.patientComponent - 1;
        const sc = profile.query.specimenComponent - 1;
        const specimenIds: string[] = [];
        let patientId: string | undefined;
        for (const range of q.ranges) {
          if (range.length === 1 && range[0].toUpperCase() === 'ALL') continue;
          if (range[pc] && !patientId) patientId = range[pc];
          if (range[sc]) specimenIds.push(range[sc]);
        }
        const tests = q.tests
          .map((t) => {
            const raw = t.join(d.component);
            if (raw.trim().toUpperCase() === 'ALL') return 'ALL';
            return localTestCode(raw, d, profile).code;
          })
          .filter((t) => t);
        queries.push({
          ...(patientId ? { patientId } : {}),
          specimenIds,
          tests: tests.length ? tests : ['ALL'],
          status: q.status,
          ...(header.sender.some((s) => s) ? { requester: header.sender.join(d.component).replace(new RegExp(`\\${d.component}+$`), '') } : {}),
        });
        break;
      }
      case 'L':
        terminationCode = text(r, 3, d).trim() || undefined;
        break;
      default:
        break; // M and S pass through (LIS02 §2.1)
    }
    if (r.type !== 'C') lastType = r.type;
  }
  return { header, drafts, queries, terminationCode };
}

/** Convenience: records as the link delivers them (Buffers) → ParsedAstm. */
export function parseResults(records: AstmRecord[] | AstmMessage, profile?: AstmProfile): ObservationDraft[] {
  const msg = Array.isArray(records) ? { delimiters: { field: '|', repeat: '\\', component: '^', escape: '&' }, records } : records;
  return parseAstmMessage(msg, profile).drafts;
}
