/**
 * bench:dicom (issue 11 "Performance"), in one run on one machine:
 *   ingest: dcmtk's storescu sends the same objects to three receivers, one after the other:
 *     - the gateway's storage SCP (drivers/dicom/run-scp.ts on a gateway store: temp file, fsync,
 *       rename, fsync of the directory, index row committed before each success);
 *     - Orthanc 1.10 (Debian's, SQLite index, files on disk);
 *     - storescp (dcmtk; writes files, no fsync: the transport baseline);
 *     loads: 200 synthetic objects of ~0.5 MB (one association), then one object of ~1 GB.
 *     Reported: wall time of storescu, MB/s, objects/s, the receiver's RSS before and at its peak.
 *   forward: the gateway's outbox delivers what the gateway stored to Orthanc with the dicom-store
 *     output (C-STORE streamed from disk), timed until every entry is settled; the sender's RSS.
 *
 *   npm run bench:dicom [-- --objects 200 --object-kb 512 --big-mb 1024 --no-doc --json FILE]
 *   (from the sources: node --import tsx bench/dicom-bench.ts ...)
 *
 * Targets: durable ingest ≥ 1.0× Orthanc and ≥ 0.5× storescp (MB/s, 200 objects); the 1 GB object with
 * < 100 MB RSS growth. The table goes to docs/BENCHMARKS.md (section "dicom").
 */
import { execFile, spawn } from 'node:child_process';
import { mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { RUNNING_TS, freePort, machineInfo, parseArgs, repoRoot, rssKiB, rssSampler, runMain, sleep, spawnReady, writeDocSection, type ChildTarget } from './bench-lib';
import { writeSyntheticDicom } from './dicom-synth';
import { startOrthanc, type Orthanc } from '../test/helpers/orthanc';
import { GatewayStore } from '../gateway/src/store/gateway-store';
import { OutboxWorker } from '../gateway/src/pipeline/outbox-worker';
import { DicomStoreOutput } from '../gateway/src/outputs/dicom-store';
import type { DicomInstanceRecord } from '../drivers/dicom/contracts';

const run = promisify(execFile);
/** Orthanc's largest receive PDU (default 16 KiB) raised like storescp's, for a like-for-like transport. */
const ORTHANC_EXTRA = { MaximumPduLength: 131072 };
const MB = 1024 * 1024;
const log = (s: string) => process.stderr.write(`${s}\n`);

interface IngestResult {
  receiver: string;
  load: string;
  objects: number;
  bytes: number;
  seconds: number;
  rssBeforeMiB: number;
  rssPeakMiB: number;
}

interface Receiver {
  name: string;
  aet: string;
  port: number;
  pid(): number;
  stop(): Promise<void>;
}

async function storescu(port: number, aet: string, files: string[]): Promise<number> {
  const t0 = process.hrtime.bigint();
  // one association for all files; -xe: propose explicit VR LE (the objects' syntax), no conversion
  await run('storescu', ['-aet', 'BENCH_SCU', '-aec', aet, '-xe', '127.0.0.1', String(port), ...files], { timeout: 3600_000, maxBuffer: 16 * MB });
  return Number(process.hrtime.bigint() - t0) / 1e9;
}

async function ingest(r: Receiver, load: string, files: string[]): Promise<IngestResult> {
  await sleep(500);
  const before = (rssKiB(r.pid()) ?? 0) / 1024;
  const s = rssSampler(r.pid(), 50);
  const seconds = await storescu(r.port, r.aet, files);
  const peak = s.stop() / 1024;
  const bytes = files.reduce((a, f) => a + statSync(f).size, 0);
  const res = { receiver: r.name, load, objects: files.length, bytes, seconds, rssBeforeMiB: before, rssPeakMiB: peak };
  log(`${load} → ${r.name}: ${seconds.toFixed(2)} s, ${(bytes / MB / seconds).toFixed(1)} MB/s, RSS ${before.toFixed(0)} → ${peak.toFixed(0)} MiB`);
  return res;
}

async function startGatewayScp(dataDir: string): Promise<Receiver & { target: ChildTarget }> {
  const port = await freePort();
  const script = RUNNING_TS ? ['--import', 'tsx', join(repoRoot(), 'drivers/dicom/run-scp.ts')] : [join(repoRoot(), 'dist/drivers/dicom/run-scp.js')];
  const { target } = await spawnReady(process.execPath, [...script, dataDir, String(port), 'IOMT_GW'], { readyPattern: /READY \d+/, timeoutMs: 60_000 });
  return {
    name: 'gateway (fsync + index)',
    aet: 'IOMT_GW',
    port,
    target,
    pid: () => target.pid,
    stop: async () => void (await target.stop(30_000)),
  };
}

async function startStorescp(dir: string): Promise<Receiver> {
  const port = await freePort();
  mkdirSync(dir, { recursive: true });
  // its largest receive PDU (default 16 KiB; the gateway announces 256 KiB): the strongest baseline
  const child = spawn('storescp', ['-aet', 'STORESCP', '-od', dir, '+xa', '+uf', '-pdu', '131072', String(port)], { stdio: 'ignore' });
  const exited = new Promise<void>((r) => child.once('exit', () => r()));
  for (let i = 0; i < 200; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const s = require('node:net').connect({ host: '127.0.0.1', port }, () => (s.destroy(), resolve(true)));
      s.on('error', () => resolve(false));
    });
    if (ok) break;
    await sleep(50);
  }
  return { name: 'storescp (no fsync)', aet: 'STORESCP', port, pid: () => child.pid ?? -1, stop: async () => (child.kill('SIGTERM'), await exited) };
}

