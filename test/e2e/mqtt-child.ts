/**
 * A gateway process reduced to what the MQTT e2e tests need: the real store on disk and the embedded
 * broker (drivers/mqtt/broker.ts), so the tests can kill -9 it without building dist/ or Node-RED.
 * argv: <dataDir> [port]. Prints `READY <port>` once listening. stdin commands: `status` → one JSON
 * line with the client states.
 */
import { GatewayStore } from '../../gateway/src/store/gateway-store';
import { MqttBroker } from '../../drivers/mqtt/broker';

async function main(): Promise<void> {
  const [dataDir, port] = process.argv.slice(2);
  const store = GatewayStore.open({ dataDir });
  const broker = new MqttBroker({ deviceId: 'icu-mqtt', dataDir, host: '127.0.0.1', port: Number(port ?? 0), credentialsPollMs: 200, maxPerAddress: 1000, maxConnections: 5000 }, store);
  const bound = await broker.start();
  process.stdout.write(`READY ${bound.port}\n`);
  let buf = '';
  process.stdin.on('data', (d) => {
    buf += d;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const cmd = buf.slice(0, i).trim();
      buf = buf.slice(i + 1);
      if (cmd === 'status') process.stdout.write(`STATUS ${JSON.stringify({ broker: broker.status(), clients: broker.clientStates() })}\n`);
    }
  });
  const stop = async () => {
    await broker.close();
    await store.close();
    process.exit(0);
  };
  process.on('SIGTERM', () => void stop());
  process.on('SIGINT', () => void stop());
}

main().catch((e) => {
  process.stderr.write(`mqtt-child: ${(e as Error).stack}\n`);
  process.exit(1);
});
