import { createHash, randomBytes } from 'node:crypto';
import { existsSync, readFileSync, unlinkSync } from 'node:fs';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import { bcryptCompare, bcryptHash } from './bcrypt-pool';
import type { Database, Statement } from 'better-sqlite3';
import type { AuditLog } from '../audit/audit-log';
import { resolveAdminCredentials, FIRST_START_PASSWORD_FILE, type AdminCredentials } from '../config/admin-credentials';
import type { GatewaySettings } from '../config/settings';

/**
 * Roles (issue 9 §3): admin = editor, configuration, accounts; operator (lab technician) = status,
 * search, replay; viewer = status only, no PHI.
 */
export type Role = 'admin' | 'operator' | 'viewer';
export const ROLES: readonly Role[] = ['admin', 'operator', 'viewer'];

export interface Principal {
  user: string;
  role: Role;
}

export interface UserInfo {
  name: string;
  role: Role;
  createdAt: string;
  passwordChangedAt: string;
}

export type AccountErrorCode = 'GW_ERR_ACCOUNT_INVALID' | 'GW_ERR_ACCOUNT_EXISTS' | 'GW_ERR_ACCOUNT_NOT_FOUND' | 'GW_ERR_ACCOUNT_LAST_ADMIN';

/** A refused account change; `code` is stable (docs/errors.md). */
export class AccountError extends Error {
  constructor(readonly code: AccountErrorCode, message: string) {
    super(message);
    this.name = 'AccountError';
  }
}

export const USER_NAME_RE = /^[A-Za-z0-9._-]{1,64}$/;
export const MIN_PASSWORD_LENGTH = 8;
/** bcrypt only uses the first 72 bytes: a longer password would be silently truncated, so it is refused. */
export const MAX_PASSWORD_BYTES = 72;

export function checkUserName(name: unknown): string {
  if (typeof name !== 'string' || !USER_NAME_RE.test(name)) throw new AccountError('GW_ERR_ACCOUNT_INVALID', 'user name must be 1-64 letters, digits, . _ -');
  return name;
}

export function checkRole(role: unknown): Role {
  if (typeof role !== 'string' || !(ROLES as readonly string[]).includes(role)) throw new AccountError('GW_ERR_ACCOUNT_INVALID', `role must be one of ${ROLES.join(', ')}`);
  return role as Role;
}

export function checkPassword(pw: unknown): string {
  if (typeof pw !== 'string' || pw.length < MIN_PASSWORD_LENGTH) throw new AccountError('GW_ERR_ACCOUNT_INVALID', `password must be at least ${MIN_PASSWORD_LENGTH} characters`);
  if (Buffer.byteLength(pw, 'utf8') > MAX_PASSWORD_BYTES) throw new AccountError('GW_ERR_ACCOUNT_INVALID', `password must be at most ${MAX_PASSWORD_BYTES} bytes (bcrypt limit)`);
  return pw;
}

/** A random password (24 base64url characters, 144 bits). */
export function generatePassword(): string {
  return randomBytes(18).toString('base64url');
}

interface UserRow {
  name: string;
  role: Role;
  password_hash: string;
  created_at: string;
  password_changed_at: string;
}

export interface UserStoreOptions {
  /** Data dir: where the first-start password file lives (deleted when that user's password changes). */
  dataDir?: string;
  /** bcrypt cost (default 10). */
  rounds?: number;
  /** How long a verified credential is remembered (default 5 min), as SHA-256 of user, password and stored hash. */
  cacheMs?: number;
  audit?: AuditLog;
  now?: () => number;
}

/** A bcrypt hash of a random string: unknown users are compared against it so they take as long as known ones. */
const DUMMY_HASH = bcrypt.hashSync(randomBytes(16).toString('hex'), 10);

/**
 * Users with roles in the gateway's SQLite file (table users, migration 3): bcrypt hashes only.
 * Hashing and verification use bcryptjs's async API (issue 10: bcrypt must not block the event
 * loop in one piece); a verified credential is remembered for `cacheMs` as a SHA-256 digest that
 * covers the stored hash, so a password change invalidates it at once.
 *
 * The connection must be writable and migrated (GatewayStore.open runs the migrations).
 */
export class UserStore {
  private readonly st: Record<'get' | 'list' | 'count' | 'admins' | 'insert' | 'setHash' | 'setRole' | 'del' | 'meta' | 'setMeta' | 'delMeta', Statement>;
  private readonly verified = new Map<string, number>();
  private readonly listeners: Array<(name: string, change: 'passwd' | 'role' | 'remove') => void> = [];
  private readonly rounds: number;
  private readonly cacheMs: number;
  private readonly now: () => number;

