import type { Database, Statement, Transaction } from 'better-sqlite3';
import { GatewayError, StoreError, StoreFullError } from '../contracts/errors';

export interface WriteOp<T> {
  /** Runs inside the batch transaction, in its own SAVEPOINT. Must only touch the database. */
  run: () => T;
  resolve: (v: T) => void;
  reject: (e: unknown) => void;
  enqueuedAt: bigint;
  /** record submit→commit latency for this op */
  timed: boolean;
  /** false: the op may commit without its own fsync (see `WriteQueue`, deferred durability) */
  durable: boolean;
}

export interface WriteQueueStats {
  transactions: number; // committed group transactions
  /** committed without their own fsync (every op in them was deferrable) */
  deferredTransactions?: number;
  /** batches run a second time with one savepoint per op, because an op failed */
  slowBatches?: number;
  failedTransactions: number; // batches whose BEGIN/COMMIT failed (every op rejected)
  ops: number; // ops that committed
  failedOps: number; // ops rejected (their own error or their batch's)
  queued: number; // waiting for the next flush
}

export interface WriteQueueHooks {
  /** after each committed transaction: number of ops in it */
  onBatch?: (size: number) => void;
  /** after each committed transaction, for timed ops: seconds from enqueue to commit */
  onLatency?: (seconds: number) => void;
  /** a whole batch failed */
  onBatchError?: (err: StoreError, size: number) => void;
}

/** SQLITE_FULL (disk full or max_page_count reached) → StoreFullError; other SQLite errors → StoreError. */
export function toStoreError(e: unknown, what = 'store write failed'): GatewayError {
  if (e instanceof GatewayError) return e;
  const code = typeof e === 'object' && e && 'code' in e ? String((e as { code: unknown }).code) : '';
  const text = e instanceof Error ? e.message : String(e);
  if (code.startsWith('SQLITE_FULL')) return new StoreFullError(`${what}: store is full (${code})`, { cause: e });
  return new StoreError(`${what}: ${code || text}`, { cause: e });
}

/**
 * Group commit (architecture §3 step 4). Writes are queued; one `setImmediate` flush runs up to
 * `maxBatch` of them as ONE transaction. The batch first runs without savepoints (a SAVEPOINT and
 * RELEASE per op cost about as much as a message's own inserts: ~30 µs per op here); if an op
 * throws, that transaction is rolled back and the batch runs again with each op in its own
 * SAVEPOINT, so a failing op only rolls back itself (ops only touch the database, so running one
 * twice is safe). Promises settle only after COMMIT returned (synchronous=FULL: fsync'd). If BEGIN or COMMIT
 * fails, every op of the batch rejects with a StoreError. If one op made SQLite roll the whole
 * transaction back (SQLITE_FULL does; IOERR may), that op rejects and the rest are re-run at once.
 * Either way the queue carries on with the next batch.
 *
 * Deferred durability (`enqueue(run, { durable: false })`): a batch made only of such ops commits
 * with `synchronous=NORMAL` (SQLite WAL: the COMMIT writes the WAL frames but does not fsync). They
 * survive a process crash (kill -9: the frames are in the OS page cache) at once, and a power loss
 * once the next durable commit's fsync of the WAL (which covers every earlier frame) has returned.
 * WAL recovery keeps a prefix of the frames (each frame's checksum chains over the previous ones),
 * so a deferred write is never kept while an earlier one is lost. The caller must only defer writes
 * whose loss the rest of the design repairs (architecture §3: flow bookkeeping, outbox appends and
 * delivery outcomes — an unfinished message is re-emitted and the outbox key drops the duplicate).
 * A batch with at least one durable op commits with synchronous=FULL.
 */
export class WriteQueue {
  private queue: Array<WriteOp<unknown>> = [];
  private scheduled: NodeJS.Immediate | undefined;
  private closed = false;
  private drainWaiters: Array<() => void> = [];
  private readonly counters = { transactions: 0, deferredTransactions: 0, slowBatches: 0, failedTransactions: 0, ops: 0, failedOps: 0 };
  /** current `PRAGMA synchronous` of the connection: 2 FULL, 1 NORMAL */
  private syncMode = 2;
  private readonly sp: { begin: Statement; release: Statement; rollbackTo: Statement };
  private readonly runBatch: Transaction<(batch: Array<WriteOp<unknown>>) => Array<{ ok: true; value: unknown } | { ok: false; error: unknown }>>;
  /** the batch without savepoints: throws OpFailed when an op throws (the transaction is rolled back) */
  private readonly runBatchFast: Transaction<(batch: Array<WriteOp<unknown>>) => Array<{ ok: true; value: unknown }>>;

  constructor(private readonly db: Database, private readonly maxBatch = 512, private readonly hooks: WriteQueueHooks = {}) {
    if (!Number.isInteger(maxBatch) || maxBatch < 1) throw new RangeError('maxBatch must be an integer >= 1');
    this.sp = {
      begin: db.prepare('SAVEPOINT gw_op'),
      release: db.prepare('RELEASE gw_op'),
      rollbackTo: db.prepare('ROLLBACK TO gw_op'),
    };
    this.runBatch = db.transaction((batch: Array<WriteOp<unknown>>) => {
      const results: Array<{ ok: true; value: unknown } | { ok: false; error: unknown }> = [];
      batch.forEach((op, index) => {
        this.sp.begin.run();
        try {
          const value = op.run();
          this.sp.release.run();
          results.push({ ok: true, value });
        } catch (error) {
          if (!db.inTransaction) {
            // SQLite rolled the whole transaction back (it does on SQLITE_FULL, may on IOERR/NOMEM).
            throw new BatchAborted(error, index);
          }
          this.sp.rollbackTo.run();
          this.sp.release.run();
          results.push({ ok: false, error });
        }
      });
      return results;
    });
    this.runBatchFast = db.transaction((batch: Array<WriteOp<unknown>>) => {
      const results: Array<{ ok: true; value: unknown }> = new Array(batch.length);
      for (let i = 0; i < batch.length; i++) {
        try {
          results[i] = { ok: true, value: batch[i].run() };
        } catch (error) {
          throw new OpFailed(error);
        }
      }
      return results;
    });
  }

