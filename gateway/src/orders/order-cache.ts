/**
 * Order cache (architecture §1: "HIS/RIS orders ──MLLP──► order cache"; protocols.md §2.3 C: host
 * queries are answered from it, never by a synchronous HIS call).
 *
 * Lives in the gateway's SQLite file on the connection the store passes in; creates its own
 * `order_*` tables if missing. Every write is one synchronous better-sqlite3 transaction, so with the
 * connection in WAL + synchronous=FULL it is durable when the method returns. Low rate by nature
 * (orders arrive at human speed), so no group commit.
 *
 * PHI (patient, specimen ids) stays in the database: log lines carry counts and codes only.
 */
import type Database from 'better-sqlite3';
import { randomUUID } from 'node:crypto';
import { StoreError, StoreFullError } from '../contracts/errors';
import { componentLogger } from '../log/logger';
import type { ApplyResult, CachedOrder, ImagingOrder, OrderPatient, OrderPriority, OrderSource, OrderStatus, OrderTest, OrderUpdate, SpsStatus, WorklistEntry } from './order-types';

export interface OrderCacheOptions {
  /** Orders not changed for this many days are deleted by `expire()` (default 7). */
  expiryDays?: number;
}

export interface OrderCacheStats {
  orders: number;
  pending: number;
  cancelled: number;
  tests: number;
  /** Last change sequence handed out (0 when nothing ever changed). */
  lastChangeSeq: number;
  /** Messages remembered for de-duplication. */
  messages: number;
}

export interface OrderDownload {
  deviceId: string;
  /** ISO 8601 UTC. */
  downloadedAt: string;
  /** `changeSeq` of the order when it was downloaded. */
  changeSeq: number;
}

const DAY_MS = 86_400_000;

/** Cancel-type order controls (Table 0119): CA cancel request, DC discontinue request, OC cancelled, OD discontinued. */
const CANCELS = new Set(['CA', 'DC', 'OC', 'OD']);

const SCHEMA = `
CREATE TABLE IF NOT EXISTS order_orders (
  id INTEGER PRIMARY KEY AUTOINCREMENT,
  specimen_id TEXT NOT NULL UNIQUE,
  placer_order_number TEXT,
  filler_order_number TEXT,
  patient_id TEXT,
  patient_json TEXT,
  priority TEXT,
  requested_at TEXT,
  collected_at TEXT,
  specimen_type TEXT,
  status TEXT NOT NULL CHECK (status IN ('pending', 'cancelled')),
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  change_seq INTEGER NOT NULL,
  source_device TEXT,
  source_message TEXT
);
CREATE INDEX IF NOT EXISTS order_orders_patient ON order_orders(patient_id);
CREATE INDEX IF NOT EXISTS order_orders_change ON order_orders(change_seq);
CREATE INDEX IF NOT EXISTS order_orders_updated ON order_orders(updated_at);
CREATE TABLE IF NOT EXISTS order_tests (
  order_id INTEGER NOT NULL,
  seq INTEGER NOT NULL,
  code TEXT NOT NULL,
  system TEXT NOT NULL DEFAULT '',
  display TEXT,
  alt_code TEXT,
  alt_display TEXT,
  alt_system TEXT,
  PRIMARY KEY (order_id, code, system)
);
CREATE INDEX IF NOT EXISTS order_tests_order_seq ON order_tests(order_id, seq);
CREATE TABLE IF NOT EXISTS order_downloads (
  order_id INTEGER NOT NULL,
  device_id TEXT NOT NULL,
  downloaded_at INTEGER NOT NULL,
  change_seq INTEGER NOT NULL,
  PRIMARY KEY (order_id, device_id)
);
CREATE TABLE IF NOT EXISTS order_messages (
  device_id TEXT NOT NULL,
  message_control_id TEXT NOT NULL,
  applied_at INTEGER NOT NULL,
  PRIMARY KEY (device_id, message_control_id)
);
CREATE INDEX IF NOT EXISTS order_messages_applied ON order_messages(applied_at);
CREATE TABLE IF NOT EXISTS order_meta (
  key TEXT PRIMARY KEY,
  value INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS order_cursors (
  name TEXT PRIMARY KEY,
  cursor INTEGER NOT NULL,
  updated_at INTEGER NOT NULL
);
CREATE TABLE IF NOT EXISTS order_imaging (
  order_id INTEGER PRIMARY KEY,
  accession TEXT,
  modality TEXT NOT NULL,
  sps_date TEXT,
  station_aet TEXT,
  study_uid TEXT NOT NULL,
  sps_id TEXT,
  requested_procedure_id TEXT,
  imaging_json TEXT NOT NULL,
  sps_status TEXT NOT NULL DEFAULT 'SCHEDULED',
  mpps_uid TEXT,
  progress_at INTEGER,
  progress_seq INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX IF NOT EXISTS order_imaging_progress ON order_imaging(progress_seq);
CREATE INDEX IF NOT EXISTS order_imaging_date ON order_imaging(sps_date);
CREATE INDEX IF NOT EXISTS order_imaging_modality_date ON order_imaging(modality, sps_date);
CREATE INDEX IF NOT EXISTS order_imaging_accession ON order_imaging(accession);
CREATE INDEX IF NOT EXISTS order_imaging_study ON order_imaging(study_uid);
CREATE TABLE IF NOT EXISTS order_mpps (
  sop_instance_uid TEXT PRIMARY KEY,
  status TEXT NOT NULL,
  order_id INTEGER,
  calling_aet TEXT,
  created_at INTEGER NOT NULL,
  updated_at INTEGER NOT NULL,
  subject_json TEXT
);
`;

