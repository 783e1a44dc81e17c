/**
 * The DICOM storage SCP (issue 11 §1): C-ECHO, C-STORE for every storage SOP class, and optionally the
 * Modality Worklist C-FIND and MPPS N-CREATE/N-SET through the providers of drivers/dicom/contracts.ts.
 *
 * Built on dcmjs-dimse 0.3.3 (association/PDU/DIMSE codec) with a `Scp` subclass; where the library
 * falls short it is fixed here, not patched (README "dcmjs-dimse: what we override and why"):
 * - the C-STORE dataset streams to a temp file (InstanceWriter) instead of a MemoryStream, with TCP
 *   backpressure (the socket is paused while the file stream is over its high-water mark);
 * - the listener is our own net/tls server (dcmjs-dimse's Server has no admission hook): the listener
 *   guard (allow-list, per-address limit, first-frame timeout = ARTIM for the A-ASSOCIATE-RQ) runs first;
 * - every received byte passes the PduFramer before the library buffers it (unknown PDU types and
 *   oversize lengths abort the association instead of growing the heap).
 *
 * Success (0x0000) only after the file is durable (fsync, rename, fsync of the directory) and its index
 * row committed by the store (PS3.4 B.2.3; architecture §3 ack-after-commit).
 */
import { createHash } from 'node:crypto';
import { createReadStream, mkdirSync, readdirSync, unlinkSync, type Stats } from 'node:fs';
import { mkdir, open, readdir, rename, stat } from 'node:fs/promises';
import net from 'node:net';
import { dirname, join } from 'node:path';
import tls from 'node:tls';
import dimse from 'dcmjs-dimse';
import type { CommitResult, DriverStatus, InboundMessage, ObservationSink } from '../../gateway/src/contracts/driver';
import { StoreFullError } from '../../gateway/src/contracts/errors';
import type { ObservationDraft } from '../../gateway/src/contracts/observation';
import { componentLogger } from '../../gateway/src/log/logger';
import { metrics } from '../../gateway/src/metrics/registry';
import { ListenerGuard, isAllowed, normalizeAddress, parseAllowList, type GuardedConnection } from '../../gateway/src/net/listener-guard';
import { reportCommitted } from '../../gateway/src/pipeline/committed';
import { secureContextOptions } from '../../gateway/src/tls/options';
import type { DicomInstanceRecord, DicomScpServices } from './contracts';
import { InstanceWriter, type StorageAllowance } from './instance-writer';
import { buildFileMeta, DatasetError, NeedMoreBytes, readHeader, TS, uidPathPart, type DatasetHeader } from './part10';
import { KEEP_BYTES, PduFramer } from './pdu-framer';

const { Scp, Dataset, constants, responses, Implementation } = dimse;
const { Status, PresentationContextResult: PCR, RejectResult, RejectSource, RejectReason, AbortSource, AbortReason } = constants;

// the library logs every association and PDU at info on the console (its own loglevel instance);
// the gateway logs what matters itself (no PHI above debug)
dimse.log.setLevel((process.env.IOMT_DICOM_LIB_LOG as 'trace' | 'debug' | 'info' | 'warn' | 'error' | undefined) ?? 'silent');
// dcmjs (under dcmjs-dimse's Dataset) prints a console warning per malformed command or identifier it
// reads leniently; the SCP answers and logs those itself
// (require: the CommonJS build dcmjs-dimse itself loads, not an ES build a bundler might pick)
// eslint-disable-next-line @typescript-eslint/no-require-imports
(require('dcmjs') as { log: { setLevel(l: string): void } }).log.setLevel((process.env.IOMT_DICOM_LIB_LOG as 'trace' | 'debug' | 'info' | 'warn' | 'error' | undefined) ?? 'error');

export const DRIVER_NAME = 'dicom';
export const VERIFICATION_SOP_CLASS = '1.2.840.10008.1.1'; // PS3.4 A
export const MWL_FIND_SOP_CLASS = '1.2.840.10008.5.1.4.31'; // PS3.4 K.6.1.2
/** Who may use the worklist and MPPS when the SCP has no allow-list at all (issue 10 §3). */
export const PATIENT_SERVICES_DEFAULT_FROM = ['127.0.0.1', '::1'];
export const MPPS_SOP_CLASS = '1.2.840.10008.3.1.2.3.3'; // PS3.4 F.7
/** Storage SOP classes (PS3.4 B.5): everything under the storage root, plus these outside it. */
export const STORAGE_ROOT = '1.2.840.10008.5.1.4.1.1.';
const OTHER_STORAGE = new Set(['1.2.840.10008.5.1.4.34.7', '1.2.840.10008.5.1.4.34.10', '1.2.840.10008.5.1.4.38.1', '1.2.840.10008.5.1.4.39.1', '1.2.840.10008.5.1.4.43.1', '1.2.840.10008.5.1.4.44.1', '1.2.840.10008.5.1.4.45.1']);

export function isStorageSopClass(uid: string): boolean {
  return (uid.startsWith(STORAGE_ROOT) && /^[0-9.]+$/.test(uid)) || OTHER_STORAGE.has(uid);
}

/** Transfer syntaxes accepted for storage, as proposed (issue 11 §1; PS3.5 A, PS3.6 A); never transcoded. */
export const STORAGE_TRANSFER_SYNTAXES: readonly string[] = [
  TS.implicitLE,
  TS.explicitLE,
  TS.explicitBE,
  TS.deflatedLE,
  '1.2.840.10008.1.2.4.50', // JPEG baseline (process 1)
  '1.2.840.10008.1.2.4.51', // JPEG extended (process 2 & 4)
  '1.2.840.10008.1.2.4.57', // JPEG lossless (process 14)
  '1.2.840.10008.1.2.4.70', // JPEG lossless SV1
  '1.2.840.10008.1.2.4.80', // JPEG-LS lossless
  '1.2.840.10008.1.2.4.81', // JPEG-LS near-lossless
  '1.2.840.10008.1.2.4.90', // JPEG 2000 lossless
  '1.2.840.10008.1.2.4.91', // JPEG 2000
  '1.2.840.10008.1.2.5', // RLE lossless
];
/** Worklist / MPPS / verification: the uncompressed syntaxes (PS3.5 10.1: implicit LE is the default). */
const PLAIN_TRANSFER_SYNTAXES = [TS.implicitLE, TS.explicitLE, TS.explicitBE];

/** C-STORE failure statuses used (PS3.4 B.2.3, PS3.7 C). */
export const STORE_STATUS = {
  success: 0x0000,
  outOfResources: 0xa700, // Refused: out of resources (disk full, quota, store full)
  datasetMismatch: 0xa900, // Error: data set does not match SOP class (missing Type 1 key, UID mismatch)
  cannotUnderstand: 0xc000, // Error: cannot understand (unreadable dataset)
  processingFailure: 0x0110, // PS3.7 C.4.2: processing failure (an internal error)
  sopClassNotSupported: 0x0122, // PS3.7 C.5.6: refused, SOP class not supported (not the context's)
} as const;

/** A calling AE allowed to associate; `host`: address or CIDR network (listener-guard syntax), absent = any. */
export interface AllowedCaller {
  aeTitle: string;
  host?: string;
}

