/**
 * Simulated HIS/LIS: an MLLP receiver built on the driver's MllpServer. Modes:
 * - 'aa'     answer AA to everything (HL7 v2.5.1 2.9.2 original-mode application ACK);
 * - 'ae'     answer AE (ERR-3 207 application internal error) to messages matching `aePattern`
 *            (every message when no pattern is set), AA to the others;
 * - 'silent' never answer (the sender's ACK timeout fires);
 * - 'drop'   close the connection on receipt without an ACK, every `dropEvery`-th message
 *            (1 or unset = always), AA to the others.
 * The mode can be changed at any time. `stop()` / `start()` reuse the same port (outage simulation).
 * Every received message is recorded: MSH-10, raw text, time, and what the HIS answered.
 */
import { EventEmitter } from 'node:events';
import { buildAck } from '../../drivers/hl7-mllp/ack';
import { parseHl7, peekHeader, readHeader, type Hl7Header } from '../../drivers/hl7-mllp/hl7-message';
import { MllpServer, type MllpConnectionInfo, type MllpTlsOptions } from '../../drivers/hl7-mllp/mllp-server';

export type HisMode = 'aa' | 'ae' | 'silent' | 'drop';

export interface HisReceived {
  /** 1-based order of receipt since start (or clear()). */
  seq: number;
  controlId: string; // MSH-10 ('' when the message has no usable MSH)
  text: string; // raw message ('' when recordText is false)
  /** Date.now() at receipt. */
  at: number;
  /** performance.now() at receipt (for latency measurements within one process). */
  atPerf: number;
  conn: number;
  obxCount: number;
  /** What the HIS did: the ACK code it sent, 'none' (silent) or 'dropped'. */
  answer: 'AA' | 'AE' | 'none' | 'dropped';
}

export interface SimulatedHisOptions {
  host?: string; // default 127.0.0.1
  port?: number; // default 0 (any free port; kept for later restarts)
  mode?: HisMode;
  aePattern?: RegExp | string;
  /** drop mode: close on every N-th message (1 = always; default 1). */
  dropEvery?: number;
  tls?: MllpTlsOptions;
  /** MSH-3 of the ACKs (default 'HIS'). */
  sendingApp?: string;
  /** Keep the raw text of received messages (default true; benchmarks switch it off). */
  recordText?: boolean;
  /** Keep at most this many records (oldest dropped; default unlimited). */
  maxRecords?: number;
  /** Called for every received message, before the HIS answers. Must not throw. */
  onMessage?: (m: HisReceived) => void;
}

/** Thrown inside the handler to make MllpServer close the connection without an ACK. */
class DropConnection extends Error {
  constructor() {
    super('simulated HIS drops the connection');
  }
}

/** Events: 'message' HisReceived. */
export class SimulatedHis extends EventEmitter {
  mode: HisMode;
  aePattern: RegExp | undefined;
  dropEvery: number;
  readonly host: string;
  private portNo: number;
  private server: MllpServer | undefined;
  private records: HisReceived[] = [];
  private seq = 0;
  private ackSeq = 0;
  private readonly hooks: Array<(m: HisReceived) => void> = [];
  private readonly silentWaiters = new Set<(e: Error) => void>();

  constructor(private readonly opts: SimulatedHisOptions = {}) {
    super();
    this.host = opts.host ?? '127.0.0.1';
    this.portNo = opts.port ?? 0;
    this.mode = opts.mode ?? 'aa';
    this.aePattern = toRegExp(opts.aePattern);
    this.dropEvery = Math.max(1, Math.floor(opts.dropEvery ?? 1));
    if (opts.onMessage) this.hooks.push(opts.onMessage);
  }

  /** The bound port (after the first start, the port every later start reuses). */
  get port(): number {
    return this.portNo;
  }

  get running(): boolean {
    return !!this.server;
  }

  /** Add a per-message hook (same as the onMessage option). Returns a function that removes it. */
  onMessage(fn: (m: HisReceived) => void): () => void {
    this.hooks.push(fn);
    return () => {
      const i = this.hooks.indexOf(fn);
      if (i >= 0) this.hooks.splice(i, 1);
    };
  }

  /** Start listening; resolves with the port. After stop(), listens on the same port again. */
  async start(): Promise<number> {
    if (this.server) return this.portNo;
    const server = new MllpServer(
      { host: this.host, port: this.portNo, tls: this.opts.tls, closeTimeoutMs: 500, sendingApp: this.opts.sendingApp ?? 'HIS', logBindings: { deviceId: 'simulated-his' } },
      (payload, conn) => this.handle(payload, conn),
    );
    const { port } = await server.start();
    this.server = server;
    this.portNo = port;
    return port;
  }

  /** Stop listening and close all connections (unanswered 'silent' messages get no ACK). Safe twice. */
  async stop(): Promise<void> {
    const s = this.server;
    this.server = undefined;
    for (const w of this.silentWaiters) w(new DropConnection());
    this.silentWaiters.clear();
    await s?.close();
  }

  /** Copy of the records, in order of receipt. */
  received(): HisReceived[] {
    return this.records.slice();
  }

  /** Number of messages received since start / clear(), including ones no longer recorded. */
  get receivedCount(): number {
    return this.seq;
  }

  uniqueControlIds(): Set<string> {
    return new Set(this.records.map((r) => r.controlId));
  }

  clear(): void {
    this.records = [];
    this.seq = 0;
  }

  private async handle(payload: Buffer, conn: MllpConnectionInfo): Promise<Buffer> {
    const text = payload.toString('utf8');
    let header: Hl7Header | undefined;
    let obxCount = 0;
    try {
      const msg = parseHl7(text);
      header = readHeader(msg);
      obxCount = msg.segments('OBX').length;
    } catch {
      header = peekHeader(text);
    }
    const seq = ++this.seq;
    const mode = this.mode;
    let answer: HisReceived['answer'];
    if (mode === 'silent') answer = 'none';
    else if (mode === 'drop' && seq % this.dropEvery === 0) answer = 'dropped';
    else if (mode === 'ae' && (this.aePattern ? this.aePattern.test(text) : true)) answer = 'AE';
    else answer = 'AA';

    const rec: HisReceived = {
      seq,
      controlId: header?.controlId ?? '',
      text: this.opts.recordText === false ? '' : text,
      at: Date.now(),
      atPerf: performance.now(),
      conn: conn.id,
      obxCount,
      answer,
    };
    this.records.push(rec);
    if (this.opts.maxRecords !== undefined && this.records.length > this.opts.maxRecords) this.records.shift();
    for (const h of this.hooks) h(rec);
    this.emit('message', rec);

    if (answer === 'none') {
      // never answer; released (connection closed without ACK) on stop()
      return new Promise<Buffer>((_, reject) => this.silentWaiters.add(reject));
    }
    if (answer === 'dropped') throw new DropConnection();
    const ae = answer === 'AE';
    return Buffer.from(
      buildAck({
        request: header,
        code: ae ? 'AE' : 'AA',
        controlId: `HIS${++this.ackSeq}`,
        sendingApp: this.opts.sendingApp ?? 'HIS',
        // Table 0357 207 application internal error
        error: ae ? { hl7Code: 207, text: 'rejected by simulated HIS' } : undefined,
      }),
      'utf8',
    );
  }
}

function toRegExp(p: RegExp | string | undefined): RegExp | undefined {
  if (p === undefined || p === '') return undefined;
  if (p instanceof RegExp) return new RegExp(p.source, p.flags.replace('g', '')); // no lastIndex state
  return new RegExp(p);
}
