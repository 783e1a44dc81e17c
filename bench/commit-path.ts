/**
 * The store's commit path, per message and per thread (issue 12 "Performance"): N messages of one kind
 * submitted straight into a GatewayStore on disk, then one outbox entry appended per message and the
 * message marked finished (the whole path a message takes through the store), in groups of `--group`
 * messages in flight at once. Inputs are built before the clock starts (parsing is not measured):
 *   hl7     the simulator's ~1 KB ORU^R01 (13 OBX), parsed as the HL7 receiver does (prepareHl7)
 *   astm    a result session (H, P, O, 10 R, L) parsed as the ASTM driver does (default profile)
 *   vitals  a 10-observation MQTT vitals payload normalized as the broker does (drivers/mqtt/payload.ts)
 * CPU time per thread from /proc/self/task/<tid>/stat (utime+stime; noise from other processes on a
 * shared machine does not count, unlike wall time): `main` is the event loop, `writer` the threads
 * that appeared when the store opened (the writer worker), `other` the rest (V8 helpers, GC, libuv).
 * `--rate R`: instead of groups, message i starts at i/R s, each on its own (independent devices at a
 * steady rate: how the MQTT and HL7 benches load the store). Each round warms up first (unmeasured).
 * Rounds alternate between the stores under comparison; the table gives medians over rounds.
 *
 *   npm run bench:commit -- [options]   (= node --import tsx bench/commit-path.ts)
 *   node --import tsx bench/commit-path.ts [--n 2000] [--rounds 5] [--group 50 | --rate 500] [--kinds hl7,astm,vitals]
 *        [--compare /tmp/wt-before] [--doc]   (--doc: rewrites the commit-path or commit-path-paced section of docs/BENCHMARKS.md)
 * `--compare DIR`: also run the store of another checkout (e.g. `git worktree add /tmp/wt-before HEAD~1`
 * with node_modules symlinked), side by side in the same process (tsx only).
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { Worker } from 'node:worker_threads';
import type { InboundMessage } from '../gateway/src/contracts/driver';
import { parseRecords } from '../drivers/astm/records';
import { parseAstmMessage } from '../drivers/astm/results-parser';
import { defaultProfile } from '../drivers/astm/profile';
import { prepareHl7 } from '../drivers/hl7-mllp/hl7-worker-parse';
import { normalizeVitals } from '../drivers/mqtt/payload';
import { buildResultSession } from '../simulator/astm/analyzer-simulator';
import { OruGenerator } from '../simulator/hl7/oru-generator';
import { vitalsPayload } from '../simulator/monitor/mqtt-monitor';
import { machineInfo, median, parseArgs, repoRoot, RUNNING_TS, runMain, writeDocSection } from './bench-lib';

type Kind = 'hl7' | 'astm' | 'vitals';

interface StoreLike {
  submit(m: InboundMessage): Promise<{ messageId: number; duplicate: boolean }>;
  appendOutbox(destination: string, items: Array<{ key: string; messageId?: number; payload: Buffer; contentType?: string }>): Promise<unknown>;
  markFinished(ids: number[], status?: 'routed' | 'flow-error'): Promise<void>;
  close(): Promise<void>;
  stats(): { transactions: number };
}
interface StoreModule {
  GatewayStore: { open(o: { dataDir: string }): StoreLike };
}

function buildInputs(kind: Kind, n: number, salt: string): InboundMessage[] {
  const out: InboundMessage[] = [];
  if (kind === 'hl7') {
    const gen = new OruGenerator({ runId: salt.slice(0, 5).toUpperCase(), seed: 7 });
    for (let i = 0; i < n; i++) {
      const o = gen.next();
      const p = prepareHl7(o.payload, { charset: 'utf8' } as Parameters<typeof prepareHl7>[1]);
      if (!p.ok || !('oru' in p) || !p.oru) throw new Error('ORU did not parse');
      const r = p.oru as unknown as { drafts: InboundMessage['drafts']; header: { controlId: string; sendingApp: string; sendingFacility: string; processingId: string } };
      const sender = `${r.header.sendingApp}^${r.header.sendingFacility}`;
      out.push({
        deviceId: 'bench-hl7', driver: 'hl7-mllp', raw: o.payload, receivedAt: new Date(), sourceMessageId: o.controlId, sender,
        dedupeKey: `${sender}|${o.controlId}|${p.hash}`, controlKey: `${sender}|${o.controlId}`, messageType: 'ORU^R01', drafts: r.drafts,
        meta: { version: '2.3.1', remote: '127.0.0.1', processingId: 'P' }, processingId: 'P',
      });
    }
  } else if (kind === 'astm') {
    const profile = defaultProfile();
    const tests = ['GLU', 'NA', 'K', 'CL', 'CA', 'UREA', 'CREA', 'ALT', 'AST', 'TBIL'];
    for (let i = 0; i < n; i++) {
      // H, P, O, 10 R, L as buildResultSession shapes them (its default profile has no code map to pick tests from)
      const session = buildResultSession(profile, { seq: i + 1, specimenId: `${salt}${i}`, tests: 1 });
      const [h, p, , r1] = session;
      const lines = [h, p, session[2].replace('^^^GLU', tests.map((c) => `^^^${c}`).join('\\')), ...tests.map((c, k) => r1.replace(/^R\|1\|\^\^\^GLU\|[^|]*/, `R|${k + 1}|^^^${c}|${((i * 7 + k * 13) % 90) / 10 + 1}`)), 'L|1|N'];
      const parsed = parseAstmMessage(parseRecords(lines), profile);
      const raw = Buffer.from(lines.join('\r'), 'latin1');
      out.push({
        deviceId: 'bench-astm', driver: 'astm', raw, receivedAt: new Date(), sender: 'SIMULATOR^default^1',
        dedupeKey: `SIMULATOR|${salt}${i}|${i}`, messageType: 'ASTM results', drafts: parsed.drafts,
        meta: { remote: '127.0.0.1', frames: 1 },
      });
    }
  } else {
    let s = 1;
    const rand = () => ((s = (s * 1103515245 + 12345) & 0x7fffffff) / 0x80000000);
    for (let i = 0; i < n; i++) {
      const at = new Date();
      const raw = Buffer.from(vitalsPayload(i % 500, 10, at, rand));
      const clientId = `bed-${i % 500}`;
      const norm = normalizeVitals(raw, { clientId, receivedAt: at });
      out.push({
        deviceId: 'bench-mqtt', driver: 'mqtt', raw, receivedAt: at, sender: clientId,
        dedupeKey: `${clientId}|vitals|${salt}${i}`, messageType: 'MQTT vitals', drafts: norm.drafts,
        meta: { clientId, topic: `iomt/${clientId}/vitals`, qos: 1, dup: false, remote: '127.0.0.1', skewMs: 0 },
        ...(norm.flags.length ? { flags: norm.flags } : {}),
      });
    }
  }
  return out;
}

