/**
 * MLLP server (HL7 v2.5.1 Appendix C): accepts TCP or TLS connections, deframes blocks, hands each
 * payload to the handler and writes the handler's ACK back in an MLLP block.
 * Per connection strictly serial (stop-and-wait, Appendix C.2.2 / protocols.md §3.1): frame n+1 is not
 * handled before frame n's ACK is written; the socket is paused while a frame is in progress, so a
 * sender that pipelines cannot make us buffer without bound. Many connections run concurrently.
 * Bytes that are not a complete block (outside VT…FS, an abandoned or truncated block, an oversize
 * block's head) are refused, never dropped unseen (issue 8): they go to `onRefused` in bounded runs,
 * with the policy of the ASTM driver's bytes outside a session (drivers/astm/astm-driver.ts collectStray).
 * Admission (issue 10 §2, §3: gateway/src/net/listener-guard.ts): allow-list, per-address limit, first
 * complete block within firstFrameTimeoutMs, a full listener closes the connection idle longest.
 * Memory (issue 10 §7: gateway/src/pipeline/memory-budget.ts): the bytes of a block are reserved from the
 * process-wide in-flight budget as they are buffered and released once the block is answered; when the
 * budget is full the socket is paused (TCP backpressure) until bytes are released.
 */
import { EventEmitter } from 'node:events';
import net from 'node:net';
import tls from 'node:tls';
import { componentLogger } from '../../gateway/src/log/logger';
import { ListenerGuard, type GuardedConnection } from '../../gateway/src/net/listener-guard';
import { secureContextOptions } from '../../gateway/src/tls/options';
import { sharedMemoryBudget, type MemoryBudget } from '../../gateway/src/pipeline/memory-budget';
import { buildAck } from './ack';
import { DEFAULT_MLLP_MAX_BYTES, MllpDecoder, encodeMllp, type MllpEvent, type MllpJunkReason } from './mllp-decoder';

/** A run of refused bytes shorter than this is only counted (line noise), as for ASTM stray bytes. */
export const REFUSED_MIN_BYTES = 16;
/** A run of bytes outside a block ends after this much quiet on the connection. */
export const REFUSED_IDLE_MS = 500;
/** A run ends when it reaches this size (a stream that never pauses is still seen); also the most kept of one run. */
export const REFUSED_MAX_BYTES = 64 * 1024;
/** Runs handed to onRefused per connection; further ones are only counted (a peer streaming garbage cannot fill the disk). */
export const REFUSED_MAX_RUNS_PER_CONNECTION = 16;

/** Why bytes were refused: the decoder's reasons, or a block above maxBytes. */
export type MllpRefusedKind = MllpJunkReason | 'oversize';

export interface MllpRefusedRun {
  kind: MllpRefusedKind;
  /** Bytes received in the run (the `bytes` handed over are its first ≤ REFUSED_MAX_BYTES). */
  total: number;
}

export interface MllpTlsOptions {
  key: Buffer | string;
  cert: Buffer | string;
  ca?: Buffer | string;
  /** Mutual TLS: require and verify a client certificate against `ca`. */
  requestCert?: boolean;
}

