/**
 * MLLP framing (HL7 v2.5.1 Appendix C, "Minimal Lower Layer Protocol"): a block is
 * <VT 0x0B> payload <FS 0x1C><CR 0x0D>. Pure byte-level state machine over Buffer chunks.
 * Memory is bounded by `maxBytes` (conventions §9): no unbounded arrays, the frame buffer
 * never grows beyond maxBytes, the refused-bytes buffer never beyond `keepRefusedBytes`.
 * Bytes that are not part of a complete block are refused, never dropped unseen (issue 8): they are
 * reported in runs ('junk' / 'oversize' events: why, how many, and their first `keepRefusedBytes`
 * bytes verbatim) so the caller can keep them in quarantine.
 */

export const VT = 0x0b; // MLLP start block (HL7 v2.5.1 Appendix C.2.1)
export const FS = 0x1c; // MLLP end block, first byte (Appendix C.2.1)
export const CR = 0x0d; // MLLP end block, second byte (Appendix C.2.1)
const LF = 0x0a;
const SP = 0x20;

/**
 * Why bytes were refused. Appendix C.2.1: only VT payload FS CR is a block; anything else on the
 * stream is not HL7 content.
 * - 'before-vt': before the first start block of the stream (a sender that does not frame, another protocol).
 * - 'between-blocks': after a block's end, before the next VT (e.g. a logger writing a message tail after FS).
 * - 'restart': a started block abandoned: a new VT came before FS (the sender restarted).
 * - 'truncated': a started block the stream ended in (`end()`, connection closed before FS).
 */
export type MllpJunkReason = 'before-vt' | 'between-blocks' | 'restart' | 'truncated';

export type MllpEvent =
  | { type: 'frame'; payload: Buffer }
  /**
   * A frame exceeded maxBytes; reported once per frame, the rest is discarded up to the next FS.
   * `bytes`: received when it was refused (> maxBytes); `data`: its first min(bytes, keepRefusedBytes).
   */
  | { type: 'oversize'; bytes: number; data?: Buffer }
  /**
   * A run of refused bytes (see MllpJunkReason). `bytes`: all bytes of the run, counted;
   * `data`: its first min(bytes, keepRefusedBytes) bytes verbatim (absent when keepRefusedBytes is 0).
   * A run of only CR/LF/space between blocks (left over by senders) is not reported.
   */
  | { type: 'junk'; bytes: number; reason: MllpJunkReason; data?: Buffer };

export interface MllpDecoderOptions {
  /** Largest accepted payload in bytes (default 8 MiB). */
  maxBytes?: number;
  /** Keep up to this many bytes of each refused run in the event's `data` (default 0: count only). */
  keepRefusedBytes?: number;
}

export const DEFAULT_MLLP_MAX_BYTES = 8 * 1024 * 1024;

type State = 'outside' | 'inside' | 'discarding' | 'afterFs';

/**
 * Events come out of push() as the bytes arrive, except a run of bytes outside blocks: it is reported
 * when it ends, at the next VT, or when the caller ends it with flush() (after a quiet period, or when
 * `pendingRefusedBytes` is large) or end() (end of stream).
 */
export class MllpDecoder {
  readonly maxBytes: number;
  readonly keepRefusedBytes: number;
  private state: State = 'outside';
  private buf: Buffer;
  private len = 0;
  private oversizeBytes = 0; // bytes of the frame being discarded
  private seenVt = false; // a start block was seen on this stream: outside bytes are 'between-blocks'
  // the current run of bytes outside a block
  private run: Buffer | undefined; // its first `runKept` bytes (≤ keepRefusedBytes), allocated on demand
  private runKept = 0;
  private runLen = 0; // all its bytes
  private runContent = false; // it holds a byte other than CR/LF/space

  constructor(opts: MllpDecoderOptions = {}) {
    this.maxBytes = opts.maxBytes ?? DEFAULT_MLLP_MAX_BYTES;
    if (!(this.maxBytes > 0)) throw new RangeError('maxBytes must be > 0');
    this.keepRefusedBytes = opts.keepRefusedBytes ?? 0;
    if (!(this.keepRefusedBytes >= 0)) throw new RangeError('keepRefusedBytes must be >= 0');
    this.buf = Buffer.allocUnsafe(Math.min(this.maxBytes, 64 * 1024));
  }

