/**
 * HIS/LIS orders → OrderUpdate[] (issue 3 part 4; protocols.md §3.5). Pure function.
 *
 *   ORM^O01 (v2.3 – v2.6; legacy since 2.5, HL7 v2.5.1 4.4.1):
 *     MSH [{NTE}] [PID [PD1] [{NTE}] [PV1 [PV2]] [{IN1..}] [GT1] [{AL1}]]
 *       {ORC [OBR|RQD|RQ1|RXO|ODS|ODT [{NTE}] [CTD] [{DG1}] [{OBX [{NTE}]}]] [{FT1}] [{CTI}] [BLG]}
 *   OML^O21 (v2.4 – v2.6; IHE LTW LAB-1, HL7 v2.5.1 4.4.6):
 *     MSH [SFT] [{NTE}] [PID [PD1] [{NTE}] [{NK1}] [PV1 [PV2]] ...]
 *       {ORC [{TQ1 [{TQ2}]}] [OBR [TCD] [{NTE}] [CTD] [{DG1}] [{OBX [TCD] [{NTE}]}]
 *                              [{SPM [{OBX}] [{SAC}]}]] [{FT1}] [{CTI}] [BLG]}
 *
 * Segments not named below (NTE, PV1, DG1, OBX, Z-segments ...) are skipped.
 *
 * SPECIMEN ID RULE (the barcode an analyzer queries with, ASTM Q.3 / O.3), per OBR:
 *   1. each SPM group under the OBR: SPM-2 (EIP placer^filler — the first non-empty of
 *      SPM-2.1.1, SPM-2.2.1), else the first SAC-3 (container id, the tube barcode) of that group;
 *      a SAC without SPM counts as its own group. An OBR with several specimens orders its tests
 *      on each of them.
 *   2. no SPM/SAC: OBR-3 (filler order number, where LIS/HIS put the sample barcode), else ORC-3,
 *      else OBR-2 (placer order number), else ORC-2.
 *   An ORC group without OBR (e.g. a CA naming only the order) uses ORC-3, else ORC-2.
 * Values are trimmed; case is kept (barcodes are case-sensitive).
 *
 * Grouping: all OBRs of one message with the same (ORC-1, specimen id) become ONE OrderUpdate whose
 * `tests` lists every OBR-4 (duplicates by code+system dropped), in message order.
 *
 * Other fields: placer = ORC-2 else OBR-2; filler = ORC-3 else OBR-3; priority = ORC-7.6 (TQ
 * priority), else TQ1-9, else OBR-27.6, else OBR-5 → S|A|R (Table 0027/0485: S/STAT → S, A/ASAP → A,
 * R/ROUTINE → R; anything else is left out); requestedAt = ORC-9 (transaction time = when ordered),
 * else OBR-6, else TQ1-7, else ORC-7.4; collectedAt = OBR-7 else SPM-17.1; specimenType = OBR-15.1
 * else SPM-4.1. Times become ISO 8601 (`hl7TimeToIso`).
 *
 *   OMI^O23 (v2.5 – v2.6; imaging order, HL7 v2.5.1 4.4.9; IHE RAD SWF RAD-4):
 *     MSH [SFT] [{NTE}] [PID [PD1] [{NTE}] [PV1 [PV2]] ...]
 *       {ORC [{TQ1 [{TQ2}]}] OBR [{NTE}] [CTD] [{DG1}] [{OBX [{NTE}]}] {IPC}}
 *
 * IMAGING RULE (issue 11 part 3; protocols.md §5.3, IHE SWF as implemented by dcm4chee-arc): an OBR
 * carries an `imaging` part (a Modality Worklist item) when
 *   - OMI^O23: always, from its IPC (exactly one IPC per OBR is taken; several → AE 100, not guessed);
 *   - ORM^O01: OBR-24 is a DICOM modality (PS3.3 C.7.3.1.1.1, `DICOM_MODALITIES`) AND one of OBR-18
 *     (accession) / OBR-19 (requested procedure id) / OBR-20 (SPS id) is filled. The second condition
 *     keeps lab orders out: HL7 Table 0074 shares letters with DICOM (SR serology, PT physical therapy).
 *   Fields: accession OBR-18 / IPC-1; requested procedure id OBR-19 / IPC-2; study UID ZDS-1 / IPC-3;
 *   SPS id OBR-20 / IPC-4; modality OBR-24 / IPC-5; protocol code OBR-4.4-6 / IPC-6; station name,
 *   location, AE IPC-7/8/9 (ORM: none, gateway configuration); SPS start ORC-7.4, TQ1-7, OBR-36, OBR-6,
 *   ORC-9 (local time as sent); SPS description OBR-4.5 else OBR-4.2; requested procedure OBR-44 else
 *   OBR-4; requesting physician OBR-16; referring physician PV1-8; admission id PV1-19 else PID-18;
 *   medical alerts OBR-13. Physicians XCN 2^3^4 → PN family^given^middle.
 */
