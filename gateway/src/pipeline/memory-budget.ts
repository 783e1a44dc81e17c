/**
 * One budget for the bytes of device messages in flight (issue 10 §7), shared by every connection
 * of every protocol in the process: the MLLP server (drivers/hl7-mllp/mllp-server.ts) reserves the
 * bytes of a block as it buffers them and releases them once the block was answered (committed,
 * refused or dropped); the ASTM link (drivers/astm/link.ts) does the same for a message's records.
 *
 * When the budget is full a reader does not buffer more: it pauses its socket (TCP backpressure)
 * and waits (`wait`) until bytes are released.
 *
 * Deadlock freedom: MLLP and ASTM messages have no length up front, so every connection might hold
 * part of a message and wait for more. The last `headroomBytes` of the budget are therefore lent to
 * one holder at a time (the first that finds the rest full): that holder can always finish a message
 * of up to `headroomBytes`, answer it and release, and the others then continue. Total held bytes
 * stay ≤ maxBytes as long as no listener accepts messages larger than headroomBytes (default
 * 8 MiB, the MLLP default maxBytes); a larger message can overshoot the budget by its excess.
 *
 * Work (issue 10 §7): decoding, parsing and storing a large message costs several times its size: a
 * copy for the parse thread, the decoded text, the result values copied back, the store's JSON and its
 * copy for the writer thread (about 6 copies of an 8 MB text value; bench/memory-flood.ts). The
 * receiver charges that expansion with `acquireWork` before it processes a large message and releases
 * it after the answer. Work is granted when it fits beside the bytes held and the other
 * work, and always when no other work runs (so work never waits for readers: no deadlock); while work
 * is charged, readers get correspondingly less. Large messages are thus processed one or a few at a
 * time while the others wait with their sockets paused. After each, the receiver calls reclaimAfterWork
 * (one full V8 collection) so its garbage is gone before the next one.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { componentLogger } from '../log/logger';
import { metrics } from '../metrics/registry';

/**
 * 32 MiB: 32 concurrent 8 MB messages peaked at ~330 MiB RSS with it and ~420 MiB with 64 MiB, ~272
 * with it and reclaimAfterWork (16 MiB: no clear gain) (bench/memory-flood.ts, docs/BENCHMARKS.md);
 * still thousands of ordinary messages in flight.
 */
export const DEFAULT_INFLIGHT_MAX_BYTES = 32 * 1024 * 1024;
export const DEFAULT_INFLIGHT_HEADROOM_BYTES = 8 * 1024 * 1024;
/** Bytes of work charged per byte of a large message being processed (see acquireWork). */
export const WORK_EXPANSION_FACTOR = 6;

export interface MemoryBudgetOptions {
  /** Budget in bytes (> 0). */
  maxBytes: number;
  /** Lent to one holder at a time when the rest is full (default min(8 MiB, maxBytes)). */
  headroomBytes?: number;
}

/** Anything that holds bytes: a connection. Compared by identity. */
export type BudgetHolder = object;

export class MemoryBudget {
  readonly maxBytes: number;
  readonly headroomBytes: number;
  private usedBytes = 0;
  private peak = 0;
  private peakAll = 0;
  private readonly held = new Map<BudgetHolder, number>();
  private lender: BudgetHolder | undefined; // holder currently using the headroom
  private waiters: Array<{ holder: BudgetHolder; cb: () => void }> = [];
  private workBytes = 0;
  private workCount = 0;
  private workWaiters: Array<{ n: number; grant: () => void }> = [];

  constructor(opts: MemoryBudgetOptions) {
    if (!(opts.maxBytes > 0)) throw new RangeError('memory budget maxBytes must be > 0');
    this.maxBytes = opts.maxBytes;
    this.headroomBytes = Math.min(opts.headroomBytes ?? DEFAULT_INFLIGHT_HEADROOM_BYTES, opts.maxBytes);
  }

  /** Bytes reserved now. */
  get used(): number {
    return this.usedBytes;
  }

  /** Bytes charged for work in progress (acquireWork). */
  get work(): number {
    return this.workBytes;
  }

  /** Work charges waiting (acquireWork). */
  get workWaiting(): number {
    return this.workWaiters.length;
  }

