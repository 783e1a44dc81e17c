/**
 * A storage SCP alone in its own process, on a gateway store (crash tests, benchmarks):
 *   tsx drivers/dicom/run-scp.ts <dataDir> <port> [aeTitle]
 * Prints `READY <port>` once listening, `COMMITTED <sopInstanceUid>` per new instance; SIGTERM closes.
 */
import { GatewayStore } from '../../gateway/src/store/gateway-store';
import { DicomStorageScp } from './storage-scp';

async function main(): Promise<void> {
  const [dataDir, portArg, aet] = process.argv.slice(2);
  if (!dataDir || !portArg) throw new Error('usage: run-scp <dataDir> <port> [aeTitle]');
  const store = GatewayStore.open({ dataDir });
  const scp = new DicomStorageScp({ deviceId: 'modalities', aeTitle: aet ?? 'IOMT_GW', host: '127.0.0.1', port: Number(portArg), dataDir }, store, (_r, inbound) => {
    process.stdout.write(`COMMITTED ${inbound.sourceMessageId}\n`);
  });
  const { port } = await scp.start();
  process.stdout.write(`READY ${port}\n`);
  process.once('SIGTERM', () => {
    void scp.close().then(() => store.close()).then(() => process.exit(0));
  });
}

main().catch((e) => {
  process.stderr.write(`run-scp: ${(e as Error).message}\n`);
  process.exit(1);
});
