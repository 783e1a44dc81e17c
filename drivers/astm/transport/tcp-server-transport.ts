/**
 * TCP server transport: the analyzer dials the gateway (protocols.md §1.4: byte-identical
 * ENQ/frames/EOT over the socket). One TransportConnection — and one link state machine — per socket.
 */
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { TransportStatusEmitter, type Transport, type TransportConnection, type TransportStatus } from './transport';

export interface TcpServerTransportOptions {
  port: number; // 0 = any free port (tests)
  host?: string; // default 0.0.0.0
  keepAliveMs?: number; // default 30000
  /** Close a socket idle this long (0 = never; devices may hold a connection for days). Default 0. */
  idleTimeoutMs?: number;
  maxConnections?: number; // default 16
}

export class SocketConnection extends EventEmitter implements TransportConnection {
  constructor(
    readonly id: string,
    readonly remote: string,
    private readonly socket: net.Socket,
  ) {
    super();
    socket.on('data', (b) => this.emit('data', b));
    socket.on('error', (e) => this.emit('error', e));
    socket.on('close', () => this.emit('close'));
  }
  write(buf: Buffer): void {
    if (!this.socket.destroyed) this.socket.write(buf);
  }
  close(): void {
    this.socket.destroy();
  }
}

export class TcpServerTransport extends TransportStatusEmitter implements Transport {
  private server: net.Server | undefined;
  private sockets = new Set<net.Socket>();
  private seq = 0;
  boundPort: number | undefined;

  constructor(readonly opts: TcpServerTransportOptions) {
    super();
  }

  override status(): TransportStatus {
    return { ...this.st, connections: this.sockets.size };
  }

  async start(signal?: AbortSignal): Promise<void> {
    if (this.server) return;
    this.setStatus({ state: 'starting' });
    const server = net.createServer((socket) => this.accept(socket));
    server.maxConnections = this.opts.maxConnections ?? 16;
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.opts.port, this.opts.host ?? '0.0.0.0', () => {
        server.off('error', reject);
        resolve();
      });
    }).catch((e) => {
      this.server = undefined;
      this.setStatus({ state: 'error', lastError: (e as Error).message, lastErrorAt: new Date().toISOString() });
      throw e;
    });
    const a = server.address();
    this.boundPort = typeof a === 'object' && a ? a.port : undefined;
    server.on('error', (e) => this.setStatus({ lastError: e.message, lastErrorAt: new Date().toISOString() }));
    this.setStatus({ state: 'listening', detail: `port ${this.boundPort}` });
    signal?.addEventListener('abort', () => void this.close(), { once: true });
  }

  private accept(socket: net.Socket): void {
    socket.setKeepAlive(true, this.opts.keepAliveMs ?? 30_000);
    socket.setNoDelay(true);
    if (this.opts.idleTimeoutMs) {
      socket.setTimeout(this.opts.idleTimeoutMs, () => socket.destroy());
    }
    this.sockets.add(socket);
    const conn = new SocketConnection(`tcp-${++this.seq}`, `${socket.remoteAddress}:${socket.remotePort}`, socket);
    socket.on('close', () => {
      this.sockets.delete(socket);
      this.setStatus({ state: this.server ? (this.sockets.size ? 'connected' : 'listening') : 'stopped' });
    });
    this.setStatus({ state: 'connected' });
    this.emit('connection', conn);
  }

  async close(): Promise<void> {
    const s = this.server;
    if (!s) return;
    this.server = undefined;
    for (const sock of this.sockets) sock.destroy();
    await new Promise<void>((r) => s.close(() => r()));
    this.setStatus({ state: 'stopped' });
  }
}
