/**
 * ASTM E1381 / CLSI LIS01 link state machine, both directions on one connection (protocols.md §1.3).
 * Pure and transport-agnostic: bytes in through `onBytes`, bytes out through `handlers.write`,
 * time through an injectable `LinkClock`.
 *
 * Receive side: ENQ → ACK (NAK when busy), frames reassembled into records, records grouped into
 * messages (H … L). **Ack-after-commit**: the reply to the frame that completes a message is written
 * only after `handlers.onMessage(records)` resolved; a rejection is answered with NAK so the
 * instrument retransmits the frame (architecture §3 step 4). Several records in one intact frame are
 * accepted under every profile (split on CR). A NAKed frame that the sender never gets through
 * before the transfer ends (EOT after its retries, timeout, disconnect, new ENQ) goes to
 * `handlers.onDiscard` with the records received before it; those are never committed (LIS01 §1.3.2).
 *
 * Send side: `send(records)` queues one message; the link bids (ENQ) when neutral, transfers
 * frames of ≤240 text bytes, retransmits on NAK, honours receiver interrupt and contention.
 */
import { ACK, CR, ENQ, EOT, ETB, ETX, LF, NAK, STX, encodeFrames, parseFrame, type NakReason } from './frame';
import { realClock, type LinkClock, type LinkTimer } from './link-clock';
import { linkOptions, type LinkOptions } from './link-options';
import { GatewayError } from '../../gateway/src/contracts/errors';
import { sharedMemoryBudget, type MemoryBudget } from '../../gateway/src/pipeline/memory-budget';

/**
 * Longest wait for in-flight budget before a frame is NAKed (busy): below the sender's 15 s reply
 * timer (LIS01 §1.3.4), so the sender, which waits for our reply (stop-and-wait), sends nothing more.
 */
export const BUDGET_WAIT_MS = 10_000;

export type LinkState = 'neutral' | 'receiving' | 'bidding' | 'busy-wait' | 'sending' | 'closed';

export type LinkEvent =
  | { type: 'state'; state: LinkState }
  | { type: 'nak'; reason: NakReason | 'busy' | 'commit-failed' | 'message-too-large'; fn?: number }
  | { type: 'duplicate-frame'; fn: number }
  | { type: 'timeout'; phase: 'receive' | 'establish' | 'reply' }
  | { type: 'discarded'; reason: string; records: number; rejectedFrameBytes?: number }
  | { type: 'stray-bytes'; count: number; byte: number }
  | { type: 'contention' }
  | { type: 'interrupted' }
  | { type: 'send-failed'; reason: string }
  | { type: 'sent'; records: number };

export interface LinkHandlers {
  write(buf: Buffer): void;
  /**
   * One complete message (records without their CR, H … L). The ACK of the frame that completed it is
   * written only after this promise resolves; when it rejects the frame is NAKed (and retried by the sender).
   */
  onMessage(records: Buffer[]): Promise<void>;
  /**
   * Records received but never committed as a message (receive timeout, connection closed, sender
   * restarted, session too large, or the sender gave up on a frame we NAKed). Store-first hook: the
   * driver keeps them in quarantine with `reason` (no PHI in it).
   *
   * `rejectedFrame`: when the transfer ended while a frame we NAKed was still outstanding (the
   * sender never got it through: LIS01 §1.3.2, 6 failed attempts, then EOT), the raw bytes of the
   * latest rejected frame exactly as received, STX … trailer (at most `maxFrameBytes` bytes; an
   * over-size frame is cut there). Undefined otherwise. `records` are those received before it.
   */
  onDiscard?(records: Buffer[], reason: string, rejectedFrame?: Buffer): void;
  onEvent?(e: LinkEvent): void;
}

/** Sending a message failed; `reason` is stable (branch on it, not on the text). */
export class AstmSendError extends GatewayError {
  constructor(
    readonly reason: 'busy' | 'no-reply' | 'nak-limit' | 'interrupted' | 'closed',
    message: string,
  ) {
    super(reason === 'no-reply' ? 'GW_ERR_TIMEOUT' : 'GW_ERR_ASTM_SEND', message);
  }
}

interface SendJob {
  records: Buffer[];
  resolve: () => void;
  reject: (e: Error) => void;
  enqAttempts: number;
  interrupts: number;
}

type Rx = 'idle' | 'frame' | 'trailer' | 'overflow' | 'overflow-trailer';

type RejectReason = NakReason | 'commit-failed';

