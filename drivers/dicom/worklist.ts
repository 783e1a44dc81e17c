/**
 * Modality Worklist provider (issue 11 part 3; DICOM PS3.4 K.6.1, SOP class 1.2.840.10008.5.1.4.31)
 * over the gateway's order cache: the HIS/RIS orders that arrived as ORM^O01 / OMI^O23
 * (drivers/hl7-mllp/order-parser.ts, imaging rule there) become worklist items; cancelled orders are
 * not returned. The storage SCP (`dicom in`) calls `find` for each C-FIND and answers one Pending
 * (0xFF00) per returned dataset, then Success (PS3.7 9.1.2.1.6).
 *
 * Matching (PS3.4 C.2.2.2, K.6.1.2; rules in mwl-match.ts): Scheduled Station AE Title, Modality,
 * SPS Start Date/Time (single values and ranges), Patient ID, Accession Number, Patient Name (`*` `?`,
 * case- and accent-insensitive on the ASCII-folded form), and every other returned attribute by
 * single-value / wildcard / UID-list matching.
 *
 * Index (issue 11: p99 < 100 ms with 10,000 scheduled procedures): an in-memory snapshot of the
 * pending worklist items per order cache, kept current incrementally (OrderCache.worklistSince: only
 * orders changed, cancelled or moved by MPPS since the last query are re-read; an expiry reloads),
 * with each item's DICOM attributes and folded names prepared once. A query is then a scan of
 * prepared records with cheap exact pre-checks (modality, date range, accession, patient id) before
 * the full match. Durable state stays in SQLite; the snapshot is only a cache of it.
 * A key the provider does not hold is returned empty and not matched (PS3.4 C.2.2.1.2: optional
 * keys; the SCP may answer 0xFF01).
 *
 * Returned keys (PS3.4 C.2.2.1.3, K.6.1.2.2): exactly the keys of the query, universal keys filled,
 * plus Specific Character Set (0008,0005) = 'ISO_IR 192' (UTF-8, PS3.3 C.12.1.1.2) so that Vietnamese
 * names go out intact (PS3.4 C.4.1.1.3.2: present when the response uses more than the default
 * repertoire). Calling AE titles listed in `asciiAeTitles` (old consoles) get every text value folded
 * to ASCII (`Nguyễn^Văn An` → `Nguyen^Van An`; characters with no ASCII spelling → `?`) and no
 * Specific Character Set (default repertoire).
 *
 * Station AE DOCUMENTED CHOICE: ORM^O01 carries no station (protocols.md §5.3: gateway configuration).
 * `stationAeTitleByModality` gives one per modality; an item with neither an IPC-9 nor a configured
 * station matches any Scheduled Station AE Title key (the RIS did not schedule it on one station) and
 * returns it empty.
 *
 * Errors: no order cache → throws (the SCP answers 0xC000-range "unable to process").
 * PHI: nothing of the query or the answer is logged above debug.
 */
import type { DicomDataset, WorklistProvider } from './contracts';
import type { OrderCache, WorklistCursor, WorklistFilter } from '../../gateway/src/orders/order-cache';
import type { ImagingCode, WorklistEntry } from '../../gateway/src/orders/order-types';
import { foldToAscii } from '../../gateway/src/charset/ascii-fold';
import { componentLogger } from '../../gateway/src/log/logger';
import { keyValue, matches, MWL_VR, pnKey, rangeOf, wildcardRegExp } from './mwl-match';

export interface WorklistProviderOptions {
  /** Calling AE titles answered in ASCII (folded, no Specific Character Set): old consoles. Case-sensitive (PS3.5 AE). */
  asciiAeTitles?: string[];
  /** Scheduled Station AE Title per modality for orders that name none (ORM^O01). */
  stationAeTitleByModality?: Record<string, string>;
}

/** What the provider needs of the running gateway: the order cache (GatewayRuntime.orders). */
export interface WorklistRuntime {
  orders: OrderCache | undefined;
}

const SPS_SEQ = 'ScheduledProcedureStepSequence';
const CODE_SEQS = new Set(['RequestedProcedureCodeSequence', 'ScheduledProtocolCodeSequence']);
/** Known sequence keywords: an empty array in the query is an empty sequence, not an empty PN. */
const SEQUENCES = new Set([SPS_SEQ, ...CODE_SEQS, 'ReferencedStudySequence', 'ReferencedPatientSequence', 'OtherPatientIDsSequence', 'IssuerOfPatientIDQualifiersSequence']);