interface ImagingRow {
  order_id: number;
  accession: string | null;
  modality: string;
  sps_date: string | null;
  station_aet: string | null;
  study_uid: string;
  sps_id: string | null;
  requested_procedure_id: string | null;
  imaging_json: string;
  sps_status: SpsStatus;
  mpps_uid: string | null;
  progress_at: number | null;
  progress_seq: number;
}

/**
 * Where a worklist reader stands (OrderCache.worklistSince): the order change sequence, the MPPS
 * progress sequence and the expiry sequence it has seen (all from order_meta, never reused).
 */
export interface WorklistCursor {
  change: number;
  progress: number;
  expire: number;
}

/** Worklist pre-filter (exact values, evaluated in SQL on indexed columns); wildcards and names are matched by the caller. */
export interface WorklistFilter {
  modality?: string;
  /** Inclusive YYYYMMDD bounds on the SPS start date (PS3.4 C.2.2.2.5 range matching). */
  spsDateFrom?: string;
  spsDateTo?: string;
  accessionNumber?: string;
  patientId?: string;
}

/** The MPPS state the cache keeps (PS3.4 F.7.2): one row per Performed Procedure Step SOP instance. */
export interface MppsState {
  sopInstanceUid: string;
  status: string;
  orderId?: number;
  callingAeTitle?: string;
  /** PHI. An unscheduled step's patient and procedure as its N-CREATE said (DICOM keywords), for its N-SET report. */
  subject?: Record<string, string>;
}

/** What links an MPPS to its worklist item: Scheduled Step Attributes Sequence (0040,0270) values. */
export interface MppsLink {
  studyInstanceUid?: string;
  accessionNumber?: string;
  requestedProcedureId?: string;
  spsId?: string;
}

/** A new Study Instance UID under the UUID root (PS3.5 B.2: `2.25.` + the UUID as a decimal integer). */
export function newStudyUid(): string {
  return `2.25.${BigInt(`0x${randomUUID().replace(/-/g, '')}`).toString()}`;
}

interface OrderRow {
  id: number;
  specimen_id: string;
  placer_order_number: string | null;
  filler_order_number: string | null;
  patient_id: string | null;
  patient_json: string | null;
  priority: string | null;
  requested_at: string | null;
  collected_at: string | null;
  specimen_type: string | null;
  status: OrderStatus;
  created_at: number;
  updated_at: number;
  change_seq: number;
}

interface TestRow {
  order_id: number;
  seq: number;
  code: string;
  system: string;
  display: string | null;
  alt_code: string | null;
  alt_display: string | null;
  alt_system: string | null;
}

export class OrderCache {
  readonly expiryDays: number;
  private readonly log = componentLogger('order-cache');
  private readonly s;

