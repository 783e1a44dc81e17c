/**
 * `iomt-gateway simulate monitor --mode mqtt|pcd ...` (issue 12 §7). One switch, one module per mode:
 *   mqtt  simulator/monitor/mqtt-monitor.ts (this file's options below)
 *   pcd   simulator/monitor/pcd.ts, a PCD-01 central station over MLLP: it exports
 *         `simulatePcd(argv: string[], out: Out): Promise<number>` and parses its own options.
 */
import { readFileSync } from 'node:fs';
import { parseOpts, UsageError, type Out } from '../options';
import { MqttCredentials } from '../../drivers/mqtt/credentials';
import { formatMonitorReport, runMonitors, type MonitorFaults } from './mqtt-monitor';

export const MONITOR_USAGE = `usage: iomt-gateway simulate monitor [--mode mqtt|pcd] [options]

  --mode mqtt (default): N bedside monitors over MQTT, each with its own login
    --url mqtt://HOST:PORT | mqtts://HOST:PORT [--tls-ca FILE]
    --beds N                     number of beds (default 10); client ids PREFIX-01 ...
    --prefix P                   client id prefix (default bed)
    --credentials FILE           JSON {"<clientId>": "<password>", ...} for the beds
    --provision DATADIR          create the beds' logins in a gateway data dir first (writes
                                 the passwords to --credentials FILE, mode 0600)
    --rate R                     messages per second per bed (default 1)
    --duration S                 seconds (default 10)
    --observations K             vitals per message, 1-10 (default 10)
    --qos 0|1                    (default 1)
    --alarm-every S              an alarm start/end pair per bed every S seconds (default 0: none)
    --fault disconnect:P         drop the connection (no DISCONNECT: the will fires) with probability P per message
    --fault bad-payload:P        send an invalid payload with probability P (gateway quarantines it)
    --fault duplicate:P          publish the same payload twice with probability P (stored once)
    --fault clock-skew:S         device clock S seconds off (flagged device-clock-skew)
    --fault restart:S            run --restart-cmd CMD S seconds into the run (a broker restart)
    --restart-cmd CMD            shell command for the restart fault
    --seed N                     reproducible faults
    Exit 0 only if every good QoS 1 message got its PUBACK.

  --mode pcd: a PCD-01 central station over MLLP (see 'simulate monitor --mode pcd --help')
`;

function num(v: string | undefined, name: string, dflt: number, min = 0, max = Number.MAX_SAFE_INTEGER): number {
  if (v === undefined) return dflt;
  const n = Number(v);
  if (!Number.isFinite(n) || n < min || n > max) throw new UsageError(`--${name} must be a number from ${min} to ${max}`);
  return n;
}

function parseFaults(list: string[], restartCmd: string | undefined): MonitorFaults {
  const f: MonitorFaults = {};
  for (const item of list) {
    const [kind, v] = item.split(':');
    const n = Number(v);
    if (v === undefined || !Number.isFinite(n)) throw new UsageError(`--fault ${item}: expected KIND:NUMBER`);
    if (['disconnect', 'bad-payload', 'duplicate'].includes(kind) && (n < 0 || n > 1)) throw new UsageError(`--fault ${kind}: a probability from 0 to 1`);
    if (kind === 'disconnect') f.disconnect = n;
    else if (kind === 'bad-payload') f.badPayload = n;
    else if (kind === 'duplicate') f.duplicate = n;
    else if (kind === 'clock-skew') f.clockSkewS = n;
    else if (kind === 'restart') {
      if (!restartCmd) throw new UsageError('--fault restart needs --restart-cmd');
      f.restartAtS = n;
      f.restartCmd = restartCmd;
    } else throw new UsageError(`unknown fault '${kind}'`);
  }
  return f;
}

