import { spawn, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { freePort, waitFor } from './env';

export const ROOT = join(__dirname, '..', '..');
export const CLI = join(ROOT, 'dist', 'gateway', 'src', 'cli.js');
export const ADMIN_PASSWORD = 'test-admin-pw-1234';

export interface GatewayProcess {
  child: ChildProcess;
  httpPort: number;
  hl7Port: number;
  dataDir: string;
  output(): string;
  /** GET/POST the JSON API with the admin login. */
  api(path: string, init?: RequestInit): Promise<any>;
  metrics(): Promise<string>;
  kill(signal?: NodeJS.Signals): Promise<number | null>;
}

/** Start the built gateway CLI (`npm run build` first; `npm test` does) as a real child process. */
export async function startGatewayProcess(opts: { dataDir: string; flows?: string; env?: Record<string, string>; hl7Port?: number; httpPort?: number; https?: boolean }): Promise<GatewayProcess> {
  const httpPort = opts.httpPort ?? (await freePort());
  const hl7Port = opts.hl7Port ?? (await freePort());
  const child = spawn(process.execPath, [CLI, 'run', '--flows', opts.flows ?? join(ROOT, 'flows', 'hl7-relay.json')], {
    cwd: ROOT,
    env: {
      ...process.env,
      IOMT_DATA_DIR: opts.dataDir,
      IOMT_HTTP_HOST: '127.0.0.1',
      IOMT_HTTP_PORT: String(httpPort),
      IOMT_ADMIN_PASSWORD: ADMIN_PASSWORD,
      IOMT_LOG_LEVEL: process.env.IOMT_TEST_LOG_LEVEL ?? 'warn',
      HL7_IN_HOST: '127.0.0.1',
      HL7_IN_PORT: String(hl7Port),
      ...opts.env,
    },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((r) => child.once('exit', (code) => r(code)));
  const auth = 'Basic ' + Buffer.from(`admin:${ADMIN_PASSWORD}`).toString('base64');
  const base = `${opts.https ? 'https' : 'http'}://127.0.0.1:${httpPort}`;
  let dead = false;
  void exited.then(() => (dead = true));
  await waitFor(async () => {
    if (dead) throw new Error(`gateway exited during start:\n${out}`);
    if (opts.https) return httpsOk(`${base}/readyz`);
    const r = await fetch(`${base}/readyz`).catch(() => undefined);
    return r?.ok;
  }, 30_000, 100).catch((e) => {
    child.kill('SIGKILL');
    throw new Error(`gateway did not become ready: ${String(e)}\n${out}`);
  });
  return {
    child,
    httpPort,
    hl7Port,
    dataDir: opts.dataDir,
    output: () => out,
    api: async (path, init) => {
      const r = await fetch(`${base}/api/v1${path}`, { ...init, headers: { authorization: auth, 'content-type': 'application/json', ...(init?.headers ?? {}) } });
      const body = await r.json();
      if (!r.ok) throw new Error(`${r.status} ${JSON.stringify(body)}`);
      return body;
    },
    metrics: async () => (await fetch(`${base}/metrics`)).text(),
    kill: async (signal = 'SIGTERM') => {
      if (!dead) child.kill(signal);
      return exited;
    },
  };
}

/** GET over HTTPS without verifying (readiness probe only; tests verify the chain themselves). */
function httpsOk(url: string): Promise<boolean> {
  return new Promise((resolve) => {
    require('node:https')
      .get(url, { rejectUnauthorized: false }, (res: import('node:http').IncomingMessage) => {
        res.resume();
        resolve(res.statusCode === 200);
      })
      .on('error', () => resolve(false));
  });
}
