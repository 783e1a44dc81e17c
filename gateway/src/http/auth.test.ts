import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import { createServer as createHttpsServer, request as httpsRequest } from 'node:https';
import { makeCerts } from '../../../test/helpers/tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import express from 'express';
import { prepareDatabase } from '../store/migrations';
import { AuditLog } from '../audit/audit-log';
import { UserStore } from '../accounts/users';
import { Authenticator, LoginThrottle } from './auth';
import { SessionStore, sessionOptionsFromEnv } from './sessions';

describe('SessionStore expiry', () => {
  it('ends a session after the idle time without use, and after the absolute time whatever the use', () => {
    let now = 0;
    const s = new SessionStore({ idleMs: 1000, maxMs: 5000, now: () => now });
    const a = s.create({ user: 'u', role: 'viewer' }, '1.2.3.4');
    const b = s.create({ user: 'u', role: 'viewer' }, '1.2.3.4');
    // a is used every 900 ms: survives the idle limit until the absolute limit
    for (now = 900; now <= 4500; now += 900) expect(s.touch(a.id)?.user).toBe('u');
    expect(s.touch(b.id)).toBeUndefined(); // idle for 4.5 s
    now = 5001;
    expect(s.touch(a.id)).toBeUndefined(); // absolute
    expect(s.size).toBe(0);
  });

  it('ends every session of a user on request (password, role, removal)', () => {
    const s = new SessionStore();
    const a = s.create({ user: 'u1', role: 'admin' }, 'x');
    const b = s.create({ user: 'u2', role: 'admin' }, 'x');
    expect(s.endUser('u1')).toBe(1);
    expect(s.touch(a.id)).toBeUndefined();
    expect(s.touch(b.id)?.user).toBe('u2');
    expect(s.touch('made-up')).toBeUndefined();
  });

  it.each([
    [{}, 30 * 60_000, 12 * 3600_000],
    [{ IOMT_SESSION_IDLE_MINUTES: '5', IOMT_SESSION_MAX_HOURS: '1' }, 5 * 60_000, 3600_000],
  ])('env %j → idle %d ms, max %d ms', (env, idle, max) => {
    expect(sessionOptionsFromEnv(env)).toEqual({ idleMs: idle, maxMs: max });
  });
  it.each(['0', '-1', 'x'])('IOMT_SESSION_IDLE_MINUTES=%s is refused', (v) => {
    expect(() => sessionOptionsFromEnv({ IOMT_SESSION_IDLE_MINUTES: v })).toThrow(RangeError);
  });
});

