import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { prepareDatabase } from '../store/migrations';
import { AuditLog, setSharedAuditLog } from '../audit/audit-log';
import { UserStore } from './users';
import { nodeRedAdminAuth } from './node-red-auth';

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
    const r = await a.authenticate(user, pw);
    expect(r).toEqual(ok ? { username: user, permissions: '*' } : null);
    const last = audit.list(1)[0];
    expect(`${last.action}:${last.outcome}`).toBe(audited);
    expect(last).toMatchObject({ source: 'editor', detail: { via: 'editor' } });
  });

  it('a token of a user who is no longer an admin stops working (users() re-checks the role)', async () => {
    const a = nodeRedAdminAuth(users);
    expect(await a.users('boss2')).toEqual({ username: 'boss2', permissions: '*' });
    users.setRole('boss2', 'viewer');
    expect(await a.users('boss2')).toBeNull();
    users.remove('boss2');
    expect(await a.users('boss2')).toBeNull();
    expect(await a.users('tech')).toBeNull();
  });
});
