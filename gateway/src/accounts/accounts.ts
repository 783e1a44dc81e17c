import { closeSync, mkdirSync, openSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { Database as Db, Statement } from 'better-sqlite3';
import { AuditLog, auditRetentionDays, setSharedAuditLog, sharedAuditLog } from '../audit/audit-log';
import type { AdminCredentials } from '../config/admin-credentials';
import type { GatewaySettings } from '../config/settings';
import { componentLogger } from '../log/logger';
import { DB_FILE } from '../store/gateway-store';
import { prepareDatabase } from '../store/migrations';
import { UserStore } from './users';

export interface Accounts {
  db: Db;
  users: UserStore;
  audit: AuditLog;
  /** The admin announced at startup (first start: with the generated password, printed once). */
  admin: AdminCredentials;
  messageIdByUid(uid: string): number | undefined;
  /** Prune the audit log by IOMT_AUDIT_RETENTION_DAYS (also run daily by a timer). */
  pruneAudit(): number;
  close(): void;
}

const DAY_MS = 24 * 3600_000;

/**
 * Open the accounts and the audit log on their own connection to the gateway's SQLite file (the
 * store's writer worker has its own): migrates the file (idempotent, the store does the same),
 * bootstraps the first admin (UserStore.bootstrap) and starts the daily audit pruning.
 *
 * Writes here are few and small (logins, account changes, audit rows) and run on the main thread;
 * synchronous=NORMAL in WAL mode: a commit is durable at the next WAL sync (the store's FULL
 * commits, or a checkpoint), never corrupt; no fsync on the event loop for each audit row.
 */
export function openAccounts(settings: GatewaySettings, opts: { retentionDays?: number; pruneIntervalMs?: number; bootstrap?: boolean } = {}): Accounts {
  const log = componentLogger('accounts');
  mkdirSync(settings.dataDir, { recursive: true, mode: 0o700 });
  const retentionDays = opts.retentionDays ?? auditRetentionDays();
  const file = join(settings.dataDir, DB_FILE);
  // The file holds PHI: when this opens it first (e.g. `user add` before the first start), create it
  // owner-only; SQLite gives its -wal and -shm files the same permissions.
  closeSync(openSync(file, 'a', 0o600));
  const db = new Database(file);
  let timer: NodeJS.Timeout | undefined;
  try {
    prepareDatabase(db, { busyTimeoutMs: 10_000 });
    db.pragma('synchronous = NORMAL');
    const audit = new AuditLog(db);
    const users = new UserStore(db, { dataDir: settings.dataDir, audit });
    const admin = opts.bootstrap === false ? { user: settings.admin.user, passwordHash: '' } : users.bootstrap(settings);
    const byUid: Statement = db.prepare(`SELECT id FROM messages WHERE uid = ? LIMIT 1`);
    const pruneAudit = () => {
      const n = audit.prune(retentionDays);
      if (n) log.info({ deleted: n, retentionDays }, 'audit log pruned by retention');
      return n;
    };
    if (opts.pruneIntervalMs !== 0) {
      try {
        pruneAudit();
      } catch (e) {
        log.error({ err: String(e) }, 'audit pruning failed');
      }
      timer = setInterval(() => {
        try {
          pruneAudit();
        } catch (e) {
          log.error({ err: String(e) }, 'audit pruning failed');
        }
      }, opts.pruneIntervalMs ?? DAY_MS);
      timer.unref();
    }
    setSharedAuditLog(audit); // recordAudit() for deploys, exports (audit-log.ts)
    let closed = false;
    return {
      db,
      users,
      audit,
      admin,
      messageIdByUid: (uid) => (byUid.get(uid) as { id: number } | undefined)?.id,
      pruneAudit,
      close: () => {
        if (closed) return;
        closed = true;
        if (timer) clearInterval(timer);
        if (sharedAuditLog() === audit) setSharedAuditLog(undefined);
        db.close();
      },
    };
  } catch (e) {
    if (timer) clearInterval(timer);
    db.close();
    throw e;
  }
}