/** The latest frame of this transfer we NAKed and have not seen accepted since. */
interface RejectedFrame {
  /** Raw bytes as received (copy), STX … trailer; bounded by `maxFrameBytes` (+ trailer). */
  bytes: Buffer;
  /** NAKs sent since the last accepted frame. */
  naks: number;
  /** Reason of the last NAK. */
  reason: RejectReason;
  /** FN of the last rejected frame, when it had a readable one. */
  fn: number | undefined;
  /**
   * Earlier rejected frames of this transfer with another FN: a sender that moved on after its retries
   * instead of ending the transfer (not LIS01 §1.3.2, seen in the field). Bounded: MAX_EARLIER_REJECTED.
   */
  earlier: Buffer[];
}

const MAX_EARLIER_REJECTED = 7;

const REJECT_TEXT: Record<RejectReason, string> = {
  'bad-start': 'bad start byte',
  'bad-checksum': 'bad checksum',
  'restricted-char': 'restricted character',
  'bad-trailer': 'bad trailer',
  'too-long': 'over-size',
  'bad-fn': 'wrong frame number',
  'multiple-records': 'several records', // no longer produced by the link (kept in NakReason for compatibility)
  'commit-failed': 'store commit failed',
};

export class AstmLink {
  readonly opts: LinkOptions;
  private readonly clock: LinkClock;
  private state: LinkState = 'neutral';
  private busy = false;

  // input serialisation
  private inbox: Buffer[] = [];
  private pumping: Promise<void> | undefined;
  private running = false;

  // receive: frame scanner
  private rx: Rx = 'idle';
  private frameBuf: Buffer;
  private frameLen = 0;
  private trailerLen = 0;
  private rxTimer: LinkTimer | undefined;
  // receive: reassembly
  private lastFn: number | undefined;
  private lastWasEnd = true; // last accepted frame ended with ETX (message boundary)
  private pendingText: Buffer[] = []; // text of the record being assembled
  private pendingTextLen = 0;
  private sessionRecords: Buffer[] = []; // records of the message being assembled
  private sessionBytes = 0;
  /** Messages of a frame already committed before a later one in the same frame failed. */
  private partialCommit: { fn: number | undefined; text: string; count: number } | undefined;
  /** LIS01 §1.3.2/§1.3.4: a NAKed frame not yet retransmitted successfully (only the latest, bounded). */
  private rejected: RejectedFrame | undefined;

  // send
  private queue: SendJob[] = [];
  private job: SendJob | undefined;
  private frames: Buffer[] = [];
  private frameIdx = 0;
  private naks = 0;
  private txTimer: LinkTimer | undefined;
  private holdUntil = 0;
  private holdTimer: LinkTimer | undefined;
  private interruptHold = false;

  constructor(
    private readonly handlers: LinkHandlers,
    options: Partial<LinkOptions> = {},
    clock: LinkClock = realClock,
    /** In-flight bytes (issue 10 §7): a message's records are reserved here until committed or discarded. */
    private readonly budget: MemoryBudget = sharedMemoryBudget(),
  ) {
    this.opts = linkOptions(options);
    this.clock = clock;
    this.frameBuf = Buffer.alloc(0);
  }

  private get closed(): boolean {
    return this.state === 'closed';
  }

  get linkState(): LinkState {
    return this.state;
  }

  /** Store unavailable: answer ENQ with NAK (LIS01 §1.3.1 "NAK: busy"). */
  setBusy(busy: boolean): void {
    this.busy = busy;
  }

  /** Feed received bytes (any chunking). Processing is serialised; see `drain()`. */
  onBytes(buf: Buffer): void {
    if (this.state === 'closed' || buf.length === 0) return;
    this.inbox.push(buf);
    if (!this.running) {
      this.running = true;
      this.pumping = this.pump();
    }
  }

  /** Resolves when every byte fed so far has been processed (including pending commits). */
  async drain(): Promise<void> {
    while (this.running) await this.pumping;
  }

  /** Queue one message (records without CR) for sending to the peer. Resolves when the peer ACKed every frame. */
  send(records: Array<Buffer | string>): Promise<void> {
    if (this.state === 'closed') return Promise.reject(new AstmSendError('closed', 'link closed'));
    const recs = records.map((r) => (typeof r === 'string' ? Buffer.from(r, 'latin1') : r));
    return new Promise<void>((resolve, reject) => {
      this.queue.push({ records: recs, resolve, reject, enqAttempts: 0, interrupts: 0 });
      this.maybeBid();
    });
  }

