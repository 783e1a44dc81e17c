import type { Database } from 'better-sqlite3';
import { componentLogger } from '../log/logger';
import type { UndeliveredReason, UndeliveredSink } from './flow-tracker';

/** Message flag of a committed result that reached no destination (search: GET /api/v1/messages?flag=no-destination). */
export const NO_DESTINATION_FLAG = 'no-destination';

/**
 * The FlowTracker's sink for finished messages that no destination node took (issue 9 §2): on its
 * own connection to gateway.db (WAL; like the order cache), it checks the message really has results
 * (observation_count > 0) and no outbox row for any destination, then adds the flag
 * `no-destination` to `messages.flags` (once) and logs a warning without PHI (ids only).
 * A message with no observations, or one that an earlier emission queued, is not undelivered
 * (returns false). Throws when the database cannot be read (the tracker then still counts it).
 */
export function undeliveredSink(db: Database): UndeliveredSink {
  const log = componentLogger('flow-tracker');
  const check = db.prepare<[number], { observation_count: number; has_outbox: number }>(
    `SELECT observation_count, EXISTS (SELECT 1 FROM outbox o WHERE o.message_id = m.id) AS has_outbox FROM messages m WHERE m.id = ?`,
  );
  // the flags column is a JSON array or NULL (migration 2); the flag is added once
  const flag = db.prepare<[string, number, string]>(
    `UPDATE messages SET flags = json_insert(COALESCE(flags, '[]'), '$[#]', ?)
      WHERE id = ? AND (flags IS NULL OR NOT EXISTS (SELECT 1 FROM json_each(messages.flags) WHERE value = ?))`,
  );
  return (messageId: number, deviceId: string, reason: UndeliveredReason): boolean => {
    const row = check.get(messageId);
    if (!row || row.observation_count === 0 || row.has_outbox) return false;
    try {
      flag.run(NO_DESTINATION_FLAG, messageId, NO_DESTINATION_FLAG);
    } catch (e) {
      log.error({ messageId, deviceId, err: String(e) }, 'could not flag an undelivered message');
    }
    log.warn({ messageId, deviceId, reason }, 'committed result reached no destination (check the flow: a destination node missing, unwired or failed); flagged no-destination');
    return true;
  };
}