export interface MllpServerOptions {
  host?: string; // default 0.0.0.0
  port: number; // 0 = any free port
  tls?: MllpTlsOptions;
  maxBytes?: number; // largest accepted message (default 8 MiB)
  idleTimeoutMs?: number; // close a connection with no traffic for this long (default 600000)
  maxConnections?: number; // at most this many connections; a full listener closes the idle-longest one (default 64)
  /** Connections from one source address; more are refused (default 8). */
  maxPerAddress?: number;
  /** Close a connection without a complete block this long after it opened (default 10000; 0 = never). */
  firstFrameTimeoutMs?: number;
  /**
   * Source addresses / CIDR networks allowed to connect (IPv4, IPv6; IPv4-mapped IPv6 compared as IPv4),
   * comma or space separated, or a list. Empty = everyone. Others are closed at once and counted.
   */
  allowFrom?: string | string[];
  /** In-flight byte budget shared with other listeners (default: the process-wide one, IOMT_INFLIGHT_MAX_BYTES). */
  budget?: MemoryBudget;
  /** MSH-3/MSH-4 used in ACKs the server itself builds (oversize). */
  sendingApp?: string;
  sendingFacility?: string;
  /** On close(): wait this long for in-flight frames to be acknowledged (default 5000). */
  closeTimeoutMs?: number;
  /** Logger bindings, e.g. { deviceId }. */
  logBindings?: Record<string, unknown>;
  /**
   * Called with each kept run of refused bytes, for quarantine (issue 8): `bytes` = the run's first
   * ≤ REFUSED_MAX_BYTES bytes verbatim, `reason` = a sentence for the quarantine record (counts and
   * clauses, no payload), `run` = kind and bytes received. Runs of bytes outside blocks end at the
   * next VT, after REFUSED_IDLE_MS of quiet, at REFUSED_MAX_BYTES, or when the connection closes;
   * runs shorter than REFUSED_MIN_BYTES and runs beyond REFUSED_MAX_RUNS_PER_CONNECTION are only
   * counted (the 'junk' event has them all). An oversize block's head is always handed over, and a
   * returned promise is awaited before its AE; otherwise a rejection is only logged. Not called
   * while the server is closing. Absent: refused bytes are only counted, none are buffered.
   */
  onRefused?(bytes: Buffer, reason: string, conn: MllpConnectionInfo, run: MllpRefusedRun): void | Promise<void>;
}

export interface MllpConnectionInfo {
  id: number;
  remoteAddress: string;
}

export type MllpHandler = (payload: Buffer, conn: MllpConnectionInfo) => Promise<Buffer>;

interface Conn {
  info: MllpConnectionInfo;
  socket: net.Socket;
  decoder: MllpDecoder;
  queue: MllpEvent[];
  busy: boolean;
  /** reading stopped for backpressure (frames waiting) */
  paused: boolean;
  closing: boolean; // no further frames are handled
  closed: boolean;
  /** ends the pending run of bytes outside a block after REFUSED_IDLE_MS of quiet */
  refusedTimer: NodeJS.Timeout | undefined;
  /** runs handed to onRefused on this connection */
  refusedKept: number;
  /** the warning for refused bytes was logged on this connection (once) */
  refusedWarned: boolean;
  guard: GuardedConnection;
  /** payload bytes of queued frames and of the frame being handled (held in the budget) */
  frameBytes: number;
  /** chunks read but not yet decoded: the budget was full (reading is paused meanwhile) */
  stalled: Buffer[];
  /** a frame is with the handler */
  handling: boolean;
}

let ackCounter = 0;

/**
 * Events: 'listening' {port}, 'connection' info, 'disconnect' info, 'junk' {conn, bytes, reason}
 * (every run of refused bytes, kept or only counted; reason: MllpJunkReason), 'oversize' {conn, bytes},
 * 'error' Error (socket-level, informational), 'closed'.
 */
export class MllpServer extends EventEmitter {
  private readonly opts: Required<Omit<MllpServerOptions, 'tls' | 'sendingApp' | 'sendingFacility' | 'logBindings' | 'onRefused' | 'maxPerAddress' | 'firstFrameTimeoutMs' | 'allowFrom' | 'budget'>> & MllpServerOptions;
  private server: net.Server | undefined;
  private readonly conns = new Map<number, Conn>();
  private nextId = 1;
  private closePromise: Promise<void> | undefined;
  private readonly log;
  /** Admission control (allow-list, per-address limit, first-frame timeout, eviction). */
  readonly guard: ListenerGuard;
  readonly budget: MemoryBudget;

  constructor(
    opts: MllpServerOptions,
    private readonly handler: MllpHandler,
  ) {
    super();
    this.opts = {
      host: '0.0.0.0',
      maxBytes: DEFAULT_MLLP_MAX_BYTES,
      idleTimeoutMs: 600_000,
      maxConnections: 64,
      closeTimeoutMs: 5000,
      ...stripUndefined(opts),
    } as MllpServer['opts'];
    this.log = componentLogger('mllp-server', opts.logBindings ?? {});
    // throws RangeError on a bad allow-list entry: the node reports it as a configuration problem
    this.guard = new ListenerGuard({
      listener: String(opts.logBindings?.deviceId ?? `mllp:${opts.port}`),
      maxConnections: this.opts.maxConnections,
      maxPerAddress: opts.maxPerAddress,
      firstFrameTimeoutMs: opts.firstFrameTimeoutMs,
      allowFrom: opts.allowFrom,
      log: this.log,
    });
    this.budget = opts.budget ?? sharedMemoryBudget();
    // an EventEmitter 'error' without listener would throw: keep a default listener
    this.on('error', () => undefined);
  }

