/**
 * E1394 / LIS02 records → ObservationDraft[] (protocols.md §2.2). Pure; throws ParseError.
 * Field positions and code layouts come from the device profile.
 */
import type { Coding, Comparator, ObservationDraft, ObservationValue, OrderInfo, PatientIdentifier, QualityFlag, Subject } from '../../gateway/src/contracts/observation';
import { ParseError } from '../../gateway/src/contracts/errors';
import { component, components, field, readHeader, readQuery, repeats, text, type AstmMessage, type AstmRecord, type Delimiters } from './records';
import { defaultProfile, type AstmProfile, type CodeMapEntry } from './profile';
import { mapAstmResultStatus } from './result-status';

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

/**
 * A result kept out of `drafts` (issue 8 §6): not forwarded as the patient's result, but never lost.
 * The driver stores these with the message; the raw records are stored anyway.
 */
export interface WithheldResult {
  /** The draft as it would have been forwarded, with its quality flags. */
  draft: ObservationDraft;
  /** 'raw-signal': an instrument signal (profile `records.rawSignal`); 'no-test-code': R.3 holds no code. */
  reason: 'raw-signal' | 'no-test-code';
  /** ASTM `R^<record position>^<field>` (record position 1-based within the message, H = 1). */
  location: string;
}

export interface ParsedAstm {
  header: ReturnType<typeof readHeader>;
  drafts: ObservationDraft[];
  /** Results kept out of `drafts`, in message order. */
  withheld: WithheldResult[];
  /** An O record says O.12 `Q` (QC specimen): the message carries quality-control results, not a patient's. */
  qualityControl?: boolean;
  queries: AstmHostQuery[];
  terminationCode?: string;
}

/** `YYYYMMDD[HHMM[SS]]` (local) → ISO 8601; undefined when not a timestamp. */
export function astmTimeToIso(ts: string, utcOffset?: string): string | undefined {
  const m = /^(\d{4})(\d{2})(\d{2})(?:(\d{2})(\d{2})(\d{2})?)?/.exec(ts.trim());
  if (!m) return undefined;
  const [, y, mo, d, h, mi, s] = m;
  if (+mo < 1 || +mo > 12 || +d < 1 || +d > 31) return undefined;
  // LIS02 §2.1 timestamps YYYYMMDDHHMMSS: an hour, minute or second out of range is not a time
  if (h !== undefined && (+h > 23 || +mi > 59 || (s !== undefined && +s > 59))) return undefined;
  if (h === undefined) return `${y}-${mo}-${d}`;
  return `${y}-${mo}-${d}T${h}:${mi}:${s ?? '00'}${utcOffset ?? ''}`;
}

// one way to match each digit: `\d+\.?\d*` backtracks quadratically on a long digit run (issue 10)
const NUM = String.raw`[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?`;
const NUMBER = new RegExp(String.raw`^(<=|>=|<|>)?\s*(${NUM})$`);
/** Range `2-5`, ratio `1:40`, titer `1/80` (optionally with a comparator `<1:10`), or `2+` (HL7 v2.5.1 2.A.70 SN). */
const STRUCTURED = new RegExp(String.raw`^(<=|>=|<|>|=)?\s*(\d+(?:\.\d+)?)\s*(?:([-:/])\s*(\d+(?:\.\d+)?)|(\+))$`);

/**
 * R.4 text → value. Numbers keep the text as sent in `decimal` ('4.20'); `<0.5`, `>=2` → quantity
 * with comparator; `2-5`, `1:40`, `1/80`, `2+` → structured-numeric (numbers as sent); anything else → text.
 */
export function parseAstmValue(raw: string, unit: string | undefined): ObservationValue | undefined {
  const v = raw.trim();
  if (!v) return undefined;
  const m = NUMBER.exec(v);
  if (m) {
    // keep the number as sent: '4.20' states a precision that 4.2 loses (contracts/observation.ts)
    const q: ObservationValue = { kind: 'quantity', value: Number(m[2]), unit: unit ?? '', decimal: m[2] };
    if (m[1]) q.comparator = m[1] as Comparator;
    return q;
  }
  const s = STRUCTURED.exec(v);
  if (s) {
    const sn: ObservationValue = { kind: 'structured-numeric', num1: s[2], separator: s[3] ?? s[5], unit: unit ?? '' };
    if (s[1]) sn.comparator = s[1];
    if (s[4] !== undefined) sn.num2 = s[4];
    return sn;
  }
  return unit ? { kind: 'text', text: v, unit } : { kind: 'text', text: v }; // the unit sent with it stays
}

