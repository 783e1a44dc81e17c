/**
 * Shared helpers of the byte transports. The Transport contract itself lives in
 * gateway/src/contracts/transport.ts (architecture §5); re-exported here for the implementations.
 */
export type { Transport, TransportConnection, TransportState, TransportStatus } from '../../../gateway/src/contracts/transport';

/** Exponential backoff with a cap (reopen/reconnect). */
export function backoffMs(attempt: number, baseMs: number, maxMs: number): number {
  return Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 20));
}
