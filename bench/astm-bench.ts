/**
 * ASTM over TCP benchmark (E1381 link + E1394 records), the gateway as a child process:
 *
 *   A  `--analyzers` (default 64) analyzers at once, each paced at the byte rate of a serial line
 *      (`--baud` 9600 → 960 bytes/s, 8N1), for `--duration` s after `--warmup` s: gateway CPU % of one
 *      core, results/s, final-frame → ACK p50/p99 (ack-after-commit: the commit is inside), RSS.
 *   B  one analyzer at full speed (no pacing): results/s, sessions/s, final-frame → ACK p50/p99.
 *   C  soak: A's load for `--soak-minutes` (0 = skip); RSS every 10 s; first/last/max and the slope
 *      (least squares, MiB/min) after a warm-up. Reported, not asserted.
 *
 * Each analyzer runs E1381 sessions back to back on one kept-open TCP connection: ENQ → ACK, one frame
 * per record (H, P, O, `--results` R of ~120 bytes, L) with FN 1,2,…,7,0,… and checksum, ACK awaited per
 * frame (NAK → same frame again, at most 6 times; 15 s without reply → EOT, session aborted), EOT.
 * Paced writes go out in chunks every `--chunk-ms` (default 20 ms ≈ 19 bytes at 9600 baud), the way a
 * serial-to-Ethernet converter forwards a slow line; the "final frame → ACK" interval starts when the
 * last byte of the frame holding the L record is written.
 *
 * Correctness: NAKs, timeouts and disconnects are counted; at the end the gateway's
 * `iomt_messages_committed_total` for the bench devices must equal the sessions whose final frame was
 * ACKed, the simulated HIS must have received as many ORU^R01, and the API must find the last
 * specimen id. Only 127.0.0.1; bounded: ≤64 analyzers, ≤600 s per scenario, ≤60 min soak.
 *
 * The flow is bench/astm-flow.json: four ASTM TCP listeners (the driver's TCP server accepts at most
 * 16 connections per listener), results forwarded as HL7 v2.5.1 to a simulated HIS, as in
 * flows/lab-astm-to-his.json. `--flow lab` uses flows/lab-astm-to-his.json itself (one listener).
 *
 *   node dist/bench/astm-bench.js [--duration 60] [--warmup 30] [--soak-minutes 10] [--analyzers 64]
 *     [--baud 9600] [--chunk-ms 20] [--results 10] [--reps 1] [--scenarios A,B,C] [--flow bench|lab]
 *     [--data-dir DIR] [--json FILE] [--no-doc]
 */
import { readFileSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { connect, type Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { monitorEventLoopDelay, performance } from 'node:perf_hooks';
import { execFileSync } from 'node:child_process';
import { ACK, ENQ, EOT, NAK, encodeFrames } from '../drivers/astm/frame';
import { SimulatedHis } from '../simulator/his/his';
import { BENCH_ADMIN_PASSWORD, freePort, machineInfo, startGatewayChild, median, parseArgs, repoRoot, rssKiB, RUNNING_TS, sleep, writeDocSection, type ChildTarget, type MachineInfo } from './bench-lib';

/** The driver's TCP server transport accepts at most this many sockets per listener (maxConnections default). */
const PER_LISTENER = 16;
const REPLY_TIMEOUT_MS = 15_000; // LIS01 §1.3.2 sender reply timer
const BUSY_RETRY_MS = 10_000; // LIS01 §1.3.1 NAK to ENQ → wait ≥10 s
const MAX_FRAME_TRIES = 6;

function log(s: string): void {
  process.stderr.write(s + '\n');
}

// ------------------------------------------------------------------------------------ messages

const TESTS: Array<[string, string, () => string, string, string]> = [
  ['WBC', 'White blood cell count', () => (4 + Math.random() * 6).toFixed(2), '10*3/uL', '4.00 to 10.00'],
  ['RBC', 'Red blood cell count', () => (4 + Math.random() * 1.5).toFixed(2), '10*6/uL', '4.20 to 5.40'],
  ['HGB', 'Hemoglobin', () => (11 + Math.random() * 6).toFixed(1), 'g/dL', '13.0 to 17.0'],
  ['HCT', 'Hematocrit', () => (35 + Math.random() * 15).toFixed(1), '%', '40.0 to 52.0'],
  ['PLT', 'Platelet count', () => String(Math.round(150 + Math.random() * 250)), '10*3/uL', '150 to 400'],
  ['MCV', 'Mean corpuscular volume', () => (80 + Math.random() * 20).toFixed(1), 'fL', '80.0 to 100.0'],
  ['MCH', 'Mean corpuscular hemoglobin', () => (27 + Math.random() * 6).toFixed(1), 'pg', '27.0 to 33.0'],
  ['GLU', 'Glucose', () => (3.5 + Math.random() * 4).toFixed(1), 'mmol/l', '3.9 to 6.1'],
  ['NA', 'Sodium', () => String(Math.round(132 + Math.random() * 14)), 'mmol/l', '135 to 145'],
  ['K', 'Potassium', () => (3.2 + Math.random() * 2).toFixed(1), 'mmol/l', '3.5 to 5.1'],
];

function astmTime(d: Date): string {
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}

/** One results message (records without CR): H, P, O, `nResults` R (~120 bytes each), L. */
export function resultMessage(analyzer: number, specimenId: string, seq: number, nResults: number): string[] {
  const now = astmTime(new Date());
  const done = astmTime(new Date(Date.now() - 20_000));
  const recs = [
    `H|\\^&|${specimenId}-M||BENCH-${analyzer}^XN-1000^00-21^^^SN${String(10000 + analyzer)}|||||LIS||P|LIS2-A2|${now}`,
    `P|1||PID${String(seq).padStart(8, '0')}||BENCH^PATIENT^${analyzer}||19800101|F`,
    `O|1|${specimenId}|^${1 + (seq % 50)}^${1 + (seq % 10)}|^^^WBC\\^^^HGB\\^^^PLT|R|${now}|||||N||||||||||||||F`,
  ];
  for (let i = 0; i < nResults; i++) {
    const [code, name, value, unit, range] = TESTS[i % TESTS.length];
    const v = value();
    recs.push(`R|${i + 1}|^^^${code}^${name}|${v}|${unit}|${range}|N||F||TECH01^Bench Operator||${done}|XN1000-${analyzer}^SN${10000 + analyzer}^HEMA-MOD-1`);
  }
  recs.push('L|1|N');
  return recs;
}

// ------------------------------------------------------------------------------------ pacing

interface PacedWrite {
  sock: Socket;
  buf: Buffer;
  off: number;
  t0: number;
  resolve: (tLast: number) => void;
}

/** One timer for all paced analyzers: every tick, each writes the bytes its line would have carried. */
class Pacer {
  private pending = new Set<PacedWrite>();
  private timer: NodeJS.Timeout | undefined;
  constructor(
    private readonly bytesPerMs: number,
    private readonly tickMs: number,
  ) {}

  write(sock: Socket, buf: Buffer): Promise<number> {
    return new Promise((resolve) => {
      this.pending.add({ sock, buf, off: 0, t0: performance.now(), resolve });
      this.timer ??= setInterval(() => this.tick(), this.tickMs);
    });
  }

  private tick(): void {
    const now = performance.now();
    for (const w of this.pending) {
      const due = Math.min(w.buf.length, Math.floor((now - w.t0) * this.bytesPerMs));
      if (due <= w.off) continue;
      if (!w.sock.destroyed) w.sock.write(w.buf.subarray(w.off, due));
      w.off = due;
      if (due === w.buf.length) {
        this.pending.delete(w);
        w.resolve(performance.now());
      }
    }
    if (!this.pending.size && this.timer) {
      clearInterval(this.timer);
      this.timer = undefined;
    }
  }

  stop(): void {
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    for (const w of this.pending) w.resolve(performance.now());
    this.pending.clear();
  }
}

// ------------------------------------------------------------------------------------ analyzer

export interface AnalyzerCounters {
  sessionsStarted: number;
  /** Final frame ACKed (= the message is committed). */
  sessionsAcked: number;
  results: number;
  naks: number;
  enqNaks: number;
  timeouts: number;
  /** Sessions aborted after the final frame had been written at least once (may or may not be committed). */
  abortedAfterFinal: number;
  disconnects: number;
  strayBytes: number;
}

interface Reply {
  b: number;
  t: number;
}

interface Window {
  from: number;
  to: number;
}

class Analyzer {
  readonly c: AnalyzerCounters = { sessionsStarted: 0, sessionsAcked: 0, results: 0, naks: 0, enqNaks: 0, timeouts: 0, abortedAfterFinal: 0, disconnects: 0, strayBytes: 0 };
  /** final-frame → ACK (ms) of sessions whose ACK arrived inside the window. */
  readonly lat: number[] = [];
  /** results / sessions ACKed inside the window. */
  winResults = 0;
  winSessions = 0;
  lastAckedSpecimen: string | undefined;
  private sock: Socket | undefined;
  private replies: Reply[] = [];
  private waiter: (() => void) | undefined;
  private seq = 0;
  private stopping = false;
  private closedFlag = false;

  constructor(
    readonly idx: number,
    private readonly port: number,
    private readonly tag: string,
    private readonly nResults: number,
    private readonly pacer: Pacer | undefined,
    private readonly win: Window,
  ) {}

  stop(): void {
    this.stopping = true;
    this.waiter?.();
  }

  private async connect(): Promise<Socket> {
    for (;;) {
      try {
        const s = await new Promise<Socket>((resolve, reject) => {
          const s = connect({ host: '127.0.0.1', port: this.port });
          s.setNoDelay(true);
          s.once('connect', () => {
            s.off('error', reject);
            resolve(s);
          });
          s.once('error', reject);
        });
        this.replies = [];
        this.closedFlag = false;
        s.on('data', (d: Buffer) => {
          const t = performance.now();
          for (const b of d) {
            if (b === ACK || b === NAK || b === EOT || b === ENQ) this.replies.push({ b, t });
            else this.c.strayBytes++;
          }
          this.waiter?.();
        });
        s.on('error', () => undefined);
        s.on('close', () => {
          this.closedFlag = true;
          this.waiter?.();
        });
        return s;
      } catch {
        this.c.disconnects++;
        if (this.stopping) throw new Error('stopped');
        await sleep(1000);
      }
    }
  }

  /** Next reply byte, or 'timeout' / 'closed'. */
  private async reply(timeoutMs: number): Promise<Reply | 'timeout' | 'closed'> {
    const end = performance.now() + timeoutMs;
    for (;;) {
      const r = this.replies.shift();
      if (r) return r;
      if (this.closedFlag) return 'closed';
      const left = end - performance.now();
      if (left <= 0) return 'timeout';
      await new Promise<void>((res) => {
        const t = setTimeout(res, left);
        this.waiter = () => {
          clearTimeout(t);
          this.waiter = undefined;
          res();
        };
      });
    }
  }

  private async writeFrame(buf: Buffer): Promise<number> {
    const s = this.sock!;
    if (this.pacer) return this.pacer.write(s, buf);
    s.write(buf);
    return performance.now();
  }

  async run(startDelayMs: number): Promise<void> {
    await sleep(startDelayMs);
    while (!this.stopping) {
      if (!this.sock || this.closedFlag) {
        if (this.sock) {
          this.c.disconnects++; // closed by the gateway (e.g. over the listener's connection limit): back off
          await sleep(1000);
          if (this.stopping) break;
        }
        try {
          this.sock = await this.connect();
        } catch {
          return;
        }
      }
      await this.session();
    }
    this.sock?.end();
    this.sock?.destroy();
  }

  private async session(): Promise<void> {
    const seq = ++this.seq;
    const specimen = `${this.tag}${String(this.idx).padStart(2, '0')}${String(seq).padStart(7, '0')}`;
    const recs = resultMessage(this.idx, specimen, seq, this.nResults);
    const frames: Buffer[] = [];
    let fn = 1; // LIS01 §1.2: the first frame of a transfer is '1', then modulo 8
    for (const r of recs) {
      const enc = encodeFrames(Buffer.from(r + '\r', 'latin1'), fn);
      frames.push(...enc.frames);
      fn = enc.nextFn;
    }
    this.c.sessionsStarted++;
    const s = this.sock!;
    // establishment
    for (;;) {
      s.write(Buffer.from([ENQ]));
      const r = await this.reply(REPLY_TIMEOUT_MS);
      if (r === 'closed') return;
      if (r === 'timeout') {
        this.c.timeouts++;
        s.write(Buffer.from([EOT]));
        return;
      }
      if (r.b === ACK) break;
      if (r.b === NAK) {
        this.c.enqNaks++;
        await sleep(BUSY_RETRY_MS);
        if (this.stopping) return;
        continue;
      }
      this.c.strayBytes++;
    }
    let finalWritten = false;
    for (let i = 0; i < frames.length; i++) {
      const last = i === frames.length - 1;
      let tries = 0;
      for (;;) {
        tries++;
        const tLast = await this.writeFrame(frames[i]);
        if (last) finalWritten = true;
        let r = await this.reply(REPLY_TIMEOUT_MS);
        while (typeof r === 'object' && r.b === ENQ) {
          this.c.strayBytes++; // the gateway never bids here (no orders); ignore
          r = await this.reply(REPLY_TIMEOUT_MS);
        }
        if (r === 'closed') {
          if (finalWritten) this.c.abortedAfterFinal++;
          return;
        }
        if (r === 'timeout') {
          this.c.timeouts++;
          if (finalWritten) this.c.abortedAfterFinal++;
          s.write(Buffer.from([EOT])); // LIS01 §1.3.2: no reply in 15 s → EOT, no retransmission
          return;
        }
        if (r.b === ACK || r.b === EOT) {
          // EOT = receiver interrupt: the frame was accepted
          if (last) {
            this.c.sessionsAcked++;
            this.c.results += this.nResults;
            this.lastAckedSpecimen = specimen;
            if (r.t >= this.win.from && r.t < this.win.to) {
              this.lat.push(r.t - tLast);
              this.winResults += this.nResults;
              this.winSessions++;
            }
          }
          break;
        }
        // NAK: same frame, same FN
        this.c.naks++;
        if (tries >= MAX_FRAME_TRIES) {
          if (finalWritten) this.c.abortedAfterFinal++;
          s.write(Buffer.from([EOT]));
          return;
        }
      }
    }
    s.write(Buffer.from([EOT])); // LIS01 §1.3.3 termination
  }
}

// ------------------------------------------------------------------------------------ gateway

interface Gateway {
  target: ChildTarget;
  pid: number;
  httpPort: number;
  /** TCP ports of the ASTM listeners. */
  astmPorts: number[];
  deviceIds: string[];
  stop(): Promise<void>;
}

async function startGateway(flow: 'bench' | 'lab', dataDir: string, hisPort: number): Promise<Gateway> {
  const root = repoRoot();
  const env: NodeJS.ProcessEnv = {
    ASTM_TCP_HOST: '127.0.0.1',
    HIS_HOST: '127.0.0.1',
    HIS_PORT: String(hisPort),
  };
  let flowFile: string;
  const astmPorts: number[] = [];
  let deviceIds: string[];
  if (flow === 'lab') {
    flowFile = join(root, 'flows', 'lab-astm-to-his.json');
    const p = await freePort();
    astmPorts.push(p);
    env.ASTM_TCP_PORT = String(p);
    env.ASTM_SERIAL_PATH = join(dataDir, 'no-such-serial-port'); // retried in the background, never blocks
    env.ORDERS_IN_HOST = '127.0.0.1';
    env.ORDERS_IN_PORT = String(await freePort());
    deviceIds = ['astm-tcp'];
  } else {
    flowFile = join(root, 'bench', 'astm-flow.json');
    deviceIds = [];
    for (let i = 1; i <= 4; i++) {
      const p = await freePort();
      astmPorts.push(p);
      env[`ASTM_TCP_PORT_${i}`] = String(p);
      deviceIds.push(`astm-tcp-${i}`);
    }
  }
  const { target, httpPort } = await startGatewayChild(flowFile, dataDir, env);
  // the listeners come up with the flow; wait until each accepts a connection
  for (const p of astmPorts) {
    const until = Date.now() + 30_000;
    for (;;) {
      const ok = await new Promise<boolean>((res) => {
        const s = connect({ host: '127.0.0.1', port: p });
        s.once('connect', () => (s.destroy(), res(true)));
        s.once('error', () => res(false));
      });
      if (ok) break;
      if (Date.now() > until) throw new Error(`ASTM listener on ${p} not up:\n${target.output()}`);
      await sleep(100);
    }
  }
  return { target, pid: target.pid, httpPort, astmPorts, deviceIds, stop: async () => void (await target.stop(10_000)) };
}

const AUTH = 'Basic ' + Buffer.from(`admin:${BENCH_ADMIN_PASSWORD}`).toString('base64');

async function metricsText(g: Gateway): Promise<string> {
  const r = await fetch(`http://127.0.0.1:${g.httpPort}/metrics`, { headers: { authorization: AUTH } });
  return r.ok ? r.text() : '';
}

/** Sum of a counter over the given devices (label device="…"). */
function counterSum(text: string, name: string, devices: string[]): number {
  let sum = 0;
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{') && !line.startsWith(name + ' ')) continue;
    const m = /device="([^"]*)"/.exec(line);
    if (devices.length && (!m || !devices.includes(m[1]))) continue;
    sum += Number(line.trim().split(/\s+/).at(-1));
  }
  return sum;
}

