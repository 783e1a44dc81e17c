/**
 * Simulated bedside monitors over MQTT (issue 12 §7): N beds, each an MQTT 3.1.1 client with its own
 * credentials, publishing `iomt/<clientId>/vitals` (QoS 1 by default) at a rate per bed, alarms
 * (IHE ACM start → end) on `iomt/<clientId>/alarms`, and faults: abrupt disconnects, bad payloads, a skewed
 * device clock, duplicate publishes, and a broker restart (a command run at a given time; the beds
 * reconnect and mqtt.js re-sends what was not acknowledged).
 *
 * Every good QoS 1 message must be PUBACKed; the report says how many were, and the PUBACK latency.
 */
import { exec } from 'node:child_process';
import mqtt, { type MqttClient } from 'mqtt';

export interface MonitorFaults {
  /** Probability per publish of dropping the connection without DISCONNECT (the will fires), then reconnecting. */
  disconnect?: number;
  /** Probability per publish of an invalid payload (quarantined by the gateway; still PUBACKed). */
  badPayload?: number;
  /** Device clock offset in seconds (e.g. 900: flagged device-clock-skew). */
  clockSkewS?: number;
  /** Probability per publish of sending the same payload again (stored once). */
  duplicate?: number;
  /** Run this shell command `restartAtS` seconds into the run (e.g. restart the gateway). */
  restartCmd?: string;
  restartAtS?: number;
}

export interface MonitorOptions {
  url: string; // mqtt://host:port or mqtts://
  beds: Array<{ clientId: string; password: string }>;
  /** Publishes per second per bed (default 1). */
  rate?: number;
  /** Seconds to run (default 10). */
  durationS?: number;
  /** Observations per vitals message (1..10, default 10). */
  observations?: number;
  qos?: 0 | 1;
  /** Seconds between alarm start/end pairs per bed (0 = none). */
  alarmEveryS?: number;
  faults?: MonitorFaults;
  ca?: Buffer;
  /** Seed for reproducible faults. */
  seed?: number;
  /** Spread the first publish of each bed over one period (default true). */
  stagger?: boolean;
  /** Called once every bed is connected, right before the first publish (benchmarks start measuring here). */
  onStart?: () => void;
  /** Called when the publishing time is over, before waiting for the last PUBACKs. */
  onPublishingDone?: () => void;
}

export interface MonitorReport {
  beds: number;
  connected: number;
  published: number;
  acked: number;
  /** Good QoS 1 messages not acknowledged at the end. */
  unacked: number;
  badSent: number;
  duplicatesSent: number;
  alarmsSent: number;
  disconnects: number;
  reconnects: number;
  errors: string[];
  latencyMs: { p50: number; p90: number; p99: number; max: number };
  elapsedS: number;
  restartRan: boolean;
}

/** The ten vitals of a typical bedside monitor (MDC reference ids; units UCUM). */
const VITALS: Array<{ code: string; unit: string; base: number; spread: number }> = [
  { code: 'MDC_ECG_HEART_RATE', unit: '/min', base: 75, spread: 10 },
  { code: 'MDC_PULS_OXIM_SAT_O2', unit: '%', base: 97, spread: 2 },
  { code: 'MDC_PULS_OXIM_PULS_RATE', unit: '/min', base: 75, spread: 10 },
  { code: 'MDC_RESP_RATE', unit: '/min', base: 16, spread: 3 },
  { code: 'MDC_PRESS_BLD_NONINV_SYS', unit: 'mm[Hg]', base: 120, spread: 10 },
  { code: 'MDC_PRESS_BLD_NONINV_DIA', unit: 'mm[Hg]', base: 80, spread: 8 },
  { code: 'MDC_PRESS_BLD_NONINV_MEAN', unit: 'mm[Hg]', base: 93, spread: 8 },
  { code: 'MDC_TEMP_BODY', unit: 'Cel', base: 37, spread: 0.5 },
  { code: 'MDC_AWAY_CO2_ET', unit: 'mm[Hg]', base: 38, spread: 3 },
  { code: 'MDC_PRESS_BLD_ART_ABP_MEAN', unit: 'mm[Hg]', base: 90, spread: 8 },
];

