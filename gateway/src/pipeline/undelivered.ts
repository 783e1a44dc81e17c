import type { Database } from 'better-sqlite3';
import type { GatewayStoreApi } from '../contracts/store';
import { componentLogger } from '../log/logger';
import type { UndeliveredReason, UndeliveredSink } from './flow-tracker';

/** Message flag of a committed result that reached no destination (search: GET /api/v1/messages?flag=no-destination). */
export const NO_DESTINATION_FLAG = 'no-destination';

/**
 * The FlowTracker's sink for finished messages that no destination node took (issue 9 §2): reading on
 * its own connection to gateway.db (WAL; like the order cache), it checks the message really has results
 * (observation_count > 0) and no outbox row for any destination, then has the store's writer add
 * the flag `no-destination` to `messages.flags` (once) and logs a warning without PHI (ids only).
 * A message with no observations, or one that an earlier emission queued, is not undelivered
 * (returns false). Throws when the database cannot be read (the tracker then still counts it).
 */
export function undeliveredSink(db: Database, store: Pick<GatewayStoreApi, 'addMessageFlag'>): UndeliveredSink {
  const log = componentLogger('flow-tracker');
  const check = db.prepare<[number], { observation_count: number; has_outbox: number }>(
    `SELECT observation_count, EXISTS (SELECT 1 FROM outbox o WHERE o.message_id = m.id) AS has_outbox FROM messages m WHERE m.id = ?`,
  );
  return (messageId: number, deviceId: string, reason: UndeliveredReason): false | Promise<unknown> => {
    const row = check.get(messageId);
    if (!row || row.observation_count === 0 || row.has_outbox) return false;
    // written by the store's writer: a second writing connection here made the writer's batches fail with
    // SQLITE_BUSY (devices got AE) and cost an fsync on the event loop per message
    const flagged = store.addMessageFlag([messageId], NO_DESTINATION_FLAG).catch((e: unknown) => log.error({ messageId, deviceId, err: String(e) }, 'could not flag an undelivered message'));
    log.warn({ messageId, deviceId, reason }, 'committed result reached no destination (check the flow: a destination node missing, unwired or failed); flagged no-destination');
    return flagged; // the tracker counts it and waits for the write in drain()
  };
}
