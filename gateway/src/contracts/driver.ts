import type { Observation, ObservationDraft } from './observation';

/** What a protocol driver hands to the sink for one complete device message. */
export interface InboundMessage {
  deviceId: string;
  driver: string; // 'hl7-mllp' | 'astm' | 'dicom' | 'mqtt-monitor'
  raw: Buffer; // exact bytes as received (after transport framing removed)
  receivedAt?: Date;
  /** Device-side message id (MSH-10, ASTM H.3). */
  sourceMessageId?: string;
  /** Sender identity for de-duplication (MSH-3^MSH-4, remote address ...). */
  sender?: string;
  /**
   * If set, a second message with the same (deviceId, dedupeKey) is not stored again. Drivers build it
   * from the sender, the control id *and* a hash of the content (docs/result-fidelity.md "Duplicates"):
   * a re-send after a lost ACK is a duplicate, a reused control id with other content is not.
   */
  dedupeKey?: string;
  /**
   * Sender + control id (MSH-3^MSH-4|MSH-10, ASTM H.5|H.3), without the content hash. A new message
   * whose controlKey is already stored for the device is stored and delivered, and flagged
   * `control-id-reused` (CommitResult.controlIdReused, the message's flags, a metric).
   */
  controlKey?: string;
  /** MSH-11 / ASTM H.12 processing id (P, T, D): passed through to the outputs. */
  processingId?: string;
  /** Message-level data-quality flags (e.g. 'charset-fallback'), kept with the message. No PHI. */
  flags?: string[];
  messageType?: string; // 'ORU^R01', 'ASTM', ...
  drafts: ObservationDraft[];
  /** Driver-specific metadata kept as JSON (remote address, TLS peer, version ...). No PHI. */
  meta?: Record<string, unknown>;
  /**
   * Group commit delay in ms (0-100; like PostgreSQL's commit_delay): the message may wait this long before
   * its durable commit starts, so that messages arriving meanwhile on other connections share its
   * transaction and fsync. The acknowledgement still follows the commit: it comes up to this much later.
   * For drivers with many senders each with one message in flight (MQTT devices); stop-and-wait senders
   * (one MLLP or ASTM link) leave it unset, since nothing else arrives while they wait. Default 0.
   */
  commitDelayMs?: number;
}

export interface CommitResult {
  messageId: number;
  messageUid: string;
  /** true when (deviceId, dedupeKey) was already stored; nothing new was written. */
  duplicate: boolean;
  /** A new message whose sender + control id had been used before for other content (stored and delivered). */
  controlIdReused?: boolean;
  observations: Observation[];
}

export interface QuarantineInput {
  deviceId: string;
  driver: string;
  raw: Buffer;
  reason: string; // human readable, no PHI
  errorCode: string; // GW_ERR_*
  meta?: Record<string, unknown>;
}

/** Ack-after-commit sink (architecture §3 step 4). Rejects with StoreError when it cannot commit. */
export interface ObservationSink {
  submit(msg: InboundMessage): Promise<CommitResult>;
  quarantine(q: QuarantineInput): Promise<number>;
}

export type DriverState = 'starting' | 'listening' | 'connected' | 'disconnected' | 'error' | 'stopped';

export interface DriverStatus {
  deviceId: string;
  driver: string;
  state: DriverState;
  detail?: string; // no PHI
  lastMessageAt?: string;
  lastErrorAt?: string;
  lastError?: string;
  connections?: number;
  /** Messages stored although their control id had been used before for other content (this run). */
  controlIdReused?: number;
  /** Results stored with data-quality flags (this run). */
  flaggedResults?: number;
}