import { ParseError, UnsupportedMessageError } from '../../gateway/src/contracts/errors';
import type { PatientIdentifier } from '../../gateway/src/contracts/observation';
import type { ImagingCode, ImagingOrder, OrderPatient, OrderPriority, OrderTest, OrderUpdate } from '../../gateway/src/orders/order-types';
import { readHeader, type Hl7Header, type Hl7Message, type Hl7Segment } from './hl7-message';
import { hl7TimeToIso } from './oru-parser';

export interface OrderParseResult {
  header: Hl7Header;
  orders: OrderUpdate[];
}

/** Message types this parser handles, with the MSH-12 versions accepted for each (others → AR 203). */
export const ORDER_MESSAGE_VERSIONS: Record<string, string[]> = {
  'ORM^O01': ['2.3', '2.3.1', '2.4', '2.5', '2.5.1', '2.6'],
  'OML^O21': ['2.4', '2.5', '2.5.1', '2.6'],
  // OMI^O23 and the IPC segment exist from v2.5 (HL7 v2.5.1 4.4.9, 4.5.6)
  'OMI^O23': ['2.5', '2.5.1', '2.6'],
};

/**
 * DICOM Modality (0008,0060) defined terms (PS3.3 C.7.3.1.1.1) for acquisition modalities a worklist
 * serves. Derived objects (SR, KO, PR, SEG, RT*, OT) are left out on purpose: an ORM whose OBR-24 is
 * one of them is taken as a lab/other order (HL7 Table 0074 SR = serology).
 */
export const DICOM_MODALITIES: ReadonlySet<string> = new Set([
  'AU', 'BDUS', 'BI', 'BMD', 'CR', 'CT', 'DG', 'DX', 'ECG', 'EPS', 'ES', 'GM', 'HD', 'IO', 'IVOCT', 'IVUS', 'LS', 'MG', 'MR',
  'NM', 'OAM', 'OCT', 'OP', 'OPM', 'OPT', 'OPV', 'PT', 'PX', 'RF', 'RG', 'SM', 'TG', 'US', 'XA', 'XC',
]);

/** true for ORM^O01 / OML^O21 (MSH-9.1^MSH-9.2), whatever the version. */
export function isOrderMessage(h: Pick<Hl7Header, 'messageType' | 'trigger'>): boolean {
  return `${h.messageType}^${h.trigger}` in ORDER_MESSAGE_VERSIONS;
}

/** ORC-1 codes that need at least one test (OBR-4). */
const NEEDS_TESTS = new Set(['NW', 'XO']);

interface SpecimenCtx {
  spmId?: string;
  sacIds: string[];
  type?: string;
  collectedAt?: string;
}

