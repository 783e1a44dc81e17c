/**
 * Link-layer options (ASTM E1381 / LIS01). Defaults follow the standard (protocols.md §1.2–1.3);
 * the lenient switches exist for vendor quirks (protocols.md §1.4) and are set by device profiles,
 * never by code that tests the vendor.
 */
export interface LinkOptions {
  /** Contention rule (protocols.md §1.3.5): the instrument wins. The gateway is 'computer'. Default 'computer'. */
  role: 'computer' | 'instrument';
  /**
   * @deprecated Accepted in profiles for compatibility and ignored when receiving: an intact frame
   * is never NAKed for its layout, so several CR-terminated records in one frame (AQUALink, Maglumi,
   * Mindray BS-240) are split on CR under every profile (LIS01 §1.2 asks senders for one record per
   * frame; protocols.md §1.4). We always send one record per frame.
   */
  multipleRecordsPerFrame: boolean;
  /**
   * Declares that the device sends a whole session in one frame larger than 240 bytes (Mindray
   * BS-240). Documentary: any frame up to `maxFrameBytes` (LIS01-A2: 64,000) is accepted under every
   * profile; raise `maxFrameBytes` for a device that sends more.
   */
  oversizeSingleFrame: boolean;
  /**
   * First FN of a transfer phase: 'one' (LIS01 §1.2: the first frame is '1'), 'zero-or-one'
   * (devices that start at 0), 'any' (any first FN, and a restart at the start of every message).
   */
  frameNumberStart: 'one' | 'zero-or-one' | 'any';
  /** Lenient: trailer may end at CR without LF. Default false. */
  missingLfTolerated: boolean;
  /** Lenient: CRLF record terminators inside text (LF after CR is removed instead of NAKed). Default false. */
  crlfRecordTerminator: boolean;
  /** Lenient (Snibe Maglumi): no checksum and no trailer; FN optional. Default false. */
  noChecksum: boolean;
  /** Lenient (some TCP devices): no ENQ/STX framing at all; records separated by CR, message ends with L. */
  rawRecords: boolean;
  /** Largest frame accepted, bytes (LIS01-A2: 64,000). */
  maxFrameBytes: number;
  /** Largest text per frame we send (E1381: 240). */
  maxSendTextBytes: number;
  /** Largest reassembled message (H..L), bytes; beyond it the session is discarded. Default 16 MiB. */
  maxMessageBytes: number;
  /** Sender: wait for ACK/NAK/EOT after a frame (E1381 / LIS01 §1.3.2: 15 s). */
  replyTimeoutMs: number;
  /** Sender: wait for a reply to ENQ (LIS01 §1.3.1: 15 s, then EOT). */
  establishTimeoutMs: number;
  /** Receiver: wait for the next frame or EOT after each reply (LIS01 §1.3.4: 30 s). */
  frameReceiveTimeoutMs: number;
  /** Sender: after a busy NAK to ENQ wait this long before the next ENQ (LIS01 §1.3.1: ≥10 s). */
  busyRetryMs: number;
  /** Sender: give up after this many ENQ attempts answered with NAK (cobas e411: 6). */
  maxEnqAttempts: number;
  /** Sender: abort (EOT) when a frame was NAKed this many times (LIS01 §1.3.2: 6). */
  maxFrameRetries: number;
  /** Contention: the computer waits ≥20 s before bidding again; the instrument re-bids after ≥1 s (LIS01 §1.3.5). */
  contentionBackoffMs: number;
  /** Receiver interrupt honoured: no ENQ for ≥15 s or until the receiver sent its own message (LIS1-A §8.3.5). */
  interruptHoldoffMs: number;
  /** After a receiver interrupt the whole message is re-sent later, at most this many times. */
  maxInterruptResends: number;
}

export const DEFAULT_LINK_OPTIONS: LinkOptions = {
  role: 'computer',
  multipleRecordsPerFrame: false,
  oversizeSingleFrame: false,
  frameNumberStart: 'one',
  missingLfTolerated: false,
  crlfRecordTerminator: false,
  noChecksum: false,
  rawRecords: false,
  maxFrameBytes: 64_000,
  maxSendTextBytes: 240,
  maxMessageBytes: 16 * 1024 * 1024,
  replyTimeoutMs: 15_000,
  establishTimeoutMs: 15_000,
  frameReceiveTimeoutMs: 30_000,
  busyRetryMs: 10_000,
  maxEnqAttempts: 6,
  maxFrameRetries: 6,
  contentionBackoffMs: 20_000,
  interruptHoldoffMs: 15_000,
  maxInterruptResends: 3,
};

export function linkOptions(partial: Partial<LinkOptions> = {}): LinkOptions {
  const o = { ...DEFAULT_LINK_OPTIONS, ...stripUndefined(partial) };
  if (partial.role === 'instrument' && partial.contentionBackoffMs === undefined) o.contentionBackoffMs = 1_000;
  return o;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  const r: Partial<T> = {};
  for (const [k, v] of Object.entries(o)) if (v !== undefined) (r as Record<string, unknown>)[k] = v;
  return r;
}
