import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import bcrypt from 'bcryptjs';
import { loadSettings } from '../config/settings';
import { prepareDatabase, MIGRATIONS, SCHEMA_VERSION } from '../store/migrations';
import { AuditLog } from '../audit/audit-log';
import { AccountError, UserStore } from './users';
import { openAccounts } from './accounts';

describe('UserStore (real SQLite file)', () => {
  let dir: string;
  let db: Database.Database;
  let users: UserStore;
  let audit: AuditLog;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'users-'));
    db = new Database(join(dir, 'gateway.db'));
    prepareDatabase(db);
    audit = new AuditLog(db);
    users = new UserStore(db, { dataDir: dir, rounds: 4, audit });
  });
  afterEach(() => {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('stores bcrypt hashes only and verifies user + password', async () => {
    await users.add('tech1', 'operator', 'correct horse 1');
    const row = db.prepare('SELECT * FROM users WHERE name = ?').get('tech1') as { password_hash: string };
    expect(row.password_hash).toMatch(/^\$2[aby]\$04\$/);
    expect(JSON.stringify(row)).not.toContain('correct horse 1');
    expect(await users.verifyUser('tech1', 'correct horse 1')).toEqual({ user: 'tech1', role: 'operator' });
    expect(await users.verifyUser('tech1', 'correct horse 1')).toEqual({ user: 'tech1', role: 'operator' }); // cached
    expect(await users.verifyUser('tech1', 'wrong password')).toBeUndefined();
    expect(await users.verifyUser('nobody', 'correct horse 1')).toBeUndefined();
    expect(await users.verifyUser('bad name!', 'x')).toBeUndefined();
  });

  it('a password change invalidates the cached credential at once and ends sessions (onChange)', async () => {
    await users.add('tech1', 'operator', 'first password');
    const changed: string[] = [];
    users.onChange((n, c) => changed.push(`${n}:${c}`));
    expect(await users.verifyUser('tech1', 'first password')).toBeDefined();
    await users.setPassword('tech1', 'second password');
    expect(await users.verifyUser('tech1', 'first password')).toBeUndefined();
    expect(await users.verifyUser('tech1', 'second password')).toEqual({ user: 'tech1', role: 'operator' });
    // a change made by another process (the CLI) on the same file is seen too
    db.prepare('UPDATE users SET password_hash = ? WHERE name = ?').run(bcrypt.hashSync('third password', 4), 'tech1');
    expect(await users.verifyUser('tech1', 'second password')).toBeUndefined();
    expect(changed).toEqual(['tech1:passwd']);
  });

  const refusals: Array<[string, (u: UserStore) => Promise<unknown> | unknown, string]> = [
    ['a short password', (u) => u.add('a1', 'viewer', 'short'), 'GW_ERR_ACCOUNT_INVALID'],
    ['a password over 72 bytes', (u) => u.add('a1', 'viewer', 'é'.repeat(40)), 'GW_ERR_ACCOUNT_INVALID'],
    ['a bad name', (u) => u.add('a b', 'viewer', 'long enough'), 'GW_ERR_ACCOUNT_INVALID'],
    ['an unknown role', (u) => u.add('a1', 'root' as never, 'long enough'), 'GW_ERR_ACCOUNT_INVALID'],
    ['an existing name', (u) => u.add('boss', 'viewer', 'long enough'), 'GW_ERR_ACCOUNT_EXISTS'],
    ['removing the last admin', (u) => u.remove('boss'), 'GW_ERR_ACCOUNT_LAST_ADMIN'],
    ['demoting the last admin', (u) => u.setRole('boss', 'operator'), 'GW_ERR_ACCOUNT_LAST_ADMIN'],
    ['passwd of an unknown user', (u) => u.setPassword('ghost', 'long enough'), 'GW_ERR_ACCOUNT_NOT_FOUND'],
    ['removing an unknown user', (u) => u.remove('ghost'), 'GW_ERR_ACCOUNT_NOT_FOUND'],
  ];
  it.each(refusals)('refuses %s', async (_n, op, code) => {
    await users.add('boss', 'admin', 'admin password');
    await expect(Promise.resolve().then(() => op(users))).rejects.toMatchObject({ code });
    await expect(Promise.resolve().then(() => op(users))).rejects.toBeInstanceOf(AccountError);
    expect(users.list().find((u) => u.name === 'boss')?.role).toBe('admin');
  });

  it('a second admin can be removed, then the first cannot', async () => {
    await users.add('boss', 'admin', 'admin password');
    await users.add('boss2', 'admin', 'admin password');
    users.remove('boss2');
    expect(() => users.remove('boss')).toThrow(/last admin/);
  });
});

