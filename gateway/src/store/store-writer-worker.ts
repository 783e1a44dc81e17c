/**
 * The store's writer (runs in a worker thread, see README "Writer worker"). Owns the only write
 * connection: group commit (write-queue.ts), COMMIT + fsync, observation compression, retention
 * deletes, incremental_vacuum and WAL checkpoints. The main thread posts commands (writer-protocol.ts)
 * and gets one reply per command after the transaction holding it committed.
 */
import { parentPort, workerData } from 'node:worker_threads';
import Database from 'better-sqlite3';
import type { Database as Db, Statement } from 'better-sqlite3';
import { StoreError, StoreFullError } from '../contracts/errors';
import { encodeObservations } from './codec';
import { configureConnection, databaseFileBytes } from './migrations';
import { backoffMs, isExhausted } from './outbox';
import { applyRetention } from './retention';
import { toStoreError, WriteQueue } from './write-queue';
import type { OutboxState } from '../contracts/store';
import { FLAG_CONTROL_ID_REUSED, type Reply, type SerializedError, type SubmitArgs, type SubmitReply, type WorkerMessage, type WriteCommand, type WriterInit } from './writer-protocol';

const port = parentPort;
if (!port) throw new Error('store-writer-worker must run in a worker thread');
const init = workerData as WriterInit;

function serialize(e: unknown): SerializedError {
  const err = toStoreError(e);
  const cause = (err as { cause?: unknown }).cause;
  const sqliteCode = typeof cause === 'object' && cause && 'code' in cause ? String((cause as { code: unknown }).code) : undefined;
  return { full: err instanceof StoreFullError, message: err.message, ...(sqliteCode ? { sqliteCode } : {}) };
}

function post(m: WorkerMessage): void {
  port!.postMessage(m);
}

const buf = (u: Uint8Array): Buffer => (Buffer.isBuffer(u) ? u : Buffer.from(u.buffer, u.byteOffset, u.byteLength));

let db: Db;
try {
  db = new Database(init.file);
  configureConnection(db, { busyTimeoutMs: init.busyTimeoutMs });
  db.pragma(`max_page_count = ${init.maxPageCount}`);
} catch (e) {
  post({ t: 'fatal', e: serialize(e) });
  process.exit(1);
}

// ---------------------------------------------------------------- replies: one post per flush

let replies: Reply[] = [];
let batches: number[] = [];
let replyScheduled = false;

function flushReplies(): void {
  replyScheduled = false;
  if (!replies.length && !batches.length) return;
  const { queued: _q, ...stats } = queue.stats();
  const m: WorkerMessage = { t: 'done', replies, batches, stats };
  replies = [];
  batches = [];
  post(m);
}

function reply(r: Reply): void {
  replies.push(r);
  if (!replyScheduled) {
    replyScheduled = true;
    // runs after the other reactions of the same flush (they were queued first)
    queueMicrotask(() => queueMicrotask(flushReplies));
  }
}

function answer(id: number, p: Promise<unknown>): void {
  p.then(
    (v) => reply({ id, ok: true, v }),
    (e: unknown) => reply({ id, ok: false, e: serialize(e) }),
  );
}

const queue = new WriteQueue(db, init.maxBatch, {
  onBatch: (n) => batches.push(n),
  onBatchError: (err, n) => post({ t: 'log', level: 'error', obj: { code: err.code, err: err.message, ops: n }, msg: 'group commit failed; batch rejected' }),
});

// ---------------------------------------------------------------- statements

