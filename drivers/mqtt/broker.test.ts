/**
 * The embedded broker with mqtt.js clients and a real store on disk (the e2e test in
 * test/e2e/mqtt-broker.test.ts uses mosquitto_pub/_sub and kill -9).
 */
import { copyFileSync, mkdirSync, renameSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import mqtt, { type MqttClient } from 'mqtt';
import type { CommitResult, InboundMessage, ObservationSink, QuarantineInput } from '../../gateway/src/contracts/driver';
import { GatewayStore } from '../../gateway/src/store/gateway-store';
import { tempDir, waitFor } from '../../test/helpers/env';
import { MqttCredentials } from './credentials';
import { MqttBroker } from './broker';

const t = tempDir('iomt-mqtt-broker-');
let store: GatewayStore;
let broker: MqttBroker;
let port: number;
const pw: Record<string, string> = {};
/** test knobs on the sink: delay the commit, or fail it */
const knobs = { delayMs: 0, fail: false, commitDoneAt: 0 };
const clients: MqttClient[] = [];

const VITALS = (hr: number) => JSON.stringify({ time: new Date().toISOString(), bed: 'ICU1-03', patient: { id: '12345', idType: 'MR' }, observations: [{ code: 'MDC_ECG_HEART_RATE', value: hr, unit: '/min' }, { code: 150456, value: 97, unit: '%' }] });

function connect(clientId: string, password: string | undefined, extra: mqtt.IClientOptions = {}): Promise<MqttClient> {
  return new Promise((resolve, reject) => {
    const c = mqtt.connect(`mqtt://127.0.0.1:${port}`, { clientId, ...(password !== undefined ? { username: clientId, password } : {}), reconnectPeriod: 0, connectTimeout: 5000, protocolVersion: 4, ...extra });
    clients.push(c);
    c.once('connect', () => resolve(c));
    c.once('error', (e) => reject(e));
    c.once('close', () => reject(new Error('closed before CONNACK')));
  });
}

beforeAll(async () => {
  store = GatewayStore.open({ dataDir: t.dir });
  const sink: ObservationSink = {
    submit: async (m: InboundMessage): Promise<CommitResult> => {
      if (knobs.delayMs) await new Promise((r) => setTimeout(r, knobs.delayMs));
      if (knobs.fail) throw Object.assign(new Error('disk full (test)'), { code: 'GW_ERR_STORE_FULL' });
      const r = await store.submit(m);
      knobs.commitDoneAt = Date.now();
      return r;
    },
    quarantine: (q: QuarantineInput) => store.quarantine(q),
  };
  broker = new MqttBroker({ deviceId: 'icu-mqtt', dataDir: t.dir, host: '127.0.0.1', port: 0, credentialsPollMs: 100 }, sink);
  for (const id of ['bed-01', 'bed-02', 'bed-03']) pw[id] = (await broker.credentials.add(id)).password;
  port = (await broker.start()).port!;
});

afterEach(async () => {
  knobs.delayMs = 0;
  knobs.fail = false;
  await Promise.all(clients.splice(0).map((c) => c.endAsync(true).catch(() => undefined)));
});

afterAll(async () => {
  await broker.close();
  await store.close();
  t.cleanup();
});

const messagesOf = () => store.searchMessages({ deviceId: 'icu-mqtt', limit: 1000 });

describe('MQTT broker: authentication', () => {
  const cases: Array<[string, string, string | undefined, number | undefined]> = [
    ['anonymous', 'bed-01', undefined, 5],
    ['wrong password', 'bed-01', 'not-the-password-1234', 4],
    ['unknown client', 'bed-99', 'whatever-password-1234', 4],
    ['client id with a topic separator', 'bed/01', 'x', 2],
  ];
  it.each(cases)('%s is refused with CONNACK %s', async (_n, id, password, code) => {
    const err = await connect(id, password).then(() => undefined, (e) => e);
    expect(err).toBeDefined();
    expect((err as { code?: number }).code).toBe(code);
    // a refused CONNECT with a made-up client id adds no device to the status list
    expect(broker.clientStates().map((s) => s.clientId)).not.toContain('bed-99');
  });

  it('a device with its own password connects; the user name must be the client id', async () => {
    await expect(connect('bed-01', pw['bed-01'])).resolves.toBeDefined();
    const err = await connect('bed-02', pw['bed-02'], { username: 'bed-01' }).then(() => undefined, (e) => e);
    expect((err as { code?: number }).code).toBe(4);
  });
});

describe('MQTT broker: publish', () => {
  it('PUBACK only after the commit: a slow commit delays the PUBACK and the message is stored when it arrives', async () => {
    const c = await connect('bed-01', pw['bed-01']);
    knobs.delayMs = 400;
    const before = messagesOf().length;
    const t0 = Date.now();
    await c.publishAsync('iomt/bed-01/vitals', VITALS(71), { qos: 1 });
    const ackAt = Date.now();
    expect(ackAt - t0).toBeGreaterThanOrEqual(390);
    expect(ackAt).toBeGreaterThanOrEqual(knobs.commitDoneAt);
    const after = messagesOf();
    expect(after.length).toBe(before + 1);
    const m = store.getMessage(after[0].id)!;
    expect(m.observations.map((o) => [o.code.code, o.equipment?.id, o.location?.bed, o.category])).toEqual([
      ['147842', 'bed-01', 'ICU1-03', 'vital-signs'],
      ['150456', 'bed-01', 'ICU1-03', 'vital-signs'],
    ]);
    expect(broker.clientStatus('bed-01')).toMatchObject({ deviceId: 'icu-mqtt/bed-01', state: 'connected' });
    expect(broker.clientStatus('bed-01').lastMessageAt).toBeTruthy();
  });

  it('a duplicate publish (same client, topic and bytes) is acknowledged and stored once', async () => {
    const c = await connect('bed-01', pw['bed-01']);
    const payload = VITALS(88);
    const before = messagesOf().length;
    await c.publishAsync('iomt/bed-01/vitals', payload, { qos: 1 });
    await c.publishAsync('iomt/bed-01/vitals', payload, { qos: 1, dup: true });
    await c.publishAsync('iomt/bed-01/vitals', payload, { qos: 1 });
    expect(messagesOf().length).toBe(before + 1);
  });

  it('QoS 0 is committed too (best effort, no answer to the client)', async () => {
    const c = await connect('bed-02', pw['bed-02']);
    const before = messagesOf().length;
    await c.publishAsync('iomt/bed-02/vitals', VITALS(60), { qos: 0 });
    await waitFor(() => messagesOf().length === before + 1, 15_000);
  });

  it('publishing under another device\'s topic closes the connection, stores no result, and keeps it in quarantine once (retries included)', async () => {
    const before = messagesOf().length;
    const quarantinedBefore = store.listQuarantine(1000).length;
    const payload = VITALS(99);
    for (let i = 0; i < 2; i++) {
      // the device retries the same publish after reconnecting: one quarantine entry, not one per retry
      const c = await connect('bed-02', pw['bed-02']);
      const closed = new Promise((r) => c.once('close', r));
      c.publish('iomt/bed-01/vitals', payload, { qos: 1 });
      await closed;
      c.end(true);
    }
    expect(messagesOf().length).toBe(before);
    expect(broker.clientStatus('bed-02').lastError).toMatch(/outside its own topic/);
    const added = store.listQuarantine(1000).slice(0, store.listQuarantine(1000).length - quarantinedBefore);
    expect(added).toHaveLength(1);
    expect(added[0].reason).toMatch(/outside the client's own topic iomt\/bed-02\//);
    expect(JSON.parse(store.getQuarantine(added[0].id)!.raw.toString('utf8')).observations).toBeDefined();
  });

  it('publishing to its own errors topic closes the connection, stores nothing and says why (status)', async () => {
    const c = await connect('bed-02', pw['bed-02']);
    const before = messagesOf().length;
    const closed = new Promise((r) => c.once('close', r));
    c.publish('iomt/bed-02/errors', '{"reason":"forged"}', { qos: 1 });
    await closed;
    expect(messagesOf().length).toBe(before);
    expect(broker.clientStatus('bed-02').lastError).toMatch(/errors refused/);
  });

  it('a bad payload is quarantined with the reason, acknowledged, and the reason is published on iomt/<id>/errors', async () => {
    const c = await connect('bed-03', pw['bed-03']);
    await c.subscribeAsync('iomt/bed-03/errors', { qos: 0 });
    const notice = new Promise<string>((r) => c.once('message', (_t, p) => r(p.toString())));
    const before = messagesOf().length;
    await c.publishAsync('iomt/bed-03/vitals', JSON.stringify({ time: '2026-11-30T10:15:00Z', observations: [{ code: 150456, value: 'ninety' }] }), { qos: 1 });
    const n = JSON.parse(await notice);
    expect(n).toMatchObject({ topic: 'iomt/bed-03/vitals', reason: '/observations/0/value: must be a finite number' });
    const q = store.getQuarantine(n.quarantineId)!;
    expect(q.reason).toBe('/observations/0/value: must be a finite number');
    expect(q.raw.toString()).toContain('ninety');
    expect(messagesOf().length).toBe(before);
  });

  it('an unknown sub-topic is quarantined, not dropped', async () => {
    const c = await connect('bed-03', pw['bed-03']);
    const q0 = store.listQuarantine(1000).length;
    await c.publishAsync('iomt/bed-03/waveform', '{}', { qos: 1 });
    expect(store.listQuarantine(1000).length).toBe(q0 + 1);
    expect(store.listQuarantine(1)[0].reason).toMatch(/unknown topic 'waveform'/);
    // a topic can carry a patient id: kept in the quarantine entry, never in the status (or the log line beside it)
    await c.publishAsync('iomt/bed-03/patient/PID-4711', '{}', { qos: 1 });
    expect(store.listQuarantine(1)[0].reason).toContain('patient/PID-4711');
    expect(broker.clientStatus('bed-03').lastError).toMatch(/^payload quarantined \(#\d+\): unknown topic/);
    expect(JSON.stringify([broker.clientStatus('bed-03'), broker.status()])).not.toContain('PID-4711');
  });

  it('store failure: no PUBACK, the connection is closed (the client re-sends)', async () => {
    const c = await connect('bed-01', pw['bed-01']);
    knobs.fail = true;
    let acked = false;
    const closed = new Promise((r) => c.once('close', r));
    c.publish('iomt/bed-01/vitals', VITALS(55), { qos: 1 }, (err) => {
      if (!err) acked = true;
    });
    await closed;
    await new Promise((r) => setTimeout(r, 100));
    expect(acked).toBe(false);
  });

  it('subscriptions outside the own subtree are refused (SUBACK 0x80)', async () => {
    const c = await connect('bed-01', pw['bed-01']);
    // mqtt.js rejects when any topic is refused; the SUBACK's return codes travel with the error
    const err = await c.subscribeAsync(['iomt/bed-02/#', '#', 'iomt/bed-01/#'], { qos: 1 }).then(() => undefined, (e) => e);
    expect((err as { packet?: { granted: number[] } }).packet?.granted).toEqual([128, 128, 1]);
  });

  it('device publishes are consumed, not routed back through aedes (unless routeDevicePublishes); the errors notice still arrives', async () => {
    const echoes = async (b: MqttBroker, p: number): Promise<{ echoed: string[]; skipped: number }> => {
      const c = await new Promise<MqttClient>((resolve, reject) => {
        const x = mqtt.connect(`mqtt://127.0.0.1:${p}`, { clientId: 'bed-01', username: 'bed-01', password: pw['bed-01'], reconnectPeriod: 0, protocolVersion: 4 });
        clients.push(x);
        x.once('connect', () => resolve(x));
        x.once('error', reject);
      });
      const echoed: string[] = [];
      c.on('message', (topic) => echoed.push(topic));
      await c.subscribeAsync('iomt/bed-01/#', { qos: 1 });
      const skipped0 = b.forwardsSkipped;
      const before = messagesOf().length;
      await c.publishAsync('iomt/bed-01/vitals', VITALS(61), { qos: 1 });
      await c.publishAsync('iomt/bed-01/vitals', VITALS(62), { qos: 0 });
      await waitFor(() => messagesOf().length === before + 2);
      // a bad payload: its notice on iomt/bed-01/errors is the gateway's own publish, always routed
      await c.publishAsync('iomt/bed-01/vitals', '{"observations":[]}', { qos: 1 });
      await waitFor(() => echoed.includes('iomt/bed-01/errors'));
      await new Promise((r) => setTimeout(r, 100));
      await c.endAsync(true);
      return { echoed, skipped: b.forwardsSkipped - skipped0 };
    };
    const consumed = await echoes(broker, port);
    expect(consumed.echoed).toEqual(['iomt/bed-01/errors']);
    expect(consumed.skipped).toBe(3);
    // the same device on a broker that routes device publishes gets its own data back: the skip is what differs
    const routing = new MqttBroker({ deviceId: 'icu-mqtt', dataDir: t.dir, host: '127.0.0.1', port: 0, routeDevicePublishes: true }, { submit: (m) => store.submit(m), quarantine: (q) => store.quarantine(q) });
    try {
      const r = await echoes(routing, (await routing.start()).port!);
      expect(r.skipped).toBe(0);
      expect(r.echoed.filter((x) => x === 'iomt/bed-01/vitals').length).toBe(3);
      expect(r.echoed).toContain('iomt/bed-01/errors');
    } finally {
      await routing.close();
    }
  });
});

describe('MQTT broker: device status', () => {
  it('a device that published "offline" on its status topic and then sends vitals on the same connection is shown online again', async () => {
    const c = await connect('bed-02', pw['bed-02']);
    await c.publishAsync('iomt/bed-02/status', 'offline', { qos: 1 });
    expect(broker.clientStatus('bed-02').state).toBe('disconnected');
    await c.publishAsync('iomt/bed-02/vitals', VITALS(81), { qos: 1 });
    expect(broker.clientStatus('bed-02').state).toBe('connected');
  });

  it('a will marks the device offline (reason will); a clean disconnect as disconnect', async () => {
    const c = await connect('bed-02', pw['bed-02'], { will: { topic: 'iomt/bed-02/status', payload: Buffer.from('offline'), qos: 1, retain: false } });
    await waitFor(() => broker.clientStatus('bed-02').state === 'connected', 15_000).catch(() => { throw new Error(JSON.stringify(broker.clientStates())); });
    (c as unknown as { stream: { destroy(): void } }).stream.destroy(); // connection lost: the broker publishes the will
    await waitFor(() => broker.clientStatus('bed-02').state === 'disconnected', 15_000);
    expect(broker.clientStates().find((s) => s.clientId === 'bed-02')?.offlineReason).toBe('will');
    const c2 = await connect('bed-02', pw['bed-02']);
    await c2.endAsync();
    await waitFor(() => broker.clientStatus('bed-02').state === 'disconnected', 15_000);
    expect(broker.clientStates().find((s) => s.clientId === 'bed-02')?.offlineReason).toBe('disconnect');
  });

  it('lists known devices that never connected; a revoked device is disconnected and cannot reconnect', async () => {
    await broker.credentials.add('bed-04');
    await waitFor(() => broker.clientStates().some((s) => s.clientId === 'bed-04'), 15_000);
    expect(broker.clientStatus('bed-04').detail).toBe('never connected');
    const c = await connect('bed-03', pw['bed-03']);
    const closed = new Promise((r) => c.once('close', r));
    await broker.credentials.revoke('bed-03');
    await closed;
    expect(broker.clientStatus('bed-03').detail).toBe('revoked');
    const err = await connect('bed-03', pw['bed-03']).then(() => undefined, (e) => e);
    expect((err as { code?: number }).code).toBe(4);
    expect(broker.status()).toMatchObject({ deviceId: 'icu-mqtt', driver: 'mqtt-monitor' });
  });

  it('a publish right after the revoke (before the next poll) is refused: no PUBACK, not stored', async () => {
    const id = 'bed-05';
    pw[id] = (await broker.credentials.add(id)).password;
    const c = await connect(id, pw[id]);
    await c.publishAsync(`iomt/${id}/vitals`, VITALS(70), { qos: 1 });
    const before = messagesOf().length;
    await new MqttCredentials(t.dir).revoke(id); // another process (CLI, admin API)
    const answer = await Promise.race([c.publishAsync(`iomt/${id}/vitals`, VITALS(71), { qos: 1 }).then(() => 'PUBACK', () => 'closed'), new Promise((r) => c.once('close', () => r('closed')))]);
    expect(answer).toBe('closed');
    expect(messagesOf().length).toBe(before);
  });

  it('a password replaced (revoke + add between two polls) closes the connection made with the old one; the new one connects', async () => {
    const c = await connect('bed-01', pw['bed-01']);
    const closed = new Promise((r) => c.once('close', r));
    // the password is rotated (revoke + add, as the CLI does) and the file replaced in one step, so the
    // broker's poll sees only the final file, where bed-01 is active (not revoked)
    const rotate = join(t.dir, 'rotate');
    mkdirSync(rotate);
    copyFileSync(join(t.dir, 'mqtt-clients.json'), join(rotate, 'mqtt-clients.json'));
    const cli = new MqttCredentials(rotate);
    await cli.revoke('bed-01');
    const fresh = (await cli.add('bed-01')).password;
    renameSync(join(rotate, 'mqtt-clients.json'), join(t.dir, 'mqtt-clients.json'));
    const gone = await Promise.race([closed.then(() => true), new Promise((r) => setTimeout(() => r(false), 10_000))]);
    expect(gone).toBe(true);
    expect(broker.clientStates().find((s) => s.clientId === 'bed-01')?.offlineReason).toBe('revoked');
    expect(((await connect('bed-01', pw['bed-01']).then(() => undefined, (e) => e)) as { code?: number }).code).toBe(4);
    const again = await connect('bed-01', fresh);
    await new Promise((r) => setTimeout(r, 400)); // a few polls: the new login's connection stays
    expect(again.connected).toBe(true);
    pw['bed-01'] = fresh;
  });
});
