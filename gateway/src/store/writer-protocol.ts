import type { DeliveryOutcome } from '../contracts/output';
import type { DestinationPolicy, RetentionPolicy } from '../contracts/store';
import type { WriteQueueStats } from './write-queue';

/** Messages between the main thread (writer-client.ts) and the writer worker (store-writer-worker.ts). */

export interface WriterInit {
  file: string;
  maxBatch: number;
  maxPageCount: number;
  busyTimeoutMs: number;
}

export interface SubmitArgs {
  uid: string;
  deviceId: string;
  driver: string;
  messageType: string | null;
  sourceMessageId: string | null;
  sender: string | null;
  dedupeKey: string | null;
  /** sender|control id without the content hash: a new row whose key is already stored for the device is flagged 'control-id-reused' */
  controlKey: string | null;
  /** MSH-11 / ASTM H.12 */
  processingId: string | null;
  /** message-level flags from the driver, without repeats (the worker may add 'control-id-reused') */
  flags: string[];
  receivedAt: string;
  raw: Uint8Array;
  meta: string | null;
  observationCount: number;
  /** draftsToJson(drafts) (codec.ts): compressed in the worker */
  draftsJson: string;
  patients: string[];
  specimens: string[];
}

export type SubmitReply =
  | { messageId: number; duplicate: false; controlIdReused: boolean }
  | { messageId: number; duplicate: true; uid: string };

/** Message flag set by the store when the sender + control id had been stored before for other content. */
export const FLAG_CONTROL_ID_REUSED = 'control-id-reused';

export type WriteCommand =
  | { t: 'submit'; id: number; a: SubmitArgs }
  | { t: 'quarantine'; id: number; a: { deviceId: string; driver: string; reason: string; errorCode: string; receivedAt: string; raw: Uint8Array; meta: string | null } }
  | { t: 'markFinished'; id: number; ids: number[]; status: 'routed' | 'flow-error' }
  | { t: 'addFlag'; id: number; ids: number[]; flag: string }
  | { t: 'appendOutbox'; id: number; destination: string; items: Array<{ key: string; messageId: number | null; payload: Uint8Array; contentType: string | null }>; now: number }
  | { t: 'settle'; id: number; destination: string; outcomes: Array<{ id: number; outcome: DeliveryOutcome['outcome']; error?: string; retryAfterMs?: number }>; policy: DestinationPolicy; now: number }
  | { t: 'replay'; id: number; ids?: number[]; destination?: string; now: number }
  | { t: 'retention'; id: number; policy: RetentionPolicy; now: number }
  | { t: 'maxPageCount'; id: number; pages: number }
  | { t: 'close'; id: number }
  /** test only: throw an uncaught error in the worker (a crash) */
  | { t: 'crash' };

export interface SerializedError {
  full: boolean; // StoreFullError
  message: string;
  sqliteCode?: string;
}

export type Reply = { id: number; ok: true; v: unknown } | { id: number; ok: false; e: SerializedError };

export type WorkerMessage =
  | { t: 'done'; replies: Reply[]; batches: number[]; stats: Omit<WriteQueueStats, 'queued'> }
  | { t: 'log'; level: 'error' | 'warn' | 'info'; obj: Record<string, unknown>; msg: string }
  | { t: 'fatal'; e: SerializedError };