function orthancReceiver(o: Orthanc): Receiver {
  return { name: 'Orthanc 1.10', aet: o.aet, port: o.dicomPort, pid: () => o.pid ?? -1, stop: () => o.stop() };
}

interface ForwardResult {
  load: string;
  objects: number;
  bytes: number;
  seconds: number;
  associations: number;
  rssBeforeMiB: number;
  rssPeakMiB: number;
}

/** Deliver every stored instance of the gateway store `dataDir` to Orthanc through the outbox. */
async function forward(dataDir: string, pacs: Orthanc, load: string, destination: string): Promise<ForwardResult> {
  const store = GatewayStore.open({ dataDir });
  const output = new DicomStoreOutput({ destination, host: '127.0.0.1', port: pacs.dicomPort, calledAeTitle: pacs.aet, callingAeTitle: 'IOMT_GW', dataDir, dimseTimeoutMs: 600_000 });
  const worker = new OutboxWorker(store, output, { batchSize: 16 });
  try {
    const msgs = store.searchMessages({ limit: 1000 }).filter((m) => m.driver === 'dicom');
    const entries = msgs.map((m) => {
      const d = store.getMessage(m.id)!;
      const p = output.prepare(d.observations, d.uid, d.meta as Partial<DicomInstanceRecord>);
      return { key: d.uid, messageId: d.id, payload: p.payload, contentType: p.contentType, bytes: (d.meta as { bytes: number }).bytes };
    });
    await store.appendOutbox(destination, entries.map(({ bytes: _b, ...e }) => e));
    (globalThis as { gc?: () => void }).gc?.();
    await sleep(300);
    const before = process.memoryUsage.rss() / MB;
    const s = rssSampler(process.pid, 50);
    const t0 = process.hrtime.bigint();
    worker.start();
    for (;;) {
      const st = store.destinationStats(destination)[0];
      if (st && st.pending === 0) break;
      await sleep(20);
    }
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const peak = s.stop() / 1024;
    const st = store.destinationStats(destination)[0];
    if (st.dead) throw new Error(`forward: ${st.dead} dead letters: ${store.deadLetters(destination).map((x) => x.lastError).join('; ')}`);
    const bytes = entries.reduce((a, e) => a + e.bytes, 0);
    log(`forward ${load} → Orthanc: ${seconds.toFixed(2)} s, ${(bytes / MB / seconds).toFixed(1)} MB/s, ${output.associationsOpened} association(s), RSS ${before.toFixed(0)} → ${peak.toFixed(0)} MiB`);
    return { load, objects: entries.length, bytes, seconds, associations: output.associationsOpened, rssBeforeMiB: before, rssPeakMiB: peak };
  } finally {
    await worker.stop();
    await store.close();
  }
}

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  const nObjects = Number(a.objects ?? 200);
  const objectKb = Number(a['object-kb'] ?? 512);
  const bigMb = Number(a['big-mb'] ?? 1024);
  const work = mkdtempSync(join(a.dir ?? tmpdir(), 'iomt-dicom-bench-'));
  log(`work dir ${work}`);
  const receivers: Receiver[] = [];
  try {
    // the loads (written once, read by every receiver: the page cache holds the small ones)
    const small = join(work, 'small');
    mkdirSync(small);
    const smallFiles = Array.from({ length: nObjects }, (_, i) => writeSyntheticDicom(join(small, `o${String(i).padStart(4, '0')}.dcm`), objectKb * 1024, { seed: i + 1 }).path);
    const bigFile = writeSyntheticDicom(join(work, 'big.dcm'), bigMb * MB, { cols: 32768 }).path;
    const ingestResults: IngestResult[] = [];

    // one receiver at a time: the 2 cores are not shared between them
    const gwSmallDir = join(work, 'gw-small');
    const gwBigDir = join(work, 'gw-big');
    for (const [load, files, gwDir] of [
      [`${nObjects} × ${objectKb} KB`, smallFiles, gwSmallDir],
      [`1 × ${bigMb} MB`, [bigFile], gwBigDir],
    ] as const) {
      const gw = await startGatewayScp(gwDir);
      receivers.push(gw);
      ingestResults.push(await ingest(gw, load, [...files]));
      await gw.stop();
      const orthanc = await startOrthanc({ dir: join(work, `orthanc-${ingestResults.length}`), aet: 'ORTHANC_BENCH', extra: ORTHANC_EXTRA });
      const or = orthancReceiver(orthanc);
      receivers.push(or);
      ingestResults.push(await ingest(or, load, [...files]));
      await or.stop();
      rmSync(join(work, `orthanc-${ingestResults.length - 1}`), { recursive: true, force: true });
      const scp = await startStorescp(join(work, `storescp-${ingestResults.length}`));
      receivers.push(scp);
      ingestResults.push(await ingest(scp, load, [...files]));
      await scp.stop();
      rmSync(join(work, `storescp-${ingestResults.length}`), { recursive: true, force: true });
    }

    // forward what the gateway stored to a fresh Orthanc
    const pacs = await startOrthanc({ dir: join(work, 'orthanc-pacs'), aet: 'PACS_BENCH', extra: ORTHANC_EXTRA });
    receivers.push(orthancReceiver(pacs));
    const fwd: ForwardResult[] = [];
    fwd.push(await forward(gwSmallDir, pacs, `${nObjects} × ${objectKb} KB`, 'pacs'));
    fwd.push(await forward(gwBigDir, pacs, `1 × ${bigMb} MB`, 'pacs'));
    await pacs.stop();

    const info = machineInfo(work);
    const mbs = (r: { bytes: number; seconds: number }) => r.bytes / MB / r.seconds;
    const row = (r: IngestResult) =>
      `| ${r.load} | ${r.receiver} | ${r.seconds.toFixed(2)} | ${mbs(r).toFixed(1)} | ${(r.objects / r.seconds).toFixed(1)} | ${r.rssBeforeMiB.toFixed(0)} → ${r.rssPeakMiB.toFixed(0)} (+${(r.rssPeakMiB - r.rssBeforeMiB).toFixed(0)}) |`;
    const find = (load: string, name: string) => ingestResults.find((r) => r.load === load && r.receiver.startsWith(name))!;
    const smallLoad = `${nObjects} × ${objectKb} KB`;
    const bigLoad = `1 × ${bigMb} MB`;
    const ratio = (load: string, other: string) => mbs(find(load, 'gateway')) / mbs(find(load, other));
    const gwBig = find(bigLoad, 'gateway');
    const md = [
      '## DICOM: ingest from modalities and forward to a PACS (bench:dicom)',
      '',
      `Machine: ${info.cpu}, ${info.nproc} cores, ${info.os}, Node ${info.node}, ${info.fs ?? '?'} file system; ${info.date}. Shared with other jobs while it ran: treat as indicative.`,
      `Command: \`${RUNNING_TS ? 'node --expose-gc --import tsx bench/dicom-bench.ts' : 'npm run bench:dicom --'}${process.argv.length > 2 ? ` ${process.argv.slice(2).join(' ')}` : ''}\` (bench/dicom-bench.ts). Objects: synthetic Secondary Capture, explicit VR LE, 8-bit (bench/dicom-synth.ts). Sender: dcmtk storescu, one association per load, receivers one at a time.`,
      '',
      '### Ingest (storescu → receiver)',
      '',
      '| load | receiver | s | MB/s | objects/s | receiver RSS MiB before → peak (growth) |',
      '|---|---|---:|---:|---:|---|',
      ...ingestResults.map(row),
      '',
      `Ratios (MB/s, gateway ÷ other): ${smallLoad}: ${ratio(smallLoad, 'Orthanc').toFixed(2)}× Orthanc (target ≥ 1.0), ${ratio(smallLoad, 'storescp').toFixed(2)}× storescp (target ≥ 0.5); ${bigLoad}: ${ratio(bigLoad, 'Orthanc').toFixed(2)}× Orthanc, ${ratio(bigLoad, 'storescp').toFixed(2)}× storescp. The gateway's RSS growth on the ${bigMb} MB object: ${(gwBig.rssPeakMiB - gwBig.rssBeforeMiB).toFixed(0)} MiB (target < 100).`,
      '',
      'The gateway answers each C-STORE only after the file is fsync\'d, renamed, its directory fsync\'d and its index row committed; storescp writes without fsync. Receive PDU: gateway 256 KiB, storescp and Orthanc 128 KiB (`-pdu 131072`, `MaximumPduLength`; their defaults are 16 KiB).',
      '',
      '### Forward (gateway outbox → Orthanc, dicom-store output)',
      '',
      '| load | s | MB/s | objects/s | associations | sender RSS MiB before → peak (growth) |',
      '|---|---:|---:|---:|---:|---|',
      ...fwd.map((r) => `| ${r.load} | ${r.seconds.toFixed(2)} | ${mbs(r).toFixed(1)} | ${(r.objects / r.seconds).toFixed(1)} | ${r.associations} | ${r.rssBeforeMiB.toFixed(0)} → ${r.rssPeakMiB.toFixed(0)} (+${(r.rssPeakMiB - r.rssBeforeMiB).toFixed(0)}) |`),
      '',
      'Forward streams each file from disk in PDUs of the PACS\'s maximum length (here 128 KiB), 256 KiB read at a time and sent in one writev, awaiting socket drain; the association of a batch is re-used. Timed from the worker start to the last settled entry (the PACS\'s own storage included).',
    ].join('\n');
    if (a.json) writeFileSync(a.json, JSON.stringify({ info, ingest: ingestResults, forward: fwd }, null, 2));
    process.stdout.write(`${md}\n`);
    if (a['no-doc'] === undefined) log(`wrote ${writeDocSection('dicom', md)}`);
  } finally {
    for (const r of receivers) await r.stop().catch(() => undefined);
    if (a.keep === undefined) rmSync(work, { recursive: true, force: true });
  }
}

if (require.main === module) runMain(main);
export { main };

