/**
 * C-STORE SCU that streams each object from disk (issue 11 §2, §6).
 *
 * Why a subclass: dcmjs-dimse 0.3.3's `Client` reads the whole file (`Dataset.fromFile` uses
 * readFileSync, twice for a CStoreRequest built from a path), re-encodes it with dcmjs
 * (`getDenaturalizedDataset`: the bytes sent are not the bytes stored) into one Buffer, and writes all
 * PDUs to the socket at once without waiting for 'drain'. A 1 GB object would cost > 2 GB of RAM, and
 * the PACS would not get the stored bytes. The library's `Network` (association state machine, PDU
 * reader, DIMSE responses, timeouts) is right, so we keep it and override only the sending of a
 * C-STORE data set: `_sendDimse` / `_sendPDataTF` of `Network`, which the package does not export (it
 * is the base class of the exported `Scp`). These are internal names of the pinned 0.3.3 build: the
 * test `dimse-scu.test.ts` fails if an upgrade renames them (then re-check this file).
 *
 * What this class does instead: for a C-STORE it writes the command PDU, then the data set straight
 * from the file (the bytes after the File Meta Information, PS3.10 7.1) in P-DATA-TF PDUs no longer
 * than the peer's Maximum Length (PS3.8 9.3.5, D.1), awaiting 'drain' after each write (memory bound:
 * one PDU plus the socket buffer). The last fragment is held back until the whole file's SHA-256 and
 * size matched the index row: a file changed on disk is never delivered (A-ABORT instead).
 *
 * Receiving: every byte from the PACS passes drivers/dicom/pdu-framer.ts before the library sees it
 * (as in the storage SCP). The library's accumulator would buffer a PDU up to its declared length
 * (4 GiB) and re-join it on every chunk; a faulty or impersonated PACS could exhaust the heap. A
 * P-DATA-TF longer than our Maximum Length Received (PS3.8 D.1; config maxPduLength, at most 4 MiB), an
 * A-ASSOCIATE-AC/RJ, A-RELEASE or A-ABORT over 64 KiB, or an unknown PDU type is refused at its header:
 * A-ABORT (PS3.8 9.3.8, service provider, reason 1 unrecognised PDU / 6 invalid parameter) and close;
 * the association fails with AssociationError 'aborted' (the output makes the instance 'retry', the
 * rest of the batch 'unavailable').
 */
import { createReadStream } from 'node:fs';
import { createHash } from 'node:crypto';
import * as net from 'node:net';
import * as tls from 'node:tls';
import { createInflateRaw } from 'node:zlib';
import { association as dimseAssociation, constants, Dataset, log as dimseLog, requests, Scp } from 'dcmjs-dimse';
import type { Readable } from 'node:stream';
import { PduFramer } from '../../../../drivers/dicom/pdu-framer';

/** Where the data set bytes come from. */
export type DatasetSource =
  /** the stored bytes after the File Meta Information, unchanged */
  | { kind: 'file'; path: string; datasetOffset: number; sha256?: string; bytes?: number }
  /** a deflated file sent as explicit VR little endian: raw inflate of the stored bytes (PS3.5 A.5) */
  | { kind: 'inflate'; path: string; datasetOffset: number; sha256?: string; bytes?: number };

export interface StoreResult {
  status: number;
  errorComment?: string;
}

export class AssociationError extends Error {
  constructor(
    readonly kind: 'refused' | 'rejected' | 'aborted' | 'timeout' | 'closed',
    message: string,
  ) {
    super(message);
    this.name = 'AssociationError';
  }
}

/** A presentation context proposed for one SOP class: one transfer syntax each (as dcmtk's storescu). */
export interface ProposedContext {
  sopClassUid: string;
  transferSyntaxUid: string;
}

export interface StoreAssociationOptions {
  host: string;
  port: number;
  tls?: { ca?: Buffer | string; cert?: Buffer | string; key?: Buffer | string; servername?: string; rejectUnauthorized?: boolean };
  callingAeTitle: string;
  calledAeTitle: string;
  contexts: ProposedContext[];
  connectTimeoutMs: number;
  /** no answer from the peer (association, response) for this long: abort */
  dimseTimeoutMs: number;
  /** our Maximum Length Received (PS3.8 D.1) */
  maxPduLength: number;
}

const STREAM = Symbol('iomt.datasetSource');
const PCID = Symbol('iomt.pcId');
/** Largest PDV value we send even if the peer takes more: bounds memory per write. */
const MAX_FRAGMENT = 256 * 1024;
/** File read size: the PDUs cut from one read go to the socket in one writev. */
const READ_CHUNK = 256 * 1024;

