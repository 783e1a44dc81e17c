/**
 * The `iomt-mqtt-broker` node: configuration → broker options (data-driven), its field spec and editor
 * HTML, and the node itself in a minimal Node-RED stand-in with a real runtime and store: it listens after
 * flows:started, commits a publish from mosquitto_pub, emits it, lists the broker and each client in the
 * device list (connected, then offline), and stops on close.
 */
import { execFile } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { loadSettings } from '../../gateway/src/config/settings';
import { specProblems } from '../../gateway/src/node-red/device-node';
import { GatewayRuntime, setRuntime } from '../../gateway/src/runtime';
import { GatewayStore } from '../../gateway/src/store/gateway-store';
import { freePort, requirePeer, tempDir, waitFor } from '../../test/helpers/env';
import { brokerOptions } from './broker-node';
import { MqttCredentials } from './credentials';
import { MQTT_BROKER_SPEC } from './node-red/iomt-mqtt-broker.spec';

const run = promisify(execFile);

describe('iomt-mqtt-broker configuration', () => {
  it('defaults and ${ENV} templates resolve to broker options; bad values are refused with the reason', () => {
    process.env.H12A_TEST_PORT = '18883';
    expect(brokerOptions({ id: 'n1', port: '${H12A_TEST_PORT}' }, '/data')).toMatchObject({ deviceId: 'n1', port: 18883, host: '0.0.0.0', dataDir: '/data', allowAnonymous: false, maxConnections: 1024, maxPerAddress: 8, maxPayloadBytes: 262144, maxSkewMs: 300_000 });
    expect(brokerOptions({ id: 'n1', port: '${MQTT_PORT_UNSET:-1883}', name: 'icu', maxSkewS: '60', allowFrom: '10.0.0.0/8' }, '/d')).toMatchObject({ deviceId: 'icu', port: 1883, maxSkewMs: 60_000, allowFrom: '10.0.0.0/8' });
    expect(brokerOptions({ id: 'n1', port: '1883' }, '/d').tls).toBeUndefined();
    // tls auto (the default): on only when certificate and key resolve to file names
    expect(brokerOptions({ id: 'n1', port: '1883', tlsCert: '${MQTT_TLS_CERT_UNSET}', tlsKey: '${MQTT_TLS_KEY_UNSET}' }, '/d').tls).toBeUndefined();
    expect(() => brokerOptions({ id: 'n1', port: '1883', tls: 'auto', tlsCert: '/etc/cert.pem' }, '/d')).toThrow(/needs a key/);
    expect(() => brokerOptions({ id: 'n1', port: '1883', tls: 'auto', tlsCert: '/nonexistent.crt', tlsKey: '/nonexistent.key' }, '/d')).toThrow(/TLS certificate file/);
    expect(() => brokerOptions({ id: 'n1', port: '1883', tls: 'maybe' }, '/d')).toThrow(/auto, on or off/);
    expect(brokerOptions({ id: 'n1', port: '1883', tls: 'off', tlsCert: '/x', tlsKey: '/y' }, '/d').tls).toBeUndefined();
    expect(() => brokerOptions({ id: 'n1', port: '70000' }, '/d')).toThrow(/invalid port/);
    expect(() => brokerOptions({ id: 'n1', port: '1883', tls: true, tlsCert: '/nonexistent.crt', tlsKey: '/nonexistent.key' }, '/d')).toThrow(/TLS certificate file/);
  });

  it('the field spec refuses a bad port, device id and allow-list; the editor HTML has every field; literal defaults pass', () => {
    const ok = { id: 'n', port: '1883' };
    expect(specProblems(MQTT_BROKER_SPEC, ok, {})).toBeUndefined();
    expect(specProblems(MQTT_BROKER_SPEC, { ...ok, port: '99999' }, {})).toMatch(/port/);
    expect(specProblems(MQTT_BROKER_SPEC, { ...ok, deviceId: 'a/b' }, {})).toMatch(/deviceId/);
    expect(specProblems(MQTT_BROKER_SPEC, { ...ok, allowFrom: 'everyone' }, {})).toMatch(/allowFrom/);
    expect(specProblems(MQTT_BROKER_SPEC, { ...ok, tls: 'on' }, {})).toMatch(/tlsCert/);
    expect(specProblems(MQTT_BROKER_SPEC, { ...ok, tls: 'maybe' }, {})).toMatch(/tls/);
    // the shipped icu-vitals flow writes ${MQTT_TLS:-false}: accepted, and `true` needs the files
    expect(specProblems(MQTT_BROKER_SPEC, { ...ok, tls: '${MQTT_TLS:-false}' }, {})).toBeUndefined();
    expect(specProblems(MQTT_BROKER_SPEC, { ...ok, tls: '${MQTT_TLS:-true}' }, {})).toMatch(/tlsCert/);
    const html = readFileSync(join(__dirname, 'node-red', 'iomt-mqtt-broker.html'), 'utf8');
    expect(html).toContain("iomtFields.defaults('iomt-mqtt-broker')");
    for (const f of MQTT_BROKER_SPEC.fields) {
      if (f.type === 'bool') expect(html, f.name).toContain(`data-field="${f.name}"`);
      else expect(html, f.name).toMatch(new RegExp(`id="node-input-${f.name}"`));
    }
    const literal = Object.fromEntries(MQTT_BROKER_SPEC.fields.filter((f) => f.type !== 'file').map((f) => [f.name, f.default]));
    expect(specProblems(MQTT_BROKER_SPEC, { ...literal, id: 'n' }, {})).toBeUndefined();
  });
});

