/**
 * A small pool of worker threads that decode and parse large HL7 messages (issue 10 §1: long CPU work
 * never holds the event loop for more than a few tens of ms). The receiver sends a message here when
 * it is at least Hl7WorkerThreshold big (hl7-worker-parse.ts isLargeHl7); small ones stay inline, the
 * round trip would cost more than their parse.
 *
 * - Size: IOMT_HL7_PARSE_WORKERS threads (1–4; default 1 on a 1–2 core box, else 2), started on
 *   first use, unref'd (they never keep the process alive), replaced when one dies.
 * - Queue: FIFO, at most MAX_QUEUE jobs; beyond it a job is refused (the receiver answers AE 207 and
 *   the sender re-sends later). In practice the memory budget bounds it long before.
 * - Each worker has a heap cap (WORKER_HEAP_MB): a message that would need more ends that worker with
 *   ERR_WORKER_OUT_OF_MEMORY and its job fails (AE 207), never the gateway.
 * - A thread that parsed a message of RECYCLE_BYTES or more is replaced (its heap returned at once).
 * - The raw bytes are copied once into a transferred buffer (the caller keeps its Buffer for the
 *   store); the decoded text never comes back, only the results and the content hash.
 */
import { existsSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import { basename, dirname, extname, join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { GatewayError } from '../../gateway/src/contracts/errors';
import type { Hl7Header } from './hl7-message';
import type { Hl7WorkerChunk } from './hl7-parse-worker';
import { reviveHl7Error, type Hl7Prepared, type Hl7PrepareOptions, type SerializedHl7Error } from './hl7-worker-parse';

export const MAX_QUEUE = 256;
/** Old-generation heap of one parse worker (MB). An 8.8 MB message of 10,000 segments parses in 128; a small cap makes the worker collect its garbage early (RSS, issue 10 §7). */
export const WORKER_HEAP_MB = 192;
/**
 * A thread that parsed a message of at least this many bytes is replaced by a fresh one: terminating
 * it returns its heap at once (32 × 8 MB: ~50 MiB less RSS at the peak, bench/memory-flood.ts).
 */
export const RECYCLE_BYTES = 1024 * 1024;

interface Job {
  id: number;
  raw: Uint8Array;
  bytes: number;
  opts: Hl7PrepareOptions;
  resolve(r: Hl7Prepared): void;
  reject(e: Error): void;
  /** the result whose large arrays are being pulled in slices */
  result?: Exclude<Hl7Prepared, { ok: false }>;
  todo?: Array<[string, number]>;
  pulling?: { path: string; total: number; target: unknown[] };
  /** objects shared by several items, by id (hl7-parse-worker.ts) */
  shared?: unknown[];
}

type Reply = { id: number; r: Exclude<Hl7Prepared, { ok: false }> | { ok: false; header: Hl7Header | undefined; error: SerializedHl7Error }; parts?: Record<string, number> };

/** The worker's entry next to this file: `.js` in dist/, `.ts` under vitest/tsx (with tsx's CommonJS hook, as the store writer). */
export function parseWorkerEntry(): { file: string; execArgv?: string[] } {
  const ext = extname(__filename);
  const file = join(dirname(__filename), `hl7-parse-worker${ext}`);
  if (ext !== '.ts') return { file };
  return { file, execArgv: ['--require', require.resolve('tsx/cjs')] };
}

export class Hl7WorkerPool {
  private readonly idle: Worker[] = [];
  private readonly busy = new Map<Worker, Job>();
  private readonly queue: Job[] = [];
  private started = 0;
  private readonly retired = new WeakSet<Worker>();
  private nextId = 1;
  private closed = false;
  /** Jobs completed (tests, diagnostics). */
  done = 0;
  /** Threads replaced after a large message (RECYCLE_BYTES). */
  recycled = 0;

  /**
   * `recycleBytes`: replace a thread after a message of at least this size (default RECYCLE_BYTES;
   * Infinity = never). `heapMb`: old-generation heap per thread (default WORKER_HEAP_MB).
   */
  constructor(
    readonly size: number,
    private readonly opts: { recycleBytes?: number; heapMb?: number } = {},
  ) {}

  /** Jobs waiting plus running. */
  get pending(): number {
    return this.queue.length + this.busy.size;
  }

  /** Decode + parse `raw` in a worker: the same result prepareHl7 gives inline. Rejects (GatewayError) when the queue is full or the worker died. */
  prepare(raw: Buffer, opts: Hl7PrepareOptions): Promise<Hl7Prepared> {
    return new Promise<Hl7Prepared>((resolve, reject) => {
      if (this.closed) return reject(new GatewayError('GW_ERR_INTERNAL', 'HL7 parse pool closed'));
      if (this.queue.length >= MAX_QUEUE) return reject(new GatewayError('GW_ERR_INTERNAL', `HL7 parse pool: ${MAX_QUEUE} large messages already queued`));
      this.queue.push({ id: this.nextId++, raw: new Uint8Array(raw), bytes: raw.length, opts, resolve, reject });
      this.pump();
    });
  }

  /** Start the threads now (a receiver starting), so the first large message does not wait for a thread to boot. */
  warm(): void {
    try {
      while (!this.closed && this.started < this.size) this.idle.push(this.spawn());
    } catch {
      // no thread now: prepare() reports it on the first large message (AE 207), the receiver still starts
    }
  }

  private spawn(): Worker {
    const entry = parseWorkerEntry();
    if (!existsSync(entry.file)) throw new GatewayError('GW_ERR_INTERNAL', `HL7 parse worker not found: ${basename(entry.file)}`);
    const w = new Worker(entry.file, { ...(entry.execArgv ? { execArgv: entry.execArgv } : {}), name: 'hl7-parse', resourceLimits: { maxOldGenerationSizeMb: this.opts.heapMb ?? WORKER_HEAP_MB } });
    w.unref();
    w.on('message', (m: Reply | Hl7WorkerChunk) => {
      const job = this.busy.get(w);
      if (!job || job.id !== m.id) return;
      if ('chunk' in m) {
        // a slice of a large array (hl7-parse-worker.ts CHUNK): shared objects re-linked (the same
        // sharing as inline), appended; the next slice is pulled on a later turn of the event loop
        const pull = job.pulling as NonNullable<Job['pulling']>;
        const shared = (job.shared ??= []);
        for (const [i, k, id] of m.defs) shared[id] = (m.chunk[i] as Record<string, unknown>)[k];
        for (const [i, k, id] of m.refs) (m.chunk[i] as Record<string, unknown>)[k] = shared[id];
        for (const x of m.chunk) pull.target.push(x);
        return this.pullNext(w, job);
      }
      const r = m.r;
      if (!r.ok) return this.finish(w, job, { ok: false, header: r.header, error: reviveHl7Error(r.error) }); // same class and fields as inline
      const todo = Object.entries(m.parts ?? {});
      if (!todo.length) return this.finish(w, job, r);
      job.result = r;
      job.todo = todo;
      this.pullNext(w, job);
    });
    let gone = false;
    const dead = (err: Error) => {
      if (gone || this.retired.has(w)) return;
      gone = true;
      const job = this.busy.get(w);
      this.busy.delete(w);
      const i = this.idle.indexOf(w);
      if (i >= 0) this.idle.splice(i, 1);
      this.started--;
      job?.reject(new GatewayError('GW_ERR_INTERNAL', `HL7 parse worker failed: ${err.message}`, { cause: err }));
      if (!this.closed) this.pump();
    };
    w.on('error', (e) => dead(e instanceof Error ? e : new Error(String(e))));
    w.once('exit', (code) => dead(new Error(`exited (${code})`)));
    this.started++;
    return w;
  }

  /** Pull the next slice of the job's large arrays, or resolve it when all arrived. */
  private pullNext(w: Worker, job: Job): void {
    const r = job.result as Exclude<Hl7Prepared, { ok: false }>;
    let p = job.pulling;
    if (p && p.target.length >= p.total) p = job.pulling = undefined;
    if (!p) {
      const next = job.todo?.shift();
      if (!next) return this.finish(w, job, r);
      const [path, total] = next;
      const [holder, key] = path.split('.') as ['oru' | 'orders', string];
      const target = (r as unknown as Record<string, Record<string, unknown[]>>)[holder][key];
      p = job.pulling = { path, total, target };
    }
    w.postMessage({ id: job.id, pull: p.path, from: p.target.length });
  }

  private finish(w: Worker, job: Job, r: Hl7Prepared): void {
    this.busy.delete(w);
    this.done++;
    job.resolve(r);
    if (job.bytes >= (this.opts.recycleBytes ?? RECYCLE_BYTES) && !this.closed) {
      // the thread's heap now holds the garbage of a large message (its bytes, decoded text, parse
      // tree) until its next collection, which an idle thread never runs: end it, start a fresh one
      this.retired.add(w);
      this.recycled++;
      this.started--;
      void w.terminate();
      this.warm();
    } else this.idle.push(w);
    this.pump();
  }

  private pump(): void {
    while (this.queue.length && !this.closed) {
      const w = this.idle.pop() ?? (this.started < this.size ? this.spawn() : undefined);
      if (!w) return;
      const job = this.queue.shift() as Job;
      this.busy.set(w, job);
      const raw = job.raw;
      job.raw = new Uint8Array(0); // moved to the worker, not kept twice
      w.postMessage({ id: job.id, raw, opts: job.opts }, [raw.buffer as ArrayBuffer]);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    const all = [...this.idle, ...this.busy.keys()];
    for (const j of [...this.busy.values(), ...this.queue]) j.reject(new GatewayError('GW_ERR_INTERNAL', 'HL7 parse pool closed'));
    this.idle.length = 0;
    this.busy.clear();
    this.queue.length = 0;
    await Promise.all(all.map((w) => w.terminate()));
  }
}

/** IOMT_HL7_PARSE_WORKERS (1–4), else 1 on a 1–2 core machine and 2 above. */
export function defaultPoolSize(env: NodeJS.ProcessEnv = process.env): number {
  const n = Number(env.IOMT_HL7_PARSE_WORKERS);
  if (Number.isInteger(n) && n >= 1 && n <= 4) return n;
  return availableParallelism() <= 2 ? 1 : 2;
}

let shared: Hl7WorkerPool | undefined;

/** The process-wide pool (every HL7 receiver shares it). */
export function sharedHl7WorkerPool(): Hl7WorkerPool {
  return (shared ??= new Hl7WorkerPool(defaultPoolSize()));
}

/** Stop the shared pool's threads (tests). */
export async function closeSharedHl7WorkerPool(): Promise<void> {
  const p = shared;
  shared = undefined;
  await p?.close();
}