/** Messages posted to worker threads (main → store writer): each costs both threads a wake-up and a dispatch. */
let posts = 0;
const origPost = Worker.prototype.postMessage;
Worker.prototype.postMessage = function (this: Worker, ...args: Parameters<Worker['postMessage']>) {
  posts++;
  return origPost.apply(this, args);
};

/** utime+stime in µs per task of this process. */
function taskCpu(): Map<number, number> {
  const tick = 1e6 / 100; // USER_HZ = 100 on Linux
  const m = new Map<number, number>();
  for (const t of readdirSync('/proc/self/task')) {
    try {
      const s = readFileSync(`/proc/self/task/${t}/stat`, 'utf8');
      const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
      m.set(Number(t), (Number(f[11]) + Number(f[12])) * tick); // fields 14 and 15 (utime, stime)
    } catch {
      /* thread ended */
    }
  }
  return m;
}

/** InboundMessage.commitDelayMs and StoreOptions.deferredHoldMs for a variant (`--commit-delay`, `--deferred-hold`). */
interface Knobs {
  commitDelayMs?: number;
  deferredHoldMs?: number;
}

interface RoundResult {
  main: number;
  writer: number;
  other: number;
  wallMs: number;
  tx: number;
  posts: number;
}

/** The path of one message: durable submit, then (as the flow does) an outbox entry and the finished mark. */
async function onePath(store: StoreLike, m: InboundMessage, key: string): Promise<void> {
  const r = await store.submit(m);
  await store.appendOutbox('bench-dest', [{ key, messageId: r.messageId, payload: m.raw, contentType: 'application/octet-stream' }]);
  await store.markFinished([r.messageId], 'routed');
}

