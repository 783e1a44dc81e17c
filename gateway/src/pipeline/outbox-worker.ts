import type { GatewayStoreApi } from '../contracts/store';
import type { DeliveryOutcome, Output } from '../contracts/output';
import { componentLogger, StateChangeLog } from '../log/logger';

export interface OutboxWorkerOptions {
  batchSize: number; // entries leased per round (default 16)
  leaseMs: number; // lease length (default 120000)
  idlePollMs: number; // re-check the queue at least this often (default 5000)
  unavailableBackoffMs: { base: number; max: number }; // destination-level backoff (default 1000..30000)
}

/**
 * Lease → deliver → settle loop for one destination (architecture §3 step 5).
 * A destination that cannot be reached (connection refused, lost) does not use up the entries'
 * attempts: the worker releases the lease and backs the whole destination off, so a HIS outage of
 * hours does not dead-letter the queue; per-entry attempts count only real answers or timeouts.
 */
export class OutboxWorker {
  private readonly opts: OutboxWorkerOptions;
  private readonly log;
  private readonly states = new StateChangeLog();
  private abort = new AbortController();
  private wakeResolve: (() => void) | undefined;
  private loop: Promise<void> | undefined;
  private unavailableStreak = 0;
  state: 'idle' | 'delivering' | 'backoff' | 'stopped' = 'idle';
  lastError: string | undefined;

  constructor(private readonly store: GatewayStoreApi, readonly output: Output, opts: Partial<OutboxWorkerOptions> = {}) {
    this.opts = { batchSize: 16, leaseMs: 120_000, idlePollMs: 5000, unavailableBackoffMs: { base: 1000, max: 30_000 }, ...opts };
    this.log = componentLogger('outbox', { destination: output.destination });
  }

  start(): void {
    if (this.loop) return;
    this.abort = new AbortController();
    this.loop = this.run(this.abort.signal).catch((e) => this.log.error({ err: String(e) }, 'outbox worker stopped unexpectedly'));
  }

  /** New entries were appended: deliver now. */
  wake(): void {
    this.wakeResolve?.();
  }

  async stop(): Promise<void> {
    this.abort.abort();
    this.wake();
    await this.loop;
    this.loop = undefined;
    this.state = 'stopped';
    await this.output.close().catch(() => undefined);
  }

  private sleep(ms: number, signal: AbortSignal): Promise<void> {
    return new Promise((resolve) => {
      const t = setTimeout(done, ms);
      function done() {
        clearTimeout(t);
        signal.removeEventListener('abort', done);
        resolve();
      }
      this.wakeResolve = done;
      signal.addEventListener('abort', done, { once: true });
    });
  }

  private async run(signal: AbortSignal): Promise<void> {
    const dest = this.output.destination;
    while (!signal.aborted) {
      const batch = this.store.lease(dest, this.opts.batchSize, this.opts.leaseMs);
      if (!batch.length) {
        this.state = 'idle';
        const due = this.store.nextDueInMs(dest);
        await this.sleep(due === null ? this.opts.idlePollMs : Math.min(Math.max(due, 5), this.opts.idlePollMs), signal);
        continue;
      }
      this.state = 'delivering';
      let outcomes: DeliveryOutcome[];
      try {
        outcomes = await this.output.write(batch, signal);
      } catch (e) {
        outcomes = batch.map((b) => ({ id: b.id, outcome: 'unavailable' as const, error: String((e as Error)?.message ?? e) }));
      }
      const unavailable = outcomes.filter((o) => o.outcome === 'unavailable');
      const settled = outcomes.filter((o) => o.outcome !== 'unavailable');
      // entries the output did not answer for count as not attempted
      const answered = new Set(outcomes.map((o) => o.id));
      const notAttempted = batch.filter((b) => !answered.has(b.id)).map((b) => b.id);
      if (settled.length) await this.store.settle(dest, settled).catch((e) => this.log.error({ err: String(e) }, 'could not record delivery outcomes'));
      const release = [...unavailable.map((u) => u.id), ...notAttempted];
      if (release.length) this.store.release(dest, release);
      if (unavailable.length && !settled.some((s) => s.outcome === 'delivered')) {
        this.unavailableStreak++;
        this.lastError = unavailable[0].outcome === 'unavailable' ? unavailable[0].error : undefined;
        if (this.states.changed('conn', 'down')) this.log.warn({ reason: this.lastError }, 'destination unavailable; backing off');
        const { base, max } = this.opts.unavailableBackoffMs;
        const delay = Math.min(max, base * 2 ** Math.min(this.unavailableStreak - 1, 16));
        this.state = 'backoff';
        await this.sleep(delay * (0.8 + Math.random() * 0.4), signal);
      } else {
        if (this.unavailableStreak && this.states.changed('conn', 'up')) this.log.info('destination reachable again');
        else this.states.changed('conn', 'up');
        this.unavailableStreak = 0;
        this.lastError = undefined;
      }
    }
  }
}