interface ObrCtx {
  seg: Hl7Segment;
  specimens: SpecimenCtx[];
  /** OMI^O23 IPC segments (HL7 v2.5.1 4.5.6) of this OBR. */
  ipcs: Hl7Segment[];
  /** ORM ZDS (dcm4chee/IHE SWF Z-segment: ZDS-1 Study Instance UID). */
  zds?: Hl7Segment;
}

/** Message-level segments the imaging part reads. */
interface ImagingCtx {
  omi: boolean;
  pid?: Hl7Segment;
  pv1?: Hl7Segment;
}

interface OrcGroup {
  orc: Hl7Segment;
  tq1?: Hl7Segment;
  obrs: ObrCtx[];
}

/**
 * Parse an ORM^O01 / OML^O21. Throws UnsupportedMessageError (200 type, 201 event, 203 version) and
 * ParseError with `SEG^seq^field` location and Table 0357 code (100 segment sequence, 101 required
 * field missing, 102 data type).
 */
export function parseOrders(msg: Hl7Message): OrderParseResult {
  const header = readHeader(msg);
  checkSupported(header);

  let patient: OrderPatient | undefined;
  let pidSeen = false;
  const groups: OrcGroup[] = [];
  let group: OrcGroup | undefined;
  let obr: ObrCtx | undefined;
  let spm: SpecimenCtx | undefined;
  const imgCtx: ImagingCtx = { omi: header.messageType === 'OMI' };

  for (const seg of msg.segmentList) {
    switch (seg.name) {
      case 'PV1':
        // patient visit (before the first ORC): PV1-8 referring doctor, PV1-19 visit number (§5.3)
        if (!group && !imgCtx.pv1) imgCtx.pv1 = seg;
        break;
      case 'IPC':
        // HL7 v2.5.1 4.5.6 imaging procedure control, inside the OBR group of an OMI^O23
        if (!obr) throw new ParseError('IPC outside an OBR group', { location: seg.location(), hl7ErrorCode: 100 });
        obr.ipcs.push(seg);
        break;
      case 'ZDS':
        if (obr && !obr.zds) obr.zds = seg;
        break;
      case 'PID':
        // one patient per message, before the first ORC (4.4.1 / 4.4.6). A PID inside an ORDER is the
        // OML PRIOR_RESULT group, which we do not take apart. Table 0357 100 segment sequence error.
        if (pidSeen || group) {
          throw new ParseError('PID after an ORC or a second PID (prior results / several patients are not supported)', { location: seg.location(), hl7ErrorCode: 100 });
        }
        pidSeen = true;
        imgCtx.pid = seg;
        patient = readPatient(seg);
        break;
      case 'ORC':
        group = { orc: seg, obrs: [] };
        groups.push(group);
        obr = undefined;
        spm = undefined;
        break;
      case 'TQ1':
        // OML ORDER/TIMING (4.4.6); the first TQ1 of the group is the one that counts
        if (group && !group.tq1) group.tq1 = seg;
        break;
      case 'OBR':
        if (!group) throw new ParseError('OBR before any ORC', { location: seg.location(), hl7ErrorCode: 100 });
        // ORM allows one OBR per ORC (ORDER_DETAIL); a further OBR without its own ORC is tolerated
        // (HIS do send it) and belongs to the same ORC.
        obr = { seg, specimens: [], ipcs: [] };
        group.obrs.push(obr);
        spm = undefined;
        break;
      case 'SPM':
        // HL7 v2.5.1 7.4.3 SPM-2 specimen ID (EIP placer^filler), SPM-4 type, SPM-17 collection time
        if (!obr) throw new ParseError('SPM outside an OBR group', { location: seg.location(), hl7ErrorCode: 100 });
        spm = { sacIds: [] };
        {
          const id = (seg.get(2, 1, 1, 1).trim() || seg.get(2, 2, 1, 1).trim()) || undefined;
          if (id) spm.spmId = id;
          const type = seg.get(4, 1, 1, 1).trim();
          if (type) spm.type = type;
          const coll = hl7TimeToIso(seg.get(17, 1, 1, 1), seg.location(17));
          if (coll) spm.collectedAt = coll;
        }
        obr.specimens.push(spm);
        break;
      case 'SAC': {
        // HL7 v2.5.1 13.4.3 SAC-3 container identifier (the tube barcode)
        if (!obr) throw new ParseError('SAC outside an OBR group', { location: seg.location(), hl7ErrorCode: 100 });
        const id = seg.get(3, 1, 1, 1).trim();
        if (!spm) {
          spm = { sacIds: [] };
          obr.specimens.push(spm);
        }
        if (id) spm.sacIds.push(id);
        break;
      }
      default:
        break;
    }
  }
  if (groups.length === 0) {
    // ORM/OML need at least one ORDER group (ORC is required in it). Table 0357 100
    throw new ParseError('no ORC segment', { location: 'ORC^1', hl7ErrorCode: 100 });
  }

  const out: OrderUpdate[] = [];
  const byKey = new Map<string, OrderUpdate>();
  // tests already in each merged order, by code and system (a scan per test was quadratic: issue 10)
  const testKeys = new Map<OrderUpdate, Set<string>>();
  for (const g of groups) {
    for (const u of groupUpdates(g, patient, imgCtx)) {
      const key = `${u.control}\u0000${u.specimenId}`;
      const prev = byKey.get(key);
      if (!prev) {
        byKey.set(key, u);
        testKeys.set(u, new Set(u.tests.map(testKey)));
        out.push(u);
      } else {
        merge(prev, u, testKeys.get(prev) as Set<string>);
      }
    }
  }
  return { header, orders: out };
}