describe('Authenticator over HTTP', () => {
  let dir: string;
  let db: Database.Database;
  let server: Server;
  let base: string;
  let audit: AuditLog;
  let users: UserStore;
  let app: express.Express;

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'auth-'));
    db = new Database(join(dir, 'gateway.db'));
    prepareDatabase(db);
    audit = new AuditLog(db);
    users = new UserStore(db, { rounds: 4 });
    await users.add('boss', 'admin', 'boss password');
    await users.add('tech', 'operator', 'tech password');
    const auth = new Authenticator({ users, audit, failuresBeforeDelay: 3 });
    app = express();
    app.use(express.json());
    app.post('/login', auth.loginHandler());
    app.get('/admin-only', auth.middleware(['admin']), (_req, res) => res.json({ ok: true }));
    app.get('/any', auth.middleware(), (_req, res) => res.json({ who: res.locals.principal.user, via: res.locals.principal.via }));
    server = createServer(app);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const a = server.address();
    base = `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}`;
  });
  afterAll(async () => {
    await new Promise<void>((r) => server.close(() => r()));
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const basic = (u: string, p: string) => ({ authorization: `Basic ${Buffer.from(`${u}:${p}`).toString('base64')}` });

  it('Basic works for scripts; roles are enforced; a Basic login is audited once, not on every request', async () => {
    const before = audit.list(1000).length;
    for (let i = 0; i < 3; i++) expect((await fetch(`${base}/any`, { headers: basic('tech', 'tech password') })).status).toBe(200);
    expect(audit.list(1000).length - before).toBe(1);
    expect(audit.list(1)[0]).toMatchObject({ action: 'login.ok', user: 'tech', detail: { via: 'basic' } });
    const r = await fetch(`${base}/admin-only`, { headers: basic('tech', 'tech password') });
    expect(r.status).toBe(403);
    expect(((await r.json()) as { code: string }).code).toBe('GW_API_FORBIDDEN');
    expect((await fetch(`${base}/admin-only`, { headers: basic('boss', 'boss password') })).status).toBe(200);
    const none = await fetch(`${base}/any`);
    expect(none.status).toBe(401);
    expect(none.headers.get('www-authenticate')).toMatch(/^Basic realm="iomt-gateway"/);
  });

  it('a session of a user whose role changed (e.g. by the CLI in another process) ends at once', async () => {
    await users.add('temp', 'admin', 'temp password');
    const login = await fetch(`${base}/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user: 'temp', password: 'temp password' }) });
    const cookie = (login.headers.get('set-cookie') ?? '').split(';')[0];
    expect((await fetch(`${base}/admin-only`, { headers: { cookie } })).status).toBe(200);
    db.prepare(`UPDATE users SET role = 'viewer' WHERE name = 'temp'`).run(); // another process: no onChange here
    expect((await fetch(`${base}/any`, { headers: { cookie } })).status).toBe(401);
  });

  it('over HTTPS the session cookie is also Secure', async () => {
    const certs = makeCerts(dir);
    const tls = createHttpsServer({ cert: certs.cert, key: certs.key }, app);
    await new Promise<void>((r) => tls.listen(0, '127.0.0.1', r));
    try {
      const port = (tls.address() as { port: number }).port;
      const setCookie = await new Promise<string>((resolve, reject) => {
        const body = JSON.stringify({ user: 'boss', password: 'boss password' });
        const req = httpsRequest({ host: '127.0.0.1', port, path: '/login', method: 'POST', ca: certs.ca, headers: { 'content-type': 'application/json', 'content-length': Buffer.byteLength(body) } }, (res) => {
          res.resume();
          res.on('end', () => (res.statusCode === 200 ? resolve(String(res.headers['set-cookie'] ?? '')) : reject(new Error(`status ${res.statusCode}`))));
        });
        req.on('error', reject);
        req.end(body);
      });
      expect(setCookie).toMatch(/^iomt_session=[A-Za-z0-9_-]{43}; Path=\/; HttpOnly; SameSite=Strict; Secure$/);
    } finally {
      await new Promise<void>((r) => tls.close(() => r()));
    }
  });

  it('throttles an address after repeated failures (429 with Retry-After), every failure audited', async () => {
    const statuses: number[] = [];
    for (let i = 0; i < 4; i++) statuses.push((await fetch(`${base}/any`, { headers: basic('boss', `wrong ${i}`) })).status);
    expect(statuses).toEqual([401, 401, 401, 429]);
    const t = await fetch(`${base}/login`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user: 'boss', password: 'boss password' }) });
    expect(t.status).toBe(429);
    expect(Number(t.headers.get('retry-after'))).toBeGreaterThan(0);
    expect(audit.list(3).map((r) => `${r.action}:${r.outcome}:${r.user}`)).toEqual(['login.failed:failed:boss', 'login.failed:failed:boss', 'login.failed:failed:boss']);
  });
});

describe('LoginThrottle (issue 10 §5: per address and per user, never locking the owner out)', () => {
  type Step = [op: 'fail' | 'ok' | 'wait', address: string, user: string, expectWait?: 'zero' | 'positive'];
  const cases: Array<[string, Step[]]> = [
    ['an address waits after 5 failures, another address does not', [
      ...Array.from({ length: 5 }, (): Step => ['fail', '10.0.0.66', 'boss']),
      ['wait', '10.0.0.66', 'boss', 'positive'],
      ['wait', '10.0.0.66', 'someone-else', 'positive'],
      ['wait', '10.0.0.7', 'boss', 'zero'],
    ]],
    ['failures spread over many addresses hold the user only towards addresses that failed', [
      ...Array.from({ length: 12 }, (_, i): Step => ['fail', `10.0.1.${i}`, 'boss']),
      ['wait', '10.0.1.3', 'boss', 'positive'],
      ['wait', '10.0.1.3', 'tech', 'zero'],
      ['wait', '10.0.0.7', 'boss', 'zero'], // the owner at a clean address
    ]],
    ['a success from an address clears it', [
      ...Array.from({ length: 5 }, (): Step => ['fail', '10.0.0.8', 'boss']),
      ['wait', '10.0.0.8', 'boss', 'positive'],
      ['ok', '10.0.0.8', 'boss'],
      ['wait', '10.0.0.8', 'boss', 'zero'],
    ]],
  ];
  it.each(cases)('%s', (_name, steps) => {
    const t = new LoginThrottle({ now: () => 1_000_000 });
    for (const [op, address, user, expectWait] of steps) {
      if (op === 'fail') t.failed(address, user);
      else if (op === 'ok') t.succeeded(address, user);
      else if (expectWait === 'zero') expect(t.wait(address, user), `${address} ${user}`).toBe(0);
      else expect(t.wait(address, user), `${address} ${user}`).toBeGreaterThan(0);
    }
  });

  it('the wait doubles up to 60 s and ends by itself; failures are forgotten after the window', () => {
    let now = 0;
    const t = new LoginThrottle({ now: () => now, windowMs: 15 * 60_000 });
    const waits: number[] = [];
    for (let i = 0; i < 12; i++) {
      t.failed('10.0.0.66', 'boss');
      waits.push(t.wait('10.0.0.66', 'boss'));
    }
    expect(waits.slice(3, 12)).toEqual([0, 1, 2, 4, 8, 16, 32, 60, 60]);
    now += 61_000;
    expect(t.wait('10.0.0.66', 'boss')).toBe(0); // a wait, never a lock
    t.failed('10.0.0.66', 'boss');
    expect(t.wait('10.0.0.66', 'boss')).toBe(60);
    now += 16 * 60_000;
    t.failed('10.0.0.66', 'boss'); // after the window: counting starts again
    expect(t.wait('10.0.0.66', 'boss')).toBe(0);
  });
});
