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
 * Counts payload bytes, not the JavaScript heap the parsers then use; with the default 64 MiB the
 * gateway stays well inside a 1 GB Raspberry Pi.
 */
import { componentLogger } from '../log/logger';
import { metrics } from '../metrics/registry';

export const DEFAULT_INFLIGHT_MAX_BYTES = 64 * 1024 * 1024;
export const DEFAULT_INFLIGHT_HEADROOM_BYTES = 8 * 1024 * 1024;

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
  private readonly held = new Map<BudgetHolder, number>();
  private lender: BudgetHolder | undefined; // holder currently using the headroom
  private waiters: Array<{ holder: BudgetHolder; cb: () => void }> = [];

  constructor(opts: MemoryBudgetOptions) {
    if (!(opts.maxBytes > 0)) throw new RangeError('memory budget maxBytes must be > 0');
    this.maxBytes = opts.maxBytes;
    this.headroomBytes = Math.min(opts.headroomBytes ?? DEFAULT_INFLIGHT_HEADROOM_BYTES, opts.maxBytes);
  }

  /** Bytes reserved now. */
  get used(): number {
    return this.usedBytes;
  }

  /** Highest `used` seen (tests, diagnostics). */
  get peakUsed(): number {
    return this.peak;
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
    let ok = this.usedBytes + n <= regular;
    if (!ok && (this.lender === undefined || this.lender === holder)) {
      // the headroom: one holder at a time, so that one can always finish its message (a message
      // larger than the headroom overshoots by its excess rather than wait for ever)
      ok = true;
      this.lender = holder;
    }
    if (!ok) return false;
    this.usedBytes += n;
    if (this.usedBytes > this.peak) this.peak = this.usedBytes;
    this.held.set(holder, this.heldBy(holder) + n);
    return true;
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
 * The process-wide budget: IOMT_INFLIGHT_MAX_BYTES (bytes, default 64 MiB). Throws RangeError on a
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

/** IOMT_INFLIGHT_MAX_BYTES in bytes (default 64 MiB, at least 1 MiB). Throws RangeError naming the bad value. */
export function inflightBudgetBytes(env: NodeJS.ProcessEnv = process.env): number {
  const raw = (env.IOMT_INFLIGHT_MAX_BYTES ?? '').trim();
  if (raw === '') return DEFAULT_INFLIGHT_MAX_BYTES;
  const n = /^\d+$/.test(raw) ? Number(raw) : NaN;
  if (!(Number.isSafeInteger(n) && n >= 1024 * 1024)) throw new RangeError(`IOMT_INFLIGHT_MAX_BYTES '${raw}' is not a number of bytes ≥ 1048576`);
  return n;
}