function checkSupported(h: Hl7Header): void {
  if (!h.messageType) throw new ParseError('MSH-9 message type missing', { location: 'MSH^1^9', hl7ErrorCode: 101 });
  if (!h.controlId) throw new ParseError('MSH-10 control id missing', { location: 'MSH^1^10', hl7ErrorCode: 101 });
  // Table 0357 200 unsupported message type / 201 unsupported event code / 203 unsupported version id
  if (h.messageType !== 'ORM' && h.messageType !== 'OML' && h.messageType !== 'OMI') throw new UnsupportedMessageError(`unsupported message type ${h.messageType}^${h.trigger}`, 200);
  const versions = ORDER_MESSAGE_VERSIONS[`${h.messageType}^${h.trigger}`];
  if (!versions) throw new UnsupportedMessageError(`unsupported event ${h.messageType}^${h.trigger}`, 201);
  if (!versions.includes(h.version)) throw new UnsupportedMessageError(`unsupported HL7 version '${h.version}' for ${h.messageType}^${h.trigger}`, 203);
}

function groupUpdates(g: OrcGroup, patient: OrderPatient | undefined, imgCtx: ImagingCtx): OrderUpdate[] {
  const orc = g.orc;
  // HL7 v2.5.1 4.5.1 ORC-1 order control (Table 0119) is required
  const control = orc.get(1).trim().toUpperCase();
  if (!control) throw new ParseError('ORC-1 order control missing', { location: orc.location(1), hl7ErrorCode: 101 });
  const orcPlacer = orc.get(2, 1, 1, 1).trim();
  const orcFiller = orc.get(3, 1, 1, 1).trim();

  const base = (): Omit<OrderUpdate, 'specimenId' | 'tests'> => {
    const b: Omit<OrderUpdate, 'specimenId' | 'tests'> = { control };
    if (patient) b.patient = clonePatient(patient);
    return b;
  };

  if (g.obrs.length === 0) {
    if (NEEDS_TESTS.has(control)) {
      // a new/changed order must name what to do: the OBR is missing. Table 0357 100
      throw new ParseError(`ORC-1 ${control} without an OBR`, { location: orc.location(), hl7ErrorCode: 100 });
    }
    const specimenId = orcFiller || orcPlacer;
    if (!specimenId) throw new ParseError('no order/specimen number (ORC-3, ORC-2)', { location: orc.location(3), hl7ErrorCode: 101 });
    const u: OrderUpdate = { ...base(), specimenId, tests: [] };
    if (orcPlacer) u.placerOrderNumber = orcPlacer;
    if (orcFiller) u.fillerOrderNumber = orcFiller;
    const p = priorityOf(orc, g.tq1, undefined);
    if (p) u.priority = p;
    const req = requestedAtOf(orc, g.tq1, undefined);
    if (req) u.requestedAt = req;
    return [u];
  }

  const out: OrderUpdate[] = [];
  for (const o of g.obrs) {
    const seg = o.seg;
    // HL7 v2.5.1 4.5.3 OBR: 2 placer, 3 filler, 4 universal service id, 5 priority (≤2.4), 6 requested,
    // 7 observation (collection) date/time, 15 specimen source (≤2.6), 27 quantity/timing (≤2.6)
    const test = testOf(seg);
    if (!test && NEEDS_TESTS.has(control)) throw new ParseError('OBR-4 universal service identifier missing', { location: seg.location(4), hl7ErrorCode: 101 });
    const obrPlacer = seg.get(2, 1, 1, 1).trim();
    const obrFiller = seg.get(3, 1, 1, 1).trim();
    const fromSpecimens = o.specimens.map((s) => s.spmId ?? s.sacIds[0]).filter((s): s is string => !!s);
    const ids = fromSpecimens.length ? [...new Set(fromSpecimens)] : [obrFiller || orcFiller || obrPlacer || orcPlacer].filter((s) => !!s);
    if (ids.length === 0) throw new ParseError('no specimen id (SPM-2, SAC-3, OBR-3, ORC-3, OBR-2, ORC-2 all empty)', { location: seg.location(3), hl7ErrorCode: 101 });

    const placer = orcPlacer || obrPlacer;
    const filler = orcFiller || obrFiller;
    const priority = priorityOf(orc, g.tq1, seg);
    const requestedAt = requestedAtOf(orc, g.tq1, seg);
    const collectedObr = hl7TimeToIso(seg.get(7, 1, 1, 1), seg.location(7));
    const typeObr = seg.get(15, 1, 1, 1).trim();
    const imaging = imagingOf(g, o, imgCtx);
    // first specimen per id, looked up in a map (a find per id was quadratic in SPM segments: issue 10)
    const specimenById = new Map<string, SpecimenCtx>();
    for (const s of o.specimens) {
      const k = s.spmId ?? s.sacIds[0];
      if (k !== undefined && !specimenById.has(k)) specimenById.set(k, s);
    }
    for (const specimenId of ids) {
      const sp = specimenById.get(specimenId);
      const u: OrderUpdate = { ...base(), specimenId, tests: test ? [{ ...test }] : [] };
      if (placer) u.placerOrderNumber = placer;
      if (filler) u.fillerOrderNumber = filler;
      if (priority) u.priority = priority;
      if (requestedAt) u.requestedAt = requestedAt;
      const collectedAt = collectedObr ?? sp?.collectedAt;
      if (collectedAt) u.collectedAt = collectedAt;
      const specimenType = typeObr || sp?.type;
      if (specimenType) u.specimenType = specimenType;
      if (imaging) u.imaging = { ...imaging };
      out.push(u);
    }
  }
  return out;
}