  close(): void {
    if (this.state === 'closed') return;
    this.rxTimer?.cancel();
    this.txTimer?.cancel();
    this.holdTimer?.cancel();
    const err = new AstmSendError('closed', 'link closed');
    this.job?.reject(err);
    this.job = undefined;
    for (const j of this.queue.splice(0)) j.reject(err);
    this.inbox = [];
    this.budget.releaseAll(this);
    // a message cut off by a disconnect was never ACKed at its final frame (the sender re-sends it):
    // keep what arrived for audit (onDiscard → quarantine), never as results
    if (this.state === 'receiving') this.discard('connection closed mid-message', 'connection closed');
    this.setState('closed');
  }

  // ---------------------------------------------------------------- internals

  private setState(s: LinkState): void {
    if (this.state === s) return;
    this.state = s;
    this.emit({ type: 'state', state: s });
  }

  private emit(e: LinkEvent): void {
    try {
      this.handlers.onEvent?.(e);
    } catch {
      /* observers never break the link */
    }
  }

  private write(b: Buffer | number): void {
    if (this.state === 'closed') return;
    this.handlers.write(typeof b === 'number' ? Buffer.from([b]) : b);
  }

  private async pump(): Promise<void> {
    try {
      while (this.inbox.length && !this.closed) {
        const buf = this.inbox.shift()!;
        for (let i = 0; i < buf.length; i++) {
          if (this.closed) return;
          const r = this.onByte(buf[i]);
          if (r) await r;
        }
      }
    } finally {
      this.running = false; // set synchronously when no await happened
    }
  }

  /** Returns a promise only when the byte triggered a commit that must complete before further bytes. */
  private onByte(b: number): Promise<void> | void {
    if (this.opts.rawRecords) return this.onRawByte(b);
    switch (this.state) {
      case 'neutral':
      case 'busy-wait':
        return this.onNeutralByte(b);
      case 'receiving':
        return this.onReceiveByte(b);
      case 'bidding':
        return this.onBiddingByte(b);
      case 'sending':
        return this.onSendingByte(b);
      default:
        return;
    }
  }

  // ------------------------------------------------------------ neutral / establishment (receiver)

  private onNeutralByte(b: number): void {
    if (b === ENQ) {
      if (this.busy) {
        this.write(NAK); // LIS01 §1.3.1: NAK = receiver busy
        this.emit({ type: 'nak', reason: 'busy' });
        return;
      }
      if (this.state === 'busy-wait' && this.job) {
        // the peer bids while we wait to re-bid: accept it; our message goes back to the head of the queue
        this.queue.unshift(this.job);
        this.job = undefined;
      }
      this.beginReceive();
      return;
    }
    // LIS01 §1.3: outside a transfer phase only ENQ matters; anything else is ignored
    this.emit({ type: 'stray-bytes', count: 1, byte: b });
  }

  private beginReceive(): void {
    this.txTimer?.cancel(); // a busy-wait re-bid is postponed until this session ends
    this.write(ACK); // LIS01 §1.3.1: ACK the ENQ → transfer phase
    this.setState('receiving');
    this.lastFn = undefined;
    this.lastWasEnd = true;
    this.rx = 'idle';
    this.resetAssembly();
    this.armRxTimer();
  }

  private resetAssembly(): void {
    this.pendingText = [];
    this.pendingTextLen = 0;
    this.sessionRecords = [];
    this.sessionBytes = 0;
    this.partialCommit = undefined;
    this.rejected = undefined;
    this.syncBudget();
  }

  /** Keep reserved exactly the bytes of the message being assembled. */
  private syncBudget(): void {
    const extra = this.budget.heldBy(this) - (this.state === 'closed' ? 0 : this.sessionBytes + this.pendingTextLen);
    if (extra > 0) this.budget.release(this, extra);
  }

