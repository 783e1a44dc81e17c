import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { Database as Db, Statement } from 'better-sqlite3';
import type { CommitResult, InboundMessage, QuarantineInput } from '../contracts/driver';
import { StoreError } from '../contracts/errors';
import type { Observation, ObservationDraft } from '../contracts/observation';
import type { DeliveryOutcome, OutboxEntry } from '../contracts/output';
import type {
  DeadLetter,
  DestinationPolicy,
  DestinationStats,
  GatewayStoreApi,
  MessageDetail,
  MessageQuery,
  MessageSummary,
  OutboxState,
  QuarantineRow,
  RetentionPolicy,
  RetentionReport,
  StoreOptions,
} from '../contracts/store';
import { componentLogger } from '../log/logger';
import { metrics } from '../metrics/registry';
import { decodeObservations, draftsToJson } from './codec';
import { UidGenerator } from './ids';
import { databaseFileBytes, prepareDatabase } from './migrations';
import { DEFAULT_DESTINATION_POLICY, LeaseTable, resolvePolicy } from './outbox';
import { toStoreError, type WriteQueueStats } from './write-queue';
import { WriterClient } from './writer-client';
import type { SubmitReply } from './writer-protocol';

export const DB_FILE = 'gateway.db';
const MAX_PAGE_COUNT_UNLIMITED = 4294967294;

export interface GatewayStoreStats extends WriteQueueStats {
  schemaVersion: number;
}

interface MessageRow {
  id: number;
  uid: string;
  device_id: string;
  driver: string;
  message_type: string | null;
  source_message_id: string | null;
  received_at: string;
  status: MessageSummary['status'];
  observation_count: number;
  bytes: number;
  flags: string | null;
  processing_id: string | null;
}

interface OutboxRow {
  id: number;
  destination: string;
  key: string;
  message_id: number | null;
  payload: Buffer;
  content_type: string | null;
  state: OutboxState;
  attempts: number;
  next_attempt_at: number;
  created_at: number;
  last_error: string | null;
  delivered_at: number | null;
  dead_at: number | null;
}

const SUMMARY_COLS = `m.id, m.uid, m.device_id, m.driver, m.message_type, m.source_message_id, m.received_at, m.status, m.observation_count, m.bytes, m.flags, m.processing_id`;

function summary(r: MessageRow): MessageSummary {
  const s: MessageSummary = {
    id: r.id,
    uid: r.uid,
    deviceId: r.device_id,
    driver: r.driver,
    receivedAt: r.received_at,
    status: r.status,
    observationCount: r.observation_count,
    bytes: r.bytes,
  };
  if (r.message_type != null) s.messageType = r.message_type;
  if (r.source_message_id != null) s.sourceMessageId = r.source_message_id;
  if (r.flags != null) s.flags = JSON.parse(r.flags) as string[];
  if (r.processing_id != null) s.processingId = r.processing_id;
  return s;
}

/** InboundMessage.flags without repeats, in the order given; throws on anything but non-empty strings. */
function messageFlags(flags: unknown): string[] {
  if (flags === undefined) return [];
  if (!Array.isArray(flags)) throw new TypeError('flags must be an array of strings');
  const out = new Set<string>();
  for (const f of flags) {
    if (typeof f !== 'string' || !f) throw new TypeError('flags must be non-empty strings');
    out.add(f);
  }
  return [...out];
}

function optionalString(v: unknown, name: string): string | null {
  if (v === undefined || v === null) return null;
  if (typeof v !== 'string') throw new TypeError(`${name} must be a string`);
  return v;
}

function parseJson(s: string | null): Record<string, unknown> | undefined {
  if (s == null) return undefined;
  return JSON.parse(s) as Record<string, unknown>;
}

function iso(ms: number): string {
  return new Date(ms).toISOString();
}

function normalizeIso(s: string): string {
  const t = Date.parse(s);
  return Number.isNaN(t) ? s : new Date(t).toISOString();
}

