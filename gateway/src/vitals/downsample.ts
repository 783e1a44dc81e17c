/**
 * Per-destination downsampling of vitals (issue 12 §5): e.g. the EMR gets one value per parameter per
 * minute while the upstream bus gets everything.
 *
 * Policy (docs: the node's help and this comment are the reference):
 * - A "parameter" is one metric of one device at one bed: device (EUI-64, else equipment id, else the
 *   gateway's device id) + bed + MDC code + OBX-4 containment.
 * - The first value of a parameter passes; later values pass once `intervalMs` has elapsed since the
 *   last value that passed, by the observation's own time (effectiveAt, else receivedAt), so a backlog
 *   delivered late is thinned as it was measured. Thinning happens once, when the destination queues a
 *   message: an outbox entry, once queued, is retried and replayed as it is.
 * - Never thinned: alarms (`alarm` set: IHE ACM, MQTT alarms), abnormal values (OBX-8 interpretation
 *   other than N, when `keepAbnormal`, the default) and values with data-quality flags.
 * - A value thinned away is still stored in the gateway (the store keeps every committed observation;
 *   other destinations and replay still see it). It is counted in
 *   `iomt_vitals_downsampled_total{destination}`: nothing is lost silently.
 * - State is in memory: after a restart the first value of each parameter passes again (more, never fewer).
 */
import type { Observation } from '../contracts/observation';
import { registry } from '../metrics/registry';

export const downsampledTotal = registry.counter(
  'iomt_vitals_downsampled_total',
  'Vital-sign observations not sent to a destination by its downsampling policy (still stored in the gateway; alarms and abnormal values are never downsampled), per destination',
);

export interface DownsampleOptions {
  /** One value per parameter per this many ms. 0 = off (everything passes). */
  intervalMs: number;
  /** Abnormal values (interpretation other than N) always pass. Default true. */
  keepAbnormal?: boolean;
  /** Bound on remembered parameters (oldest forgotten first). Default 100,000. */
  maxParameters?: number;
}

export class Downsampler {
  private readonly last = new Map<string, number>();
  private readonly max: number;
  constructor(
    readonly destination: string,
    readonly opts: DownsampleOptions,
  ) {
    this.max = opts.maxParameters ?? 100_000;
  }

  /** Parameter key of one observation. */
  static parameterKey(o: Observation): string {
    const device = o.equipment?.eui64 ?? o.equipment?.id ?? o.deviceId;
    return `${device}\u0000${o.location?.bed ?? ''}\u0000${o.code.system}|${o.code.code}\u0000${o.subId ?? ''}`;
  }

  /** The observations this destination gets; the rest are counted as downsampled. Remembers the kept ones at once. */
  filter(observations: Observation[]): { kept: Observation[]; dropped: number } {
    const r = this.select(observations);
    r.commit();
    return r;
  }

  /**
   * As filter(), but what passed is remembered only by `commit()`, to be called once the destination
   * queued it durably. A value whose queueing failed and that comes again (the flow re-emits a message
   * whose outbox append failed) must pass again: remembered at once, it was thinned as a repeat of itself
   * and the destination never got that interval's value.
   */
  select(observations: Observation[]): { kept: Observation[]; dropped: number; commit(): void } {
    if (!(this.opts.intervalMs > 0)) return { kept: observations, dropped: 0, commit: () => undefined };
    const kept: Observation[] = [];
    const passed = new Map<string, number>();
    let dropped = 0;
    for (const o of observations) {
      if (this.bypass(o)) {
        kept.push(o);
        continue;
      }
      const t = Date.parse(o.effectiveAt ?? o.receivedAt);
      const key = Downsampler.parameterKey(o);
      const prev = passed.get(key) ?? this.last.get(key);
      // pass the first value, a value at least intervalMs after the last passed one, or one from before it (clock reset)
      if (prev === undefined || Number.isNaN(t) || t - prev >= this.opts.intervalMs || t < prev - this.opts.intervalMs) {
        if (!Number.isNaN(t)) passed.set(key, t);
        kept.push(o);
      } else {
        dropped++;
      }
    }
    if (dropped) downsampledTotal.inc({ destination: this.destination }, dropped);
    return { kept, dropped, commit: () => passed.forEach((t, key) => this.remember(key, t)) };
  }

  private bypass(o: Observation): boolean {
    if (o.alarm) return true; // alarms are never downsampled or dropped (issue 12 §5)
    if (o.quality?.length) return true;
    if (this.opts.keepAbnormal !== false && o.interpretation?.some((f) => f !== 'N' && f !== '')) return true;
    return false;
  }

  private remember(key: string, t: number): void {
    this.last.delete(key);
    this.last.set(key, t);
    if (this.last.size > this.max) this.last.delete(this.last.keys().next().value as string);
  }
}