type AnyNetwork = {
  association: { getMaxPduLength(): number };
  socket: net.Socket;
  lastPduTime?: number;
  emit(ev: string, ...a: unknown[]): boolean;
  on(ev: string, f: (...a: any[]) => void): unknown;
  once(ev: string, f: (...a: any[]) => void): unknown;
  removeAllListeners(): unknown;
  sendAssociationRequest(a: unknown): void;
  sendAssociationReleaseRequest(): void;
  sendAbort(source?: number, reason?: number): void;
  sendRequests(r: unknown): void;
  _reset(): void;
  _processPdu(pdu: Buffer): Promise<void>;
};

/** A-ABORT PDU (PS3.8 9.3.8): type 07, length 4, source 2 (service provider), the reason. */
function abortPdu(reason: number): Buffer {
  return Buffer.from([0x07, 0, 0, 0, 0, 4, 0, 0, 2, reason]);
}

// the library logs every association and PDU at info on the console (its own loglevel instance, shared
// with the storage SCP, which reads the same variable); the gateway logs what matters itself
dimseLog.setLevel((process.env.IOMT_DICOM_LIB_LOG as 'trace' | 'debug' | 'info' | 'warn' | 'error' | undefined) ?? 'silent');

// The library's Network class: the (unexported) base class of Scp.
const NetworkBase = Object.getPrototypeOf(Scp) as { new (socket: net.Socket, opts: Record<string, unknown>): AnyNetwork; prototype: Record<string, unknown> };
if (typeof NetworkBase?.prototype?._sendPDataTF !== 'function' || typeof NetworkBase.prototype._sendDimse !== 'function') {
  throw new Error('dcmjs-dimse: Network._sendDimse/_sendPDataTF not found (the pinned 0.3.3 internals changed; see dimse-scu.ts)');
}

/** One P-DATA-TF PDU with one PDV (PS3.8 9.3.5): type 04, length, item length, pc id, control header. */
function pdataPdu(pcId: number, value: Buffer, command: boolean, last: boolean): Buffer[] {
  const head = Buffer.alloc(12);
  head.writeUInt8(0x04, 0);
  head.writeUInt32BE(value.length + 6, 2); // PDU length: PDV item (4 length + 1 pc id + 1 header + value)
  head.writeUInt32BE(value.length + 2, 6); // PDV item length: pc id + header + value
  head.writeUInt8(pcId, 10);
  head.writeUInt8((command ? 0x01 : 0) | (last ? 0x02 : 0), 11); // PS3.8 E.2 message control header
  return [head, value];
}

class StreamingNetwork extends (NetworkBase as unknown as new (socket: net.Socket, opts: Record<string, unknown>) => AnyNetwork) {
  _sendDimse(e: { command: Record<symbol, unknown> & { getCommandDataset(): { getDenaturalizedCommandDataset(): Buffer } }; context: { getPresentationContextId(): number } }): void {
    if (!e.command[STREAM]) return (NetworkBase.prototype._sendDimse as (x: unknown) => void).call(this, e);
    // no transcoding here (the base would re-encode the data set it holds): the source is already in the accepted syntax
    this._sendPDataTF(e.command, (e.command[PCID] as number) ?? e.context.getPresentationContextId(), this.association.getMaxPduLength());
  }

  _sendPDataTF(command: Record<symbol, unknown> & { getCommandDataset(): { getDenaturalizedCommandDataset(): Buffer } }, pcId: number, maxPdu: number): void {
    const src = command[STREAM] as DatasetSource | undefined;
    if (!src) return (NetworkBase.prototype._sendPDataTF as (...a: unknown[]) => void).call(this, command, pcId, maxPdu);
    this.streamStore(command, pcId, maxPdu, src).catch((err: Error) => {
      this.emit('streamError', err);
    });
  }

  private async write(chunks: Buffer[]): Promise<void> {
    const s = this.socket;
    if (s.destroyed) throw new AssociationError('closed', 'connection closed while sending');
    let ok = true;
    s.cork(); // one writev for the PDUs of a read chunk
    for (const c of chunks) ok = s.write(c) && ok;
    s.uncork();
    this.lastPduTime = Date.now(); // sending is progress: the library's PDU timeout only counts received PDUs
    if (!ok) {
      await new Promise<void>((resolve, reject) => {
        const done = (err?: Error) => {
          s.off('drain', onDrain);
          s.off('close', onClose);
          if (err) reject(err);
          else resolve();
        };
        const onDrain = () => done();
        const onClose = () => done(new AssociationError('closed', 'connection closed while sending'));
        s.on('drain', onDrain);
        s.on('close', onClose);
      });
    }
  }