/**
 * The gateway store (architecture §3): one SQLite file in WAL mode with synchronous=FULL.
 * Writes are commands posted to the writer worker (store-writer-worker.ts), which owns the only
 * write connection, group-commits them and fsyncs off the main thread; each promise resolves after
 * the COMMIT holding it returned. This thread keeps a read connection (WAL: reads see committed
 * data only), the in-memory leases and the destination policies. See README "Writer worker".
 */
export class GatewayStore implements GatewayStoreApi {
  readonly file: string;
  private readonly log = componentLogger('store');
  private readonly writer: WriterClient;
  private readonly uids = new UidGenerator();
  private readonly leases = new LeaseTable();
  private readonly policies = new Map<string, DestinationPolicy>();
  private readonly seenDestinations = new Set<string>();
  private closing: Promise<void> | undefined;
  private closed = false;
  private readonly st: Record<string, Statement>;
  private readonly schemaVersion: number;
  /** the read connection (migrations ran on it before the writer started) */
  private readonly db: Db;

  /** StoreOptions.deferredHoldMs, clamped to 0-100 */
  private readonly deferredHoldMs: number;

  static open(opts: StoreOptions): GatewayStore {
    return new GatewayStore(opts);
  }

  private constructor(private readonly opts: StoreOptions) {
    const maxBatch = opts.maxBatch ?? 512;
    if (!Number.isInteger(maxBatch) || maxBatch < 1) throw new RangeError('maxBatch must be an integer >= 1');
    this.deferredHoldMs = commitDelay(opts.deferredHoldMs ?? 5);
    mkdirSync(opts.dataDir, { recursive: true, mode: 0o700 });
    this.file = join(opts.dataDir, DB_FILE);
    const db = new Database(this.file);
    let maxPageCount: number;
    try {
      // synchronous, before the writer starts: open() returns a store whose schema is ready
      const m = prepareDatabase(db);
      this.schemaVersion = m.to;
      if (m.from !== m.to || m.vacuumed) this.log.info({ from: m.from, to: m.to, vacuumed: m.vacuumed }, 'store schema migrated');
      maxPageCount = this.pagesFor(db, opts.maxDbBytes ?? 0);
      db.pragma(`max_page_count = ${maxPageCount}`); // mirrors the writer's limit (diagnostics)
      db.pragma('query_only = ON'); // this thread never writes
    } catch (e) {
      db.close();
      throw toStoreError(e, `cannot open ${this.file}`);
    }
    this.db = db;
    try {
      this.writer = new WriterClient(
        { file: this.file, maxBatch, maxPageCount, busyTimeoutMs: 5000 },
        {
          onBatch: (n) => metrics.commitBatch.observe(n),
          onLog: (level, obj, msg) => this.log[level](obj, msg),
          onCrash: (err) => this.log.error({ code: err.code, err: err.message }, 'store writer worker died; writes are rejected until the store is reopened'),
        },
      );
    } catch (e) {
      db.close();
      throw toStoreError(e, `cannot start the store writer for ${this.file}`);
    }
    this.st = this.prepareStatements();
    this.registerGauges();
    this.log.info({ file: this.file, maxDbBytes: opts.maxDbBytes ?? 0 }, 'store opened');
  }

  private pagesFor(db: Db, maxDbBytes: number): number {
    if (!Number.isFinite(maxDbBytes) || maxDbBytes < 0) throw new RangeError('maxDbBytes must be >= 0');
    const pageSize = Number(db.pragma('page_size', { simple: true }));
    return maxDbBytes > 0 ? Math.max(1, Math.floor(maxDbBytes / pageSize)) : MAX_PAGE_COUNT_UNLIMITED;
  }