/** §5.3: TQ priority S→STAT, A/P/C→HIGH, R→ROUTINE ((0040,1003) Requested Procedure Priority). */
const PRIORITY: Record<string, string> = { S: 'STAT', A: 'HIGH', R: 'ROUTINE' };

type Attrs = Record<string, string | ImagingCode | undefined>;

/** One worklist item as DICOM attributes (keywords, PS3.6): the top level and its one SPS item. */
export interface MwlRecord {
  top: Attrs;
  sps: Attrs;
}

/** HL7 Table 0001 sex → DICOM (0010,0040) M F O (PS3.3 C.7.1.1); U (unknown) → empty. */
function dicomSex(s: string | undefined): string | undefined {
  if (!s) return undefined;
  const v = s.toUpperCase();
  if (v === 'M' || v === 'F' || v === 'O') return v;
  if (v === 'A' || v === 'N') return 'O';
  return undefined;
}

/** A worklist entry as the attributes a C-FIND can ask for (protocols.md §5.2 table). */
export function toMwlRecord(e: WorklistEntry, stationByModality: Record<string, string> = {}): MwlRecord {
  const im = e.imaging;
  const p = e.patient ?? {};
  const top: Attrs = {
    AccessionNumber: im.accessionNumber,
    ReferringPhysicianName: im.referringPhysician,
    PatientName: p.name,
    PatientID: p.patientId,
    IssuerOfPatientID: p.patientIds?.[0]?.authority,
    PatientBirthDate: p.birthDate && /^\d{8}$/.test(p.birthDate) ? p.birthDate : undefined,
    PatientSex: dicomSex(p.sex),
    StudyInstanceUID: im.studyInstanceUid,
    RequestingPhysician: im.requestingPhysician,
    RequestedProcedureDescription: im.requestedProcedureDescription,
    RequestedProcedureCodeSequence: im.requestedProcedureCode,
    RequestedProcedureID: im.requestedProcedureId,
    RequestedProcedurePriority: e.priority ? PRIORITY[e.priority] : undefined,
    AdmissionID: im.admissionId,
    MedicalAlerts: im.medicalAlerts,
    PlacerOrderNumberImagingServiceRequest: e.placerOrderNumber,
    FillerOrderNumberImagingServiceRequest: e.fillerOrderNumber,
  };
  const sps: Attrs = {
    ScheduledStationAETitle: im.stationAeTitle ?? stationByModality[im.modality],
    ScheduledProcedureStepStartDate: im.spsStartDate,
    ScheduledProcedureStepStartTime: im.spsStartTime,
    Modality: im.modality,
    ScheduledPerformingPhysicianName: undefined,
    ScheduledProcedureStepDescription: im.spsDescription,
    ScheduledProtocolCodeSequence: im.protocolCode,
    ScheduledProcedureStepID: im.spsId,
    ScheduledStationName: im.stationName,
    ScheduledProcedureStepLocation: im.spsLocation,
    ScheduledProcedureStepStatus: e.spsStatus,
  };
  return { top, sps };
}

/** Query keys of one level (dcmjs' `_vrMap` and group lengths dropped). */
function keysOf(ds: DicomDataset): string[] {
  return Object.keys(ds).filter((k) => k !== '_vrMap' && !/^[0-9A-Fa-f]{4}0000$/.test(k));
}

/** One matching key of a query level, compiled once per query (PS3.4 C.2.2.2). */
interface Term {
  key: string;
  vr: string;
  q: string;
  /** PN: the folded query and, with wildcards, its RegExp (mwl-match.ts). */
  pnQ?: string;
  pnRe?: RegExp;
  /** Code sequence matching (C.2.2.2.6): the item's own terms against the code. */
  code?: Term[];
}

