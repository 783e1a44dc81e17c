import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { prepareDatabase } from '../store/migrations';
import { AuditLog, setSharedAuditLog } from '../audit/audit-log';
import { UserStore } from './users';
import { nodeRedAdminAuth } from './node-red-auth';
import express from 'express';
import { request, type Server } from 'node:http';

describe('Node-RED editor login (admins only)', () => {
  let dir: string;
  let db: Database.Database;
  let users: UserStore;
  let audit: AuditLog;
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'nr-auth-'));
    db = new Database(join(dir, 'gateway.db'));
    prepareDatabase(db);
    audit = new AuditLog(db);
    setSharedAuditLog(audit);
    users = new UserStore(db, { rounds: 4 });
    await users.add('boss', 'admin', 'boss password');
    await users.add('boss2', 'admin', 'boss2 password');
    await users.add('tech', 'operator', 'tech password');
  });
  afterAll(() => {
    setSharedAuditLog(undefined);
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const cases: Array<[string, string, string, boolean, string]> = [
    ['an admin', 'boss', 'boss password', true, 'login.ok:ok'],
    ['an operator with the right password', 'tech', 'tech password', false, 'login.failed:denied'],
    ['an admin with a wrong password', 'boss', 'nope nope', false, 'login.failed:failed'],
    ['an unknown user', 'ghost', 'whatever1', false, 'login.failed:failed'],
  ];
  it.each(cases)('%s → %s', async (_n, user, pw, ok, audited) => {
    const a = nodeRedAdminAuth(users);
    const r = await a.authenticate(a.begin(user, '127.0.0.9'), pw);
    expect(r).toEqual(ok ? { username: user, permissions: '*' } : null);
    const last = audit.list(1)[0];
    expect(`${last.action}:${last.outcome}`).toBe(audited);
    expect(last).toMatchObject({ source: '127.0.0.9', detail: { via: 'editor' } });
  });

  it('a login that did not pass the gate (no tag, forged or replayed tag) is refused even with the right password', async () => {
    const a = nodeRedAdminAuth(users);
    expect(await a.authenticate('boss', 'boss password')).toBeNull();
    expect(await a.authenticate('boss\u00011\u0001forged', 'boss password')).toBeNull();
    const tag = a.begin('boss', '127.0.0.9');
    expect(await a.authenticate(tag, 'boss password')).toEqual({ username: 'boss', permissions: '*' });
    expect(await a.authenticate(tag, 'boss password')).toBeNull(); // used once
  });

  it('a token of a user who is no longer an admin stops working (users() re-checks the role)', async () => {
    const a = nodeRedAdminAuth(users);
    const token = a.begin('boss2', '127.0.0.9');
    expect(await a.users(token)).toEqual({ username: 'boss2', permissions: '*' });
    users.setRole('boss2', 'viewer');
    expect(await a.users(token)).toBeNull();
    users.remove('boss2');
    expect(await a.users(token)).toBeNull();
    expect(await a.users(a.begin('tech', '127.0.0.9'))).toBeNull();
    expect(await a.users('boss')).toBeNull(); // untagged names are never a token user
  });

  it('a password change revokes the editor tokens issued before it, not those issued after', async () => {
    let t = Date.now();
    const a = nodeRedAdminAuth(users, { now: () => t });
    await users.add('boss3', 'admin', 'boss3 password');
    t = Date.now() + 1000;
    const before = a.begin('boss3', '127.0.0.9');
    expect(await a.users(before)).toEqual({ username: 'boss3', permissions: '*' });
    await new Promise((r) => setTimeout(r, 1100));
    await users.setPassword('boss3', 'boss3 new password');
    expect(await a.users(before)).toBeNull();
    t = Date.now() + 10;
    expect(await a.users(a.begin('boss3', '127.0.0.9'))).toEqual({ username: 'boss3', permissions: '*' });
  });

  it('brute force from one address does not lock the owner out from another (Node-RED own limiter: 5 per name anywhere)', async () => {
    const a = nodeRedAdminAuth(users);
    const results: Array<unknown> = [];
    for (let i = 0; i < 12; i++) results.push(await a.authenticate(a.begin('boss', '127.0.0.66'), `wrong ${i}`));
    expect(results.every((r) => r === null)).toBe(true);
    expect(await a.authenticate(a.begin('boss', '127.0.0.7'), 'boss password')).toEqual({ username: 'boss', permissions: '*' });
  });

  it('the login gate throttles by address and user: 429 for the attacker, the owner still gets in from another address', async () => {
    const a = nodeRedAdminAuth(users);
    const app = express();
    // stands in for Node-RED's POST /auth/token behind the gate
    app.post('/auth/token', a.loginGate, (req, res) => {
      const b = req.body as { username: string; password: string };
      a.authenticate(b.username, b.password).then((u) => res.status(u ? 200 : 401).json({ user: u?.username ?? null }));
    });
    const server: Server = await new Promise((r) => {
      const s = app.listen(0, '127.0.0.1', () => r(s));
    });
    const port = (server.address() as { port: number }).port;
    const post = (from: string, username: string, password: string) =>
      new Promise<number>((resolve, reject) => {
        const body = new URLSearchParams({ client_id: 'node-red-editor', grant_type: 'password', scope: '', username, password }).toString();
        const req = request({ host: '127.0.0.1', port, path: '/auth/token', method: 'POST', localAddress: from, headers: { 'content-type': 'application/x-www-form-urlencoded', 'content-length': Buffer.byteLength(body) } }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        });
        req.on('error', reject);
        req.end(body);
      });
    try {
      const attacker: number[] = [];
      for (let i = 0; i < 12; i++) attacker.push(await post('127.0.0.66', 'boss', `wrong ${i}`));
      expect(attacker.slice(0, 5)).toEqual([401, 401, 401, 401, 401]);
      expect(attacker.slice(5)).toContain(429);
      expect(await post('127.0.0.66', 'boss', 'boss password')).toBe(429); // the attacker's address waits, right password or not
      expect(await post('127.0.0.7', 'boss', 'boss password')).toBe(200); // the owner, elsewhere
    } finally {
      await new Promise<void>((r) => server.close(() => r()));
    }
  });
});
