/**
 * Benchmark target for bench:vitals: the gateway's MQTT device path alone — the real store (writer worker,
 * group commit, fsync) and the embedded broker (validation, normalization, commit before PUBACK) — in
 * its own process, so its CPU and RSS are measured apart from the load generator.
 * argv: --data DIR. Protocol: bench-lib serveAsTarget (READY {port,pid}; STATS on SIGTERM).
 */
import { GatewayStore } from '../gateway/src/store/gateway-store';
import { MqttBroker } from '../drivers/mqtt/broker';
import { parseArgs, runMain, serveAsTarget } from './bench-lib';

runMain(async () => {
  const a = parseArgs(process.argv.slice(2));
  const store = GatewayStore.open({ dataDir: a.data });
  let committed = 0;
  let duplicates = 0;
  const broker = new MqttBroker(
    { deviceId: 'icu-mqtt', dataDir: a.data, host: '127.0.0.1', port: 0, maxConnections: 10_000, maxPerAddress: 10_000 },
    store,
    (r) => {
      if (r.duplicate) duplicates++;
      else committed++;
    },
  );
  const { port } = await broker.start();
  serveAsTarget(
    port!,
    async () => {
      await broker.close();
      await store.close();
    },
    () => ({ committed, duplicates, quarantined: broker.clientStates().reduce((n, c) => n + c.quarantined, 0), cpu: process.cpuUsage(), rss: process.memoryUsage().rss }),
  );
});