/** The imaging part of one OBR (rule in the header comment), or undefined for a non-imaging order. */
function imagingOf(g: OrcGroup, o: ObrCtx, ctx: ImagingCtx): ImagingOrder | undefined {
  const obr = o.seg;
  const t = (seg: Hl7Segment | undefined, f: number, c = 1) => (seg ? seg.get(f, c).trim() : '');
  let img: ImagingOrder;
  if (ctx.omi) {
    // OMI^O23: IPC is required in the ORDER group (HL7 v2.5.1 4.4.9), Table 0357 100 when missing
    if (o.ipcs.length === 0) throw new ParseError('OMI^O23 OBR without an IPC segment', { location: obr.location(), hl7ErrorCode: 100 });
    if (o.ipcs.length > 1) {
      const ids = new Set(o.ipcs.map((x) => `${t(x, 1)}|${t(x, 4)}`));
      // several scheduled steps per OBR are not kept apart by the order cache: refused, never half-taken
      if (ids.size > 1) throw new ParseError('several IPC (scheduled procedure steps) for one OBR are not supported', { location: o.ipcs[1].location(), hl7ErrorCode: 100 });
    }
    const ipc = o.ipcs[0];
    // IPC-5 modality CE (HL7 v2.5.1 4.5.6.5) is required
    const modality = t(ipc, 5).toUpperCase();
    if (!modality) throw new ParseError('IPC-5 modality missing', { location: ipc.location(5), hl7ErrorCode: 101 });
    img = { modality };
    set(img, 'accessionNumber', t(ipc, 1)); // IPC-1 accession identifier (EI)
    set(img, 'requestedProcedureId', t(ipc, 2)); // IPC-2
    set(img, 'studyInstanceUid', t(ipc, 3)); // IPC-3
    set(img, 'spsId', t(ipc, 4)); // IPC-4
    const proto = codeOf(ipc, 6, 1);
    if (proto) img.protocolCode = proto; // IPC-6 protocol code
    set(img, 'stationName', t(ipc, 7)); // IPC-7 scheduled station name (EI)
    set(img, 'spsLocation', t(ipc, 8)); // IPC-8 SPS location (CE)
    set(img, 'stationAeTitle', t(ipc, 9)); // IPC-9 scheduled AE title (ST)
  } else {
    const modality = t(obr, 24).toUpperCase();
    const acc = t(obr, 18);
    const rp = t(obr, 19);
    const sps = t(obr, 20);
    if (!DICOM_MODALITIES.has(modality) || !(acc || rp || sps)) return undefined;
    img = { modality };
    set(img, 'accessionNumber', acc); // OBR-18 placer field 1
    set(img, 'requestedProcedureId', rp); // OBR-19 placer field 2
    set(img, 'spsId', sps); // OBR-20 filler field 1
    set(img, 'studyInstanceUid', o.zds ? t(o.zds, 1) : ''); // ZDS-1 (RP: uid^...)
    const alt = [4, 5, 6].map((c) => obr.get(4, c).trim());
    if (alt[0]) img.protocolCode = code(alt[0], alt[1], alt[2]); // OBR-4 alternate code
  }
  // SPS start (§5.3): ORC-7.4 TQ start, TQ1-7, OBR-36 scheduled, OBR-6 requested, ORC-9 transaction
  const starts: Array<[string, string]> = [
    [g.orc.get(7, 4, 1, 1), g.orc.location(7)],
    [g.tq1?.get(7, 1) ?? '', g.tq1?.location(7) ?? ''],
    [obr.get(36, 1), obr.location(36)],
    [obr.get(6, 1), obr.location(6)],
    [g.orc.get(9, 1), g.orc.location(9)],
  ];
  for (const [v, loc] of starts) {
    const ts = v.trim();
    if (!ts) continue;
    hl7TimeToIso(ts, loc); // validates (Table 0357 102)
    const digits = ts.replace(/[+-]\d{4}$/, '');
    if (digits.length >= 8) img.spsStartDate = digits.slice(0, 8);
    const time = digits.slice(8);
    if (time.length >= 2) img.spsStartTime = time.slice(0, 13); // HL7 TS HHMM[SS[.S]] is DICOM TM HHMM[SS[.F]] (PS3.5 6.2)
    break;
  }
  // SPS description: OBR-4 alternate text, else text; requested procedure: OBR-44, else OBR-4
  set(img, 'spsDescription', obr.get(4, 5).trim() || obr.get(4, 2).trim());
  const proc = codeOf(obr, 44, 1) ?? codeOf(obr, 4, 1);
  if (proc) {
    img.requestedProcedureCode = proc;
    if (proc.meaning) img.requestedProcedureDescription = proc.meaning;
  }
  set(img, 'requestingPhysician', xcnToPn(obr, 16)); // OBR-16 ordering provider
  set(img, 'referringPhysician', ctx.pv1 ? xcnToPn(ctx.pv1, 8) : ''); // PV1-8 referring doctor
  set(img, 'admissionId', t(ctx.pv1, 19) || t(ctx.pid, 18)); // PV1-19 visit number, else PID-18 account number
  set(img, 'medicalAlerts', obr.get(13, 1).trim()); // OBR-13 relevant clinical information
  return img;
}