async function mqttMode(argv: string[], out: Out): Promise<number> {
  const lists: Record<string, string[]> = {};
  const o = parseOpts(
    argv,
    { mode: 'string', url: 'string', 'tls-ca': 'string', beds: 'string', prefix: 'string', credentials: 'string', provision: 'string', rate: 'string', duration: 'string', observations: 'string', qos: 'string', 'alarm-every': 'string', fault: 'list', 'restart-cmd': 'string', seed: 'string', help: 'flag' },
    lists,
  );
  if (o.help) {
    out.log(MONITOR_USAGE);
    return 0;
  }
  if (!o.url || !/^mqtts?:\/\//.test(o.url)) throw new UsageError('--url mqtt://HOST:PORT is required');
  const n = num(o.beds, 'beds', 10, 1, 100_000);
  const prefix = o.prefix ?? 'bed';
  const ids = Array.from({ length: n }, (_, i) => `${prefix}-${String(i + 1).padStart(2, '0')}`);
  let passwords: Record<string, string> = {};
  if (o.provision) {
    if (!o.credentials) throw new UsageError('--provision needs --credentials FILE (where the generated passwords go)');
    const creds = new MqttCredentials(o.provision);
    const known = new Set(creds.list().filter((c) => !c.revokedAt).map((c) => c.clientId));
    try {
      passwords = JSON.parse(readFileSync(o.credentials, 'utf8')) as Record<string, string>;
    } catch {
      passwords = {};
    }
    for (const id of ids) if (!known.has(id) || !passwords[id]) {
      if (known.has(id)) await creds.revoke(id);
      passwords[id] = (await creds.add(id)).password;
    }
    const { writeFileSync } = await import('node:fs');
    writeFileSync(o.credentials, JSON.stringify(passwords, null, 2), { mode: 0o600 });
  } else if (o.credentials) {
    passwords = JSON.parse(readFileSync(o.credentials, 'utf8')) as Record<string, string>;
  } else throw new UsageError('--credentials FILE (or --provision DATADIR --credentials FILE) is required');
  const beds = ids.map((clientId) => {
    const password = passwords[clientId];
    if (!password) throw new UsageError(`no password for '${clientId}' in ${o.credentials}`);
    return { clientId, password };
  });
  const qos = num(o.qos, 'qos', 1, 0, 1) as 0 | 1;
  const report = await runMonitors({
    url: o.url,
    ca: o['tls-ca'] ? readFileSync(o['tls-ca']) : undefined,
    beds,
    rate: num(o.rate, 'rate', 1, 0.001, 1000),
    durationS: num(o.duration, 'duration', 10, 0.1),
    observations: num(o.observations, 'observations', 10, 1, 10),
    qos,
    alarmEveryS: num(o['alarm-every'], 'alarm-every', 0),
    faults: parseFaults(lists.fault ?? [], o['restart-cmd']),
    seed: num(o.seed, 'seed', 1, 0),
  });
  const ok = report.connected === report.beds && report.unacked === 0;
  out.log(`monitor ${ok ? 'OK' : 'FAILED'} ${formatMonitorReport(report)}`);
  for (const e of report.errors) out.err(`  error: ${e}`);
  return ok ? 0 : 1;
}

/** Entry point of `simulate monitor`: the mode switch. */
export async function simulateMonitor(argv: string[], out: Out): Promise<number> {
  const i = argv.findIndex((a) => a === '--mode' || a.startsWith('--mode='));
  const mode = i < 0 ? 'mqtt' : argv[i].includes('=') ? argv[i].split('=')[1] : argv[i + 1];
  if (mode === 'mqtt') return mqttMode(argv, out);
  if (mode === 'pcd') {
    let mod: { simulatePcd?: (a: string[], o: Out) => Promise<number> };
    try {
      mod = await import('./pcd' as string);
    } catch {
      out.err('simulate monitor --mode pcd: not available in this build (simulator/monitor/pcd.ts)');
      return 2;
    }
    if (typeof mod.simulatePcd !== 'function') throw new Error('simulator/monitor/pcd.ts exports no simulatePcd');
    return mod.simulatePcd(argv.filter((_, k) => k !== i && !(k === i + 1 && !argv[i].includes('='))), out);
  }
  throw new UsageError(`--mode must be mqtt or pcd`);
}