  /** Bytes currently buffered for an incomplete frame (never above maxBytes). */
  get bufferedBytes(): number {
    return this.len;
  }

  /** Bytes of the current run outside a block, not yet reported (whitespace included). */
  get pendingRefusedBytes(): number {
    return this.runLen;
  }

  /** True while inside a started but unfinished frame. */
  get inFrame(): boolean {
    return this.state === 'inside' || this.state === 'discarding';
  }

  push(chunk: Buffer): MllpEvent[] {
    const events: MllpEvent[] = [];
    let i = 0;
    const n = chunk.length;
    while (i < n) {
      switch (this.state) {
        case 'afterFs': {
          // MLLP (Appendix C.2.1): FS is followed by CR; tolerate a missing CR, consume it if present.
          this.state = 'outside';
          if (chunk[i] === CR) i++;
          break;
        }
        case 'outside': {
          // Appendix C.2.1: a block begins with VT; what comes before it is refused, in one run up to the VT
          const vt = chunk.indexOf(VT, i);
          const end = vt === -1 ? n : vt;
          this.collect(chunk, i, end);
          if (vt === -1) {
            i = n;
          } else {
            this.endRun(events);
            this.seenVt = true;
            this.state = 'inside';
            this.len = 0;
            i = vt + 1;
          }
          break;
        }
        case 'inside': {
          // Find the end of block or a new start block, whichever comes first.
          let k = i;
          while (k < n && chunk[k] !== FS && chunk[k] !== VT) k++;
          const take = k - i;
          if (this.len + take > this.maxBytes) {
            // Oversize: report once (with the frame's head) and discard until the next FS.
            this.oversizeBytes = this.len + take;
            const data = this.head(this.oversizeBytes, chunk, i);
            this.len = 0;
            this.shrink();
            events.push(data ? { type: 'oversize', bytes: this.oversizeBytes, data } : { type: 'oversize', bytes: this.oversizeBytes });
            this.state = 'discarding';
            i = k;
            if (k < n && chunk[k] === FS) {
              this.state = 'afterFs';
              i = k + 1;
            }
            // a VT while discarding is treated as data of the oversize frame (no restart):
            // the sender is still inside its giant block.
            else if (k < n) i = k + 1;
            break;
          }
          this.append(chunk, i, k);
          i = k;
          if (k < n) {
            if (chunk[k] === FS) {
              events.push({ type: 'frame', payload: Buffer.from(this.buf.subarray(0, this.len)) });
              this.len = 0;
              this.shrink();
              this.state = 'afterFs';
            } else {
              // VT inside a frame: the sender restarted; the partial frame is refused (Appendix C.2.1).
              this.refuseFrame(events, 'restart');
            }
            i = k + 1;
          }
          break;
        }
        case 'discarding': {
          const fs = chunk.indexOf(FS, i);
          if (fs === -1) {
            this.oversizeBytes += n - i;
            i = n;
          } else {
            this.oversizeBytes += fs - i;
            this.state = 'afterFs';
            i = fs + 1;
          }
          break;
        }
      }
    }
    return events;
  }

  /** End the current run of bytes outside a block now (e.g. after a quiet period): its 'junk' event, if any. */
  flush(): MllpEvent[] {
    const events: MllpEvent[] = [];
    this.endRun(events);
    return events;
  }

  /**
   * End of stream (connection closed): the pending run and a started, unfinished frame ('truncated')
   * as 'junk' events; the decoder is then as new.
   */
  end(): MllpEvent[] {
    const events = this.flush();
    if (this.state === 'inside') this.refuseFrame(events, 'truncated');
    this.reset();
    return events;
  }

  /** Bytes discarded so far for the current oversize frame (diagnostics). */
  get discardedBytes(): number {
    return this.oversizeBytes;
  }

