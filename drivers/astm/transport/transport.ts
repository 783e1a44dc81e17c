/**
 * Common byte-transport shape for the ASTM driver (architecture §3 step 1). The same link/protocol
 * code runs over each implementation: serial port, TCP server (one connection per analyzer socket),
 * TCP client (the gateway dials the analyzer).
 *
 * Not in gateway/src/contracts yet (architecture §5 lists Transport there): proposed for promotion.
 */
import type { EventEmitter } from 'node:events';

export type TransportState = 'starting' | 'listening' | 'connected' | 'disconnected' | 'error' | 'stopped';

export interface TransportStatus {
  state: TransportState;
  /** No PHI: port path, bound address, last error text. */
  detail?: string;
  connections: number;
  lastError?: string;
  lastErrorAt?: string;
}

/**
 * One byte stream to one peer. Events: 'data' (Buffer), 'close' (), 'error' (Error).
 * A reopened serial port or a re-dialled socket is a *new* connection (fresh link state).
 */
export interface TransportConnection extends EventEmitter {
  readonly id: string;
  /** Remote address or port path; no PHI. */
  readonly remote: string;
  write(buf: Buffer): void;
  close(): void;
}

/**
 * Events: 'connection' (TransportConnection), 'state' (TransportStatus).
 * `start` never throws for an absent device/peer: it keeps retrying with backoff until `close`.
 * It rejects only for configuration errors (e.g. a TCP port that cannot be bound).
 */
export interface Transport extends EventEmitter {
  start(signal?: AbortSignal): Promise<void>;
  close(): Promise<void>;
  status(): TransportStatus;
}

/** Exponential backoff with a cap (reopen/reconnect). */
export function backoffMs(attempt: number, baseMs: number, maxMs: number): number {
  return Math.min(maxMs, baseMs * 2 ** Math.min(attempt, 20));
}