/** `low to high`, `low - high`, `low^high` → `low-high` (protocols.md §2.2 R.6). */
function referenceRange(raw: string, d: Delimiters): string | undefined {
  const comps = components(raw, d).map((c) => c.trim());
  let r: string;
  if (comps.length >= 2 && /^[-+.\d]+$/.test(comps[0]) && /^[-+.\d]+$/.test(comps[1])) r = `${comps[0]}-${comps[1]}`;
  else r = comps[0] ?? '';
  // trimmed first, then one \s+ on each side of the word: no two adjacent \s runs to backtrack between (issue 10)
  r = r.trim().replace(/^([-+]?[\d.]+)\s+(?:to|-)\s+([-+]?[\d.]+)$/i, '$1-$2');
  return r || undefined;
}

/** The parts of a universal test ID under the profile's layout (`records.testId`). */
export interface TestIdParts {
  /** The local test code alone ('' when the ID holds none). */
  code: string;
  name?: string;
  aspect?: string;
  analyte?: string;
  dilution?: string;
  replicate?: string;
  /** The record names the assay (layout `mainResultComponent`): the test's main result. */
  main: boolean;
}

export function readTestId(value: string, d: Delimiters, profile: AstmProfile): TestIdParts {
  const t = profile.records.testId;
  const comps = components(value, d).map((c) => c.trim());
  const at = (n?: number): string => (n ? comps[n - 1] ?? '' : '');
  let code = at(t.codeComponent);
  // lenient: the profile's component is empty → first non-empty component outside the qualifiers
  if (!code) {
    const q = t.qualifierComponents ?? {};
    const skip = new Set([q.aspect, q.analyte, q.dilution, q.replicate, t.nameComponent, t.mainResultComponent].filter((x): x is number => !!x));
    code = comps.find((c, i) => c && !skip.has(i + 1)) ?? '';
  }
  let dilution = at(t.qualifierComponents?.dilution);
  if (t.separator && code.includes(t.separator)) {
    // Roche `717/` and `717/2`: the code ends at the separator, the rest is the dilution
    const rest = code.slice(code.indexOf(t.separator) + 1).trim();
    code = code.slice(0, code.indexOf(t.separator)).trim();
    if (rest && !dilution) dilution = rest;
  }
  const parts: TestIdParts = { code, main: !!t.mainResultComponent && !!at(t.mainResultComponent) };
  const name = t.nameComponent && t.nameComponent !== t.codeComponent ? at(t.nameComponent) : '';
  if (name) parts.name = name;
  const aspect = at(t.qualifierComponents?.aspect);
  if (aspect) parts.aspect = aspect;
  const analyte = at(t.qualifierComponents?.analyte);
  if (analyte) parts.analyte = analyte;
  if (dilution) parts.dilution = dilution;
  const replicate = at(t.qualifierComponents?.replicate);
  if (replicate) parts.replicate = replicate;
  return parts;
}

/** Local code from the universal test ID (the code alone, without qualifiers: queries, order services). */
export function localTestCode(value: string, d: Delimiters, profile: AstmProfile): { code: string; name?: string } {
  const p = readTestId(value, d, profile);
  return p.name ? { code: p.code, name: p.name } : { code: p.code };
}

/**
 * Identity of one result (issue 8 §6): `code[:analyte][:aspect]` as the local code, dilution and
 * replicate as the sub-ID (`D<dilution>`, `R<replicate>`, joined by '.'; OBX-4, HL7 v2.5.1 7.4.2.4).
 */
function resultIdentity(p: TestIdParts, profile: AstmProfile): { code: string; qualified: boolean; subId?: string; suffix: string[] } {
  const t = profile.records.testId;
  const suffix: string[] = [];
  if (p.analyte && !p.main) suffix.push(p.analyte);
  if (p.aspect && !t.primaryAspects.includes(p.aspect)) suffix.push(p.aspect);
  const sub: string[] = [];
  if (p.dilution && !t.neatDilutions.some((n) => n.toUpperCase() === p.dilution!.toUpperCase())) sub.push(`D${p.dilution}`);
  if (p.replicate) sub.push(`R${p.replicate}`);
  return { code: [p.code, ...suffix].join(t.qualifierSeparator), qualified: suffix.length > 0, suffix, ...(sub.length ? { subId: sub.join('.') } : {}) };
}

