/**
 * `iomt-gateway simulate astm ...`: a simulated ASTM analyzer (E1381/E1394) over a serial port,
 * a TCP connection to the gateway, or listening for the gateway to dial in.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { normalizeProfile, validateProfile, defaultProfile, type AstmProfile } from '../../drivers/astm/profile';
import { SerialTransport } from '../../drivers/astm/transport/serial-transport';
import { TcpClientTransport } from '../../drivers/astm/transport/tcp-client-transport';
import { TcpServerTransport } from '../../drivers/astm/transport/tcp-server-transport';
import type { Transport, TransportConnection } from '../../gateway/src/contracts/transport';
import { AstmAnalyzerSimulator, buildResultSession, type AstmFaults } from './analyzer-simulator';
import { parseOpts, stdio, type OptKind, type Out } from '../options';

export const ASTM_USAGE = `usage: iomt-gateway simulate astm (--serial PATH [--baud N] | --tcp HOST:PORT | --listen PORT) [options]

  --profile ID|FILE      device profile (firmware-config/profiles/astm/<ID>.json or a file); default generic
  --count N              result sessions to send (default 1; 0 = none)
  --interval-ms MS       pause between sessions (default 0)
  --tests N              results per session (default 3)
  --query SPECIMEN[,..]  send a host query and print the orders the gateway returns
  --timeout-ms MS        wait for replies (default 30000)
  --fault NAME[=N]       repeatable: corrupt-checksum[=every], wrong-fn[=every], split-writes[=bytes],
                         nak-storm[=n], interrupt, contention, silence[=after frames], disconnect[=after frames]
  exit 0 when every session was acknowledged (and the query answered)`;


const OPTIONS: Record<string, OptKind> = {
  help: 'flag',
  serial: 'string',
  baud: 'string',
  tcp: 'string',
  listen: 'string',
  profile: 'string',
  count: 'string',
  'interval-ms': 'string',
  tests: 'string',
  query: 'string',
  'timeout-ms': 'string',
  fault: 'list',
};

function parseArgs(argv: string[]): { opts: Map<string, string>; faults: string[] } {
  const lists: Record<string, string[]> = {};
  const opts = new Map(Object.entries(parseOpts(argv, OPTIONS, lists)));
  return { opts, faults: lists.fault ?? [] };
}

export function parseFaults(list: string[]): AstmFaults {
  const f: AstmFaults = {};
  for (const item of list) {
    const [name, n] = item.split('=');
    const num = n === undefined ? undefined : Number(n);
    if (num !== undefined && !(Number.isInteger(num) && num >= 0)) throw new Error(`--fault ${item}: N must be an integer`);
    switch (name) {
      case 'corrupt-checksum':
        f.corruptChecksumEvery = num ?? 2;
        break;
      case 'wrong-fn':
        f.wrongFrameNumberEvery = num ?? 2;
        break;
      case 'split-writes':
        f.splitWrites = num ?? 1;
        break;
      case 'nak-storm':
        f.nakStorm = num ?? 3;
        break;
      case 'interrupt':
        f.receiverInterrupt = true;
        break;
      case 'contention':
        f.contention = true;
        break;
      case 'silence':
        f.silenceAfterFrames = num ?? 2;
        break;
      case 'disconnect':
        f.disconnectAfterFrames = num ?? 2;
        break;
      default:
        throw new Error(`unknown fault '${name}'`);
    }
  }
  return f;
}

function loadProfile(ref: string | undefined): AstmProfile {
  if (!ref) return defaultProfile();
  const candidates = [ref, join(process.cwd(), 'firmware-config/profiles/astm', `${ref}.json`), join(__dirname, '../../firmware-config/profiles/astm', `${ref}.json`), join(__dirname, '../../../firmware-config/profiles/astm', `${ref}.json`)];
  const file = candidates.find((c) => existsSync(c) && c.endsWith('.json'));
  if (!file) throw new Error(`profile '${ref}' not found`);
  const obj = JSON.parse(readFileSync(file, 'utf8'));
  const problems = validateProfile(obj, resolve(file));
  if (problems.length) throw new Error(problems.map((p) => `${p.file}: ${p.path}: ${p.reason}`).join('\n'));
  return normalizeProfile(obj);
}

function waitConnection(t: Transport, timeoutMs: number): Promise<TransportConnection> {
  return new Promise((res, rej) => {
    const timer = setTimeout(() => rej(new Error('no connection')), timeoutMs);
    t.once('connection', (c: TransportConnection) => {
      clearTimeout(timer);
      res(c);
    });
  });
}

/** Entry point; returns the process exit code. */
export async function simulateAstm(argv: string[], out: Out = stdio): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs(argv);
  } catch (e) {
    out.err(`${(e as Error).message}\n${ASTM_USAGE}`);
    return 2;
  }
  const { opts } = parsed;
  if (opts.has('help')) {
    out.log(ASTM_USAGE);
    return 0;
  }
  let profile: AstmProfile;
  let faults: AstmFaults;
  try {
    profile = loadProfile(opts.get('profile'));
    faults = parseFaults(parsed.faults);
  } catch (e) {
    out.err((e as Error).message);
    return 2;
  }
  const timeoutMs = Number(opts.get('timeout-ms') ?? 30_000);
  let transport: Transport;
  if (opts.has('serial')) {
    const s = profile.serial;
    transport = new SerialTransport({ path: opts.get('serial')!, baudRate: Number(opts.get('baud') ?? s.baudRate), dataBits: s.dataBits, parity: s.parity, stopBits: s.stopBits, rtscts: s.rtscts, xon: s.xon, reopenBaseMs: 200, reopenMaxMs: 2000 });
  } else if (opts.has('tcp')) {
    const [host, port] = opts.get('tcp')!.split(':');
    transport = new TcpClientTransport({ host, port: Number(port), reconnectBaseMs: 200, reconnectMaxMs: 2000 });
  } else if (opts.has('listen')) {
    transport = new TcpServerTransport({ port: Number(opts.get('listen')), host: '0.0.0.0' });
  } else {
    out.err(`one of --serial, --tcp, --listen is required\n${ASTM_USAGE}`);
    return 2;
  }
  const connP = waitConnection(transport, timeoutMs);
  let sim: AstmAnalyzerSimulator | undefined;
  let failures = 0;
  try {
    await transport.start();
    const conn = await connP;
    sim = new AstmAnalyzerSimulator(conn, { profile, faults });
    const count = Number(opts.get('count') ?? (opts.has('query') ? 0 : 1));
    const interval = Number(opts.get('interval-ms') ?? 0);
    for (let i = 1; i <= count; i++) {
      const recs = buildResultSession(profile, { seq: i, tests: Number(opts.get('tests') ?? 3) });
      try {
        await sim.sendMessage(recs);
        out.log(`session ${i}: acknowledged (${recs.length} records)`);
      } catch (e) {
        failures++;
        out.err(`session ${i}: failed: ${(e as Error).message}`);
      }
      if (interval && i < count) await new Promise((r) => setTimeout(r, interval));
    }
    if (opts.has('query')) {
      const ids = opts.get('query')!.split(',').filter((s) => s);
      try {
        const answer = await sim.query(ids, { timeoutMs });
        out.log(`orders for ${ids.join(',')}:`);
        for (const r of answer) out.log(`  ${r}`);
      } catch (e) {
        failures++;
        out.err(`query: ${(e as Error).message}`);
      }
    }
    out.log(`frames sent ${sim.stats.framesSent}, NAKs received ${sim.stats.naksReceived}, corrupted ${sim.stats.corrupted}, wrong FN ${sim.stats.wrongFn}`);
  } catch (e) {
    out.err((e as Error).message);
    failures++;
  } finally {
    sim?.close();
    await transport.close();
  }
  return failures ? 1 : 0;
}
