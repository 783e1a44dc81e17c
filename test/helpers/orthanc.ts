/**
 * A real Orthanc (Debian's /usr/sbin/Orthanc) as the upstream PACS in tests and the benchmark
 * (peers.md "DICOM"): its own config, storage and index dir, free ports, RemoteAccessAllowed false,
 * a REST user, DicomCheckCalledAet true. Stop it with stop(): SIGTERM, then SIGKILL after 10 s; the
 * next start on the same dir waits for the old process to be gone (one Orthanc per index dir).
 *
 * Optional Lua `ReceivedInstanceFilter` (Orthanc Book "Lua scripting"): instances it refuses get a
 * C-STORE failure status, so a test can see a PACS refuse one instance and take the others.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { freePort, requirePeer, waitFor } from './env';

export interface OrthancOptions {
  dir: string; // config, storage and index go below it
  aet?: string; // default 'ORTHANC'
  dicomPort?: number; // default: a free port
  httpPort?: number; // default: a free port
  /** Lua source defining e.g. ReceivedInstanceFilter(dicom, origin, info) */
  lua?: string;
  /** Orthanc config keys to add or override */
  extra?: Record<string, unknown>;
}

export interface Orthanc {
  aet: string;
  dicomPort: number;
  httpPort: number;
  dir: string;
  /** GET/POST on the REST API with the test user; JSON answers parsed. */
  rest<T = unknown>(method: 'GET' | 'POST' | 'DELETE', path: string, body?: string): Promise<T>;
  /** Orthanc ids of the instances with this SOP Instance UID ([] = not there). */
  lookupInstance(sopInstanceUid: string): Promise<string[]>;
  statistics(): Promise<{ CountInstances: number; TotalDiskSizeMB: number; CountStudies: number }>;
  /** The stored Part-10 file of an instance, as Orthanc keeps it. */
  instanceFile(orthancId: string): Promise<Buffer>;
  /** Start again on the same dir and ports (after stop()). */
  start(): Promise<void>;
  stop(): Promise<void>;
  readonly pid: number | undefined;
}

const USER = 'iomt';
const PASS = 'iomt-test-pw';

export async function startOrthanc(o: OrthancOptions): Promise<Orthanc> {
  const bin = requirePeer('Orthanc');
  const aet = o.aet ?? 'ORTHANC';
  const dicomPort = o.dicomPort ?? (await freePort());
  const httpPort = o.httpPort ?? (await freePort());
  mkdirSync(join(o.dir, 'storage'), { recursive: true });
  mkdirSync(join(o.dir, 'index'), { recursive: true });
  const config: Record<string, unknown> = {
    Name: 'iomt-test-pacs',
    DicomAet: aet,
    DicomPort: dicomPort,
    HttpPort: httpPort,
    StorageDirectory: join(o.dir, 'storage'),
    IndexDirectory: join(o.dir, 'index'),
    DicomCheckCalledAet: true,
    RemoteAccessAllowed: false,
    AuthenticationEnabled: true,
    RegisteredUsers: { [USER]: PASS },
    DicomServerEnabled: true,
    HttpServerEnabled: true,
    Plugins: [],
    StorageCompression: false,
    OverwriteInstances: false,
    ConcurrentJobs: 1,
    HttpThreadsCount: 4,
    ...o.extra,
  };
  if (o.lua) {
    writeFileSync(join(o.dir, 'filter.lua'), o.lua);
    config.LuaScripts = [join(o.dir, 'filter.lua')];
  }
  const configFile = join(o.dir, 'orthanc.json');
  writeFileSync(configFile, JSON.stringify(config, null, 2));
  const auth = 'Basic ' + Buffer.from(`${USER}:${PASS}`).toString('base64');
  let child: ChildProcess | undefined;
  let exited: Promise<void> = Promise.resolve();
  let log = '';

  async function rest<T>(method: 'GET' | 'POST' | 'DELETE', path: string, body?: string): Promise<T> {
    const res = await fetch(`http://127.0.0.1:${httpPort}${path}`, { method, body, headers: { authorization: auth } });
    if (!res.ok) throw new Error(`Orthanc ${method} ${path}: HTTP ${res.status} ${await res.text()}`);
    const type = res.headers.get('content-type') ?? '';
    return (type.includes('json') ? await res.json() : Buffer.from(await res.arrayBuffer())) as T;
  }

  const api: Orthanc = {
    aet,
    dicomPort,
    httpPort,
    dir: o.dir,
    rest,
    async lookupInstance(uid) {
      const r = await rest<Array<{ ID: string; Type: string }>>('POST', '/tools/lookup', uid);
      return r.filter((x) => x.Type === 'Instance').map((x) => x.ID);
    },
    statistics: () => rest('GET', '/statistics'),
    instanceFile: (id) => rest<Buffer>('GET', `/instances/${id}/file`),
    get pid() {
      return child?.pid;
    },
    async start() {
      await exited; // one Orthanc per index dir: the old one must be gone
      log = '';
      child = spawn(bin, [configFile], { stdio: ['ignore', 'pipe', 'pipe'] });
      child.stdout!.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-20_000)));
      child.stderr!.on('data', (d: Buffer) => (log = (log + d.toString()).slice(-20_000)));
      const c = child;
      exited = new Promise((resolve) => c.once('exit', () => resolve()));
      let gone = false;
      void exited.then(() => (gone = true));
      try {
        await waitFor(async () => {
          if (gone) throw new Error(`Orthanc exited: ${log.slice(-2000)}`);
          return (await rest<{ Version: string }>('GET', '/system')).Version;
        }, 20_000, 100);
        // the DICOM port opens after the REST one on some builds: check it takes a connection
        await waitFor(async () => {
          const net = await import('node:net');
          return new Promise<boolean>((resolve) => {
            const s = net.connect({ host: '127.0.0.1', port: dicomPort }, () => (s.destroy(), resolve(true)));
            s.on('error', () => resolve(false));
          });
        }, 10_000, 100);
      } catch (e) {
        c.kill('SIGKILL');
        throw new Error(`Orthanc did not start: ${(e as Error).message}\n${log.slice(-2000)}`);
      }
    },
    async stop() {
      const c = child;
      if (!c || c.exitCode !== null || c.signalCode !== null) return;
      c.kill('SIGTERM');
      const t = setTimeout(() => c.kill('SIGKILL'), 10_000);
      await exited;
      clearTimeout(t);
    },
  };
  await api.start();
  return api;
}