  constructor(
    private readonly db: Database.Database,
    opts: OrderCacheOptions = {},
  ) {
    const days = opts.expiryDays ?? 7;
    if (!(days > 0) || !Number.isFinite(days)) throw new TypeError('OrderCache: expiryDays must be a positive number');
    this.expiryDays = days;
    this.guard(() => {
      // order_imaging of the first issue-11 build had no progress_seq: add it before the index on it is created
      const cols = db.prepare<[], { name: string }>("SELECT name FROM pragma_table_info('order_imaging')").all();
      if (cols.length && !cols.some((c) => c.name === 'progress_seq')) db.exec('ALTER TABLE order_imaging ADD COLUMN progress_seq INTEGER NOT NULL DEFAULT 0');
      const mcols = db.prepare<[], { name: string }>("SELECT name FROM pragma_table_info('order_mpps')").all();
      if (mcols.length && !mcols.some((c) => c.name === 'subject_json')) db.exec('ALTER TABLE order_mpps ADD COLUMN subject_json TEXT');
      db.exec(SCHEMA);
    });
    const sync = Number(db.pragma('synchronous', { simple: true }));
    if (sync < 2) this.log.warn({ synchronous: sync }, 'connection is not synchronous=FULL: order commits may not survive a power loss');
    this.s = {
      bySpecimen: db.prepare<[string], OrderRow>('SELECT * FROM order_orders WHERE specimen_id = ?'),
      byId: db.prepare<[number], OrderRow>('SELECT * FROM order_orders WHERE id = ?'),
      byPatient: db.prepare<[string], OrderRow>('SELECT * FROM order_orders WHERE patient_id = ? ORDER BY created_at, id'),
      since: db.prepare<[number, number], OrderRow>('SELECT * FROM order_orders WHERE change_seq > ? ORDER BY change_seq LIMIT ?'),
      tests: db.prepare<[number], TestRow>('SELECT * FROM order_tests WHERE order_id = ? ORDER BY seq'),
      insertOrder: db.prepare(
        `INSERT INTO order_orders (specimen_id, placer_order_number, filler_order_number, patient_id, patient_json, priority, requested_at,
           collected_at, specimen_type, status, created_at, updated_at, change_seq, source_device, source_message)
         VALUES (@specimen_id, @placer_order_number, @filler_order_number, @patient_id, @patient_json, @priority, @requested_at,
           @collected_at, @specimen_type, @status, @created_at, @updated_at, @change_seq, @source_device, @source_message)`,
      ),
      updateOrder: db.prepare(
        `UPDATE order_orders SET placer_order_number = @placer_order_number, filler_order_number = @filler_order_number,
           patient_id = @patient_id, patient_json = @patient_json, priority = @priority, requested_at = @requested_at,
           collected_at = @collected_at, specimen_type = @specimen_type, status = @status, updated_at = @updated_at,
           change_seq = @change_seq, source_device = @source_device, source_message = @source_message
         WHERE id = @id`,
      ),
      insertTest: db.prepare(
        `INSERT OR IGNORE INTO order_tests (order_id, seq, code, system, display, alt_code, alt_display, alt_system)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      ),
      deleteTest: db.prepare<[number, string, string]>('DELETE FROM order_tests WHERE order_id = ? AND code = ? AND system = ?'),
      deleteTests: db.prepare<[number]>('DELETE FROM order_tests WHERE order_id = ?'),
      getMeta: db.prepare<[string], { value: number }>('SELECT value FROM order_meta WHERE key = ?'),
      setMeta: db.prepare<[string, number]>('INSERT INTO order_meta (key, value) VALUES (?, ?) ON CONFLICT(key) DO UPDATE SET value = excluded.value'),
      seenMessage: db.prepare<[string, string], { applied_at: number }>('SELECT applied_at FROM order_messages WHERE device_id = ? AND message_control_id = ?'),
      rememberMessage: db.prepare<[string, string, number]>('INSERT OR IGNORE INTO order_messages (device_id, message_control_id, applied_at) VALUES (?, ?, ?)'),
      markDownloaded: db.prepare<[number, string, number, number]>(
        `INSERT INTO order_downloads (order_id, device_id, downloaded_at, change_seq) VALUES (?, ?, ?, ?)
         ON CONFLICT(order_id, device_id) DO UPDATE SET downloaded_at = excluded.downloaded_at, change_seq = excluded.change_seq`,
      ),
      downloads: db.prepare<[number], { device_id: string; downloaded_at: number; change_seq: number }>(
        'SELECT device_id, downloaded_at, change_seq FROM order_downloads WHERE order_id = ? ORDER BY downloaded_at, device_id',
      ),
      expiredIds: db.prepare<[number], { id: number }>('SELECT id FROM order_orders WHERE updated_at < ?'),
      deleteOrder: db.prepare<[number]>('DELETE FROM order_orders WHERE id = ?'),
      deleteDownloads: db.prepare<[number]>('DELETE FROM order_downloads WHERE order_id = ?'),
      expireMessages: db.prepare<[number]>('DELETE FROM order_messages WHERE applied_at < ?'),
      getCursor: db.prepare<[string], { cursor: number }>('SELECT cursor FROM order_cursors WHERE name = ?'),
      imagingById: db.prepare<[number], ImagingRow>('SELECT * FROM order_imaging WHERE order_id = ?'),
      upsertImaging: db.prepare(
        `INSERT INTO order_imaging (order_id, accession, modality, sps_date, station_aet, study_uid, sps_id, requested_procedure_id, imaging_json, sps_status)
         VALUES (@order_id, @accession, @modality, @sps_date, @station_aet, @study_uid, @sps_id, @requested_procedure_id, @imaging_json, @sps_status)
         ON CONFLICT(order_id) DO UPDATE SET accession = excluded.accession, modality = excluded.modality, sps_date = excluded.sps_date,
           station_aet = excluded.station_aet, study_uid = excluded.study_uid, sps_id = excluded.sps_id,
           requested_procedure_id = excluded.requested_procedure_id, imaging_json = excluded.imaging_json, sps_status = excluded.sps_status`,
      ),
      deleteImaging: db.prepare<[number]>('DELETE FROM order_imaging WHERE order_id = ?'),
      imagingByStudy: db.prepare<[string], ImagingRow>('SELECT * FROM order_imaging WHERE study_uid = ? ORDER BY order_id'),
      imagingByAccession: db.prepare<[string], ImagingRow>('SELECT * FROM order_imaging WHERE accession = ? ORDER BY order_id'),
      setProgress: db.prepare<[string, string, number, number, number]>('UPDATE order_imaging SET sps_status = ?, mpps_uid = ?, progress_at = ?, progress_seq = ? WHERE order_id = ?'),
      metaAll: db.prepare<[], { key: string; value: number }>("SELECT key, value FROM order_meta WHERE key IN ('change_seq', 'progress_seq', 'expire_seq')"),
      mppsGet: db.prepare<[string], { sop_instance_uid: string; status: string; order_id: number | null; calling_aet: string | null; subject_json: string | null }>(
        'SELECT sop_instance_uid, status, order_id, calling_aet, subject_json FROM order_mpps WHERE sop_instance_uid = ?',
      ),
      mppsPut: db.prepare(
        `INSERT INTO order_mpps (sop_instance_uid, status, order_id, calling_aet, created_at, updated_at, subject_json) VALUES (@uid, @status, @order_id, @calling_aet, @now, @now, @subject_json)
         ON CONFLICT(sop_instance_uid) DO UPDATE SET status = excluded.status, order_id = COALESCE(excluded.order_id, order_mpps.order_id), updated_at = excluded.updated_at,
           subject_json = COALESCE(order_mpps.subject_json, excluded.subject_json)`,
      ),
      setCursor: db.prepare<[string, number, number]>(
        'INSERT INTO order_cursors (name, cursor, updated_at) VALUES (?, ?, ?) ON CONFLICT(name) DO UPDATE SET cursor = excluded.cursor, updated_at = excluded.updated_at',
      ),
    };
  }

  /**
   * Apply the updates of one message in one transaction.
   * - NW: create the order, or merge the tests into the existing one (a cancelled order comes back
   *   as pending with just the new tests). Fields the update carries overwrite the stored ones.
   * - XO: like NW but the named tests REPLACE the stored ones.
   * - CA / DC / OC / OD: remove the named tests; no tests named, or none left → the whole order is
   *   cancelled (kept, status 'cancelled', with the tests it had, so a query can answer "cancelled").
   * - anything else (SC, RP ...): ignored.
   * An update that changes nothing leaves the order (and its change sequence) untouched, and a message
   * already applied (same source deviceId + messageControlId) is not applied again.
   */
  apply(updates: OrderUpdate[], source: OrderSource): ApplyResult {
    const now = Date.now();
    return this.tx(() => {
      const r: ApplyResult = { created: 0, updated: 0, cancelled: 0, ignored: 0, duplicate: false };
      if (source.messageControlId) {
        if (this.s.seenMessage.get(source.deviceId, source.messageControlId)) {
          r.duplicate = true;
          return r;
        }
        this.s.rememberMessage.run(source.deviceId, source.messageControlId, now);
      }
      for (const u of updates) {
        const outcome = this.applyOne(u, source, now);
        r[outcome]++;
      }
      return r;
    }, (r) => this.log.info({ device: source.deviceId, updates: updates.length, ...r }, r.duplicate ? 'order message already applied' : 'orders applied'));
  }

  findBySpecimen(specimenId: string): CachedOrder | undefined {
    const id = specimenId.trim();
    if (!id) return undefined;
    return this.guard(() => {
      const row = this.s.bySpecimen.get(id);
      return row ? this.toOrder(row) : undefined;
    });
  }

  /** All orders (pending and cancelled) of a patient, oldest first. */
  findByPatient(patientId: string): CachedOrder[] {
    const id = patientId.trim();
    if (!id) return [];
    return this.guard(() => this.s.byPatient.all(id).map((r) => this.toOrder(r)));
  }

  /**
   * Host-query lookup (protocols.md §2.3 C). Specimen ids first: every exact (trimmed, case-sensitive)
   * match, in query order, pending or cancelled. Only when no specimen id matched does it fall back to
   * the patient id, and then only to that patient's PENDING orders (an analyzer that asks by patient
   * wants work to do, not history).
   */
  lookup(query: { specimenIds: string[]; patientId?: string }): CachedOrder[] {
    const out: CachedOrder[] = [];
    const seen = new Set<number>();
    for (const raw of query.specimenIds) {
      const o = this.findBySpecimen(raw);
      if (o && !seen.has(o.id)) {
        seen.add(o.id);
        out.push(o);
      }
    }
    if (out.length || !query.patientId) return out;
    return this.findByPatient(query.patientId).filter((o) => o.status === 'pending');
  }

  /**
   * Broadcast mode: orders changed after `cursor` (created, changed or cancelled), in change order.
   * The returned cursor is the change sequence of the last order returned (unchanged when none);
   * keep it (`saveCursor`) and pass it back to resume after a restart. Sequences are never reused,
   * also not after `expire()`.
   */
  pendingSince(cursor: number, limit = 100): { orders: CachedOrder[]; cursor: number } {
    return this.guard(() => {
      const rows = this.s.since.all(cursor, Math.max(1, Math.floor(limit)));
      const orders = rows.map((r) => this.toOrder(r));
      return { orders, cursor: rows.length ? rows[rows.length - 1].change_seq : cursor };
    });
  }

  /** Persist a broadcast subscriber's cursor (e.g. per analyzer). */
  saveCursor(name: string, cursor: number): void {
    this.tx(() => this.s.setCursor.run(name, cursor, Date.now()));
  }

  /** A subscriber's saved cursor, 0 when none. */
  loadCursor(name: string): number {
    return this.guard(() => this.s.getCursor.get(name)?.cursor ?? 0);
  }

  /** Record that this order (in its current version) was downloaded to an analyzer. */
  markDownloaded(orderId: number, deviceId: string): void {
    this.tx(() => {
      const row = this.s.byId.get(orderId);
      if (!row) throw new StoreError(`order ${orderId} does not exist`);
      this.s.markDownloaded.run(orderId, deviceId, Date.now(), row.change_seq);
    });
  }

  downloadedTo(orderId: number): OrderDownload[] {
    return this.guard(() => this.s.downloads.all(orderId)).map((d) => ({ deviceId: d.device_id, downloadedAt: new Date(d.downloaded_at).toISOString(), changeSeq: d.change_seq }));
  }

  /**
   * Delete orders not changed for `expiryDays` (with their tests and download records) and forget
   * de-duplication entries as old. Returns the number of orders deleted.
   */
  expire(now: number = Date.now()): number {
    const limit = now - this.expiryDays * DAY_MS;
    return this.tx(
      () => {
        const ids = this.s.expiredIds.all(limit).map((r) => r.id);
        for (const id of ids) {
          this.s.deleteTests.run(id);
          this.s.deleteDownloads.run(id);
          this.s.deleteImaging.run(id);
          this.s.deleteOrder.run(id);
        }
        this.s.expireMessages.run(limit);
        if (ids.length) this.nextMeta('expire_seq'); // worklist readers reload (worklistSince)
        return ids.length;
      },
      (n) => n && this.log.info({ expired: n }, 'expired orders deleted'),
    );
  }

  /**
   * Worklist items (issue 11 part 3): pending imaging orders matching the exact pre-filter, ordered by
   * SPS start date/time. Cancelled orders are never returned (ORC-1 CA/DC/OC/OD: protocols.md §5.3).
   * One indexed query (order_imaging by modality/date/accession, order_orders by patient) with the
   * order's first test and patient in the same row: no query per item.
   */
  worklist(filter: WorklistFilter = {}): WorklistEntry[] {
    const where: string[] = ["o.status = 'pending'"];
    const args: string[] = [];
    if (filter.modality !== undefined) (where.push('i.modality = ?'), args.push(filter.modality));
    if (filter.spsDateFrom !== undefined) (where.push('i.sps_date >= ?'), args.push(filter.spsDateFrom));
    if (filter.spsDateTo !== undefined) (where.push('i.sps_date <= ?'), args.push(filter.spsDateTo));
    if (filter.accessionNumber !== undefined) (where.push('i.accession = ?'), args.push(filter.accessionNumber));
    if (filter.patientId !== undefined) (where.push('o.patient_id = ?'), args.push(filter.patientId));
    const sql = `SELECT i.*, o.placer_order_number, o.filler_order_number, o.patient_json, o.priority,
        (SELECT json_object('code', t.code, 'display', t.display, 'system', t.system, 'altCode', t.alt_code, 'altDisplay', t.alt_display, 'altSystem', t.alt_system)
           FROM order_tests t WHERE t.order_id = o.id ORDER BY t.seq LIMIT 1) AS test_json
      FROM order_imaging i JOIN order_orders o ON o.id = i.order_id
      WHERE ${where.join(' AND ')} ORDER BY i.sps_date, i.order_id`;
    let stmt = this.worklistStmts.get(sql);
    if (!stmt) {
      stmt = this.db.prepare(sql);
      this.worklistStmts.set(sql, stmt);
    }
    const rows = this.guard(() => stmt!.all(...args)) as WorklistRow[];
    return rows.map((r) => toWorklistEntry(r));
  }

  /** The order cache's worklist position now (one read of order_meta). */
  worklistCursor(): WorklistCursor {
    return this.guard(() => {
      const c: WorklistCursor = { change: 0, progress: 0, expire: 0 };
      for (const r of this.s.metaAll.all()) {
        if (r.key === 'change_seq') c.change = r.value;
        else if (r.key === 'progress_seq') c.progress = r.value;
        else c.expire = r.value;
      }
      return c;
    });
  }

  /**
   * Incremental worklist reading (for an in-memory index, drivers/dicom/worklist.ts): with no cursor,
   * or after an expiry, every pending imaging order (`full: true`); otherwise the imaging orders whose
   * order changed (created, changed, cancelled: `status` says which) or whose MPPS progress moved
   * since `since`. Returns the cursor to pass next time.
   */
  worklistSince(since: WorklistCursor | undefined): { full: boolean; entries: Array<WorklistEntry & { status: OrderStatus }>; cursor: WorklistCursor } {
    return this.guard(() =>
      this.db.transaction(() => {
        // one read transaction: the cursor and the rows are of the same snapshot (WAL)
        const cursor = this.worklistCursor();
        const full = !since || since.expire !== cursor.expire;
        const cols = `i.*, o.status, o.placer_order_number, o.filler_order_number, o.patient_json, o.priority,
          (SELECT json_object('code', t.code, 'display', t.display, 'system', t.system, 'altCode', t.alt_code, 'altDisplay', t.alt_display, 'altSystem', t.alt_system)
             FROM order_tests t WHERE t.order_id = o.id ORDER BY t.seq LIMIT 1) AS test_json
          FROM order_imaging i JOIN order_orders o ON o.id = i.order_id`;
        const rows = (
          full
            ? this.db.prepare(`SELECT ${cols} WHERE o.status = 'pending'`).all()
            : this.db.prepare(`SELECT ${cols} WHERE o.change_seq > ? UNION SELECT ${cols} WHERE i.progress_seq > ?`).all(since.change, since.progress)
        ) as Array<WorklistRow & { status: OrderStatus }>;
        return { full, entries: rows.map((r) => ({ ...toWorklistEntry(r), status: r.status })), cursor };
      })(),
    );
  }

  /** The worklist item of one order (pending or not), undefined when the order has no imaging part. */
  worklistEntry(orderId: number): (WorklistEntry & { status: OrderStatus }) | undefined {
    return this.guard(() => {
      const row = this.s.byId.get(orderId);
      const img = this.s.imagingById.get(orderId);
      if (!row || !img) return undefined;
      const o = this.toOrder(row);
      const e: WorklistEntry & { status: OrderStatus } = { orderId, status: row.status, imaging: { ...(JSON.parse(img.imaging_json) as ImagingOrder), studyInstanceUid: img.study_uid }, spsStatus: img.sps_status };
      if (o.placerOrderNumber) e.placerOrderNumber = o.placerOrderNumber;
      if (o.fillerOrderNumber) e.fillerOrderNumber = o.fillerOrderNumber;
      if (o.patient) e.patient = o.patient;
      if (o.priority) e.priority = o.priority;
      if (o.tests[0]) e.service = o.tests[0];
      if (img.mpps_uid) e.mppsUid = img.mpps_uid;
      return e;
    });
  }

  /**
   * The order an MPPS refers to (Scheduled Step Attributes Sequence, PS3.4 F.7.2.1): Study Instance UID
   * (+ SPS ID when several), else Accession Number (+ SPS ID / Requested Procedure ID). undefined: an
   * unscheduled procedure step (PS3.4 F.7.2.1: allowed; no worklist item moves).
   */
  findImagingOrder(link: MppsLink): number | undefined {
    return this.guard(() => {
      const pick = (rows: ImagingRow[]) => {
        if (rows.length <= 1) return rows[0];
        return rows.find((r) => (link.spsId && r.sps_id === link.spsId) || (link.requestedProcedureId && r.requested_procedure_id === link.requestedProcedureId)) ?? rows[0];
      };
      const byStudy = link.studyInstanceUid ? pick(this.s.imagingByStudy.all(link.studyInstanceUid)) : undefined;
      if (byStudy) return byStudy.order_id;
      const byAcc = link.accessionNumber ? pick(this.s.imagingByAccession.all(link.accessionNumber)) : undefined;
      return byAcc?.order_id;
    });
  }

  /** MPPS state of one Performed Procedure Step (undefined: never created here). */
  mppsState(sopInstanceUid: string): MppsState | undefined {
    return this.guard(() => {
      const r = this.s.mppsGet.get(sopInstanceUid);
      if (!r) return undefined;
      const m: MppsState = { sopInstanceUid: r.sop_instance_uid, status: r.status };
      if (r.order_id !== null) m.orderId = r.order_id;
      if (r.calling_aet) m.callingAeTitle = r.calling_aet;
      if (r.subject_json) m.subject = JSON.parse(r.subject_json) as Record<string, string>;
      return m;
    });
  }

  /**
   * Record an MPPS state change durably (one transaction): the MPPS row, and the linked worklist item's
   * SPS status (PS3.4 F.7.2: IN PROGRESS → STARTED, COMPLETED, DISCONTINUED).
   */
  recordMpps(sopInstanceUid: string, status: 'IN PROGRESS' | 'COMPLETED' | 'DISCONTINUED', orderId: number | undefined, callingAeTitle: string, subject?: Record<string, string>): void {
    const now = Date.now();
    this.tx(() => {
      this.s.mppsPut.run({ uid: sopInstanceUid, status, order_id: orderId ?? null, calling_aet: callingAeTitle, now, subject_json: subject && Object.keys(subject).length ? JSON.stringify(subject) : null });
      const linked = orderId ?? this.s.mppsGet.get(sopInstanceUid)?.order_id ?? undefined;
      if (linked !== undefined && linked !== null) {
        const sps: SpsStatus = status === 'IN PROGRESS' ? 'STARTED' : status;
        this.s.setProgress.run(sps, sopInstanceUid, now, this.nextMeta('progress_seq'), linked);
      }
    });
  }

  stats(): OrderCacheStats {
    const c = this.db
      .prepare<[], { orders: number; pending: number | null; cancelled: number | null }>(
        "SELECT COUNT(*) AS orders, SUM(status = 'pending') AS pending, SUM(status = 'cancelled') AS cancelled FROM order_orders",
      )
      .get()!;
    const tests = (this.db.prepare<[], { n: number }>('SELECT COUNT(*) AS n FROM order_tests').get()?.n ?? 0) as number;
    const messages = (this.db.prepare<[], { n: number }>('SELECT COUNT(*) AS n FROM order_messages').get()?.n ?? 0) as number;
    return { orders: c.orders, pending: c.pending ?? 0, cancelled: c.cancelled ?? 0, tests, lastChangeSeq: this.s.getMeta.get('change_seq')?.value ?? 0, messages };
  }

  // --- internals ---

  private readonly worklistStmts = new Map<string, Database.Statement>();

  /**
   * Store an imaging update over the stored one (fields the update carries win; the Study Instance UID
   * is kept once given or generated: protocols.md §5.3). `restart`: the order was cancelled and is
   * ordered again (SPS back to SCHEDULED). Returns whether anything changed.
   */
  private putImaging(orderId: number, u: ImagingOrder, old: ImagingRow | undefined, restart: boolean): boolean {
    const prev = old ? (JSON.parse(old.imaging_json) as ImagingOrder) : undefined;
    const merged = { ...(prev ?? {}), ...dropUndefined(u) } as ImagingOrder; // u.modality is always set
    const studyUid = u.studyInstanceUid ?? old?.study_uid ?? newStudyUid();
    delete merged.studyInstanceUid;
    const status: SpsStatus = restart || !old ? 'SCHEDULED' : old.sps_status;
    const json = JSON.stringify(merged);
    if (old && old.imaging_json === json && old.study_uid === studyUid && old.sps_status === status) return false;
    this.s.upsertImaging.run({
      order_id: orderId,
      accession: merged.accessionNumber ?? null,
      modality: merged.modality,
      sps_date: merged.spsStartDate ?? null,
      station_aet: merged.stationAeTitle ?? null,
      study_uid: studyUid,
      sps_id: merged.spsId ?? null,
      requested_procedure_id: merged.requestedProcedureId ?? null,
      imaging_json: json,
      sps_status: status,
    });
    return true;
  }

  private applyOne(u: OrderUpdate, source: OrderSource, now: number): 'created' | 'updated' | 'cancelled' | 'ignored' {
    const control = u.control.toUpperCase();
    const specimenId = u.specimenId.trim();
    if (!specimenId) return 'ignored';
    const row = this.s.bySpecimen.get(specimenId);

    if (control === 'NW' || control === 'XO') {
      if (!row) {
        // XO for an order we never saw: keep it (the HIS means it to exist)
        const id = Number(
          this.s.insertOrder.run({
            ...this.fieldsOf(u, undefined),
            specimen_id: specimenId,
            status: 'pending',
            created_at: now,
            updated_at: now,
            change_seq: this.nextSeq(),
            source_device: source.deviceId,
            source_message: source.messageControlId || null,
          }).lastInsertRowid,
        );
        this.addTests(id, u.tests, 0);
        if (u.imaging) this.putImaging(id, u.imaging, undefined, false);
        return 'created';
      }
      const current = this.s.tests.all(row.id);
      let testsChanged = false;
      if (control === 'XO' || row.status === 'cancelled') {
        // XO replaces the tests (when it names any); NW on a cancelled order starts it afresh
        if (u.tests.length || row.status === 'cancelled') {
          testsChanged = !sameTests(current, u.tests);
          if (testsChanged) {
            this.s.deleteTests.run(row.id);
            this.addTests(row.id, u.tests, 0);
          }
        }
      } else {
        const missing = u.tests.filter((t) => !current.some((c) => c.code === t.code && c.system === (t.system ?? '')));
        if (missing.length) {
          this.addTests(row.id, missing, current.length ? Math.max(...current.map((c) => c.seq)) + 1 : 0);
          testsChanged = true;
        }
      }
      const fields = this.fieldsOf(u, row);
      const imagingChanged = u.imaging ? this.putImaging(row.id, u.imaging, this.s.imagingById.get(row.id), row.status === 'cancelled') : false;
      const fieldsChanged = differs(fields, row) || row.status !== 'pending' || imagingChanged;
      if (!testsChanged && !fieldsChanged) return 'ignored';
      this.s.updateOrder.run({ ...fields, id: row.id, status: 'pending', updated_at: now, change_seq: this.nextSeq(), source_device: source.deviceId, source_message: source.messageControlId || null });
      return 'updated';
    }

    if (CANCELS.has(control)) {
      if (!row || row.status === 'cancelled') return 'ignored';
      const current = this.s.tests.all(row.id);
      const named = u.tests.filter((t) => current.some((c) => c.code === t.code && c.system === (t.system ?? '')));
      const whole = u.tests.length === 0 || named.length === current.length;
      const upd = { ...rowFields(row), id: row.id, updated_at: now, change_seq: this.nextSeq(), source_device: source.deviceId, source_message: source.messageControlId || null };
      if (whole) {
        // keep the tests: they are what was cancelled (ASTM O.12 C lists them)
        this.s.updateOrder.run({ ...upd, status: 'cancelled' });
        return 'cancelled';
      }
      if (named.length === 0) return 'ignored'; // names only tests the order does not have
      for (const t of named) this.s.deleteTest.run(row.id, t.code, t.system ?? '');
      this.s.updateOrder.run({ ...upd, status: 'pending' });
      return 'updated';
    }
    return 'ignored';
  }

  private addTests(orderId: number, tests: OrderTest[], firstSeq: number): void {
    let seq = firstSeq;
    for (const t of tests) {
      const r = this.s.insertTest.run(orderId, seq, t.code, t.system ?? '', t.display ?? null, t.altCode ?? null, t.altDisplay ?? null, t.altSystem ?? null);
      if (r.changes) seq++;
    }
  }

  /** Stored column values after applying `u` over `row` (fields the update does not carry are kept). */
  private fieldsOf(u: OrderUpdate, row: OrderRow | undefined) {
    const keep = row ? rowFields(row) : undefined;
    return {
      placer_order_number: u.placerOrderNumber ?? keep?.placer_order_number ?? null,
      filler_order_number: u.fillerOrderNumber ?? keep?.filler_order_number ?? null,
      patient_id: u.patient ? (u.patient.patientId ?? null) : (keep?.patient_id ?? null),
      patient_json: u.patient ? JSON.stringify(u.patient) : (keep?.patient_json ?? null),
      priority: u.priority ?? keep?.priority ?? null,
      requested_at: u.requestedAt ?? keep?.requested_at ?? null,
      collected_at: u.collectedAt ?? keep?.collected_at ?? null,
      specimen_type: u.specimenType ?? keep?.specimen_type ?? null,
    };
  }

  /** Monotonic change sequence, persisted in order_meta so it never goes back (not even after expiry). */
  private nextSeq(): number {
    return this.nextMeta('change_seq');
  }

  private nextMeta(key: 'change_seq' | 'progress_seq' | 'expire_seq'): number {
    const n = (this.s.getMeta.get(key)?.value ?? 0) + 1;
    this.s.setMeta.run(key, n);
    return n;
  }

  private toOrder(r: OrderRow): CachedOrder {
    const o: CachedOrder = {
      id: r.id,
      specimenId: r.specimen_id,
      tests: this.s.tests.all(r.id).map(toTest),
      status: r.status,
      createdAt: new Date(r.created_at).toISOString(),
      updatedAt: new Date(r.updated_at).toISOString(),
      changeSeq: r.change_seq,
    };
    if (r.placer_order_number) o.placerOrderNumber = r.placer_order_number;
    if (r.filler_order_number) o.fillerOrderNumber = r.filler_order_number;
    if (r.patient_json) o.patient = JSON.parse(r.patient_json) as OrderPatient;
    if (r.priority) o.priority = r.priority as OrderPriority;
    if (r.requested_at) o.requestedAt = r.requested_at;
    if (r.collected_at) o.collectedAt = r.collected_at;
    if (r.specimen_type) o.specimenType = r.specimen_type;
    return o;
  }

  /** One durable transaction; SQLite errors become StoreError / StoreFullError (→ HL7 AE 207). */
  private tx<T>(fn: () => T, after?: (r: T) => unknown): T {
    if (this.db.inTransaction) {
      // inside someone else's transaction our commit would only be a savepoint: not durable on return
      throw new StoreError('OrderCache: called inside an open transaction');
    }
    const r = this.guard(() => this.db.transaction(fn)());
    after?.(r);
    return r;
  }

  private guard<T>(fn: () => T): T {
    try {
      return fn();
    } catch (e) {
      if (e instanceof StoreError) throw e;
      const code = (e as { code?: string })?.code ?? '';
      if (code === 'SQLITE_FULL') throw new StoreFullError('order cache: database or disk is full', { cause: e });
      // SQLITE_* errors, and better-sqlite3's TypeError on a closed connection: the cache could not commit
      throw new StoreError(`order cache: ${typeof code === 'string' && code.startsWith('SQLITE_') ? code : 'database unavailable'}`, { cause: e });
    }
  }
}

type WorklistRow = ImagingRow & { placer_order_number: string | null; filler_order_number: string | null; patient_json: string | null; priority: string | null; test_json: string | null };

function toWorklistEntry(r: WorklistRow): WorklistEntry {
  const e: WorklistEntry = { orderId: r.order_id, imaging: { ...(JSON.parse(r.imaging_json) as ImagingOrder), studyInstanceUid: r.study_uid }, spsStatus: r.sps_status };
  if (r.placer_order_number) e.placerOrderNumber = r.placer_order_number;
  if (r.filler_order_number) e.fillerOrderNumber = r.filler_order_number;
  if (r.patient_json) e.patient = JSON.parse(r.patient_json) as OrderPatient;
  if (r.priority) e.priority = r.priority as OrderPriority;
  if (r.test_json) {
    const t = JSON.parse(r.test_json) as Record<string, string | null>;
    e.service = toTest({ code: t.code ?? '', system: t.system ?? '', display: t.display, alt_code: t.altCode, alt_display: t.altDisplay, alt_system: t.altSystem } as TestRow);
  }
  if (r.mpps_uid) e.mppsUid = r.mpps_uid;
  return e;
}

function dropUndefined<T extends object>(o: T): Partial<T> {
  const out: Partial<T> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) (out as Record<string, unknown>)[k] = v;
  return out;
}

function rowFields(r: OrderRow) {
  return {
    placer_order_number: r.placer_order_number,
    filler_order_number: r.filler_order_number,
    patient_id: r.patient_id,
    patient_json: r.patient_json,
    priority: r.priority,
    requested_at: r.requested_at,
    collected_at: r.collected_at,
    specimen_type: r.specimen_type,
  };
}

function differs(fields: ReturnType<typeof rowFields>, row: OrderRow): boolean {
  const old = rowFields(row);
  return (Object.keys(fields) as Array<keyof typeof fields>).some((k) => (fields[k] ?? null) !== (old[k] ?? null));
}

function sameTests(current: TestRow[], next: OrderTest[]): boolean {
  const uniq = new Map(next.map((t) => [`${t.code}\u0000${t.system ?? ''}`, t]));
  if (current.length !== uniq.size) return false;
  const cur = [...current].sort((a, b) => a.seq - b.seq);
  const nxt = [...uniq.values()];
  return cur.every((c, i) => {
    const t = nxt[i];
    return c.code === t.code && c.system === (t.system ?? '') && (c.display ?? undefined) === t.display && (c.alt_code ?? undefined) === t.altCode && (c.alt_display ?? undefined) === t.altDisplay && (c.alt_system ?? undefined) === t.altSystem;
  });
}

function toTest(r: TestRow): OrderTest {
  const t: OrderTest = { code: r.code };
  if (r.display) t.display = r.display;
  if (r.system) t.system = r.system;
  if (r.alt_code) t.altCode = r.alt_code;
  if (r.alt_display) t.altDisplay = r.alt_display;
  if (r.alt_system) t.altSystem = r.alt_system;
  return t;
}
