/**
 * A simulated imaging modality (issue 11 §8) against the gateway's DICOM SCP (or any PACS/RIS SCP):
 * C-ECHO, a worklist query (MWL C-FIND, PS3.4 K), MPPS N-CREATE IN PROGRESS then N-SET COMPLETED
 * (PS3.4 F.7), and C-STORE of generated or given objects of any size, streamed (scu.ts, objects.ts).
 * Faults: abort mid-transfer, the peer vanishes mid-transfer, wrong called AE title, unsupported
 * transfer syntax, a slow reader.
 *
 * Echo, find and MPPS use dcmjs-dimse's Client (small datasets); C-STORE uses the streaming SCU.
 */
import dimse from 'dcmjs-dimse';
import { AssociationRejected, EXPLICIT_LE, IMPLICIT_LE, ScuAssociation, type StoreFaults } from './scu';
import type { ObjectInfo } from './objects';

const { Client, Dataset } = dimse;
// the library logs every association at info on stdout: quiet unless asked (the simulator prints its own lines)
(dimse.log as unknown as { setLevel(l: string): void }).setLevel(process.env.IOMT_DICOM_LIB_LOG ?? 'silent');
const { CEchoRequest, CFindRequest, NCreateRequest, NSetRequest } = dimse.requests;

export const MPPS_SOP_CLASS = '1.2.840.10008.3.1.2.3.3'; // PS3.4 F.7
/** A transfer syntax UID no SCP supports (the 'bad-ts' fault proposes only it). */
export const UNSUPPORTED_TS = '1.2.840.10008.1.2.4.999';

export interface Peer {
  host: string;
  port: number;
  /** Our AE title (calling). */
  calling: string;
  /** The SCP's AE title (called). */
  called: string;
  timeoutMs?: number;
  /** DICOM TLS (PS3.15 B.1): the CA that signed the SCP's certificate; cert/key for mutual TLS. */
  tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer };
}

type DimseRequest = InstanceType<typeof CEchoRequest>;
type DimseResponse = { getStatus(): number; getDataset(): InstanceType<typeof Dataset> | undefined };

/** Run requests on one dcmjs-dimse association; resolves with every response, rejects on rejection/network error. */
function run(peer: Peer, requests: DimseRequest[]): Promise<DimseResponse[]> {
  return new Promise((resolve, reject) => {
    const client = new Client();
    const responses: DimseResponse[] = [];
    for (const r of requests) {
      r.on('response', (rsp: DimseResponse) => responses.push(rsp));
      client.addRequest(r);
    }
    let settled = false;
    const done = (e?: Error) => {
      if (settled) return;
      settled = true;
      if (e) reject(e);
      else resolve(responses);
    };
    client.on('associationRejected', (r: { result: number; source: number; reason: number }) => done(new AssociationRejected(r.result, r.source, r.reason)));
    client.on('networkError', (e: Error) => done(e));
    client.on('closed', () => done());
    client.send(peer.host, peer.port, peer.calling, peer.called, {
      connectTimeout: peer.timeoutMs ?? 10_000,
      associationTimeout: peer.timeoutMs ?? 10_000,
      pduTimeout: peer.timeoutMs ?? 30_000,
      ...(peer.tls ? { securityOptions: { ...peer.tls, rejectUnauthorized: true, minVersion: 'TLSv1.2' } } : {}),
    });
  });
}

/** C-ECHO (PS3.4 A.4): the status (0x0000 success). */
export async function echo(peer: Peer): Promise<number> {
  const rsp = await run(peer, [new CEchoRequest() as DimseRequest]);
  if (!rsp.length) throw new Error('no C-ECHO response');
  return rsp[0].getStatus();
}

/** A PN or other value from a dcmjs naturalized dataset as text. */
export function text(v: unknown): string {
  if (v === undefined || v === null) return '';
  if (Array.isArray(v)) return v.length ? text(v[0]) : '';
  if (typeof v === 'object') return 'Alphabetic' in (v as object) ? text((v as { Alphabetic: unknown }).Alphabetic) : '';
  return String(v).trim();
}