  /** Drop any partial frame and pending run without reporting them. Returns the bytes dropped. */
  reset(): number {
    const dropped = this.len + this.runLen;
    this.len = 0;
    this.clearRun();
    this.state = 'outside';
    this.seenVt = false;
    this.shrink();
    return dropped;
  }

  /** Add chunk[from, to) to the current run outside a block: all counted, the first keepRefusedBytes kept. */
  private collect(chunk: Buffer, from: number, to: number): void {
    if (to <= from) return;
    if (!this.runContent) {
      for (let k = from; k < to; k++) {
        const b = chunk[k];
        if (b !== CR && b !== LF && b !== SP) {
          this.runContent = true;
          break;
        }
      }
    }
    const take = Math.min(this.keepRefusedBytes - this.runKept, to - from);
    if (take > 0) {
      const need = this.runKept + take;
      if (!this.run || need > this.run.length) {
        let size = Math.max(this.run?.length ?? 0, 256);
        while (size < need) size *= 2;
        const next = Buffer.allocUnsafe(Math.min(size, this.keepRefusedBytes));
        this.run?.copy(next, 0, 0, this.runKept);
        this.run = next;
      }
      chunk.copy(this.run, this.runKept, from, from + take);
      this.runKept = need;
    }
    this.runLen += to - from;
  }

  /** Report the current run outside a block unless it is only whitespace (tolerated between blocks). */
  private endRun(events: MllpEvent[]): void {
    if (this.runLen > 0 && this.runContent) {
      const reason: MllpJunkReason = this.seenVt ? 'between-blocks' : 'before-vt';
      // the run buffer is handed over, not copied: the next run allocates its own
      if (this.run && this.runKept > 0) events.push({ type: 'junk', bytes: this.runLen, reason, data: this.run.subarray(0, this.runKept) });
      else events.push({ type: 'junk', bytes: this.runLen, reason });
      this.run = undefined;
    }
    this.clearRun();
  }

  private clearRun(): void {
    this.runKept = 0;
    this.runLen = 0;
    this.runContent = false;
    if (this.run && this.run.length > 4096) this.run = undefined;
  }

  /** Refuse the started frame (restart, truncated): one 'junk' event with its head; the frame buffer is emptied. */
  private refuseFrame(events: MllpEvent[], reason: MllpJunkReason): void {
    if (this.len > 0) {
      const data = this.head(this.len, this.buf, this.len);
      events.push(data ? { type: 'junk', bytes: this.len, reason, data } : { type: 'junk', bytes: this.len, reason });
    }
    this.len = 0;
    this.shrink();
  }

  /** Copy of the first min(total, keepRefusedBytes) bytes of the frame: buf[0, len) then chunk[from, …). */
  private head(total: number, chunk: Buffer, from: number): Buffer | undefined {
    const n = Math.min(total, this.keepRefusedBytes);
    if (n === 0) return undefined;
    const out = Buffer.allocUnsafe(n);
    const a = this.buf.copy(out, 0, 0, Math.min(this.len, n));
    if (a < n) chunk.copy(out, a, from, from + (n - a));
    return out;
  }

  private append(chunk: Buffer, from: number, to: number): void {
    const need = this.len + (to - from);
    if (need > this.buf.length) {
      let size = this.buf.length * 2;
      while (size < need) size *= 2;
      const next = Buffer.allocUnsafe(Math.min(size, this.maxBytes));
      this.buf.copy(next, 0, 0, this.len);
      this.buf = next;
    }
    chunk.copy(this.buf, this.len, from, to);
    this.len = need;
  }

  /** Give memory back after a large frame. */
  private shrink(): void {
    if (this.buf.length > 256 * 1024) this.buf = Buffer.allocUnsafe(64 * 1024);
  }
}

/** Wrap a payload in an MLLP block: VT payload FS CR (HL7 v2.5.1 Appendix C.2.1). */
export function encodeMllp(payload: Buffer): Buffer {
  const out = Buffer.allocUnsafe(payload.length + 3);
  out[0] = VT;
  payload.copy(out, 1);
  out[payload.length + 1] = FS;
  out[payload.length + 2] = CR;
  return out;
}