/** Cumulative histogram buckets `name_bucket{…le="x"} n`, summed over label sets. */
function histogram(text: string, name: string): Map<number, number> {
  const out = new Map<number, number>();
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '_bucket')) continue;
    const m = /le="([^"]+)"/.exec(line);
    if (!m) continue;
    const le = m[1] === '+Inf' ? Infinity : Number(m[1]);
    out.set(le, (out.get(le) ?? 0) + Number(line.trim().split(/\s+/).at(-1)));
  }
  return out;
}

/** Upper bucket bound holding the q-quantile of (after − before). */
function histQuantile(before: Map<number, number>, after: Map<number, number>, q: number): number {
  const les = [...after.keys()].sort((a, b) => a - b);
  const total = (after.get(Infinity) ?? 0) - (before.get(Infinity) ?? 0);
  if (total <= 0) return NaN;
  for (const le of les) if ((after.get(le) ?? 0) - (before.get(le) ?? 0) >= q * total) return le;
  return Infinity;
}

let CLK_TCK = 100;
try {
  CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
} catch {
  /* keep 100 */
}

/** utime+stime of a process (all threads) in seconds. */
function cpuSeconds(pid: number): number {
  const s = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
  return (Number(f[11]) + Number(f[12])) / CLK_TCK;
}

