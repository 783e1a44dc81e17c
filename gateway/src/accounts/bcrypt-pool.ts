import { Worker } from 'node:worker_threads';
import { availableParallelism } from 'node:os';

/**
 * bcrypt off the main thread (issue 10 §5). bcryptjs's async API still computes on the main
 * thread in slices of up to 100 ms: five parallel wrong logins held the event loop for ~0.5 s and
 * delayed MLLP ACKs. Here each compare/hash runs in a small pool of worker threads (bcryptjs
 * inside each, same hashes: `$2b$`), so the event loop only passes messages.
 *
 * Pool: `IOMT_BCRYPT_WORKERS` threads (default 1 on a 1–2 core box, else 2), started on first use,
 * unref'd (they never keep the process alive), restarted if one dies. Jobs queue in order; the
 * queue is bounded (256): beyond it `compare` answers false at once (a flood of logins is
 * refused, never queued without end) and `hash` rejects.
 */
const WORKER_SOURCE = `
const { parentPort } = require('node:worker_threads');
const bcrypt = require(${JSON.stringify(require.resolve('bcryptjs'))});
parentPort.on('message', (m) => {
  try {
    const r = m.op === 'compare' ? bcrypt.compareSync(m.a, m.b) : bcrypt.hashSync(m.a, m.b);
    parentPort.postMessage({ id: m.id, r });
  } catch (e) {
    parentPort.postMessage({ id: m.id, e: String(e && e.message || e) });
  }
});
`;

interface Job {
  id: number;
  op: 'compare' | 'hash';
  a: string;
  b: string | number;
  resolve(v: unknown): void;
  reject(e: Error): void;
}

const MAX_QUEUE = 256;

class BcryptPool {
  private readonly idle: Worker[] = [];
  private readonly busy = new Map<Worker, Job>();
  private readonly queue: Job[] = [];
  private started = 0;
  private nextId = 1;

  constructor(private readonly size: number) {}

  private spawn(): Worker {
    const w = new Worker(WORKER_SOURCE, { eval: true });
    w.unref();
    w.on('message', (m: { id: number; r?: unknown; e?: string }) => {
      const job = this.busy.get(w);
      this.busy.delete(w);
      if (job && job.id === m.id) {
        if (m.e !== undefined) job.reject(new Error(m.e));
        else job.resolve(m.r);
      }
      this.idle.push(w);
      this.pump();
    });
    const dead = (err: unknown) => {
      const job = this.busy.get(w);
      this.busy.delete(w);
      const i = this.idle.indexOf(w);
      if (i >= 0) this.idle.splice(i, 1);
      this.started--;
      job?.reject(err instanceof Error ? err : new Error('bcrypt worker exited'));
      this.pump();
    };
    w.once('error', dead);
    w.once('exit', (code) => {
      if (this.busy.has(w) || this.idle.includes(w)) dead(new Error(`bcrypt worker exited (${code})`));
    });
    this.started++;
    return w;
  }

  private pump(): void {
    while (this.queue.length) {
      const w = this.idle.pop() ?? (this.started < this.size ? this.spawn() : undefined);
      if (!w) return;
      const job = this.queue.shift()!;
      this.busy.set(w, job);
      w.postMessage({ id: job.id, op: job.op, a: job.a, b: job.b });
    }
  }

  run<T>(op: Job['op'], a: string, b: string | number): Promise<T> {
    return new Promise<T>((resolve, reject) => {
      if (this.queue.length >= MAX_QUEUE) return reject(new Error('too many password checks queued'));
      this.queue.push({ id: this.nextId++, op, a, b, resolve: resolve as (v: unknown) => void, reject });
      this.pump();
    });
  }

  async close(): Promise<void> {
    const all = [...this.idle, ...this.busy.keys()];
    this.idle.length = 0;
    for (const j of this.busy.values()) j.reject(new Error('bcrypt pool closed'));
    this.busy.clear();
    this.started = 0;
    await Promise.all(all.map((w) => w.terminate()));
  }
}

function defaultSize(): number {
  const env = Number(process.env.IOMT_BCRYPT_WORKERS);
  if (Number.isInteger(env) && env >= 1 && env <= 16) return env;
  return availableParallelism() <= 2 ? 1 : 2;
}

let pool: BcryptPool | undefined;
const shared = () => (pool ??= new BcryptPool(defaultSize()));

/** bcrypt compare in a worker thread: true when `password` matches `hash`; false on a malformed hash or a full queue. */
export function bcryptCompare(password: string, hash: string): Promise<boolean> {
  return shared()
    .run<boolean>('compare', password, hash)
    .catch(() => false);
}

/** bcrypt hash (`$2b$<rounds>$…`) in a worker thread. Rejects on a full queue. */
export function bcryptHash(password: string, rounds: number): Promise<string> {
  return shared().run<string>('hash', password, rounds);
}

/** Stop the pool's threads (tests; the threads are unref'd and never hold the process open). */
export async function closeBcryptPool(): Promise<void> {
  const p = pool;
  pool = undefined;
  await p?.close();
}