function set<K extends keyof ImagingOrder>(img: ImagingOrder, k: K, v: string): void {
  if (v) (img as unknown as Record<string, string>)[k] = v;
}

function code(value: string, meaning: string, scheme: string): ImagingCode {
  const c: ImagingCode = { code: value };
  if (meaning) c.meaning = meaning;
  if (scheme) c.scheme = scheme;
  return c;
}

/** CE/CWE components 1-3 of a field repetition (identifier^text^coding system). */
function codeOf(seg: Hl7Segment, field: number, rep: number): ImagingCode | undefined {
  const v = [1, 2, 3].map((c) => seg.get(field, c, rep).trim());
  if (!v[0] && !v[1]) return undefined;
  return code(v[0], v[1], v[2]);
}

/** XCN (HL7 v2.5.1 2.A.89: 1 id, 2 family name FN, 3 given, 4 second given) → DICOM PN family^given^middle. */
function xcnToPn(seg: Hl7Segment, field: number): string {
  const parts = [seg.get(field, 2, 1, 1), seg.get(field, 3), seg.get(field, 4)].map((x) => x.trim());
  while (parts.length && parts[parts.length - 1] === '') parts.pop();
  return parts.join('^');
}

/** OBR-4 CE/CWE (HL7 v2.5.1 2.A.13): 1 id, 2 text, 3 system, 4 alt id, 5 alt text, 6 alt system. */
function testOf(seg: Hl7Segment): OrderTest | undefined {
  const c = (i: number) => seg.get(4, i).trim();
  let code = c(1);
  let display = c(2);
  let system = c(3);
  let altCode = c(4);
  let altDisplay = c(5);
  let altSystem = c(6);
  if (!code && altCode) {
    code = altCode;
    display = altDisplay;
    system = altSystem;
    altCode = altDisplay = altSystem = '';
  }
  if (!code) return undefined;
  const t: OrderTest = { code };
  if (display) t.display = display;
  if (system) t.system = system;
  if (altCode) t.altCode = altCode;
  if (altDisplay) t.altDisplay = altDisplay;
  if (altSystem) t.altSystem = altSystem;
  return t;
}

