/**
 * `simulate monitor --mode mqtt` against the real broker and store: faults (duplicates, bad payloads,
 * abrupt disconnects, clock skew, alarms) and what the gateway made of them, counted exactly.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { GatewayStore } from '../../gateway/src/store/gateway-store';
import { MqttBroker } from '../../drivers/mqtt/broker';
import { tempDir } from '../../test/helpers/env';
import { simulateMonitor } from './cli';

const t = tempDir('iomt-sim-monitor-');
let store: GatewayStore;
let broker: MqttBroker;
let port: number;

beforeAll(async () => {
  store = GatewayStore.open({ dataDir: t.dir });
  broker = new MqttBroker({ deviceId: 'icu-mqtt', dataDir: t.dir, host: '127.0.0.1', port: 0 }, store);
  port = (await broker.start()).port!;
});

afterAll(async () => {
  await broker.close();
  await store.close();
  t.cleanup();
});

describe('simulate monitor --mode mqtt', () => {
  it('provisions beds, publishes with faults; every good publish PUBACKed, stored once, bad ones quarantined', async () => {
    let log = '';
    let err = '';
    const out = { log: (s: string) => (log += s + '\n'), err: (s: string) => (err += s + '\n') };
    const code = await simulateMonitor(
      ['--url', `mqtt://127.0.0.1:${port}`, '--provision', t.dir, '--credentials', join(t.dir, 'sim-creds.json'), '--beds', '4', '--rate', '8', '--duration', '2.5', '--observations', '3',
        '--alarm-every', '1', '--fault', 'duplicate:0.2', '--fault', 'bad-payload:0.1', '--fault', 'disconnect:0.03', '--fault', 'clock-skew:900', '--seed', '7'],
      out,
    );
    expect(err).toBe('');
    expect(code).toBe(0);
    const n = (k: string) => Number(new RegExp(`${k}=(\\d+)`).exec(log)![1]);
    expect(log).toMatch(/^monitor OK beds=4 connected=4 /);
    expect(n('unacked')).toBe(0);
    expect(n('duplicates')).toBeGreaterThan(0);
    expect(n('bad')).toBeGreaterThan(0);
    expect(n('alarms')).toBeGreaterThan(0);
    const messages = store.searchMessages({ deviceId: 'icu-mqtt', limit: 1000 });
    // stored once each: everything published minus bad payloads and duplicate sends
    expect(messages.length).toBe(n('published') - n('bad') - n('duplicates'));
    expect(store.listQuarantine(1000).length).toBe(n('bad'));
    expect(messages.every((m) => m.flags?.includes('device-clock-skew'))).toBe(true);
    const alarms = messages.filter((m) => m.messageType === 'MQTT alarms').map((m) => store.getMessage(m.id)!.observations[0].alarm);
    expect(alarms.length).toBeGreaterThan(0);
    expect(alarms.every((a) => a?.priority === 'PH' && (a.phase === 'start' || a.phase === 'end'))).toBe(true);
    if (n('disconnects') > 0) expect(n('reconnects')).toBeGreaterThan(0);
    // every bed is known with its last message
    expect(broker.clientStates().map((c) => [c.clientId, !!c.lastMessageAt])).toEqual([1, 2, 3, 4].map((i) => [`bed-0${i}`, true]));
  }, 40_000);

  it('usage errors exit 2 with the reason', async () => {
    let err = '';
    const out = { log: () => {}, err: (s: string) => (err += s) };
    await expect(simulateMonitor(['--url', 'http://x'], out)).rejects.toThrow(/--url mqtt/);
    await expect(simulateMonitor(['--mode', 'carrier-pigeon'], out)).rejects.toThrow(/--mode must be mqtt or pcd/);
    await expect(simulateMonitor(['--url', `mqtt://127.0.0.1:${port}`, '--credentials', '/nonexistent', '--fault', 'disconnect:2'], out)).rejects.toThrow();
  });
});
