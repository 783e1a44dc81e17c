/**
 * MQTT device logins from the admin API (mounted as in api.ts) and from the CLI, on one real data dir:
 * both write the same 0600 file, only hashes are kept, every change is audited.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import type { AddressInfo } from 'node:net';
import express from 'express';
import { loadSettings } from '../config/settings';
import { openAccounts, type Accounts } from '../accounts/accounts';
import { apiErrorHandler } from './errors';
import { mqttClientsRouter } from './mqtt-clients';
import { runMqttClientCommand } from '../../../drivers/mqtt/cli-commands';
import { MqttCredentials } from '../../../drivers/mqtt/credentials';
import { tempDir } from '../../../test/helpers/env';

const t = tempDir('iomt-mqtt-clients-');
const env = { IOMT_DATA_DIR: t.dir, IOMT_ADMIN_PASSWORD: 'the admin password' };
let acc: Accounts;
let base: string;
let server: import('node:http').Server;

beforeAll(async () => {
  acc = openAccounts(loadSettings({ env, cwd: t.dir }), { pruneIntervalMs: 0 });
  const app = express();
  app.use(express.json());
  // the API's authentication, reduced to a header naming the role (auth itself is tested in auth.test.ts)
  app.use((req, res, next) => {
    res.locals.principal = { user: 'u1', role: req.header('x-role') ?? 'admin', via: 'basic', source: '127.0.0.1' };
    next();
  });
  app.use('/api/v1/mqtt-clients', mqttClientsRouter(t.dir, acc.audit));
  app.use(apiErrorHandler(() => {}));
  server = app.listen(0, '127.0.0.1');
  await new Promise((r) => server.once('listening', r));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/v1/mqtt-clients`;
});

afterAll(async () => {
  await new Promise((r) => server.close(r));
  acc.close();
  t.cleanup();
});

const call = async (method: string, path: string, body?: unknown, role = 'admin') => {
  const r = await fetch(base + path, { method, headers: { 'content-type': 'application/json', 'x-role': role }, body: body === undefined ? undefined : JSON.stringify(body) });
  return { status: r.status, body: (await r.json()) as any };
};

describe('MQTT device logins', () => {
  it('API: add (generated password shown once), list, duplicate 409, bad id 400, revoke, 404; admin only', async () => {
    const add = await call('POST', '/', { clientId: 'bed-01' });
    expect(add.status).toBe(201);
    expect(add.body.client.clientId).toBe('bed-01');
    expect(add.body.generatedPassword).toMatch(/^[A-Za-z0-9_-]{24}$/);
    const creds = new MqttCredentials(t.dir);
    expect(await creds.verify('bed-01', add.body.generatedPassword)).toBe(true);
    expect(await creds.verify('bed-01', 'wrong-password-123456')).toBe(false);
    // only the hash is on disk, mode 0600
    const file = readFileSync(join(t.dir, 'mqtt-clients.json'), 'utf8');
    expect(file).not.toContain(add.body.generatedPassword);
    expect(file).toMatch(/scrypt\$1024\$8\$1\$/);
    expect(statSync(join(t.dir, 'mqtt-clients.json')).mode & 0o777).toBe(0o600);

    expect((await call('POST', '/', { clientId: 'bed-01' })).status).toBe(409);
    expect((await call('POST', '/', { clientId: 'iomt/#' })).status).toBe(400);
    expect((await call('POST', '/', { clientId: 'constructor' })).status).toBe(201); // no prototype surprises
    expect((await call('POST', '/', { clientId: 'bed-09', password: 'short' })).status).toBe(400);
    expect((await call('POST', '/', { clientId: 'bed-09', colour: 1 })).status).toBe(400);
    expect((await call('GET', '/', undefined, 'operator')).status).toBe(403);
    expect((await call('POST', '/', { clientId: 'bed-10' }, 'viewer')).status).toBe(403);
    expect((await call('GET', '/')).body.clients.map((c: { clientId: string }) => c.clientId)).toEqual(['bed-01', 'constructor']);

    expect((await call('DELETE', '/bed-01')).body).toEqual({ revoked: 'bed-01' });
    expect(await creds.verify('bed-01', add.body.generatedPassword)).toBe(false);
    expect((await call('DELETE', '/bed-01')).status).toBe(404);
    const actions = acc.audit.list(20).map((a) => `${a.action}:${a.target}`);
    expect(actions).toEqual(expect.arrayContaining(['mqtt-client.add:bed-01', 'mqtt-client.add:constructor', 'mqtt-client.revoke:bed-01']));
  });

  it('CLI: add with a generated password (printed once) or from stdin, list, revoke; same file as the API', async () => {
    let out = '';
    let err = '';
    const io = { env, out: (s: string) => (out += s), err: (s: string) => (err += s) };
    expect(await runMqttClientCommand(['add', 'bed-02'], io)).toBe(0);
    const pw = /password \(shown once\): (\S+)/.exec(out)![1];
    expect(await new MqttCredentials(t.dir).verify('bed-02', pw)).toBe(true);
    const { Readable } = await import('node:stream');
    out = '';
    expect(await runMqttClientCommand(['add', 'bed-03', '--password-stdin'], { ...io, stdin: Readable.from(['a fixed device password\n']) })).toBe(0);
    expect(out).not.toContain('a fixed device password');
    expect(await new MqttCredentials(t.dir).verify('bed-03', 'a fixed device password')).toBe(true);
    expect(await runMqttClientCommand(['add', 'bed-02'], io)).toBe(1);
    expect(err).toMatch(/exists/);
    expect(await runMqttClientCommand(['add', 'bed-04', 'password-on-argv'], io)).toBe(2);
    out = '';
    expect(await runMqttClientCommand(['list'], io)).toBe(0);
    expect(out.split('\n').slice(1, -1).map((l) => l.split(/\s+/)[0])).toEqual(['bed-01', 'bed-02', 'bed-03', 'constructor']);
    expect(await runMqttClientCommand(['revoke', 'bed-02'], io)).toBe(0);
    expect(await new MqttCredentials(t.dir).verify('bed-02', pw)).toBe(false);
    expect(acc.audit.list(50).some((a) => a.action === 'mqtt-client.revoke' && a.target === 'bed-02' && a.source === 'cli')).toBe(true);
  });
});
