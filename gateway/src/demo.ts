import { join } from 'node:path';
import type { GatewaySettings } from './config/settings';
import { startGateway } from './gateway';
import { SimulatedHis } from '../../simulator/his/his';
import { runAnalyzer } from '../../simulator/hl7/analyzer';

/**
 * `npm run demo`: the gateway on embedded defaults, a simulated HIS and a simulated analyzer, so
 * data visibly flows: analyzer → MLLP → gateway (committed) → outbox → HIS. Ctrl-C stops it.
 */
export async function runDemo(settings: GatewaySettings, opts: { ratePerS?: number; count?: number } = {}): Promise<number> {
  const print = (s: string) => process.stdout.write(s + '\n');
  const hl7Port = Number(process.env.HL7_IN_PORT || 2575);
  const hisPort = Number(process.env.HIS_PORT || 2576);
  const his = new SimulatedHis({ host: '127.0.0.1', port: hisPort, mode: 'aa' });
  await his.start();
  let delivered = 0;
  his.on('message', () => delivered++);
  process.env.HL7_IN_PORT = String(hl7Port);
  process.env.HL7_IN_HOST = process.env.HL7_IN_HOST || '127.0.0.1';
  process.env.HIS_HOST = '127.0.0.1';
  process.env.HIS_PORT = String(hisPort);
  process.env.HL7_DEVICE_ID = process.env.HL7_DEVICE_ID || 'demo-analyzer';
  const gw = await startGateway(settings, { defaultFlow: 'hl7-relay.json' });
  print('');
  print('IoMT gateway demo');
  print(`  editor:          ${gw.editorUrl}  (user '${settings.admin.user}')`);
  print(`  admin password:  ${gw.adminPasswordFile ? `in ${gw.adminPasswordFile}` : 'the one you set in IOMT_ADMIN_PASSWORD / IOMT_ADMIN_PASSWORD_HASH'}`);
  print(`  API:             curl -u ${settings.admin.user}:PASSWORD ${gw.url}/api/v1/destinations`);
  print(`  metrics:         ${gw.url}/metrics`);
  print(`  analyzer sends HL7 v2.3.1 ORU^R01 to MLLP port ${hl7Port}; the gateway forwards v2.5.1 to the simulated HIS on ${hisPort}`);
  print(`  data dir:        ${settings.dataDir} (SQLite: ${join(settings.dataDir, 'gateway.db')})`);
  print('  Ctrl-C to stop\n');

  const abort = new AbortController();
  let acked = 0;
  const analyzer = runAnalyzer({
    host: '127.0.0.1',
    port: hl7Port,
    rate: opts.ratePerS ?? 2,
    count: opts.count ?? Number.MAX_SAFE_INTEGER,
    connections: 1,
    device: 'DEMO-XN',
    signal: abort.signal,
    onAck: (e) => {
      if (e.outcome === 'acked') acked++;
    },
  }).catch((e: unknown) => print(`analyzer stopped: ${String(e)}`));
  const ticker = setInterval(() => print(`  ${new Date().toISOString().slice(11, 19)}  analyzer: ${acked} acknowledged (AA after commit) · HIS: ${delivered} received`), 5000);

  await new Promise<void>((resolve) => {
    process.once('SIGINT', () => resolve());
    process.once('SIGTERM', () => resolve());
  });
  clearInterval(ticker);
  abort.abort();
  await analyzer;
  await gw.close();
  await his.stop();
  print(`demo stopped: ${acked} acknowledged, ${delivered} delivered`);
  return 0;
}
