/**
 * bench:vitals (issue 12 "Performance"): the gateway's embedded MQTT broker side by side with mosquitto
 * on the same load, from the same load generator (simulator/monitor/mqtt-monitor.ts, mqtt.js clients):
 *   sustained: 500 monitors, each one QoS 1 publish per second with 10 observations;
 *   burst:     5,000 single-observation QoS 1 publishes per second (50 clients × 100/s) for 10 s.
 * Reported per target: PUBACK latency (for the gateway the commit is included: PUBACK follows the
 * fsync'd commit), CPU of the target process in % of one core (from /proc/<pid>/stat, publishing window
 * only) with the gateway's per-thread split, peak RSS, published / acknowledged / committed.
 *
 *   npm run bench:vitals [-- --beds 500 --sustained-s 30 --burst-rate 5000 --burst-s 10 --json FILE --no-doc]
 *   (--targets gateway: one target only; --gateway-route: aedes routes device publishes on, the A/B baseline;
 *   --gateway-commit-delay MS: the broker's group commit delay (A/B); --gateway-floor raw|aedes: bench/vitals-floor.ts in place of the gateway, Node's transport floor;
 *   --gateway-null-store: no commit, the transport's CPU alone; env BENCH_TARGET_NODE_ARGS: extra node flags for the
 *   gateway target, e.g. "--cpu-prof --cpu-prof-dir=/tmp/prof")
 *
 * The gateway target is bench/vitals-gateway.ts (store + broker, no Node-RED flow). mosquitto runs with
 * allow_anonymous false and a password file, persistence off (its default): it acknowledges QoS 1 from
 * memory, so it is the transport baseline, not a durable peer.
 */
import { execFileSync } from 'node:child_process';
import { mkdirSync, mkdtempSync, readFileSync, readdirSync, rmSync, writeFileSync } from 'node:fs';
import { connect } from 'node:net';
import { loadavg, tmpdir } from 'node:os';
import { join } from 'node:path';
import { RUNNING_TS, freePort, machineInfo, parseArgs, rssSampler, runMain, scriptArgs, sleep, spawnReady, writeDocSection, type ChildTarget } from './bench-lib';
import { MqttCredentials } from '../drivers/mqtt/credentials';
import { normalizeVitals } from '../drivers/mqtt/payload';
import { GatewayStore } from '../gateway/src/store/gateway-store';
import { vitalsPayload } from '../simulator/monitor/mqtt-monitor';
import { runMonitors, type MonitorReport } from '../simulator/monitor/mqtt-monitor';

const TICK = 100; // USER_HZ on Linux

