import type { CommitResult, InboundMessage, QuarantineInput } from './driver';
import type { Observation } from './observation';
import type { DeliveryOutcome, OutboxEntry } from './output';

export interface StoreOptions {
  /** Directory holding gateway.db (+ -wal/-shm). Created if missing. */
  dataDir: string;
  /** Quota: refuse writes (StoreFullError) when the database would exceed this many bytes. 0 = no quota. */
  maxDbBytes?: number;
  /** Group commit: flush the write queue at most this many ops per transaction. Default 512. */
  maxBatch?: number;
  /**
   * Flow bookkeeping (markFinished, appendOutbox) may wait up to this many ms to reach the writer with the
   * next command, so that it shares that command's transaction instead of committing on its own (a
   * transaction costs ~200-440 µs of CPU here whatever it holds: docs/BENCHMARKS.md "Commit path").
   * Nothing waits for these writes but the outbox's delivery, which starts that much later. Default 5; 0 = off.
   */
  deferredHoldMs?: number;
}

export interface RetentionPolicy {
  /** Delete raw messages + observations older than this once they are finished and settled everywhere. */
  maxAgeDays: number;
  /** Keep the database file under this size by deleting the oldest finished messages (0 = off). */
  maxBytes: number;
  /** Delivered and dead outbox rows older than this are deleted. */
  settledMaxAgeDays: number;
  /** Quarantine rows older than this are deleted. */
  quarantineMaxAgeDays: number;
}

export interface RetentionReport {
  messagesDeleted: number;
  outboxDeleted: number;
  quarantineDeleted: number;
  pagesFreed: number;
  fileBytesBefore: number;
  fileBytesAfter: number;
}

export interface DestinationPolicy {
  maxAttempts: number; // dead letter after this many failed attempts (default 10)
  maxAgeMs: number; // ... or when older than this (default 7 days)
  backoffBaseMs: number; // first retry delay (default 1000)
  backoffMaxMs: number; // cap (default 300000)
  jitter: number; // 0..1 fraction of random jitter (default 0.2)
  strictOrder: boolean; // head-of-line: only the oldest pending entry may be in flight (default false)
}

export interface MessageSummary {
  id: number;
  uid: string;
  deviceId: string;
  driver: string;
  messageType?: string;
  sourceMessageId?: string;
  receivedAt: string;
  status: 'committed' | 'routed' | 'flow-error';
  observationCount: number;
  bytes: number;
  /** Message-level flags, absent when none: 'control-id-reused' (set by the store: the sender + control id
   * had been stored before for other content), and the driver's own ('charset-fallback', ...). No PHI. */
  flags?: string[];
  /** MSH-11 / ASTM H.12 processing id (P, T, D) when the device sent one. */
  processingId?: string;
}

export interface MessageDetail extends MessageSummary {
  raw: Buffer;
  meta?: Record<string, unknown>;
  observations: Observation[];
  deliveries: Array<{ destination: string; key: string; state: OutboxState; attempts: number; lastError?: string; deliveredAt?: string }>;
}

export interface MessageQuery {
  deviceId?: string;
  from?: string; // ISO, received_at >=
  to?: string; // ISO, received_at <
  patientId?: string;
  specimenId?: string;
  status?: MessageSummary['status'];
  /** Only messages whose flags contain this one (e.g. 'control-id-reused'). */
  flag?: string;
  limit?: number; // default 50, max 1000
  beforeId?: number; // paging: id < beforeId, newest first
}

export type OutboxState = 'pending' | 'delivered' | 'dead';

export interface DeadLetter {
  id: number;
  destination: string;
  key: string;
  messageId?: number;
  attempts: number;
  lastError?: string;
  createdAt: string;
  deadAt: string;
}

export interface QuarantineRow {
  id: number;
  deviceId: string;
  driver: string;
  reason: string;
  errorCode: string;
  receivedAt: string;
  bytes: number;
}

export interface DestinationStats {
  destination: string;
  pending: number;
  inFlight: number;
  dead: number;
  delivered: number;
  oldestPendingAgeMs: number; // 0 when empty
}

/**
 * The gateway store: one SQLite file (WAL, synchronous=FULL) via better-sqlite3.
 * All writes go through one queue flushed as one transaction per tick (group commit); a promise
 * resolves only after its transaction committed (fsync'd). Reads are synchronous.
 */
export interface GatewayStoreApi {
  /** ack-after-commit sink */
  submit(msg: InboundMessage): Promise<CommitResult>;
  quarantine(q: QuarantineInput): Promise<number>;

  /** The in-memory flow finished with these messages (architecture §3): they are not re-emitted at restart. */
  markFinished(messageIds: number[], status?: 'routed' | 'flow-error'): Promise<void>;
  /** Add a message-level flag (no PHI), once per message; deferred durability like markFinished. */
  addMessageFlag(messageIds: number[], flag: string): Promise<void>;
  /** Committed messages whose flow never finished, oldest first, with their observations (for re-emission). */
  unfinished(deviceId: string, limit?: number): Array<{ messageId: number; messageUid: string; observations: Observation[] }>;

  // --- outbox per destination ---
  setDestinationPolicy(destination: string, policy: Partial<DestinationPolicy>): void;
  /** INSERT OR IGNORE on (destination, key): re-emitted duplicates are dropped. Resolves after commit. */
  appendOutbox(destination: string, items: Array<{ key: string; messageId?: number; payload: Buffer; contentType?: string }>): Promise<{ inserted: number; ignored: number }>;
  /** In-memory lease (single process owns the file): pending, due, not in flight; oldest first. */
  lease(destination: string, limit: number, leaseMs: number): OutboxEntry[];
  /** Give leases back without recording an attempt (destination unreachable). Synchronous, in memory. */
  release(destination: string, ids: number[]): void;
  /** Record outcomes ('unavailable' outcomes are treated like release()); retry -> backoff with jitter; dead after maxAttempts/maxAgeMs. Releases the leases. */
  settle(destination: string, outcomes: DeliveryOutcome[]): Promise<void>;
  /** ms until the next pending entry becomes due (0 if one is due now, null if none pending). */
  nextDueInMs(destination: string): number | null;
  destinationStats(destination?: string): DestinationStats[];
  deadLetters(destination?: string, limit?: number, beforeId?: number): DeadLetter[];
  /** Put dead letters back to pending with attempts reset. ids omitted = all of that destination (or all). */
  replay(opts: { ids?: number[]; destination?: string }): Promise<number>;

  // --- search ---
  searchMessages(q: MessageQuery): MessageSummary[];
  getMessage(id: number): MessageDetail | undefined;
  listQuarantine(limit?: number, beforeId?: number): QuarantineRow[];
  getQuarantine(id: number): (QuarantineRow & { raw: Buffer; meta?: Record<string, unknown> }) | undefined;

  // --- upkeep ---
  applyRetention(policy: RetentionPolicy, now?: number): Promise<RetentionReport>;
  fileBytes(): number;
  /** Wait for the write queue to drain, close the database. Safe twice. */
  close(): Promise<void>;
}
