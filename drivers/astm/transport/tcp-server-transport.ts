/**
 * TCP server transport: the analyzer dials the gateway (protocols.md §1.4: byte-identical
 * ENQ/frames/EOT over the socket). One TransportConnection — and one link state machine — per socket.
 * Admission (issue 10 §2, §3; gateway/src/net/listener-guard.ts): allow-list, per-address limit, first
 * ENQ within firstFrameTimeoutMs (E1381 establishment phase, LIS01 §1.3.1), a full listener closes the
 * connection idle longest.
 */
import { EventEmitter } from 'node:events';
import net from 'node:net';
import { componentLogger } from '../../../gateway/src/log/logger';
import { ListenerGuard, type GuardedConnection } from '../../../gateway/src/net/listener-guard';
import { TransportStatusEmitter, type Transport, type TransportConnection, type TransportStatus } from './transport';

export interface TcpServerTransportOptions {
  port: number; // 0 = any free port (tests)
  host?: string; // default 0.0.0.0
  keepAliveMs?: number; // default 30000
  /** Close a socket idle this long (0 = never; devices may hold a connection for days). Default 0. */
  idleTimeoutMs?: number;
  maxConnections?: number; // default 16; a full listener closes the connection idle longest
  /** Connections from one source address; more are refused (default 8). */
  maxPerAddress?: number;
  /** Close a connection that sent no ENQ this long after it opened (default 10000; 0 = never). */
  firstFrameTimeoutMs?: number;
  /** Source addresses / CIDR networks allowed to connect (IPv4, IPv6); empty = everyone. */
  allowFrom?: string | string[];
  /** Label in metrics and logs (default `astm:<port>`). */
  listener?: string;
}

// LIS01 §1.3.1/§1.3.3: ENQ opens a transfer, ETB/ETX end a frame, EOT ends the transfer: activity
const ENQ = 0x05;
const ETX = 0x03;
const ETB = 0x17;
const EOT = 0x04;

export class SocketConnection extends EventEmitter implements TransportConnection {
  constructor(
    readonly id: string,
    readonly remote: string,
    private readonly socket: net.Socket,
    guard?: GuardedConnection,
  ) {
    super();
    socket.on('data', (b: Buffer) => {
      if (guard && (b.includes(ENQ) || b.includes(ETX) || b.includes(ETB) || b.includes(EOT))) guard.frame();
      this.emit('data', b);
    });
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
  readonly guard: ListenerGuard;

  /** Throws RangeError on a bad allow-list entry. */
  constructor(readonly opts: TcpServerTransportOptions) {
    super();
    this.guard = new ListenerGuard({
      listener: opts.listener ?? `astm:${opts.port}`,
      maxConnections: opts.maxConnections ?? 16,
      maxPerAddress: opts.maxPerAddress,
      firstFrameTimeoutMs: opts.firstFrameTimeoutMs,
      allowFrom: opts.allowFrom,
      log: componentLogger('astm-tcp-server', { listener: opts.listener ?? `astm:${opts.port}` }),
    });
  }

  override status(): TransportStatus {
    return { ...this.st, connections: this.sockets.size };
  }

  async start(signal?: AbortSignal): Promise<void> {
    if (this.server) return;
    this.setStatus({ state: 'starting' });
    // no server.maxConnections: the guard refuses or evicts (a hard cap would refuse before eviction)
    const server = net.createServer((socket) => this.accept(socket));
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
    const guard = this.guard.admit(socket); // refused: destroyed and counted
    if (!guard) return;
    socket.setKeepAlive(true, this.opts.keepAliveMs ?? 30_000);
    socket.setNoDelay(true);
    if (this.opts.idleTimeoutMs) {
      socket.setTimeout(this.opts.idleTimeoutMs, () => socket.destroy());
    }
    this.sockets.add(socket);
    const conn = new SocketConnection(`tcp-${++this.seq}`, `${socket.remoteAddress}:${socket.remotePort}`, socket, guard);
    socket.on('close', () => {
      guard.release();
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
    this.guard.close();
    await new Promise<void>((r) => s.close(() => r()));
    this.setStatus({ state: 'stopped' });
  }
}