export interface DicomScpOptions {
  deviceId: string;
  /** Our AE title: the called AE title must equal it (PS3.8 7.1.1.4; else A-ASSOCIATE-RJ reason 7). */
  aeTitle: string;
  host?: string;
  port: number;
  /** Files go under `<dataDir>/dicom` (temp files in `<dataDir>/dicom/tmp`). */
  dataDir: string;
  /** Allow-list of calling AE titles (with their host); absent/empty = any caller (reason 3 otherwise). */
  allowedCallers?: AllowedCaller[];
  /** Source addresses / networks that may connect at all (listener guard); empty = everyone. */
  allowFrom?: string;
  /** Simultaneous associations (default 16); more get A-ASSOCIATE-RJ transient "local limit exceeded". */
  maxAssociations?: number;
  /** Simultaneous connections from one address (default 8). */
  maxPerAddress?: number;
  /** Abort an association idle this long (no PDU), and a connection without A-ASSOCIATE-RQ (ARTIM). Default 60000. */
  idleTimeoutMs?: number;
  /** DICOM TLS (PS3.15 B.1): TLS 1.2+; `requestCert` requires a client certificate signed by `ca`. */
  tls?: { key: Buffer; cert: Buffer; ca?: Buffer; requestCert?: boolean };
  /** Accept C-STORE (default true). */
  storage?: boolean;
  /** Worklist / MPPS providers (contracts.ts): their presentation contexts are accepted only when given. */
  services?: DicomScpServices;
  /** Quota of the stored files in bytes (0/absent = none): over it, C-STORE gets 0xA700. */
  maxStorageBytes?: number;
  /**
   * With a quota: while at least 80% of it is used (and at once when an object does not fit), the stored
   * files are measured again this often (default 30000 ms), so space that retention freed is seen
   * without a restart.
   */
  quotaRecountMs?: number;
  /** Largest P-DATA-TF we accept and advertise (PS3.8 D.1); default 262144 (dcmjs-dimse's maximum). */
  maxPduBytes?: number;
  /** The index attributes must be within this many bytes of the dataset's start (default 4 MiB). */
  headerMaxBytes?: number;
}

type Assoc = InstanceType<typeof dimse.association.Association>;
type PresentationContext = InstanceType<typeof dimse.association.PresentationContext>;
type CStoreRequest = InstanceType<typeof dimse.requests.CStoreRequest>;
type Request = InstanceType<typeof dimse.requests.Request>;
const WRITER = Symbol('iomt.dicom.writer');

interface ConnInfo {
  id: number;
  remote: string;
  address: string;
  guard: GuardedConnection;
}

/**
 * The SCP as a device (like Hl7Receiver): `start()` listens, `status()` reports, `close()` stops.
 * `onCommitted` gets each newly committed instance (the node emits it into the flow).
 */
export class DicomStorageScp {
  readonly guard: ListenerGuard;
  readonly filesDir: string;
  readonly tmpDir: string;
  private readonly log;
  private server: net.Server | undefined;
  private readonly scps = new Set<GatewayScp>();
  private associations = 0;
  private state: DriverStatus['state'] = 'stopped';
  private detail: string | undefined;
  private lastMessageAt: string | undefined;
  private lastErrorAt: string | undefined;
  private lastError: string | undefined;
  private port: number | undefined;
  private controlIdReused = 0;
  private nextConn = 1;
  private usedBytes = 0;
  private recountTimer: NodeJS.Timeout | undefined;
  /** Reservations and releases while a recount walks the files (added to what it measured). */
  private recountDelta: number | undefined;
  private readonly callers: Array<{ aeTitle: string; hosts: ReturnType<typeof parseAllowList> }>;
  readonly allowance: StorageAllowance;

  constructor(
    readonly opts: DicomScpOptions,
    readonly sink: ObservationSink,
    private readonly onCommitted?: (r: CommitResult, inbound: InboundMessage) => void,
  ) {
    if (!opts.deviceId) throw new TypeError('DicomStorageScp: deviceId is required');
    const aet = opts.aeTitle ?? '';
    // PS3.5 Table 6.2-1 AE: ≤ 16 characters, no backslash or control characters, not all spaces
    if (!/^[^\\\x00-\x1f]{1,16}$/.test(aet) || !aet.trim()) throw new TypeError(`DicomStorageScp: invalid AE title '${aet}'`);
    this.log = componentLogger('dicom-scp', { deviceId: opts.deviceId });
    this.filesDir = join(opts.dataDir, 'dicom');
    this.tmpDir = join(this.filesDir, 'tmp');
    this.callers = (opts.allowedCallers ?? []).map((c) => ({ aeTitle: c.aeTitle.trim(), hosts: parseAllowList(c.host) }));
    this.guard = new ListenerGuard({
      listener: opts.deviceId,
      // the TCP cap is above the association limit so that a surplus caller gets a proper A-ASSOCIATE-RJ
      maxConnections: (opts.maxAssociations ?? 16) + 4,
      maxPerAddress: opts.maxPerAddress,
      firstFrameTimeoutMs: opts.idleTimeoutMs ?? 60_000,
      allowFrom: opts.allowFrom,
      log: this.log,
    });
    const quota = opts.maxStorageBytes ?? 0;
    this.allowance = {
      reserve: (n) => {
        if (quota > 0 && this.usedBytes + n > quota) {
          void this.recountStorage();
          return false;
        }
        this.usedBytes += n;
        if (this.recountDelta !== undefined) this.recountDelta += n;
        return true;
      },
      release: (n) => {
        this.usedBytes = Math.max(0, this.usedBytes - n);
        if (this.recountDelta !== undefined) this.recountDelta -= n;
      },
    };
  }

  get maxPduBytes(): number {
    return Math.min(this.opts.maxPduBytes ?? Implementation.getMaxPduLength(), Implementation.getMaxPduLength());
  }