  /**
   * A frame's text is reserved from the in-flight budget before it joins the message. A full budget:
   * the reply is held (the sender waits for it and sends nothing more) until bytes are released, at
   * most BUDGET_WAIT_MS; then NAK, and the sender retransmits the frame (LIS01 §1.3.4).
   */
  private acceptFrame(frame: Buffer, fn: number | undefined, text: Buffer, isLast: boolean): Promise<void> | void {
    if (!this.budget.tryReserve(this, text.length)) {
      this.rxTimer?.cancel(); // the sender waits for our reply
      const f = Buffer.from(frame); // frameBuf is reused after this call
      const t = Buffer.from(text);
      const deadline = this.clock.now() + BUDGET_WAIT_MS;
      return new Promise<void>((resolve) => {
        let done = false;
        const timer = this.clock.setTimer(BUDGET_WAIT_MS, () => {
          if (done) return;
          done = true;
          this.budget.cancelWait(this);
          if (this.state === 'receiving') this.nak('busy', fn);
          resolve();
        });
        const retry = (): void => {
          if (done) return;
          if (this.state !== 'receiving') {
            done = true;
            timer.cancel();
            return resolve();
          }
          if (!this.budget.tryReserve(this, t.length)) {
            if (this.clock.now() < deadline) this.budget.wait(this, retry);
            return;
          }
          done = true;
          timer.cancel();
          Promise.resolve(this.acceptFrameReserved(f, fn, t, isLast)).finally(() => this.syncBudget()).then(resolve, resolve);
        };
        this.budget.wait(this, retry);
      });
    }
    const r = this.acceptFrameReserved(frame, fn, text, isLast);
    if (r) return r.finally(() => this.syncBudget());
    this.syncBudget();
  }

  private armRxTimer(): void {
    this.rxTimer?.cancel();
    // LIS01 §1.3.4: after each reply wait up to 30 s for the next frame or EOT
    this.rxTimer = this.clock.setTimer(this.opts.frameReceiveTimeoutMs, () => {
      if (this.state !== 'receiving') return;
      this.emit({ type: 'timeout', phase: 'receive' });
      this.discard('receive timeout', 'receive timeout'); // LIS01 §1.3.4
      this.endReceive();
    });
  }

  /**
   * End of the partial message without a commit. `reason` is used as is when no rejected frame is
   * outstanding; otherwise the reason names the give-up (`end`), the NAK count, FN and NAK reason,
   * and the rejected frame's bytes go with the records (never lost, never committed as a message).
   */
  private discard(reason: string, end?: string): void {
    const recs = [...this.sessionRecords];
    if (this.pendingTextLen) recs.push(Buffer.concat(this.pendingText));
    const rej = this.rejected;
    this.resetAssembly();
    if (rej && end !== undefined) return this.discardWithRejected(recs, end, rej);
    if (recs.length) this.emitDiscard(recs, reason, undefined);
  }

  /** LIS01 §1.3.2: the sender gave up on a frame (6 failed attempts, then EOT) or the transfer ended otherwise. */
  private discardWithRejected(recs: Buffer[], end: string, rej: RejectedFrame): void {
    const frame = rej.fn === undefined ? 'a frame' : `frame ${rej.fn}`;
    const naks = `${rej.naks} NAK${rej.naks === 1 ? '' : 's'}`;
    const more = rej.earlier.length ? ` and ${rej.earlier.length} earlier rejected frame${rej.earlier.length === 1 ? '' : 's'}` : '';
    const reason = `${end} after ${naks} of ${frame} (${REJECT_TEXT[rej.reason]})${more}; ${recs.length} record${recs.length === 1 ? '' : 's'} received before it`;
    this.emitDiscard(recs, reason, rej.earlier.length ? Buffer.concat([...rej.earlier, rej.bytes]) : rej.bytes);
  }

  private emitDiscard(recs: Buffer[], reason: string, rejectedFrame: Buffer | undefined): void {
    this.emit(rejectedFrame ? { type: 'discarded', reason, records: recs.length, rejectedFrameBytes: rejectedFrame.length } : { type: 'discarded', reason, records: recs.length });
    try {
      if (rejectedFrame) this.handlers.onDiscard?.(recs, reason, rejectedFrame);
      else this.handlers.onDiscard?.(recs, reason);
    } catch {
      /* hook errors never break the link */
    }
  }

  /** Keep the latest rejected frame of this transfer (bounded: one frame of ≤ maxFrameBytes + trailer). */
  private noteRejected(frame: Buffer, reason: RejectReason, fn: number | undefined): void {
    const fb = frame.length > 1 ? frame[1] : -1;
    const prev = this.rejected;
    const thisFn = fn ?? (fb >= 0x30 && fb <= 0x37 ? fb - 0x30 : undefined);
    const earlier = prev ? prev.earlier : [];
    // another frame than the one rejected before: keep that one too (bounded), so no refused record is lost
    if (prev && prev.fn !== thisFn && earlier.length < MAX_EARLIER_REJECTED) earlier.push(prev.bytes);
    this.rejected = {
      bytes: Buffer.from(frame), // copy: frameBuf is reused for the next frame
      naks: (prev?.naks ?? 0) + 1,
      reason,
      fn: thisFn,
      earlier,
    };
  }

