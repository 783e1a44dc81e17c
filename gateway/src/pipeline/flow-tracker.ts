import type { GatewayStoreApi } from '../contracts/store';
import { componentLogger } from '../log/logger';
import { StoreError } from '../contracts/errors';
import { registry } from '../metrics/registry';

/** Committed messages with observations that no destination took (issue 9 §2); T/D held by processing id are not counted here. */
const undeliveredTotal = registry.counter('iomt_messages_undelivered_total', 'Committed messages with results that reached no destination (none wired, destination node missing, failed to start or failed the message), per device and reason; flagged no-destination in the store');

/**
 * Knows which committed messages the in-memory part of a Node-RED flow has finished with
 * (architecture §3). Every delivery of a message (by `_iomt.messageId`) to a node adds one; every
 * completion (`done()`) of a node with that message subtracts one. At zero the flow is finished
 * and the message is marked `routed` (or `flow-error` when a node failed it). Messages the flow
 * never finishes stay `committed` and are re-emitted at the next start; the outbox's unique key
 * (destination, key) drops the duplicates. A completion that failed with a StoreError (outbox could
 * not commit) leaves the message unfinished and schedules a re-emission.
 */
/** Why a finished message reached no destination (label `reason` of iomt_messages_undelivered_total). */
export type UndeliveredReason = 'no-destination' | 'destination-broken' | 'destination-error' | 'flow-error';

/**
 * Told about every finished message that no destination node took (issue 9 §2: a committed result
 * with nowhere to go is visible and counted). Returns true when the message really is undelivered
 * (the store confirms it has observations and no outbox row), so the tracker counts it per device.
 */
/** false: not undelivered (nothing recorded); true, or the pending write that records it: undelivered (counted). */
export type UndeliveredSink = (messageId: number, deviceId: string, reason: UndeliveredReason) => boolean | Promise<unknown>;

interface Pending {
  count: number;
  error?: boolean;
  retry?: boolean;
  since: number;
  deviceId: string;
  /** A destination node finished with it without error (queued it, or held it on purpose, e.g. by processing id). */
  outputOk?: boolean;
  /** A destination node failed it. */
  outputError?: boolean;
  /** It was sent to a destination node that has no input handler (the node failed to start). */
  outputBroken?: boolean;
}

export class FlowTracker {
  private pending = new Map<number, Pending>();
  private finished: Array<{ id: number; status: 'routed' | 'flow-error' }> = [];
  private undelivered: Array<{ id: number; deviceId: string; reason: UndeliveredReason }> = [];
  private watch: { outputTypes: Set<string>; sink: UndeliveredSink } | undefined;
  private readonly perDevice = new Map<string, { count: number; lastAt: string; reason: UndeliveredReason }>();
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

  /**
   * Watch for finished messages that no destination node took: `outputTypes` are the Node-RED types
   * of destination nodes (OUTPUTS[].nodeTypes). Without it nothing is reported (unit tests, tools).
   */
  watchUndelivered(outputTypes: Iterable<string>, sink: UndeliveredSink): void {
    this.watch = { outputTypes: new Set(outputTypes), sink };
  }

  /**
   * Node-RED is about to deliver the message to a node of `nodeType`. `accepts` false: that node has
   * no input handler (it failed to start), so it will never complete the message: not counted as in
   * flight (else the message would wait forever), and remembered when it is a destination node.
   */
  delivered(messageId: number, nodeType?: string, accepts = true): void {
    const p = this.pending.get(messageId);
    if (!p) return;
    if (!accepts) {
      if (nodeType !== undefined && this.watch?.outputTypes.has(nodeType)) p.outputBroken = true;
      return;
    }
    p.count++;
  }

  completed(messageId: number, error?: unknown, nodeType?: string): void {
    const p = this.pending.get(messageId);
    if (!p) return;
    if (error) {
      if (isRetryable(error)) p.retry = true;
      else p.error = true;
    }
    if (nodeType !== undefined && this.watch?.outputTypes.has(nodeType)) {
      if (error) p.outputError = true;
      else p.outputOk = true;
    }
    p.count--;
    if (p.count <= 0) this.finish(messageId, p);
  }

  /** After the device node's send: a message with no wires at all is finished at once. */
  sent(messageId: number): void {
    const p = this.pending.get(messageId);
    if (p && p.count <= 0) this.finish(messageId, p);
  }

  private finish(messageId: number, p: Pending): void {
    this.pending.delete(messageId);
    // transient failure (outbox could not commit): stay 'committed'; the device node's sweep re-emits it
    if (p.retry) return;
    this.finished.push({ id: messageId, status: p.error ? 'flow-error' : 'routed' });
    // No destination node took it (none wired, a wire to a deleted node, a destination that failed to
    // start or failed it). A message a destination held on purpose (processing id T/D) has outputOk.
    if (this.watch && !p.outputOk) {
      const reason: UndeliveredReason = p.outputBroken ? 'destination-broken' : p.outputError ? 'destination-error' : p.error ? 'flow-error' : 'no-destination';
      this.undelivered.push({ id: messageId, deviceId: p.deviceId, reason });
    }
    if (!this.flushTimer) this.flushTimer = setImmediate(() => this.flush());
  }

  /** Devices with committed results that reached no destination since this process started (the status page's warning). */
  undeliveredByDevice(): Array<{ deviceId: string; count: number; lastAt: string; reason: UndeliveredReason }> {
    return [...this.perDevice].map(([deviceId, v]) => ({ deviceId, ...v }));
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
    if (routed.length) this.track(this.store.markFinished(routed, 'routed').catch((e) => this.log.warn({ err: String(e) }, 'could not mark messages routed; they will be re-emitted')));
    if (failed.length) this.track(this.store.markFinished(failed, 'flow-error').catch((e) => this.log.warn({ err: String(e) }, 'could not mark messages flow-error')));
    const lost = this.undelivered;
    this.undelivered = [];
    for (const u of lost) {
      let confirmed: boolean | Promise<unknown> = true;
      try {
        confirmed = this.watch ? this.watch.sink(u.id, u.deviceId, u.reason) : false;
        if (typeof confirmed === 'object') this.track(confirmed);
      } catch (e) {
        // the store could not be asked: still shown (counted by the tracker), never silently dropped
        this.log.error({ err: String(e), messageId: u.id, deviceId: u.deviceId }, 'could not record an undelivered message');
      }
      if (!confirmed) continue;
      undeliveredTotal.inc({ device: u.deviceId, reason: u.reason });
      const d = this.perDevice.get(u.deviceId);
      this.perDevice.set(u.deviceId, { count: (d?.count ?? 0) + 1, lastAt: new Date().toISOString(), reason: u.reason });
    }
  }

  async drain(): Promise<void> {
    if (this.flushTimer) {
      clearImmediate(this.flushTimer);
      this.flush();
    }
    // the store writes started so far (finished marks, undelivered flags) have settled
    await Promise.all([...this.writes]);
  }

  private readonly writes = new Set<Promise<unknown>>();

  private track(p: Promise<unknown>): void {
    this.writes.add(p);
    void p.finally(() => this.writes.delete(p));
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