  /** Highest `used` seen (tests, diagnostics). */
  get peakUsed(): number {
    return this.peak;
  }

  /** Highest `used + work` seen. */
  get peakWithWork(): number {
    return this.peakAll;
  }

  /** Bytes `holder` holds. */
  heldBy(holder: BudgetHolder): number {
    return this.held.get(holder) ?? 0;
  }

  /** Holders waiting for bytes. */
  get waiting(): number {
    return this.waiters.length;
  }

  /**
   * Reserve `n` bytes for `holder`: true when granted, false when the budget is full (then the caller
   * must not buffer the bytes: pause, call `wait`, retry when called back).
   */
  tryReserve(holder: BudgetHolder, n: number): boolean {
    if (n <= 0) return true;
    const regular = this.maxBytes - this.headroomBytes;
    let ok = this.usedBytes + this.workBytes + n <= regular;
    if (!ok && (this.lender === undefined || this.lender === holder)) {
      // the headroom: one holder at a time, so that one can always finish its message (a message
      // larger than the headroom overshoots by its excess rather than wait for ever)
      ok = true;
      this.lender = holder;
    }
    if (!ok) return false;
    this.usedBytes += n;
    this.notePeak();
    this.held.set(holder, this.heldBy(holder) + n);
    return true;
  }

  /**
   * Charge `n` bytes of work (the expansion of a message while it is decoded, parsed and stored);
   * resolves with the function that gives them back (call it once, after the answer). Granted at once
   * when no other work runs, else when `used + work + n ≤ maxBytes`; waiters are served in order.
   */
  acquireWork(n: number): Promise<() => void> {
    const grant = (): (() => void) => {
      this.workBytes += n;
      this.workCount++;
      this.notePeak();
      let done = false;
      return () => {
        if (done) return;
        done = true;
        this.workBytes -= n;
        this.workCount--;
        this.wake();
      };
    };
    if (!this.workWaiters.length && this.workFits(n)) return Promise.resolve(grant());
    metrics.inflightPauses.inc();
    return new Promise((resolve) => this.workWaiters.push({ n, grant: () => resolve(grant()) }));
  }

  private workFits(n: number): boolean {
    return this.workCount === 0 || this.usedBytes + this.workBytes + n <= this.maxBytes;
  }

  private notePeak(): void {
    if (this.usedBytes > this.peak) this.peak = this.usedBytes;
    if (this.usedBytes + this.workBytes > this.peakAll) this.peakAll = this.usedBytes + this.workBytes;
  }

  /** Give back `n` bytes of `holder` (at most what it holds). Wakes waiters. */
  release(holder: BudgetHolder, n: number): void {
    const h = this.heldBy(holder);
    const k = Math.min(h, Math.max(0, n));
    if (k === 0) return;
    this.usedBytes -= k;
    if (h - k === 0) {
      this.held.delete(holder);
      if (this.lender === holder) this.lender = undefined;
    } else this.held.set(holder, h - k);
    this.wake();
  }

  /** Release everything `holder` holds and forget its wait (connection closed). */
  releaseAll(holder: BudgetHolder): void {
    this.waiters = this.waiters.filter((w) => w.holder !== holder);
    this.release(holder, this.heldBy(holder));
    if (this.lender === holder) this.lender = undefined;
  }

  /** Forget `holder`'s pending wait (it gave up). */
  cancelWait(holder: BudgetHolder): void {
    this.waiters = this.waiters.filter((w) => w.holder !== holder);
  }

  /** Call `cb` once, after bytes were released (FIFO among waiters). A holder waits at most once. */
  wait(holder: BudgetHolder, cb: () => void): void {
    if (this.waiters.some((w) => w.holder === holder)) return;
    metrics.inflightPauses.inc();
    this.waiters.push({ holder, cb });
  }

  private wake(): void {
    // work first (FIFO): it finishes and frees memory; readers get what is left
    while (this.workWaiters.length && this.workFits(this.workWaiters[0].n)) (this.workWaiters.shift() as { grant: () => void }).grant();
    if (!this.waiters.length) return;
    const ws = this.waiters;
    this.waiters = [];
    // on a later tick: the releasing code finishes first; a waiter that still does not fit waits again
    setImmediate(() => {
      for (const w of ws) w.cb();
    });
  }
}

