/**
 * Child process for backup.test.ts ("another process"): a gateway store ingesting as fast as it
 * can, `concurrency` submits in flight, until `count` messages are committed. Prints a line only
 * after each commit resolved (what a device would have been ACKed for):
 *   READY
 *   ACK <uid> <epoch ms of the commit's resolution>
 *   DONE <count>
 */
import { GatewayStore } from '../../store/gateway-store';
import { sampleMessage } from '../../store/test/fixtures';

const [dataDir, countArg, concurrencyArg] = process.argv.slice(2);
const count = Number(countArg ?? 3000);
const concurrency = Number(concurrencyArg ?? 32);
const store = GatewayStore.open({ dataDir });
const out = (s: string) => process.stdout.write(`${s}\n`);

async function main(): Promise<void> {
  out('READY');
  let next = 0;
  const worker = async () => {
    while (next < count) {
      const i = next++;
      const r = await store.submit(sampleMessage(i, { sourceMessageId: `CHILD${i}`, specimenId: `C${i}` }));
      out(`ACK ${r.messageUid} ${Date.now()}`);
    }
  };
  await Promise.all(Array.from({ length: concurrency }, worker));
  await store.close();
  out(`DONE ${count}`);
}

main().catch((e: unknown) => {
  process.stderr.write(`${String((e as Error)?.stack ?? e)}\n`);
  process.exit(1);
});