describe('iomt-mqtt-broker node in a Node-RED stand-in', () => {
  const tmp = tempDir('iomt-mqtt-node-');
  let store: GatewayStore | undefined;
  afterAll(async () => {
    setRuntime(undefined);
    await store?.close();
    tmp.cleanup();
  });

  it('listens after flows:started, commits a publish, emits it, lists broker and clients; close stops it', async () => {
    requirePeer('mosquitto_pub');
    store = GatewayStore.open({ dataDir: tmp.dir });
    const rt = new GatewayRuntime(loadSettings({ env: { IOMT_DATA_DIR: tmp.dir } }), store);
    setRuntime(rt);
    const pw = (await new MqttCredentials(rt.settings.dataDir).add('bed-01')).password;
    const events = new EventEmitter();
    let ctor: ((this: any, config: any) => void) | undefined;
    const RED = { events, nodes: { createNode: () => undefined, registerType: (_t: string, c: any) => (ctor = c) } };
    const mod = (await import('./node-red/iomt-mqtt-broker')) as unknown as { default: (red: unknown) => void };
    mod.default(RED);
    const sent: any[] = [];
    const statuses: any[] = [];
    const closers: Array<(removed: boolean, done: () => void) => void> = [];
    const node = { id: 'node1', send: (m: unknown) => sent.push(m), status: (s: unknown) => statuses.push(s), on: (_e: string, cb: any) => closers.push(cb), error: () => undefined, warn: () => undefined, log: () => undefined };
    const port = await freePort();
    ctor!.call(node, { id: 'node1', name: 'icu-mqtt', host: '127.0.0.1', port: String(port) });
    expect(statuses.at(-1)).toMatchObject({ fill: 'yellow' });
    events.emit('flows:started');
    await waitFor(() => rt.deviceStatuses().find((d) => d.deviceId === 'icu-mqtt' && d.state === 'listening'));
    // the known login is listed before it ever connects
    expect(rt.deviceStatuses().find((d) => d.deviceId === 'icu-mqtt/bed-01')).toMatchObject({ state: 'disconnected', detail: 'never connected' });
    const payload = JSON.stringify({ time: '2026-11-30T10:15:00Z', bed: 'ICU1-01', observations: [{ code: 'MDC_PULS_OXIM_SAT_O2', value: 96, unit: '%' }] });
    const r = await run('mosquitto_pub', ['-d', '-h', '127.0.0.1', '-p', String(port), '-i', 'bed-01', '-u', 'bed-01', '-P', pw, '-q', '1', '-t', 'iomt/bed-01/vitals', '-m', payload], { encoding: 'utf8' });
    expect(r.stdout).toContain('received PUBACK');
    await waitFor(() => sent.length === 1);
    expect(sent[0].topic).toBe('icu-mqtt');
    expect(sent[0].payload[0]).toMatchObject({ driver: 'mqtt-monitor', category: 'vital-signs', equipment: { id: 'bed-01' }, location: { bed: 'ICU1-01' }, code: { code: '150456' } });
    const client = await waitFor(() => rt.deviceStatuses().find((d) => d.deviceId === 'icu-mqtt/bed-01' && d.state === 'disconnected' && d.lastMessageAt));
    expect(client.detail).toMatch(/^offline \(disconnect\) since /);
    await new Promise<void>((res) => closers[0](false, res));
    expect(rt.deviceStatuses().filter((d) => d.deviceId.startsWith('icu-mqtt'))).toEqual([]);
    await expect(run('mosquitto_pub', ['-h', '127.0.0.1', '-p', String(port), '-i', 'bed-01', '-u', 'bed-01', '-P', pw, '-t', 'iomt/bed-01/vitals', '-m', payload])).rejects.toThrow();
  });
});