  /** Number of open connections. */
  get connectionCount(): number {
    return this.conns.size;
  }

  get listening(): boolean {
    return !!this.server?.listening;
  }

  /** Start listening. Resolves with the bound port; aborting `signal` closes the server. */
  async start(signal?: AbortSignal): Promise<{ port: number }> {
    if (this.server) throw new Error('MllpServer already started');
    if (this.closePromise) throw new Error('MllpServer closed');
    const t = this.opts.tls;
    const server = t
      ? tls.createServer({
          // TLS 1.2+ with forward-secret AEAD suites only (gateway/src/tls/options.ts)
          ...secureContextOptions(),
          key: t.key,
          cert: t.cert,
          ca: t.ca,
          requestCert: !!t.requestCert,
          rejectUnauthorized: !!t.requestCert,
          handshakeTimeout: this.guard.firstFrameTimeoutMs || 120_000,
        })
      : net.createServer();
    this.server = server;
    // no server.maxConnections: the guard refuses or evicts (a hard cap would refuse before eviction)
    if (t) {
      // the allow-list is checked before the TLS handshake costs anything
      server.on('connection', (s: net.Socket) => {
        if (!this.guard.allows(s.remoteAddress)) this.guard.admit(s);
      });
      server.on('tlsClientError', (e: Error, s: tls.TLSSocket) => {
        // a source refused before the handshake was counted as such (and has no address left to check)
        if (this.guard.allows(s?.remoteAddress)) this.guard.tlsFailure(s?.remoteAddress, e.message);
      });
    }
    server.on(t ? 'secureConnection' : 'connection', (s: net.Socket) => {
      if (!s.destroyed) this.accept(s);
    });
    await new Promise<void>((resolve, reject) => {
      const onErr = (e: Error) => reject(e);
      server.once('error', onErr);
      server.listen(this.opts.port, this.opts.host, () => {
        server.off('error', onErr);
        resolve();
      });
    });
    server.on('error', (e) => this.emit('error', e));
    const addr = server.address();
    const port = typeof addr === 'object' && addr ? addr.port : this.opts.port;
    if (signal) {
      if (signal.aborted) void this.close();
      else signal.addEventListener('abort', () => void this.close(), { once: true });
    }
    this.emit('listening', { port });
    return { port };
  }

  /** Stop accepting, let in-flight frames finish (up to closeTimeoutMs), close all connections. Safe twice. */
  close(): Promise<void> {
    if (!this.closePromise) this.closePromise = this.doClose();
    return this.closePromise;
  }

  private async doClose(): Promise<void> {
    const server = this.server;
    const serverClosed = server?.listening ? new Promise<void>((r) => server.close(() => r())) : Promise.resolve();
    const waits: Promise<void>[] = [];
    for (const c of this.conns.values()) {
      c.closing = true;
      c.queue.length = 0;
      if (!c.closed) waits.push(new Promise<void>((r) => c.socket.once('close', () => r())));
      if (!c.busy) c.socket.destroy();
    }
    const timer = new Promise<void>((r) => setTimeout(r, this.opts.closeTimeoutMs).unref());
    await Promise.race([Promise.all(waits), timer]);
    for (const c of this.conns.values()) c.socket.destroy();
    await serverClosed;
    this.guard.close();
    this.emit('closed');
  }