/** utime + stime of a process (or one thread) in seconds. */
function cpuSeconds(path: string): number {
  const s = readFileSync(path, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / TICK; // fields 14, 15 (utime, stime) counted from 1
}

/** Per-thread CPU seconds, keyed `<comm>#<tid>` (main thread: tid = pid). */
function threadCpu(pid: number): Map<string, number> {
  const m = new Map<string, number>();
  for (const tid of readdirSync(`/proc/${pid}/task`)) {
    try {
      const comm = readFileSync(`/proc/${pid}/task/${tid}/comm`, 'utf8').trim();
      m.set(`${Number(tid) === pid ? 'main' : comm}#${tid}`, cpuSeconds(`/proc/${pid}/task/${tid}/stat`));
    } catch {
      /* thread ended */
    }
  }
  return m;
}

interface PhaseResult {
  target: string;
  phase: 'sustained' | 'burst';
  clients: number;
  offeredPerS: number;
  seconds: number;
  report: MonitorReport;
  ackedPerS: number;
  cpuPctOneCore: number;
  threads?: Array<{ thread: string; pct: number }>;
  rssPeakMiB: number;
  committed?: number;
  cpuUsPerMsg: number;
}

async function phase(target: { name: string; pid: number; url: string; creds: Record<string, string> }, name: PhaseResult['phase'], clients: number, rate: number, seconds: number, observations: number): Promise<PhaseResult> {
  const ids = Object.keys(target.creds).slice(0, clients);
  let cpu0 = 0;
  let cpu1 = 0;
  let t0 = 0;
  let t1 = 0;
  let th0 = new Map<string, number>();
  let th1 = new Map<string, number>();
  const rss = rssSampler(target.pid, 200);
  const report = await runMonitors({
    url: target.url,
    beds: ids.map((id) => ({ clientId: id, password: target.creds[id] })),
    rate,
    durationS: seconds,
    observations,
    qos: 1,
    onStart: () => {
      t0 = performance.now();
      cpu0 = cpuSeconds(`/proc/${target.pid}/stat`);
      th0 = threadCpu(target.pid);
    },
    onPublishingDone: () => {
      t1 = performance.now();
      cpu1 = cpuSeconds(`/proc/${target.pid}/stat`);
      th1 = threadCpu(target.pid);
    },
  });
  const wall = (t1 - t0) / 1000;
  const threads = [...th1]
    .map(([k, v]) => ({ thread: k.replace(/#\d+$/, ''), pct: (100 * (v - (th0.get(k) ?? 0))) / wall }))
    .reduce((acc, x) => acc.set(x.thread, (acc.get(x.thread) ?? 0) + x.pct), new Map<string, number>());
  const cpuPct = (100 * (cpu1 - cpu0)) / wall;
  return {
    target: target.name,
    phase: name,
    clients,
    offeredPerS: clients * rate,
    seconds: wall,
    report,
    ackedPerS: report.acked / wall,
    cpuPctOneCore: cpuPct,
    threads: [...threads].map(([thread, pct]) => ({ thread, pct })).filter((x) => x.pct >= 0.5).sort((a, b) => b.pct - a.pct),
    rssPeakMiB: rss.stop() / 1024,
    cpuUsPerMsg: report.acked ? ((cpu1 - cpu0) * 1e6) / report.acked : NaN,
  };
}

async function gatewayTarget(dir: string, creds: Record<string, string>): Promise<{ t: ChildTarget; url: string }> {
  const a = parseArgs(process.argv.slice(2));
  const floor = a['gateway-floor'];
  const node = (process.env.BENCH_TARGET_NODE_ARGS ?? '').split(' ').filter(Boolean);
  const args = floor
    ? [...scriptArgs('vitals-floor'), '--floor', floor] // Node's transport floor in place of the gateway (A/B only)
    : [...scriptArgs('vitals-gateway'), '--data', dir, ...(a['gateway-route'] !== undefined ? ['--route'] : []), ...(a['gateway-null-store'] !== undefined ? ['--null-store'] : []), ...(a['gateway-commit-delay'] !== undefined ? ['--commit-delay', String(a['gateway-commit-delay'])] : [])];
  const { target, ready } = await spawnReady(process.execPath, [...node, ...args], { env: { ...process.env, IOMT_LOG_LEVEL: 'error' } });
  void creds;
  return { t: target, url: `mqtt://127.0.0.1:${ready.port}` };
}

async function mosquittoTarget(dir: string, creds: Record<string, string>): Promise<{ t: ChildTarget; url: string }> {
  const port = await freePort();
  const pw = join(dir, 'passwd');
  writeFileSync(pw, Object.entries(creds).map(([u, p]) => `${u}:${p}`).join('\n') + '\n', { mode: 0o600 });
  execFileSync('mosquitto_passwd', ['-U', pw]); // hash in place ($7$ PBKDF2-SHA512)
  const conf = join(dir, 'mosquitto.conf');
  writeFileSync(conf, `listener ${port} 127.0.0.1\nallow_anonymous false\npassword_file ${pw}\nmax_inflight_messages 20\nlog_type error\n${process.getuid?.() === 0 ? 'user root\n' : ''}`);
  const { target } = await spawnReady('/usr/sbin/mosquitto', ['-c', conf], { noWait: true });
  for (let i = 0; i < 100; i++) {
    const ok = await new Promise<boolean>((r) => {
      const s = connect(port, '127.0.0.1');
      s.once('connect', () => (s.destroy(), r(true)));
      s.once('error', () => r(false));
    });
    if (ok) break;
    await sleep(50);
  }
  return { t: target, url: `mqtt://127.0.0.1:${port}` };
}

/**
 * The per-message cost of the gateway's commit path, measured in this process without MQTT: normalizing a
 * 10-observation payload, and store.submit (main thread: encoding, postMessage; writer thread: SQLite
 * insert, commit, fsync), `n` messages submitted 200 at a time. CPU per thread from /proc/self/task.
 */
async function commitPathCost(dir: string, n = 2000): Promise<{ normalizeUs: number; mainUs: number; otherThreadsUs: number; wallMsPerBatch: number }> {
  const raw = Buffer.from(vitalsPayload(0, 10, new Date(), Math.random));
  const ctx = { clientId: 'mon-001', receivedAt: new Date() };
  for (let i = 0; i < 200; i++) normalizeVitals(raw, ctx); // warm-up (code map, UCUM tables, JIT)
  const c0 = process.cpuUsage();
  for (let i = 0; i < n; i++) normalizeVitals(raw, ctx);
  const c1 = process.cpuUsage(c0);
  const normalizeUs = (c1.user + c1.system) / n;
  const drafts = normalizeVitals(raw, ctx).drafts;
  const store = GatewayStore.open({ dataDir: dir });
  const batch = (k: number, tag: string) => Promise.all(Array.from({ length: 200 }, (_, i) => store.submit({ deviceId: 'icu-mqtt', driver: 'mqtt-monitor', raw, sender: 'mon-001', dedupeKey: `${tag}-${k}-${i}`, messageType: 'MQTT vitals', drafts })));
  await batch(0, 'warm');
  const before = threadCpu(process.pid);
  const t0 = performance.now();
  for (let k = 0; k < n / 200; k++) await batch(k, 'run');
  const wall = performance.now() - t0;
  const after = threadCpu(process.pid);
  await store.close();
  let main = 0;
  let other = 0;
  for (const [key, v] of after) {
    const d = v - (before.get(key) ?? 0);
    if (key.startsWith('main#')) main += d;
    else other += d;
  }
  return { normalizeUs, mainUs: (main * 1e6) / n, otherThreadsUs: (other * 1e6) / n, wallMsPerBatch: wall / (n / 200) };
}

runMain(async () => {
  const a = parseArgs(process.argv.slice(2));
  const beds = Number(a.beds ?? 500);
  const sustainedS = Number(a['sustained-s'] ?? 30);
  const burstRate = Number(a['burst-rate'] ?? 5000);
  const burstS = Number(a['burst-s'] ?? 10);
  const burstClients = Number(a['burst-clients'] ?? 50);
  const targets = (a.targets ?? 'gateway,mosquitto').split(',');
  const dir = mkdtempSync(join(tmpdir(), 'vitals-bench-'));
  const results: PhaseResult[] = [];
  let cost: Awaited<ReturnType<typeof commitPathCost>> | undefined;
  let load0: number[] = [];
  const warmupAcked: Record<string, number> = {};
  let gwStats: { commitMs?: { p50: number; p99: number; max: number }; eventLoopDelayMs?: { p50: number; p99: number; max: number } } | undefined;
  try {
    // one login per simulated monitor, in the gateway's credentials file (scrypt) and mosquitto's ($7$)
    const store = new MqttCredentials(join(dir, 'gw'));
    const creds: Record<string, string> = {};
    const n = Math.max(beds, burstClients);
    process.stderr.write(`creating ${n} device logins...\n`);
    for (let i = 0; i < n; i++) {
      const id = `mon-${String(i + 1).padStart(3, '0')}`;
      creds[id] = (await store.add(id)).password;
    }
    process.stderr.write('measuring the commit path per message...\n');
    cost = await commitPathCost(join(dir, 'cost'));
    load0 = loadavg();
    for (const name of targets) {
      const sub = join(dir, name === 'gateway' ? 'gw' : 'mq');
      mkdirSync(sub, { recursive: true });
      const { t, url } = name === 'gateway' ? await gatewayTarget(sub, creds) : await mosquittoTarget(sub, creds);
      const tgt = { name, pid: t.pid, url, creds };
      try {
        // warm-up (lazy module loading, JIT, first commits), not reported
        warmupAcked[name] = (await runMonitors({ url, beds: Object.keys(creds).slice(0, 20).map((id) => ({ clientId: id, password: creds[id] })), rate: 5, durationS: 3, observations: 10, qos: 1 })).acked;
        process.stderr.write(`${name}: sustained ${beds} monitors × 1/s × 10 observations, ${sustainedS} s\n`);
        results.push(await phase(tgt, 'sustained', beds, 1, sustainedS, 10));
        await sleep(2000);
        process.stderr.write(`${name}: burst ${burstRate}/s single observations, ${burstS} s\n`);
        results.push(await phase(tgt, 'burst', burstClients, burstRate / burstClients, burstS, 1));
      } finally {
        await t.stop(10_000);
        if (name === 'gateway') {
          const stats = t.lastJson('STATS');
          gwStats = stats;
          const total = stats?.committed as number | undefined;
          // committed over both phases: split by what each phase acknowledged
          for (const r of results.filter((x) => x.target === 'gateway')) r.committed = total;
        }
      }
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
  const load1 = loadavg();
  const m = machineInfo(tmpdir());
  const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : '-');
  const rows = results.map(
    (r) =>
      `| ${r.target} | ${r.phase} | ${r.clients} | ${r.offeredPerS} | ${r.report.published} | ${r.report.acked} | ${r.report.unacked} | ${f1(r.ackedPerS)} | ${f1(r.report.latencyMs.p50)} | ${f1(r.report.latencyMs.p99)} | ${f1(r.report.latencyMs.max)} | ${f1(r.cpuPctOneCore)} | ${f1(r.cpuUsPerMsg)} | ${Math.round(r.rssPeakMiB)} |`,
  );
  const threads = results
    .filter((r) => r.threads?.length && r.target === 'gateway')
    .map((r) => `- gateway ${r.phase}: ${r.threads!.map((x) => `${x.thread} ${x.pct.toFixed(1)}%`).join(', ')}`);
  const gw = results.filter((r) => r.target === 'gateway');
  const mq = results.filter((r) => r.target === 'mosquitto');
  const ratio = (p: PhaseResult['phase']) => {
    const g = gw.find((r) => r.phase === p);
    const q = mq.find((r) => r.phase === p);
    return g && q ? (g.ackedPerS / q.ackedPerS).toFixed(2) : '-';
  };
  const committedNote = gw[0]?.committed !== undefined ? `Gateway commits (both phases, from the target's own count): ${gw[0].committed}; PUBACKs received: ${gw.reduce((n, r) => n + r.report.acked, 0) + (warmupAcked.gateway ?? 0)} (${warmupAcked.gateway ?? 0} of them in the unreported warm-up).` : '';
  const body = `## Vitals over MQTT (embedded broker vs mosquitto)

Machine: ${m.nproc} CPUs (nproc), ${m.cpu}, ${m.os}, Node ${m.node}, data dir on ${m.fs ?? '?'}; run on ${m.date}.

Command:

\`\`\`
${RUNNING_TS ? 'node --import tsx bench/vitals-bench.ts' : 'npm run bench:vitals --'} --beds ${beds} --sustained-s ${sustainedS} --burst-rate ${burstRate} --burst-s ${burstS}
\`\`\`

Load generator: simulator/monitor/mqtt-monitor.ts (mqtt.js 5, MQTT 3.1.1, QoS 1, one process beside the target; both share the machine's ${m.nproc} cores). Sustained: ${beds} monitors, one publish per second each, 10 observations (~1 KB JSON). Burst: ${burstClients} clients × ${burstRate / burstClients}/s, 1 observation each. PUBACK latency = publish call → PUBACK callback; for the gateway the durable commit (SQLite WAL, synchronous=FULL, group commit in the writer worker) is inside it. CPU = utime+stime of the target process over the publishing window, in % of one core; µs/msg = that CPU ÷ PUBACKs. RSS = peak VmRSS sampled every 200 ms.

| target | phase | clients | offered msg/s | published | PUBACKed | unacked | PUBACK/s | p50 ms | p99 ms | max ms | CPU % of one core | CPU µs/msg | RSS peak MiB |
|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|
${rows.join('\n')}

Sustained rate ratio gateway/mosquitto: ${ratio('sustained')}; burst: ${ratio('burst')}. ${committedNote}

Machine load average (1, 5, 15 min) when the target runs started: ${load0.map((x) => x.toFixed(1)).join(', ')}; at the end: ${load1.map((x) => x.toFixed(1)).join(', ')} (other work shared the ${m.nproc} cores: latencies and CPU shares include that contention).

Commit path per message, measured in the bench process without MQTT (${'2000'} messages of 10 observations, 200 submitted at a time): normalization ${cost ? f1(cost.normalizeUs) : '-'} µs; store.submit ${cost ? f1(cost.mainUs) : '-'} µs CPU on the main thread + ${cost ? f1(cost.otherThreadsUs) : '-'} µs on other threads (writer worker, fsync); ${cost ? f1(cost.wallMsPerBatch) : '-'} ms wall per 200-message group.

${gwStats?.commitMs ? `Inside the gateway (both phases): commit latency (store.submit → durable, which the PUBACK waits for) p50 ${f1(gwStats.commitMs.p50)} ms, p99 ${f1(gwStats.commitMs.p99)} ms, max ${f1(gwStats.commitMs.max)} ms; event-loop delay p50 ${f1(gwStats.eventLoopDelayMs!.p50)} ms, p99 ${f1(gwStats.eventLoopDelayMs!.p99)} ms, max ${f1(gwStats.eventLoopDelayMs!.max)} ms.

` : ''}Gateway CPU by thread (% of one core; main = event loop: MQTT parsing, validation, normalization, submit; the store writer is a worker thread; libuv threads do fsync):
${threads.join('\n')}

mosquitto ${(() => {
    try {
      return execFileSync('/usr/sbin/mosquitto', ['-h'], { encoding: 'utf8' }).split('\n')[0];
    } catch (e) {
      return ((e as { stdout?: string }).stdout ?? '').split('\n')[0];
    }
  })()} runs with a password file and persistence off: it acknowledges from memory (no disk), so it shows the transport's cost, not a durable commit.`;
  process.stdout.write(body + '\n');
  if (a.json) writeFileSync(a.json, JSON.stringify({ machine: m, results }, null, 2));
  if (a['no-doc'] === undefined) process.stderr.write(`written to ${writeDocSection('vitals', body)}\n`);
});