function trimComps(v: string, d: Delimiters): string {
  const c = components(v, d).map((x) => x.trim());
  while (c.length && !c[c.length - 1]) c.pop();
  return c.join(d.component);
}

function coding(system: string, code: string, display?: string): Coding {
  return display ? { system, code, display } : { system, code };
}

/** O.16 `type^source` → HL7 Table 0487 through `specimenTypeMap`, else `records.defaultSpecimenType`. */
function specimenType(o16: string, profile: AstmProfile): Coding | undefined {
  const raw = o16.trim();
  if (raw) {
    const m = profile.specimenTypeMap[raw] ?? profile.specimenTypeMap[raw.toUpperCase()];
    if (m) return coding('HL70487', m);
  }
  if (profile.records.defaultSpecimenType) return coding('HL70487', profile.records.defaultSpecimenType);
  // neither mapped nor defaulted: keep the device's own value as a local code (outputs decide what SPM-4 gets)
  return raw ? coding(profile.records.localCodeSystem, raw) : undefined;
}

/** A value is "final-like" when the mapped status claims a result exists (F or C). */
const CLAIMS_RESULT = new Set(['F', 'C']);

export function parseAstmMessage(msg: AstmMessage, profile: AstmProfile = defaultProfile()): ParsedAstm {
  const d = msg.delimiters;
  const recs = msg.records;
  const header = readHeader(recs[0], d);
  const senderId = header.sender.find((s) => s) ?? undefined;
  const offset = profile.records.utcOffset;
  const rs = profile.records.rawSignal;
  const idTypes = profile.records.patientIdTypes;
  const drafts: ObservationDraft[] = [];
  const withheld: WithheldResult[] = [];
  const queries: AstmHostQuery[] = [];
  let qualityControl = false;
  let subject: Subject | undefined;
  let order: { specimenId?: string; instrumentSpecimenId?: string; collectedAt?: string; service?: Coding; specimenType?: Coding } | undefined;
  const shared: { subjectOf?: Subject; orderOf?: typeof order; subject?: Subject; order?: OrderInfo; equipment?: { id: string; name?: string } } = {};
  /** Result identities seen in the current P/O context (code + sub-ID), to keep results distinct. */
  let seen = new Set<string>();
  /** C records after H, P or O (before any R): attached to every result of that message, patient or order. */
  const messageComments: string[] = [];
  let patientComments: string[] = [];
  let orderComments: string[] = [];
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
        // LIS02 P.3 practice-assigned (HIS), P.4 laboratory-assigned, P.5 patient ID #3 (e.g. national ID);
        // CX-5 types from HL7 v2.5.1 Table 0203 (defaults MR, PI, PT; profile records.patientIdTypes)
        const p3 = component(field(r, 3), 1, d).trim();
        const p4 = component(field(r, 4), 1, d).trim();
        const p5 = component(field(r, 5), 1, d).trim();
        if (p3) ids.push({ id: p3, type: idTypes.practice });
        if (p4) ids.push({ id: p4, type: idTypes.laboratory });
        if (p5) ids.push({ id: p5, type: idTypes.third });
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
        seen = new Set();
        patientComments = [];
        orderComments = [];
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
        // LIS02 O.12 action code Q: "treat specimen as a QC test specimen": never a patient result
        if (text(r, 12, d).trim().toUpperCase() === 'Q') qualityControl = true;
        // O.5 universal test ID: the ordered service when it names exactly one test (OBR-4)
        const specField = profile.records.specimenDescriptorField;
        const tests = specField === 5 ? [] : repeats(field(r, 5), d).filter((x) => x.trim());
        const ordered = tests.map((x) => localTestCode(x, d, profile)).filter((x) => x.code);
        if (ordered.length && ordered.every((x) => x.code === ordered[0].code)) {
          // one test (Roche `^^^717/\^^^717/3` is one test twice)
          const { code, name } = ordered[0];
          const m = profile.codeMap[code];
          order.service = m ? coding(m.system, m.code, m.display) : coding(profile.records.localCodeSystem, code, name);
        }
        // O.16 specimen descriptor `type^source` → HL7 Table 0487 (SPM-4)
        const st = specimenType(component(field(r, specField), 1, d), profile);
        if (st) order.specimenType = st;
        last = undefined;
        seen = new Set();
        orderComments = [];
        break;
      }
      case 'R': {
        const parts = readTestId(field(r, 3), d, profile);
        const id = resultIdentity(parts, profile);
        const quality: QualityFlag[] = [];
        const r5 = text(r, 5, d).trim();
        // a unit-system number in R.5 (profile `unitSystemValues`) is not a unit: no unit rather than a wrong one
        const unitSystem = r5 && profile.records.unitSystemValues?.includes(r5) ? r5 : undefined;
        const rawUnit = unitSystem ? '' : r5;
        const deviceUnit = rawUnit ? profile.unitMap[rawUnit] ?? rawUnit : undefined;
        let mapped: CodeMapEntry | undefined = profile.codeMap[id.code]; // qualified codes map by their full local code (`0021:I`)
        if (mapped?.ucum && deviceUnit && deviceUnit !== mapped.ucum) {
          // the device reports another unit than the mapped code stands for (mg/dL glucose against a mmol/L
          // LOINC): neither the code nor the unit is changed; the result goes out under its local code
          quality.push({ code: 'unmapped-code', location: loc(5), original: rawUnit, text: `unit differs from the code map's unit ${mapped.ucum}: local code kept` });
          mapped = undefined;
        }
        const unit = deviceUnit ?? mapped?.ucum;
        const valueComps = components(field(r, 4), d);
        const present = profile.records.valueComponents.map((n) => (valueComps[n - 1] ?? '').trim()).filter((v) => v);
        const value = parseAstmValue(present[0] ?? '', unit);
        // LIS02 R.7 abnormal flags: each repeat, and each component of it (ARCHITECT `EXP^<`)
        const flags = repeats(field(r, 7), d).flatMap((f) => components(f, d).map((c) => c.trim()).filter((c) => c));
        const st = mapAstmResultStatus(text(r, 9, d), profile.records.defaultResultStatus);
        const display = parts.name ? (id.suffix.length ? `${parts.name} (${id.suffix.join(' ')})` : parts.name) : undefined;
        const localCode = coding(profile.records.localCodeSystem, id.code, display);
        const draft: ObservationDraft = { code: mapped ? coding(mapped.system, mapped.code, mapped.display) : localCode, status: st.fhir };
        if (unitSystem) draft.comments = [`R.5 unit system ${unitSystem} (the analyzer's unit setting): no unit sent`];
        if (mapped) draft.localCode = localCode;
        if (id.subId) draft.subId = id.subId;
        if (value) draft.value = value;
        const rr = referenceRange(field(r, 6), d);
        if (rr) draft.referenceRange = rr;
        if (flags.length) draft.interpretation = flags;
        // LIS02 R.9 → HL7 v2.5.1 Table 0085 by meaning (result-status.ts)
        let hl7 = st.hl7;
        if (st.flag === 'validity-doubtful') quality.push({ code: 'validity-doubtful', location: loc(9), original: st.device, text: 'ASTM R.9 W: warning, validity doubtful; sent as not verified' });
        if (st.flag === 'unknown-status') quality.push({ code: 'unknown-status', location: loc(9), original: st.device, text: st.device ? 'result status outside LIS02 R.9; sent as not verified' : 'no result status sent and no profile default; sent as not verified' });
        if (!parts.code) quality.push({ code: 'code-missing', location: loc(3), ...(field(r, 3) ? { original: text(r, 3, d) } : {}), text: 'no test code in the universal test ID' });
        // a flag that only says "normal" (N) is not a result on its own (LIS02 R.7)
        const informativeFlags = flags.filter((f) => f.toUpperCase() !== 'N');
        const elsewhere = valueComps.map((c) => c.trim()).filter((c) => c);
        if (!value && elsewhere.length) {
          // the value sits in another component than the profile says (`^4.4`): kept as text, flagged, not verified
          draft.value = unit ? { kind: 'text', text: elsewhere.join(' '), unit } : { kind: 'text', text: elsewhere.join(' ') };
          quality.push({ code: 'value-missing', location: loc(4), original: text(r, 4, d), text: "no value in the profile's value component: the field's other components are sent as text, not verified" });
          if (CLAIMS_RESULT.has(hl7)) {
            hl7 = 'R';
            draft.status = 'preliminary';
          }
        } else if (!value) {
          if (!informativeFlags.length && CLAIMS_RESULT.has(hl7)) {
            // a result with neither value nor an informative flag is never sent as an empty final result: X = cannot be obtained
            hl7 = 'X';
            draft.status = 'cancelled';
          }
          // flag-only results (Sysmex `Anemia` with flag A) are complete; pending (I) and not-done (X) expect no value
          if (!informativeFlags.length && st.hl7 !== 'I' && st.hl7 !== 'X') quality.push({ code: 'value-missing', location: loc(4), text: "no value in the profile's value component" });
        } else if (present.length > 1) {
          // a second value component was also filled (e.g. qualitative and quantitative): kept as a comment
          (draft.comments ??= []).push(...present.slice(1).map((v) => `also sent: ${v}`));
        }
        draft.statusCode = hl7;
        if (st.device && st.device !== hl7) draft.deviceStatus = st.device;
        // R.13 completed, else R.12 started, else the order's collection time, else H.14; a value that is
        // not a timestamp is flagged with the original (LIS02 §2.1), never turned into a wrong time
        for (const n of [13, 12]) {
          const t = text(r, n, d).trim();
          if (t && !astmTimeToIso(t, offset)) quality.push({ code: 'invalid-datetime', location: loc(n), original: t, text: `R.${n} is not an ASTM timestamp` });
        }
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
          if (order && (order.specimenId || order.collectedAt || order.service || order.specimenType)) {
            shared.order = {};
            if (order.specimenId) shared.order.placerOrderNumber = order.specimenId;
            if (order.service) shared.order.service = order.service;
            if (order.collectedAt) shared.order.collectedAt = order.collectedAt;
            if (order.specimenType) shared.order.specimenType = order.specimenType;
          }
        }
        if (shared.subject) draft.subject = shared.subject;
        if (shared.order) draft.order = shared.order;
        const ctx = [...messageComments, ...patientComments, ...orderComments];
        if (ctx.length) draft.comments = [...ctx, ...(draft.comments ?? [])];
        last = draft;
        // raw instrument signal (profile records.rawSignal): withheld unless the profile forwards it
        // case-insensitive: analyzers write `P`/`p`, `RLU`/`rlu`, `Ct`/`ct`
        const ci = (list: string[], v: string) => list.some((x) => x.toUpperCase() === v.toUpperCase());
        const raw = (!!parts.aspect && ci(rs.aspectValues, parts.aspect)) || (!!rawUnit && ci(rs.units, rawUnit));
        if (raw && rs.forward) quality.push({ code: 'raw-signal', location: loc(3), text: 'instrument raw signal, forwarded because the profile says so' });
        if (quality.length) draft.quality = quality;
        if (!parts.code) {
          withheld.push({ draft, reason: 'no-test-code', location: loc(3) });
          break;
        }
        if (raw && !rs.forward) {
          withheld.push({ draft, reason: 'raw-signal', location: loc(3) });
          break;
        }
        // two results with the same identity in one P/O context (a device glitch): the later one gets
        // its R.2 sequence number as sub-ID so an HIS never overwrites one with the other
        const key = `${draft.code.system}|${draft.code.code}|${draft.subId ?? ''}`;
        if (seen.has(key)) {
          const seq = text(r, 2, d).trim() || String(i + 1);
          draft.subId = draft.subId ? `${draft.subId}.${seq}` : seq;
        }
        seen.add(`${draft.code.system}|${draft.code.code}|${draft.subId ?? ''}`);
        drafts.push(draft);
        break;
      }
      case 'C': {
        // LIS02 C follows the record it comments on: after R (or its C) → that result; after P/O → every result of the context
        const t = components(field(r, 4), d)
          .map((c) => c.trim())
          .filter((c) => c)
          .join(' ');
        if (!t) break;
        if (lastType === 'R' && last) (last.comments ??= []).push(t);
        else if (lastType === 'O') orderComments.push(t);
        else if (lastType === 'P') patientComments.push(t);
        else if (lastType === 'H') messageComments.push(t);
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
          ...(header.sender.some((s) => s) ? { requester: trimEnd(header.sender.join(d.component), d.component) } : {}),
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
  return { header, drafts, withheld, ...(qualityControl ? { qualityControl } : {}), queries, terminationCode };
}

/** Convenience: records as the link delivers them (Buffers) → ParsedAstm. */
export function parseResults(records: AstmRecord[] | AstmMessage, profile?: AstmProfile): ObservationDraft[] {
  const msg = Array.isArray(records) ? { delimiters: { field: '|', repeat: '\\', component: '^', escape: '&' }, records } : records;
  return parseAstmMessage(msg, profile).drafts;
}

/** `s` without the run of `c` at its end (a loop: `/\^+$/` is quadratic on a long run not at the end). */
function trimEnd(s: string, c: string): string {
  let end = s.length;
  while (end > 0 && s[end - 1] === c) end--;
  return s.slice(0, end);
}