/** Worklist query (MWL C-FIND, PS3.4 K.6.1): the Pending identifiers and the final status. */
export async function worklist(peer: Peer, query: Record<string, unknown>): Promise<{ status: number; items: Array<Record<string, unknown>> }> {
  const rsp = await run(peer, [CFindRequest.createWorklistFindRequest(query) as unknown as DimseRequest]);
  const items = rsp.filter((r) => r.getStatus() === 0xff00 || r.getStatus() === 0xff01).map((r) => r.getDataset()?.getElements() ?? {});
  const final = rsp.find((r) => r.getStatus() !== 0xff00 && r.getStatus() !== 0xff01);
  return { status: final ? final.getStatus() : -1, items };
}

/** The standard worklist query of a modality (today, its own station AE, its modality; return keys empty). */
export function defaultWorklistQuery(o: { stationAeTitle?: string; modality?: string; date?: string }): Record<string, unknown> {
  return {
    SpecificCharacterSet: 'ISO_IR 192',
    AccessionNumber: '',
    PatientName: '',
    PatientID: '',
    PatientBirthDate: '',
    PatientSex: '',
    StudyInstanceUID: '',
    RequestedProcedureID: '',
    RequestedProcedureDescription: '',
    ScheduledProcedureStepSequence: [
      {
        ScheduledStationAETitle: o.stationAeTitle ?? '',
        ScheduledProcedureStepStartDate: o.date ?? '',
        ScheduledProcedureStepStartTime: '',
        Modality: o.modality ?? '',
        ScheduledProcedureStepID: '',
        ScheduledProcedureStepDescription: '',
        ScheduledProcedureStepStatus: '',
      },
    ],
  };
}

function dicomNow(): { date: string; time: string } {
  const d = new Date();
  const p = (n: number) => String(n).padStart(2, '0');
  return { date: `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}`, time: `${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}` };
}

/** MPPS N-CREATE IN PROGRESS for a worklist item (PS3.4 F.7.2.1; the Scheduled Step Attributes link it). */
export async function mppsStart(peer: Peer, sopInstanceUid: string, item: Record<string, unknown>, modality: string): Promise<number> {
  const sps = (Array.isArray(item.ScheduledProcedureStepSequence) ? (item.ScheduledProcedureStepSequence[0] as Record<string, unknown>) : undefined) ?? {};
  const now = dicomNow();
  const req = new NCreateRequest(MPPS_SOP_CLASS, sopInstanceUid);
  req.setDataset(
    new Dataset({
      SpecificCharacterSet: 'ISO_IR 192',
      PerformedProcedureStepStatus: 'IN PROGRESS',
      PerformedProcedureStepID: sopInstanceUid.slice(-16),
      PerformedStationAETitle: peer.calling,
      PerformedProcedureStepStartDate: now.date,
      PerformedProcedureStepStartTime: now.time,
      Modality: modality,
      PatientName: text(item.PatientName),
      PatientID: text(item.PatientID),
      ScheduledStepAttributesSequence: [
        {
          StudyInstanceUID: text(item.StudyInstanceUID),
          AccessionNumber: text(item.AccessionNumber),
          RequestedProcedureID: text(item.RequestedProcedureID),
          ScheduledProcedureStepID: text(sps.ScheduledProcedureStepID),
        },
      ],
      PerformedSeriesSequence: [],
    }),
  );
  const rsp = await run(peer, [req as unknown as DimseRequest]);
  if (!rsp.length) throw new Error('no N-CREATE response');
  return rsp[0].getStatus();
}

/** MPPS N-SET to COMPLETED or DISCONTINUED (PS3.4 F.7.2.2) with the performed series. */
export async function mppsFinish(peer: Peer, sopInstanceUid: string, status: 'COMPLETED' | 'DISCONTINUED', series: Array<{ seriesInstanceUid: string; sopClassUid: string; sopInstanceUids: string[] }>): Promise<number> {
  const now = dicomNow();
  const req = new NSetRequest(MPPS_SOP_CLASS, sopInstanceUid);
  req.setDataset(
    new Dataset({
      PerformedProcedureStepStatus: status,
      PerformedProcedureStepEndDate: now.date,
      PerformedProcedureStepEndTime: now.time,
      PerformedSeriesSequence: series.map((s) => ({
        SeriesInstanceUID: s.seriesInstanceUid,
        ReferencedImageSequence: s.sopInstanceUids.map((u) => ({ ReferencedSOPClassUID: s.sopClassUid, ReferencedSOPInstanceUID: u })),
      })),
    }),
  );
  const rsp = await run(peer, [req as unknown as DimseRequest]);
  if (!rsp.length) throw new Error('no N-SET response');
  return rsp[0].getStatus();
}