  enqueue<T>(run: () => T, opts: { timed?: boolean; durable?: boolean } = {}): Promise<T> {
    if (this.closed) return Promise.reject(new StoreError('store is closed'));
    return new Promise<T>((resolve, reject) => {
      this.queue.push({ run, resolve: resolve as (v: unknown) => void, reject, enqueuedAt: process.hrtime.bigint(), timed: !!opts.timed, durable: opts.durable !== false });
      this.schedule();
    });
  }

  stats(): WriteQueueStats {
    return { ...this.counters, queued: this.queue.length };
  }

  get isClosed(): boolean {
    return this.closed;
  }

  /** Stop accepting writes and flush what is queued (synchronously). */
  closeAndDrain(): void {
    this.closed = true;
    if (this.scheduled) clearImmediate(this.scheduled);
    this.scheduled = undefined;
    while (this.queue.length) this.flushOnce();
    this.notifyDrained();
  }

  /** Resolves when the queue is empty (everything enqueued so far has settled). */
  drained(): Promise<void> {
    if (!this.queue.length && !this.scheduled) return Promise.resolve();
    return new Promise((r) => this.drainWaiters.push(r));
  }

  private schedule(): void {
    if (this.scheduled) return;
    this.scheduled = setImmediate(() => {
      this.scheduled = undefined;
      this.flushOnce();
      if (this.queue.length) this.schedule();
      else this.notifyDrained();
    });
  }

  private notifyDrained(): void {
    const w = this.drainWaiters;
    this.drainWaiters = [];
    for (const r of w) r();
  }

  private flushOnce(): void {
    let batch = this.queue.splice(0, this.maxBatch);
    // An op that made SQLite roll the whole transaction back is rejected alone; the others (ops are
    // database-only, so re-running them is safe) are retried at once in a fresh transaction.
    while (batch.length) {
      let results: Array<{ ok: true; value: unknown } | { ok: false; error: unknown }>;
      try {
        this.setSyncMode(batch.some((op) => op.durable) ? 2 : 1);
        try {
          // BEGIN IMMEDIATE: take the write lock first (waiting busy_timeout for another connection that
          // holds it). A deferred BEGIN reads (dedupe lookups) and then upgrades to write; if another
          // connection of this process (order cache, no-destination flag) committed meanwhile, SQLite
          // answers SQLITE_BUSY at once, without the busy handler (sqlite.org/lang_transaction.html,
          // "BEGIN DEFERRED … SQLITE_BUSY"), and the device got AE "store unavailable"
          results = this.runBatchFast.immediate(batch);
        } catch (e) {
          if (!(e instanceof OpFailed)) throw e;
          this.counters.slowBatches++;
          results = this.runBatch.immediate(batch); // an op failed: run again, one savepoint per op
        }
      } catch (e) {
        if (e instanceof BatchAborted && e.index < batch.length) {
          const bad = batch[e.index];
          this.counters.failedTransactions++;
          this.counters.failedOps++;
          bad.reject(toStoreError(e.inner));
          batch = [...batch.slice(0, e.index), ...batch.slice(e.index + 1)];
          continue;
        }
        const err = toStoreError(e, 'commit failed');
        const storeErr = err instanceof StoreError ? err : new StoreError(err.message, { cause: err });
        this.counters.failedTransactions++;
        this.counters.failedOps += batch.length;
        this.hooks.onBatchError?.(storeErr, batch.length);
        for (const op of batch) op.reject(storeErr);
        return;
      }
      this.settleBatch(batch, results);
      return;
    }
  }

  /** Outside any transaction (PRAGMA synchronous cannot change inside one). */
  private setSyncMode(mode: 1 | 2): void {
    if (this.syncMode === mode) return;
    this.db.pragma(`synchronous = ${mode === 2 ? 'FULL' : 'NORMAL'}`);
    this.syncMode = mode;
  }

  private settleBatch(batch: Array<WriteOp<unknown>>, results: Array<{ ok: true; value: unknown } | { ok: false; error: unknown }>): void {
    const now = process.hrtime.bigint();
    this.counters.transactions++;
    if (this.syncMode === 1) this.counters.deferredTransactions++;
    this.hooks.onBatch?.(batch.length);
    batch.forEach((op, i) => {
      const r = results[i];
      if (r.ok) {
        this.counters.ops++;
        if (op.timed) this.hooks.onLatency?.(Number(now - op.enqueuedAt) / 1e9);
        op.resolve(r.value);
      } else {
        this.counters.failedOps++;
        op.reject(toStoreError(r.error));
      }
    });
  }
}

class OpFailed extends Error {
  constructor(readonly inner: unknown) {
    super('an op of the batch failed');
  }
}

class BatchAborted extends Error {
  constructor(readonly inner: unknown, readonly index: number) {
    super('transaction rolled back by SQLite');
  }
}
