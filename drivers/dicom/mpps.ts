/**
 * MPPS SCP handler (issue 11 part 4; DICOM PS3.4 F.7, SOP class 1.2.840.10008.3.1.2.3.3).
 *
 * N-CREATE (status IN PROGRESS) and N-SET (COMPLETED / DISCONTINUED) are committed DURABLY before the
 * status is answered (the same rule as C-STORE): each state change is one InboundMessage through
 * `runtime.store.submit` (driver 'dicom', messageType 'N-CREATE' / 'N-SET', one draft carrying the
 * status as HL7 Table 0038 IP/CM/DC), so it flows like any result to an `hl7 out` (which sends it to
 * the RIS as ORM^O01 ORC-1 SC / ORC-5, drivers/hl7-mllp/orm-status-builder.ts) through the outbox
 * with its retries and dead letters. Then the MPPS state and the worklist item's SPS status are
 * committed in the order cache (order_mpps, order_imaging.sps_status: STARTED / COMPLETED / DISCONTINUED).
 *
 * Statuses (PS3.4 F.7.2.1 / F.7.2.2, PS3.7 10.1.5.1.6 N-CREATE, 10.1.1.1.8 N-SET):
 *   0x0000 success;
 *   0x0111 duplicate SOP instance: N-CREATE for an instance already created;
 *   0x0106 invalid attribute value: N-CREATE not IN PROGRESS, N-SET to a status other than
 *          IN PROGRESS / COMPLETED / DISCONTINUED (PS3.4 F.7.2.2.2 / C.4.14);
 *   0x0112 no such object instance: N-SET for an instance never created here;
 *   0x0110 processing failure: N-SET after COMPLETED or DISCONTINUED ("may no longer be updated",
 *          PS3.4 F.7.2.2.2), and when the store or cache cannot commit (the modality retries).
 * An N-SET that changes no status (e.g. performed series added while IN PROGRESS) is committed as a
 * message without drafts (kept for audit, nothing sent to the RIS) and answered success.
 *
 * Crash safety: the message is committed first with dedupeKey `uid|status|sha256`, then the cache.
 * A crash between the two → no success was sent; the modality's retry finds no MPPS state, submits
 * again (a store duplicate: nothing new sent to the RIS) and records the state.
 *
 * PHI: patient data goes into the store (as every result does), never into logs above debug.
 */
import { createHash } from 'node:crypto';
import type { DicomDataset, MppsHandler } from './contracts';
import type { CommitResult, InboundMessage } from '../../gateway/src/contracts/driver';
import type { ObservationDraft } from '../../gateway/src/contracts/observation';
import type { OrderCache, MppsLink } from '../../gateway/src/orders/order-cache';
import type { WorklistEntry } from '../../gateway/src/orders/order-types';
import { componentLogger } from '../../gateway/src/log/logger';
import { MPPS_CODE, ORDER_STATUS_0038 } from '../hl7-mllp/orm-status-builder';
import { keyValue } from './mwl-match';

/** PS3.7 Annex C / 10.1: the statuses this handler answers. */
export const MPPS_STATUS = {
  Success: 0x0000,
  InvalidAttributeValue: 0x0106,
  ProcessingFailure: 0x0110,
  DuplicateSopInstance: 0x0111,
  NoSuchObjectInstance: 0x0112,
} as const;

export interface MppsRuntime {
  orders: OrderCache | undefined;
  store: { submit(msg: InboundMessage): Promise<CommitResult> };
}

export interface MppsHandlerOptions {
  /** deviceId of the committed messages (the `dicom in` node's device id). Default 'dicom-mpps'. */
  deviceId?: string;
  /**
   * Called after each newly committed state change (not for store duplicates), before the status is
   * answered: the `dicom in` node emits it into the flow (as it does for C-STORE) so that an `hl7 out`
   * sends it to the RIS. A throw is logged, never changes the answer (the message is committed; the
   * flow tracker re-emits unfinished messages after a restart).
   */
  onCommitted?: (result: CommitResult, msg: InboundMessage) => void;
}

type PpsStatus = 'IN PROGRESS' | 'COMPLETED' | 'DISCONTINUED';
const FINAL = new Set(['COMPLETED', 'DISCONTINUED']);