export type StoreFault = 'abort' | 'vanish' | 'bad-ts' | 'slow-reader';

export interface StoreResult {
  sopInstanceUid: string;
  bytes: number;
  /** DIMSE status (PS3.4 B.2.3), or undefined when no response came (fault, rejection). */
  status?: number;
  error?: string;
  ms: number;
}

/**
 * C-STORE each object on one association (re-used), streamed. Faults apply to the first object:
 * abort / vanish after half of it; bad-ts proposes only an unsupported transfer syntax; slow-reader
 * stops reading for `slowMs` after sending.
 */
export async function store(peer: Peer, objects: ObjectInfo[], faults: StoreFault[] = [], slowMs = 5000): Promise<StoreResult[]> {
  const out: StoreResult[] = [];
  if (!objects.length) return out;
  const keys = [...new Set(objects.map((o) => `${o.sopClassUid}|${o.transferSyntaxUid}`))];
  const contexts = keys.map((k) => {
    const [abs, ts] = k.split('|');
    // propose the object's own syntax; explicit/implicit LE beside it only for uncompressed data
    const syntaxes = faults.includes('bad-ts') ? [UNSUPPORTED_TS] : ts === EXPLICIT_LE || ts === IMPLICIT_LE ? [ts, ts === EXPLICIT_LE ? IMPLICIT_LE : EXPLICIT_LE] : [ts];
    return { abstractSyntax: abs, transferSyntaxes: syntaxes };
  });
  const assoc = new ScuAssociation({ ...peer, timeoutMs: peer.timeoutMs, tls: peer.tls ? { ...peer.tls, minVersion: 'TLSv1.2' } : undefined });
  const res = await assoc.open(contexts);
  let messageId = 1;
  try {
    for (const [i, o] of objects.entries()) {
      const t0 = Date.now();
      const ctxId = keys.indexOf(`${o.sopClassUid}|${o.transferSyntaxUid}`) * 2 + 1;
      const acc = res.accepted.get(ctxId);
      if (!acc) {
        const rej = res.rejected.get(ctxId);
        out.push({ sopInstanceUid: o.sopInstanceUid, bytes: o.source.length, error: `presentation context rejected (result ${rej?.result ?? '?'}${rej?.result === 4 ? ': transfer syntaxes not supported' : rej?.result === 3 ? ': abstract syntax not supported' : ''})`, ms: 0 });
        continue;
      }
      if (acc.transferSyntax !== o.transferSyntaxUid) {
        // the dataset is sent as written: never re-encoded (the SCP chose the other proposed syntax)
        out.push({ sopInstanceUid: o.sopInstanceUid, bytes: o.source.length, error: `SCP accepted ${acc.transferSyntax}, the object is ${o.transferSyntaxUid}: not sent`, ms: 0 });
        continue;
      }
      const f: StoreFaults = {};
      if (i === 0 && faults.includes('abort')) f.abortAfterBytes = Math.floor(o.source.length / 2);
      if (i === 0 && faults.includes('vanish')) f.vanishAfterBytes = Math.floor(o.source.length / 2);
      if (i === 0 && faults.includes('slow-reader')) f.slowReadMs = slowMs;
      try {
        const status = await assoc.store(ctxId, o.sopClassUid, o.sopInstanceUid, o.source, f, messageId++);
        out.push({ sopInstanceUid: o.sopInstanceUid, bytes: o.source.length, status, ms: Date.now() - t0 });
      } catch (e) {
        out.push({ sopInstanceUid: o.sopInstanceUid, bytes: o.source.length, error: (e as Error).message, ms: Date.now() - t0 });
        return out; // the association is gone
      }
    }
    await assoc.release();
  } finally {
    assoc.close();
  }
  return out;
}
