/**
 * Benchmark target for bench:vitals: the gateway's MQTT device path alone — the real store (writer worker,
 * group commit, fsync) and the embedded broker (validation, normalization, commit before PUBACK) — in
 * its own process, so its CPU and RSS are measured apart from the load generator.
 * argv: --data DIR [--commit-delay MS: the broker's group commit delay, default the broker's] [--route: aedes routes device publishes on, as before the skip; A/B only] [--null-store:
 * no commit at all, the transport's own CPU; A/B only]. Protocol: bench-lib serveAsTarget (READY {port,pid}; STATS on SIGTERM, with the
 * commit latency (submit → durable, as the broker waits for it) and the event-loop delay, in ms).
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import type { InboundMessage, QuarantineInput } from '../gateway/src/contracts/driver';
import { GatewayStore } from '../gateway/src/store/gateway-store';
import { MqttBroker } from '../drivers/mqtt/broker';
import { parseArgs, runMain, serveAsTarget } from './bench-lib';

function pct(sorted: number[], p: number): number {
  return sorted.length ? sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)] : 0;
}

runMain(async () => {
  const a = parseArgs(process.argv.slice(2));
  const store = GatewayStore.open({ dataDir: a.data });
  let committed = 0;
  const commitMs: number[] = [];
  const loop = monitorEventLoopDelay({ resolution: 10 });
  loop.enable();
  // --null-store: the commit is a no-op (no SQLite, no worker): the target's CPU is the MQTT transport plus
  // validation and normalization only (the transport A/B of bench:vitals; never a durability measurement)
  let nullId = 0;
  const nullStore = a['null-store'] !== undefined;
  const sink = {
    submit: async (m: InboundMessage) => {
      if (nullStore) return { messageId: ++nullId, messageUid: String(nullId), duplicate: false, observations: [] };
      const t0 = performance.now();
      const r = await store.submit(m);
      if (commitMs.length < 2_000_000) commitMs.push(performance.now() - t0);
      return r;
    },
    quarantine: (q: QuarantineInput) => store.quarantine(q),
  };
  const broker = new MqttBroker({ deviceId: 'icu-mqtt', dataDir: a.data, host: '127.0.0.1', port: 0, maxConnections: 10_000, maxPerAddress: 10_000, routeDevicePublishes: a.route !== undefined, ...(a['commit-delay'] !== undefined ? { commitDelayMs: Number(a['commit-delay']) } : {}) }, sink, (r) => {
    if (!r.duplicate) committed++;
  });
  const { port } = await broker.start();
  serveAsTarget(
    port!,
    async () => {
      await broker.close();
      await store.close();
    },
    () => {
      const s = [...commitMs].sort((x, y) => x - y);
      return {
        committed,
        quarantined: broker.clientStates().reduce((n, c) => n + c.quarantined, 0),
        commitMs: { p50: pct(s, 50), p99: pct(s, 99), max: s[s.length - 1] ?? 0 },
        eventLoopDelayMs: { p50: loop.percentile(50) / 1e6, p99: loop.percentile(99) / 1e6, max: loop.max / 1e6 },
        cpu: process.cpuUsage(),
        rss: process.memoryUsage().rss,
      };
    },
  );
});