const PRIORITY: Record<string, OrderPriority> = { S: 'S', STAT: 'S', A: 'A', ASAP: 'A', R: 'R', ROUTINE: 'R' };
const RANK: Record<OrderPriority, number> = { S: 3, A: 2, R: 1 };

function priorityOf(orc: Hl7Segment, tq1: Hl7Segment | undefined, obr: Hl7Segment | undefined): OrderPriority | undefined {
  // ORC-7 TQ component 6 priority (2.A.81, Table 0027); TQ1-9 CWE (Table 0485); OBR-27.6; OBR-5 (ID, ≤ v2.4)
  const candidates = [orc.get(7, 6), tq1?.get(9, 1) ?? '', obr?.get(27, 6) ?? '', obr?.get(5) ?? ''];
  for (const c of candidates) {
    const v = c.trim().toUpperCase();
    if (v) return PRIORITY[v];
  }
  return undefined;
}

function requestedAtOf(orc: Hl7Segment, tq1: Hl7Segment | undefined, obr: Hl7Segment | undefined): string | undefined {
  // ORC-9 date/time of transaction; OBR-6 requested date/time; TQ1-7 start; ORC-7.4 TQ start
  const tries: Array<[string, string]> = [
    [orc.get(9, 1), orc.location(9)],
    [obr?.get(6, 1) ?? '', obr?.location(6) ?? ''],
    [tq1?.get(7, 1) ?? '', tq1?.location(7) ?? ''],
    [orc.get(7, 4, 1, 1), orc.location(7)],
  ];
  for (const [v, loc] of tries) {
    const iso = hl7TimeToIso(v, loc);
    if (iso) return iso;
  }
  return undefined;
}