function item(ds: DicomDataset, key: string): DicomDataset | undefined {
  const v = ds[key];
  return Array.isArray(v) && v[0] && typeof v[0] === 'object' ? (v[0] as DicomDataset) : undefined;
}

/** DA + TM (local time as the modality sent it) → ISO 8601 without offset. */
function dicomDateTime(da: string, tm: string): string | undefined {
  if (!/^\d{8}$/.test(da)) return undefined;
  const d = `${da.slice(0, 4)}-${da.slice(4, 6)}-${da.slice(6, 8)}`;
  const t = tm.replace(/:/g, '');
  if (!/^\d{2}/.test(t)) return d;
  return `${d}T${t.slice(0, 2)}:${t.slice(2, 4) || '00'}:${t.slice(4, 6) || '00'}`;
}

/** The Scheduled Step Attributes Sequence (0040,0270): the link to the worklist item (PS3.4 F.7.2.1). */
export function mppsLinkOf(ds: DicomDataset): MppsLink {
  const s = item(ds, 'ScheduledStepAttributesSequence') ?? {};
  const link: MppsLink = {};
  const set = (k: keyof MppsLink, v: unknown) => {
    const x = keyValue(v);
    if (x) link[k] = x;
  };
  set('studyInstanceUid', s.StudyInstanceUID);
  set('accessionNumber', s.AccessionNumber);
  set('requestedProcedureId', s.RequestedProcedureID);
  set('spsId', s.ScheduledProcedureStepID);
  return link;
}

/**
 * The draft for one state change: the worklist order's numbers, service and patient when linked,
 * else what the MPPS dataset says (an unscheduled step, PS3.4 F.7.2.1 "unscheduled case").
 */
export function mppsDraft(status: PpsStatus, ds: DicomDataset, entry: WorklistEntry | undefined, callingAeTitle: string, link: MppsLink): ObservationDraft {
  const code = ORDER_STATUS_0038[status];
  const start = dicomDateTime(keyValue(ds.PerformedProcedureStepStartDate), keyValue(ds.PerformedProcedureStepStartTime));
  const end = dicomDateTime(keyValue(ds.PerformedProcedureStepEndDate), keyValue(ds.PerformedProcedureStepEndTime));
  const draft: ObservationDraft = {
    code: { ...MPPS_CODE },
    value: { kind: 'coded', system: 'HL70038', code, display: status },
    // IP is work in progress; CM the final state; DC a step stopped before completion
    status: code === 'IP' ? 'preliminary' : code === 'CM' ? 'final' : 'cancelled',
    statusCode: code === 'IP' ? 'P' : code === 'CM' ? 'F' : 'X',
    category: 'imaging',
    equipment: { id: callingAeTitle },
  };
  const eff = code === 'IP' ? start : end ?? start;
  if (eff) draft.effectiveAt = eff;
  const station = keyValue(ds.PerformedStationName);
  if (station) draft.equipment!.name = station;
  const p = entry?.patient;
  const name = p?.name ?? keyValue(ds.PatientName);
  const pid = p?.patientId ?? keyValue(ds.PatientID);
  const subject: NonNullable<ObservationDraft['subject']> = {};
  if (pid) subject.patientId = pid;
  if (p?.patientIds) subject.patientIds = p.patientIds.map((x) => ({ ...x }));
  if (name) subject.patientName = name;
  const dob = p?.birthDate ?? keyValue(ds.PatientBirthDate);
  if (dob) subject.birthDate = dob;
  const sex = p?.sex ?? keyValue(ds.PatientSex);
  if (sex) subject.sex = sex;
  const acc = entry?.imaging.accessionNumber ?? link.accessionNumber;
  if (acc) subject.accession = acc;
  if (Object.keys(subject).length) draft.subject = subject;
  const order: NonNullable<ObservationDraft['order']> = {};
  if (entry?.placerOrderNumber) order.placerOrderNumber = entry.placerOrderNumber;
  if (entry?.fillerOrderNumber) order.fillerOrderNumber = entry.fillerOrderNumber;
  if (entry?.service) order.service = { system: entry.service.system ?? '', code: entry.service.code, ...(entry.service.display ? { display: entry.service.display } : {}) };
  // the worklist item's keys, else the Scheduled Step Attributes Sequence (0040,0270) of the N-CREATE (PS3.4 F.7.2.1):
  // (0040,1001) Requested Procedure ID → OBR-19, (0040,0009) SPS ID → OBR-20, (0020,000D) Study Instance UID → ZDS-1 (protocols.md §5.3)
  const rp = entry?.imaging.requestedProcedureId ?? link.requestedProcedureId;
  if (rp) order.requestedProcedureId = rp;
  const sps = entry?.imaging.spsId ?? link.spsId;
  if (sps) order.scheduledStepId = sps;
  const study = entry?.imaging.studyInstanceUid ?? link.studyInstanceUid;
  if (study) order.studyInstanceUid = study;
  const modality = entry?.imaging.modality ?? keyValue(ds.Modality);
  if (modality) order.section = modality;
  if (Object.keys(order).length) draft.order = order;
  if (code === 'DC') {
    // (0040,0281) Performed Procedure Step Discontinuation Reason Code Sequence (PS3.3 C.4.14)
    const reason = item(ds, 'PerformedProcedureStepDiscontinuationReasonCodeSequence');
    const text = reason ? keyValue(reason.CodeMeaning) || keyValue(reason.CodeValue) : '';
    draft.comments = [text ? `Discontinued: ${text}` : 'Discontinued (no reason given)'];
  }
  return draft;
}

