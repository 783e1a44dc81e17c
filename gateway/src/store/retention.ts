import type { Database } from 'better-sqlite3';
import type { RetentionPolicy, RetentionReport } from '../contracts/store';
import type { WriteQueue } from './write-queue';

const DAY_MS = 24 * 3600_000;
/** Rows deleted per queued op: keeps each group transaction (and the WAL) small. */
export const RETENTION_CHUNK = 500;

/** A message can be pruned when its flow finished and no outbox row for it is still pending. */
const PRUNABLE = `status != 'committed' AND NOT EXISTS (SELECT 1 FROM outbox o WHERE o.message_id = m.id AND o.state = 'pending')`;

export function usedBytes(db: Database): number {
  const pageSize = Number(db.pragma('page_size', { simple: true }));
  const pages = Number(db.pragma('page_count', { simple: true }));
  const free = Number(db.pragma('freelist_count', { simple: true }));
  return (pages - free) * pageSize;
}

/**
 * Retention (architecture §3 step 7). Every delete goes through the write queue in chunks; then the
 * free pages are handed back to the file system (incremental_vacuum) and the WAL is truncated, so
 * the file really shrinks. Age limits <= 0 are off (as is maxBytes = 0). Never deletes a message whose
 * flow has not finished, a message with pending outbox rows, or a pending outbox row.
 */
export async function applyRetention(
  db: Database,
  queue: WriteQueue,
  policy: RetentionPolicy,
  now: number,
  fileBytes: () => number,
): Promise<RetentionReport> {
  const report: RetentionReport = { messagesDeleted: 0, outboxDeleted: 0, quarantineDeleted: 0, pagesFreed: 0, fileBytesBefore: fileBytes(), fileBytesAfter: 0 };

  const delAgedMessages = db.prepare(
    `DELETE FROM messages WHERE id IN (SELECT id FROM messages m WHERE received_at < ? AND ${PRUNABLE} ORDER BY id LIMIT ${RETENTION_CHUNK})`,
  );
  const delOldestMessages = db.prepare(`DELETE FROM messages WHERE id IN (SELECT id FROM messages m WHERE ${PRUNABLE} ORDER BY id LIMIT ?)`);
  // Settled rows of a message still being processed by the flow are kept: they are what drops its re-emitted duplicates.
  const delSettled = db.prepare(
    `DELETE FROM outbox WHERE id IN (
       SELECT o.id FROM outbox o
        WHERE o.state IN ('delivered', 'dead') AND coalesce(o.delivered_at, o.dead_at, o.created_at) < ?
          AND (o.message_id IS NULL OR NOT EXISTS (SELECT 1 FROM messages m WHERE m.id = o.message_id AND m.status = 'committed'))
        LIMIT ${RETENTION_CHUNK})`,
  );
  const delQuarantine = db.prepare(`DELETE FROM quarantine WHERE id IN (SELECT id FROM quarantine WHERE received_at < ? ORDER BY id LIMIT ${RETENTION_CHUNK})`);

  async function chunked(run: () => number): Promise<number> {
    let total = 0;
    for (;;) {
      const n = await queue.enqueue(run);
      total += n;
      if (n < RETENTION_CHUNK) return total;
    }
  }

  if (policy.maxAgeDays > 0) {
    const cutoff = new Date(now - policy.maxAgeDays * DAY_MS).toISOString();
    report.messagesDeleted += await chunked(() => delAgedMessages.run(cutoff).changes);
  }
  if (policy.settledMaxAgeDays > 0) {
    const cutoff = now - policy.settledMaxAgeDays * DAY_MS;
    report.outboxDeleted += await chunked(() => delSettled.run(cutoff).changes);
  }
  if (policy.quarantineMaxAgeDays > 0) {
    const cutoff = new Date(now - policy.quarantineMaxAgeDays * DAY_MS).toISOString();
    report.quarantineDeleted += await chunked(() => delQuarantine.run(cutoff).changes);
  }
  if (policy.maxBytes > 0) {
    // Measure live pages (the file only shrinks after the vacuum below), delete oldest finished messages until under.
    while (usedBytes(db) > policy.maxBytes) {
      const avg = db.prepare(`SELECT avg(bytes) AS a, count(*) AS n FROM messages`).get() as { a: number | null; n: number };
      const excess = usedBytes(db) - policy.maxBytes;
      const chunk = Math.max(50, Math.min(RETENTION_CHUNK, Math.ceil(excess / Math.max(256, (avg.a ?? 0) + 256))));
      const n = await queue.enqueue(() => delOldestMessages.run(chunk).changes);
      report.messagesDeleted += n;
      if (n === 0) break; // only unfinished / pending data left: never deleted
    }
  }

  const pagesBefore = Number(db.pragma('page_count', { simple: true }));
  await queue.enqueue(() => db.exec('PRAGMA incremental_vacuum'));
  report.pagesFreed = Math.max(0, pagesBefore - Number(db.pragma('page_count', { simple: true })));
  // Outside any transaction (the queue is between flushes here): copy the WAL back and truncate it.
  if (!db.inTransaction) db.pragma('wal_checkpoint(TRUNCATE)');
  report.fileBytesAfter = fileBytes();
  return report;
}
