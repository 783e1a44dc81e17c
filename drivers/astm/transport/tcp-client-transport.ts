/**
 * TCP client transport: the gateway dials the analyzer (protocols.md §1.4: the analyzer may be the
 * TCP server). Reconnects with exponential backoff; TCP keepalive; optional idle timeout because some
 * devices hold a connection for days and half-open sockets must be noticed.
 */
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { backoffMs, type Transport, type TransportStatus } from './transport';
import { SocketConnection } from './tcp-server-transport';

export interface TcpClientTransportOptions {
  host: string;
  port: number;
  keepAliveMs?: number; // default 30000
  idleTimeoutMs?: number; // default 0 (off)
  connectTimeoutMs?: number; // default 10000
  reconnectBaseMs?: number; // default 1000
  reconnectMaxMs?: number; // default 30000
}

export class TcpClientTransport extends EventEmitter implements Transport {
  private stopped = true;
  private attempt = 0;
  private timer: NodeJS.Timeout | undefined;
  private socket: net.Socket | undefined;
  private seq = 0;
  private st: TransportStatus = { state: 'stopped', connections: 0 };

  constructor(readonly opts: TcpClientTransportOptions) {
    super();
  }

  status(): TransportStatus {
    return { ...this.st };
  }

  private setStatus(p: Partial<TransportStatus>): void {
    this.st = { ...this.st, ...p };
    this.emit('state', this.status());
  }

  async start(signal?: AbortSignal): Promise<void> {
    if (!this.stopped) return;
    this.stopped = false;
    this.setStatus({ state: 'starting', detail: `${this.opts.host}:${this.opts.port}` });
    signal?.addEventListener('abort', () => void this.close(), { once: true });
    this.dial();
  }

  private dial(): void {
    if (this.stopped) return;
    const o = this.opts;
    const socket = net.connect({ host: o.host, port: o.port });
    this.socket = socket;
    let connected = false;
    const ct = setTimeout(() => socket.destroy(new Error('connect timeout')), o.connectTimeoutMs ?? 10_000);
    socket.once('connect', () => {
      clearTimeout(ct);
      connected = true;
      this.attempt = 0;
      socket.setKeepAlive(true, o.keepAliveMs ?? 30_000);
      socket.setNoDelay(true);
      if (o.idleTimeoutMs) socket.setTimeout(o.idleTimeoutMs, () => socket.destroy());
      const conn = new SocketConnection(`tcp-client-${++this.seq}`, `${o.host}:${o.port}`, socket);
      this.setStatus({ state: 'connected', connections: 1 });
      this.emit('connection', conn);
    });
    socket.on('error', (e) => this.setStatus({ lastError: e.message, lastErrorAt: new Date().toISOString() }));
    socket.on('close', () => {
      clearTimeout(ct);
      if (this.socket === socket) this.socket = undefined;
      this.setStatus({ state: this.stopped ? 'stopped' : 'disconnected', connections: 0 });
      if (!connected || !this.stopped) this.schedule();
    });
  }

  private schedule(): void {
    if (this.stopped || this.timer) return;
    const ms = backoffMs(this.attempt++, this.opts.reconnectBaseMs ?? 1000, this.opts.reconnectMaxMs ?? 30_000);
    this.timer = setTimeout(() => {
      this.timer = undefined;
      this.dial();
    }, ms);
  }

  async close(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    this.socket?.destroy();
    this.socket = undefined;
    this.setStatus({ state: 'stopped', connections: 0 });
  }
}