describe('first admin bootstrap (openAccounts)', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'accounts-'));
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const settings = (env: Record<string, string> = {}) => loadSettings({ env: { IOMT_DATA_DIR: dir, ...env }, cwd: dir });

  it('first start: a generated password becomes the admin user; the file goes once the password is changed', async () => {
    const a = openAccounts(settings(), { pruneIntervalMs: 0 });
    try {
      expect(a.admin.generatedPassword).toBeTruthy();
      expect(statSync(join(dir, 'gateway.db')).mode & 0o777).toBe(0o600); // PHI: owner only, whatever the umask
      const file = join(dir, 'admin-password.txt');
      expect(readFileSync(file, 'utf8').trim()).toBe(a.admin.generatedPassword);
      expect(a.users.list()).toMatchObject([{ name: 'admin', role: 'admin' }]);
      expect(await a.users.verifyUser('admin', a.admin.generatedPassword!)).toEqual({ user: 'admin', role: 'admin' });
      expect(a.audit.list(1)[0]).toMatchObject({ action: 'user.add', target: 'admin', source: 'startup' });
      await a.users.setPassword('admin', 'a new admin password');
      expect(existsSync(file)).toBe(false);
    } finally {
      a.close();
    }
    // a restart neither regenerates a password nor recreates the file
    const b = openAccounts(settings(), { pruneIntervalMs: 0 });
    try {
      expect(b.admin.generatedPassword).toBeUndefined();
      expect(existsSync(join(dir, 'admin-password.txt'))).toBe(false);
      expect(await b.users.verifyUser('admin', 'a new admin password')).toBeDefined();
    } finally {
      b.close();
    }
  });

  it('a first-start file whose password was changed while the gateway was down is deleted at start', async () => {
    const a = openAccounts(settings(), { pruneIntervalMs: 0 });
    a.db.prepare('UPDATE users SET password_hash = ? WHERE name = ?').run(bcrypt.hashSync('changed elsewhere', 4), 'admin');
    a.close();
    expect(existsSync(join(dir, 'admin-password.txt'))).toBe(true);
    openAccounts(settings(), { pruneIntervalMs: 0 }).close();
    expect(existsSync(join(dir, 'admin-password.txt'))).toBe(false);
  });

  it('IOMT_ADMIN_PASSWORD is applied once per value: a later passwd is not reverted by a restart', async () => {
    const a = openAccounts(settings({ IOMT_ADMIN_PASSWORD: 'env password 1' }), { pruneIntervalMs: 0 });
    expect(a.admin.generatedPassword).toBeUndefined();
    expect(existsSync(join(dir, 'admin-password.txt'))).toBe(false);
    await a.users.setPassword('admin', 'changed on the page');
    a.close();
    const b = openAccounts(settings({ IOMT_ADMIN_PASSWORD: 'env password 1' }), { pruneIntervalMs: 0 });
    expect(await b.users.verifyUser('admin', 'changed on the page')).toBeDefined();
    b.close();
    // a new env value (recovery of a lost password) is applied
    const c = openAccounts(settings({ IOMT_ADMIN_PASSWORD: 'env password 2' }), { pruneIntervalMs: 0 });
    expect(await c.users.verifyUser('admin', 'env password 2')).toEqual({ user: 'admin', role: 'admin' });
    expect(await c.users.verifyUser('admin', 'changed on the page')).toBeUndefined();
    expect(c.audit.list(1)[0]).toMatchObject({ action: 'user.passwd', target: 'admin', source: 'env' });
    c.close();
  });

  it('upgrades a version-2 database with the admin of admin.json as the first admin user', async () => {
    // a data dir written by the previous version: schema 2, admin.json with the hash
    const file = join(dir, 'gateway.db');
    const old = new Database(file);
    old.pragma('journal_mode = WAL');
    for (const m of MIGRATIONS.filter((x) => x.version <= 2)) old.exec(m.up);
    old.pragma('user_version = 2');
    old.prepare(`INSERT INTO messages (uid, device_id, driver, received_at, bytes) VALUES ('0123456789ABCDEFGH', 'd', 'hl7', '2026-01-01T00:00:00.000Z', 1)`).run();
    old.close();
    writeFileSync(join(dir, 'admin.json'), JSON.stringify({ user: 'admin', passwordHash: bcrypt.hashSync('old admin password', 4) }));
    const a = openAccounts(settings(), { pruneIntervalMs: 0 });
    try {
      expect(a.db.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION); // upgraded through every migration (3 added users and audit)
      expect(a.admin.generatedPassword).toBeUndefined();
      expect(await a.users.verifyUser('admin', 'old admin password')).toEqual({ user: 'admin', role: 'admin' });
      expect(a.messageIdByUid('0123456789ABCDEFGH')).toBe(1);
      expect(a.messageIdByUid('0123456789ABCDEFGX')).toBeUndefined();
      expect(a.audit.verify()).toMatchObject({ ok: true, checked: 1 });
    } finally {
      a.close();
    }
  });
});