  constructor(private readonly db: Database, private readonly opts: UserStoreOptions = {}) {
    this.rounds = opts.rounds ?? 10;
    this.cacheMs = opts.cacheMs ?? 5 * 60_000;
    this.now = opts.now ?? Date.now;
    this.st = {
      get: db.prepare(`SELECT * FROM users WHERE name = ?`),
      list: db.prepare(`SELECT * FROM users ORDER BY name`),
      count: db.prepare(`SELECT count(*) AS n FROM users`),
      admins: db.prepare(`SELECT count(*) AS n FROM users WHERE role = 'admin'`),
      insert: db.prepare(`INSERT INTO users (name, role, password_hash, created_at, password_changed_at) VALUES (?, ?, ?, ?, ?)`),
      setHash: db.prepare(`UPDATE users SET password_hash = ?, password_changed_at = ? WHERE name = ?`),
      setRole: db.prepare(`UPDATE users SET role = ? WHERE name = ?`),
      del: db.prepare(`DELETE FROM users WHERE name = ?`),
      meta: db.prepare(`SELECT value FROM account_meta WHERE key = ?`),
      setMeta: db.prepare(`INSERT INTO account_meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = excluded.value`),
      delMeta: db.prepare(`DELETE FROM account_meta WHERE key = ?`),
    };
  }

  /** Called after a password change, role change or removal (sessions of that user end). */
  onChange(fn: (name: string, change: 'passwd' | 'role' | 'remove') => void): void {
    this.listeners.push(fn);
  }

  private changed(name: string, change: 'passwd' | 'role' | 'remove'): void {
    this.verified.clear();
    for (const fn of this.listeners) fn(name, change);
  }

  private iso(): string {
    return new Date(this.now()).toISOString();
  }

  count(): number {
    return (this.st.count.get() as { n: number }).n;
  }

  list(): UserInfo[] {
    return (this.st.list.all() as UserRow[]).map(info);
  }

  get(name: string): UserInfo | undefined {
    const r = this.st.get.get(name) as UserRow | undefined;
    return r && info(r);
  }

  /** Create a user. Throws AccountError (INVALID, EXISTS). */
  async add(name: string, role: Role, password: string): Promise<UserInfo> {
    checkUserName(name);
    checkRole(role);
    checkPassword(password);
    if (this.st.get.get(name)) throw new AccountError('GW_ERR_ACCOUNT_EXISTS', `user '${name}' exists`);
    const hash = await bcryptHash(password, this.rounds); // worker thread: the event loop keeps serving devices
    const at = this.iso();
    try {
      this.st.insert.run(name, role, hash, at, at);
    } catch (e) {
      if ((e as { code?: string }).code === 'SQLITE_CONSTRAINT_PRIMARYKEY') throw new AccountError('GW_ERR_ACCOUNT_EXISTS', `user '${name}' exists`);
      throw e;
    }
    return this.get(name)!;
  }

  /** Set a user's password; deletes the first-start password file when it was this user's. Throws AccountError (INVALID, NOT_FOUND). */
  async setPassword(name: string, password: string): Promise<void> {
    checkPassword(password);
    if (!this.st.get.get(name)) throw new AccountError('GW_ERR_ACCOUNT_NOT_FOUND', `no user '${name}'`);
    const hash = await bcryptHash(password, this.rounds); // worker thread: the event loop keeps serving devices
    if (this.st.setHash.run(hash, this.iso(), name).changes === 0) throw new AccountError('GW_ERR_ACCOUNT_NOT_FOUND', `no user '${name}'`);
    this.dropFirstStartFile(name);
    this.changed(name, 'passwd');
  }

  /** Change a role; the last admin cannot be demoted. */
  setRole(name: string, role: Role): void {
    checkRole(role);
    const u = this.st.get.get(name) as UserRow | undefined;
    if (!u) throw new AccountError('GW_ERR_ACCOUNT_NOT_FOUND', `no user '${name}'`);
    if (u.role === role) return;
    this.db
      .transaction(() => {
        if (u.role === 'admin' && (this.st.admins.get() as { n: number }).n <= 1) throw new AccountError('GW_ERR_ACCOUNT_LAST_ADMIN', 'the last admin cannot lose the admin role');
        this.st.setRole.run(role, name);
      })
      .immediate();
    this.changed(name, 'role');
  }

  /** Remove a user; the last admin cannot be removed. */
  remove(name: string): void {
    const u = this.st.get.get(name) as UserRow | undefined;
    if (!u) throw new AccountError('GW_ERR_ACCOUNT_NOT_FOUND', `no user '${name}'`);
    this.db
      .transaction(() => {
        if (u.role === 'admin' && (this.st.admins.get() as { n: number }).n <= 1) throw new AccountError('GW_ERR_ACCOUNT_LAST_ADMIN', 'the last admin cannot be removed');
        this.st.del.run(name);
      })
      .immediate();
    this.changed(name, 'remove');
  }

  /**
   * Check a user name and password. Resolves to the user and role, or undefined (unknown user or
   * wrong password: indistinguishable, and equally slow). Never throws for bad input.
   */
  async verifyUser(user: string, password: string): Promise<Principal | undefined> {
    if (typeof user !== 'string' || typeof password !== 'string') return undefined;
    const row = USER_NAME_RE.test(user) ? (this.st.get.get(user) as UserRow | undefined) : undefined;
    const hash = row?.password_hash ?? DUMMY_HASH;
    const digest = createHash('sha256').update(user).update('\0').update(password).update('\0').update(hash).digest('hex');
    const exp = this.verified.get(digest);
    if (row && exp !== undefined && exp > this.now()) return { user: row.name, role: row.role };
    const ok = await bcryptCompare(password, hash); // worker thread (issue 10 §5)
    if (!ok || !row) return undefined;
    // re-read: the user may have been removed or changed while bcrypt ran
    const now = this.st.get.get(user) as UserRow | undefined;
    if (!now || now.password_hash !== hash) return undefined;
    if (this.verified.size > 1000) this.verified.clear();
    this.verified.set(digest, this.now() + this.cacheMs);
    return { user: now.name, role: now.role };
  }