  private endReceive(): void {
    this.rxTimer?.cancel();
    this.rx = 'idle';
    this.frameLen = 0;
    this.setState('neutral');
    // LIS1-A §8.3.5: the interrupt hold ends once the receiver (the peer) has sent its own message
    if (this.interruptHold) {
      this.interruptHold = false;
      this.holdUntil = Math.min(this.holdUntil, this.clock.now());
    }
    this.maybeBid();
  }

  // ------------------------------------------------------------ receiving

  private ensureFrameBuf(): void {
    const need = this.opts.maxFrameBytes + 8;
    if (this.frameBuf.length < need) this.frameBuf = Buffer.alloc(need);
  }

  private onReceiveByte(b: number): Promise<void> | void {
    switch (this.rx) {
      case 'idle':
        if (b === STX) {
          this.ensureFrameBuf();
          this.frameBuf[0] = STX;
          this.frameLen = 1;
          this.rx = 'frame';
          return;
        }
        if (b === EOT) return this.onReceiveEot(); // LIS01 §1.3.3: termination
        if (b === ENQ) {
          // sender restarted establishment: drop the partial message and accept again
          this.discard('sender restarted with ENQ', 'sender restarted with ENQ');
          this.beginReceive();
          return;
        }
        // stray LF after a tolerated missing-LF trailer, trailer of a no-checksum frame, stray ACK (Maglumi)
        this.emit({ type: 'stray-bytes', count: 1, byte: b });
        return;
      case 'frame':
      case 'overflow':
        if (this.rx === 'frame') {
          if (this.frameLen >= this.opts.maxFrameBytes) this.rx = 'overflow';
          else this.frameBuf[this.frameLen++] = b;
        }
        if (b === ETX || b === ETB) {
          if (this.opts.noChecksum && this.rx === 'frame') return this.completeFrame(); // Maglumi: frame ends at ETX
          this.trailerLen = 0;
          this.rx = this.rx === 'overflow' ? 'overflow-trailer' : 'trailer';
        }
        return;
      case 'trailer':
      case 'overflow-trailer': {
        this.trailerLen++;
        if (this.rx === 'trailer') this.frameBuf[this.frameLen++] = b;
        const n = this.trailerLen;
        // E1381: trailer is C1 C2 CR LF; complete early when it cannot be right (never hang on a bad trailer)
        const done = n === 4 || (n === 3 && (b !== CR || this.opts.missingLfTolerated));
        if (!done) return;
        if (this.rx === 'overflow-trailer') {
          this.noteRejected(this.frameBuf.subarray(0, this.frameLen), 'too-long', undefined); // first maxFrameBytes bytes only
          this.rx = 'idle';
          this.frameLen = 0;
          this.nak('too-long'); // LIS01 §1.3.4: over-size frame
          return;
        }
        return this.completeFrame();
      }
    }
  }

  private nak(reason: NakReason | 'busy' | 'commit-failed' | 'message-too-large', fn?: number): void {
    this.write(NAK);
    this.emit({ type: 'nak', reason, fn });
    this.armRxTimer();
  }

  private ack(): void {
    this.write(ACK);
    this.armRxTimer();
  }

  private completeFrame(): Promise<void> | void {
    const frame = this.frameBuf.subarray(0, this.frameLen);
    this.rx = 'idle';
    this.frameLen = 0;
    const p = parseFrame(frame, {
      noChecksum: this.opts.noChecksum,
      missingLfTolerated: this.opts.missingLfTolerated,
      crlfRecordTerminator: this.opts.crlfRecordTerminator,
      maxFrameBytes: this.opts.maxFrameBytes,
    });
    if (!p.ok) {
      this.noteRejected(frame, p.reason, p.fn);
      return this.nak(p.reason, p.fn); // LIS01 §1.3.4: NAK bad frames; FN stays expected
    }
    // FN rules (LIS01 §1.2 / §1.3.4)
    if (p.fn !== undefined) {
      if (this.lastFn !== undefined && p.fn === this.lastFn) {
        // same FN as the last accepted frame: our ACK was lost; ACK again, do not process twice [S]
        this.emit({ type: 'duplicate-frame', fn: p.fn });
        this.rejected = undefined; // the sender got this frame through
        return this.ack();
      }
      const first = this.lastFn === undefined;
      const expected = first ? 1 : (this.lastFn! + 1) & 7;
      let okFn = p.fn === expected;
      if (!okFn && first && this.opts.frameNumberStart === 'zero-or-one' && p.fn === 0) okFn = true;
      if (!okFn && this.opts.frameNumberStart === 'any' && (first || this.lastWasEnd)) okFn = true;
      if (!okFn) {
        this.noteRejected(frame, 'bad-fn', p.fn);
        return this.nak('bad-fn', p.fn);
      }
    }
    // LIS01 §1.2 asks senders for one record per frame, but an intact frame (checksum, FN, trailer,
    // no restricted character) is never NAKed for its layout: several CR-terminated records in one
    // frame are split on CR and empty ones dropped (protocols.md §1.4), under every profile.
    return this.acceptFrame(frame, p.fn, p.text, p.isLast);
  }