  /** Listen; resolves with the bound port. Removes temp files left by a crash first. */
  async start(signal?: AbortSignal): Promise<{ port: number }> {
    if (this.server) throw new Error('DicomStorageScp already started');
    this.state = 'starting';
    try {
      mkdirSync(this.tmpDir, { recursive: true });
      // a crash (kill -9) mid-transfer leaves a .part file that never got a success status
      for (const f of readdirSync(this.tmpDir)) if (f.endsWith('.part')) unlinkSync(join(this.tmpDir, f));
      if ((this.opts.maxStorageBytes ?? 0) > 0) {
        this.usedBytes = await dirBytes(this.filesDir, this.tmpDir);
        this.recountTimer = setInterval(() => void this.recountStorage(0.8), this.opts.quotaRecountMs ?? 30_000);
        this.recountTimer.unref();
      }
      const t = this.opts.tls;
      const server: net.Server = t
        ? tls.createServer({
            // PS3.15 B.1 (TLS secure transport connection profile) with BCP 195: TLS 1.2+, AEAD suites
            ...secureContextOptions(),
            key: t.key,
            cert: t.cert,
            ca: t.ca,
            requestCert: !!t.requestCert,
            rejectUnauthorized: !!t.requestCert,
            handshakeTimeout: this.guard.firstFrameTimeoutMs || 60_000,
          })
        : net.createServer();
      this.server = server;
      if (t) {
        server.on('connection', (s: net.Socket) => {
          if (!this.guard.allows(s.remoteAddress)) this.guard.admit(s); // refused before the handshake
        });
        server.on('tlsClientError', (e: Error, s: tls.TLSSocket) => {
          if (this.guard.allows(s?.remoteAddress)) this.guard.tlsFailure(s?.remoteAddress, e.message);
        });
      }
      server.on(t ? 'secureConnection' : 'connection', (s: net.Socket) => {
        if (!s.destroyed) this.accept(s);
      });
      await new Promise<void>((resolve, reject) => {
        server.once('error', reject);
        server.listen(this.opts.port, this.opts.host, () => {
          server.off('error', reject);
          resolve();
        });
      });
      server.on('error', (e) => this.log.error({ err: e.message }, 'DICOM listener error'));
      const addr = server.address();
      this.port = typeof addr === 'object' && addr ? addr.port : this.opts.port;
      this.state = 'listening';
      this.detail = `port ${this.port} AE ${this.opts.aeTitle}${t ? ' (TLS)' : ''}`;
      // the worklist answers patient names, ids and birth dates: with no allow-list at all, anyone who
      // reaches the port (any AE title) can read it (findscu -W -k PatientName=*). Said where the
      // operator looks (status, log at warn), as the orders listener does for its own default
      const loopback = /^(127\.|::1$|localhost$)/.test(this.opts.host ?? '');
      if ((this.opts.services?.worklist || this.opts.services?.mpps) && !this.callers.length && !this.opts.allowFrom && !loopback) {
        // issue 10 §3: like the orders listener, a service that gives out (or changes) patient data is never
        // "anyone" by default: without allowedCallers/allowFrom only 127.0.0.1 and ::1 get its context
        this.detail += '; worklist/MPPS only from loopback: set allowed callers or allowFrom';
        this.log.warn({ port: this.port }, 'DICOM worklist/MPPS without an allow-list: only loopback (127.0.0.1, ::1) may use them; set allowedCallers (DICOM_ALLOWED_CALLERS) or allowFrom (DICOM_ALLOW_FROM) to the modalities');
      }
      if (signal) {
        if (signal.aborted) void this.close();
        else signal.addEventListener('abort', () => void this.close(), { once: true });
      }
      return { port: this.port };
    } catch (e) {
      this.state = 'error';
      this.detail = (e as Error).message;
      this.lastError = this.detail;
      this.lastErrorAt = new Date().toISOString();
      throw e;
    }
  }

  /** Listen until `signal` aborts, then close. Rejects when the port cannot be bound. */
  async run(signal: AbortSignal): Promise<void> {
    await this.start(signal);
    if (!signal.aborted) await new Promise<void>((r) => signal.addEventListener('abort', () => r(), { once: true }));
    await this.close();
  }

  /** Stop listening and close every association (a transfer in progress gets no success: its temp file goes). */
  async close(): Promise<void> {
    if (this.recountTimer) clearInterval(this.recountTimer);
    this.recountTimer = undefined;
    const server = this.server;
    const closed = server?.listening ? new Promise<void>((r) => server.close(() => r())) : Promise.resolve();
    for (const scp of this.scps) scp.socket.destroy();
    await closed;
    this.guard.close();
    this.state = 'stopped';
    this.detail = undefined;
  }

  get boundPort(): number | undefined {
    return this.port;
  }

  /**
   * Measure the stored files again (the quota's counter): files deleted by retention (file-retention.ts)
   * give their space back. Temp files of objects in progress count (they hold their reservation); what is
   * reserved or released during the walk is added. Only when at least `above` of the quota is in use.
   */
  async recountStorage(above = 0): Promise<void> {
    const quota = this.opts.maxStorageBytes ?? 0;
    if (quota <= 0 || this.recountDelta !== undefined || this.usedBytes < above * quota) return;
    this.recountDelta = 0;
    try {
      const measured = await dirBytes(this.filesDir, '');
      this.usedBytes = Math.max(0, measured + this.recountDelta);
    } catch (e) {
      this.log.warn({ err: (e as Error).message }, 'could not measure the stored DICOM files');
    } finally {
      this.recountDelta = undefined;
    }
  }

  /** Stored bytes counted against the quota (tests, diagnostics). */
  get storedBytes(): number {
    return this.usedBytes;
  }

  status(): DriverStatus {
    const s: DriverStatus = { deviceId: this.opts.deviceId, driver: DRIVER_NAME, state: this.state, connections: this.scps.size };
    if (this.state === 'listening' && this.associations > 0) s.state = 'connected';
    if (this.detail) s.detail = this.detail;
    if (this.lastMessageAt) s.lastMessageAt = this.lastMessageAt;
    if (this.lastErrorAt) s.lastErrorAt = this.lastErrorAt;
    if (this.lastError) s.lastError = this.lastError;
    if (this.controlIdReused) s.controlIdReused = this.controlIdReused;
    return s;
  }

  private accept(socket: net.Socket): void {
    const guard = this.guard.admit(socket);
    if (!guard) return;
    const info: ConnInfo = { id: this.nextConn++, remote: `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}`, address: normalizeAddress(socket.remoteAddress), guard };
    const idle = this.opts.idleTimeoutMs ?? 60_000;
    const scp = new GatewayScp(socket, { pduTimeout: idle, associationTimeout: idle, connectTimeout: idle * 2 }, this, info);
    // as dcmjs-dimse's Server does for an accepted socket; connectedTime arms the library's association timer too
    Object.assign(scp, { connected: true, connectedTime: Date.now() });
    this.scps.add(scp);
    socket.on('close', () => {
      guard.release();
      this.scps.delete(scp);
    });
  }

  // ------------------------------------------------------------------ called by GatewayScp

  /** A-ASSOCIATE-RQ: the answer (PS3.8 7.1.1, 9.3.4). Returns a rejection or undefined (then contexts are set). */
  negotiate(assoc: Assoc, info: ConnInfo): { result: number; source: number; reason: number; why: string } | undefined {
    const called = assoc.getCalledAeTitle().trim();
    const calling = assoc.getCallingAeTitle().trim();
    if (called !== this.opts.aeTitle.trim()) {
      return { result: RejectResult.Permanent, source: RejectSource.ServiceUser, reason: RejectReason.CalledAeNotRecognized, why: 'called AE title not recognized' };
    }
    if (this.callers.length && !this.callers.some((c) => c.aeTitle === calling && isAllowed(c.hosts, info.address))) {
      return { result: RejectResult.Permanent, source: RejectSource.ServiceUser, reason: RejectReason.CallingAeNotRecognized, why: 'calling AE title not recognized' };
    }
    if (this.associations >= (this.opts.maxAssociations ?? 16)) {
      // PS3.8 9.3.4: source 3 (service provider, presentation related), reason 2 local limit exceeded
      return { result: RejectResult.Transient, source: RejectSource.ServiceProviderPresentation, reason: RejectReason.LocalLimitExceeded, why: 'association limit reached' };
    }
    // PS3.7 D.3.3.3: no Asynchronous Operations Window item in our A-ASSOCIATE-AC = one operation at a
    // time (the library would echo the SCU's window, and its C-STORE state machine is synchronous)
    assoc.setNegotiateAsyncOps(false);
    const services = this.opts.services ?? {};
    // the worklist answers patient names, ids and birth dates, MPPS changes what the RIS is told: with no
    // allow-list at all (no allowed callers, no allowFrom) only loopback peers get these contexts
    const patientServices = this.callers.length > 0 || !!this.opts.allowFrom || PATIENT_SERVICES_DEFAULT_FROM.includes(info.address);
    for (const { context } of assoc.getPresentationContexts() as Array<{ context: PresentationContext }>) {
      const as = context.getAbstractSyntaxUid();
      const offered =
        as === VERIFICATION_SOP_CLASS || (as === MWL_FIND_SOP_CLASS && services.worklist && patientServices) || (as === MPPS_SOP_CLASS && services.mpps && patientServices)
          ? PLAIN_TRANSFER_SYNTAXES
          : this.opts.storage !== false && isStorageSopClass(as)
            ? STORAGE_TRANSFER_SYNTAXES
            : undefined;
      if (!offered) {
        context.setResult(PCR.RejectAbstractSyntaxNotSupported);
        continue;
      }
      // PS3.8 9.3.3.2: one transfer syntax per accepted context; the SCU's first we support (as proposed)
      const ts = context.getTransferSyntaxUids().find((t) => offered.includes(t));
      if (ts) context.setResult(PCR.Accept, ts);
      else context.setResult(PCR.RejectTransferSyntaxesNotSupported);
    }
    return undefined;
  }