let shared: MemoryBudget | undefined;

/**
 * The process-wide budget: IOMT_INFLIGHT_MAX_BYTES (bytes, default 32 MiB). Throws RangeError on a
 * value that is not a positive whole number.
 */
export function sharedMemoryBudget(env: NodeJS.ProcessEnv = process.env): MemoryBudget {
  if (shared) return shared;
  let n = DEFAULT_INFLIGHT_MAX_BYTES;
  try {
    n = inflightBudgetBytes(env);
  } catch (e) {
    // check-config reports it (inflightBudgetBytes); a connection never fails on it
    componentLogger('memory-budget').error({ err: (e as Error).message, maxBytes: n }, 'IOMT_INFLIGHT_MAX_BYTES invalid: default budget used');
  }
  shared = new MemoryBudget({ maxBytes: n });
  return shared;
}

/** IOMT_INFLIGHT_MAX_BYTES in bytes (default 32 MiB, at least 1 MiB). Throws RangeError naming the bad value. */
export function inflightBudgetBytes(env: NodeJS.ProcessEnv = process.env): number {
  const raw = (env.IOMT_INFLIGHT_MAX_BYTES ?? '').trim();
  if (raw === '') return DEFAULT_INFLIGHT_MAX_BYTES;
  const n = /^\d+$/.test(raw) ? Number(raw) : NaN;
  if (!(Number.isSafeInteger(n) && n >= 1024 * 1024)) throw new RangeError(`IOMT_INFLIGHT_MAX_BYTES '${raw}' is not a number of bytes ≥ 1048576`);
  return n;
}

/**
 * Bytes of a message at and above which the process runs a full V8 collection once its work is
 * released (reclaimAfterWork). 4 MiB: rare in practice (a 1,000-result ORU is ~200 KB).
 */
export const RECLAIM_AFTER_BYTES = 4 * 1024 * 1024;

let gcFn: ((o?: { type: 'major'; execution: 'sync' }) => void) | null | undefined;

/** V8's collector (the same as `node --expose-gc`'s global gc), or null when the runtime refuses. */
function collector(): typeof gcFn {
  if (gcFn !== undefined) return gcFn;
  gcFn = null;
  try {
    const g = (globalThis as { gc?: typeof gcFn }).gc;
    if (typeof g === 'function') return (gcFn = g);
    setFlagsFromString('--expose-gc');
    const f = runInNewContext('gc') as unknown;
    if (typeof f === 'function') gcFn = f as NonNullable<typeof gcFn>;
  } catch {
    gcFn = null;
  }
  return gcFn;
}

/** Full collections run by reclaimAfterWork and their total pause (diagnostics, bench/memory-flood.ts). */
export const reclaimStats = { runs: 0, totalMs: 0, maxMs: 0 };

/**
 * After a large message (≥ RECLAIM_AFTER_BYTES) was answered: run one full V8 collection now (issue
 * 10 §7). The message's garbage (its MLLP frame and growth buffers, the result values copied back from
 * the parse thread, the store's JSON and row buffers) is otherwise collected only when V8 next decides
 * to, after several more large messages: 32 concurrent 8 MB messages peaked ~320 MiB RSS without it
 * (docs/BENCHMARKS.md). The heap is small at that moment (the large objects are dead), so the pause is
 * a few ms (reclaimStats). IOMT_GC_AFTER_LARGE=0 turns it off.
 */
export function reclaimAfterWork(bytes: number, env: NodeJS.ProcessEnv = process.env): boolean {
  if (bytes < RECLAIM_AFTER_BYTES || env.IOMT_GC_AFTER_LARGE === '0') return false;
  const gc = collector();
  if (!gc) return false;
  const t0 = performance.now();
  // a full mark-compact, synchronous; the options form pauses about half as long as plain gc() (max
  // ~25 against ~55 ms here, 32 × 8 MB) and frees the same (it does not clear WeakRefs)
  gc({ type: 'major', execution: 'sync' });
  const ms = performance.now() - t0;
  reclaimStats.runs++;
  reclaimStats.totalMs += ms;
  reclaimStats.maxMs = Math.max(reclaimStats.maxMs, ms);
  return true;
}
