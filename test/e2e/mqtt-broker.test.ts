/**
 * The embedded MQTT broker against real clients (mosquitto_pub / mosquitto_sub 2.x, peers.md "MQTT"),
 * in its own process (test/e2e/mqtt-child.ts: the real store and broker), killed with SIGKILL to check
 * that every PUBACKed publish was committed.
 *
 * What mosquitto_pub reports (measured, documented in drivers/mqtt/README.md):
 * anonymous → exit 5 "not authorised"; wrong password → exit 4; MQTT 5 → CONNACK 132 (aedes speaks
 * 3.1.1 and answers CONNACK 1, which the v5 client shows as 132 Unsupported Protocol Version);
 * publish under another device's topic → no PUBACK, "The connection was lost" (exit 7).
 */
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GatewayStore } from '../../gateway/src/store/gateway-store';
import { MqttCredentials } from '../../drivers/mqtt/credentials';
import { runMonitors } from '../../simulator/monitor/mqtt-monitor';
import { requirePeer, tempDir, waitFor } from '../helpers/env';

const ROOT = join(__dirname, '..', '..');
const t = tempDir('iomt-mqtt-e2e-');
const PW: Record<string, string> = {};
let child: ChildProcess | undefined;
let port = 0;
let childOut = '';

function startChild(fixedPort = 0): Promise<number> {
  childOut = '';
  child = spawn(process.execPath, ['--import', 'tsx', join(__dirname, 'mqtt-child.ts'), t.dir, String(fixedPort)], {
    cwd: ROOT,
    env: { ...process.env, IOMT_LOG_LEVEL: 'warn' },
    stdio: ['pipe', 'pipe', 'pipe'],
  });
  child.stdout!.on('data', (d) => (childOut += d));
  child.stderr!.on('data', (d) => (childOut += d));
  return waitFor(() => {
    const m = /READY (\d+)/.exec(childOut);
    if (!m && child?.exitCode != null) throw new Error(`child exited: ${childOut}`);
    return m ? Number(m[1]) : undefined;
  }, 30_000, 50);
}

async function killChild(signal: NodeJS.Signals): Promise<void> {
  const c = child;
  child = undefined;
  if (!c || c.exitCode != null) return;
  const exited = new Promise((r) => c.once('exit', r));
  c.kill(signal);
  await exited;
}

async function childStatus(): Promise<{ clients: Array<{ clientId: string; connected: boolean; offlineReason?: string; lastMessageAt?: string }> }> {
  const before = childOut.length;
  child!.stdin!.write('status\n');
  const line = await waitFor(() => /STATUS (.*)\n/.exec(childOut.slice(before))?.[1], 5000);
  return JSON.parse(line);
}

const vitals = (hr: number) => JSON.stringify({ time: new Date(Date.UTC(2026, 10, 30, 10, 0, 0) + hr * 1000).toISOString(), bed: 'ICU1-01', observations: [{ code: 'MDC_ECG_HEART_RATE', value: hr, unit: '/min' }] });

function pub(args: string[], input?: string): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(port), ...args], { input, encoding: 'utf8', timeout: 20_000 });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}
const login = (id: string) => ['-i', id, '-u', id, '-P', PW[id]];

beforeAll(async () => {
  requirePeer('mosquitto_pub');
  requirePeer('mosquitto_sub');
  const creds = new MqttCredentials(t.dir);
  for (const id of ['bed-01', 'bed-02', 'bed-03']) PW[id] = (await creds.add(id)).password;
  port = await startChild();
}, 60_000);

afterAll(async () => {
  await killChild('SIGKILL');
  t.cleanup();
});