/** `rate` > 0: message i starts at i / rate seconds (independent devices); else groups of `group` at once. */
async function drive(store: StoreLike, inputs: InboundMessage[], group: number, rate: number, tag: string): Promise<void> {
  if (rate > 0) {
    const t0 = performance.now();
    const all: Array<Promise<void>> = [];
    for (let i = 0; i < inputs.length; i++) {
      const wait = t0 + (i * 1000) / rate - performance.now();
      if (wait > 1) await new Promise((r) => setTimeout(r, wait));
      all.push(onePath(store, inputs[i], `${tag}${i}`));
    }
    await Promise.all(all);
    return;
  }
  for (let i = 0; i < inputs.length; i += group) {
    await Promise.all(inputs.slice(i, i + group).map((m, j) => onePath(store, m, `${tag}${i + j}`)));
  }
}

async function round(mod: StoreModule, kind: Kind, inputs: InboundMessage[], group: number, rate: number, knobs: Knobs = {}): Promise<RoundResult> {
  const dir = mkdtempSync(join(tmpdir(), 'iomt-commit-bench-'));
  const before = new Set(taskCpu().keys());
  if (knobs.commitDelayMs !== undefined) inputs = inputs.map((m) => ({ ...m, commitDelayMs: knobs.commitDelayMs }));
  const store = mod.GatewayStore.open({ dataDir: dir, ...(knobs.deferredHoldMs !== undefined ? { deferredHoldMs: knobs.deferredHoldMs } : {}) });
  try {
    // warm-up (not measured): the writer thread starts, both threads' JIT settles, the first pages exist
    const warm = inputs.slice(0, Math.min(500, inputs.length >> 2)).map((m, i) => ({ ...m, dedupeKey: `warm|${i}|${m.dedupeKey ?? ''}` }));
    await drive(store, warm, group, rate, 'w');
    const writerTids = [...taskCpu().keys()].filter((t) => !before.has(t));
    const pid = process.pid;
    const tx0 = store.stats().transactions;
    const posts0 = posts;
    const c0 = taskCpu();
    const t0 = process.hrtime.bigint();
    await drive(store, inputs, group, rate, 'k');
    const wallMs = Number(process.hrtime.bigint() - t0) / 1e6;
    const c1 = taskCpu();
    const tx = (store.stats().transactions - tx0) / inputs.length;
    const postsPer = (posts - posts0) / inputs.length;
    const d = (t: number) => (c1.get(t) ?? 0) - (c0.get(t) ?? 0);
    let writer = 0;
    let other = 0;
    for (const t of c1.keys()) {
      if (t === pid) continue;
      if (writerTids.includes(t)) writer += d(t);
      else other += d(t);
    }
    const n = inputs.length;
    return { main: d(pid) / n, writer: writer / n, other: other / n, wallMs, tx, posts: postsPer };
  } finally {
    await store.close();
    rmSync(dir, { recursive: true, force: true });
  }
}

function loadStore(root: string): StoreModule {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  return require(join(root, 'gateway', 'src', 'store', RUNNING_TS ? 'gateway-store.ts' : 'gateway-store.js')) as StoreModule;
}

