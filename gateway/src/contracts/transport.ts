/**
 * Byte transports (architecture §3 step 1, §5): serial port, TCP server (one connection per peer
 * socket), TCP client (the gateway dials the device). A driver's link/protocol code runs unchanged
 * over each implementation. Implementations: drivers/astm/transport/ (used by the ASTM driver; the
 * HL7 MLLP driver frames its own sockets).
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