  private prepareStatements(): Record<string, Statement> {
    const db = this.db;
    return {
      observationsOf: db.prepare(
        `SELECT m.uid, m.device_id, m.driver, m.received_at, m.source_message_id, m.processing_id, b.observations FROM messages m JOIN message_bodies b ON b.message_id = m.id WHERE m.id = ?`,
      ),
      unfinished: db.prepare(`SELECT id, uid FROM messages WHERE device_id = ? AND status = 'committed' ORDER BY id LIMIT ?`),
      duePending: db.prepare(
        `SELECT id, destination, key, message_id, payload, content_type, attempts, created_at FROM outbox
          WHERE destination = ? AND state = 'pending' AND next_attempt_at <= ? ORDER BY id`,
      ),
      headPending: db.prepare(
        `SELECT id, destination, key, message_id, payload, content_type, attempts, created_at, next_attempt_at FROM outbox
          WHERE destination = ? AND state = 'pending' ORDER BY id LIMIT 1`,
      ),
      pendingByDue: db.prepare(`SELECT id, next_attempt_at FROM outbox WHERE destination = ? AND state = 'pending' ORDER BY next_attempt_at`),
      deliveriesOf: db.prepare(`SELECT destination, key, state, attempts, last_error, delivered_at FROM outbox WHERE message_id = ? ORDER BY id`),
      getMessage: db.prepare(`SELECT ${SUMMARY_COLS}, b.raw, m.meta FROM messages m JOIN message_bodies b ON b.message_id = m.id WHERE m.id = ?`),
      getQuarantine: db.prepare(`SELECT * FROM quarantine WHERE id = ?`),
      outboxStats: db.prepare(`SELECT destination, state, count(*) AS n, min(created_at) AS oldest FROM outbox GROUP BY destination, state`),
    };
  }

  // ---------------------------------------------------------------- upkeep / lifecycle

  /**
   * Change the quota at run time (0 = none). Cannot go below the current file's page count. Applies to
   * every write issued after this call (the command is ordered with them).
   */
  setMaxDbBytes(maxDbBytes: number): void {
    const pages = this.pagesFor(this.db, maxDbBytes);
    this.assertOpen();
    this.db.pragma(`max_page_count = ${pages}`);
    this.writer.send({ t: 'maxPageCount', pages }).catch((e: unknown) => this.log.warn({ err: String(e) }, 'quota change not applied by the writer'));
  }

  /** Group-commit counters: `transactions` counts committed transactions (one fsync each, except `deferredTransactions`: see write-queue.ts). */
  stats(): GatewayStoreStats {
    return { ...this.writer.stats(), schemaVersion: this.schemaVersion };
  }

  /** Connection and file settings as SQLite reports them (for tests, /readyz and support). */
  diagnostics(): { journalMode: string; synchronous: number; autoVacuum: number; foreignKeys: number; busyTimeoutMs: number; userVersion: number; pageSize: number; pageCount: number; freelistCount: number; maxPageCount: number } {
    this.assertOpen();
    const p = (name: string) => this.db.pragma(name, { simple: true }) as number | string;
    return {
      journalMode: String(p('journal_mode')),
      synchronous: Number(p('synchronous')),
      autoVacuum: Number(p('auto_vacuum')),
      foreignKeys: Number(p('foreign_keys')),
      busyTimeoutMs: Number(p('busy_timeout')),
      userVersion: Number(p('user_version')),
      pageSize: Number(p('page_size')),
      pageCount: Number(p('page_count')),
      freelistCount: Number(p('freelist_count')),
      maxPageCount: Number(p('max_page_count')),
    };
  }

  fileBytes(): number {
    this.assertOpen();
    return databaseFileBytes(this.file);
  }

  /** Runs in the writer: chunked deletes interleaved with other writes, incremental_vacuum, WAL checkpoint(TRUNCATE). */
  async applyRetention(policy: RetentionPolicy, now: number = Date.now()): Promise<RetentionReport> {
    this.assertOpen();
    const r = await this.writer.send<RetentionReport>({ t: 'retention', policy: { ...policy }, now });
    this.log.debug({ ...r }, 'retention done');
    return r;
  }

  close(): Promise<void> {
    if (!this.closing) {
      this.closing = (async () => {
        await this.writer.close(); // drains: everything issued before close() is committed (or rejected)
        this.db.close();
        this.closed = true;
        this.log.info('store closed');
      })();
    }
    return this.closing;
  }

  /** @internal test only: crash the writer worker (an uncaught error in it). */
  crashWriterForTest(): void {
    this.writer.crashForTest();
  }

