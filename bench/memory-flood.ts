/**
 * Memory under a flood of large messages (issue 10 §7, "How it will be checked": 32 concurrent 8 MB
 * messages with RSS < 300 MB). A child process runs the HL7 receiver (Hl7Receiver on the process-wide
 * in-flight budget, IOMT_INFLIGHT_MAX_BYTES, and the parse worker pool) in front of the real store on
 * disk, as the gateway does; this process opens `--clients` connections from 127.0.0.x and writes one
 * `--mb` MB message on each at once, then waits for every ACK. The child's RSS is sampled every 20 ms
 * (/proc VmRSS) and its high-water mark read at the end (VmHWM).
 *
 *   npm run bench:memory                       # built (dist/)
 *   node --import tsx bench/memory-flood.ts    # from sources
 *   options: --clients 32 --mb 8 --budget <bytes> (IOMT_INFLIGHT_MAX_BYTES) --workers <n> (IOMT_HL7_PARSE_WORKERS)
 *            --max-rss <MiB>: exit 1 when the peak RSS reaches it (issue 10 §7: 300)
 * The child inherits the environment (e.g. MALLOC_MMAP_THRESHOLD_=131072). One JSON line per run; the
 * table in docs/BENCHMARKS.md ("Memory under 32 concurrent 8 MB messages") is written by hand from several.
 */
import net from 'node:net';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { parseArgs, rssKiB, runMain, scriptArgs, serveAsTarget, spawnReady } from './bench-lib';

const MiB = 1024 * 1024;

function hwmKiB(pid: number): number | undefined {
  try {
    const m = /VmHWM:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** The child: receiver + store, READY {port,pid}, STATS on SIGTERM. */
async function serve(dataDir: string): Promise<void> {
  const { createRootLogger } = await import('../gateway/src/log/logger');
  createRootLogger((process.env.IOMT_BENCH_LOG_LEVEL ?? 'warn') as Parameters<typeof createRootLogger>[0]);
  const { GatewayStore } = await import('../gateway/src/store/gateway-store');
  const { Hl7Receiver } = await import('../drivers/hl7-mllp/hl7-receiver');
  const { sharedMemoryBudget, reclaimStats } = await import('../gateway/src/pipeline/memory-budget');
  const store = GatewayStore.open({ dataDir });
  const rx = new Hl7Receiver({ deviceId: 'flood', host: '0.0.0.0', port: 0, maxConnections: 64, maxPerAddress: 64 }, store);
  const { port } = await rx.start();
  const budget = sharedMemoryBudget();
  // the main thread's share at the RSS peak: V8 heap, Buffers (external), RSS
  const at: Record<string, number> = {};
  const sample = setInterval(() => {
    const m = process.memoryUsage();
    if (m.rss > (at.rss ?? 0)) Object.assign(at, { rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external, arrayBuffers: m.arrayBuffers });
  }, 20);
  sample.unref();
  serveAsTarget(port, async () => {
    await rx.close();
    await store.close();
  }, () => ({ budgetMaxBytes: budget.maxBytes, budgetPeakBytes: budget.peakUsed, budgetUsed: budget.used, gc: { runs: reclaimStats.runs, maxMs: +reclaimStats.maxMs.toFixed(1), totalMs: Math.round(reclaimStats.totalMs) }, atPeakMiB: Object.fromEntries(Object.entries(at).map(([k, v]) => [k, Math.round(v / MiB)])) }));
}

function send(port: number, host: string, head: Buffer, body: Buffer, tail: Buffer): Promise<string> {
  return new Promise((resolve) => {
    const s = net.connect({ port, host: '127.0.0.1', localAddress: host });
    let got = Buffer.alloc(0);
    s.on('data', (d) => {
      got = Buffer.concat([got, d]);
      const fs = got.indexOf(0x1c);
      if (fs >= 0) {
        s.end();
        resolve(got.subarray(1, fs).toString('latin1'));
      }
    });
    s.on('error', () => resolve('(connection error)'));
    s.on('close', () => resolve('(closed without ACK)'));
    s.once('connect', () => {
      s.write(head);
      s.write(body);
      s.write(tail);
    });
  });
}

async function main(): Promise<void> {
  const args = parseArgs(process.argv.slice(2));
  if (args.serve) return serve(args.serve);
  const clients = Number(args.clients ?? 32);
  const mb = Number(args.mb ?? 8);
  const { mkdtempSync, rmSync } = await import('node:fs');
  const { tmpdir } = await import('node:os');
  const dir = mkdtempSync(join(tmpdir(), 'iomt-memflood-'));
  const env: NodeJS.ProcessEnv = { ...process.env };
  if (args.budget) env.IOMT_INFLIGHT_MAX_BYTES = args.budget;
  if (args.workers) env.IOMT_HL7_PARSE_WORKERS = args.workers;
  const { target, ready } = await spawnReady(process.execPath, [...scriptArgs('memory-flood'), '--serve', dir], { env });
  try {
    await new Promise((r) => setTimeout(r, 500));
    const idle = rssKiB(target.pid) ?? 0;
    // one shared ~mb MB OBX-5 text value (this process stays small); each message has its own MSH-10
    const body = Buffer.alloc(mb * MiB - 4096, 'A');
    const tail = Buffer.from('||||||F\r\x1c\r', 'latin1');
    const head = (i: number) => Buffer.from(`\x0bMSH|^~\\&|BIG|LAB|GW|HOSP|20250301120000||ORU^R01|FLOOD${i}|P|2.5.1\rPID|1||P${i}\rOBR|1||S${i}|T1\rOBX|1|TX|T1||`, 'latin1');
    let peak = idle;
    const sampler = setInterval(() => {
      const v = rssKiB(target.pid);
      if (v && v > peak) peak = v;
    }, 20);
    const t0 = Date.now();
    const acks = await Promise.all(Array.from({ length: clients }, (_, i) => send(ready.port, `127.0.0.${2 + (i % 200)}`, head(i), body, tail)));
    const seconds = (Date.now() - t0) / 1000;
    clearInterval(sampler);
    const hwm = hwmKiB(target.pid) ?? peak;
    const aa = acks.filter((a, i) => a.includes(`MSA|AA|FLOOD${i}`)).length;
    await target.stop(10_000);
    const stats = target.lastJson('STATS') ?? {};
    const result = { clients, mb, budget: stats.budgetMaxBytes, budgetPeakMiB: +(stats.budgetPeakBytes / MiB).toFixed(1), idleMiB: +(idle / 1024).toFixed(0), peakRssMiB: +(Math.max(peak, hwm) / 1024).toFixed(0), seconds, aa };
    console.log(JSON.stringify({ ...result, gc: stats.gc, mainAtPeakMiB: stats.atPeakMiB }));
    if (args['max-rss'] && result.peakRssMiB >= Number(args['max-rss'])) {
      console.error(`peak RSS ${result.peakRssMiB} MiB ≥ ${args['max-rss']} MiB`);
      process.exitCode = 1;
    }
    if (aa !== clients) {
      console.error(`only ${aa} of ${clients} messages answered AA:`, acks.filter((a) => !a.includes('MSA|AA')).slice(0, 3));
      process.exitCode = 1;
    }
  } finally {
    await target.stop(2000);
    rmSync(dir, { recursive: true, force: true });
  }
}

runMain(main);
