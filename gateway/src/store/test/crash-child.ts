/**
 * Child process for crash-safety.test.ts: writes as fast as it can and prints a line only after
 * each promise resolved (= what a device or destination would have been told). The parent kills
 * it with SIGKILL at an arbitrary moment. stdout is a pipe: writes are synchronous on Linux, so a
 * printed line was really emitted before the kill.
 *   ACK <messageId> <uid> <observationCount> <dedupeKey>
 *   OUTBOX <key>            appendOutbox resolved
 *   SETTLING <key> ...      settle('delivered') called (may or may not commit before the kill)
 *   DELIVERED <key> ...     settle resolved
 * Leases taken and never settled stay in memory only: after the crash they must be due again.
 */
import { GatewayStore } from '../gateway-store';
import { sampleMessage } from './fixtures';

const dataDir = process.argv[2];
let next = Number(process.argv[3] ?? 0);
const store = GatewayStore.open({ dataDir });
const out = (s: string) => process.stdout.write(`${s}\n`);

async function one(i: number): Promise<void> {
  const dedupeKey = `crash-${i}`;
  const r = await store.submit(sampleMessage(i, { n: 3, dedupeKey }));
  out(`ACK ${r.messageId} ${r.messageUid} ${r.observations.length} ${dedupeKey}`);
  const key = r.observations[0].id;
  await store.appendOutbox('his', [{ key, messageId: r.messageId, payload: Buffer.from(key) }]);
  out(`OUTBOX ${key}`);
}

async function main(): Promise<void> {
  out('READY');
  for (;;) {
    await Promise.all(Array.from({ length: 8 }, () => one(next++)));
    // deliver half of what is due; keep the other half leased (in flight) forever
    const leased = store.lease('his', 8, 600_000);
    const deliver = leased.slice(0, Math.ceil(leased.length / 2));
    if (deliver.length) {
      out(`SETTLING ${deliver.map((e) => e.key).join(' ')}`);
      await store.settle('his', deliver.map((e) => ({ id: e.id, outcome: 'delivered' as const })));
      out(`DELIVERED ${deliver.map((e) => e.key).join(' ')}`);
    }
  }
}

main().catch((e) => {
  process.stderr.write(`crash-child failed: ${String(e)}\n`);
  process.exit(1);
});