  private acceptFrameReserved(frame: Buffer, fn: number | undefined, text: Buffer, isLast: boolean): Promise<void> | void {
    // snapshot so a failed commit leaves the frame un-accepted (the sender retransmits it)
    const snap = {
      pendingText: [...this.pendingText],
      pendingTextLen: this.pendingTextLen,
      sessionRecords: [...this.sessionRecords],
      sessionBytes: this.sessionBytes,
    };
    const messages: Buffer[][] = [];
    const pushRecord = (rec: Buffer): void => {
      if (rec.length === 0) return; // drop empty records (protocols.md §1.4)
      const type = rec[0];
      // a new H while records are pending: the previous message had no L record
      if (type === 0x48 /* H */ && this.sessionRecords.length) messages.push(this.sessionRecords.splice(0));
      this.sessionRecords.push(rec);
      this.sessionBytes += rec.length + 1;
      if (type === 0x4c /* L */) {
        messages.push(this.sessionRecords.splice(0));
        this.sessionBytes = 0;
      }
    };
    // LIS01 §1.2: reassemble by concatenating ETB-frame texts up to the ETX frame; records end at CR
    let start = 0;
    for (let i = 0; i < text.length; i++) {
      if (text[i] !== CR) continue;
      this.pendingText.push(text.subarray(start, i));
      pushRecord(Buffer.concat(this.pendingText));
      this.pendingText = [];
      this.pendingTextLen = 0;
      start = i + 1;
    }
    if (start < text.length) {
      this.pendingText.push(text.subarray(start));
      this.pendingTextLen += text.length - start;
    }
    if (isLast && this.pendingTextLen) {
      // ETX ends the record even without a trailing CR
      pushRecord(Buffer.concat(this.pendingText));
      this.pendingText = [];
      this.pendingTextLen = 0;
    }
    if (this.sessionBytes + this.pendingTextLen > this.opts.maxMessageBytes) {
      this.discard('message too large');
      this.lastFn = fn;
      return this.nak('message-too-large', fn);
    }
    const commit = (): void => {
      this.lastFn = fn;
      this.lastWasEnd = isLast;
      this.partialCommit = undefined;
      this.rejected = undefined; // accepted: an earlier NAKed copy was retransmitted successfully
    };
    if (!messages.length) {
      commit();
      return this.ack();
    }
    // the frame bytes are kept only if the commit fails (frameBuf is reused after this call)
    return this.commitMessages(messages, fn, text, snap, commit, () => this.noteRejected(frame, 'commit-failed', fn));
  }

  private async commitMessages(
    messages: Buffer[][],
    fn: number | undefined,
    text: Buffer,
    snap: { pendingText: Buffer[]; pendingTextLen: number; sessionRecords: Buffer[]; sessionBytes: number },
    accept: () => void,
    rejectedByStore: () => void,
  ): Promise<void> {
    this.rxTimer?.cancel(); // the sender waits for our reply; no frame can legally arrive meanwhile
    const key = text.toString('latin1');
    let skip = this.partialCommit && this.partialCommit.fn === fn && this.partialCommit.text === key ? this.partialCommit.count : 0;
    let done = 0;
    try {
      for (const m of messages) {
        if (skip > 0) {
          skip--;
          done++;
          continue;
        }
        await this.handlers.onMessage(m); // ack-after-commit (architecture §3 step 4)
        done++;
      }
    } catch {
      // commit failed: NAK, keep state as before this frame; the retransmission is processed again
      this.pendingText = snap.pendingText;
      this.pendingTextLen = snap.pendingTextLen;
      this.sessionRecords = snap.sessionRecords;
      this.sessionBytes = snap.sessionBytes;
      this.partialCommit = done > 0 ? { fn, text: key, count: done } : undefined;
      if (this.state === 'receiving') {
        rejectedByStore(); // if the sender gives up on it, its bytes go to quarantine (LIS01 §1.3.2)
        this.nak('commit-failed', fn);
      }
      return;
    }
    accept();
    if (this.state === 'receiving') this.ack();
  }