/** What an unscheduled step's N-SET report needs from its N-CREATE (DICOM keywords; PHI, kept in the order cache). */
function subjectOf(ds: DicomDataset, link: MppsLink): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of ['PatientName', 'PatientID', 'PatientBirthDate', 'PatientSex', 'Modality', 'PerformedStationName']) {
    const v = keyValue(ds[k]);
    if (v) out[k] = v;
  }
  if (link.accessionNumber) out.AccessionNumber = link.accessionNumber;
  if (link.requestedProcedureId) out.RequestedProcedureID = link.requestedProcedureId;
  if (link.spsId) out.ScheduledProcedureStepID = link.spsId;
  if (link.studyInstanceUid) out.StudyInstanceUID = link.studyInstanceUid;
  return out;
}

/** The MPPS handler for the `dicom in` node. */
export function createMppsHandler(runtime: MppsRuntime, opts: MppsHandlerOptions = {}): MppsHandler {
  const log = componentLogger('dicom-mpps');
  const deviceId = opts.deviceId ?? 'dicom-mpps';
  // one state change at a time (MPPS arrives at human speed): check-then-commit cannot interleave
  let chain: Promise<unknown> = Promise.resolve();
  const serial = <T>(fn: () => Promise<T>): Promise<T> => {
    const p = chain.then(fn, fn);
    chain = p.catch(() => undefined);
    return p;
  };

  const commit = async (uid: string, kind: 'N-CREATE' | 'N-SET', status: PpsStatus | undefined, ds: DicomDataset, ctx: { callingAeTitle: string; calledAeTitle: string }, orderId: number | undefined, link: MppsLink, remembered?: Record<string, string>): Promise<void> => {
    const cache = runtime.orders!;
    const raw = Buffer.from(JSON.stringify(ds), 'utf8');
    // an unscheduled step's N-SET carries no patient: report it with what its N-CREATE said (kept in order_mpps)
    const view: DicomDataset = remembered ? { ...remembered, ...Object.fromEntries(Object.entries(ds).filter(([, v]) => keyValue(v) !== '')) } : ds;
    const viewLink: MppsLink = { ...link };
    if (remembered) {
      // the N-CREATE's Scheduled Step Attributes (kept in order_mpps) where the N-SET repeats none
      const keep: Array<[keyof MppsLink, string]> = [['accessionNumber', 'AccessionNumber'], ['requestedProcedureId', 'RequestedProcedureID'], ['spsId', 'ScheduledProcedureStepID'], ['studyInstanceUid', 'StudyInstanceUID']];
      for (const [k, dk] of keep) if (!viewLink[k] && remembered[dk]) viewLink[k] = remembered[dk];
    }
    const sha = createHash('sha256').update(raw).digest('hex');
    const entry = orderId !== undefined ? cache.worklistEntry(orderId) : undefined;
    const msg: InboundMessage = {
      deviceId,
      driver: 'dicom',
      raw,
      sourceMessageId: uid,
      sender: ctx.callingAeTitle,
      messageType: kind,
      // a reused (uid, state) with other content is flagged by the store; status-less N-SETs are not state changes
      ...(status ? { controlKey: `${uid}|${kind}|${status}` } : {}),
      dedupeKey: `${uid}|${kind}|${status ?? ''}|${sha}`,
      drafts: status ? [mppsDraft(status, view, entry, ctx.callingAeTitle, viewLink)] : [],
      meta: { sopInstanceUid: uid, status: status ?? null, orderId: orderId ?? null, callingAeTitle: ctx.callingAeTitle, calledAeTitle: ctx.calledAeTitle },
    };
    const result = await runtime.store.submit(msg);
    if (status) cache.recordMpps(uid, status, orderId, ctx.callingAeTitle, orderId === undefined && kind === 'N-CREATE' ? subjectOf(ds, link) : undefined);
    if (!result.duplicate && opts.onCommitted) {
      try {
        opts.onCommitted(result, msg);
      } catch (e) {
        log.warn({ err: (e as Error).message }, 'MPPS onCommitted callback failed (message committed)');
      }
    }
  };

  const guarded = async (what: string, fn: () => Promise<number>): Promise<number> => {
    try {
      return await fn();
    } catch (e) {
      // not committed: never success; the modality retries (PS3.7 C.4.2 0x0110 processing failure)
      log.warn({ op: what, err: (e as Error).message }, 'MPPS state change not committed');
      return MPPS_STATUS.ProcessingFailure;
    }
  };

  return {
    nCreate(uid, ds, ctx) {
      return serial(() =>
        guarded('N-CREATE', async () => {
          const cache = runtime.orders;
          if (!cache) throw new Error('order cache not available');
          const status = keyValue(ds.PerformedProcedureStepStatus).toUpperCase();
          // PS3.4 F.7.2.1.2: an N-CREATE creates the step IN PROGRESS
          if (status !== 'IN PROGRESS') return MPPS_STATUS.InvalidAttributeValue;
          if (cache.mppsState(uid)) return MPPS_STATUS.DuplicateSopInstance; // PS3.7 10.1.5.1.6
          const link = mppsLinkOf(ds);
          const orderId = cache.findImagingOrder(link);
          await commit(uid, 'N-CREATE', 'IN PROGRESS', ds, ctx, orderId, link);
          log.info({ calling: ctx.callingAeTitle, linked: orderId !== undefined }, 'MPPS in progress');
          return MPPS_STATUS.Success;
        }),
      );
    },
    nSet(uid, ds, ctx) {
      return serial(() =>
        guarded('N-SET', async () => {
          const cache = runtime.orders;
          if (!cache) throw new Error('order cache not available');
          const state = cache.mppsState(uid);
          if (!state) return MPPS_STATUS.NoSuchObjectInstance; // PS3.7 10.1.1.1.8
          // PS3.4 F.7.2.2.2: once COMPLETED or DISCONTINUED the step may no longer be updated
          if (FINAL.has(state.status)) return MPPS_STATUS.ProcessingFailure;
          const raw = keyValue(ds.PerformedProcedureStepStatus).toUpperCase();
          if (raw && raw !== 'IN PROGRESS' && raw !== 'COMPLETED' && raw !== 'DISCONTINUED') return MPPS_STATUS.InvalidAttributeValue;
          const status = raw === 'COMPLETED' || raw === 'DISCONTINUED' ? raw : undefined;
          const link = mppsLinkOf(ds);
          await commit(uid, 'N-SET', status, ds, ctx, state.orderId, link, state.orderId === undefined ? state.subject : undefined);
          log.info({ calling: ctx.callingAeTitle, status: status ?? 'unchanged' }, 'MPPS updated');
          return MPPS_STATUS.Success;
        }),
      );
    },
  };
}