  associationOpened(): void {
    this.associations++;
  }

  associationClosed(): void {
    this.associations = Math.max(0, this.associations - 1);
  }

  noteError(message: string): void {
    this.lastError = message;
    this.lastErrorAt = new Date().toISOString();
  }

  /** Keep refused bytes (garbage, truncated PDU, unreadable dataset) with the reason; never throws. */
  async quarantine(raw: Buffer, reason: string, errorCode: string, meta: Record<string, unknown>): Promise<void> {
    this.noteError(reason);
    try {
      await this.sink.quarantine({ deviceId: this.opts.deviceId, driver: DRIVER_NAME, raw: raw.subarray(0, KEEP_BYTES), reason, errorCode, meta });
      metrics.quarantined.inc({ device: this.opts.deviceId });
    } catch (e) {
      this.log.error({ err: (e as Error)?.message ?? String(e) }, 'could not quarantine refused DICOM bytes');
    }
  }

  /**
   * A complete C-STORE dataset is in its temp file (fsynced): read its index attributes, move it to its
   * place, fsync the directory, commit the row. Resolves with the DIMSE status to answer.
   */
  async store(request: CStoreRequest, writer: InstanceWriter, ctx: { calling: string; called: string; ts: string; info: ConnInfo }): Promise<number> {
    const device = this.opts.deviceId;
    metrics.received.inc({ device });
    this.lastMessageAt = new Date().toISOString();
    const refuse = (status: number, reason: string, label: string): number => {
      writer.discard();
      metrics.rejected.inc({ device, reason: label });
      this.log.warn({ conn: ctx.info.id, calling: ctx.calling, status: hex(status), reason }, 'C-STORE refused');
      this.noteError(reason);
      return status;
    };
    if (writer.failure) {
      // PS3.4 B.2.3: A700 out of resources for a full disk or the quota; an I/O error is a processing failure
      const status = writer.failure.kind === 'io' ? STORE_STATUS.processingFailure : STORE_STATUS.outOfResources;
      return refuse(status, writer.failure.message, writer.failure.kind);
    }
    writer.closeFile();
    let header: DatasetHeader;
    try {
      header = await readFileHeader(writer.tmpPath, writer.metaBytes, writer.datasetBytes, ctx.ts, this.opts.headerMaxBytes ?? 4 * 1024 * 1024);
    } catch (e) {
      const status = e instanceof DatasetError ? e.status : STORE_STATUS.cannotUnderstand;
      const reason = `unreadable dataset: ${(e as Error).message}`;
      await this.quarantine(await readDatasetHead(writer.tmpPath, writer.metaBytes), reason, 'GW_ERR_PARSE', { transferSyntax: ctx.ts, sopClassUid: request.getAffectedSopClassUid(), callingAeTitle: ctx.calling, remote: ctx.info.remote, bytes: writer.datasetBytes });
      return refuse(status, reason, 'parse');
    }
    const sopClassUid = request.getAffectedSopClassUid();
    const sopInstanceUid = request.getAffectedSopInstanceUid();
    // PS3.4 B.2.3 A9xx: the dataset must be the instance the command announces, with its Type 1 UIDs
    // (PS3.3 C.12.1: SOP Class / Instance UID are Type 1 too; a dataset without them got Success here and
    // was then refused by the PACS, 0xC000: a dead letter the modality never heard of)
    const mismatch =
      !header.studyInstanceUid || !header.seriesInstanceUid
        ? 'Study or Series Instance UID missing'
        : !header.sopInstanceUid || !header.sopClassUid
          ? 'SOP Class or SOP Instance UID missing'
          : header.sopInstanceUid !== sopInstanceUid
            ? 'SOP Instance UID differs from the command'
            : header.sopClassUid !== sopClassUid
              ? 'SOP Class UID differs from the command'
              : undefined;
    if (mismatch) {
      await this.quarantine(await readDatasetHead(writer.tmpPath, writer.metaBytes), `dataset does not match: ${mismatch}`, 'GW_ERR_PARSE', { transferSyntax: ctx.ts, sopClassUid, callingAeTitle: ctx.calling, remote: ctx.info.remote });
      return refuse(STORE_STATUS.datasetMismatch, mismatch, 'mismatch');
    }
    const h = (s: string) => createHash('sha256').update(s).digest('hex');
    const relDir = join('dicom', uidPathPart(header.studyInstanceUid as string, h), uidPathPart(header.seriesInstanceUid as string, h));
    let relPath = '';
    let abs = '';
    try {
      const created = await mkdir(join(this.opts.dataDir, relDir), { recursive: true });
      relPath = join(relDir, await instanceFileName(join(this.opts.dataDir, relDir), uidPathPart(sopInstanceUid, h), writer.sha256));
      abs = join(this.opts.dataDir, relPath);
      await rename(writer.tmpPath, abs);
      // the rename is durable only with its directory; new directories need their parents too
      await fsyncDir(dirname(abs));
      if (created) for (let d = dirname(dirname(abs)); d.length >= this.filesDir.length; d = dirname(d)) await fsyncDir(d);
    } catch (e) {
      const err = e as NodeJS.ErrnoException;
      const full = err.code === 'ENOSPC' || err.code === 'EDQUOT';
      return refuse(full ? STORE_STATUS.outOfResources : STORE_STATUS.processingFailure, `cannot place the file: ${err.code ?? err.message}`, full ? 'disk-full' : 'io');
    }
    const record: DicomInstanceRecord = {
      sopClassUid,
      sopInstanceUid,
      studyInstanceUid: header.studyInstanceUid as string,
      seriesInstanceUid: header.seriesInstanceUid as string,
      ...(header.modality ? { modality: header.modality } : {}),
      ...(header.accessionNumber ? { accessionNumber: header.accessionNumber } : {}),
      ...(header.studyDate ? { studyDate: header.studyDate } : {}),
      transferSyntaxUid: ctx.ts,
      callingAeTitle: ctx.calling,
      calledAeTitle: ctx.called,
      relPath,
      bytes: writer.bytes,
      sha256: writer.sha256,
      receivedAt: new Date().toISOString(),
    };
    const inbound = instanceInbound(device, record, header, ctx.info.remote);
    let result: CommitResult;
    try {
      result = await this.sink.submit(inbound);
    } catch (e) {
      // the file stays (a re-send of the same content lands on the same path); no row = no success
      writer.keep();
      const full = e instanceof StoreFullError;
      metrics.rejected.inc({ device, reason: 'store' });
      this.log.error({ conn: ctx.info.id, err: (e as Error).message }, 'C-STORE: index row not committed');
      this.noteError(`store: ${(e as Error).message}`);
      return full ? STORE_STATUS.outOfResources : STORE_STATUS.processingFailure;
    }
    if (result.duplicate) writer.discard(); // same content, same path: the rename replaced identical bytes
    else {
      writer.keep();
      if (result.controlIdReused) this.controlIdReused++;
    }
    reportCommitted(this.log, result, inbound, this.onCommitted, { connId: ctx.info.id, msg: 'duplicate instance (same SOP Instance UID and content): success again, stored once' });
    return STORE_STATUS.success;
  }
}