  private assertOpen(): void {
    if (this.closed || this.closing) throw new StoreError('store is closed');
  }

  private registerGauges(): void {
    const collect = (set: (labels: Record<string, string>, v: number) => void, what: 'depth' | 'age') => {
      if (this.closed || this.closing) return;
      for (const s of this.destinationStats()) {
        set({ destination: s.destination }, what === 'depth' ? s.pending : s.oldestPendingAgeMs / 1000);
      }
    };
    metrics.outboxDepth.collect((set) => collect(set, 'depth'));
    metrics.outboxOldestAge.collect((set) => collect(set, 'age'));
  }

  // ---------------------------------------------------------------- ingest

  submit(msg: InboundMessage): Promise<CommitResult> {
    if (!msg || typeof msg.deviceId !== 'string' || !msg.deviceId || typeof msg.driver !== 'string' || !Buffer.isBuffer(msg.raw) || !Array.isArray(msg.drafts)) {
      return Promise.reject(new StoreError('invalid inbound message: deviceId, driver, raw (Buffer) and drafts are required'));
    }
    if (this.closing) return Promise.reject(new StoreError('store is closed'));
    const started = process.hrtime.bigint();
    const receivedAt = (msg.receivedAt ?? new Date()).toISOString();
    const uid = this.uids.next();
    const drafts = msg.drafts;
    const patients = new Set<string>();
    const specimens = new Set<string>();
    for (const d of drafts) {
      const pid = d.subject?.patientId;
      const sid = d.subject?.specimenId;
      if (pid) patients.add(pid);
      if (sid) specimens.add(sid);
    }
    let draftsJson: string;
    let meta: string | null;
    let flags: string[];
    let controlKey: string | null;
    let processingId: string | null;
    try {
      flags = messageFlags(msg.flags);
      controlKey = optionalString(msg.controlKey, 'controlKey') || null; // an empty key identifies nothing
      processingId = optionalString(msg.processingId, 'processingId');
      draftsJson = draftsToJson(drafts); // a string crosses to the worker far cheaper than the object graph
      meta = msg.meta === undefined ? null : JSON.stringify(msg.meta);
    } catch (e) {
      return Promise.reject(new StoreError(`invalid inbound message: ${String(e)}`, { cause: e }));
    }
    // An exact copy in its own ArrayBuffer, moved (not cloned) to the worker. The caller keeps msg.raw;
    // cloning msg.raw itself would copy its whole backing store (often Node's shared 8 KB pool slab).
    const raw = new Uint8Array(msg.raw);
    return this.writer
      .send<SubmitReply>({
        t: 'submit',
        a: {
          uid,
          deviceId: msg.deviceId,
          driver: msg.driver,
          messageType: msg.messageType ?? null,
          sourceMessageId: msg.sourceMessageId ?? null,
          sender: msg.sender ?? null,
          dedupeKey: msg.dedupeKey ?? null,
          controlKey,
          processingId,
          flags,
          receivedAt,
          raw,
          meta,
          observationCount: drafts.length,
          draftsJson,
          patients: [...patients],
          specimens: [...specimens],
        },
      }, [raw.buffer], commitDelay(msg.commitDelayMs))
      .then((r) => {
        metrics.commitLatency.observe(Number(process.hrtime.bigint() - started) / 1e9);
        if (r.duplicate) {
          // committed before this reply was sent: the read connection sees it
          return { messageId: r.messageId, messageUid: r.uid, duplicate: true, observations: this.closed ? [] : this.observationsOf(r.messageId) };
        }
        const observations = expandObservations(drafts, {
          messageId: r.messageId,
          uid,
          deviceId: msg.deviceId,
          driver: msg.driver,
          receivedAt,
          sourceMessageId: msg.sourceMessageId,
          processingId: processingId ?? undefined,
        });
        return { messageId: r.messageId, messageUid: uid, duplicate: false, controlIdReused: r.controlIdReused, observations };
      });
  }