async function main(): Promise<void> {
  const a = parseArgs(process.argv.slice(2));
  const n = Number(a.n ?? 2000);
  const rounds = Number(a.rounds ?? 5);
  const group = Number(a.group ?? 50);
  const rate = Number(a.rate ?? 0);
  const kinds = (a.kinds ?? 'hl7,astm,vitals').split(',') as Kind[];
  const variants: Array<{ name: string; mod: StoreModule; knobs?: Knobs }> = [];
  if (a.compare) {
    if (!RUNNING_TS) throw new Error('--compare needs tsx (node --import tsx bench/commit-path.ts)');
    variants.push({ name: `before (${a.compare})`, mod: loadStore(resolve(a.compare)) });
  }
  const here = loadStore(RUNNING_TS ? repoRoot() : join(repoRoot(), 'dist'));
  if (a['commit-delay'] !== undefined || a['deferred-hold'] !== undefined) {
    // knob variants of this tree: --commit-delay 0,10 --deferred-hold 0,5 (paired by position)
    const delays = String(a['commit-delay'] ?? '0').split(',').map(Number);
    const holds = String(a['deferred-hold'] ?? '5').split(',').map(Number);
    for (let i = 0; i < Math.max(delays.length, holds.length); i++) {
      const knobs = { commitDelayMs: delays[Math.min(i, delays.length - 1)], deferredHoldMs: holds[Math.min(i, holds.length - 1)] };
      variants.push({ name: `this tree, commit delay ${knobs.commitDelayMs} ms, bookkeeping hold ${knobs.deferredHoldMs} ms`, mod: here, knobs });
    }
  } else variants.push({ name: 'this tree', mod: here });
  const load0 = (await import('node:os')).loadavg();
  const rows: string[] = [];
  for (const kind of kinds) {
    const res = variants.map(() => [] as RoundResult[]);
    for (let r = 0; r < rounds; r++) {
      for (let v = 0; v < variants.length; v++) {
        const inputs = buildInputs(kind, n, `${r}x${v}x${Math.random().toString(36).slice(2, 7)}`);
        res[v].push(await round(variants[v].mod, kind, inputs, group, rate, variants[v].knobs));
      }
    }
    const obs = buildInputs(kind, 1, 'probe')[0];
    for (let v = 0; v < variants.length; v++) {
      const m = (k: keyof RoundResult) => median(res[v].map((x) => x[k]));
      const row = `| ${kind} | ${obs.drafts.length} | ${obs.raw.length} | ${variants[v].name} | ${m('main').toFixed(0)} | ${m('writer').toFixed(0)} | ${m('other').toFixed(0)} | ${(m('main') + m('writer') + m('other')).toFixed(0)} | ${m('tx').toFixed(2)} | ${m('posts').toFixed(2)} | ${((n / m('wallMs')) * 1000).toFixed(0)} |`;
      rows.push(row);
      console.log(row, ' rounds main:', res[v].map((x) => x.main.toFixed(0)).join(' '), 'writer:', res[v].map((x) => x.writer.toFixed(0)).join(' '));
    }
  }
  const load1 = (await import('node:os')).loadavg();
  const mi = machineInfo(tmpdir());
  const body = [
    rate > 0 ? `### Commit path, paced: one message every ${(1000 / rate).toFixed(1)} ms (bench:commit -- --rate ${rate})` : '## Commit path: store CPU per message (bench:commit)',
    '',
    `Machine: ${mi.nproc} CPUs, ${mi.cpu}, ${mi.os}, Node ${mi.node}, data dir on ${mi.fs ?? '?'}; ${mi.date}. Load average at start ${load0.map((x) => x.toFixed(1)).join(', ')}, at end ${load1.map((x) => x.toFixed(1)).join(', ')} (other jobs shared the 2 cores; per-thread CPU time is not inflated by them the way wall time is).`,
    '',
    `Command: \`node --import tsx bench/commit-path.ts --n ${n} --rounds ${rounds} ${rate > 0 ? `--rate ${rate}` : `--group ${group}`}${a.compare ? ' --compare <checkout>' : ''}${a['commit-delay'] !== undefined ? ` --commit-delay ${a['commit-delay']}` : ''}${a['deferred-hold'] !== undefined ? ` --deferred-hold ${a['deferred-hold']}` : ''}\` (bench/commit-path.ts). Per message: submit (durable commit), appendOutbox of one entry, markFinished; ${rate > 0 ? `one message started every ${(1000 / rate).toFixed(1)} ms, each on its own` : `${group} messages in flight`}. µs of CPU per message per thread (/proc/self/task/*/stat), median of ${rounds} rounds of ${n} messages, rounds alternating between the stores compared.`,
    '',
    '| kind | observations | raw bytes | store | main µs | writer µs | other µs | total µs | transactions per message | posts to the writer per message | msg/s (wall) |',
    '|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|',
    ...rows,
  ].join('\n');
  console.log(`\n${body}`);
  if (a.doc) console.log(`written to ${writeDocSection(rate > 0 ? 'commit-path-paced' : 'commit-path', body)}`);
}

runMain(main);