/** The non-empty, held keys of one query level as terms (universal and unknown keys match everything). */
function compileTerms(query: DicomDataset, held: ReadonlySet<string>): Term[] {
  const terms: Term[] = [];
  for (const k of keysOf(query)) {
    if (k === 'SpecificCharacterSet' || k === SPS_SEQ) continue;
    if (!held.has(k)) continue; // a key we do not hold: returned empty, not matched (C.2.2.1.2 optional keys)
    const v = query[k];
    if (CODE_SEQS.has(k)) {
      const item = Array.isArray(v) && v[0] && typeof v[0] === 'object' ? (v[0] as DicomDataset) : undefined;
      const sub = item ? compileTerms(item, CODE_KEYS) : [];
      if (sub.length) terms.push({ key: k, vr: 'SQ', q: '', code: sub });
      continue;
    }
    const q = keyValue(v);
    if (q === '') continue; // C.2.2.2.3 universal matching
    const vr = MWL_VR[k] ?? 'LO';
    const t: Term = { key: k, vr, q };
    if (vr === 'PN') {
      t.pnQ = pnKey(q);
      if (/[*?]/.test(t.pnQ)) t.pnRe = wildcardRegExp(t.pnQ);
    }
    terms.push(t);
  }
  return terms;
}

const CODE_KEYS: ReadonlySet<string> = new Set(['CodeValue', 'CodingSchemeDesignator', 'CodeMeaning']);

/** Does a record level satisfy every term? `pn`: the item's folded PN keys (prepared once). */
function runTerms(terms: Term[], attrs: Attrs, level: 'top' | 'sps', pn?: Record<string, string>): boolean {
  for (const t of terms) {
    if (t.code) {
      const c = attrs[t.key] as ImagingCode | undefined;
      if (!runTerms(t.code, { CodeValue: c?.code, CodingSchemeDesignator: c?.scheme, CodeMeaning: c?.meaning }, level)) return false;
      continue;
    }
    const have = attrs[t.key] as string | undefined;
    if (level === 'sps' && t.key === 'ScheduledStationAETitle' && !have) continue; // documented choice (header)
    if (t.pnQ !== undefined) {
      const hk = pn?.[t.key] ?? (have ? pnKey(have) : '');
      if (!hk || !(t.pnRe ? t.pnRe.test(hk) : t.pnQ === hk)) return false;
      continue;
    }
    if (!matches(t.vr, t.q, have)) return false;
  }
  return true;
}

function codeItem(c: ImagingCode | undefined, keys: string[], text: (s: string) => string): DicomDataset[] {
  if (!c) return [];
  const full: Record<string, string | undefined> = { CodeValue: c.code, CodingSchemeDesignator: c.scheme, CodeMeaning: c.meaning && text(c.meaning) };
  const out: DicomDataset = {};
  for (const k of keys) out[k] = full[k] ?? '';
  return [out];
}

/** How to build one level of the answer: its keys in query order, compiled once per query. */
type Slot = { key: string; kind: 'value' } | { key: string; kind: 'empty'; empty: '' | [] } | { key: string; kind: 'code'; keys: string[] } | { key: string; kind: 'sps'; plan: Slot[] };

function compileAnswer(q: DicomDataset, held: ReadonlySet<string>, spsHeld: ReadonlySet<string>, top: boolean): Slot[] {
  const slots: Slot[] = [];
  for (const k of keysOf(q)) {
    if (k === 'SpecificCharacterSet') continue;
    const v = q[k];
    const item = Array.isArray(v) && v[0] && typeof v[0] === 'object' ? (v[0] as DicomDataset) : undefined;
    if (top && k === SPS_SEQ) {
      // an empty sequence key asks for every attribute of the item (C.2.2.1.3 universal sequence)
      const asked = item && keysOf(item).length ? item : Object.fromEntries([...spsHeld].map((x) => [x, '']));
      slots.push({ key: k, kind: 'sps', plan: compileAnswer(asked, spsHeld, spsHeld, false) });
    } else if (CODE_SEQS.has(k) && held.has(k)) {
      slots.push({ key: k, kind: 'code', keys: item && keysOf(item).length ? keysOf(item) : [...CODE_KEYS] });
    } else if (!held.has(k)) {
      slots.push({ key: k, kind: 'empty', empty: Array.isArray(v) || SEQUENCES.has(k) ? [] : '' });
    } else slots.push({ key: k, kind: 'value' });
  }
  return slots;
}