// ------------------------------------------------------------------------------------ scenarios

export interface ScenarioResult {
  scenario: 'A' | 'B' | 'C';
  rep: number;
  analyzers: number;
  paced: boolean;
  measuredS: number;
  sessions: number; // ACKed in the window
  results: number; // R records ACKed in the window
  resultsPerS: number;
  sessionsPerS: number;
  cpuPctOneCore: number;
  benchCpuPctOneCore: number;
  latP50: number;
  latP99: number;
  latMax: number;
  commitP99BucketS: number;
  benchLoopDelayP99Ms: number;
  rssIdleKiB: number;
  rssPeakKiB: number;
  rssEndKiB: number;
  totals: AnalyzerCounters;
  committed: number;
  duplicates: number;
  quarantined: number;
  rejected: number;
  hisReceived: number;
  apiFoundLast: boolean | undefined;
  soak?: { samples: Array<{ tS: number; rssKiB: number }>; warmupS: number; slopeMiBPerMin: number; residualMiB: number; firstKiB: number; lastKiB: number; maxKiB: number };
}

function pct(xs: number[], q: number): number {
  if (!xs.length) return NaN;
  const a = [...xs].sort((x, y) => x - y);
  return a[Math.min(a.length - 1, Math.ceil(q * a.length) - 1)];
}

function linReg(pts: Array<[number, number]>): { slope: number; resid: number } {
  const n = pts.length;
  if (n < 2) return { slope: NaN, resid: NaN };
  const mx = pts.reduce((a, p) => a + p[0], 0) / n;
  const my = pts.reduce((a, p) => a + p[1], 0) / n;
  let sxy = 0;
  let sxx = 0;
  for (const [x, y] of pts) {
    sxy += (x - mx) * (y - my);
    sxx += (x - mx) ** 2;
  }
  const slope = sxx ? sxy / sxx : NaN;
  const resid = Math.sqrt(pts.reduce((a, [x, y]) => a + (y - (my + slope * (x - mx))) ** 2, 0) / Math.max(1, n - 2));
  return { slope, resid };
}

interface Cfg {
  analyzers: number;
  durationS: number;
  warmupS: number;
  soakMinutes: number;
  bytesPerS: number;
  chunkMs: number;
  nResults: number;
  flow: 'bench' | 'lab';
}

