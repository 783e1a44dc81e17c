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
 * single-value / wildcard / UID-list matching. Exact values of the indexed keys (modality, date range,
 * accession, patient id) are pushed down to SQLite (order_imaging indexes); the rest is matched here.
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
import type { OrderCache, WorklistFilter } from '../../gateway/src/orders/order-cache';
import type { ImagingCode, WorklistEntry } from '../../gateway/src/orders/order-types';
import { foldToAscii } from '../../gateway/src/charset/ascii-fold';
import { componentLogger } from '../../gateway/src/log/logger';
import { keyValue, matches, MWL_VR, rangeOf } from './mwl-match';

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

/** Does the record match every non-empty key of one query level? */
function levelMatches(query: DicomDataset, attrs: Attrs, level: 'top' | 'sps'): boolean {
  for (const k of keysOf(query)) {
    if (k === 'SpecificCharacterSet' || k === SPS_SEQ) continue;
    if (!(k in attrs)) continue; // a key we do not hold: returned empty, not matched (C.2.2.1.2 optional keys)
    const v = query[k];
    if (CODE_SEQS.has(k)) {
      // C.2.2.2.6 sequence matching: the item's non-empty keys against the code
      const item = Array.isArray(v) && v[0] && typeof v[0] === 'object' ? (v[0] as DicomDataset) : undefined;
      if (!item) continue;
      const c = attrs[k] as ImagingCode | undefined;
      const codeAttrs: Attrs = { CodeValue: c?.code, CodingSchemeDesignator: c?.scheme, CodeMeaning: c?.meaning };
      if (!levelMatches(item, codeAttrs, level)) return false;
      continue;
    }
    const q = keyValue(v);
    if (q === '') continue; // C.2.2.2.3 universal matching
    const have = attrs[k] as string | undefined;
    if (level === 'sps' && k === 'ScheduledStationAETitle' && !have) continue; // documented choice (header)
    if (!matches(MWL_VR[k] ?? 'LO', q, have)) return false;
  }
  return true;
}

function codeItem(c: ImagingCode | undefined, asked: DicomDataset | undefined, text: (s: string) => string): DicomDataset[] {
  if (!c) return [];
  const full: Record<string, string | undefined> = { CodeValue: c.code, CodingSchemeDesignator: c.scheme, CodeMeaning: c.meaning && text(c.meaning) };
  const keys = asked && keysOf(asked).length ? keysOf(asked) : Object.keys(full);
  const out: DicomDataset = {};
  for (const k of keys) out[k] = full[k] ?? '';
  return [out];
}

/** The response identifier: the query's keys only (universal ones filled). */
function answer(query: DicomDataset, rec: MwlRecord, ascii: boolean): DicomDataset {
  const text = ascii ? (s: string) => foldToAscii(s).replace(/[^\x20-\x7e]/g, '?') : (s: string) => s;
  const level = (q: DicomDataset, attrs: Attrs): DicomDataset => {
    const out: DicomDataset = {};
    for (const k of keysOf(q)) {
      if (k === 'SpecificCharacterSet') continue;
      const v = q[k];
      if (k === SPS_SEQ && attrs === rec.top) {
        const item = Array.isArray(v) && v[0] && typeof v[0] === 'object' ? (v[0] as DicomDataset) : undefined;
        // an empty sequence key asks for every attribute of the item (C.2.2.1.3 universal sequence)
        const asked = item && keysOf(item).length ? item : Object.fromEntries(Object.keys(rec.sps).map((x) => [x, '']));
        out[k] = [level(asked, rec.sps)];
        continue;
      }
      if (CODE_SEQS.has(k)) {
        const item = Array.isArray(v) && v[0] && typeof v[0] === 'object' ? (v[0] as DicomDataset) : undefined;
        out[k] = codeItem(attrs[k] as ImagingCode | undefined, item, text);
        continue;
      }
      if (!(k in attrs)) {
        out[k] = Array.isArray(v) || SEQUENCES.has(k) ? [] : '';
        continue;
      }
      const have = attrs[k] as string | undefined;
      out[k] = have ? text(have) : '';
    }
    return out;
  };
  const body = level(query, rec.top);
  // PS3.4 C.4.1.1.3.2 / PS3.3 C.12.1.1.2: UTF-8 declared first; ASCII answers use the default repertoire
  return ascii ? ('SpecificCharacterSet' in query ? { SpecificCharacterSet: '', ...body } : body) : { SpecificCharacterSet: 'ISO_IR 192', ...body };
}

/** SQL pre-filter from the exact values of the indexed keys (the full match is still applied afterwards). */
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
      const entries = cache.worklist(prefilterOf(query));
      const seq = query[SPS_SEQ];
      const spsQuery = Array.isArray(seq) && seq[0] && typeof seq[0] === 'object' ? (seq[0] as DicomDataset) : {};
      const out: DicomDataset[] = [];
      const fold = ascii.has(ctx.callingAeTitle.trim());
      for (const e of entries) {
        const rec = toMwlRecord(e, stations);
        if (!levelMatches(query, rec.top, 'top') || !levelMatches(spsQuery, rec.sps, 'sps')) continue;
        out.push(answer(query, rec, fold));
      }
      log.debug({ calling: ctx.callingAeTitle, candidates: entries.length, matches: out.length, ascii: fold }, 'worklist query');
      return out;
    },
  };
}