  private async onReceiveEot(): Promise<void> {
    this.rxTimer?.cancel();
    if (this.rejected) {
      // LIS01 §1.3.2: the sender gave up on a frame we NAKed (6 failed attempts, then EOT). The records
      // before it are an incomplete message: quarantine them with the rejected frame, never commit them.
      this.discard('', 'analyzer ended the transfer');
      if (this.state === 'receiving') this.endReceive();
      return;
    }
    const recs = [...this.sessionRecords];
    if (this.pendingTextLen) recs.push(Buffer.concat(this.pendingText));
    this.resetAssembly();
    if (recs.length) {
      // message without L record: the frames were ACKed already; commit what we have (store first)
      try {
        await this.handlers.onMessage(recs);
      } catch {
        this.emit({ type: 'discarded', reason: 'commit failed after EOT', records: recs.length });
        try {
          this.handlers.onDiscard?.(recs, 'commit failed after EOT');
        } catch {
          /* ignore */
        }
      }
    }
    if (this.state === 'receiving') this.endReceive();
  }

  // ------------------------------------------------------------ raw records (no framing)

  private onRawByte(b: number): Promise<void> | void {
    if (b === CR || b === LF) {
      if (!this.pendingTextLen) return;
      const rec = Buffer.concat(this.pendingText);
      this.pendingText = [];
      this.pendingTextLen = 0;
      const type = rec[0];
      const messages: Buffer[][] = [];
      if (type === 0x48 && this.sessionRecords.length) messages.push(this.sessionRecords.splice(0));
      this.sessionRecords.push(rec);
      if (type === 0x4c) messages.push(this.sessionRecords.splice(0));
      if (!messages.length) return;
      return (async () => {
        for (const m of messages) {
          try {
            await this.handlers.onMessage(m); // no link-level ack exists in raw mode
          } catch {
            this.emit({ type: 'discarded', reason: 'commit failed (raw records, no ack possible)', records: m.length });
            this.handlers.onDiscard?.(m, 'commit failed (raw records)');
          }
        }
      })();
    }
    if (b < 0x20 && b !== 0x09) {
      this.emit({ type: 'stray-bytes', count: 1, byte: b });
      return;
    }
    if (this.pendingTextLen >= this.opts.maxFrameBytes) return; // bounded; the record is truncated
    this.pendingText.push(Buffer.from([b]));
    this.pendingTextLen++;
  }

  // ------------------------------------------------------------ sending

  private maybeBid(): void {
    if (this.state !== 'neutral' || this.job || !this.queue.length) return;
    if (this.opts.rawRecords) {
      const job = this.queue.shift()!;
      for (const r of job.records) this.write(Buffer.concat([r, Buffer.from([CR])]));
      job.resolve();
      this.emit({ type: 'sent', records: job.records.length });
      return this.maybeBid();
    }
    const wait = this.holdUntil - this.clock.now();
    if (wait > 0) {
      this.holdTimer?.cancel();
      this.holdTimer = this.clock.setTimer(wait, () => this.maybeBid());
      return;
    }
    this.job = this.queue.shift()!;
    this.bid();
  }

  private bid(): void {
    const job = this.job!;
    job.enqAttempts++;
    this.write(ENQ); // LIS01 §1.3.1: establishment
    this.setState('bidding');
    this.txTimer?.cancel();
    // LIS01 §1.3.1: silence for 15 s → EOT, neutral
    this.txTimer = this.clock.setTimer(this.opts.establishTimeoutMs, () => {
      if (this.state !== 'bidding') return;
      this.emit({ type: 'timeout', phase: 'establish' });
      this.write(EOT);
      this.failJob(new AstmSendError('no-reply', 'no reply to ENQ'));
    });
  }

  private failJob(err: AstmSendError): void {
    this.txTimer?.cancel();
    const job = this.job;
    this.job = undefined;
    this.setState('neutral');
    this.emit({ type: 'send-failed', reason: err.reason });
    job?.reject(err);
    this.maybeBid();
  }

