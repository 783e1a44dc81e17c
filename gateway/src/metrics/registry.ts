/**
 * Minimal Prometheus text-format registry (counters, gauges, histograms with labels).
 * Written here instead of prom-client to keep the box's footprint small; it only needs text exposition.
 */
type Labels = Record<string, string>;

/** Prometheus text format label value escapes: backslash, double quote, line feed. */
function labelValue(v: unknown): string {
  const s = String(v);
  return /[\\"\n]/.test(s) ? s.replace(/\\/g, '\\\\').replace(/"/g, '\\"').replace(/\n/g, '\\n') : s;
}

function labelKey(labels: Labels): string {
  const keys = Object.keys(labels);
  // one label (the usual `device`): no sort, no array (this runs on every message of every driver)
  if (keys.length === 1) return `${keys[0]}="${labelValue(labels[keys[0]])}"`;
  return keys
    .sort()
    .map((k) => `${k}="${labelValue(labels[k])}"`)
    .join(',');
}

abstract class Metric {
  constructor(readonly name: string, readonly help: string, readonly type: 'counter' | 'gauge' | 'histogram') {}
  abstract render(): string[];
}

export class Counter extends Metric {
  private values = new Map<string, number>();
  constructor(name: string, help: string) {
    super(name, help, 'counter');
  }
  inc(labels: Labels = {}, by = 1): void {
    const k = labelKey(labels);
    this.values.set(k, (this.values.get(k) ?? 0) + by);
  }
  /** The series of fixed labels, its key built once (for a per-message counter on a hot path). */
  child(labels: Labels): { inc(by?: number): void } {
    const k = labelKey(labels);
    return { inc: (by = 1) => this.values.set(k, (this.values.get(k) ?? 0) + by) };
  }
  get(labels: Labels = {}): number {
    return this.values.get(labelKey(labels)) ?? 0;
  }
  render(): string[] {
    return [...this.values].map(([k, v]) => `${this.name}${k ? `{${k}}` : ''} ${v}`);
  }
}

export class Gauge extends Metric {
  private values = new Map<string, number>();
  private collectors: Array<(set: (labels: Labels, v: number) => void) => void> = [];
  constructor(name: string, help: string) {
    super(name, help, 'gauge');
  }
  set(labels: Labels, v: number): void {
    this.values.set(labelKey(labels), v);
  }
  /** Computed at scrape time (e.g. outbox depth read from the store). */
  collect(fn: (set: (labels: Labels, v: number) => void) => void): void {
    this.collectors.push(fn);
  }
  render(): string[] {
    for (const c of this.collectors) c((l, v) => this.set(l, v));
    return [...this.values].map(([k, v]) => `${this.name}${k ? `{${k}}` : ''} ${v}`);
  }
}

export class Histogram extends Metric {
  private series = new Map<string, { buckets: number[]; sum: number; count: number }>();
  constructor(name: string, help: string, readonly bounds: number[]) {
    super(name, help, 'histogram');
  }
  observe(v: number, labels: Labels = {}): void {
    const k = labelKey(labels);
    let s = this.series.get(k);
    if (!s) {
      s = { buckets: this.bounds.map(() => 0), sum: 0, count: 0 };
      this.series.set(k, s);
    }
    for (let i = 0; i < this.bounds.length; i++) if (v <= this.bounds[i]) s.buckets[i]++;
    s.sum += v;
    s.count++;
  }
  render(): string[] {
    const out: string[] = [];
    for (const [k, s] of this.series) {
      const pre = k ? `${k},` : '';
      this.bounds.forEach((b, i) => out.push(`${this.name}_bucket{${pre}le="${b}"} ${s.buckets[i]}`));
      out.push(`${this.name}_bucket{${pre}le="+Inf"} ${s.count}`);
      out.push(`${this.name}_sum${k ? `{${k}}` : ''} ${s.sum}`);
      out.push(`${this.name}_count${k ? `{${k}}` : ''} ${s.count}`);
    }
    return out;
  }
}

