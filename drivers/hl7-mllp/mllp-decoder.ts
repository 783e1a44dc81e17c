/**
 * MLLP framing (HL7 v2.5.1 Appendix C, "Minimal Lower Layer Protocol"): a block is
 * <VT 0x0B> payload <FS 0x1C><CR 0x0D>. Pure byte-level state machine over Buffer chunks.
 * Memory is bounded by `maxBytes` (conventions §9): no unbounded arrays, the frame buffer
 * never grows beyond maxBytes.
 */

export const VT = 0x0b; // MLLP start block (HL7 v2.5.1 Appendix C.2.1)
export const FS = 0x1c; // MLLP end block, first byte (Appendix C.2.1)
export const CR = 0x0d; // MLLP end block, second byte (Appendix C.2.1)

export type MllpEvent =
  | { type: 'frame'; payload: Buffer }
  /** A frame exceeded maxBytes; reported once per frame, the rest is discarded up to the next FS. */
  | { type: 'oversize'; bytes: number }
  /** Bytes outside a VT…FS block (garbage before VT, stray bytes between blocks); discarded. */
  | { type: 'junk'; bytes: number };

export interface MllpDecoderOptions {
  /** Largest accepted payload in bytes (default 8 MiB). */
  maxBytes?: number;
}

export const DEFAULT_MLLP_MAX_BYTES = 8 * 1024 * 1024;

type State = 'outside' | 'inside' | 'discarding' | 'afterFs';

export class MllpDecoder {
  readonly maxBytes: number;
  private state: State = 'outside';
  private buf: Buffer;
  private len = 0;
  private junk = 0; // junk bytes counted since the last event
  private oversizeBytes = 0; // bytes of the frame being discarded

  constructor(opts: MllpDecoderOptions = {}) {
    this.maxBytes = opts.maxBytes ?? DEFAULT_MLLP_MAX_BYTES;
    if (!(this.maxBytes > 0)) throw new RangeError('maxBytes must be > 0');
    this.buf = Buffer.allocUnsafe(Math.min(this.maxBytes, 64 * 1024));
  }

  /** Bytes currently buffered for an incomplete frame (never above maxBytes). */
  get bufferedBytes(): number {
    return this.len;
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
          const vt = chunk.indexOf(VT, i);
          const end = vt === -1 ? n : vt;
          // Whitespace between blocks (CR/LF left over by senders) is not reported as junk.
          for (let k = i; k < end; k++) {
            const b = chunk[k];
            if (b !== CR && b !== 0x0a && b !== 0x20) this.junk++;
          }
          if (vt === -1) {
            i = n;
          } else {
            this.flushJunk(events);
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
            // Oversize: report once and discard until the next FS.
            this.oversizeBytes = this.len + take;
            this.len = 0;
            this.shrink();
            events.push({ type: 'oversize', bytes: this.oversizeBytes });
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
              // VT inside a frame: the sender restarted; the partial frame is junk (Appendix C.2.1).
              this.junk += this.len;
              this.flushJunk(events);
              this.len = 0;
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
    if (this.state === 'outside') this.flushJunk(events);
    return events;
  }

  /** Bytes discarded so far for the current oversize frame (diagnostics). */
  get discardedBytes(): number {
    return this.oversizeBytes;
  }

  /** Drop any partial frame (e.g. connection closed mid-frame). Returns the bytes dropped. */
  reset(): number {
    const dropped = this.len + this.junk;
    this.len = 0;
    this.junk = 0;
    this.state = 'outside';
    this.shrink();
    return dropped;
  }

  private flushJunk(events: MllpEvent[]): void {
    if (this.junk > 0) {
      events.push({ type: 'junk', bytes: this.junk });
      this.junk = 0;
    }
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