/** xorshift32: reproducible faults from --seed. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 0x9e3779b9;
  return () => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) / 0x100000000;
  };
}

export function vitalsPayload(bedNo: number, n: number, at: Date, rand: () => number): string {
  return JSON.stringify({
    time: at.toISOString(),
    bed: `ICU1-${String(bedNo + 1).padStart(2, '0')}`,
    patient: { id: `SIM${String(100000 + bedNo)}`, idType: 'MR' },
    observations: VITALS.slice(0, Math.max(1, Math.min(10, n))).map((v) => ({ code: v.code, value: Math.round((v.base + (rand() * 2 - 1) * v.spread) * 10) / 10, unit: v.unit })),
  });
}

export function alarmPayload(bedNo: number, alarmId: string, phase: 'start' | 'end', at: Date): string {
  return JSON.stringify({
    time: at.toISOString(),
    bed: `ICU1-${String(bedNo + 1).padStart(2, '0')}`,
    alarms: [{ id: alarmId, source: 'MDC_PULS_OXIM_SAT_O2', event: 'MDC_EVT_LO_VAL_LT_LIM', priority: 'PH', state: phase === 'start' ? 'active' : 'inactive', phase, kind: 'physiological', text: 'SpO2 LOW', value: 84, unit: '%' }],
  });
}

function percentile(sorted: number[], p: number): number {
  if (!sorted.length) return 0;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

export async function runMonitors(opts: MonitorOptions): Promise<MonitorReport> {
  const rate = opts.rate ?? 1;
  const durationMs = (opts.durationS ?? 10) * 1000;
  const qos = opts.qos ?? 1;
  const faults = opts.faults ?? {};
  const rand = rng(opts.seed ?? 1);
  const latencies: number[] = [];
  const r: MonitorReport = { beds: opts.beds.length, connected: 0, published: 0, acked: 0, unacked: 0, badSent: 0, duplicatesSent: 0, alarmsSent: 0, disconnects: 0, reconnects: 0, errors: [], latencyMs: { p50: 0, p90: 0, p99: 0, max: 0 }, elapsedS: 0, restartRan: false };
  let pending = 0;
  const addError = (e: string) => {
    if (r.errors.length < 20 && !r.errors.includes(e)) r.errors.push(e);
  };
  const clients: MqttClient[] = [];
  const timers: NodeJS.Timeout[] = [];
  const start = Date.now();
  const skewMs = (faults.clockSkewS ?? 0) * 1000;

  await Promise.all(
    opts.beds.map(
      (bed) =>
        new Promise<void>((resolve) => {
          const c = mqtt.connect(opts.url, {
            clientId: bed.clientId,
            username: bed.clientId,
            password: bed.password,
            protocolVersion: 4,
            reconnectPeriod: 500,
            connectTimeout: 10_000,
            keepalive: 30,
            clean: true,
            ca: opts.ca,
            will: { topic: `iomt/${bed.clientId}/status`, payload: Buffer.from('offline'), qos: 1, retain: false },
          });
          clients.push(c);
          let first = true;
          c.on('connect', () => {
            if (first) {
              first = false;
              r.connected++;
              resolve();
            } else r.reconnects++;
          });
          c.on('error', (e) => addError(`${bed.clientId}: ${e.message}`.replace(bed.clientId, 'bed')));
          setTimeout(resolve, 15_000).unref(); // a bed that never connects is reported, the rest go on
        }),
    ),
  );

  const send = (c: MqttClient, topic: string, payload: string, good: boolean) => {
    r.published++;
    const t0 = performance.now();
    if (qos === 1 && good) pending++;
    c.publish(topic, payload, { qos }, (err) => {
      if (qos !== 1) return;
      if (err) {
        addError(err.message);
        if (good) pending--;
        return;
      }
      r.acked++;
      if (good) {
        pending--;
        latencies.push(performance.now() - t0);
      }
    });
  };

  opts.onStart?.();
  const pubStart = Date.now();
  await new Promise<void>((done) => {
    const periodMs = 1000 / rate;
    opts.beds.forEach((bed, i) => {
      const c = clients[i];
      const topic = `iomt/${bed.clientId}/vitals`;
      let nextAlarm = opts.alarmEveryS ? pubStart + (opts.alarmEveryS * 1000 * (i + 1)) / opts.beds.length : Infinity;
      let alarmNo = 0;
      const tick = () => {
        if (Date.now() - pubStart >= durationMs) return;
        const at = new Date(Date.now() + skewMs);
        if (!c.connected) return; // mqtt.js reconnects; nothing is sent meanwhile (a monitor buffers, we skip)
        if (faults.badPayload && rand() < faults.badPayload) {
          r.badSent++;
          send(c, topic, JSON.stringify({ time: at.toISOString(), observations: [{ code: 'MDC_ECG_HEART_RATE', value: 'NaN-from-sensor' }] }), false);
        } else {
          const payload = vitalsPayload(i, opts.observations ?? 10, at, rand);
          send(c, topic, payload, true);
          if (faults.duplicate && rand() < faults.duplicate) {
            r.duplicatesSent++;
            send(c, topic, payload, true);
          }
        }
        if (Date.now() >= nextAlarm) {
          const id = `${bed.clientId}-A${++alarmNo}`;
          send(c, `iomt/${bed.clientId}/alarms`, alarmPayload(i, id, 'start', at), true);
          setTimeout(() => c.connected && send(c, `iomt/${bed.clientId}/alarms`, alarmPayload(i, id, 'end', new Date(Date.now() + skewMs)), true), 2000).unref();
          r.alarmsSent += 2;
          nextAlarm += (opts.alarmEveryS ?? 0) * 1000;
        }
        if (faults.disconnect && rand() < faults.disconnect) {
          r.disconnects++;
          (c as unknown as { stream?: { destroy(): void } }).stream?.destroy(); // no DISCONNECT: the broker publishes the will
        }
      };
      const startIn = opts.stagger === false ? 0 : (periodMs * i) / opts.beds.length;
      timers.push(
        setTimeout(() => {
          tick();
          timers.push(setInterval(tick, periodMs));
        }, startIn),
      );
    });
    if (faults.restartCmd && faults.restartAtS !== undefined) {
      timers.push(
        setTimeout(() => {
          r.restartRan = true;
          exec(faults.restartCmd!, (e) => e && addError(`restart command: ${e.message}`));
        }, faults.restartAtS * 1000),
      );
    }
    timers.push(setTimeout(done, durationMs));
  });
  for (const t of timers) clearTimeout(t);
  opts.onPublishingDone?.();
  // wait for the last PUBACKs (mqtt.js re-sends unacknowledged messages after a reconnect)
  const deadline = Date.now() + 15_000;
  while (pending > 0 && Date.now() < deadline) await new Promise((res) => setTimeout(res, 50));
  r.unacked = pending;
  r.elapsedS = (Date.now() - start) / 1000;
  await Promise.all(clients.map((c) => c.endAsync(true).catch(() => undefined)));
  latencies.sort((a, b) => a - b);
  const round = (x: number) => Math.round(x * 10) / 10;
  r.latencyMs = { p50: round(percentile(latencies, 50)), p90: round(percentile(latencies, 90)), p99: round(percentile(latencies, 99)), max: round(latencies[latencies.length - 1] ?? 0) };
  return r;
}

export function formatMonitorReport(r: MonitorReport): string {
  return (
    `beds=${r.beds} connected=${r.connected} published=${r.published} acked=${r.acked} unacked=${r.unacked} ` +
    `bad=${r.badSent} duplicates=${r.duplicatesSent} alarms=${r.alarmsSent} disconnects=${r.disconnects} reconnects=${r.reconnects} ` +
    `puback_ms p50=${r.latencyMs.p50} p90=${r.latencyMs.p90} p99=${r.latencyMs.p99} max=${r.latencyMs.max} elapsed_s=${r.elapsedS.toFixed(1)}${r.restartRan ? ' restart=ran' : ''}`
  );
}
