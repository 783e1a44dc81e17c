/**
 * MLLP client, stop-and-wait (HL7 v2.5.1 Appendix C; protocols.md §3.1: wait for the ACK before
 * sending the next message). One message in flight per connection; concurrent send() calls queue.
 * After an ACK timeout the connection is destroyed: a late ACK would otherwise be taken as the
 * answer to the next message.
 */
import { EventEmitter } from 'node:events';
import net from 'node:net';
import tls from 'node:tls';
import { secureContextOptions } from '../../gateway/src/tls/options';
import { DeliveryError, TimeoutError } from '../../gateway/src/contracts/errors';
import { MllpDecoder, encodeMllp } from './mllp-decoder';

export interface MllpClientOptions {
  host: string;
  port: number;
  /** TLS to the peer; `ca` to trust a private CA, `cert`/`key` for mutual TLS. */
  tls?: { ca?: Buffer | string; cert?: Buffer | string; key?: Buffer | string; servername?: string; rejectUnauthorized?: boolean };
  connectTimeoutMs?: number; // default 10000
  ackTimeoutMs?: number; // default 30000
  maxAckBytes?: number; // default 1 MiB
}

interface Pending {
  resolve: (b: Buffer) => void;
  reject: (e: Error) => void;
  timer: NodeJS.Timeout;
  socket: net.Socket;
}

/** Events: 'connect', 'close' (connection lost or closed). */
export class MllpClient extends EventEmitter {
  private socket: net.Socket | undefined;
  private connecting: Promise<void> | undefined;
  private decoder: MllpDecoder;
  private pending: Pending | undefined;
  private chain: Promise<unknown> = Promise.resolve();
  private closed = false;
  readonly opts: Required<Omit<MllpClientOptions, 'tls'>> & Pick<MllpClientOptions, 'tls'>;

  constructor(opts: MllpClientOptions) {
    super();
    this.opts = { connectTimeoutMs: 10_000, ackTimeoutMs: 30_000, maxAckBytes: 1024 * 1024, ...opts };
    this.decoder = new MllpDecoder({ maxBytes: this.opts.maxAckBytes });
  }

  get connected(): boolean {
    return !!this.socket && !this.socket.destroyed && !this.connecting;
  }

  /** Open the connection (no-op when open). Rejects TimeoutError or DeliveryError(retryable). */
  connect(): Promise<void> {
    this.closed = false;
    if (this.socket && !this.socket.destroyed && !this.connecting) return Promise.resolve();
    if (this.connecting) return this.connecting;
    this.connecting = new Promise<void>((resolve, reject) => {
      const { host, port } = this.opts;
      const t = this.opts.tls;
      const socket = t
        ? tls.connect({ ...secureContextOptions(), host, port, ca: t.ca, cert: t.cert, key: t.key, servername: t.servername ?? (net.isIP(host) ? undefined : host), rejectUnauthorized: t.rejectUnauthorized ?? true })
        : net.connect({ host, port });
      this.socket = socket;
      this.decoder = new MllpDecoder({ maxBytes: this.opts.maxAckBytes });
      let settled = false;
      const timer = setTimeout(() => {
        if (settled) return;
        settled = true;
        socket.destroy();
        reject(new TimeoutError(`connect to ${host}:${port} timed out after ${this.opts.connectTimeoutMs} ms`));
      }, this.opts.connectTimeoutMs);
      socket.once(t ? 'secureConnect' : 'connect', () => {
        if (settled) return;
        settled = true;
        clearTimeout(timer);
        socket.setNoDelay(true);
        this.emit('connect');
        resolve();
      });
      socket.on('error', (e) => {
        if (!settled) {
          settled = true;
          clearTimeout(timer);
          reject(new DeliveryError(`cannot connect to ${host}:${port}: ${(e as NodeJS.ErrnoException).code ?? e.message}`, true, { cause: e }));
        }
      });
      socket.on('data', (chunk: Buffer) => {
        if (this.socket === socket) this.onData(chunk);
      });
      socket.on('close', () => {
        clearTimeout(timer);
        if (this.socket === socket) this.socket = undefined;
        // only the exchange on this socket fails (an old socket's late 'close' must not fail a newer send)
        if (this.pending?.socket === socket) this.failPending(new DeliveryError('connection lost while waiting for the ACK', true));
        if (settled) this.emit('close');
      });
    }).finally(() => {
      this.connecting = undefined;
    });
    return this.connecting;
  }

  /**
   * Send one message and resolve with the ACK payload (MLLP frame content). Connects when needed.
   * Rejects TimeoutError (ACK timeout; connection destroyed) or DeliveryError(retryable) on loss.
   */
  send(payload: Buffer): Promise<Buffer> {
    const p = this.chain.then(() => this.sendOne(payload));
    this.chain = p.catch(() => undefined);
    return p;
  }

  private async sendOne(payload: Buffer): Promise<Buffer> {
    if (this.closed) throw new DeliveryError('client closed', true);
    await this.connect();
    const socket = this.socket;
    if (!socket || socket.destroyed) throw new DeliveryError('connection lost before sending', true);
    return new Promise<Buffer>((resolve, reject) => {
      const timer = setTimeout(() => {
        this.pending = undefined;
        // a late ACK would desynchronise the stop-and-wait exchange: drop the connection
        socket.destroy();
        reject(new TimeoutError(`no ACK within ${this.opts.ackTimeoutMs} ms`));
      }, this.opts.ackTimeoutMs);
      this.pending = { resolve, reject, timer, socket };
      socket.write(encodeMllp(payload), (err) => {
        if (err) this.failPending(new DeliveryError(`write failed: ${err.message}`, true, { cause: err }));
      });
    });
  }

  private onData(chunk: Buffer): void {
    for (const ev of this.decoder.push(chunk)) {
      if (ev.type !== 'frame') continue; // junk / oversize answers are ignored; the ACK timeout decides
      const p = this.pending;
      if (!p) continue; // unsolicited frame: ignore
      this.pending = undefined;
      clearTimeout(p.timer);
      p.resolve(ev.payload);
    }
  }

  private failPending(e: Error): void {
    const p = this.pending;
    if (!p) return;
    this.pending = undefined;
    clearTimeout(p.timer);
    p.reject(e);
  }

  /** Close the connection (pending send rejects with DeliveryError). Safe twice. */
  async close(): Promise<void> {
    this.closed = true;
    const s = this.socket;
    this.socket = undefined;
    if (!s || s.destroyed) return;
    await new Promise<void>((resolve) => {
      s.once('close', () => resolve());
      s.end();
      setTimeout(() => s.destroy(), 1000).unref();
    });
  }
}