async function runScenario(kind: 'A' | 'B' | 'C', rep: number, cfg: Cfg, baseDir: string): Promise<ScenarioResult> {
  const dataDir = mkdtempSync(join(baseDir, `astm-${kind}${rep}-`));
  let hisReceived = 0;
  const his = new SimulatedHis({ recordText: false, maxRecords: 0, onMessage: () => void hisReceived++ });
  await his.start();
  const g = await startGateway(cfg.flow, dataDir, his.port);
  const analyzersN = kind === 'B' ? 1 : cfg.analyzers;
  const paced = kind !== 'B';
  const soakS = cfg.soakMinutes * 60;
  const measureS = kind === 'C' ? soakS : cfg.durationS;
  const warmupS = kind === 'C' ? 0 : cfg.warmupS; // the soak measures from the start; its slope skips a warm-up
  const pacer = paced ? new Pacer(cfg.bytesPerS / 1000, cfg.chunkMs) : undefined;
  const loop = monitorEventLoopDelay({ resolution: 10 });
  try {
    await sleep(1000);
    const rssIdle = rssKiB(g.pid) ?? 0;
    const t0 = performance.now();
    const win: Window = { from: t0 + warmupS * 1000, to: t0 + (warmupS + measureS) * 1000 };
    const tag = `${kind}${rep}`;
    const as: Analyzer[] = [];
    // analyzers spread over the listeners (≤16 each), start times spread over ~2 s so they are not in lockstep
    for (let i = 0; i < analyzersN; i++) {
      const port = g.astmPorts.length === 1 ? g.astmPorts[0] : g.astmPorts[Math.floor(i / PER_LISTENER) % g.astmPorts.length];
      as.push(new Analyzer(i, port, tag, cfg.nResults, pacer, win));
    }
    const runs = as.map((a, i) => a.run(paced ? Math.floor((i * 2000) / analyzersN) : 0));
    // warm-up, then the measurement window
    await sleep(Math.max(0, win.from - performance.now()));
    const m0 = await metricsText(g);
    const cpu0 = cpuSeconds(g.pid);
    const bcpu0 = process.cpuUsage();
    const w0 = performance.now();
    loop.enable();
    let peak = rssKiB(g.pid) ?? 0;
    const samples: Array<{ tS: number; rssKiB: number }> = [];
    let nextSample = w0;
    while (performance.now() < win.to) {
      const now = performance.now();
      const v = rssKiB(g.pid);
      if (v !== undefined) {
        peak = Math.max(peak, v);
        if (kind === 'C' && now >= nextSample) {
          samples.push({ tS: (now - w0) / 1000, rssKiB: v });
          nextSample += 10_000;
          log(`  soak t=${((now - w0) / 1000).toFixed(0)} s rss ${(v / 1024).toFixed(1)} MiB, sessions ${as.reduce((a, x) => a + x.c.sessionsAcked, 0)}`);
        }
      }
      await sleep(Math.min(kind === 'C' ? 1000 : 250, Math.max(1, win.to - performance.now())));
    }
    const w1 = performance.now();
    const cpu1 = cpuSeconds(g.pid);
    const bcpu = process.cpuUsage(bcpu0);
    loop.disable();
    const m1 = await metricsText(g);
    if (kind === 'C') {
      const v = rssKiB(g.pid);
      if (v !== undefined) samples.push({ tS: (w1 - w0) / 1000, rssKiB: v });
    }
    const rssEnd = rssKiB(g.pid) ?? 0;
    // stop: every analyzer finishes its session (bounded), then closes
    for (const a of as) a.stop();
    await Promise.race([Promise.all(runs), sleep(45_000)]);
    pacer?.stop();
    const totals = as.reduce<AnalyzerCounters>(
      (t, a) => {
        for (const k of Object.keys(t) as Array<keyof AnalyzerCounters>) t[k] += a.c[k];
        return t;
      },
      { sessionsStarted: 0, sessionsAcked: 0, results: 0, naks: 0, enqNaks: 0, timeouts: 0, abortedAfterFinal: 0, disconnects: 0, strayBytes: 0 },
    );
    // verification: committed counter = sessions ACKed; HIS got them all; the API finds the last specimen
    await sleep(500);
    const m2 = await metricsText(g);
    const committed = counterSum(m2, 'iomt_messages_committed_total', g.deviceIds);
    const until = Date.now() + 30_000;
    while (hisReceived < committed && Date.now() < until) await sleep(100);
    let apiFoundLast: boolean | undefined;
    const last = as.find((a) => a.lastAckedSpecimen);
    if (last) {
      const dev = g.deviceIds.length === 1 ? g.deviceIds[0] : g.deviceIds[Math.floor(last.idx / PER_LISTENER) % g.deviceIds.length];
      const r = await fetch(`http://127.0.0.1:${g.httpPort}/api/v1/messages?deviceId=${dev}&specimenId=${last.lastAckedSpecimen}&limit=1`, { headers: { authorization: AUTH } }).catch(() => undefined);
      if (r?.ok) apiFoundLast = ((await r.json()) as { messages: unknown[] }).messages.length === 1;
      else apiFoundLast = false;
    }
    const lat = as.flatMap((a) => a.lat);
    const measured = (w1 - w0) / 1000;
    const winResults = as.reduce((s, a) => s + a.winResults, 0);
    const winSessions = as.reduce((s, a) => s + a.winSessions, 0);
    const res: ScenarioResult = {
      scenario: kind,
      rep,
      analyzers: analyzersN,
      paced,
      measuredS: measured,
      sessions: winSessions,
      results: winResults,
      resultsPerS: winResults / measured,
      sessionsPerS: winSessions / measured,
      cpuPctOneCore: ((cpu1 - cpu0) / measured) * 100,
      benchCpuPctOneCore: ((bcpu.user + bcpu.system) / 1e6 / measured) * 100,
      latP50: pct(lat, 0.5),
      latP99: pct(lat, 0.99),
      latMax: lat.length ? Math.max(...lat) : NaN,
      commitP99BucketS: histQuantile(histogram(m0, 'iomt_commit_latency_seconds'), histogram(m1, 'iomt_commit_latency_seconds'), 0.99),
      benchLoopDelayP99Ms: loop.percentile(99) / 1e6,
      rssIdleKiB: rssIdle,
      rssPeakKiB: peak,
      rssEndKiB: rssEnd,
      totals,
      committed,
      duplicates: counterSum(m2, 'iomt_messages_duplicate_total', g.deviceIds),
      quarantined: counterSum(m2, 'iomt_messages_quarantined_total', g.deviceIds),
      rejected: counterSum(m2, 'iomt_messages_rejected_total', g.deviceIds),
      hisReceived,
      apiFoundLast,
    };
    if (kind === 'C') {
      // warm-up: the first quarter of the soak, at most 2 minutes
      const warm = Math.min(120, soakS / 4);
      const pts = samples.filter((s) => s.tS >= warm).map((s): [number, number] => [s.tS / 60, s.rssKiB / 1024]);
      const { slope, resid } = linReg(pts);
      res.soak = {
        samples,
        warmupS: warm,
        slopeMiBPerMin: slope,
        residualMiB: resid,
        firstKiB: samples[0]?.rssKiB ?? 0,
        lastKiB: samples.at(-1)?.rssKiB ?? 0,
        maxKiB: Math.max(...samples.map((s) => s.rssKiB)),
      };
    }
    return res;
  } finally {
    pacer?.stop();
    await g.stop();
    await his.stop();
    rmSync(dataDir, { recursive: true, force: true });
  }
}

