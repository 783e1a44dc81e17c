/**
 * One CLI for the simulated devices (`iomt-gateway simulate ...`):
 *   hl7  send ORU^R01 as a lab analyzer and check every ACK
 *   his  run a receiving HIS until SIGINT/SIGTERM
 *   astm delegated to simulator/astm/cli.ts when present
 */
import { readFileSync } from 'node:fs';
import { formatReport, runAnalyzer } from './hl7/analyzer';
import { SimulatedHis, type HisMode } from './his/his';
import { simulateAstm } from './astm/cli';
import { simulateModality } from './dicom/cli';
import { parseOpts, stdio, UsageError, type Out } from './options';

export const SIMULATE_USAGE = `usage: iomt-gateway simulate <device> [options]

  hl7   --host H --port P [--count N] [--rate R] [--connections C] [--device NAME]
        [--tls-ca FILE | --tls] [--ack-timeout-ms MS]
        Simulated analyzer: sends N ORU^R01 (v2.3.1, CBC) at R msg/s (0 = as fast as ACKs allow)
        over C stop-and-wait connections; prints a summary; exit 0 only if every message got AA.

  his   --port P [--host H] [--mode aa|ae|silent|drop] [--ae-pattern REGEX] [--drop-every N]
        Simulated HIS: receives HL7 over MLLP until SIGINT/SIGTERM; prints one line per message
        (time, MSH-10, OBX count).

  astm  ...   simulated ASTM analyzer (see 'simulate astm --help')

  monitor --mode mqtt|pcd ...  bedside monitors over MQTT or a PCD-01 central station (see 'simulate monitor --help')

  modality --host H --port P ...   simulated imaging modality: C-ECHO, worklist query, MPPS,
        streamed C-STORE of any size, faults (see 'simulate modality --help')
`;


function intOpt(o: Record<string, string>, key: string, def: number | undefined, min = 0): number | undefined {
  const v = o[key];
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isFinite(n) || n < min || Math.floor(n) !== n) throw new UsageError(`--${key} must be an integer >= ${min}`);
  return n;
}

function numOpt(o: Record<string, string>, key: string, def: number): number {
  const v = o[key];
  if (v === undefined) return def;
  const n = Number(v);
  if (!Number.isFinite(n) || n < 0) throw new UsageError(`--${key} must be a number >= 0`);
  return n;
}

async function hl7Cmd(argv: string[], out: Out): Promise<number> {
  const o = parseOpts(argv, {
    host: 'string',
    port: 'string',
    count: 'string',
    rate: 'string',
    connections: 'string',
    device: 'string',
    'tls-ca': 'string',
    tls: 'flag',
    'ack-timeout-ms': 'string',
    help: 'flag',
  });
  if (o.help) {
    out.log(SIMULATE_USAGE);
    return 0;
  }
  if (!o.host) throw new UsageError('--host is required');
  const port = intOpt(o, 'port', undefined, 1);
  if (port === undefined || port > 65535) throw new UsageError('--port is required (1..65535)');
  const tls = o['tls-ca'] ? { ca: readFileSync(o['tls-ca']) } : o.tls ? true : undefined;
  const report = await runAnalyzer({
    host: o.host,
    port,
    tls,
    count: intOpt(o, 'count', 10, 1),
    rate: numOpt(o, 'rate', 0),
    connections: intOpt(o, 'connections', 1, 1),
    device: o.device,
    ackTimeoutMs: intOpt(o, 'ack-timeout-ms', 10_000, 1),
  });
  out.log(`hl7 ${report.ok ? 'OK' : 'FAILED'} ${formatReport(report)}`);
  for (const s of report.nackSamples) out.err(`  nack: ${s}`);
  for (const s of report.errorSamples) out.err(`  error: ${s}`);
  return report.ok ? 0 : 1;
}

async function hisCmd(argv: string[], out: Out): Promise<number> {
  const o = parseOpts(argv, { host: 'string', port: 'string', mode: 'string', 'ae-pattern': 'string', 'drop-every': 'string', help: 'flag' });
  if (o.help) {
    out.log(SIMULATE_USAGE);
    return 0;
  }
  const port = intOpt(o, 'port', undefined, 0);
  if (port === undefined || port > 65535) throw new UsageError('--port is required (0..65535)');
  const mode = (o.mode ?? 'aa') as HisMode;
  if (!['aa', 'ae', 'silent', 'drop'].includes(mode)) throw new UsageError('--mode must be aa, ae, silent or drop');
  let aePattern: RegExp | undefined;
  if (o['ae-pattern'] !== undefined) {
    try {
      aePattern = new RegExp(o['ae-pattern']);
    } catch (e) {
      throw new UsageError(`--ae-pattern is not a valid regular expression: ${(e as Error).message}`);
    }
  }
  // the MLLP server logs through pino on stdout: keep stdout for our lines unless asked otherwise
  process.env.IOMT_LOG_LEVEL ??= 'warn';
  const his = new SimulatedHis({
    host: o.host ?? '127.0.0.1',
    port,
    mode,
    aePattern,
    dropEvery: intOpt(o, 'drop-every', 1, 1),
    recordText: false,
    maxRecords: 0,
    // time, MSH-10, OBX count, answer; never patient data
    onMessage: (m) => out.log(`${new Date(m.at).toISOString()} ${m.controlId || '(no MSH-10)'} obx=${m.obxCount} ${m.answer}`),
  });
  const bound = await his.start();
  out.log(`his listening on ${his.host}:${bound} mode=${mode}${aePattern ? ` ae-pattern=${aePattern.source}` : ''}${mode === 'drop' ? ` drop-every=${his.dropEvery}` : ''}`);
  await new Promise<void>((resolve) => {
    const stop = () => {
      process.off('SIGINT', stop);
      process.off('SIGTERM', stop);
      resolve();
    };
    process.on('SIGINT', stop);
    process.on('SIGTERM', stop);
  });
  await his.stop();
  out.log(`his stopped after ${his.receivedCount} messages`);
  return 0;
}

function astmCmd(argv: string[], out: Out): Promise<number> {
  return simulateAstm(argv, out);
}

/** Entry point; returns the process exit code. */
export async function simulateCli(argv: string[], out: Out = stdio): Promise<number> {
  const [sub, ...rest] = argv;
  try {
    switch (sub) {
      case 'hl7':
        return await hl7Cmd(rest, out);
      case 'his':
        return await hisCmd(rest, out);
      case 'astm':
        return await astmCmd(rest, out);
      case 'monitor':
        return await (await import('./monitor/cli')).simulateMonitor(rest, out); // --mode mqtt|pcd (issue 12 §7)
      case 'modality':
        return await simulateModality(rest, out);
      case '--help':
      case '-h':
      case 'help':
        out.log(SIMULATE_USAGE);
        return 0;
      default:
        out.err(sub ? `unknown simulator '${sub}'\n` : 'which simulator?\n');
        out.err(SIMULATE_USAGE);
        return 2;
    }
  } catch (e) {
    if (e instanceof UsageError) {
      out.err(`simulate ${sub}: ${e.message}\n`);
      out.err(SIMULATE_USAGE);
      return 2;
    }
    out.err(`simulate ${sub}: ${(e as Error).message}`);
    return 1;
  }
}

if (require.main === module) {
  simulateCli(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e) => {
      process.stderr.write(String(e) + '\n');
      process.exit(1);
    },
  );
}