const st: Record<string, Statement> = {
  findDedupe: db.prepare(`SELECT id, uid FROM messages WHERE device_id = ? AND dedupe_key = ?`),
  findControl: db.prepare(`SELECT 1 FROM messages WHERE device_id = ? AND control_key = ? LIMIT 1`), // index messages_control
  insertMessage: db.prepare(
    `INSERT INTO messages (uid, device_id, driver, message_type, source_message_id, sender, dedupe_key, control_key, flags, processing_id, received_at, bytes, meta, observation_count)
     VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
  ),
  insertBody: db.prepare(`INSERT INTO message_bodies (message_id, raw, observations) VALUES (?, ?, ?)`),
  insertKey: db.prepare(`INSERT OR IGNORE INTO message_keys (message_id, kind, value) VALUES (?, ?, ?)`),
  markFinished: db.prepare(`UPDATE messages SET status = ? WHERE id = ? AND status != ?`),
  // the flags column is a JSON array or NULL (migration 2); a flag is added once
  addFlag: db.prepare(
    `UPDATE messages SET flags = json_insert(COALESCE(flags, '[]'), '$[#]', ?)
      WHERE id = ? AND (flags IS NULL OR NOT EXISTS (SELECT 1 FROM json_each(messages.flags) WHERE value = ?))`,
  ),
  insertQuarantine: db.prepare(`INSERT INTO quarantine (device_id, driver, reason, error_code, received_at, bytes, raw, meta) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`),
  appendOutbox: db.prepare(
    `INSERT INTO outbox (destination, key, message_id, payload, content_type, state, attempts, next_attempt_at, created_at)
     VALUES (?, ?, ?, ?, ?, 'pending', 0, ?, ?) ON CONFLICT (destination, key) DO NOTHING`,
  ),
  outboxForSettle: db.prepare(`SELECT state, attempts, created_at FROM outbox WHERE id = ? AND destination = ?`),
  settleDelivered: db.prepare(`UPDATE outbox SET state = 'delivered', attempts = attempts + 1, delivered_at = ?, last_error = NULL WHERE id = ?`),
  settleRetry: db.prepare(`UPDATE outbox SET attempts = ?, next_attempt_at = ?, last_error = ? WHERE id = ?`),
  settleDead: db.prepare(`UPDATE outbox SET state = 'dead', attempts = ?, dead_at = ?, last_error = ? WHERE id = ?`),
};

/**
 * One inbound message, inside the group transaction. Order matters (README "Duplicates and reused
 * control ids"): (1) same (device, dedupeKey) → duplicate, nothing written; (2) otherwise the message is
 * stored, and if another message of the device already holds its controlKey it is flagged
 * 'control-id-reused'. Earlier ops of the same transaction are visible (same connection).
 */
function submitOp(a: SubmitArgs, observations: Buffer): SubmitReply {
  if (a.dedupeKey != null) {
    const dup = st.findDedupe.get(a.deviceId, a.dedupeKey) as { id: number; uid: string } | undefined;
    if (dup) return { messageId: dup.id, duplicate: true, uid: dup.uid };
  }
  // a driver that already knows (e.g. within one session) may set the flag itself: reply and flags agree either way
  const given = a.flags.includes(FLAG_CONTROL_ID_REUSED);
  const controlIdReused = given || (a.controlKey != null && st.findControl.get(a.deviceId, a.controlKey) !== undefined);
  const flags = controlIdReused && !given ? [...a.flags, FLAG_CONTROL_ID_REUSED] : a.flags;
  const raw = buf(a.raw);
  const info = st.insertMessage.run(
    a.uid,
    a.deviceId,
    a.driver,
    a.messageType,
    a.sourceMessageId,
    a.sender,
    a.dedupeKey,
    a.controlKey,
    flags.length ? JSON.stringify(flags) : null,
    a.processingId,
    a.receivedAt,
    raw.length,
    a.meta,
    a.observationCount,
  );
  const messageId = Number(info.lastInsertRowid);
  st.insertBody.run(messageId, raw, observations);
  for (const p of a.patients) st.insertKey.run(messageId, 'patient', p);
  for (const s of a.specimens) st.insertKey.run(messageId, 'specimen', s);
  return { messageId, duplicate: false, controlIdReused };
}

const fileBytes = (): number => databaseFileBytes(init.file);

let closed = false;
let crashed = false;

function handle(c: WriteCommand): void {
  switch (c.t) {
    case 'submit': {
      // compress on receipt, outside the transaction (this thread is idle while the main thread parses)
      let obs: Buffer;
      try {
        obs = encodeObservations(c.a.draftsJson);
      } catch (e) {
        return reply({ id: c.id, ok: false, e: serialize(e) });
      }
      const a = c.a;
      return answer(c.id, queue.enqueue(() => submitOp(a, obs)));
    }
    case 'quarantine': {
      const q = c.a;
      const raw = buf(q.raw);
      return answer(c.id, queue.enqueue(() => Number(st.insertQuarantine.run(q.deviceId, q.driver, q.reason, q.errorCode, q.receivedAt, raw.length, raw, q.meta).lastInsertRowid)));
    }
    case 'markFinished': {
      const { ids, status } = c;
      return answer(
        c.id,
        // deferred durability (write-queue.ts): a lost mark means the message is re-emitted, the outbox key drops the duplicate
        queue.enqueue(() => {
          for (const id of ids) st.markFinished.run(status, id, status);
        }, { durable: false }),
      );
    }
    case 'addFlag': {
      const { ids, flag } = c;
      // deferred durability, like markFinished: a flag for the operators (e.g. no-destination), not a result
      return answer(
        c.id,
        queue.enqueue(() => {
          for (const id of ids) st.addFlag.run(flag, id, flag);
        }, { durable: false }),
      );
    }
    case 'appendOutbox': {
      const { destination, items, now } = c;
      return answer(
        c.id,
        queue.enqueue(() => {
          let inserted = 0;
          for (const it of items) inserted += st.appendOutbox.run(destination, it.key, it.messageId, buf(it.payload), it.contentType, now, now).changes;
          return { inserted, ignored: items.length - inserted };
        }, { durable: false }), // lost with its markFinished (WAL prefix) → re-emitted and appended again
      );
    }
    case 'settle': {
      const { destination, outcomes, policy, now } = c;
      return answer(
        c.id,
        queue.enqueue(() => {
          const n = { delivered: 0, failed: 0, dead: 0 };
          for (const o of outcomes) {
            if (o.outcome === 'unavailable') continue;
            const row = st.outboxForSettle.get(o.id, destination) as { state: OutboxState; attempts: number; created_at: number } | undefined;
            if (!row || row.state !== 'pending') continue; // unknown, or already settled (a second settle is a no-op)
            if (o.outcome === 'delivered') {
              st.settleDelivered.run(now, o.id);
              n.delivered++;
              continue;
            }
            const attempts = row.attempts + 1;
            n.failed++;
            if (o.outcome === 'dead' || isExhausted(policy, attempts, row.created_at, now)) {
              st.settleDead.run(attempts, now, o.error ?? null, o.id);
              n.dead++;
            } else {
              // a destination's own Retry-After (RFC 9110 10.2.3) is a floor on the policy's backoff
              const wait = Math.max(backoffMs(policy, attempts), o.retryAfterMs !== undefined && o.retryAfterMs > 0 ? o.retryAfterMs : 0);
              st.settleRetry.run(attempts, now + wait, o.error ?? null, o.id);
            }
          }
          return n;
        }, { durable: false }), // a lost outcome → delivered again with the same key (at-least-once), or retried
      );
    }
    case 'replay': {
      const { ids, destination, now } = c;
      return answer(
        c.id,
        queue.enqueue(() => {
          const base = `UPDATE outbox SET state = 'pending', attempts = 0, next_attempt_at = ?, dead_at = NULL WHERE state = 'dead'`;
          const dest = destination !== undefined ? ' AND destination = ?' : '';
          if (ids) {
            const s = db.prepare(`${base}${dest} AND id = ?`);
            let k = 0;
            for (const id of ids) k += (destination !== undefined ? s.run(now, destination, id) : s.run(now, id)).changes;
            return k;
          }
          const s = db.prepare(`${base}${dest}`);
          return (destination !== undefined ? s.run(now, destination) : s.run(now)).changes;
        }),
      );
    }
    case 'retention':
      return answer(c.id, applyRetention(db, queue, c.policy, c.now, fileBytes));
    case 'maxPageCount':
      // between flushes (flushes are synchronous): applies to everything committed from now on
      try {
        db.pragma(`max_page_count = ${c.pages}`);
        return reply({ id: c.id, ok: true, v: Number(db.pragma('max_page_count', { simple: true })) });
      } catch (e) {
        return reply({ id: c.id, ok: false, e: serialize(e) });
      }
    case 'close': {
      if (closed) return reply({ id: c.id, ok: true, v: undefined });
      closed = true;
      queue.closeAndDrain(); // commits everything posted before close (messages arrive in order)
      let warning: string | undefined;
      try {
        if (!db.inTransaction) {
          db.pragma('synchronous = FULL'); // deferred commits become durable with the checkpoint's syncs
          db.pragma('wal_checkpoint(TRUNCATE)');
        }
      } catch (e) {
        warning = String(e);
      }
      db.close();
      if (warning) post({ t: 'log', level: 'warn', obj: { err: warning }, msg: 'checkpoint at close failed' });
      // after the replies of the drained ops (their reactions are already queued)
      return answer(c.id, Promise.resolve());
    }
    case 'crash':
      setImmediate(() => {
        throw new StoreError('simulated writer crash (test)');
      });
      // stop handling anything else: later commands stay unanswered, like in a real crash
      crashed = true;
      return;
  }
}

port.on('message', (m: WriteCommand[]) => {
  for (const c of m) if (!crashed) handle(c);
});