// ------------------------------------------------------------------------------------ report

const f0 = (x: number) => (Number.isFinite(x) ? x.toFixed(0) : 'n/a');
const f1 = (x: number) => (Number.isFinite(x) ? x.toFixed(1) : 'n/a');
const f2 = (x: number) => (Number.isFinite(x) ? x.toFixed(2) : 'n/a');
const mib = (kib: number) => (kib / 1024).toFixed(0);

function checkText(r: ScenarioResult): string {
  const t = r.totals;
  const parts: string[] = [];
  const ok = r.committed === t.sessionsAcked;
  parts.push(`${ok ? '✔' : '✘'} committed ${r.committed} / ACKed ${t.sessionsAcked}`);
  if (r.hisReceived !== r.committed) parts.push(`HIS got ${r.hisReceived}`);
  else parts.push('HIS got all');
  if (r.apiFoundLast !== undefined) parts.push(r.apiFoundLast ? 'last specimen found via API' : 'last specimen NOT found via API');
  if (t.naks) parts.push(`${t.naks} NAKs`);
  if (t.enqNaks) parts.push(`${t.enqNaks} ENQ NAKs (busy)`);
  if (t.timeouts) parts.push(`${t.timeouts} timeouts`);
  if (t.abortedAfterFinal) parts.push(`${t.abortedAfterFinal} aborted after the final frame`);
  if (t.disconnects) parts.push(`${t.disconnects} disconnects/refusals`);
  if (r.duplicates) parts.push(`${r.duplicates} duplicates`);
  if (r.quarantined) parts.push(`${r.quarantined} quarantined`);
  if (r.rejected) parts.push(`${r.rejected} rejected`);
  if (!t.naks && !t.timeouts && !t.enqNaks && !t.disconnects) parts.push('0 NAKs/timeouts');
  return parts.join(', ');
}

