import { createHash } from 'node:crypto';
import type { Database, Statement } from 'better-sqlite3';
import { componentLogger } from '../log/logger';

/** Who did something, from where. `actor` undefined = the gateway itself. */
export interface AuditActor {
  user?: string;
  role?: string;
  /** Client address, or 'cli' for the command line. */
  source?: string;
}

export type AuditOutcome = 'ok' | 'denied' | 'failed';

/**
 * One audit event. `action` is a stable dotted name: login.ok, login.failed, logout, deploy,
 * config.change, user.add, user.remove, user.passwd, user.role, replay, export, phi.view,
 * phi.search, audit.read, audit.prune. `detail` is a small JSON object; it may hold PHI search
 * terms (the audit log is readable by admins only, and never logged).
 */
export interface AuditEntry extends AuditActor {
  action: string;
  target?: string;
  detail?: Record<string, unknown>;
  outcome?: AuditOutcome;
}

export interface AuditRow {
  id: number;
  at: string;
  user?: string;
  role?: string;
  action: string;
  target?: string;
  detail?: Record<string, unknown>;
  source?: string;
  outcome: AuditOutcome;
  hash: string;
}

export interface AuditVerifyReport {
  ok: boolean;
  /** Rows checked (those still kept). */
  checked: number;
  /** Id of the anchor the chain starts from (0 = genesis; else the last row pruned by retention). */
  anchorId: number;
  /** Rows removed by retention so far. */
  pruned: number;
  /** First row whose stored hash does not match its content and predecessor, or whose id breaks the sequence. */
  firstBroken?: { id: number; reason: string };
}

interface DbRow {
  id: number;
  at: string;
  actor: string | null;
  role: string | null;
  action: string;
  target: string | null;
  detail: string | null;
  source: string | null;
  outcome: string;
  hash: string;
}

const DAY_MS = 24 * 3600_000;

/**
 * The canonical content of a row that its hash covers: a JSON array in fixed field order, NULLs as
 * null. `detail` is covered as stored (its JSON text), so re-serialising cannot change the hash.
 */
export function canonical(r: Omit<DbRow, 'hash'>): string {
  return JSON.stringify([r.id, r.at, r.actor, r.role, r.action, r.target, r.detail, r.source, r.outcome]);
}

/** hex SHA-256(prevHash + canonical content) */
export function chainHash(prevHash: string, r: Omit<DbRow, 'hash'>): string {
  return createHash('sha256').update(prevHash).update(canonical(r)).digest('hex');
}

/**
 * Append-only, hash-chained audit log in the gateway's SQLite file (table audit_log, migration 3).
 * Each append runs in a BEGIN IMMEDIATE transaction (read the last hash, insert), so the gateway
 * and a concurrent `iomt-gateway user ...` command never fork the chain. Tampering with a row
 * (UPDATE or DELETE of a middle row) shows in verify(); pruning by age moves the anchor.
 *
 * The connection must be writable and already migrated (GatewayStore.open runs the migrations).
 */
export class AuditLog {
  private readonly st: Record<'last' | 'anchor' | 'insert' | 'page' | 'pageBefore' | 'all' | 'cutoffId' | 'rowById' | 'setAnchor' | 'del', Statement>;
  private readonly appendTx: (e: AuditEntry, at: string) => number;

  constructor(private readonly db: Database, private readonly now: () => number = Date.now) {
    this.st = {
      last: db.prepare(`SELECT id, hash FROM audit_log ORDER BY id DESC LIMIT 1`),
      anchor: db.prepare(`SELECT last_id AS lastId, hash, pruned FROM audit_anchor WHERE one = 1`),
      insert: db.prepare(`INSERT INTO audit_log (id, at, actor, role, action, target, detail, source, outcome, hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`),
      page: db.prepare(`SELECT * FROM audit_log ORDER BY id DESC LIMIT ?`),
      pageBefore: db.prepare(`SELECT * FROM audit_log WHERE id < ? ORDER BY id DESC LIMIT ?`),
      all: db.prepare(`SELECT * FROM audit_log ORDER BY id`),
      cutoffId: db.prepare(`SELECT max(id) AS id FROM (SELECT id FROM audit_log WHERE at < ? ORDER BY id LIMIT ?)`),
      rowById: db.prepare(`SELECT * FROM audit_log WHERE id = ?`),
      setAnchor: db.prepare(`UPDATE audit_anchor SET last_id = ?, hash = ?, pruned = pruned + ?, moved_at = ? WHERE one = 1`),
      del: db.prepare(`DELETE FROM audit_log WHERE id <= ?`),
    };
    const tx = db.transaction((e: AuditEntry, at: string): number => {
      const last = this.st.last.get() as { id: number; hash: string } | undefined;
      const anchor = this.st.anchor.get() as { lastId: number; hash: string };
      const prev = last ?? { id: anchor.lastId, hash: anchor.hash };
      const row: Omit<DbRow, 'hash'> = {
        id: prev.id + 1,
        at,
        actor: e.user ?? null,
        role: e.role ?? null,
        action: e.action,
        target: e.target ?? null,
        detail: e.detail && Object.keys(e.detail).length ? JSON.stringify(e.detail) : null,
        source: e.source ?? null,
        outcome: e.outcome ?? 'ok',
      };
      const hash = chainHash(prev.hash, row);
      this.st.insert.run(row.id, row.at, row.actor, row.role, row.action, row.target, row.detail, row.source, row.outcome, hash);
      return row.id;
    });
    this.appendTx = (e, at) => tx.immediate(e, at);
  }