/**
 * The instance record as an InboundMessage (drivers/dicom/contracts.ts): raw = the record as JSON,
 * dedupe on SOP Instance UID + sha256, controlKey = SOP Instance UID, one imaging draft.
 */
export function instanceInbound(deviceId: string, record: DicomInstanceRecord, header: DatasetHeader, remote: string): InboundMessage {
  const subject: NonNullable<ObservationDraft['subject']> = {};
  if (header.patientId) subject.patientId = header.patientId;
  if (header.patientName) subject.patientName = header.patientName;
  if (header.patientBirthDate) subject.birthDate = header.patientBirthDate;
  if (header.patientSex) subject.sex = header.patientSex;
  if (record.accessionNumber) subject.accession = record.accessionNumber;
  const draft: ObservationDraft = {
    category: 'imaging',
    status: 'final',
    statusCode: 'F',
    code: { system: 'urn:ietf:rfc:3986', code: `urn:oid:${record.sopClassUid}` },
    value: { kind: 'reference', pointer: record.relPath, application: 'iomt-gateway', typeOfData: 'application', subtype: 'dicom' },
    equipment: { id: record.callingAeTitle, ...(header.stationName ? { name: header.stationName } : {}) },
    imaging: {
      studyInstanceUid: record.studyInstanceUid,
      seriesInstanceUid: record.seriesInstanceUid,
      sopInstanceUid: record.sopInstanceUid,
      sopClassUid: record.sopClassUid,
      ...(record.modality ? { modality: record.modality } : {}),
      ...(record.studyDate ? { studyDate: record.studyDate } : {}),
      transferSyntaxUid: record.transferSyntaxUid,
    },
  };
  if (Object.keys(subject).length) draft.subject = subject;
  if (record.accessionNumber) draft.order = { fillerOrderNumber: record.accessionNumber };
  const m: InboundMessage = {
    deviceId,
    driver: DRIVER_NAME,
    raw: Buffer.from(JSON.stringify(record), 'utf8'),
    receivedAt: new Date(record.receivedAt),
    sourceMessageId: record.sopInstanceUid,
    sender: record.callingAeTitle,
    messageType: 'C-STORE',
    dedupeKey: `${record.sopInstanceUid}|${record.sha256}`,
    controlKey: record.sopInstanceUid,
    drafts: [draft],
    meta: { ...record, remote },
  };
  if (header.charsetFallback) m.flags = ['charset-fallback'];
  return m;
}

/**
 * dcmjs-dimse's Scp, with the store stream on disk, backpressure, the PDU framer in front of the
 * library's accumulator, and the association rules of DicomStorageScp.
 */
class GatewayScp extends Scp {
  private readonly framer: PduFramer;
  private readonly log;
  private associated = false;
  private writer: InstanceWriter | undefined;
  private refused = false;
  /** An A-ASSOCIATE-RQ was seen on this connection (a second one is an unexpected PDU). */
  private requested = false;
  /** The last PDU handed to the library (≤ 64 KiB of it): quarantined when the library cannot handle it. */
  private lastPdu: Buffer | undefined;
  private busyTimer: NodeJS.Timeout | undefined;
  private paused = false;
  private calling = '';
  private called = '';

  constructor(
    readonly socket: net.Socket,
    libOpts: ConstructorParameters<typeof Scp>[1],
    private readonly owner: DicomStorageScp,
    private readonly info: ConnInfo,
  ) {
    super(socket, libOpts);
    this.log = componentLogger('dicom-scp', { deviceId: owner.opts.deviceId, conn: info.id });
    // the framer checks and assembles PDUs and hands each to the library's PDU handler (Network
    // _processPdu, dcmjs-dimse 0.3.3; checked by dcmjs-dimse.test.ts); the library's own
    // 'data' listener (its accumulator) is removed
    this.framer = new PduFramer({ maxPDataBytes: owner.maxPduBytes }, (pdu) => {
      this.touch();
      this.lastPdu = pdu.subarray(0, KEEP_BYTES);
      void (this as unknown as { _processPdu(b: Buffer): Promise<void> })._processPdu(pdu);
    });
    socket.removeAllListeners('data');
    socket.on('data', (d: Buffer) => this.onData(d));
    // idleness is the library's PDU timeout (which our own work refreshes, see touch()); the socket
    // inactivity timeout it also sets would fire during a long fsync of our own
    socket.setTimeout(0);
    socket.on('error', (e) => this.log.debug({ err: e.message }, 'socket error'));
    this.on('networkError', (e: Error) => {
      if (this.refused) return;
      this.log.info({ remote: info.remote, err: e.message }, 'DICOM connection error: closing');
      this.owner.noteError(e.message);
      // a PDU or DIMSE the library could not handle (e.g. P-DATA on a context that was not accepted):
      // A-ABORT (PS3.8 9.3.8, service provider, reason not specified); timeouts were aborted by the library
      if (!/timeout|Connection error/i.test(e.message)) {
        // nothing refused without quarantine: the PDU the library could not handle is kept with the reason
        if (this.lastPdu) this.refusePdu(`PDU not handled: ${e.message}`, this.lastPdu);
        if (this.socket.writable) this.socket.write(abortPdu(AbortSource.ServiceProvider, AbortReason.NotSpecified));
      }
      this.closeSoon();
    });
    this.on('close', () => this.onClose());
  }