function fill(plan: Slot[], attrs: Attrs, rec: MwlRecord, text: (s: string) => string): DicomDataset {
  const out: DicomDataset = {};
  for (const s of plan) {
    if (s.kind === 'value') {
      const have = attrs[s.key] as string | undefined;
      out[s.key] = have ? text(have) : '';
    } else if (s.kind === 'empty') out[s.key] = Array.isArray(s.empty) ? [] : '';
    else if (s.kind === 'code') out[s.key] = codeItem(attrs[s.key] as ImagingCode | undefined, s.keys, text);
    else out[s.key] = [fill(s.plan, rec.sps, rec, text)];
  }
  return out;
}

const TOP_HELD: ReadonlySet<string> = new Set(Object.keys(toMwlRecord({ orderId: 0, imaging: { modality: '', studyInstanceUid: '' }, spsStatus: 'SCHEDULED' }).top));
const SPS_HELD: ReadonlySet<string> = new Set(Object.keys(toMwlRecord({ orderId: 0, imaging: { modality: '', studyInstanceUid: '' }, spsStatus: 'SCHEDULED' }).sps));

/** A query compiled once: its matching terms per level and its answer plan. */
export function compileQuery(query: DicomDataset): { top: Term[]; sps: Term[]; answer: (rec: MwlRecord, ascii: boolean) => DicomDataset } {
  const seq = query[SPS_SEQ];
  const spsQuery = Array.isArray(seq) && seq[0] && typeof seq[0] === 'object' ? (seq[0] as DicomDataset) : {};
  const plan = compileAnswer(query, TOP_HELD, SPS_HELD, true);
  const asksCharset = 'SpecificCharacterSet' in query;
  const fold = (s: string) => foldToAscii(s).replace(/[^\x20-\x7e]/g, '?');
  const same = (s: string) => s;
  return {
    top: compileTerms(query, TOP_HELD),
    sps: compileTerms(spsQuery, SPS_HELD),
    answer(rec, ascii) {
      const body = fill(plan, rec.top, rec, ascii ? fold : same);
      // PS3.4 C.4.1.1.3.2 / PS3.3 C.12.1.1.2: UTF-8 declared first; ASCII answers use the default repertoire
      return ascii ? (asksCharset ? { SpecificCharacterSet: '', ...body } : body) : { SpecificCharacterSet: 'ISO_IR 192', ...body };
    },
  };
}

/** One pending item, prepared once per change (a class: one shape, so the scan stays monomorphic). */
class Prepared {
  /** The indexed keys as flat strings ('' when absent) for the exact pre-checks. */
  readonly mod: string;
  readonly date: string;
  readonly acc: string;
  readonly pid: string;
  constructor(
    readonly entry: WorklistEntry,
    readonly rec: MwlRecord,
    /** Folded PN keys (mwl-match pnKey) of the PN attributes, by keyword. */
    readonly pn: Record<string, string>,
    readonly sortKey: string,
  ) {
    this.mod = entry.imaging.modality;
    this.date = entry.imaging.spsStartDate ?? '';
    this.acc = entry.imaging.accessionNumber ?? '';
    this.pid = entry.patient?.patientId ?? '';
  }
}

/** The in-memory worklist of one order cache (shared by every provider over it). */
class Snapshot {
  private cursor: WorklistCursor | undefined;
  private readonly items = new Map<number, Prepared>();
  private sorted: Prepared[] | undefined;

  constructor(private readonly cache: OrderCache, private readonly stations: Record<string, string>) {}

  /** Bring the snapshot up to date (one small query when nothing changed) and return it in SPS order. */
  current(): Prepared[] {
    const now = this.cache.worklistCursor();
    const c = this.cursor;
    if (!c || c.change !== now.change || c.progress !== now.progress || c.expire !== now.expire) {
      const r = this.cache.worklistSince(c);
      if (r.full) this.items.clear();
      for (const e of r.entries) {
        if (e.status !== 'pending') this.items.delete(e.orderId);
        else this.items.set(e.orderId, prepare(e, this.stations));
      }
      this.cursor = r.cursor;
      this.sorted = undefined;
    }
    if (!this.sorted) this.sorted = [...this.items.values()].sort((a, b) => (a.sortKey < b.sortKey ? -1 : a.sortKey > b.sortKey ? 1 : a.entry.orderId - b.entry.orderId));
    return this.sorted;
  }
}