  quarantine(q: QuarantineInput): Promise<number> {
    if (!q || !Buffer.isBuffer(q.raw) || !q.deviceId) return Promise.reject(new StoreError('invalid quarantine input: deviceId and raw (Buffer) are required'));
    const started = process.hrtime.bigint();
    const receivedAt = new Date().toISOString();
    const raw = new Uint8Array(q.raw);
    return this.writer
      .send<number>({
        t: 'quarantine',
        a: { deviceId: q.deviceId, driver: q.driver, reason: q.reason, errorCode: q.errorCode, receivedAt, raw, meta: q.meta === undefined ? null : JSON.stringify(q.meta) },
      }, [raw.buffer])
      .then((id) => {
        metrics.commitLatency.observe(Number(process.hrtime.bigint() - started) / 1e9);
        return id;
      });
  }

  markFinished(messageIds: number[], status: 'routed' | 'flow-error' = 'routed'): Promise<void> {
    return this.writer.send<void>({ t: 'markFinished', ids: [...messageIds], status }, undefined, this.deferredHoldMs);
  }

  /**
   * Add a message-level flag (e.g. `no-destination`) to committed messages, once, through the writer (the
   * only write connection: no main-thread fsync, no second writer). Deferred durability like markFinished;
   * rides with the next command within deferredHoldMs.
   */
  addMessageFlag(messageIds: number[], flag: string): Promise<void> {
    if (typeof flag !== 'string' || !flag) return Promise.reject(new StoreError('flag is required'));
    return this.writer.send<void>({ t: 'addFlag', ids: [...messageIds], flag }, undefined, this.deferredHoldMs);
  }

  unfinished(deviceId: string, limit = 1000): Array<{ messageId: number; messageUid: string; observations: Observation[] }> {
    this.assertOpen();
    const rows = this.st.unfinished.all(deviceId, Math.max(0, Math.floor(limit))) as Array<{ id: number; uid: string }>;
    return rows.map((r) => ({ messageId: r.id, messageUid: r.uid, observations: this.observationsOf(r.id) }));
  }

  private observationsOf(messageId: number): Observation[] {
    const r = this.st.observationsOf.get(messageId) as
      | { uid: string; device_id: string; driver: string; received_at: string; source_message_id: string | null; processing_id: string | null; observations: Buffer }
      | undefined;
    if (!r) return [];
    return expandObservations(decodeObservations(r.observations), {
      messageId,
      uid: r.uid,
      deviceId: r.device_id,
      driver: r.driver,
      receivedAt: r.received_at,
      sourceMessageId: r.source_message_id ?? undefined,
      processingId: r.processing_id ?? undefined,
    });
  }

  // ---------------------------------------------------------------- outbox

  setDestinationPolicy(destination: string, policy: Partial<DestinationPolicy>): void {
    this.policies.set(destination, resolvePolicy(policy, this.policies.get(destination) ?? DEFAULT_DESTINATION_POLICY));
    this.seenDestinations.add(destination);
  }

  private policy(destination: string): DestinationPolicy {
    return this.policies.get(destination) ?? DEFAULT_DESTINATION_POLICY;
  }

  appendOutbox(
    destination: string,
    items: Array<{ key: string; messageId?: number; payload: Buffer; contentType?: string }>,
  ): Promise<{ inserted: number; ignored: number }> {
    if (!destination) return Promise.reject(new StoreError('destination is required'));
    for (const it of items) {
      if (!it || typeof it.key !== 'string' || !it.key || !Buffer.isBuffer(it.payload)) {
        return Promise.reject(new StoreError('invalid outbox item: key (string) and payload (Buffer) are required'));
      }
    }
    this.seenDestinations.add(destination);
    const transfer: ArrayBuffer[] = [];
    const list = items.map((it) => {
      const payload = new Uint8Array(it.payload); // own copy, moved to the worker
      transfer.push(payload.buffer);
      return { key: it.key, messageId: it.messageId ?? null, payload, contentType: it.contentType ?? null };
    });
    return this.writer.send<{ inserted: number; ignored: number }>({ t: 'appendOutbox', destination, items: list, now: Date.now() }, transfer, this.deferredHoldMs);
  }