  private accept(socket: net.Socket): void {
    const info: MllpConnectionInfo = { id: this.nextId++, remoteAddress: `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}` };
    if (this.closePromise) {
      socket.destroy();
      return;
    }
    // the refused bytes themselves are kept only for someone who takes them
    const decoder = new MllpDecoder({ maxBytes: this.opts.maxBytes, keepRefusedBytes: this.opts.onRefused ? REFUSED_MAX_BYTES : 0 });
    const guard = this.guard.admit(socket); // refused: destroyed and counted
    if (!guard) return;
    const c: Conn = { info, socket, decoder, queue: [], busy: false, paused: false, closing: false, closed: false, refusedTimer: undefined, refusedKept: 0, refusedWarned: false, guard, frameBytes: 0, stalled: [], handling: false };
    this.conns.set(info.id, c);
    socket.setNoDelay(true);
    socket.setTimeout(this.opts.idleTimeoutMs);
    socket.on('timeout', () => {
      this.log.info({ conn: info.id, remote: info.remoteAddress, idleTimeoutMs: this.opts.idleTimeoutMs }, 'idle timeout: closing connection');
      socket.destroy();
    });
    socket.on('error', (e) => {
      // ECONNRESET, EPIPE ...: never crash; the connection is gone
      this.log.debug({ conn: info.id, err: e.message }, 'socket error');
      this.emit('error', e);
    });
    socket.on('close', () => {
      guard.release();
      c.stalled.length = 0;
      c.closed = true;
      c.closing = true;
      c.queue.length = 0;
      if (c.refusedTimer) clearTimeout(c.refusedTimer);
      c.refusedTimer = undefined;
      // the pending run outside a block ends here, and a started block is refused as 'truncated'
      for (const ev of c.decoder.end()) {
        if (ev.type !== 'junk') continue;
        if (ev.reason === 'truncated') this.log.info({ conn: info.id, bytes: ev.bytes }, 'connection closed with an incomplete frame (refused)');
        this.refuse(c, ev);
      }
      this.conns.delete(info.id);
      this.budget.releaseAll(c);
      this.emit('disconnect', info);
    });
    socket.on('data', (chunk: Buffer) => this.onData(c, chunk));
    this.emit('connection', info);
  }

  /**
   * Bytes read: reserved from the in-flight budget before the decoder buffers them. A full budget:
   * the chunk waits (one per connection: reading is paused at once) until bytes are released.
   */
  private onData(c: Conn, chunk: Buffer): void {
    if (c.closing) return; // draining after an oversize AE: discard
    if (c.stalled.length || !this.budget.tryReserve(c, chunk.length)) {
      c.stalled.push(chunk);
      if (c.stalled.length === 1) {
        c.socket.pause();
        setBusy(c);
        this.log.debug({ conn: c.info.id, inflight: this.budget.used, budget: this.budget.maxBytes }, 'in-flight budget full: reading paused');
        this.budget.wait(c, () => this.unstall(c));
      }
      return;
    }
    this.decode(c, chunk);
  }

  /** Budget released: decode the waiting chunks that now fit, then read again. */
  private unstall(c: Conn): void {
    if (c.closed) return;
    while (c.stalled.length) {
      if (c.closing) {
        c.stalled.length = 0;
        break;
      }
      const chunk = c.stalled[0];
      if (!this.budget.tryReserve(c, chunk.length)) {
        this.budget.wait(c, () => this.unstall(c));
        return;
      }
      c.stalled.shift();
      this.decode(c, chunk);
    }
    setBusy(c);
    if (!c.paused && !c.closed) c.socket.resume();
  }

  private decode(c: Conn, chunk: Buffer): void {
    const { info, socket } = c;
    c.guard.progress(chunk.length);
    let events: MllpEvent[];
    try {
      events = c.decoder.push(chunk);
    } catch (e) {
      this.log.error({ conn: info.id, err: String(e) }, 'decoder failure: closing connection');
      socket.destroy();
      return;
    }
    for (const ev of events) {
      if (ev.type === 'junk') this.refuse(c, ev);
      else {
        if (ev.type === 'frame') {
          c.frameBytes += ev.payload.length;
          c.guard.frame(); // a complete block: first-frame timer off, active now
        }
        c.queue.push(ev);
      }
    }
    this.watchRefused(c);
    this.syncBudget(c);
    if (c.queue.length) {
      // Backpressure: stop reading while frames wait behind the one being handled. A stop-and-wait
      // sender (one frame, then its ACK) never triggers it, so reading is not stopped and restarted
      // (two epoll_ctl calls) for every message.
      if (c.busy || c.queue.length > 1) {
        socket.pause();
        c.paused = true;
      }
      void this.drain(c);
    }
  }