  private onData(d: Buffer): void {
    const v = this.framer.push(d);
    if (!v.ok) {
      if (this.refused) return;
      this.refused = true;
      const device = this.owner.opts.deviceId;
      metrics.strayBytes.inc({ device }, d.length);
      metrics.rejected.inc({ device, reason: 'pdu' });
      this.log.warn({ remote: this.info.remote, reason: v.reason }, 'not a DICOM PDU: A-ABORT and close');
      void this.owner.quarantine(v.kept, `refused PDU: ${v.reason}`, 'GW_ERR_PARSE', { remote: this.info.remote, callingAeTitle: this.calling || undefined });
      // PS3.8 9.3.8: A-ABORT source 2 (service provider), reason 1 unrecognized PDU / 6 invalid parameter
      // (written here: the library's sendAbort needs an association, and there may be none)
      this.socket.write(abortPdu(AbortSource.ServiceProvider, v.reason.startsWith('unknown') ? AbortReason.UnrecognizedPdu : AbortReason.InvalidPduParameter));
      this.closeSoon();
      return;
    }
    this.info.guard.progress(d.length);
    // backpressure: the file stream is over its high-water mark → stop reading until it drains
    const w = this.writer;
    if (w && w.writableNeedDrain && !this.paused) {
      this.paused = true;
      this.socket.pause();
      // 'drain' does not come once the stream is ending (the last fragment was in this chunk):
      // 'finish' (or 'close' on a discard) resumes then
      const resume = () => {
        w.off('drain', resume);
        w.off('finish', resume);
        w.off('close', resume);
        this.resumeReading();
      };
      w.on('drain', resume);
      w.on('finish', resume);
      w.on('close', resume);
    }
  }

  /** A PDU refused after framing: counted, logged without content, quarantined with the reason. */
  private refusePdu(reason: string, kept: Buffer): void {
    metrics.rejected.inc({ device: this.owner.opts.deviceId, reason: 'pdu' });
    this.log.warn({ remote: this.info.remote, reason }, 'PDU refused: A-ABORT and close');
    void this.owner.quarantine(kept, `refused PDU: ${reason}`, 'GW_ERR_PARSE', { remote: this.info.remote, callingAeTitle: this.calling || undefined });
  }

  private resumeReading(): void {
    if (!this.paused) return;
    this.paused = false;
    this.touch(); // time spent waiting for our disk is not the peer's idleness
    this.socket.resume();
  }

  /** dcmjs-dimse's PDU timeout counts from `lastPduTime` (Network.js): our own work does not count as the peer idling. */
  private touch(): void {
    (this as unknown as { lastPduTime: number | undefined }).lastPduTime = Date.now();
  }

  private closeSoon(): void {
    this.socket.end();
    setTimeout(() => this.socket.destroy(), 1000).unref();
  }

  private onClose(): void {
    if (this.busyTimer) clearInterval(this.busyTimer);
    this.busyTimer = undefined;
    const end = this.framer.end();
    if (this.writer && !this.writer.writableFinished) {
      // the association ended inside a C-STORE: no status was sent, nothing is kept
      this.writer.discard();
      metrics.rejected.inc({ device: this.owner.opts.deviceId, reason: 'aborted' });
      this.log.warn({ remote: this.info.remote, calling: this.calling, bytes: this.writer.datasetBytes }, 'association ended during a C-STORE: partial object discarded');
      this.owner.noteError('association ended during a C-STORE');
    } else if (end.truncated && !this.refused) {
      this.log.warn({ remote: this.info.remote, pdu: end.type }, 'connection closed inside a PDU (truncated)');
      void this.owner.quarantine(end.kept, `truncated PDU: connection closed inside ${end.type}`, 'GW_ERR_PARSE', { remote: this.info.remote, callingAeTitle: this.calling || undefined });
    }
    this.writer = undefined;
    if (this.associated) {
      this.associated = false;
      this.owner.associationClosed();
    }
  }

  // ---------------------------------------------------------------- association

  override associationRequested(assoc: Assoc): void {
    if (this.requested) {
      // PS3.8 9.2 state table: an A-ASSOCIATE-RQ PDU once the association is established (Sta6) or
      // answered is unexpected (AA-8): A-ABORT, service provider, reason 2 "unexpected PDU" (PS3.8 9.3.8).
      // Negotiating it again would count one connection as several associations, and the count never
      // came back down: a few such connections locked every modality out ("local limit exceeded").
      this.refused = true;
      this.refusePdu('unexpected A-ASSOCIATE-RQ on an association already requested (PS3.8 9.2 AA-8)', this.lastPdu ?? Buffer.alloc(0));
      if (this.socket.writable) this.socket.write(abortPdu(AbortSource.ServiceProvider, AbortReason.UnexpectedPdu));
      this.closeSoon();
      return;
    }
    this.requested = true;
    this.info.guard.frame();
    this.calling = assoc.getCallingAeTitle().trim();
    this.called = assoc.getCalledAeTitle().trim();
    const rj = this.owner.negotiate(assoc, this.info);
    if (rj) {
      metrics.rejected.inc({ device: this.owner.opts.deviceId, reason: 'association' });
      this.owner.noteError(`association rejected: ${rj.why}`);
      this.log.warn({ remote: this.info.remote, calling: this.calling, called: this.called, reason: rj.why }, 'A-ASSOCIATE-RJ');
      this.sendAssociationReject(rj.result, rj.source, rj.reason);
      this.closeSoon();
      return;
    }
    this.associated = true;
    this.owner.associationOpened();
    this.log.info({ remote: this.info.remote, calling: this.calling }, 'association accepted');
    // PS3.8 D.1: each side announces the largest P-DATA-TF it can *receive*. dcmtk-dimse uses one value
    // for both directions (min of the two); we announce our own receive limit in the A-ASSOCIATE-AC and
    // then send with the SCU's limit (big PDUs from the SCU: far fewer PDUs and copies per object)
    const theirs = assoc.getMaxPduLength();
    assoc.setMaxPduLength(this.owner.maxPduBytes);
    this.sendAssociationAccept();
    if (theirs > 0) assoc.setMaxPduLength(theirs);
  }

  override associationReleaseRequested(): void {
    this.sendAssociationReleaseResponse();
  }

  override abort(): void {
    // PS3.8 7.3.2 / 9.2 (state machine AA-3): A-ABORT received → close the transport connection
    this.log.info({ remote: this.info.remote, calling: this.calling }, 'A-ABORT received');
    this.socket.destroy();
  }

  // ---------------------------------------------------------------- C-STORE streaming

  override createStoreWritableStream(pc: PresentationContext, request: CStoreRequest): InstanceWriter {
    this.info.guard.busy = true;
    const meta = buildFileMeta({ sopClassUid: request.getAffectedSopClassUid(), sopInstanceUid: request.getAffectedSopInstanceUid(), transferSyntaxUid: pc.getAcceptedTransferSyntaxUid() as string });
    const w = new InstanceWriter(this.owner.tmpDir, meta, this.owner.allowance);
    w.on('drain', () => this.touch());
    (request as unknown as Record<symbol, unknown>)[WRITER] = { writer: w, ts: pc.getAcceptedTransferSyntaxUid() as string, abstractSyntax: pc.getAbstractSyntaxUid() };
    this.writer = w;
    return w;
  }

  override createDatasetFromStoreWritableStream(writable: InstanceWriter, pc: PresentationContext, callback: (dataset: InstanceType<typeof Dataset>) => void): void {
    // the library called end(): wait until every byte is written and fsynced, then hand on an empty
    // Dataset (the object is the file; cStoreRequest reads what it needs from there)
    // from here until the answer the SCU waits for us: that is not idleness (PS3.8 ARTIM is not running)
    if (!this.busyTimer) this.busyTimer = setInterval(() => this.touch(), 1000);
    const done = () => callback(new Dataset({}, pc.getAcceptedTransferSyntaxUid()));
    if (writable.writableFinished) done();
    else writable.once('finish', done);
  }