describe('MQTT broker with mosquitto clients', () => {
  it('refuses anonymous and wrong-password clients and MQTT 5; a device cannot publish under another device\'s topic', () => {
    const m = vitals(1);
    const anon = pub(['-i', 'bed-01', '-t', 'iomt/bed-01/vitals', '-q', '1', '-m', m]);
    expect(anon.status).toBe(5);
    expect(anon.stderr).toMatch(/not authori[sz]ed/i);
    const wrong = pub(['-i', 'bed-01', '-u', 'bed-01', '-P', 'not-its-password', '-t', 'iomt/bed-01/vitals', '-q', '1', '-m', m]);
    expect(wrong.status).toBe(4);
    expect(wrong.stderr).toMatch(/bad user name or password/i);
    const v5 = pub(['-V', 'mqttv5', '-d', ...login('bed-01'), '-t', 'iomt/bed-01/vitals', '-q', '1', '-m', m]);
    expect(v5.stdout).toContain('received CONNACK (132)');
    const acl = pub(['-d', ...login('bed-02'), '-t', 'iomt/bed-01/vitals', '-q', '1', '-m', m]);
    expect(acl.stdout).toContain('sending PUBLISH');
    expect(acl.stdout).not.toContain('received PUBACK');
    expect(acl.status).not.toBe(0);
    const sub = spawnSync('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(port), ...login('bed-01'), '-t', 'iomt/#', '-C', '1', '-W', '2', '-d'], { encoding: 'utf8', timeout: 10_000 });
    expect(sub.stdout).toContain('Subscribed (mid: 1): 128');
  });

  it('QoS 0 and a bad payload (quarantined, still PUBACKed) go through mosquitto_pub', () => {
    expect(pub([...login('bed-03'), '-t', 'iomt/bed-03/vitals', '-q', '0', '-m', vitals(5000)]).status).toBe(0);
    const bad = pub(['-d', ...login('bed-03'), '-t', 'iomt/bed-03/vitals', '-q', '1', '-m', '{"time":"yesterday","observations":[]}']);
    expect(bad.stdout).toContain('received PUBACK');
  });

  it('a will marks the device offline', async () => {
    const sub = spawn('mosquitto_sub', ['-h', '127.0.0.1', '-p', String(port), ...login('bed-02'), '-t', 'iomt/bed-02/errors', '--will-topic', 'iomt/bed-02/status', '--will-payload', 'offline', '-k', '5'], { stdio: 'ignore' });
    try {
      await waitFor(async () => (await childStatus()).clients.find((c) => c.clientId === 'bed-02')?.connected, 10_000, 100);
    } finally {
      sub.kill('SIGKILL'); // connection lost without DISCONNECT: the broker publishes the will
    }
    const s = await waitFor(async () => (await childStatus()).clients.find((c) => c.clientId === 'bed-02' && !c.connected), 10_000, 100);
    expect(s.offlineReason).toBe('will');
  });

  it('every PUBACKed publish is committed across kill -9 of the gateway', async () => {
    // one mosquitto_pub, one QoS 1 message per stdin line; message ids run 1, 2, 3 ... in line order
    const N = 400;
    const mp = spawn('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(port), ...login('bed-01'), '-t', 'iomt/bed-01/vitals', '-q', '1', '-l', '-d'], { stdio: ['pipe', 'pipe', 'pipe'] });
    let out = '';
    mp.stdout.on('data', (d) => (out += d));
    const acked = () => [...out.matchAll(/received PUBACK \(Mid: (\d+)/g)].map((m) => Number(m[1]));
    let i = 0;
    const writer = setInterval(() => {
      for (let k = 0; k < 20 && i < N; k++) mp.stdin.write(vitals(100 + ++i) + '\n');
    }, 5);
    await waitFor(() => acked().length >= 150, 30_000, 2);
    await killChild('SIGKILL'); // right after PUBACKs, with more publishes in flight
    clearInterval(writer);
    const ackedMids = acked();
    mp.kill('SIGKILL');
    expect(ackedMids.length).toBeGreaterThanOrEqual(150);

    const store = GatewayStore.open({ dataDir: t.dir });
    try {
      const stored = new Set<number>();
      for (const s of store.searchMessages({ deviceId: 'icu-mqtt', limit: 1000 })) {
        const m = store.getMessage(s.id)!;
        for (const o of m.observations) if (o.value?.kind === 'quantity' && o.value.value >= 100 && o.value.value < 100 + 1000) stored.add(o.value.value);
      }
      // message id k carried heart rate 100 + k
      const missing = ackedMids.filter((mid) => !stored.has(100 + mid));
      expect(missing).toEqual([]);
      // QoS 0 and the quarantined payload from the earlier test are there too
      expect(stored.size).toBeGreaterThanOrEqual(ackedMids.length);
      const all = store.searchMessages({ deviceId: 'icu-mqtt', limit: 1000 }).map((s) => store.getMessage(s.id)!);
      expect(all.some((m) => m.observations.some((o) => o.value?.kind === 'quantity' && o.value.value === 5000 && o.equipment?.id === 'bed-03'))).toBe(true);
      expect(all.some((m) => m.observations.some((o) => o.equipment?.id === 'bed-02'))).toBe(false); // the ACL-refused publish
      expect(store.listQuarantine(100).some((q) => q.reason.startsWith('/time:'))).toBe(true);
    } finally {
      await store.close();
    }
    // and the gateway restarts on the same store and port
    port = await startChild(port);
    expect(pub([...login('bed-01'), '-t', 'iomt/bed-01/vitals', '-q', '1', '-m', vitals(99)]).status).toBe(0);
  }, 60_000);

  it('simulate monitor with a broker restart fault (kill -9 mid-run): the beds reconnect, nothing acknowledged is lost', async () => {
    const creds = new MqttCredentials(t.dir);
    const beds = [];
    for (let i = 1; i <= 6; i++) beds.push({ clientId: `sim-${i}`, password: (await creds.add(`sim-${i}`)).password });
    const pid = child!.pid!;
    // the restart command kills the gateway; the test brings it back on the same port (as systemd would)
    const watcher = new Promise<void>((resolve) => child!.once('exit', () => void startChild(port).then(() => resolve())));
    const report = await runMonitors({ url: `mqtt://127.0.0.1:${port}`, beds, rate: 5, durationS: 4, observations: 3, faults: { restartCmd: `kill -9 ${pid}`, restartAtS: 1.5 } });
    await watcher;
    expect(report.restartRan).toBe(true);
    expect(report.reconnects).toBeGreaterThanOrEqual(beds.length);
    expect(report.unacked).toBe(0);
    expect(report.acked).toBeGreaterThan(0);
    await killChild('SIGTERM');
    const store = GatewayStore.open({ dataDir: t.dir });
    try {
      const stored = store.searchMessages({ deviceId: 'icu-mqtt', limit: 1000 }).filter((m) => /^sim-/.test(String(store.getMessage(m.id)!.observations[0].equipment?.id)));
      // every PUBACKed publish is stored once (a re-send after the restart is recognised as the same message)
      expect(stored.length).toBe(report.acked);
    } finally {
      await store.close();
    }
  }, 60_000);
});