  /** Keep exactly the bytes held for this connection reserved: the partial block and the frames not yet answered. */
  private syncBudget(c: Conn): void {
    const held = c.closed ? 0 : c.decoder.bufferedBytes + c.frameBytes;
    const extra = this.budget.heldBy(c) - held;
    if (extra > 0) this.budget.release(c, extra);
  }

  /**
   * A run of refused bytes from the decoder: counted ('junk' event), handed to onRefused when at least
   * REFUSED_MIN_BYTES long and fewer than REFUSED_MAX_RUNS_PER_CONNECTION were handed over.
   */
  private refuse(c: Conn, ev: Extract<MllpEvent, { type: 'junk' }>): void {
    this.emit('junk', { conn: c.info, bytes: ev.bytes, reason: ev.reason });
    const data = ev.data;
    const log = { conn: c.info.id, reason: ev.reason, bytes: ev.bytes }; // no payload above debug
    if (!c.refusedWarned) {
      c.refusedWarned = true;
      this.log.warn(log, "bytes that are not a complete MLLP block refused; check the sender's framing (further runs on this connection at debug)");
    }
    if (!data || ev.bytes < REFUSED_MIN_BYTES || this.closePromise) {
      // shutting down: not worth a quarantine write into a closing store
      this.log.debug(log, 'refused bytes outside an MLLP block (counted)');
      return;
    }
    if (c.refusedKept >= REFUSED_MAX_RUNS_PER_CONNECTION) {
      this.log.debug(log, 'refused bytes outside an MLLP block (counted only: per-connection limit reached)');
      return;
    }
    c.refusedKept++;
    if (c.refusedKept === REFUSED_MAX_RUNS_PER_CONNECTION) this.log.warn(log, `refused bytes: ${REFUSED_MAX_RUNS_PER_CONNECTION} runs kept on this connection; further ones are only counted`);
    else this.log.debug(log, 'refused bytes outside an MLLP block (kept)');
    void this.hand(c, data, refusedReason(ev.reason, ev.bytes, data.length), { kind: ev.reason, total: ev.bytes });
  }

  /** Hand refused bytes to onRefused; never throws, never rejects. */
  private async hand(c: Conn, data: Buffer, reason: string, run: MllpRefusedRun): Promise<void> {
    const cb = this.opts.onRefused;
    if (!cb) return;
    try {
      await cb(data, reason, c.info, run);
    } catch (e) {
      this.log.error({ conn: c.info.id, kind: run.kind, err: (e as Error)?.message ?? String(e) }, 'onRefused failed: refused bytes not kept');
    }
  }

  /**
   * After a read: a run outside a block that reached REFUSED_MAX_BYTES ends now; a shorter one ends
   * after REFUSED_IDLE_MS without bytes (the timer restarts on every read while a run is pending).
   */
  private watchRefused(c: Conn): void {
    if (c.decoder.pendingRefusedBytes >= REFUSED_MAX_BYTES) for (const ev of c.decoder.flush()) if (ev.type === 'junk') this.refuse(c, ev);
    if (c.decoder.pendingRefusedBytes === 0) {
      if (c.refusedTimer) clearTimeout(c.refusedTimer);
      c.refusedTimer = undefined;
    } else if (c.refusedTimer) {
      c.refusedTimer.refresh();
    } else {
      c.refusedTimer = setTimeout(() => {
        c.refusedTimer = undefined;
        if (c.closed) return;
        for (const ev of c.decoder.flush()) if (ev.type === 'junk') this.refuse(c, ev);
      }, REFUSED_IDLE_MS);
      c.refusedTimer.unref();
    }
  }