/** PID (HL7 v2.5.1 3.4.2): 3 identifier list (CX id^^^authority^type), 5 name, 7 DOB, 8 sex. */
function readPatient(seg: Hl7Segment): OrderPatient | undefined {
  const ids: PatientIdentifier[] = [];
  const reps = seg.repetitions(3).length;
  for (let r = 1; r <= reps; r++) {
    const id = seg.get(3, 1, r).trim();
    if (!id) continue;
    const pi: PatientIdentifier = { id };
    const auth = seg.get(3, 4, r, 1).trim();
    const type = seg.get(3, 5, r).trim();
    if (auth) pi.authority = auth;
    if (type) pi.type = type;
    ids.push(pi);
  }
  const p: OrderPatient = {};
  if (ids.length) {
    p.patientId = ids[0].id;
    p.patientIds = ids;
  }
  // XPN: 1 family name (FN, subcomponent 1 = surname), 2 given, 3 second/middle
  const name = [seg.get(5, 1, 1, 1), seg.get(5, 2, 1), seg.get(5, 3, 1)].map((s) => s.trim());
  while (name.length && name[name.length - 1] === '') name.pop();
  if (name.length) p.name = name.join('^');
  const dob = seg.get(7, 1).trim().slice(0, 8);
  if (dob) {
    if (!/^\d{4}(\d{2}(\d{2})?)?$/.test(dob)) throw new ParseError('PID-7 is not a date', { location: seg.location(7), hl7ErrorCode: 102 });
    p.birthDate = dob;
  }
  const sex = seg.get(8).trim();
  if (sex) p.sex = sex;
  return Object.keys(p).length ? p : undefined;
}

function clonePatient(p: OrderPatient): OrderPatient {
  const c: OrderPatient = { ...p };
  if (p.patientIds) c.patientIds = p.patientIds.map((x) => ({ ...x }));
  return c;
}

function testKey(t: OrderTest): string {
  return `${t.code}\u0000${t.system ?? ''}`;
}

/** Several OBRs for one (control, specimen): one order with several tests (`seen`: testKey of into.tests). */
function merge(into: OrderUpdate, u: OrderUpdate, seen: Set<string>): void {
  for (const t of u.tests) {
    const k = testKey(t);
    if (!seen.has(k)) {
      seen.add(k);
      into.tests.push(t);
    }
  }
  into.placerOrderNumber ??= u.placerOrderNumber;
  into.fillerOrderNumber ??= u.fillerOrderNumber;
  if (u.priority && (!into.priority || RANK[u.priority] > RANK[into.priority])) into.priority = u.priority; // most urgent wins
  into.requestedAt ??= u.requestedAt;
  into.collectedAt ??= u.collectedAt;
  into.specimenType ??= u.specimenType;
  into.imaging ??= u.imaging; // one requested procedure per order number: the first OBR's imaging part
  // drop keys that stayed undefined so results compare cleanly
  for (const k of Object.keys(into) as Array<keyof OrderUpdate>) if (into[k] === undefined) delete into[k];
}
