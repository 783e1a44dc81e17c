/**
 * The common part of the vitals destination nodes (iomt-pcd-out, iomt-mqtt-upstream): one flow
 * message → select what this destination takes (PCD-01: vitals; ACM: alarms; upstream: all) →
 * per-destination downsampling (alarms never) → one outbox entry (key = inbound message uid) →
 * done() only after the append committed. A worker delivers the outbox (retries, dead letters, replay).
 * Plain module so the node files stay short (conventions §11).
 */
import type { Observation } from '../contracts/observation';
import type { Output } from '../contracts/output';
import { getRuntime } from '../runtime';
import { metrics } from '../metrics/registry';
import { queueForDelivery, reportStartFailure, watchDestination, type RedNode } from '../node-red/device-node';
import { Downsampler } from './downsample';

export interface VitalsDestinationOptions {
  node: RedNode;
  output: Output & { readonly connected: boolean };
  /** What this destination takes of a message (default: everything). */
  select?: (o: Observation[]) => Observation[];
  /** One value per parameter per this many seconds (0 = everything). */
  downsampleS: number;
  processingIds: Set<string>;
  strictOrder: boolean;
  maxAttempts: number;
  maxAgeHours: number;
  reconnectMaxS: number;
  driverName: string;
}

/** Register the destination and wire the node's input/close. Returns false when it could not start (reported on the node). */
export function startVitalsDestination(o: VitalsDestinationOptions): boolean {
  const { node, output } = o;
  const rt = getRuntime();
  const destination = output.destination;
  const sampler = new Downsampler(destination, { intervalMs: Math.max(0, o.downsampleS) * 1000 });
  rt.store.setDestinationPolicy(destination, { strictOrder: o.strictOrder, maxAttempts: o.maxAttempts, maxAgeMs: o.maxAgeHours * 3600_000 });
  let worker: ReturnType<typeof rt.registerDestination>;
  try {
    const reconnectMaxMs = Math.max(1, o.reconnectMaxS) * 1000;
    worker = rt.registerDestination(output, { unavailableBackoffMs: { base: Math.min(1000, reconnectMaxMs), max: reconnectMaxMs } });
  } catch (e) {
    reportStartFailure(node, 'destination', `${destination}#${node.id}`, o.driverName, (e as Error).message, 'duplicate destination');
    return false;
  }
  // 'connected' only while the link to the peer is really open; 'idle' before the first delivery
  const stopStatus = watchDestination(node, rt.store, destination, worker, () => output.connected || undefined);

  node.on('input', (msg: { payload?: unknown; _iomt?: { messageUid?: string; messageId?: number } }, _send, done) => {
    const all = Array.isArray(msg.payload) ? (msg.payload as Observation[]) : undefined;
    if (!all || !msg._iomt?.messageUid) {
      done(new Error(`${o.driverName} expects msg.payload = observations from an IoMT device node`));
      return;
    }
    const pid = all[0]?.processingId || 'P';
    if (all.length && !o.processingIds.has(pid)) {
      metrics.processingIdSkipped.inc({ destination, processingId: pid });
      done();
      return;
    }
    // not this destination's kind (e.g. alarms at a PCD-01 EMR): nothing to queue, nothing lost (the ACM destination takes them)
    const mine = o.select ? o.select(all) : all;
    // downsampled-away values stay in the store and are counted (iomt_vitals_downsampled_total)
    // remembered only once queued: a message re-emitted after a failed append is thinned as if new
    const { kept, commit } = sampler.select(mine);
    if (!kept.length) {
      done();
      return;
    }
    queueForDelivery(rt.store, destination, { messageUid: msg._iomt.messageUid, messageId: msg._iomt.messageId }, (key) => output.prepare(kept, key), worker, done, commit);
  });
  node.on('close', (_removed, done) => {
    stopStatus();
    rt.unregisterDestination(destination).then(() => done(), () => done());
  });
  return true;
}

/** `P,T` → {P, T} (HL7 Table 0103 processing ids a destination takes). */
export function processingIdSet(s: string): Set<string> {
  return new Set((s.trim() || 'P').split(',').map((x) => x.trim().toUpperCase()).filter((x) => x));
}
