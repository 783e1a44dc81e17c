/**
 * TCP client transport: the gateway dials the analyzer (protocols.md §1.4: the analyzer may be the
 * TCP server). Reconnects with exponential backoff; TCP keepalive; optional idle timeout because some
 * devices hold a connection for days and half-open sockets must be noticed.
 */
import net from 'node:net';
import { RetryTimer, TransportStatusEmitter, type Transport } from './transport';
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

export class TcpClientTransport extends TransportStatusEmitter implements Transport {
  private stopped = true;
  private readonly redial: RetryTimer;
  private socket: net.Socket | undefined;
  private seq = 0;

  constructor(readonly opts: TcpClientTransportOptions) {
    super();
    this.redial = new RetryTimer(opts.reconnectBaseMs ?? 1000, opts.reconnectMaxMs ?? 30_000, () => this.dial());
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
      this.redial.succeeded();
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
    if (!this.stopped) this.redial.schedule();
  }

  async close(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.redial.cancel();
    this.socket?.destroy();
    this.socket = undefined;
    this.setStatus({ state: 'stopped', connections: 0 });
  }
}