  lease(destination: string, limit: number, leaseMs: number): OutboxEntry[] {
    this.assertOpen();
    const now = Date.now();
    const out: OutboxEntry[] = [];
    if (limit <= 0) return out;
    const toEntry = (r: OutboxRow): OutboxEntry => {
      const e: OutboxEntry = { id: r.id, destination: r.destination, key: r.key, payload: r.payload, attempts: r.attempts, createdAt: r.created_at };
      if (r.message_id != null) e.messageId = r.message_id;
      if (r.content_type != null) e.contentType = r.content_type;
      return e;
    };
    if (this.policy(destination).strictOrder) {
      // head-of-line: only the oldest pending entry, only when due and not already in flight
      const head = this.st.headPending.get(destination) as OutboxRow | undefined;
      if (!head || head.next_attempt_at > now || this.leases.activeUntil(head.id, now) !== undefined) return out;
      out.push(toEntry(head));
    } else {
      for (const r of this.st.duePending.iterate(destination, now) as IterableIterator<OutboxRow>) {
        if (this.leases.activeUntil(r.id, now) !== undefined) continue;
        out.push(toEntry(r));
        if (out.length >= limit) break; // ends the iterator (statement reset)
      }
    }
    for (const e of out) this.leases.take(e.id, destination, now + Math.max(0, leaseMs));
    return out;
  }

  release(destination: string, ids: number[]): void {
    this.leases.release(destination, ids);
  }

  settle(destination: string, outcomes: DeliveryOutcome[]): Promise<void> {
    const list = [...outcomes];
    const policy = this.policy(destination);
    const unavailable = list.filter((o) => o.outcome === 'unavailable').map((o) => o.id);
    this.leases.release(destination, unavailable);
    const settledIds = list.filter((o) => o.outcome !== 'unavailable').map((o) => o.id);
    if (!settledIds.length) return Promise.resolve();
    return this.writer
      .send<{ delivered: number; failed: number; dead: number }>({
        t: 'settle',
        destination,
        outcomes: list.filter((o) => o.outcome !== 'unavailable').map((o) => ({ id: o.id, outcome: o.outcome, ...('error' in o && o.error !== undefined ? { error: o.error } : {}), ...('retryAfterMs' in o && o.retryAfterMs !== undefined ? { retryAfterMs: o.retryAfterMs } : {}) })),
        policy: { ...policy },
        now: Date.now(),
      })
      .then(
        (c) => {
          this.leases.release(destination, settledIds);
          if (c.delivered) metrics.delivered.inc({ destination }, c.delivered);
          if (c.failed) metrics.failed.inc({ destination }, c.failed);
          if (c.dead) {
            metrics.deadLettered.inc({ destination }, c.dead);
            this.log.warn({ destination, count: c.dead }, 'outbox entries moved to dead letters');
          }
        },
        (e: unknown) => {
          // not recorded: the entries become leasable again (the destination de-duplicates by key)
          this.leases.release(destination, settledIds);
          throw e;
        },
      );
  }

  nextDueInMs(destination: string): number | null {
    this.assertOpen();
    const now = Date.now();
    let best: number | null = null;
    if (this.policy(destination).strictOrder) {
      const head = this.st.headPending.get(destination) as OutboxRow | undefined;
      if (!head) return null;
      best = Math.max(head.next_attempt_at, this.leases.activeUntil(head.id, now) ?? 0);
    } else {
      for (const r of this.st.pendingByDue.iterate(destination) as IterableIterator<{ id: number; next_attempt_at: number }>) {
        const until = this.leases.activeUntil(r.id, now);
        const due = until === undefined ? r.next_attempt_at : Math.max(r.next_attempt_at, until);
        if (best === null || due < best) best = due;
        if (until === undefined) break; // rows come by due time: the first free one bounds the rest
      }
    }
    return best === null ? null : Math.max(0, best - now);
  }

