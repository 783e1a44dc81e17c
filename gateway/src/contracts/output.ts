import type { Observation } from './observation';

export interface OutboxEntry {
  id: number;
  destination: string;
  key: string; // idempotency key, unique per destination
  messageId?: number;
  payload: Buffer; // exact bytes to deliver (built once at append time so re-delivery is identical)
  contentType?: string;
  attempts: number; // attempts made before this lease
  createdAt: number; // epoch ms
}

export type DeliveryOutcome =
  | { id: number; outcome: 'delivered'; detail?: string }
  /** Failed, try again after the policy's backoff — or, when the destination said when (HTTP 429/503
   * Retry-After, RFC 9110 10.2.3), not before `retryAfterMs` (the later of the two). */
  | { id: number; outcome: 'retry'; error: string; retryAfterMs?: number }
  | { id: number; outcome: 'dead'; error: string }
  /** Not attempted: the destination could not be reached (connect refused, connection lost before
   * sending). The entry's attempts are not used up; the worker releases it and backs the destination off. */
  | { id: number; outcome: 'unavailable'; error: string };

/** A destination kind (hl7-mllp, fhir-http, ...). Conventions §4: create() validates; I/O in connect/write. */
export interface Output {
  readonly destination: string;
  /** Build the exact bytes for a group of observations from one inbound message. Pure, deterministic. */
  prepare(observations: Observation[], key: string): { payload: Buffer; contentType?: string };
  connect(signal: AbortSignal): Promise<void>;
  /** Deliver the batch (in order). Return one outcome per entry. Must not throw for per-entry failures. */
  write(batch: OutboxEntry[], signal: AbortSignal): Promise<DeliveryOutcome[]>;
  close(): Promise<void>;
}