  private async streamStore(command: { getCommandDataset(): { getDenaturalizedCommandDataset(): Buffer } }, pcId: number, maxPdu: number, src: DatasetSource): Promise<void> {
    const cmd = command.getCommandDataset().getDenaturalizedCommandDataset();
    await this.write(pdataPdu(pcId, cmd, true, true));
    // PS3.8 D.1: a maximum length of 0 means unlimited; the PDV value is the PDU length minus 6
    const fragment = Math.max(1024, Math.min(MAX_FRAGMENT, (maxPdu > 0 ? maxPdu : MAX_FRAGMENT) - 6));
    // whole-file check: SHA-256 and size of every byte (meta included), as in the index row
    const hash = createHash('sha256');
    let size = 0;
    const file = createReadStream(src.path, { highWaterMark: READ_CHUNK });
    let body: Readable;
    if (src.kind === 'inflate') {
      const inflate = createInflateRaw();
      body = inflate;
      let skipped = 0;
      file.on('data', (chunk: string | Buffer) => {
        const c = chunk as Buffer; // no encoding set: Buffers
        hash.update(c);
        size += c.length;
        const take = skipped < src.datasetOffset ? c.subarray(Math.min(c.length, src.datasetOffset - skipped)) : c;
        skipped += c.length - take.length;
        if (take.length && !inflate.write(take)) file.pause();
      });
      inflate.on('drain', () => file.resume());
      file.on('end', () => inflate.end());
      file.on('error', (e) => inflate.destroy(e));
    } else {
      body = file;
    }
    let pending: Buffer | undefined;
    let buffered: Buffer[] = [];
    let bufferedLen = 0;
    let skipped = 0;
    for await (const raw of body as AsyncIterable<Buffer>) {
      let c = raw;
      if (src.kind === 'file') {
        hash.update(c);
        size += c.length;
        if (skipped < src.datasetOffset) {
          const n = Math.min(c.length, src.datasetOffset - skipped);
          skipped += n;
          c = c.subarray(n);
        }
      }
      if (!c.length) continue;
      buffered.push(c);
      bufferedLen += c.length;
      // every full fragment but the newest goes out now (the newest may be the last: held back)
      const pdus: Buffer[] = [];
      while (bufferedLen >= fragment) {
        const all = buffered.length === 1 ? buffered[0] : Buffer.concat(buffered, bufferedLen);
        if (pending) pdus.push(...pdataPdu(pcId, pending, false, false));
        pending = all.subarray(0, fragment);
        buffered = all.length > fragment ? [all.subarray(fragment)] : [];
        bufferedLen = all.length - fragment;
      }
      if (pdus.length) await this.write(pdus);
    }
    if (bufferedLen) {
      if (pending) await this.write(pdataPdu(pcId, pending, false, false));
      pending = buffered.length === 1 ? buffered[0] : Buffer.concat(buffered, bufferedLen);
    }
    const digest = hash.digest('hex');
    if ((src.sha256 && digest !== src.sha256.toLowerCase()) || (src.bytes !== undefined && size !== src.bytes)) {
      throw new FileChangedError(`file changed on disk since it was stored (sha256/size differ from the index row): ${src.path}`);
    }
    if (!pending) throw new FileChangedError(`file has no data set after its File Meta Information: ${src.path}`);
    await this.write(pdataPdu(pcId, pending, false, true));
  }
}

export class FileChangedError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'FileChangedError';
  }
}

/**
 * One association to a PACS for C-STORE. `open()` connects and negotiates; `store()` sends one
 * object and resolves with the final response status; `release()` ends it (PS3.8 7.2). Errors:
 * AssociationError (refused, rejected with the PS3.8 9.3.4 reason, aborted, timeout, closed);
 * FileChangedError from store() (the association is aborted).
 */
export class StoreAssociation {
  private readonly network: StreamingNetwork;
  private readonly accepted = new Map<string, number>(); // `${sopClass}|${ts}` -> pc id
  private readonly rejected = new Map<string, string>(); // sopClass|ts -> reason
  private closedError: AssociationError | undefined;
  private busy: { reject(e: Error): void } | undefined;
  maxPduLength = 0;