  override cStoreRequest(request: CStoreRequest, callback: (response: InstanceType<typeof responses.CStoreResponse>) => void): void {
    const slot = (request as unknown as Record<symbol, { writer: InstanceWriter; ts: string; abstractSyntax: string } | undefined>)[WRITER];
    const w = slot?.writer;
    const answer = (status: number) => {
      this.info.guard.busy = false;
      if (this.busyTimer) clearInterval(this.busyTimer);
      this.busyTimer = undefined;
      this.resumeReading(); // never leave the next command unread
      this.touch();
      const rsp = responses.CStoreResponse.fromRequest(request);
      rsp.setStatus(status);
      if (this.writer === w) this.writer = undefined;
      callback(rsp);
    };
    if (!slot || !w) {
      answer(STORE_STATUS.cannotUnderstand);
      return;
    }
    const sopClass = request.getAffectedSopClassUid();
    if (sopClass !== slot.abstractSyntax || !isStorageSopClass(sopClass)) {
      // PS3.7 9.1.1.1 / PS3.4 B.2.3: the SOP class must be the context's (a storage one): 0x0122 refused;
      // nothing refused without quarantine: the dataset's first 64 KiB are kept with the reason
      metrics.rejected.inc({ device: this.owner.opts.deviceId, reason: 'sop-class' });
      this.log.warn({ calling: this.calling, sopClass, context: slot.abstractSyntax }, 'C-STORE on a context of another SOP class: refused 0x0122');
      const reason = `C-STORE of SOP class ${sopClass} on a presentation context of ${slot.abstractSyntax}: refused 0x0122`;
      void readDatasetHead(w.tmpPath, w.metaBytes)
        .then((head) => this.owner.quarantine(head, reason, 'GW_ERR_PARSE', { transferSyntax: slot.ts, sopClassUid: sopClass, callingAeTitle: this.calling, remote: this.info.remote, bytes: w.datasetBytes }))
        .finally(() => {
          w.discard();
          answer(STORE_STATUS.sopClassNotSupported);
        });
      return;
    }
    this.owner
      .store(request, w, { calling: this.calling, called: this.called, ts: slot.ts, info: this.info })
      .then(answer, (e: Error) => {
        w.discard();
        this.log.error({ err: e.message }, 'C-STORE failed');
        answer(STORE_STATUS.processingFailure);
      });
  }

  // ---------------------------------------------------------------- C-ECHO, worklist, MPPS

  override cEchoRequest(request: InstanceType<typeof dimse.requests.CEchoRequest>, callback: (r: InstanceType<typeof responses.CEchoResponse>) => void): void {
    const rsp = responses.CEchoResponse.fromRequest(request);
    rsp.setStatus(Status.Success); // PS3.7 9.1.5.1.4
    callback(rsp);
  }

  override cFindRequest(request: InstanceType<typeof dimse.requests.CFindRequest>, callback: (r: Array<InstanceType<typeof responses.CFindResponse>>) => void): void {
    const provider = this.owner.opts.services?.worklist;
    const fail = (status: number) => {
      const r = responses.CFindResponse.fromRequest(request);
      r.setStatus(status);
      callback([r]);
    };
    if (!provider || request.getAffectedSopClassUid() !== MWL_FIND_SOP_CLASS) return fail(Status.SopClassNotSupported);
    const query = (request.getDataset()?.getElements() ?? {}) as Record<string, unknown>;
    provider
      .find(query, { callingAeTitle: this.calling, calledAeTitle: this.called, remoteAddress: this.info.address })
      .then((matches) => {
        // PS3.7 9.1.2.1.6: one Pending (FF00) per match with its identifier, then Success
        const lib = this as unknown as { datasetNameMap?: Record<string, unknown>; datasetWriteOptions?: Record<string, unknown> };
        const out = findPendingResponses(request, matches, this.mwlTransferSyntax(), { nameMap: lib.datasetNameMap, writeOptions: lib.datasetWriteOptions });
        const last = responses.CFindResponse.fromRequest(request);
        last.setStatus(Status.Success);
        // the library writes each PDU with its own socket.write: corked, the whole answer leaves in one writev
        this.socket.cork();
        try {
          callback([...out, last]);
        } finally {
          this.socket.uncork();
        }
      })
      .catch((e: Error) => {
        this.log.error({ err: e.message }, 'worklist provider failed');
        fail(0xc000); // PS3.4 K.4.1.1.4 / C.4.1.1.4: failure, unable to process
      });
  }

  /** The transfer syntax accepted for the worklist on this association (the identifiers are encoded in it once). */
  private mwlTransferSyntax(): string {
    const assoc = (this as unknown as { association?: Assoc }).association;
    for (const { context: pc } of assoc?.getPresentationContexts() ?? []) {
      if (pc.getAbstractSyntaxUid() === MWL_FIND_SOP_CLASS && pc.getResult() === PCR.Accept) return pc.getAcceptedTransferSyntaxUid() ?? TS.implicitLE;
    }
    return TS.implicitLE;
  }

  override nCreateRequest(request: InstanceType<typeof dimse.requests.NCreateRequest>, callback: (r: InstanceType<typeof responses.NCreateResponse>) => void): void {
    this.mpps(request, 'nCreate', request.getAffectedSopInstanceUid(), (s) => {
      const r = responses.NCreateResponse.fromRequest(request);
      r.setStatus(s);
      callback(r);
    });
  }

  override nSetRequest(request: InstanceType<typeof dimse.requests.NSetRequest>, callback: (r: InstanceType<typeof responses.NSetResponse>) => void): void {
    this.mpps(request, 'nSet', request.getRequestedSopInstanceUid(), (s) => {
      const r = responses.NSetResponse.fromRequest(request);
      r.setStatus(s);
      callback(r);
    });
  }

  private mpps(request: Request, op: 'nCreate' | 'nSet', uid: string, reply: (status: number) => void): void {
    const handler = this.owner.opts.services?.mpps;
    if (!handler) return reply(Status.SopClassNotSupported);
    const ds = (request.getDataset()?.getElements() ?? {}) as Record<string, unknown>;
    handler[op](uid, ds, { callingAeTitle: this.calling, calledAeTitle: this.called }).then(reply, (e: Error) => {
      this.log.error({ err: e.message, op }, 'MPPS handler failed');
      reply(Status.ProcessingFailure); // PS3.7 10.1.5.1.6 / 10.1.1.1.8: 0x0110
    });
  }

  // services we do not offer: their contexts are never accepted; answer anyway if one arrives
  override cMoveRequest(request: InstanceType<typeof dimse.requests.CMoveRequest>, callback: (r: Array<InstanceType<typeof responses.CMoveResponse>>) => void): void {
    const r = responses.CMoveResponse.fromRequest(request);
    r.setStatus(Status.SopClassNotSupported);
    callback([r]);
  }

  override cGetRequest(request: InstanceType<typeof dimse.requests.CGetRequest>, callback: (r: Array<InstanceType<typeof responses.CGetResponse>>) => void): void {
    const r = responses.CGetResponse.fromRequest(request);
    r.setStatus(Status.SopClassNotSupported);
    callback([r]);
  }

  override cCancelRequest(): void {
    /* C-FIND answers are sent at once; nothing to cancel */
  }
}

// ---------------------------------------------------------------- C-FIND answers, encoded once per query

