/**
 * The API as each role, over real HTTP (a server on port 0) on a real store: role checks, PHI
 * stripping, login sessions, JSON error codes for bad input, audit records and tamper detection.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import express from 'express';
import { loadSettings } from '../config/settings';
import { GatewayStore } from '../store/gateway-store';
import { sampleMessage } from '../store/test/fixtures';
import { GatewayRuntime } from '../runtime';
import { openAccounts, type Accounts } from '../accounts/accounts';
import { Authenticator } from './auth';
import { apiRouter } from './api';

const PW = { admin: 'admin password 1', operator: 'operator password', viewer: 'viewer password' } as const;
type Who = keyof typeof PW | 'nobody';

describe('/api/v1 over HTTP, as each role', () => {
  let dir: string;
  let store: GatewayStore;
  let accounts: Accounts;
  let server: Server;
  let base: string;
  let msg: { id: number; uid: string };
  let deadId: number;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'api-'));
    const settings = loadSettings({ env: { IOMT_DATA_DIR: dir, IOMT_ADMIN_PASSWORD: PW.admin }, cwd: dir });
    accounts = openAccounts(settings, { pruneIntervalMs: 0 });
    store = GatewayStore.open({ dataDir: dir });
    const rt = new GatewayRuntime(settings, store);
    await accounts.users.add('tech', 'operator', PW.operator);
    await accounts.users.add('guest', 'viewer', PW.viewer);
    const c = await store.submit(sampleMessage(1, { patientId: 'PAT-SECRET-1', specimenId: 'SPEC-777' }));
    msg = { id: c.messageId, uid: c.messageUid };
    store.setDestinationPolicy('his', { maxAttempts: 1 });
    await store.appendOutbox('his', [{ key: `${c.messageUid}:his`, messageId: c.messageId, payload: Buffer.from('MSH|PID|PAT-SECRET-1') }]);
    const [e] = store.lease('his', 1, 10_000);
    await store.settle('his', [{ id: e.id, outcome: 'retry', error: 'AE' }]);
    deadId = e.id;

    const auth = new Authenticator({ users: accounts.users, audit: accounts.audit, failuresBeforeDelay: 1000 });
    const app = express();
    app.use('/api/v1', apiRouter(rt, { auth, users: accounts.users, audit: accounts.audit, messageIdByUid: accounts.messageIdByUid }));
    server = createServer(app);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const a = server.address();
    base = `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}/api/v1`;
  });
  afterAll(async () => {
    await new Promise<void>((r) => server.close(() => r()));
    await store.close();
    accounts.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const userOf: Record<Exclude<Who, 'nobody'>, string> = { admin: 'admin', operator: 'tech', viewer: 'guest' };
  function basic(who: Who): Record<string, string> {
    if (who === 'nobody') return {};
    return { authorization: `Basic ${Buffer.from(`${userOf[who]}:${PW[who]}`).toString('base64')}` };
  }
  async function call(who: Who, method: string, path: string, body?: string, headers: Record<string, string> = {}) {
    const res = await fetch(base + path, {
      method,
      headers: { ...basic(who), ...(body !== undefined ? { 'content-type': 'application/json' } : {}), ...headers },
      body,
    });
    const text = await res.text();
    return { status: res.status, type: res.headers.get('content-type') ?? '', text, json: text ? (JSON.parse(text) as Record<string, unknown>) : {}, res };
  }

  // [route, method, who, expected status]
  const matrix: Array<[string, string, Who, number]> = [
    ['/devices', 'GET', 'viewer', 200],
    ['/destinations', 'GET', 'viewer', 200],
    ['/dead-letters', 'GET', 'viewer', 200],
    ['/quarantine', 'GET', 'viewer', 200],
    ['/messages', 'GET', 'viewer', 200],
    ['/messages?patientId=PAT-SECRET-1', 'GET', 'viewer', 403],
    ['/messages?specimenId=SPEC-777', 'GET', 'viewer', 403],
    ['/messages?specimenId=SPEC-777', 'GET', 'operator', 200],
    ['/dead-letters/replay', 'POST', 'viewer', 403],
    ['/users', 'GET', 'viewer', 403],
    ['/users', 'GET', 'operator', 403],
    ['/users', 'GET', 'admin', 200],
    ['/audit', 'GET', 'operator', 403],
    ['/audit', 'GET', 'admin', 200],
    ['/audit/verify', 'GET', 'viewer', 403],
    ['/devices', 'GET', 'nobody', 401],
    ['/audit', 'GET', 'nobody', 401],
  ];
  it.each(matrix)('%s %s as %s → %d (JSON with a code)', async (path, method, who, status) => {
    const r = await call(who, method, path, method === 'POST' ? '{}' : undefined);
    expect(r.status).toBe(status);
    expect(r.type).toMatch(/application\/json/);
    if (status >= 400) expect(r.json.code).toMatch(/^GW_API_/);
  });

  it('a viewer gets a message without PHI (raw, observations, meta withheld); an operator gets it whole, audited', async () => {
    const v = await call('viewer', 'GET', `/messages/${msg.id}`);
    expect(v.status).toBe(200);
    expect(v.text).not.toContain('PAT-SECRET-1');
    expect(v.json).toMatchObject({ id: msg.id, uid: msg.uid, phi: 'withheld', observationCount: 2 });
    expect(v.json.raw).toBeUndefined();
    expect(v.json.observations).toBeUndefined();
    const o = await call('operator', 'GET', `/messages/${msg.id}`);
    expect(o.status).toBe(200);
    expect(o.text).toContain('PAT-SECRET-1');
    const rows = accounts.audit.list(5);
    expect(rows.find((r) => r.action === 'phi.view')).toMatchObject({ user: 'tech', role: 'operator', target: `message:${msg.id}`, source: '127.0.0.1' });
  });

  it('GET /messages/:id takes the numeric id or the uid string', async () => {
    const byUid = await call('operator', 'GET', `/messages/${msg.uid}`);
    expect(byUid.status).toBe(200);
    expect(byUid.json.id).toBe(msg.id);
    expect((await call('operator', 'GET', `/messages/${msg.uid.toLowerCase()}`)).json.id).toBe(msg.id);
    expect((await call('operator', 'GET', '/messages/0000000000000000ZZ')).status).toBe(404);
    expect((await call('operator', 'GET', '/messages/999999')).status).toBe(404);
    expect((await call('operator', 'GET', '/messages/not-an-id')).json.code).toBe('GW_API_BAD_REQUEST');
  });

  const badInput: Array<[string, string, string, string | undefined, number, string]> = [
    ['malformed JSON', 'POST', '/dead-letters/replay', '{"destination": ', 400, 'GW_API_BAD_REQUEST'],
    ['a JSON array body', 'POST', '/dead-letters/replay', '[1,2]', 400, 'GW_API_BAD_REQUEST'],
    ['an unknown body field', 'POST', '/dead-letters/replay', '{"dest":"his"}', 400, 'GW_API_BAD_REQUEST'],
    ['limit=abc', 'GET', '/messages?limit=abc', undefined, 400, 'GW_API_BAD_REQUEST'],
    ['limit=0', 'GET', '/messages?limit=0', undefined, 400, 'GW_API_BAD_REQUEST'],
    ['limit=5000', 'GET', '/quarantine?limit=5000', undefined, 400, 'GW_API_BAD_REQUEST'],
    ['beforeId=-1', 'GET', '/dead-letters?beforeId=-1', undefined, 400, 'GW_API_BAD_REQUEST'],
    ['an unknown query parameter', 'GET', '/messages?patientID=PAT-SECRET-1', undefined, 400, 'GW_API_BAD_REQUEST'],
    ['a repeated query parameter', 'GET', '/messages?limit=1&limit=2', undefined, 400, 'GW_API_BAD_REQUEST'],
    ['an unknown status', 'GET', '/messages?status=lost', undefined, 400, 'GW_API_BAD_REQUEST'],
    ['a bad from time', 'GET', '/messages?from=yesterday', undefined, 400, 'GW_API_BAD_REQUEST'],
    ['an unknown destination (replay)', 'POST', '/dead-letters/replay', '{"destination":"nowhere"}', 404, 'GW_API_NOT_FOUND'],
    ['an unknown destination (list)', 'GET', '/dead-letters?destination=nowhere', undefined, 404, 'GW_API_NOT_FOUND'],
    ['an unknown dead letter', 'POST', '/dead-letters/999999/replay', '{}', 404, 'GW_API_NOT_FOUND'],
    ['an unknown quarantine entry', 'GET', '/quarantine/999999', undefined, 404, 'GW_API_NOT_FOUND'],
    ['an unknown route', 'GET', '/nothing-here', undefined, 404, 'GW_API_NOT_FOUND'],
    ['an oversized body', 'POST', '/dead-letters/replay', JSON.stringify({ destination: 'x'.repeat(70_000) }), 413, 'GW_API_TOO_LARGE'],
  ];
  it.each(badInput)('%s → %d %s, JSON without a stack trace or paths', async (_n, method, path, body, status, code) => {
    const r = await call('admin', method, path, body);
    expect(r.status).toBe(status);
    expect(r.type).toMatch(/application\/json/);
    expect(r.json.code).toBe(code);
    expect(r.text).not.toMatch(/at .*\.(js|ts):\d+|node_modules|\/work\/|<html|<pre/i);
  });

  it('an operator replays a dead letter by id (audited); a replay of an unknown destination is audited as failed', async () => {
    expect(store.deadLetters('his').map((d) => d.id)).toEqual([deadId]);
    const r = await call('operator', 'POST', `/dead-letters/${deadId}/replay`);
    expect(r.status).toBe(200);
    expect(r.json.replayed).toBe(1);
    expect(store.deadLetters('his')).toHaveLength(0);
    expect((await call('operator', 'POST', '/dead-letters/replay', '{"destination":"his"}')).json.replayed).toBe(0);
    const rows = accounts.audit.list(50);
    expect(rows.find((x) => x.action === 'replay' && x.target === `dead-letter:${deadId}`)).toMatchObject({ user: 'tech', role: 'operator', outcome: 'ok', detail: { replayed: 1 } });
    expect(rows.find((x) => x.action === 'replay' && x.target === 'destination:nowhere')).toMatchObject({ outcome: 'failed', detail: { reason: 'unknown destination' } });
  });

  it('login sets an HttpOnly SameSite=Strict session cookie that works until logout; wrong passwords are 401 and audited', async () => {
    const bad = await call('nobody', 'POST', '/login', JSON.stringify({ user: 'tech', password: 'wrong' }));
    expect(bad.status).toBe(401);
    expect(bad.json.code).toBe('GW_API_UNAUTHENTICATED');
    expect(accounts.audit.list(1)[0]).toMatchObject({ action: 'login.failed', user: 'tech', outcome: 'failed', source: '127.0.0.1' });
    expect((await call('nobody', 'POST', '/login', '{"user":1}')).status).toBe(400);

    const ok = await call('nobody', 'POST', '/login', JSON.stringify({ user: 'tech', password: PW.operator }));
    expect(ok.status).toBe(200);
    expect(ok.json).toMatchObject({ user: 'tech', role: 'operator' });
    const setCookie = ok.res.headers.get('set-cookie') ?? '';
    expect(setCookie).toMatch(/^iomt_session=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Strict$/); // no Secure over plain HTTP
    const cookie = setCookie.split(';')[0];
    expect(accounts.audit.list(1)[0]).toMatchObject({ action: 'login.ok', user: 'tech', detail: { via: 'session' } });

    const me = await call('nobody', 'GET', '/account', undefined, { cookie });
    expect(me.json).toMatchObject({ user: 'tech', role: 'operator', via: 'session' });
    expect((await call('nobody', 'GET', '/users', undefined, { cookie })).status).toBe(403);
    expect((await call('nobody', 'POST', '/logout', undefined, { cookie })).json.loggedOut).toBe(true);
    expect((await call('nobody', 'GET', '/account', undefined, { cookie })).status).toBe(401);
  });

  it('password change: own (needs the current one, re-issues the session), admin reset of another user ends that user\'s sessions', async () => {
    await accounts.users.add('tech2', 'operator', 'tech2 password');
    const login = await call('nobody', 'POST', '/login', JSON.stringify({ user: 'tech2', password: 'tech2 password' }));
    const cookie = (login.res.headers.get('set-cookie') ?? '').split(';')[0];
    const wrong = await call('nobody', 'POST', '/account/password', JSON.stringify({ currentPassword: 'nope', newPassword: 'tech2 password 2' }), { cookie });
    expect(wrong.status).toBe(400);
    const own = await call('nobody', 'POST', '/account/password', JSON.stringify({ currentPassword: 'tech2 password', newPassword: 'tech2 password 2' }), { cookie });
    expect(own.status).toBe(200);
    const cookie2 = (own.res.headers.get('set-cookie') ?? '').split(';')[0];
    expect((await call('nobody', 'GET', '/account', undefined, { cookie })).status).toBe(401); // old session ended
    expect((await call('nobody', 'GET', '/account', undefined, { cookie: cookie2 })).status).toBe(200);
    // an operator may not reset someone else
    expect((await call('operator', 'POST', '/account/password', JSON.stringify({ user: 'tech2', newPassword: 'hijacked password' }))).status).toBe(403);
    // the admin resets tech2: the session ends, the new password works
    const reset = await call('admin', 'POST', '/account/password', JSON.stringify({ user: 'tech2', newPassword: 'reset by admin' }));
    expect(reset.status).toBe(200);
    expect((await call('nobody', 'GET', '/account', undefined, { cookie: cookie2 })).status).toBe(401);
    expect(await accounts.users.verifyUser('tech2', 'reset by admin')).toEqual({ user: 'tech2', role: 'operator' });
    expect((await call('admin', 'POST', '/account/password', JSON.stringify({ user: 'ghost', newPassword: 'whatever long' }))).status).toBe(404);
  });

  it('admins manage users over the API: add (generated password shown once), role, remove; the last admin stays', async () => {
    const add = await call('admin', 'POST', '/users', JSON.stringify({ name: 'nurse', role: 'viewer' }));
    expect(add.status).toBe(201);
    const pw = add.json.generatedPassword as string;
    expect(pw).toHaveLength(24);
    expect(await accounts.users.verifyUser('nurse', pw)).toEqual({ user: 'nurse', role: 'viewer' });
    expect((await call('admin', 'POST', '/users', JSON.stringify({ name: 'nurse', role: 'viewer' }))).json.code).toBe('GW_API_CONFLICT');
    expect((await call('admin', 'POST', '/users', JSON.stringify({ name: 'x y', role: 'viewer' }))).status).toBe(400);
    expect((await call('admin', 'PATCH', '/users/nurse', JSON.stringify({ role: 'operator' }))).json).toMatchObject({ user: { name: 'nurse', role: 'operator' } });
    expect((await call('admin', 'DELETE', '/users/admin')).json.code).toBe('GW_API_CONFLICT');
    expect((await call('admin', 'DELETE', '/users/nurse')).status).toBe(200);
    expect((await call('admin', 'DELETE', '/users/nurse')).status).toBe(404);
    const actions = accounts.audit.list(50).map((r) => `${r.action}:${r.target}`);
    expect(actions).toEqual(expect.arrayContaining(['user.add:nurse', 'user.role:nurse', 'user.remove:nurse']));
  });

  it('GET /audit pages newest first; /audit/verify reports the first row tampered with directly in SQLite', async () => {
    const p1 = await call('admin', 'GET', '/audit?limit=3');
    const rows = p1.json.audit as Array<{ id: number }>;
    expect(rows).toHaveLength(3);
    expect(rows[0].id).toBeGreaterThan(rows[2].id);
    const p2 = await call('admin', 'GET', `/audit?limit=3&beforeId=${p1.json.next}`);
    expect((p2.json.audit as Array<{ id: number }>)[0].id).toBe(rows[2].id - 1);
    expect((await call('admin', 'GET', '/audit/verify')).json).toMatchObject({ ok: true });

    const target = accounts.audit.list(1000).find((r) => r.action === 'phi.view')!;
    const db = new Database(join(dir, 'gateway.db'));
    db.prepare(`UPDATE audit_log SET actor = 'someone-else' WHERE id = ?`).run(target.id);
    db.close();
    const v = await call('admin', 'GET', '/audit/verify');
    expect(v.status).toBe(200);
    expect(v.json).toMatchObject({ ok: false, firstBroken: { id: target.id } });
  });
});
