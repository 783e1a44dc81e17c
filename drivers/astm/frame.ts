/**
 * ASTM E1381 / CLSI LIS01 frame codec (protocols.md §1.1–1.2). Pure functions over Buffer.
 *
 *   <STX> FN text <ETB|ETX> C1 C2 <CR><LF>
 */

// E1381 / LIS01 §1.1 control bytes
export const STX = 0x02;
export const ETX = 0x03;
export const EOT = 0x04;
export const ENQ = 0x05;
export const ACK = 0x06;
export const LF = 0x0a;
export const CR = 0x0d;
export const NAK = 0x15;
export const ETB = 0x17;

/** E1381 / LIS1-A: at most 240 text bytes per frame when we send (protocols.md §1.2 "Send ≤240"). */
export const MAX_SEND_TEXT_BYTES = 240;
/** LIS01-A2: frames up to 64,000 bytes are accepted (protocols.md §1.2 "accept up to 64,000") [S]. */
export const MAX_FRAME_BYTES = 64_000;

/**
 * Bytes not allowed inside frame text (protocols.md §1.1 [C]): SOH, STX, ETX, EOT, ENQ, ACK, DLE,
 * DC1–DC4, NAK, SYN, ETB, and LF (LF only as the final trailer byte).
 */
const RESTRICTED = new Set([0x01, STX, ETX, EOT, ENQ, ACK, 0x10, 0x11, 0x12, 0x13, 0x14, NAK, 0x16, ETB, LF]);

export function isRestricted(byte: number): boolean {
  return RESTRICTED.has(byte);
}

/**
 * E1381 8.3.x / LIS01 §1.2 checksum: sum of the *encoded* bytes from FN through ETX/ETB inclusive
 * (STX and CR/LF excluded), unsigned, mod 256, as two uppercase hex characters.
 */
export function checksum(bytes: Buffer, start = 0, end = bytes.length): string {
  let sum = 0;
  for (let i = start; i < end; i++) sum = (sum + bytes[i]) & 0xff;
  return sum.toString(16).toUpperCase().padStart(2, '0');
}

/** One frame: STX FN text ETX|ETB C1 C2 CR LF. `fn` is 0..7. */
export function encodeFrame(fn: number, text: Buffer, last: boolean): Buffer {
  const out = Buffer.alloc(text.length + 7);
  out[0] = STX;
  out[1] = 0x30 + (fn & 7); // LIS01 §1.2: FN is ASCII '0'..'7'
  text.copy(out, 2);
  out[2 + text.length] = last ? ETX : ETB;
  const cs = checksum(out, 1, 3 + text.length);
  out.write(cs, 3 + text.length, 'latin1');
  out[5 + text.length] = CR;
  out[6 + text.length] = LF;
  return out;
}

/**
 * One record (one LIS02 record = one LIS01 message, protocols.md §1.2 [C]) → frames.
 * Text beyond `maxTextBytes` goes into ETB frames, the remainder into the final ETX frame.
 * FN increments per frame modulo 8 (…6, 7, 0, 1…). Returns the frames and the next FN to use.
 */
export function encodeFrames(recordText: Buffer, startFn: number, maxTextBytes = MAX_SEND_TEXT_BYTES): { frames: Buffer[]; nextFn: number } {
  if (maxTextBytes < 1) throw new RangeError('maxTextBytes must be >= 1');
  const frames: Buffer[] = [];
  let fn = startFn & 7;
  let off = 0;
  do {
    const end = Math.min(off + maxTextBytes, recordText.length);
    frames.push(encodeFrame(fn, recordText.subarray(off, end), end >= recordText.length));
    fn = (fn + 1) & 7; // E1381: modulo 8
    off = end;
  } while (off < recordText.length);
  return { frames, nextFn: fn };
}

export type NakReason = 'bad-start' | 'bad-checksum' | 'restricted-char' | 'bad-trailer' | 'too-long' | 'bad-fn' | 'multiple-records';

export type ParsedFrame =
  | { ok: true; fn: number | undefined; text: Buffer; isLast: boolean }
  | { ok: false; reason: NakReason; fn?: number };

export interface FrameParseOptions {
  /** Profile `noChecksum` (Snibe Maglumi): frame ends at ETX/ETB, no checksum, FN optional. */
  noChecksum?: boolean;
  /** Profile `missingLfTolerated`: trailer may end after CR. */
  missingLfTolerated?: boolean;
  /** Profile `crlfRecordTerminator`: LF right after a CR inside the text is tolerated and removed. */
  crlfRecordTerminator?: boolean;
  /** Default 64,000 (LIS01-A2). */
  maxFrameBytes?: number;
}

/**
 * Validate one complete frame (STX … trailer). Never throws: a bad frame yields the NAK reason
 * (protocols.md §1.3 rule 4: wrong start byte, bad checksum, restricted character, missing CR/LF, over-size).
 */
export function parseFrame(buf: Buffer, opts: FrameParseOptions = {}): ParsedFrame {
  const max = opts.maxFrameBytes ?? MAX_FRAME_BYTES;
  if (buf.length > max) return { ok: false, reason: 'too-long' };
  if (buf.length < 2 || buf[0] !== STX) return { ok: false, reason: 'bad-start' };
  // find the terminator ETX/ETB (first one: both are restricted in text)
  let term = -1;
  for (let i = 1; i < buf.length; i++) {
    if (buf[i] === ETX || buf[i] === ETB) {
      term = i;
      break;
    }
  }
  if (term < 0) return { ok: false, reason: 'bad-trailer' };
  let textStart = 1;
  let fn: number | undefined;
  const fnByte = buf[1];
  if (fnByte >= 0x30 && fnByte <= 0x37) {
    fn = fnByte - 0x30;
    textStart = 2;
  } else if (!opts.noChecksum) {
    return { ok: false, reason: 'bad-fn' }; // LIS01 §1.2: FN is '0'..'7'
  }
  const isLast = buf[term] === ETX;
  if (!opts.noChecksum) {
    // trailer: C1 C2 CR LF (LF optional with missingLfTolerated)
    const tail = buf.subarray(term + 1);
    const need = opts.missingLfTolerated ? 3 : 4;
    if (tail.length < need || tail.length > 4) return { ok: false, reason: 'bad-trailer', fn };
    if (tail[2] !== CR || (tail.length === 4 && tail[3] !== LF)) return { ok: false, reason: 'bad-trailer', fn };
    const got = tail.subarray(0, 2).toString('latin1').toUpperCase(); // accept lowercase hex on input
    if (!/^[0-9A-F]{2}$/.test(got)) return { ok: false, reason: 'bad-checksum', fn };
    if (got !== checksum(buf, 1, term + 1)) return { ok: false, reason: 'bad-checksum', fn };
  }
  let text = buf.subarray(textStart, term);
  // LIS01 §1.1: restricted characters are not allowed in text
  let hasCrLf = false;
  for (let i = 0; i < text.length; i++) {
    const b = text[i];
    if (!isRestricted(b)) continue;
    if (b === LF && opts.crlfRecordTerminator && i > 0 && text[i - 1] === CR) {
      hasCrLf = true;
      continue;
    }
    return { ok: false, reason: 'restricted-char', fn };
  }
  if (hasCrLf) text = Buffer.from(text.toString('latin1').replace(/\r\n/g, '\r'), 'latin1');
  return { ok: true, fn, text: Buffer.from(text), isLast };
}