export function renderMarkdown(a: { command: string; info: MachineInfo; cfg: Cfg; reps: number; results: ScenarioResult[]; skipped: string[] }): string {
  const { info, cfg, results } = a;
  const L: string[] = [];
  const A = results.filter((r) => r.scenario === 'A');
  const B = results.filter((r) => r.scenario === 'B');
  const C = results.filter((r) => r.scenario === 'C');
  const med = (rs: ScenarioResult[], f: (r: ScenarioResult) => number) => median(rs.map(f));
  L.push('## ASTM over TCP (E1381/E1394 analyzers → gateway → HL7 to the HIS)');
  L.push('');
  L.push(`Machine: ${info.nproc} CPUs (nproc), ${info.cpu}, ${info.os}, Node ${info.node}, data dir on ${info.fs ?? 'unknown fs'}; run on ${info.date}.`);
  L.push('');
  L.push('Command:');
  L.push('');
  L.push('```');
  L.push(a.command);
  L.push('```');
  L.push('');
  L.push(
    `Durations used: scenarios A and B ${cfg.durationS} s measured each (after ${cfg.warmupS} s warm-up: V8's background compiler threads use several % of a core for the first ~20-30 s under load, then ~1 %; the steady state is what a gateway running for months costs), ${a.reps} run${a.reps > 1 ? 's (cells are medians)' : ''}; soak C ${cfg.soakMinutes} min, its CPU measured from the start. ` +
      `The issue's targets are for the defaults (\`--duration 60 --soak-minutes 10\`).`,
  );
  L.push('');
  L.push(
    `Flow: ${cfg.flow === 'lab' ? '`flows/lab-astm-to-his.json` (one ASTM TCP listener)' : '`bench/astm-flow.json` (four ASTM TCP listeners, ≤16 analyzers each; generic LIS2-A2 profile)'}; every committed message is ` +
      'forwarded as HL7 v2.5.1 ORU^R01 to a simulated HIS (AA), so the gateway CPU includes commit, outbox and forward. ' +
      `Each analyzer keeps one TCP connection and sends sessions back to back: ENQ, one frame per record — H, P, O, ${cfg.nResults} R (~120 bytes), L — ` +
      `ACK awaited per frame, EOT; ~${f0(resultMessage(0, 'A0000000001', 1, cfg.nResults).reduce((s, r) => s + r.length + 8, 0))} bytes per session. ` +
      `Paced = ${cfg.bytesPerS} bytes/s per analyzer (${cfg.bytesPerS * 10} baud 8N1), written in ${cfg.chunkMs} ms chunks. ` +
      'Final frame → ACK = last byte of the frame holding the L record written → ACK read (the gateway ACKs it only after the commit). ' +
      'CPU = utime+stime of the gateway process (all threads) from /proc/<pid>/stat over the measured window ÷ wall time (100 % = one core). ' +
      'The analyzers run in the benchmark process on the same machine (its CPU is shown for reference).',
  );
  L.push('');
  L.push('| scenario | analyzers | results/s | sessions/s | gateway CPU % of one core | final frame → ACK p50 ms | p99 ms | max ms | commit p99 (gateway histogram bucket) | RSS idle → peak MiB | bench CPU % | checks (whole run) |');
  L.push('|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|');
  const row = (label: string, rs: ScenarioResult[]) => {
    if (!rs.length) return;
    const cb = med(rs, (r) => r.commitP99BucketS);
    L.push(
      `| ${label} | ${rs[0].analyzers} | ${f1(med(rs, (r) => r.resultsPerS))} | ${f2(med(rs, (r) => r.sessionsPerS))} | ${f1(med(rs, (r) => r.cpuPctOneCore))} | ` +
        `${f2(med(rs, (r) => r.latP50))} | ${f2(med(rs, (r) => r.latP99))} | ${f2(Math.max(...rs.map((r) => r.latMax)))} | ${Number.isFinite(cb) ? `≤ ${cb * 1000} ms` : 'n/a'} | ` +
        `${mib(med(rs, (r) => r.rssIdleKiB))} → ${mib(Math.max(...rs.map((r) => r.rssPeakKiB)))} | ${f1(med(rs, (r) => r.benchCpuPctOneCore))} | ${rs.map(checkText).join('; ')} |`,
    );
  };
  row(`A: paced ${cfg.bytesPerS * 10} baud`, A);
  row('B: one analyzer, full speed', B);
  row(`C: soak, paced (${cfg.soakMinutes} min)`, C);
  L.push('');
  for (const c of C) {
    const s = c.soak!;
    const growth = s.slopeMiBPerMin * ((c.measuredS - s.warmupS) / 60);
    const within = Math.abs(growth) <= 2 * s.residualMiB + 1;
    L.push(
      `Soak RSS (gateway VmRSS every 10 s): first ${f1(s.firstKiB / 1024)} MiB, last ${f1(s.lastKiB / 1024)} MiB, max ${f1(s.maxKiB / 1024)} MiB; ` +
        `slope after ${f0(s.warmupS)} s warm-up ${f2(s.slopeMiBPerMin)} MiB/min over ${s.samples.filter((x) => x.tS >= s.warmupS).length} samples ` +
        `(residual σ ${f2(s.residualMiB)} MiB; fitted change over the fitted span ${f2(growth)} MiB: ${within ? 'within noise (≤ 2σ + 1 MiB)' : 'larger than the noise'}).`,
    );
    L.push('');
    L.push(`Samples (s → MiB): ${s.samples.map((x) => `${f0(x.tS)}→${f1(x.rssKiB / 1024)}`).join(', ')}.`);
    L.push('');
  }
  const tA = med(A, (r) => r.cpuPctOneCore);
  const tP = Math.max(med(A, (r) => r.latP99), ...C.map((r) => r.latP99));
  const lines: string[] = [];
  if (A.length) lines.push(`${cfg.analyzers} paced analyzers under 15 % of one core: ${f1(tA)} % → ${tA < 15 ? 'met' : 'NOT met'}`);
  if (A.length || C.length) lines.push(`p99 final frame → ACK (commit included) under 50 ms with the paced load: ${f2(tP)} ms → ${tP < 50 ? 'met' : 'NOT met'}`);
  if (B.length) {
    const bp = med(B, (r) => r.latP99);
    lines.push(`(full-speed single analyzer p99: ${f2(bp)} ms)`);
  }
  for (const c of C) {
    const s = c.soak!;
    lines.push(`no RSS growth over the soak: slope ${f2(s.slopeMiBPerMin)} MiB/min (reported, not asserted; ${cfg.soakMinutes} min run)`);
  }
  if (lines.length) {
    L.push('Targets (issue): ' + lines.join('; ') + '.');
    L.push('');
  }
  if (a.skipped.length) {
    L.push(`Not run / failed: ${a.skipped.join('; ')}.`);
    L.push('');
  }
  L.push(
    'Notes: the listener limit of 16 connections is the driver\'s `TcpServerTransport` default (`maxConnections`), which the `iomt-astm-device` node does not expose; ' +
      'with `flows/lab-astm-to-his.json` (one listener) analyzers 17… are disconnected right after connecting (`--flow lab` shows it as disconnects/refusals). ' +
      'Only 127.0.0.1 is used; a fresh gateway process and data dir per scenario.',
  );
  return L.join('\n');
}

