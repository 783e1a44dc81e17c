/**
 * Small helpers shared by the benchmarks: free ports, child processes (built .js or .ts via tsx),
 * RSS sampling from /proc, machine description, and replacing a marked section of docs/BENCHMARKS.md.
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import os from 'node:os';
import { dirname, join } from 'node:path';

/** Repository root: the nearest directory upwards holding package.json (works from bench/ and dist/bench/). */
export function repoRoot(): string {
  let d = __dirname;
  for (;;) {
    if (existsSync(join(d, 'package.json')) && existsSync(join(d, 'tsconfig.json'))) return d;
    const up = dirname(d);
    if (up === d) throw new Error('repository root not found');
    d = up;
  }
}

/** True when running from TypeScript sources (node --import tsx), false from dist/. */
export const RUNNING_TS = __filename.endsWith('.ts');

/** Command line to run another bench script (`name` without extension) the same way we run. */
export function scriptArgs(name: string): string[] {
  return RUNNING_TS ? ['--import', 'tsx', join(__dirname, `${name}.ts`)] : [join(__dirname, `${name}.js`)];
}

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const a = s.address();
      const port = typeof a === 'object' && a ? a.port : 0;
      s.close(() => resolve(port));
    });
  });
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

/** VmRSS of a process in KiB (Linux /proc), undefined when unavailable. */
export function rssKiB(pid: number): number | undefined {
  try {
    const m = /VmRSS:\s+(\d+)\s+kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined;
  }
}

/** Sample VmRSS every `everyMs` until stopped; returns the peak in KiB. */
export function rssSampler(pid: number, everyMs = 100): { stop(): number } {
  let peak = rssKiB(pid) ?? 0;
  const t = setInterval(() => {
    const v = rssKiB(pid);
    if (v !== undefined && v > peak) peak = v;
  }, everyMs);
  return {
    stop() {
      clearInterval(t);
      const v = rssKiB(pid);
      if (v !== undefined && v > peak) peak = v;
      return peak;
    },
  };
}

export interface ChildTarget {
  child: ChildProcess;
  pid: number;
  output(): string;
  /** Lines starting with `prefix ` parsed as JSON (the last one). */
  lastJson(prefix: string): any;
  /** SIGTERM, then SIGKILL after `graceMs`; resolves with the exit code. */
  stop(graceMs?: number): Promise<number | null>;
}

/**
 * Spawn a child and wait until its stdout has a line `READY <json>`; resolves with the child and the
 * parsed json. Fails (and kills the child) after `timeoutMs` or if it exits first.
 */
export async function spawnReady(cmd: string, args: string[], opts: { env?: NodeJS.ProcessEnv; cwd?: string; timeoutMs?: number; readyPattern?: RegExp; noWait?: boolean } = {}): Promise<{ target: ChildTarget; ready: any }> {
  const child = spawn(cmd, args, { cwd: opts.cwd ?? repoRoot(), env: opts.env ?? process.env, stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  let dead = false;
  void exited.then(() => (dead = true));
  child.stdout!.on('data', (d) => (out = (out + d).slice(-200_000)));
  child.stderr!.on('data', (d) => (out = (out + d).slice(-200_000)));
  const lastJson = (prefix: string): any => {
    const lines = out.split('\n').filter((l) => l.startsWith(prefix + ' '));
    const l = lines.at(-1);
    return l ? JSON.parse(l.slice(prefix.length + 1)) : undefined;
  };
  const target: ChildTarget = {
    child,
    pid: child.pid ?? -1,
    output: () => out,
    lastJson,
    stop: async (graceMs = 5000) => {
      if (dead) return exited;
      child.kill('SIGTERM');
      const t = setTimeout(() => child.kill('SIGKILL'), graceMs);
      const code = await exited;
      clearTimeout(t);
      return code;
    },
  };
  if (opts.noWait) return { target, ready: undefined };
  const end = Date.now() + (opts.timeoutMs ?? 30_000);
  const pattern = opts.readyPattern;
  for (;;) {
    if (pattern ? pattern.test(out) : lastJson('READY') !== undefined) break;
    if (dead) throw new Error(`${args.join(' ')} exited before it was ready:\n${out}`);
    if (Date.now() > end) {
      child.kill('SIGKILL');
      throw new Error(`${args.join(' ')} not ready in time:\n${out}`);
    }
    await sleep(20);
  }
  return { target, ready: pattern ? undefined : lastJson('READY') };
}

export interface MachineInfo {
  nproc: number;
  cpu: string;
  node: string;
  date: string;
  os: string;
  fs?: string;
}

export function machineInfo(dataDir?: string): MachineInfo {
  let cpu = os.cpus()[0]?.model ?? 'unknown';
  try {
    const m = /^model name\s*:\s*(.+)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'));
    if (m) cpu = m[1].trim();
  } catch {
    /* not Linux */
  }
  let nproc = os.availableParallelism();
  try {
    nproc = Number(execFileSync('nproc', { encoding: 'utf8' }).trim()) || nproc;
  } catch {
    /* keep */
  }
  let fs: string | undefined;
  if (dataDir) {
    try {
      fs = execFileSync('findmnt', ['-n', '-o', 'FSTYPE', '-T', dataDir], { encoding: 'utf8' }).trim();
    } catch {
      /* unknown */
    }
  }
  return { nproc, cpu, node: process.version, date: new Date().toISOString().slice(0, 10), os: `${os.type()} ${os.release()}`, fs };
}

export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const a = [...xs].sort((x, y) => x - y);
  const m = a.length >> 1;
  return a.length % 2 ? a[m] : (a[m - 1] + a[m]) / 2;
}

/**
 * Replace the text between `<!-- name:start -->` and `<!-- name:end -->` in docs/BENCHMARKS.md
 * (appending the section when the markers are absent; creating the file when needed).
 */
export function writeDocSection(name: string, body: string, file = join(repoRoot(), 'docs', 'BENCHMARKS.md')): string {
  const start = `<!-- ${name}:start -->`;
  const end = `<!-- ${name}:end -->`;
  const block = `${start}\n${body.trim()}\n${end}`;
  let text = existsSync(file) ? readFileSync(file, 'utf8') : '# Benchmarks\n\nResults of the programs in `bench/`. Each section is rewritten by its benchmark; numbers are from the machine named in the section.\n';
  const i = text.indexOf(start);
  const j = text.indexOf(end);
  if (i >= 0 && j > i) text = text.slice(0, i) + block + text.slice(j + end.length);
  else text = text.replace(/\s*$/, '\n\n') + block + '\n';
  writeFileSync(file, text);
  return file;
}

/** Minimal `--key value` / `--flag` parser for the bench scripts. */
export function parseArgs(argv: string[]): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new Error(`unexpected argument ${a}`);
    const k = a.slice(2);
    const eq = k.indexOf('=');
    if (eq >= 0) out[k.slice(0, eq)] = k.slice(eq + 1);
    else if (argv[i + 1] !== undefined && !argv[i + 1].startsWith('--')) out[k] = argv[++i];
    else out[k] = 'true';
  }
  return out;
}