  private constructor(private readonly socket: net.Socket, private readonly opts: StoreAssociationOptions) {
    this.network = new StreamingNetwork(socket, { connectTimeout: opts.connectTimeoutMs, associationTimeout: opts.dimseTimeoutMs, pduTimeout: opts.dimseTimeoutMs });
    const fail = (e: AssociationError) => {
      if (!this.closedError) this.closedError = e;
      this.busy?.reject(this.closedError);
    };
    // the framer replaces the library's 'data' listener (its PduAccumulator, Network constructor in
    // dcmjs-dimse 0.3.3) and hands each whole PDU to Network._processPdu (checked by dimse-scu.test.ts)
    const framer = new PduFramer({ maxPDataBytes: opts.maxPduLength > 0 ? opts.maxPduLength : 64 * 1024 }, (pdu) => {
      this.network.lastPduTime = Date.now();
      this.network._processPdu(pdu).catch((e: Error) => this.network.emit('networkError', e));
    });
    socket.removeAllListeners('data');
    let refused = false;
    socket.on('data', (d: Buffer) => {
      const v = framer.push(d);
      if (v.ok || refused) return; // after a refusal the framer keeps nothing
      refused = true;
      socket.pause();
      // PS3.8 9.3.8: A-ABORT, source 2 service provider, reason 1 unrecognised PDU / 6 invalid PDU parameter value
      socket.end(abortPdu(v.reason.startsWith('unknown') ? 1 : 6));
      setTimeout(() => socket.destroy(), 1000).unref();
      const err = new AssociationError('aborted', `PDU from the PACS refused: ${v.reason}`);
      fail(err);
      this.network.emit('networkError', err); // ends a pending negotiation
    });
    this.network.on('abort', (a: { source?: number; reason?: number }) => fail(new AssociationError('aborted', `A-ABORT from the PACS (source ${a?.source}, reason ${a?.reason})`)));
    this.network.on('networkError', (e: Error) => fail(new AssociationError(/timeout/i.test(e.message) ? 'timeout' : 'closed', e.message)));
    this.network.on('streamError', (e: Error) => {
      if (e instanceof FileChangedError) {
        this.abort();
        this.busy?.reject(e);
      } else fail(e instanceof AssociationError ? e : new AssociationError('closed', e.message));
    });
    this.network.on('close', () => fail(new AssociationError('closed', 'connection closed by the PACS')));
  }

  static open(opts: StoreAssociationOptions): Promise<StoreAssociation> {
    if (opts.contexts.length === 0 || opts.contexts.length > 128) throw new RangeError('between 1 and 128 presentation contexts (PS3.8 9.3.2.2: odd ids 1-255)');
    const sock = opts.tls
      ? tls.connect({ host: opts.host, port: opts.port, ca: opts.tls.ca, cert: opts.tls.cert, key: opts.tls.key, servername: opts.tls.servername, rejectUnauthorized: opts.tls.rejectUnauthorized ?? true })
      : net.connect({ host: opts.host, port: opts.port });
    // no Nagle: the small command PDU and the last fragment would otherwise wait for the peer's delayed
    // ACK (~40 ms per instance on Linux); PDUs are already written in large corked batches
    sock.setNoDelay(true);
    const a = new StoreAssociation(sock, opts);
    return a.negotiate();
  }

  private negotiate(): Promise<StoreAssociation> {
    const o = this.opts;
    const assoc = new dimseAssociation.Association(o.callingAeTitle, o.calledAeTitle);
    assoc.setMaxPduLength(o.maxPduLength);
    const ids = new Map<number, ProposedContext>();
    for (const c of o.contexts) {
      const id = assoc.addPresentationContext(c.sopClassUid);
      assoc.addTransferSyntaxToPresentationContext(id, c.transferSyntaxUid);
      ids.set(id, c);
    }
    return new Promise((resolve, reject) => {
      const timer = setTimeout(() => {
        this.socket.destroy();
        reject(new AssociationError('timeout', `no association answer within ${o.connectTimeoutMs + o.dimseTimeoutMs} ms`));
      }, o.connectTimeoutMs + o.dimseTimeoutMs);
      timer.unref();
      const done = (e?: Error) => {
        clearTimeout(timer);
        if (e) {
          this.socket.destroy();
          reject(e);
        } else resolve(this);
      };
      this.socket.once('error', (e: NodeJS.ErrnoException) => done(new AssociationError('refused', `${e.code ?? ''} ${e.message}`.trim())));
      this.network.on('connect', () => {
        // the library's socket timeout is its connect timeout, also as idle timeout for ever after: a PACS
        // that takes longer than that to store a large object (or to read it) would look dead. From here
        // on: no progress for dimseTimeoutMs (PS3.7 "DIMSE timeout") is the limit.
        this.socket.setTimeout(o.dimseTimeoutMs);
        this.network.sendAssociationRequest(assoc);
      });
      this.network.on('associationRejected', (r: { result: number; source: number; reason: number }) =>
        // PS3.8 9.3.4: result 1 permanent, 2 transient; source 1 user (reason 3 calling AE, 7 called AE not recognised)
        done(new AssociationError('rejected', `A-ASSOCIATE-RJ result ${r.result} source ${r.source} reason ${r.reason}${r.source === 1 && r.reason === 7 ? ' (called AE title not recognised)' : r.source === 1 && r.reason === 3 ? ' (calling AE title not recognised)' : ''}`)),
      );
      this.network.on('associationAccepted', (acc: { getPresentationContext(id: number): { getResult(): number; getAcceptedTransferSyntaxUid(): string | undefined; getResultDescription(): string }; getMaxPduLength(): number }) => {
        for (const [id, c] of ids) {
          const pc = acc.getPresentationContext(id);
          const key = `${c.sopClassUid}|${c.transferSyntaxUid}`;
          // PS3.8 9.3.3.2: result 0 acceptance (with exactly one transfer syntax); 1-4 rejections
          if (pc.getResult() === constants.PresentationContextResult.Accept && pc.getAcceptedTransferSyntaxUid() === c.transferSyntaxUid) this.accepted.set(key, id);
          else this.rejected.set(key, pc.getResultDescription());
        }
        this.maxPduLength = acc.getMaxPduLength();
        done();
      });
      this.network.on('networkError', (e: Error) => done(new AssociationError('closed', e.message)));
      this.network.on('abort', () => done(new AssociationError('aborted', 'A-ABORT during association negotiation')));
    });
  }