  private async drain(c: Conn): Promise<void> {
    if (c.busy) return;
    c.busy = true;
    try {
      while (c.queue.length && !c.closing) {
        const ev = c.queue.shift() as MllpEvent;
        if (ev.type === 'frame') {
          let ack: Buffer;
          c.handling = true; // never evicted while its block is being committed
          setBusy(c);
          try {
            ack = await this.handler(ev.payload, c.info);
          } catch (e) {
            this.log.error({ conn: c.info.id, err: String(e) }, 'handler failed: closing connection without ACK');
            c.socket.destroy();
            return;
          } finally {
            c.handling = false;
            setBusy(c);
            // answered (committed or refused) or dropped: its bytes leave the in-flight budget
            c.frameBytes -= ev.payload.length;
            this.syncBudget(c);
          }
          if (c.closed) return;
          c.guard.frame();
          await writeAsync(c.socket, encodeMllp(ack));
        } else if (ev.type === 'oversize') {
          // Table 0357 104 "value too long" is the closest code for a message above the size limit
          // (docs/errors.md GW_ERR_TOO_LARGE); MSA-2 empty: we never saw a usable MSH.
          this.log.warn({ conn: c.info.id, bytes: ev.bytes, maxBytes: this.opts.maxBytes }, 'message exceeds maxBytes: AE 104 and closing');
          this.emit('oversize', { conn: c.info, bytes: ev.bytes });
          c.closing = true;
          c.queue.length = 0;
          c.frameBytes = 0; // the frames behind it are dropped unanswered (never ACKed: the sender resends)
          this.syncBudget(c);
          // the head of the refused block is kept first (always: at most one per connection, ≤ REFUSED_MAX_BYTES)
          if (ev.data && !this.closePromise) {
            const kept = ev.data.length;
            await this.hand(c, ev.data, `MLLP block larger than ${this.opts.maxBytes} bytes refused: AE 104 (HL7 v2.5.1 Table 0357 value too long) and the connection closed${kept < ev.bytes ? `; first ${kept} of ${ev.bytes} bytes received kept` : ''}`, { kind: 'oversize', total: ev.bytes });
          }
          const ack = buildAck({
            code: 'AE',
            controlId: nextAckId(),
            sendingApp: this.opts.sendingApp ?? 'IOMT-GW',
            sendingFacility: this.opts.sendingFacility ?? '',
            error: { hl7Code: 104, text: `message exceeds ${this.opts.maxBytes} bytes` },
          });
          await writeAsync(c.socket, encodeMllp(Buffer.from(ack, 'utf8')));
          // half-close, keep draining what the sender still writes so it can read the AE; destroy later
          c.socket.end();
          c.socket.resume();
          setTimeout(() => c.socket.destroy(), 5000).unref();
          return;
        }
      }
    } finally {
      c.busy = false;
      if (c.closing && this.closePromise) c.socket.destroy();
      else if (!c.closed && !c.closing && c.paused) {
        c.paused = false;
        if (!c.stalled.length) c.socket.resume(); // else the budget resumes it
      }
    }
  }
}

/** The quarantine reason for a run of refused bytes (counts and clauses only: no payload). */
function refusedReason(reason: MllpJunkReason, total: number, kept: number): string {
  const what: Record<MllpJunkReason, string> = {
    'before-vt': `${total} bytes before the first MLLP start block (VT) on the connection: not MLLP framing (HL7 v2.5.1 Appendix C.2.1)`,
    'between-blocks': `${total} bytes between MLLP blocks, after an end block (FS CR) and before the next start block (VT), e.g. a message tail written outside its block (HL7 v2.5.1 Appendix C.2.1)`,
    restart: `incomplete MLLP block of ${total} bytes: the sender started a new block (VT) before ending this one (FS CR) (HL7 v2.5.1 Appendix C.2.1)`,
    truncated: `incomplete MLLP block of ${total} bytes: the connection closed before its end block (FS CR) (HL7 v2.5.1 Appendix C.2.1)`,
  };
  return kept < total ? `${what[reason]}; first ${kept} bytes kept` : what[reason];
}

/** Not evicted, no first-frame timeout, while a frame is handled or reading waits for the budget. */
function setBusy(c: Conn): void {
  c.guard.busy = c.handling || c.stalled.length > 0;
}

function writeAsync(socket: net.Socket, buf: Buffer): Promise<void> {
  return new Promise((resolve) => {
    if (socket.destroyed || !socket.writable) return resolve();
    socket.write(buf, () => resolve());
  });
}

/** A fresh ACK control id (≤ 20 chars, HL7 v2.5.1 MSH-10 ST 20). */
export function nextAckId(): string {
  ackCounter = (ackCounter + 1) % 1_000_000;
  return `A${Date.now().toString(36).toUpperCase()}${ackCounter.toString(36).toUpperCase()}`.slice(0, 20);
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  const out: Partial<T> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  return out;
}