  private onBiddingByte(b: number): void {
    if (b === ACK) {
      this.txTimer?.cancel();
      this.startTransfer();
      return;
    }
    if (b === NAK) {
      // LIS01 §1.3.1: busy; wait ≥10 s and send ENQ again (cobas e411 gives up after 6 tries)
      this.txTimer?.cancel();
      const job = this.job!;
      if (job.enqAttempts >= this.opts.maxEnqAttempts) {
        this.failJob(new AstmSendError('busy', `peer busy after ${job.enqAttempts} ENQ`));
        return;
      }
      this.setState('busy-wait');
      this.txTimer = this.clock.setTimer(this.opts.busyRetryMs, () => {
        if (this.state === 'busy-wait') this.bid();
      });
      return;
    }
    if (b === ENQ) {
      this.emit({ type: 'contention' });
      if (this.opts.role === 'computer') {
        // LIS01 §1.3.5: contention — the instrument wins; the computer ACKs and waits ≥20 s before bidding again
        this.txTimer?.cancel();
        const job = this.job!;
        this.job = undefined;
        job.enqAttempts = 0;
        this.queue.unshift(job);
        this.holdUntil = Math.max(this.holdUntil, this.clock.now() + this.opts.contentionBackoffMs);
        this.beginReceive();
      } else {
        // LIS01 §1.3.5: the instrument waits ≥1 s and re-sends ENQ
        this.txTimer?.cancel();
        this.txTimer = this.clock.setTimer(this.opts.contentionBackoffMs, () => {
          if (this.state === 'bidding') this.bid();
        });
      }
      return;
    }
    this.emit({ type: 'stray-bytes', count: 1, byte: b });
  }

  private startTransfer(): void {
    const job = this.job!;
    this.frames = [];
    let fn = 1; // LIS01 §1.2: the first frame of every transfer phase is '1'
    for (const r of job.records) {
      // one LIS02 record = one LIS01 message: record + CR, ETB-split at 240 text bytes, then ETX
      const enc = encodeFrames(Buffer.concat([r, Buffer.from([CR])]), fn, this.opts.maxSendTextBytes);
      this.frames.push(...enc.frames);
      fn = enc.nextFn;
    }
    this.frameIdx = 0;
    this.naks = 0;
    this.setState('sending');
    this.sendFrame();
  }

  private sendFrame(): void {
    this.write(this.frames[this.frameIdx]);
    this.txTimer?.cancel();
    // LIS01 §1.3.2: wait up to 15 s for a reply; on timeout send EOT, no retransmission
    this.txTimer = this.clock.setTimer(this.opts.replyTimeoutMs, () => {
      if (this.state !== 'sending') return;
      this.emit({ type: 'timeout', phase: 'reply' });
      this.write(EOT);
      this.failJob(new AstmSendError('no-reply', 'no reply to frame'));
    });
  }

  private onSendingByte(b: number): void {
    if (b === ACK) {
      this.frameIdx++;
      this.naks = 0;
      if (this.frameIdx < this.frames.length) return this.sendFrame();
      this.txTimer?.cancel();
      this.write(EOT); // LIS01 §1.3.3: termination
      const job = this.job!;
      this.job = undefined;
      this.setState('neutral');
      this.emit({ type: 'sent', records: job.records.length });
      job.resolve();
      this.maybeBid();
      return;
    }
    if (b === NAK) {
      this.naks++;
      // LIS01 §1.3.2: resend the same frame with the same FN; abort with EOT after 6 failed attempts
      if (this.naks >= this.opts.maxFrameRetries) {
        this.write(EOT);
        this.failJob(new AstmSendError('nak-limit', `frame NAKed ${this.naks} times`));
        return;
      }
      return this.sendFrame();
    }
    if (b === EOT) {
      // LIS01 §1.3.6 receiver interrupt: the frame is accepted, the receiver asks us to stop.
      // Honour it: EOT, and no ENQ for ≥15 s or until the receiver sent its own message.
      this.emit({ type: 'interrupted' });
      this.txTimer?.cancel();
      this.write(EOT);
      const job = this.job!;
      this.job = undefined;
      this.interruptHold = true;
      this.holdUntil = Math.max(this.holdUntil, this.clock.now() + this.opts.interruptHoldoffMs);
      this.setState('neutral');
      job.interrupts++;
      if (job.interrupts > this.opts.maxInterruptResends) {
        this.emit({ type: 'send-failed', reason: 'interrupted' });
        job.reject(new AstmSendError('interrupted', 'receiver interrupted the transfer'));
      } else {
        job.enqAttempts = 0;
        this.queue.unshift(job); // the partial message is discarded by the receiver; send it whole later
      }
      this.maybeBid();
      return;
    }
    this.emit({ type: 'stray-bytes', count: 1, byte: b });
  }
}