  destinationStats(destination?: string): DestinationStats[] {
    this.assertOpen();
    const now = Date.now();
    const inFlight = this.leases.inFlight(now);
    const by = new Map<string, DestinationStats>();
    const get = (d: string) => {
      let s = by.get(d);
      if (!s) {
        s = { destination: d, pending: 0, inFlight: inFlight.get(d) ?? 0, dead: 0, delivered: 0, oldestPendingAgeMs: 0 };
        by.set(d, s);
      }
      return s;
    };
    for (const d of this.seenDestinations) get(d);
    for (const r of this.st.outboxStats.all() as Array<{ destination: string; state: OutboxState; n: number; oldest: number }>) {
      const s = get(r.destination);
      if (r.state === 'pending') {
        s.pending = r.n;
        s.oldestPendingAgeMs = Math.max(0, now - r.oldest);
      } else if (r.state === 'dead') s.dead = r.n;
      else s.delivered = r.n;
    }
    const all = [...by.values()].sort((a, b) => a.destination.localeCompare(b.destination));
    return destination === undefined ? all : all.filter((s) => s.destination === destination);
  }

  deadLetters(destination?: string, limit = 50, beforeId?: number): DeadLetter[] {
    this.assertOpen();
    const where = [`state = 'dead'`];
    const args: unknown[] = [];
    if (destination !== undefined) (where.push('destination = ?'), args.push(destination));
    if (beforeId !== undefined) (where.push('id < ?'), args.push(beforeId));
    args.push(Math.min(Math.max(1, Math.floor(limit)), 1000));
    const rows = this.db
      .prepare(`SELECT id, destination, key, message_id, attempts, last_error, created_at, dead_at FROM outbox WHERE ${where.join(' AND ')} ORDER BY id DESC LIMIT ?`)
      .all(...args) as OutboxRow[];
    return rows.map((r) => {
      const d: DeadLetter = { id: r.id, destination: r.destination, key: r.key, attempts: r.attempts, createdAt: iso(r.created_at), deadAt: iso(r.dead_at ?? r.created_at) };
      if (r.message_id != null) d.messageId = r.message_id;
      if (r.last_error != null) d.lastError = r.last_error;
      return d;
    });
  }

  replay(opts: { ids?: number[]; destination?: string }): Promise<number> {
    const ids = opts.ids ? [...opts.ids] : undefined;
    const destination = opts.destination;
    return this.writer.send<number>({ t: 'replay', ...(ids ? { ids } : {}), ...(destination !== undefined ? { destination } : {}), now: Date.now() });
  }

  // ---------------------------------------------------------------- search

  searchMessages(q: MessageQuery): MessageSummary[] {
    this.assertOpen();
    const where: string[] = [];
    const args: unknown[] = [];
    if (q.deviceId !== undefined) (where.push('m.device_id = ?'), args.push(q.deviceId));
    if (q.from !== undefined) (where.push('m.received_at >= ?'), args.push(normalizeIso(q.from)));
    if (q.to !== undefined) (where.push('m.received_at < ?'), args.push(normalizeIso(q.to)));
    if (q.status !== undefined) (where.push('m.status = ?'), args.push(q.status));
    if (q.beforeId !== undefined) (where.push('m.id < ?'), args.push(q.beforeId));
    if (q.patientId !== undefined) (where.push(`m.id IN (SELECT message_id FROM message_keys WHERE kind = 'patient' AND value = ?)`), args.push(q.patientId));
    if (q.specimenId !== undefined) (where.push(`m.id IN (SELECT message_id FROM message_keys WHERE kind = 'specimen' AND value = ?)`), args.push(q.specimenId));
    // `flags IS NOT NULL` lets SQLite walk the partial index messages_flagged (flagged messages are few)
    if (q.flag !== undefined) (where.push(`m.flags IS NOT NULL AND EXISTS (SELECT 1 FROM json_each(m.flags) WHERE value = ?)`), args.push(q.flag));
    const limit = Math.min(Math.max(1, Math.floor(q.limit ?? 50)), 1000);
    args.push(limit);
    const sql = `SELECT ${SUMMARY_COLS} FROM messages m ${where.length ? `WHERE ${where.join(' AND ')}` : ''} ORDER BY m.id DESC LIMIT ?`;
    return (this.db.prepare(sql).all(...args) as MessageRow[]).map(summary);
  }

