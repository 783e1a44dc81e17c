import { randomBytes } from 'node:crypto';
import { existsSync, mkdirSync, readFileSync, writeFileSync, chmodSync } from 'node:fs';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import type { GatewaySettings } from './settings';

/** The first-start password file in the data dir; deleted once that password is changed (accounts/users.ts). */
export const FIRST_START_PASSWORD_FILE = 'admin-password.txt';

export interface AdminCredentials {
  user: string;
  passwordHash: string;
  /** Set only on the first start, when a password was generated. Shown once on a terminal only (gateway.ts), never logged: the 0600 file holds it. */
  generatedPassword?: string;
  passwordFile?: string;
}

/**
 * No default password anywhere. Precedence: IOMT_ADMIN_PASSWORD_HASH / settings hash, then
 * IOMT_ADMIN_PASSWORD (hashed in memory), then the hash stored in the data dir; on a first start
 * with none of these a random password is generated: only its bcrypt hash is stored
 * (`admin.json`), the password is written to a 0600 file in the data dir and shown once, on a
 * terminal only (never on the log stream: under systemd/docker stdout is journald/docker logs).
 * Since migration 3 this runs only when the users table is empty: its result becomes the first
 * admin user (UserStore.bootstrap), which then owns the password.
 */
export function resolveAdminCredentials(settings: GatewaySettings): AdminCredentials {
  const user = settings.admin.user;
  if (settings.admin.passwordHash) return { user, passwordHash: settings.admin.passwordHash };
  if (settings.admin.password) return { user, passwordHash: bcrypt.hashSync(settings.admin.password, 10) };
  mkdirSync(settings.dataDir, { recursive: true });
  const stored = join(settings.dataDir, 'admin.json');
  if (existsSync(stored)) {
    const j = JSON.parse(readFileSync(stored, 'utf8')) as { user?: string; passwordHash?: string };
    if (j.passwordHash && (!j.user || j.user === user)) return { user, passwordHash: j.passwordHash };
  }
  const password = randomBytes(18).toString('base64url');
  const passwordHash = bcrypt.hashSync(password, 10);
  writeFileSync(stored, JSON.stringify({ user, passwordHash, createdAt: new Date().toISOString() }, null, 2), { mode: 0o600 });
  const passwordFile = join(settings.dataDir, FIRST_START_PASSWORD_FILE);
  writeFileSync(passwordFile, `${password}\n`, { mode: 0o600 });
  chmodSync(passwordFile, 0o600);
  return { user, passwordHash, generatedPassword: password, passwordFile };
}

/** A random secret kept in the data dir (Node-RED credential encryption). */
export function dataDirSecret(dataDir: string, name: string): string {
  mkdirSync(dataDir, { recursive: true });
  const f = join(dataDir, name);
  if (existsSync(f)) return readFileSync(f, 'utf8').trim();
  const s = randomBytes(32).toString('hex');
  writeFileSync(f, s, { mode: 0o600 });
  return s;
}
