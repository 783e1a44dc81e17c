/**
 * The embedded broker's TLS listener with client certificates, against mosquitto_pub (--cafile, --cert,
 * --key): a device with its certificate and password gets its PUBACK; without a certificate the handshake
 * fails; a certificate whose CN is another device's id is refused (CONNACK 5).
 */
import { execFile, execFileSync } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MqttBroker } from '../../drivers/mqtt/broker';
import { GatewayStore } from '../../gateway/src/store/gateway-store';
import { requirePeer, tempDir } from '../helpers/env';
import { makeCerts } from '../helpers/tls';

const t = tempDir('iomt-mqtt-tls-');
let store: GatewayStore;
let broker: MqttBroker;
let tlsPort: number;
let pw: string;
let caFile: string;

function clientCert(cn: string): { cert: string; key: string } {
  const o = (args: string[]) => execFileSync('openssl', args, { cwd: t.dir, stdio: 'pipe' });
  o(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', `${cn}.key`, '-out', `${cn}.csr`, '-subj', `/CN=${cn}`]);
  o(['x509', '-req', '-in', `${cn}.csr`, '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', `${cn}.crt`, '-days', '2']);
  return { cert: join(t.dir, `${cn}.crt`), key: join(t.dir, `${cn}.key`) };
}

beforeAll(async () => {
  requirePeer('mosquitto_pub');
  requirePeer('openssl');
  const certs = makeCerts(t.dir);
  caFile = certs.caFile;
  store = GatewayStore.open({ dataDir: t.dir });
  broker = new MqttBroker({ deviceId: 'icu-mqtts', dataDir: t.dir, host: '127.0.0.1', tls: { port: 0, cert: certs.cert, key: certs.key, ca: certs.ca, requestCert: true } }, store);
  pw = (await broker.credentials.add('bed-01')).password;
  tlsPort = (await broker.start()).tlsPort!;
}, 60_000);

afterAll(async () => {
  await broker.close();
  await store.close();
  t.cleanup();
});

const payload = JSON.stringify({ time: '2026-11-30T10:15:00Z', observations: [{ code: 150456, value: 95, unit: '%' }] });
/** mosquitto_pub, asynchronously: the broker runs in this process and must keep answering meanwhile */
const pub = (extra: string[]) =>
  new Promise<{ status: number | null; stdout: string; stderr: string }>((resolve) => {
    execFile('mosquitto_pub', ['-d', '-h', '127.0.0.1', '-p', String(tlsPort), '--cafile', caFile, '-i', 'bed-01', '-u', 'bed-01', '-P', pw, '-q', '1', '-t', 'iomt/bed-01/vitals', '-m', payload, ...extra], { encoding: 'utf8', timeout: 20_000 }, (err, stdout, stderr) =>
      resolve({ status: err ? ((err as { code?: number }).code ?? null) : 0, stdout, stderr }),
    );
  });

describe('MQTT over TLS with client certificates', () => {
  it('a device with its certificate (CN = client id) and password gets its PUBACK after the commit', async () => {
    const c = clientCert('bed-01');
    const r = await pub(['--cert', c.cert, '--key', c.key]);
    expect(r.stdout, `${r.status} ${r.stderr} ${String(r.error)}`).toContain('received PUBACK');
    expect(store.searchMessages({ deviceId: 'icu-mqtts', limit: 10 }).length).toBe(1);
    expect(broker.boundPorts.port).toBeUndefined(); // TLS only: no plain listener
  });

  it('no client certificate: the TLS handshake fails, nothing is stored', async () => {
    const r = await pub([]);
    expect(r.status).not.toBe(0);
    expect(r.stdout).not.toContain('received CONNACK');
    expect(store.searchMessages({ deviceId: 'icu-mqtts', limit: 10 }).length).toBe(1);
  });

  it('a certificate issued to another device id is refused (CONNACK 5)', async () => {
    const c = clientCert('bed-02');
    const r = await pub(['--cert', c.cert, '--key', c.key]);
    expect(r.status).toBe(5);
    expect(r.stderr).toMatch(/not authori[sz]ed/i);
  });
});