export class Registry {
  private metrics = new Map<string, Metric>();
  counter(name: string, help: string): Counter {
    return this.getOrAdd(name, () => new Counter(name, help)) as Counter;
  }
  gauge(name: string, help: string): Gauge {
    return this.getOrAdd(name, () => new Gauge(name, help)) as Gauge;
  }
  histogram(name: string, help: string, bounds: number[]): Histogram {
    return this.getOrAdd(name, () => new Histogram(name, help, bounds)) as Histogram;
  }
  private getOrAdd(name: string, make: () => Metric): Metric {
    let m = this.metrics.get(name);
    if (!m) {
      m = make();
      this.metrics.set(name, m);
    }
    return m;
  }
  render(): string {
    const lines: string[] = [];
    for (const m of this.metrics.values()) {
      lines.push(`# HELP ${m.name} ${m.help}`, `# TYPE ${m.name} ${m.type}`, ...m.render());
    }
    return lines.join('\n') + '\n';
  }
}

/** The gateway's metrics (conventions §7). One registry per process. */
export const registry = new Registry();
export const metrics = {
  received: registry.counter('iomt_messages_received_total', 'Device messages received, per device'),
  committed: registry.counter('iomt_messages_committed_total', 'Device messages durably committed, per device'),
  duplicates: registry.counter('iomt_messages_duplicate_total', 'Device messages recognised as repeats and not stored again'),
  controlIdReused: registry.counter('iomt_control_id_reused_total', 'Device messages stored although their sender and control id had been used for other content, per device'),
  quarantined: registry.counter('iomt_messages_quarantined_total', 'Device messages that could not be parsed, per device'),
  withheld: registry.counter('iomt_results_withheld_total', 'Parts of stored messages kept in quarantine instead of being forwarded (raw instrument signals, results without a test code, lines that are not segments), per device'),
  rejected: registry.counter('iomt_messages_rejected_total', 'Device messages negatively acknowledged, per device and reason'),
  strayBytes: registry.counter('iomt_stray_bytes_total', 'Bytes received outside a protocol session (e.g. not ASTM E1381 framing), per device'),
  delivered: registry.counter('iomt_outbox_delivered_total', 'Outbox entries delivered, per destination'),
  failed: registry.counter('iomt_outbox_failed_attempts_total', 'Failed delivery attempts, per destination'),
  processingIdSkipped: registry.counter('iomt_outbox_processing_id_skipped_total', 'Messages not queued for a destination because their MSH-11 / H.12 processing id (T training, D debugging) is not one it takes, per destination and processing id'),
  deadLettered: registry.counter('iomt_outbox_dead_lettered_total', 'Outbox entries moved to dead letters, per destination'),
  listenerRefused: registry.counter('iomt_listener_connections_refused_total', 'Listener connections refused, per listener (a device id, or http for the status page/API/editor port) and reason (not-allowed: source not on the allow-list; per-address: too many from one address; full)'),
  listenerEvicted: registry.counter('iomt_listener_connections_evicted_total', 'Listener connections closed by the gateway, per listener (a device id, or http) and reason (first-frame-timeout: no complete first frame or HTTP request head in time; idle-longest: closed to make room on a full listener)'),
  listenerTlsFailures: registry.counter('iomt_listener_tls_failures_total', 'Failed TLS handshakes, per listener (a device id, or http for the HTTPS port)'),
  inflightPauses: registry.counter('iomt_inflight_budget_pauses_total', 'Times a device connection stopped reading because the in-flight memory budget (IOMT_INFLIGHT_MAX_BYTES) was full'),
  commitLatency: registry.histogram('iomt_commit_latency_seconds', 'Time from submit to durable commit', [0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1]),
  commitBatch: registry.histogram('iomt_commit_batch_size', 'Write operations per group commit', [1, 2, 4, 8, 16, 32, 64, 128, 256, 512]),
  outboxDepth: registry.gauge('iomt_outbox_depth', 'Pending outbox entries per destination'),
  outboxOldestAge: registry.gauge('iomt_outbox_oldest_age_seconds', 'Age of the oldest pending entry per destination'),
};