// ------------------------------------------------------------------------------------ main

async function main(argv: string[]): Promise<number> {
  const a = parseArgs(argv);
  const cfg: Cfg = {
    analyzers: Number(a.analyzers ?? 64),
    durationS: Number(a.duration ?? 60),
    warmupS: Number(a.warmup ?? 30), // V8 compiles the hot paths during the first ~20-30 s (background threads): measured after, the CPU is the steady state
    soakMinutes: Number(a['soak-minutes'] ?? 10),
    bytesPerS: Number(a.baud ?? 9600) / 10,
    chunkMs: Number(a['chunk-ms'] ?? 20),
    nResults: Number(a.results ?? 10),
    flow: (a.flow ?? 'bench') as Cfg['flow'],
  };
  const reps = Number(a.reps ?? 1);
  const scenarios = (a.scenarios ?? 'A,B,C').split(',').map((s) => s.trim().toUpperCase());
  if (
    !(
      Number.isInteger(cfg.analyzers) && cfg.analyzers >= 1 && cfg.analyzers <= 64 &&
      cfg.durationS >= 1 && cfg.durationS <= 600 &&
      cfg.warmupS >= 0 && cfg.warmupS <= 120 &&
      cfg.soakMinutes >= 0 && cfg.soakMinutes <= 60 &&
      cfg.bytesPerS >= 30 && cfg.bytesPerS <= 100_000 &&
      cfg.chunkMs >= 1 && cfg.chunkMs <= 1000 &&
      Number.isInteger(cfg.nResults) && cfg.nResults >= 1 && cfg.nResults <= 100 &&
      reps >= 1 && reps <= 5 &&
      (cfg.flow === 'bench' || cfg.flow === 'lab') &&
      scenarios.every((s) => ['A', 'B', 'C'].includes(s))
    )
  ) {
    throw new Error('bounds: --analyzers 1..64, --duration 1..600, --warmup 0..120, --soak-minutes 0..60, --baud 300..1000000, --chunk-ms 1..1000, --results 1..100, --reps 1..5, --flow bench|lab, --scenarios A,B,C');
  }
  const baseDir = a['data-dir'] ?? tmpdir();
  mkdirSync(baseDir, { recursive: true });
  const workDir = mkdtempSync(join(baseDir, 'iomt-bench-astm-'));
  const info = machineInfo(workDir);
  const results: ScenarioResult[] = [];
  const skipped: string[] = [];
  try {
    const plan: Array<'A' | 'B' | 'C'> = [];
    for (let rep = 1; rep <= reps; rep++) {
      if (scenarios.includes('A')) plan.push('A');
      if (scenarios.includes('B')) plan.push('B');
    }
    if (scenarios.includes('C') && cfg.soakMinutes > 0) plan.push('C');
    const repOf: Record<string, number> = {};
    for (const k of plan) {
      const rep = (repOf[k] = (repOf[k] ?? 0) + 1);
      log(`scenario ${k} rep ${rep}: ${k === 'B' ? 1 : cfg.analyzers} analyzer(s), ${k === 'C' ? `${cfg.soakMinutes} min soak` : `${cfg.durationS} s`} ...`);
      try {
        const r = await runScenario(k, rep, cfg, workDir);
        results.push(r);
        log(
          `  ${r.resultsPerS.toFixed(1)} results/s, ${r.sessionsPerS.toFixed(2)} sessions/s, gateway CPU ${r.cpuPctOneCore.toFixed(1)} % (bench ${r.benchCpuPctOneCore.toFixed(1)} %), ` +
            `final→ACK p50 ${f2(r.latP50)} p99 ${f2(r.latP99)} max ${f2(r.latMax)} ms, commit p99 ≤ ${r.commitP99BucketS * 1000} ms, bench loop p99 ${f2(r.benchLoopDelayP99Ms)} ms, ` +
            `RSS ${mib(r.rssIdleKiB)}→${mib(r.rssPeakKiB)} MiB; ${checkText(r)}`,
        );
        if (r.soak) log(`  soak slope ${f2(r.soak.slopeMiBPerMin)} MiB/min (σ ${f2(r.soak.residualMiB)} MiB)`);
      } catch (e) {
        log(`  failed: ${String(e).slice(0, 800)}`);
        skipped.push(`${k} rep ${rep}: ${String(e).split('\n')[0].slice(0, 160)}`);
      }
    }
  } finally {
    rmSync(workDir, { recursive: true, force: true });
  }
  const command = `${RUNNING_TS ? 'node --import tsx bench/astm-bench.ts' : 'npm run bench:astm --'} ${argv.join(' ')}`.trim();
  const md = renderMarkdown({ command, info, cfg, reps, results, skipped });
  process.stdout.write(md + '\n');
  if (a.json) writeFileSync(a.json, JSON.stringify({ info, cfg, reps, results, skipped }, null, 2));
  if (a['no-doc'] === undefined) log(`wrote ${writeDocSection('astm', md)}`);
  const bad = results.some((r) => r.committed !== r.totals.sessionsAcked) || skipped.length > 0;
  return bad ? 1 : 0;
}

if (require.main === module) {
  process.env.IOMT_LOG_LEVEL ??= 'warn';
  main(process.argv.slice(2)).then(
    (c) => process.exit(c),
    (e) => {
      process.stderr.write(`${String(e)}\n`);
      process.exit(1);
    },
  );
}
