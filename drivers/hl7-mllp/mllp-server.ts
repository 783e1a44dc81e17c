/**
 * MLLP server (HL7 v2.5.1 Appendix C): accepts TCP or TLS connections, deframes blocks, hands each
 * payload to the handler and writes the handler's ACK back in an MLLP block.
 * Per connection strictly serial (stop-and-wait, Appendix C.2.2 / protocols.md §3.1): frame n+1 is not
 * handled before frame n's ACK is written; the socket is paused while a frame is in progress, so a
 * sender that pipelines cannot make us buffer without bound. Many connections run concurrently.
 */
import { EventEmitter } from 'node:events';
import net from 'node:net';
import tls from 'node:tls';
import { componentLogger } from '../../gateway/src/log/logger';
import { buildAck } from './ack';
import { DEFAULT_MLLP_MAX_BYTES, MllpDecoder, encodeMllp, type MllpEvent } from './mllp-decoder';

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
  maxConnections?: number; // refuse connections beyond this (default 64)
  /** MSH-3/MSH-4 used in ACKs the server itself builds (oversize). */
  sendingApp?: string;
  sendingFacility?: string;
  /** On close(): wait this long for in-flight frames to be acknowledged (default 5000). */
  closeTimeoutMs?: number;
  /** Logger bindings, e.g. { deviceId }. */
  logBindings?: Record<string, unknown>;
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
}

let ackCounter = 0;

/**
 * Events: 'listening' {port}, 'connection' info, 'disconnect' info, 'junk' {conn, bytes},
 * 'oversize' {conn, bytes}, 'error' Error (socket-level, informational), 'closed'.
 */
export class MllpServer extends EventEmitter {
  private readonly opts: Required<Omit<MllpServerOptions, 'tls' | 'sendingApp' | 'sendingFacility' | 'logBindings'>> & MllpServerOptions;
  private server: net.Server | undefined;
  private readonly conns = new Map<number, Conn>();
  private nextId = 1;
  private closePromise: Promise<void> | undefined;
  private readonly log;

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
      ? tls.createServer({ key: t.key, cert: t.cert, ca: t.ca, requestCert: !!t.requestCert, rejectUnauthorized: !!t.requestCert })
      : net.createServer();
    this.server = server;
    server.maxConnections = this.opts.maxConnections;
    server.on(t ? 'secureConnection' : 'connection', (s: net.Socket) => this.accept(s));
    server.on('tlsClientError', (e: Error) => this.log.warn({ err: e.message }, 'TLS handshake failed'));
    server.on('drop', () => this.log.warn({ maxConnections: this.opts.maxConnections }, 'connection refused: maxConnections reached'));
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
    this.emit('closed');
  }

  private accept(socket: net.Socket): void {
    const info: MllpConnectionInfo = { id: this.nextId++, remoteAddress: `${socket.remoteAddress ?? '?'}:${socket.remotePort ?? '?'}` };
    if (this.closePromise) {
      socket.destroy();
      return;
    }
    const c: Conn = { info, socket, decoder: new MllpDecoder({ maxBytes: this.opts.maxBytes }), queue: [], busy: false, paused: false, closing: false, closed: false };
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
      c.closed = true;
      c.closing = true;
      c.queue.length = 0;
      const dropped = c.decoder.reset();
      if (dropped > 0) this.log.info({ conn: info.id, bytes: dropped }, 'connection closed with an incomplete frame (discarded)');
      this.conns.delete(info.id);
      this.emit('disconnect', info);
    });
    socket.on('data', (chunk: Buffer) => {
      if (c.closing) return; // draining after an oversize AE: discard
      let events: MllpEvent[];
      try {
        events = c.decoder.push(chunk);
      } catch (e) {
        this.log.error({ conn: info.id, err: String(e) }, 'decoder failure: closing connection');
        socket.destroy();
        return;
      }
      for (const ev of events) {
        if (ev.type === 'junk') {
          // bytes outside a VT…FS block: log (no payload above debug) and ignore
          this.log.warn({ conn: info.id, bytes: ev.bytes }, 'discarded bytes outside an MLLP block');
          this.emit('junk', { conn: info, bytes: ev.bytes });
        } else {
          c.queue.push(ev);
        }
      }
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
    });
    this.emit('connection', info);
  }

  private async drain(c: Conn): Promise<void> {
    if (c.busy) return;
    c.busy = true;
    try {
      while (c.queue.length && !c.closing) {
        const ev = c.queue.shift() as MllpEvent;
        if (ev.type === 'frame') {
          let ack: Buffer;
          try {
            ack = await this.handler(ev.payload, c.info);
          } catch (e) {
            this.log.error({ conn: c.info.id, err: String(e) }, 'handler failed: closing connection without ACK');
            c.socket.destroy();
            return;
          }
          if (c.closed) return;
          await writeAsync(c.socket, encodeMllp(ack));
        } else if (ev.type === 'oversize') {
          // Table 0357 104 "value too long" is the closest code for a message above the size limit
          // (docs/errors.md GW_ERR_TOO_LARGE); MSA-2 empty: we never saw a usable MSH.
          this.log.warn({ conn: c.info.id, bytes: ev.bytes, maxBytes: this.opts.maxBytes }, 'message exceeds maxBytes: AE 104 and closing');
          this.emit('oversize', { conn: c.info, bytes: ev.bytes });
          const ack = buildAck({
            code: 'AE',
            controlId: nextAckId(),
            sendingApp: this.opts.sendingApp ?? 'IOMT-GW',
            sendingFacility: this.opts.sendingFacility ?? '',
            error: { hl7Code: 104, text: `message exceeds ${this.opts.maxBytes} bytes` },
          });
          c.closing = true;
          c.queue.length = 0;
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
        c.socket.resume();
      }
    }
  }
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