  get alive(): boolean {
    return !this.closedError && !this.socket.destroyed;
  }

  /** True when this association offered and the PACS accepted this SOP class in this syntax. */
  accepts(sopClassUid: string, ts: string): boolean {
    return this.accepted.has(`${sopClassUid}|${ts}`);
  }

  proposed(sopClassUid: string, ts: string): boolean {
    return this.opts.contexts.some((c) => c.sopClassUid === sopClassUid && c.transferSyntaxUid === ts);
  }

  rejectionOf(sopClassUid: string, ts: string): string | undefined {
    return this.rejected.get(`${sopClassUid}|${ts}`);
  }

  /** C-STORE one object (PS3.7 9.1.1) on the context (sopClass, ts); resolves with the final status. */
  store(sopClassUid: string, sopInstanceUid: string, ts: string, source: DatasetSource): Promise<StoreResult> {
    if (this.closedError) return Promise.reject(this.closedError);
    const pcId = this.accepted.get(`${sopClassUid}|${ts}`);
    if (pcId === undefined) return Promise.reject(new Error(`no accepted presentation context for ${sopClassUid} in ${ts}`));
    // a tiny data set: only the UIDs for the command (the library picks the context by class + syntax)
    const req = new requests.CStoreRequest(new Dataset({ SOPClassUID: sopClassUid, SOPInstanceUID: sopInstanceUid }, ts)) as unknown as Record<symbol, unknown> & {
      on(ev: string, f: (r: { getStatus(): number; getErrorComment(): string }) => void): void;
    };
    req[STREAM] = source;
    req[PCID] = pcId;
    return new Promise<StoreResult>((resolve, reject) => {
      let result: StoreResult | undefined;
      this.busy = { reject: (e) => { this.busy = undefined; reject(e); } };
      req.on('response', (r) => {
        // PS3.7 C.4.2.1.3 (Pending is for C-FIND/C-MOVE; C-STORE has one final response)
        result = { status: r.getStatus(), errorComment: r.getErrorComment() || undefined };
        this.busy = undefined;
        resolve(result);
      });
      this.network.sendRequests(req);
    });
  }

  /** A-RELEASE-RQ, wait for the RP (or the close), then end the connection (PS3.8 7.2). */
  async release(timeoutMs = 5000): Promise<void> {
    if (!this.alive) {
      this.socket.destroy();
      return;
    }
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, timeoutMs);
      t.unref();
      this.network.once('associationReleaseResponse', () => {
        clearTimeout(t);
        resolve();
      });
      this.network.once('close', () => {
        clearTimeout(t);
        resolve();
      });
      this.network.sendAssociationReleaseRequest();
    });
    this.closedError = this.closedError ?? new AssociationError('closed', 'released');
    this.socket.end();
    this.socket.destroy();
  }

  /** A-ABORT (PS3.8 7.3) and close. */
  abort(): void {
    if (!this.socket.destroyed) {
      try {
        this.network.sendAbort(0, 0);
      } catch {
        /* closing anyway */
      }
    }
    this.closedError = this.closedError ?? new AssociationError('aborted', 'aborted by the gateway');
    this.socket.destroy();
  }
}
