import { existsSync } from 'node:fs';
import { basename, dirname, extname, join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { StoreError, StoreFullError } from '../contracts/errors';
import type { WriteQueueStats } from './write-queue';
import type { SerializedError, WorkerMessage, WriteCommand, WriterInit } from './writer-protocol';

/** At most this many commands wait in a hold (`send(…, holdMs)`); the next one posts them all. */
const MAX_HELD = 256;

type Cmd = WriteCommand extends infer C ? (C extends { id: number } ? Omit<C, 'id'> : never) : never;

interface Pending {
  resolve: (v: unknown) => void;
  reject: (e: unknown) => void;
}

export interface WriterClientHooks {
  onBatch?: (size: number) => void;
  onLog?: (level: 'error' | 'warn' | 'info', obj: Record<string, unknown>, msg: string) => void;
  /** the worker died (crash, fatal open error, terminated) */
  onCrash?: (err: StoreError) => void;
}

/**
 * The writer worker's entry next to this file: `.js` in dist/, `.ts` under vitest/tsx. For `.ts` the
 * worker gets tsx's CommonJS require hook (`--require tsx/cjs`): on Node 20, `--import tsx` in a
 * worker's execArgv does not apply to the worker's own entry file ("Unknown file extension .ts").
 */
export function writerEntry(): { file: string; execArgv?: string[] } {
  const ext = extname(__filename);
  const file = join(dirname(__filename), `store-writer-worker${ext}`);
  if (ext !== '.ts') return { file };
  let hook: string;
  try {
    hook = require.resolve('tsx/cjs'); // absolute: independent of the working directory
  } catch {
    throw new StoreError('store writer: running from .ts sources needs the tsx devDependency');
  }
  return { file, execArgv: ['--require', hook] };
}

export function deserializeError(e: SerializedError): StoreError {
  const cause = e.sqliteCode ? Object.assign(new Error(e.message), { code: e.sqliteCode }) : undefined;
  return e.full ? new StoreFullError(e.message, { cause }) : new StoreError(e.message, { cause });
}

/**
 * Main-thread side of the writer worker: posts commands (all those issued in one synchronous run go
 * in one message), keeps a promise per command, settles it from the worker's reply (sent after the
 * COMMIT that holds the command returned). If the worker dies, every pending and later command
 * rejects with StoreError.
 */
export class WriterClient {
  private readonly worker: Worker;
  private readonly pending = new Map<number, Pending>();
  private nextId = 1;
  private outgoing: WriteCommand[] = [];
  private transfers: ArrayBuffer[] = [];
  private postScheduled = false;
  private dead: StoreError | undefined;
  private closing: Promise<void> | undefined;
  private counters: Omit<WriteQueueStats, 'queued'> = { transactions: 0, deferredTransactions: 0, slowBatches: 0, failedTransactions: 0, ops: 0, failedOps: 0 };
  private readonly exited: Promise<void>;

  constructor(init: WriterInit, private readonly hooks: WriterClientHooks = {}) {
    const entry = writerEntry();
    if (!existsSync(entry.file)) throw new StoreError(`store writer not found: ${basename(entry.file)} next to ${__filename}`);
    this.worker = new Worker(entry.file, { workerData: init, ...(entry.execArgv ? { execArgv: entry.execArgv } : {}), name: 'store-writer' });
    this.worker.unref(); // ref'd only while commands are pending: an idle store does not keep the process alive
    this.worker.on('message', (m: WorkerMessage) => this.onMessage(m));
    this.worker.on('error', (e) => this.fail(new StoreError(`store writer crashed: ${e instanceof Error ? e.message : String(e)}`, { cause: e })));
    this.worker.on('messageerror', (e) => this.fail(new StoreError(`store writer message could not be decoded: ${String(e)}`, { cause: e })));
    this.exited = new Promise((resolve) =>
      this.worker.once('exit', (code) => {
        this.fail(new StoreError(`store writer exited (code ${code})`));
        resolve();
      }),
    );
  }

  /**
   * Post a command; resolves with the worker's answer after its transaction committed. `transfer`:
   * ArrayBuffers owned by the command (moved to the worker, not copied); never a caller's Buffer.
   * `holdMs` (group commit delay, like PostgreSQL's commit_delay): the command may wait up to this many ms
   * on this thread for others, so that all of them reach the worker in one message and commit in one
   * transaction (one fsync). A command with `holdMs` 0 is posted at once and takes every held one with it:
   * holding never delays a command that did not ask for it. At most `MAX_HELD` commands are held. Nothing
   * is held while an earlier post is still unanswered (the writer is busy: the command joins its next
   * transaction anyway), so the hold only applies when the writer would otherwise commit it alone.
   */
  send<T>(cmd: Cmd, transfer?: ArrayBuffer[], holdMs = 0): Promise<T> {
    if (this.closing) return Promise.reject(new StoreError('store is closed'));
    if (this.dead) return Promise.reject(this.dead);
    if (transfer) for (const b of transfer) this.transfers.push(b);
    return this.post<T>(cmd, holdMs);
  }

  stats(): WriteQueueStats {
    return { ...this.counters, queued: this.pending.size };
  }

  get failed(): StoreError | undefined {
    return this.dead;
  }

  /** Drain (everything sent before is committed or rejected), close the writer's connection, stop the worker. Safe twice. */
  close(): Promise<void> {
    if (!this.closing) {
      this.closing = (async () => {
        if (!this.dead) {
          try {
            await this.post({ t: 'close' });
          } catch {
            /* crashed meanwhile: pending ops were rejected */
          }
        }
        this.stopping = true;
        await this.worker.terminate();
        await this.exited;
      })();
    }
    return this.closing;
  }

  /** test only: make the worker throw an uncaught error (commands already in the worker's queue are not answered). */
  crashForTest(): void {
    this.outgoing.push({ t: 'crash' });
    this.schedulePost();
  }

  private stopping = false;

  private post<T>(cmd: Cmd, holdMs = 0): Promise<T> {
    const id = this.nextId++;
    return new Promise<T>((resolve, reject) => {
      if (this.pending.size === 0) this.worker.ref();
      this.pending.set(id, { resolve: resolve as (v: unknown) => void, reject });
      // posted and not answered yet: the writer is busy, so this command will wait in its queue and share
      // the next transaction anyway; holding it as well would only add latency (and cut a single sender's
      // throughput, since each device has one message in flight)
      const writerBusy = this.pending.size - 1 > this.outgoing.length;
      this.outgoing.push({ ...cmd, id } as WriteCommand);
      if (holdMs > 0 && !writerBusy && this.outgoing.length < MAX_HELD) this.holdPost(holdMs);
      else this.schedulePost();
    });
  }

  private holdTimer: NodeJS.Timeout | undefined;
  private holdUntil = 0;

  /** Post within `ms` unless something posts sooner (a command without hold, or MAX_HELD reached). */
  private holdPost(ms: number): void {
    if (this.postScheduled) return; // a post is already due in this synchronous run: this command goes with it
    const until = performance.now() + ms;
    if (this.holdTimer && this.holdUntil <= until) return;
    if (this.holdTimer) clearTimeout(this.holdTimer);
    this.holdUntil = until;
    this.holdTimer = setTimeout(() => {
      this.holdTimer = undefined;
      this.schedulePost();
    }, ms);
  }

  private schedulePost(): void {
    if (this.postScheduled) return;
    this.postScheduled = true;
    // everything issued in this synchronous run goes in one message (one wake-up of the worker)
    queueMicrotask(() => {
      this.postScheduled = false;
      if (this.holdTimer) clearTimeout(this.holdTimer);
      this.holdTimer = undefined;
      const batch = this.outgoing;
      const transfer = this.transfers;
      this.outgoing = [];
      this.transfers = [];
      if (!batch.length || this.dead) return;
      try {
        this.worker.postMessage(batch, transfer);
      } catch (e) {
        for (const c of batch) if ('id' in c) this.settle(c.id, false, new StoreError(`cannot post to store writer: ${String(e)}`, { cause: e }));
      }
    });
  }

  private onMessage(m: WorkerMessage): void {
    switch (m.t) {
      case 'done':
        this.counters = m.stats;
        for (const n of m.batches) this.hooks.onBatch?.(n);
        for (const r of m.replies) {
          if (r.ok) this.settle(r.id, true, r.v);
          else this.settle(r.id, false, deserializeError(r.e));
        }
        return;
      case 'log':
        this.hooks.onLog?.(m.level, m.obj, m.msg);
        return;
      case 'fatal':
        this.fail(deserializeError(m.e));
        return;
    }
  }

  private settle(id: number, ok: boolean, v: unknown): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    if (this.pending.size === 0) this.worker.unref();
    if (ok) p.resolve(v);
    else p.reject(v);
  }

  private fail(err: StoreError): void {
    if (this.dead) return;
    this.dead = err;
    if (this.holdTimer) clearTimeout(this.holdTimer);
    this.holdTimer = undefined;
    const expected = this.stopping && this.pending.size === 0;
    if (!expected) this.hooks.onCrash?.(err);
    const all = [...this.pending.values()];
    this.pending.clear();
    this.outgoing = [];
    this.transfers = [];
    for (const p of all) p.reject(err);
  }
}
