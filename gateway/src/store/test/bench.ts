/**
 * Store micro-benchmark (not a test): N concurrent submitters of a real 1 KB Erba ORU (36 OBX),
 * each `await store.submit(...)` in a loop (stop-and-wait, like an MLLP sender waiting for its ACK).
 * Each submitter parses its message itself (parse cost is on the main thread, as in the gateway).
 *   node --import tsx gateway/src/store/test/bench.ts [concurrency=8] [seconds=5] [sync]
 */
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseHl7 } from '../../../../drivers/hl7-mllp/hl7-message';
import { parseOru } from '../../../../drivers/hl7-mllp/oru-parser';
import { GatewayStore } from '../gateway-store';

const conc = Number(process.argv[2] ?? 8);
const seconds = Number(process.argv[3] ?? 5);
const sockets = process.argv[4] !== 'sync'; // 'sync': the next submit runs in the same microtask run as the ACK
const text = readFileSync(join(__dirname, '../../../../drivers/hl7-mllp/fixtures/erba_msg_002.hl7'), 'utf8').replace(/\r?\n/g, '\r');

async function main(): Promise<void> {
  const dir = mkdtempSync(join(tmpdir(), 'store-bench-'));
  const store = GatewayStore.open({ dataDir: dir });
  const raw = Buffer.from(text);
  let n = 0;
  let stop = false;
  const probe = parseOru(parseHl7(text));
  const loop = async (w: number) => {
    while (!stop) {
      // like a socket: the next message arrives in its own macrotask (the ACK went out, the sender answered)
      if (sockets) await new Promise((r) => setImmediate(r));
      const drafts = parseOru(parseHl7(text)).drafts;
      await store.submit({ deviceId: `dev${w}`, driver: 'hl7-mllp', raw, messageType: 'ORU^R01', sourceMessageId: `M${w}-${n}`, drafts, meta: { remote: '10.0.0.1' } });
      n++;
    }
  };
  // warm-up
  for (let i = 0; i < 50; i++) await store.submit({ deviceId: 'warm', driver: 'hl7-mllp', raw, drafts: probe.drafts });
  const tx0 = store.stats().transactions;
  const n0 = n;
  const bytes0 = store.fileBytes();
  const t0 = process.hrtime.bigint();
  const loops = Array.from({ length: conc }, (_, w) => loop(w));
  await new Promise((r) => setTimeout(r, seconds * 1000));
  stop = true;
  await Promise.all(loops);
  const dt = Number(process.hrtime.bigint() - t0) / 1e9;
  const msgs = n - n0;
  const tx = store.stats().transactions - tx0;
  await store.close(); // checkpoint(TRUNCATE): everything in the main file
  const bytes = statSync(join(dir, 'gateway.db')).size;
  console.log(
    JSON.stringify({ concurrency: conc, seconds: +dt.toFixed(2), msgs, msgPerS: Math.round(msgs / dt), txPerS: Math.round(tx / dt), msgsPerTx: +(msgs / tx).toFixed(2), dbBytesPerMsg: Math.round((bytes - 0 * bytes0) / (msgs + 50)), obs: probe.drafts.length, rawBytes: raw.length, draftJson: JSON.stringify(probe.drafts).length }),
  );
  rmSync(dir, { recursive: true, force: true });
}
main().catch((e) => {
  console.error(e);
  process.exit(1);
});