  /**
   * Startup: make sure an admin exists and apply the IOMT_ADMIN_PASSWORD(_HASH) settings.
   * - No users yet: the existing single admin (env hash/password, the data dir's admin.json, or a
   *   first-start random password written to `<dataDir>/admin-password.txt`) becomes the first admin user.
   * - Users exist: an env credential is applied to `settings.admin.user` (created as admin if
   *   missing) only when it differs from the one applied last time (its fingerprint is kept), so a
   *   password changed later with `user passwd` or the API is not reverted by every restart, and
   *   setting a new env password is the recovery path for a lost admin password.
   * - The first-start password file is deleted when it no longer matches (the password was changed).
   * Returns the credentials of the admin the gateway announces (same shape as before migration 3).
   */
  bootstrap(settings: GatewaySettings): AdminCredentials {
    const envSecret = settings.admin.passwordHash ? `hash:${settings.admin.passwordHash}` : settings.admin.password ? `pw:${settings.admin.password}` : undefined;
    const envFp = envSecret && createHash('sha256').update(envSecret).digest('hex');
    const at = this.iso();
    if (this.count() === 0) {
      const c = resolveAdminCredentials(settings);
      this.db
        .transaction(() => {
          this.st.insert.run(c.user, 'admin', c.passwordHash, at, at);
          this.st.setMeta.run('first_admin', c.user);
          if (c.generatedPassword || (this.opts.dataDir && existsSync(join(this.opts.dataDir, FIRST_START_PASSWORD_FILE)))) this.st.setMeta.run('first_start_file_user', c.user);
          if (envFp) this.st.setMeta.run('admin_env_fingerprint', envFp);
        })
        .immediate();
      this.opts.audit?.record({ action: 'user.add', target: c.user, source: 'startup', detail: { role: 'admin', first: true } });
      return c;
    }
    const name = settings.admin.user;
    if (envFp && this.meta('admin_env_fingerprint') !== envFp) {
      const hash = settings.admin.passwordHash ?? bcrypt.hashSync(settings.admin.password!, this.rounds); // startup, before serving
      const existed = !!this.st.get.get(name);
      this.db
        .transaction(() => {
          if (existed) {
            this.st.setHash.run(hash, at, name);
            this.st.setRole.run('admin', name);
          } else this.st.insert.run(name, 'admin', hash, at, at);
          this.st.setMeta.run('admin_env_fingerprint', envFp);
        })
        .immediate();
      this.opts.audit?.record({ action: existed ? 'user.passwd' : 'user.add', target: name, source: 'env', detail: { role: 'admin', from: 'IOMT_ADMIN_PASSWORD(_HASH)' } });
      if (existed) this.dropFirstStartFile(name);
    }
    this.checkFirstStartFile();
    const admin = (this.st.get.get(name) as UserRow | undefined) ?? (this.st.list.all() as UserRow[]).find((u) => u.role === 'admin');
    if (!admin) throw new AccountError('GW_ERR_ACCOUNT_NOT_FOUND', 'no admin user: add one with `iomt-gateway user add NAME --role admin`');
    const file = this.opts.dataDir ? join(this.opts.dataDir, FIRST_START_PASSWORD_FILE) : undefined;
    return { user: admin.name, passwordHash: admin.password_hash, passwordFile: file && existsSync(file) ? file : undefined };
  }

  private meta(key: string): string | undefined {
    return (this.st.meta.get(key) as { value: string } | undefined)?.value;
  }

  /** The first-start file is kept only while it still holds the password of its user. */
  private checkFirstStartFile(): void {
    const who = this.meta('first_start_file_user');
    if (!who || !this.opts.dataDir) return;
    const file = join(this.opts.dataDir, FIRST_START_PASSWORD_FILE);
    if (!existsSync(file)) {
      this.st.delMeta.run('first_start_file_user');
      return;
    }
    const row = this.st.get.get(who) as UserRow | undefined;
    const pw = readFileSync(file, 'utf8').trim();
    if (!row || !bcrypt.compareSync(pw, row.password_hash)) this.dropFirstStartFile(who);
  }

  private dropFirstStartFile(name: string): void {
    if (!this.opts.dataDir || this.meta('first_start_file_user') !== name) return;
    try {
      unlinkSync(join(this.opts.dataDir, FIRST_START_PASSWORD_FILE));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') throw e;
    }
    this.st.delMeta.run('first_start_file_user');
  }
}

function info(r: UserRow): UserInfo {
  return { name: r.name, role: r.role, createdAt: r.created_at, passwordChangedAt: r.password_changed_at };
}