/** Admin password of the gateways the benchmarks start (only 127.0.0.1, a throw-away data dir). */
export const BENCH_ADMIN_PASSWORD = 'bench-admin-pw-0000';

/** The gateway's CLI entry: dist when built, else the TypeScript source through tsx (development). */
export function gatewayCli(): { args: string[]; why?: string } {
  const root = repoRoot();
  const dist = join(root, 'dist', 'gateway', 'src', 'cli.js');
  if (existsSync(dist)) return { args: [dist] };
  const src = join(root, 'gateway', 'src', 'cli.ts');
  if (RUNNING_TS && existsSync(src)) return { args: ['--import', 'tsx', src] };
  return { args: [], why: 'gateway CLI not built (npm run build)' };
}

/**
 * Start `iomt-gateway run --flows FILE` as a child process (`IOMT_BENCH_NODE_ARGS`: extra node flags,
 * e.g. --cpu-prof) and wait until /readyz answers 200 (at most 60 s).
 */
export async function startGatewayChild(flowFile: string, dataDir: string, env: NodeJS.ProcessEnv): Promise<{ target: ChildTarget; httpPort: number }> {
  const cli = gatewayCli();
  if (cli.why) throw new Error(cli.why);
  const httpPort = await freePort();
  const fullEnv: NodeJS.ProcessEnv = {
    ...process.env,
    IOMT_DATA_DIR: dataDir,
    IOMT_HTTP_HOST: '127.0.0.1',
    IOMT_HTTP_PORT: String(httpPort),
    IOMT_ADMIN_PASSWORD: BENCH_ADMIN_PASSWORD,
    IOMT_LOG_LEVEL: process.env.IOMT_BENCH_LOG_LEVEL ?? 'warn',
    ...env,
  };
  const nodeArgs = process.env.IOMT_BENCH_NODE_ARGS ? process.env.IOMT_BENCH_NODE_ARGS.split(' ') : [];
  const { target } = await spawnReady(process.execPath, [...nodeArgs, ...cli.args, 'run', '--flows', flowFile], { env: fullEnv, noWait: true });
  const end = Date.now() + 60_000;
  for (;;) {
    const r = await fetch(`http://127.0.0.1:${httpPort}/readyz`).catch(() => undefined);
    if (r?.ok) return { target, httpPort };
    if (target.child.exitCode !== null) throw new Error(`gateway exited during start:\n${target.output()}`);
    if (Date.now() > end) {
      await target.stop(1000);
      throw new Error(`gateway not ready within 60 s:\n${target.output()}`);
    }
    await sleep(100);
  }
}

/**
 * The protocol of a benchmark target child process: print `READY {port,pid}` when listening; on
 * SIGTERM/SIGINT close, print `STATS {...}` and exit (read by `spawnReady` / `ChildTarget.lastJson`).
 */
export function serveAsTarget(port: number, close: () => Promise<unknown>, stats: () => unknown): void {
  process.stdout.write(`READY ${JSON.stringify({ port, pid: process.pid })}\n`);
  const stop = async () => {
    await close();
    process.stdout.write(`STATS ${JSON.stringify(stats())}\n`, () => process.exit(0));
  };
  process.once('SIGTERM', () => void stop());
  process.once('SIGINT', () => void stop());
}

/** Run a child's main; a failure is printed and exits 1. */
export function runMain(main: () => Promise<unknown>): void {
  main().catch((e) => {
    process.stderr.write(`${String(e)}\n`);
    process.exit(1);
  });
}
