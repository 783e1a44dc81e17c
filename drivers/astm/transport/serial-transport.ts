/**
 * Serial transport (RS-232 via USB adapter or on-board UART). Paths may be stable udev links
 * (`/dev/serial/by-id/...`). LIS01 §1.1 defaults 9600 8N1, no handshake; everything configurable.
 * Absent at start or unplugged later: retry with exponential backoff, never throw.
 */
import { EventEmitter } from 'node:events';
import { stat } from 'node:fs';
import { SerialPort } from 'serialport';
import { RetryTimer, TransportStatusEmitter, type Transport, type TransportConnection } from './transport';

export interface SerialTransportOptions {
  path: string;
  baudRate?: number; // default 9600
  dataBits?: 7 | 8; // default 8
  parity?: 'none' | 'even' | 'odd'; // default none
  stopBits?: 1 | 2; // default 1
  rtscts?: boolean;
  xon?: boolean; // XON/XOFF both directions
  reopenBaseMs?: number; // default 1000
  reopenMaxMs?: number; // default 30000
  /**
   * While open, check this often that the path still names the device that was opened (stat, following
   * the by-id symlink: same rdev). Default 2000; 0 = off. An unplugged USB adapter usually makes reads
   * fail at once, but not always (a hangup can go unnoticed while the line is idle), and a port that
   * looks open but is gone would never be reopened.
   */
  presenceCheckMs?: number;
}

class SerialConnection extends EventEmitter implements TransportConnection {
  private closed = false;
  constructor(
    readonly id: string,
    readonly remote: string,
    private readonly port: SerialPort,
  ) {
    super();
  }
  write(buf: Buffer): void {
    if (this.closed) return;
    this.port.write(buf, (err) => {
      if (err) this.emit('error', err);
    });
  }
  close(): void {
    if (this.closed) return;
    this.closed = true;
    if (this.port.isOpen) this.port.close(() => undefined);
  }
  private closeEmitted = false;
  markClosed(): void {
    this.closed = true;
    if (this.closeEmitted) return;
    this.closeEmitted = true;
    this.emit('close');
  }
}

export class SerialTransport extends TransportStatusEmitter implements Transport {
  private stopped = true;
  private readonly reopen: RetryTimer;
  private port: SerialPort | undefined;
  private conn: SerialConnection | undefined;
  private presenceTimer: NodeJS.Timeout | undefined;
  private seq = 0;

  constructor(readonly opts: SerialTransportOptions) {
    super();
    if (!opts.path) throw new TypeError('SerialTransport: path is required');
    this.reopen = new RetryTimer(opts.reopenBaseMs ?? 1000, opts.reopenMaxMs ?? 30_000, () => this.open());
  }

  async start(signal?: AbortSignal): Promise<void> {
    if (!this.stopped) return;
    this.stopped = false;
    this.setStatus({ state: 'starting', detail: this.opts.path });
    signal?.addEventListener('abort', () => void this.close(), { once: true });
    this.open();
  }

  private open(): void {
    if (this.stopped) return;
    const o = this.opts;
    const port = new SerialPort({
      path: o.path,
      baudRate: o.baudRate ?? 9600,
      dataBits: o.dataBits ?? 8,
      parity: o.parity ?? 'none',
      stopBits: o.stopBits ?? 1,
      rtscts: o.rtscts ?? false,
      xon: o.xon ?? false,
      xoff: o.xon ?? false,
      autoOpen: false,
    });
    this.port = port;
    port.on('error', (err) => this.fail(err));
    port.open((err) => {
      if (err) {
        this.fail(err);
        port.removeAllListeners();
        this.scheduleReopen();
        return;
      }
      if (this.stopped) {
        port.close(() => undefined);
        return;
      }
      this.reopen.succeeded();
      const conn = new SerialConnection(`serial-${++this.seq}`, o.path, port);
      this.conn = conn;
      port.on('data', (b: Buffer) => conn.emit('data', b));
      let gone = false;
      const lost = () => {
        if (gone) return;
        gone = true;
        this.stopPresenceCheck();
        conn.markClosed();
        if (this.conn === conn) this.conn = undefined;
        this.setStatus({ state: this.stopped ? 'stopped' : 'disconnected', connections: 0 });
        this.scheduleReopen(); // adapter unplugged (err.disconnected) or closed: reopen with backoff
      };
      port.on('close', lost);
      this.setStatus({ state: 'connected', connections: 1, detail: o.path });
      this.emit('connection', conn);
      this.startPresenceCheck(port, lost);
    });
  }

  private startPresenceCheck(port: SerialPort, lost: () => void): void {
    const every = this.opts.presenceCheckMs ?? 2000;
    if (!(every > 0)) return;
    let rdev: number | undefined;
    stat(this.opts.path, (err, st) => {
      if (!err) rdev = st.rdev;
    });
    this.stopPresenceCheck();
    this.presenceTimer = setInterval(() => {
      stat(this.opts.path, (err, st) => {
        if (this.port !== port || !port.isOpen) return;
        if (!err && (rdev === undefined || st.rdev === rdev)) return;
        const why = err ? `${this.opts.path} is gone (${err.code ?? err.message})` : `${this.opts.path} now names another device`;
        this.fail(new Error(why));
        port.removeAllListeners('data');
        port.close(() => undefined); // may fail on a dead descriptor: do not wait for 'close'
        lost();
      });
    }, every);
    this.presenceTimer.unref();
  }

  private stopPresenceCheck(): void {
    if (this.presenceTimer) clearInterval(this.presenceTimer);
    this.presenceTimer = undefined;
  }

  private fail(err: Error): void {
    // log state changes once: the caller (driver) sees 'state' events; keep the last error
    this.setStatus({ state: this.stopped ? 'stopped' : 'disconnected', lastError: err.message, lastErrorAt: new Date().toISOString(), connections: this.conn ? 1 : 0 });
  }

  private scheduleReopen(): void {
    if (!this.stopped) this.reopen.schedule();
  }

  async close(): Promise<void> {
    if (this.stopped) return;
    this.stopped = true;
    this.reopen.cancel();
    this.stopPresenceCheck();
    const port = this.port;
    this.port = undefined;
    if (port?.isOpen) await new Promise<void>((r) => port.close(() => r()));
    this.conn?.markClosed();
    this.conn = undefined;
    this.setStatus({ state: 'stopped', connections: 0 });
  }
}
