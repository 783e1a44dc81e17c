/**
 * Simulated lab analyzer: sends ORU^R01 over MLLP, stop-and-wait on each connection (protocols.md §3.1:
 * wait for the ACK before the next message), checks every ACK (MSA-1 AA and MSA-2 = the MSH-10 sent,
 * HL7 v2.5.1 2.14.8) and reports counts and ACK latency percentiles.
 *
 * Rate: `rate` msg/s over all connections, paced by a shared schedule (message k is due at start + k/rate);
 * 0 = as fast as the ACKs allow. Stops after `count` messages or `durationMs`, whichever comes first.
 * An analyzer does not resend here: a timeout or a lost connection is counted as an error and the next
 * message goes out on a fresh connection (MllpClient reconnects on demand).
 */
import { readFileSync } from 'node:fs';
import { parseAck } from '../../drivers/hl7-mllp/ack';
import { MllpClient, type MllpClientOptions } from '../../drivers/hl7-mllp/mllp-client';
import { TimeoutError } from '../../gateway/src/contracts/errors';
import { OruGenerator, type GeneratedOru, type OruGeneratorOptions } from './oru-generator';

export interface AnalyzerSendEvent {
  conn: number;
  controlId: string;
  specimenId: string;
  /** performance.now() just before the write. */
  sentAt: number;
}

export interface AnalyzerAckEvent extends AnalyzerSendEvent {
  /** performance.now() when the ACK (or the failure) arrived. */
  ackAt: number;
  latencyMs: number;
  /** 'AA' acked; 'AE'/'AR'/... nacked; 'mismatch' AA with the wrong MSA-2; 'timeout' / 'error' no ACK. */
  outcome: 'acked' | 'nacked' | 'mismatch' | 'timeout' | 'error';
  /** MSA-1 when an ACK came back. */
  code?: string;
  /** MSA-2 when an ACK came back. */
  ackControlId?: string;
  error?: string;
}

export interface AnalyzerOptions {
  host: string;
  port: number;
  /** TLS: `ca` (PEM) to trust; `true` = system CAs. */
  tls?: boolean | { ca?: string | Buffer; cert?: string | Buffer; key?: string | Buffer; servername?: string; rejectUnauthorized?: boolean };
  /** Messages to send in total (default 100 unless durationMs is given). */
  count?: number;
  /** Stop starting new messages after this long. */
  durationMs?: number;
  /** Messages per second over all connections; 0 = as fast as ACKs allow (default 0). */
  rate?: number;
  /** Parallel stop-and-wait connections (default 1). */
  connections?: number;
  /** Open a new connection for every message and close it after the ACK (default false). */
  connectionPerMessage?: boolean;
  /** MSH-3 instrument name. */
  device?: string;
  generator?: OruGenerator;
  generatorOptions?: OruGeneratorOptions;
  ackTimeoutMs?: number; // default 10000
  connectTimeoutMs?: number; // default 5000
  /** Per-message hooks (benchmarks timestamp here). Must not throw. */
  onSend?: (e: AnalyzerSendEvent, msg: GeneratedOru) => void;
  onAck?: (e: AnalyzerAckEvent) => void;
  /** Keep at most this many error / nack texts in the report (default 10). */
  maxSamples?: number;
  signal?: AbortSignal;
}

export interface LatencySummary {
  count: number;
  min: number;
  mean: number;
  p50: number;
  p90: number;
  p99: number;
  max: number;
}

export interface AnalyzerReport {
  sent: number;
  acked: number;
  nacked: number;
  /** AA whose MSA-2 is not the MSH-10 just sent (a peer re-acking an older message). */
  mismatched: number;
  timeouts: number;
  /** Connection and delivery errors other than ACK timeouts. */
  errors: number;
  connections: number;
  elapsedMs: number;
  /** Acked messages per second over the run. */
  ackedPerSec: number;
  /** ACK latency of acked messages, ms. */
  latencyMs: LatencySummary;
  errorSamples: string[];
  nackSamples: string[];
  /** Every message got AA with the right MSA-2. */
  ok: boolean;
}

/** Percentiles (nearest-rank) of a list of numbers; sorts a copy. */
export function summarize(values: ArrayLike<number>): LatencySummary {
  const n = values.length;
  if (n === 0) return { count: 0, min: 0, mean: 0, p50: 0, p90: 0, p99: 0, max: 0 };
  const a = Float64Array.from(values as ArrayLike<number>).sort();
  let sum = 0;
  for (let i = 0; i < n; i++) sum += a[i];
  const pct = (p: number) => a[Math.min(n - 1, Math.max(0, Math.ceil((p / 100) * n) - 1))];
  return { count: n, min: a[0], mean: sum / n, p50: pct(50), p90: pct(90), p99: pct(99), max: a[n - 1] };
}

/** Growable Float64 buffer for latencies (bounded by count/duration of a run). */
class Samples {
  private buf = new Float64Array(1024);
  length = 0;
  push(v: number): void {
    if (this.length === this.buf.length) {
      const next = new Float64Array(this.buf.length * 2);
      next.set(this.buf);
      this.buf = next;
    }
    this.buf[this.length++] = v;
  }
  view(): Float64Array {
    return this.buf.subarray(0, this.length);
  }
}

const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