function prepare(entry: WorklistEntry, stations: Record<string, string>): Prepared {
  const rec = toMwlRecord(entry, stations);
  const pn: Record<string, string> = {};
  for (const [k, v] of Object.entries(rec.top)) if (MWL_VR[k] === 'PN' && typeof v === 'string') pn[k] = pnKey(v);
  // SPS order: start date, then time (items without a date last)
  return new Prepared(entry, rec, pn, `${entry.imaging.spsStartDate ?? '99999999'}${entry.imaging.spsStartTime ?? ''}`);
}

const SNAPSHOTS = new WeakMap<OrderCache, Map<string, Snapshot>>();

function snapshotFor(cache: OrderCache, stations: Record<string, string>): Snapshot {
  let byConfig = SNAPSHOTS.get(cache);
  if (!byConfig) SNAPSHOTS.set(cache, (byConfig = new Map()));
  const key = JSON.stringify(stations);
  let s = byConfig.get(key);
  if (!s) byConfig.set(key, (s = new Snapshot(cache, stations)));
  return s;
}

/** Cheap exact pre-checks of the indexed keys before the full match. */
function passesPrefilter(p: Prepared, f: Required<Record<keyof WorklistFilter, string | null>>): boolean {
  if (f.modality !== null && p.mod !== f.modality) return false;
  if (f.spsDateFrom !== null && !(p.date !== '' && p.date >= f.spsDateFrom)) return false;
  if (f.spsDateTo !== null && !(p.date !== '' && p.date <= f.spsDateTo)) return false;
  if (f.accessionNumber !== null && p.acc !== f.accessionNumber) return false;
  if (f.patientId !== null && p.pid !== f.patientId) return false;
  return true;
}

/** Exact pre-filter from the query's indexed keys (the full match is still applied afterwards). */
export function prefilterOf(query: DicomDataset): WorklistFilter {
  const f: WorklistFilter = {};
  const exact = (v: unknown) => {
    const s = keyValue(v);
    return s && !/[*?\\]/.test(s) ? s : undefined;
  };
  const acc = exact(query.AccessionNumber);
  if (acc) f.accessionNumber = acc;
  const pid = exact(query.PatientID);
  if (pid) f.patientId = pid;
  const seq = query[SPS_SEQ];
  const item = Array.isArray(seq) && seq[0] && typeof seq[0] === 'object' ? (seq[0] as DicomDataset) : undefined;
  if (item) {
    const mod = exact(item.Modality);
    if (mod) f.modality = mod;
    const d = keyValue(item.ScheduledProcedureStepStartDate);
    if (d) {
      const r = rangeOf(d);
      if (!r) {
        f.spsDateFrom = d;
        f.spsDateTo = d;
      } else {
        if (r[0]) f.spsDateFrom = r[0];
        if (r[1]) f.spsDateTo = r[1];
      }
    }
  }
  return f;
}

/**
 * The worklist provider for the `dicom in` node. `runtime` is the GatewayRuntime (its order cache);
 * options come from the node's configuration.
 */
export function createWorklistProvider(runtime: WorklistRuntime, opts: WorklistProviderOptions = {}): WorklistProvider {
  const log = componentLogger('dicom-worklist');
  const ascii = new Set((opts.asciiAeTitles ?? []).map((a) => a.trim()).filter(Boolean));
  const stations = opts.stationAeTitleByModality ?? {};
  return {
    async find(query, ctx) {
      const cache = runtime.orders;
      if (!cache) throw new Error('worklist: the order cache is not available');
      const items = snapshotFor(cache, stations).current();
      const pf = prefilterOf(query);
      // one fixed shape for the hot loop
      const filter = { modality: pf.modality ?? null, spsDateFrom: pf.spsDateFrom ?? null, spsDateTo: pf.spsDateTo ?? null, accessionNumber: pf.accessionNumber ?? null, patientId: pf.patientId ?? null };
      const cq = compileQuery(query);
      const out: DicomDataset[] = [];
      const fold = ascii.has(ctx.callingAeTitle.trim());
      for (const p of items) {
        if (!passesPrefilter(p, filter)) continue;
        if (!runTerms(cq.top, p.rec.top, 'top', p.pn) || !runTerms(cq.sps, p.rec.sps, 'sps')) continue;
        out.push(cq.answer(p.rec, fold));
      }
      log.debug({ calling: ctx.callingAeTitle, items: items.length, matches: out.length, ascii: fold }, 'worklist query');
      return out;
    },
  };
}