// dcmjs as dcmjs-dimse loads it (the same CommonJS module: its Dataset encodes with these functions)
// eslint-disable-next-line @typescript-eslint/no-require-imports
const dcmjsData = (require('dcmjs') as {
  data: {
    DicomMetaDictionary: { nameMap: Record<string, unknown>; denaturalizeDataset(ds: unknown, nameMap?: Record<string, unknown>): Record<string, unknown> };
    DicomMessage: { write(dict: Record<string, unknown>, stream: unknown, ts: string, opts: Record<string, unknown>): number };
    WriteBufferStream: new (defaultSize?: number, littleEndian?: boolean) => { size: number; getBuffer(): ArrayBuffer };
  };
}).data;

/** A Dataset whose encoding in `ts` was done already (the library's getDenaturalizedDataset would redo it). */
class EncodedDataset extends Dataset {
  constructor(
    elements: Record<string, unknown>,
    private readonly encodedTs: string,
    private readonly bytes: Buffer,
  ) {
    super(elements, encodedTs);
  }

  override getDenaturalizedDataset(...a: Parameters<InstanceType<typeof Dataset>['getDenaturalizedDataset']>): Buffer {
    // a transcode (another accepted syntax) builds a new plain Dataset from the elements, so this holds
    return this.getTransferSyntaxUid() === this.encodedTs ? this.bytes : super.getDenaturalizedDataset(...a);
  }
}

/**
 * The Pending C-FIND responses for `matches` (PS3.7 9.1.2.1.6 / PS3.4 K.4.1.1.3.1: one FF00 per match,
 * the identifier in `ts`). Byte for byte what dcmjs-dimse 0.3.3 sends for `new Dataset(match, ts)`
 * (storage-scp-cfind.test.ts), but built once per query: the library's Dataset allocates and zeroes a
 * 256 KiB dcmjs write buffer per identifier and three per command (2-5 ms each here), and spreads the
 * whole DICOM name map per identifier when a (even empty) name map is set. Here: every identifier is
 * denaturalized and written into one buffer, and the Pending command set (identical for every match)
 * is encoded once.
 */
export function findPendingResponses(
  request: InstanceType<typeof dimse.requests.CFindRequest>,
  matches: Array<Record<string, unknown>>,
  ts: string,
  opts: { nameMap?: Record<string, unknown>; writeOptions?: Record<string, unknown> } = {},
): Array<InstanceType<typeof responses.CFindResponse>> {
  if (!matches.length) return [];
  const { DicomMetaDictionary, DicomMessage, WriteBufferStream } = dcmjsData;
  // as the library: its name map (default {}) merged over dcmjs's; an empty one changes nothing
  const nameMap = opts.nameMap && Object.keys(opts.nameMap).length ? { ...DicomMetaDictionary.nameMap, ...opts.nameMap } : undefined;
  const stream = new WriteBufferStream();
  const ranges: Array<[number, number]> = [];
  for (const m of matches) {
    const start = stream.size;
    DicomMessage.write(nameMap ? DicomMetaDictionary.denaturalizeDataset(m, nameMap) : DicomMetaDictionary.denaturalizeDataset(m), stream, ts, opts.writeOptions ?? {});
    ranges.push([start, stream.size]);
  }
  const all = Buffer.from(stream.getBuffer());
  let command: { key: string; bytes: Buffer } | undefined;
  return matches.map((m, i) => {
    const r = responses.CFindResponse.fromRequest(request);
    r.setDataset(new EncodedDataset(m, ts, all.subarray(ranges[i][0], ranges[i][1])));
    r.setStatus(Status.Pending);
    const cmd = r.getCommandDataset() as unknown as { getElements(): Record<string, unknown>; getDenaturalizedCommandDataset(): Buffer };
    const key = JSON.stringify(cmd.getElements());
    if (command?.key === key) {
      const bytes = command.bytes;
      cmd.getDenaturalizedCommandDataset = () => bytes;
    } else command = { key, bytes: cmd.getDenaturalizedCommandDataset() };
    return r;
  });
}

/**
 * The stored file's name in `dir`: `<sop>.<first 8 hex of sha256>.dcm`, so that an identical re-send
 * lands on the same file. 8 hex digits collide after ~2^32 tries, which an attacker who saw an object
 * on the wire can afford: a file already there with other content is never replaced (the rename would
 * have overwritten an acknowledged object); the new one is then named with the full sha256.
 */
export async function instanceFileName(dir: string, base: string, sha256: string): Promise<string> {
  const short = `${base}.${sha256.slice(0, 8)}.dcm`;
  let existing: string | undefined;
  try {
    const hash = createHash('sha256');
    for await (const chunk of createReadStream(join(dir, short))) hash.update(chunk as Buffer);
    existing = hash.digest('hex');
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
  }
  return existing === undefined || existing === sha256 ? short : `${base}.${sha256}.dcm`;
}

/** A-ABORT PDU (PS3.8 9.3.8): type 7, length 4, reserved ×2, source, reason. */
function abortPdu(source: number, reason: number): Buffer {
  return Buffer.from([0x07, 0, 0, 0, 0, 4, 0, 0, source, reason]);
}

function hex(n: number): string {
  return `0x${n.toString(16).padStart(4, '0')}`;
}

async function fsyncDir(dir: string): Promise<void> {
  const fh = await open(dir, 'r');
  try {
    await fh.sync();
  } finally {
    await fh.close();
  }
}

/** The first `n` bytes of the dataset in a Part 10 temp file (after `metaBytes`). */
async function readDatasetHead(path: string, metaBytes: number, n = KEEP_BYTES): Promise<Buffer> {
  try {
    const fh = await open(path, 'r');
    try {
      const buf = Buffer.alloc(n);
      const { bytesRead } = await fh.read(buf, 0, n, metaBytes);
      return buf.subarray(0, bytesRead);
    } finally {
      await fh.close();
    }
  } catch {
    return Buffer.alloc(0);
  }
}

/** Read the index attributes from the temp file: a growing prefix (256 KiB ×4 …) up to `cap` bytes. */
async function readFileHeader(path: string, metaBytes: number, datasetBytes: number, ts: string, cap: number): Promise<DatasetHeader> {
  for (let n = Math.min(256 * 1024, cap); ; n = Math.min(n * 4, cap)) {
    const want = Math.min(n, datasetBytes);
    const buf = await readDatasetHead(path, metaBytes, want);
    try {
      return readHeader(buf, ts, want >= datasetBytes);
    } catch (e) {
      if (!(e instanceof NeedMoreBytes)) throw e;
      if (want >= datasetBytes || n >= cap) throw new DatasetError(`index attributes not within the first ${cap} bytes of the dataset`, 0xc000);
    }
  }
}

/** Bytes of the files under `dir` (the quota's starting point), `skip` excluded. */
async function dirBytes(dir: string, skip: string): Promise<number> {
  let total = 0;
  const walk = async (d: string): Promise<void> => {
    let names: string[];
    try {
      names = await readdir(d);
    } catch {
      return;
    }
    for (const name of names) {
      const p = join(d, name);
      if (p === skip) continue;
      let s: Stats;
      try {
        s = await stat(p);
      } catch {
        continue;
      }
      if (s.isDirectory()) await walk(p);
      else total += s.size;
    }
  };
  await walk(dir);
  return total;
}