  /**
   * Append one event (synchronous, one small transaction). Returns the row id. Throws only when
   * the database cannot be written: an action that must be audited should then fail too.
   */
  record(e: AuditEntry): number {
    if (!e.action || typeof e.action !== 'string') throw new TypeError('audit action must be a non-empty string');
    return this.appendTx(e, new Date(this.now()).toISOString());
  }

  /** Newest first, `limit` rows (1..1000) with id < beforeId when given. */
  list(limit = 100, beforeId?: number): AuditRow[] {
    const rows = (beforeId === undefined ? this.st.page.all(limit) : this.st.pageBefore.all(beforeId, limit)) as DbRow[];
    return rows.map(toAuditRow);
  }

  /** Walk the chain from the anchor; report the first row that breaks it. */
  verify(): AuditVerifyReport {
    const anchor = this.st.anchor.get() as { lastId: number; hash: string; pruned: number };
    let prevId = anchor.lastId;
    let prevHash = anchor.hash;
    let checked = 0;
    for (const r of this.st.all.iterate() as IterableIterator<DbRow>) {
      const report = (reason: string): AuditVerifyReport => ({ ok: false, checked, anchorId: anchor.lastId, pruned: anchor.pruned, firstBroken: { id: r.id, reason } });
      if (r.id !== prevId + 1) return report(`row ${prevId + 1}${r.id > prevId + 2 ? `..${r.id - 1}` : ''} missing (chain continues at ${r.id})`);
      if (chainHash(prevHash, r) !== r.hash) return report('hash does not match the row content and the previous hash (row altered, or a previous row altered)');
      prevId = r.id;
      prevHash = r.hash;
      checked++;
    }
    return { ok: true, checked, anchorId: anchor.lastId, pruned: anchor.pruned };
  }

  /**
   * Retention: delete rows older than `maxAgeDays` (never younger ones; 0 or less = keep forever),
   * oldest first, in chunks; before each delete the anchor takes the hash of the last deleted row,
   * so verify() still walks the rest. Returns the number of rows deleted. The prune itself is
   * recorded (action audit.prune).
   */
  prune(maxAgeDays: number, chunk = 1000): number {
    if (!(maxAgeDays > 0)) return 0;
    const cutoff = new Date(this.now() - maxAgeDays * DAY_MS).toISOString();
    let total = 0;
    for (;;) {
      const n = this.db
        .transaction(() => {
          const upto = (this.st.cutoffId.get(cutoff, chunk) as { id: number | null }).id;
          if (upto == null) return 0;
          const last = this.st.rowById.get(upto) as DbRow;
          const n = this.st.del.run(upto).changes;
          this.st.setAnchor.run(last.id, last.hash, n, new Date(this.now()).toISOString());
          return n;
        })
        .immediate();
      total += n;
      if (n < chunk) break;
    }
    if (total) this.record({ action: 'audit.prune', detail: { deleted: total, olderThan: cutoff, maxAgeDays } });
    return total;
  }
}

function toAuditRow(r: DbRow): AuditRow {
  const o: AuditRow = { id: r.id, at: r.at, action: r.action, outcome: r.outcome as AuditOutcome, hash: r.hash };
  if (r.actor != null) o.user = r.actor;
  if (r.role != null) o.role = r.role;
  if (r.target != null) o.target = r.target;
  if (r.source != null) o.source = r.source;
  if (r.detail != null) {
    try {
      o.detail = JSON.parse(r.detail) as Record<string, unknown>;
    } catch {
      o.detail = { unparsable: r.detail };
    }
  }
  return o;
}

/** Audit retention in days from IOMT_AUDIT_RETENTION_DAYS (default 365; 0 = keep forever). Throws on a bad value. */
export function auditRetentionDays(env: NodeJS.ProcessEnv = process.env): number {
  const raw = env.IOMT_AUDIT_RETENTION_DAYS;
  if (raw === undefined || raw === '') return 365;
  if (!/^\d+$/.test(raw)) throw new RangeError(`IOMT_AUDIT_RETENTION_DAYS must be a whole number of days >= 0, got '${raw}'`);
  return Number(raw);
}

let shared: AuditLog | undefined;

/** The running gateway's audit log (set by openAccounts, cleared by its close). */
export function setSharedAuditLog(a: AuditLog | undefined): void {
  shared = a;
}

export function sharedAuditLog(): AuditLog | undefined {
  return shared;
}

/**
 * Record an event in the running gateway's audit log, for modules that are not handed the
 * AuditLog (Node-RED deploys in node-red/embed.ts, configuration rollbacks, exports):
 *
 *   recordAudit({ action: 'deploy', user, role: 'admin', source: req.ip, detail: { version, summary } });
 *
 * Returns false (and records nothing) when no audit log is open, or when the write failed (the
 * failure is logged at error level). Never throws.
 */
export function recordAudit(e: AuditEntry): boolean {
  if (!shared) return false;
  try {
    shared.record(e);
    return true;
  } catch (err) {
    componentLogger('audit').error({ action: e.action, err: String(err) }, 'audit record failed');
    return false;
  }
}