export async function runAnalyzer(opts: AnalyzerOptions): Promise<AnalyzerReport> {
  const connections = Math.max(1, Math.floor(opts.connections ?? 1));
  const count = opts.count ?? (opts.durationMs === undefined ? 100 : Number.POSITIVE_INFINITY);
  const rate = opts.rate ?? 0;
  const maxSamples = opts.maxSamples ?? 10;
  const gen = opts.generator ?? new OruGenerator({ device: opts.device, ...opts.generatorOptions });
  const tlsOpt = opts.tls === true ? {} : opts.tls || undefined;
  const clientOpts: MllpClientOptions = {
    host: opts.host,
    port: opts.port,
    tls: tlsOpt,
    ackTimeoutMs: opts.ackTimeoutMs ?? 10_000,
    connectTimeoutMs: opts.connectTimeoutMs ?? 5_000,
  };

  const r = { sent: 0, acked: 0, nacked: 0, mismatched: 0, timeouts: 0, errors: 0 };
  const errorSamples: string[] = [];
  const nackSamples: string[] = [];
  const lat = new Samples();
  const start = performance.now();
  const deadline = opts.durationMs === undefined ? Number.POSITIVE_INFINITY : start + opts.durationMs;
  let issued = 0; // shared schedule index

  const stopNow = () => opts.signal?.aborted || performance.now() >= deadline;

  const sendOne = async (client: MllpClient, conn: number): Promise<void> => {
    const msg = gen.next();
    const sentAt = performance.now();
    const base: AnalyzerSendEvent = { conn, controlId: msg.controlId, specimenId: msg.specimenId, sentAt };
    opts.onSend?.(base, msg);
    r.sent++;
    let ev: AnalyzerAckEvent;
    try {
      const ack = await client.send(msg.payload);
      const ackAt = performance.now();
      let code = '';
      let ackControlId = '';
      let errorText: string | undefined;
      try {
        const a = parseAck(ack);
        code = a.code;
        ackControlId = a.controlId;
        errorText = a.errorText;
      } catch (e) {
        errorText = `unparsable ACK: ${(e as Error).message}`;
      }
      if (code === 'AA' || code === 'CA') {
        if (ackControlId === msg.controlId) {
          r.acked++;
          lat.push(ackAt - sentAt);
          ev = { ...base, ackAt, latencyMs: ackAt - sentAt, outcome: 'acked', code, ackControlId };
        } else {
          r.mismatched++;
          if (nackSamples.length < maxSamples) nackSamples.push(`${code} for ${ackControlId || '(empty)'} while ${msg.controlId} was sent`);
          ev = { ...base, ackAt, latencyMs: ackAt - sentAt, outcome: 'mismatch', code, ackControlId };
        }
      } else {
        r.nacked++;
        if (nackSamples.length < maxSamples) nackSamples.push(`${code || '(no MSA)'} ${ackControlId}: ${errorText ?? ''}`.trim());
        ev = { ...base, ackAt, latencyMs: ackAt - sentAt, outcome: 'nacked', code, ackControlId, error: errorText };
      }
    } catch (e) {
      const ackAt = performance.now();
      const timeout = e instanceof TimeoutError;
      if (timeout) r.timeouts++;
      else r.errors++;
      const text = (e as Error).message;
      if (errorSamples.length < maxSamples) errorSamples.push(`${msg.controlId}: ${text}`);
      ev = { ...base, ackAt, latencyMs: ackAt - sentAt, outcome: timeout ? 'timeout' : 'error', error: text };
    }
    opts.onAck?.(ev);
  };

  const worker = async (conn: number): Promise<void> => {
    let client: MllpClient | undefined;
    try {
      for (;;) {
        if (issued >= count || stopNow()) return;
        const k = issued++;
        if (rate > 0) {
          const due = start + (k * 1000) / rate;
          const wait = due - performance.now();
          if (wait > 0) await sleep(wait);
          if (stopNow()) return;
        }
        if (!client) client = new MllpClient(clientOpts);
        await sendOne(client, conn);
        if (opts.connectionPerMessage) {
          await client.close();
          client = undefined;
        }
      }
    } finally {
      await client?.close();
    }
  };

  await Promise.all(Array.from({ length: connections }, (_, i) => worker(i + 1)));
  const elapsedMs = performance.now() - start;
  return {
    ...r,
    connections,
    elapsedMs,
    ackedPerSec: elapsedMs > 0 ? (r.acked * 1000) / elapsedMs : 0,
    latencyMs: summarize(lat.view()),
    errorSamples,
    nackSamples,
    ok: r.sent > 0 && r.acked === r.sent,
  };
}

/** One line for humans: counts, rate, latency. */
export function formatReport(r: AnalyzerReport): string {
  const l = r.latencyMs;
  return (
    `sent=${r.sent} acked=${r.acked} nacked=${r.nacked} mismatched=${r.mismatched} timeouts=${r.timeouts} errors=${r.errors} ` +
    `connections=${r.connections} elapsed=${(r.elapsedMs / 1000).toFixed(2)}s rate=${r.ackedPerSec.toFixed(1)}/s ` +
    `latency_ms p50=${l.p50.toFixed(2)} p90=${l.p90.toFixed(2)} p99=${l.p99.toFixed(2)} max=${l.max.toFixed(2)}`
  );
}

/** Read a PEM CA file for `tls.ca`. */
export function readCa(file: string): Buffer {
  return readFileSync(file);
}
