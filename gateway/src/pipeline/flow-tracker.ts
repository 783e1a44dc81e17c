import type { GatewayStoreApi } from '../contracts/store';
import { componentLogger } from '../log/logger';
import { StoreError } from '../contracts/errors';

/**
 * Knows which committed messages the in-memory part of a Node-RED flow has finished with
 * (architecture §3). Every delivery of a message (by `_iomt.messageId`) to a node adds one; every
 * completion (`done()`) of a node with that message subtracts one. At zero the flow is finished
 * and the message is marked `routed` (or `flow-error` when a node failed it). Messages the flow
 * never finishes stay `committed` and are re-emitted at the next start; the outbox's unique key
 * (destination, key) drops the duplicates. A completion that failed with a StoreError (outbox could
 * not commit) leaves the message unfinished and schedules a re-emission.
 */
export class FlowTracker {
  private pending = new Map<number, { count: number; error?: boolean; retry?: boolean; since: number; deviceId: string }>();
  private finished: Array<{ id: number; status: 'routed' | 'flow-error' }> = [];
  private flushTimer: NodeJS.Immediate | undefined;
  private readonly log = componentLogger('flow-tracker');

  constructor(private readonly store: GatewayStoreApi, private readonly maxTracked = 200_000) {}

  /** A device node is about to send this message into the flow. */
  begin(messageId: number, deviceId: string): void {
    if (this.pending.size >= this.maxTracked) this.evictOldest();
    this.pending.set(messageId, { count: 0, since: Date.now(), deviceId });
  }

  isTracked(messageId: number): boolean {
    return this.pending.has(messageId);
  }

  delivered(messageId: number): void {
    const p = this.pending.get(messageId);
    if (p) p.count++;
  }

  completed(messageId: number, error?: unknown): void {
    const p = this.pending.get(messageId);
    if (!p) return;
    if (error) {
      if (isRetryable(error)) p.retry = true;
      else p.error = true;
    }
    p.count--;
    if (p.count <= 0) this.finish(messageId, p);
  }

  /** After the device node's send: a message with no wires at all is finished at once. */
  sent(messageId: number): void {
    const p = this.pending.get(messageId);
    if (p && p.count <= 0) this.finish(messageId, p);
  }

  private finish(messageId: number, p: { error?: boolean; retry?: boolean; deviceId: string }): void {
    this.pending.delete(messageId);
    // transient failure (outbox could not commit): stay 'committed'; the device node's sweep re-emits it
    if (p.retry) return;
    this.finished.push({ id: messageId, status: p.error ? 'flow-error' : 'routed' });
    if (!this.flushTimer) this.flushTimer = setImmediate(() => this.flush());
  }

  private evictOldest(): void {
    const first = this.pending.keys().next();
    if (!first.done) this.pending.delete(first.value);
  }

  private flush(): void {
    this.flushTimer = undefined;
    const batch = this.finished;
    this.finished = [];
    const routed = batch.filter((b) => b.status === 'routed').map((b) => b.id);
    const failed = batch.filter((b) => b.status === 'flow-error').map((b) => b.id);
    // Not awaited by anyone: if this write is lost (crash), the messages are re-emitted and de-duplicated.
    if (routed.length) this.store.markFinished(routed, 'routed').catch((e) => this.log.warn({ err: String(e) }, 'could not mark messages routed; they will be re-emitted'));
    if (failed.length) this.store.markFinished(failed, 'flow-error').catch((e) => this.log.warn({ err: String(e) }, 'could not mark messages flow-error'));
  }

  async drain(): Promise<void> {
    if (this.flushTimer) {
      clearImmediate(this.flushTimer);
      this.flush();
    }
  }
}

function isRetryable(err: unknown): boolean {
  let e: unknown = err;
  for (let i = 0; i < 5 && e; i++) {
    if (e instanceof StoreError) return true;
    if (typeof e === 'object' && e && 'code' in e && typeof (e as { code: unknown }).code === 'string' && String((e as { code: string }).code).startsWith('GW_ERR_STORE')) return true;
    e = (e as { cause?: unknown }).cause;
  }
  return false;
}