  getMessage(id: number): MessageDetail | undefined {
    this.assertOpen();
    const r = this.st.getMessage.get(id) as (MessageRow & { raw: Buffer; meta: string | null }) | undefined;
    if (!r) return undefined;
    const deliveries = (this.st.deliveriesOf.all(id) as OutboxRow[]).map((d) => {
      const x: MessageDetail['deliveries'][number] = { destination: d.destination, key: d.key, state: d.state, attempts: d.attempts };
      if (d.last_error != null) x.lastError = d.last_error;
      if (d.delivered_at != null) x.deliveredAt = iso(d.delivered_at);
      return x;
    });
    const detail: MessageDetail = { ...summary(r), raw: r.raw, observations: this.observationsOf(id), deliveries };
    const meta = parseJson(r.meta);
    if (meta !== undefined) detail.meta = meta;
    return detail;
  }

  listQuarantine(limit = 50, beforeId?: number): QuarantineRow[] {
    this.assertOpen();
    const args: unknown[] = [];
    let where = '';
    if (beforeId !== undefined) (where = 'WHERE id < ?'), args.push(beforeId);
    args.push(Math.min(Math.max(1, Math.floor(limit)), 1000));
    const rows = this.db
      .prepare(`SELECT id, device_id, driver, reason, error_code, received_at, bytes FROM quarantine ${where} ORDER BY id DESC LIMIT ?`)
      .all(...args) as QuarantineDbRow[];
    return rows.map(quarantineRow);
  }

  getQuarantine(id: number): (QuarantineRow & { raw: Buffer; meta?: Record<string, unknown> }) | undefined {
    this.assertOpen();
    const r = this.st.getQuarantine.get(id) as (QuarantineDbRow & { raw: Buffer; meta: string | null }) | undefined;
    if (!r) return undefined;
    const out: QuarantineRow & { raw: Buffer; meta?: Record<string, unknown> } = { ...quarantineRow(r), raw: r.raw };
    const meta = parseJson(r.meta);
    if (meta !== undefined) out.meta = meta;
    return out;
  }
}

interface QuarantineDbRow {
  id: number;
  device_id: string;
  driver: string;
  reason: string;
  error_code: string;
  received_at: string;
  bytes: number;
}

function quarantineRow(r: QuarantineDbRow): QuarantineRow {
  return { id: r.id, deviceId: r.device_id, driver: r.driver, reason: r.reason, errorCode: r.error_code, receivedAt: r.received_at, bytes: r.bytes };
}

function expandObservations(
  drafts: ObservationDraft[],
  m: { messageId: number; uid: string; deviceId: string; driver: string; receivedAt: string; sourceMessageId?: string; processingId?: string },
): Observation[] {
  return drafts.map((d, i) => {
    // Object.assign, not `{ ...d, id, ... }`: V8 takes a slow path for a spread followed by more
    // properties (measured ~9 µs per observation, ~25x slower), and this runs for every result ingested.
    const o = Object.assign({}, d) as Observation;
    o.id = `${m.uid}-${i + 1}`;
    o.messageId = m.messageId;
    o.messageUid = m.uid;
    o.seq = i + 1;
    o.deviceId = m.deviceId;
    o.driver = m.driver;
    o.receivedAt = m.receivedAt;
    if (m.sourceMessageId !== undefined) o.sourceMessageId = m.sourceMessageId;
    if (m.processingId !== undefined) o.processingId = m.processingId;
    return o;
  });
}

/** A hold in ms for the writer (InboundMessage.commitDelayMs, StoreOptions.deferredHoldMs): numbers clamped to 0-100; non-numbers and NaN 0. */
function commitDelay(ms: number | undefined): number {
  return typeof ms === 'number' && Number.isFinite(ms) && ms > 0 ? Math.min(ms, 100) : 0;
}
