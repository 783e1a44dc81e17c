/**
 * Character sets for device input and output (issue 8 part 4 "Characters").
 *
 * - Inbound HL7: MSH-18 (HL7 v2.5.1 2.15.9.18, Table 0211) names the message charset; an empty
 *   MSH-18 falls back to the listener/profile charset (default UTF-8).
 * - Bytes invalid in the charset never become U+FFFD: decoding is strict and throws CharsetError
 *   (first bad byte offset), unless the profile names a fallback charset that decodes strictly.
 * - Every decoded string is NFC (canonical composition): windows-1258 and the TCVN tables carry
 *   tone marks as combining characters, and HIS/LIS receivers compare NFC text.
 * - Outbound to a device: encodeFor refuses characters the device charset cannot carry, unless
 *   the device profile asks for ASCII folding.
 * Codecs come from iconv-lite (the mapping tables); this module adds strictness, offsets and NFC.
 */
import { isUtf8 } from 'node:buffer';
import * as iconv from 'iconv-lite';
import { GatewayError } from '../contracts/errors';
import { foldToAscii } from './ascii-fold';
import { charsetFromTable0211, lookupTable0211 } from './table-0211';

export { charsetFromTable0211, table0211Code, MSH18_UTF8, TABLE_0211 } from './table-0211';
export { foldToAscii } from './ascii-fold';

/**
 * Charset names a profile or listener may use.
 * - 'utf8': UTF-8 (Table 0211 'UNICODE UTF-8'). Default for HL7 listeners and ASTM profiles.
 * - 'ascii': 7-bit ASCII (Table 0211 'ASCII', 'ISO IR6'); any byte ≥ 0x80 is invalid.
 * - 'latin1', 'iso-8859-2' … 'iso-8859-16': ISO 8859 parts (Table 0211 '8859/n'). The C1 range
 *   0x80–0x9F is invalid: ISO 8859 assigns no graphic characters there, and such bytes nearly
 *   always mean the sender really used windows-1252 (give that as the fallback).
 * - 'windows-1252', 'windows-1258' (Vietnamese, with combining tone marks).
 * - 'viscii' (Vietnamese, RFC 1456).
 * - 'tcvn3': TCVN 5712:1993 VN3 ("TCVN3", ABC fonts): ASCII + 67 lowercase letters + 7 capitals
 *   (Ă Â Ê Ô Ơ Ư Đ) + no-break space. Capitals with tone marks do not exist in VN3.
 * - 'tcvn5712': TCVN 5712:1993 VN1 as iconv-lite has it (its 'tcvn' codec, from libiconv): VN3 +
 *   capitals with tones + combining tone marks, some capitals at C0 positions (0x01, 0x02,
 *   0x04–0x06, 0x11–0x17). Encoding never uses those C0 positions (see encodeFor).
 * - 'gb18030' (Table 0211 'GB 18030-2000'), 'big5' ('BIG-5'), 'euc-kr' ('KS X 1001'),
 *   'shift_jis' (profile option only: Table 0211 names JIS sets through ISO 2022).
 */
export type CharsetName =
  | 'utf8'
  | 'ascii'
  | 'latin1'
  | 'iso-8859-2'
  | 'iso-8859-3'
  | 'iso-8859-4'
  | 'iso-8859-5'
  | 'iso-8859-6'
  | 'iso-8859-7'
  | 'iso-8859-8'
  | 'iso-8859-9'
  | 'iso-8859-10'
  | 'iso-8859-11'
  | 'iso-8859-13'
  | 'iso-8859-14'
  | 'iso-8859-15'
  | 'iso-8859-16'
  | 'windows-1252'
  | 'windows-1258'
  | 'viscii'
  | 'tcvn3'
  | 'tcvn5712'
  | 'gb18030'
  | 'big5'
  | 'euc-kr'
  | 'shift_jis';

type Kind = 'utf8' | 'sbcs' | 'dbcs';
interface CharsetDef {
  kind: Kind;
  /** iconv-lite codec name. */
  iconv: string;
}

const DEFS: Readonly<Record<CharsetName, CharsetDef>> = {
  utf8: { kind: 'utf8', iconv: 'utf8' },
  ascii: { kind: 'sbcs', iconv: 'latin1' }, // validity restricted to 0x00–0x7F below
  latin1: { kind: 'sbcs', iconv: 'latin1' },
  'iso-8859-2': { kind: 'sbcs', iconv: 'iso-8859-2' },
  'iso-8859-3': { kind: 'sbcs', iconv: 'iso-8859-3' },
  'iso-8859-4': { kind: 'sbcs', iconv: 'iso-8859-4' },
  'iso-8859-5': { kind: 'sbcs', iconv: 'iso-8859-5' },
  'iso-8859-6': { kind: 'sbcs', iconv: 'iso-8859-6' },
  'iso-8859-7': { kind: 'sbcs', iconv: 'iso-8859-7' },
  'iso-8859-8': { kind: 'sbcs', iconv: 'iso-8859-8' },
  'iso-8859-9': { kind: 'sbcs', iconv: 'iso-8859-9' },
  'iso-8859-10': { kind: 'sbcs', iconv: 'iso-8859-10' },
  'iso-8859-11': { kind: 'sbcs', iconv: 'iso-8859-11' },
  'iso-8859-13': { kind: 'sbcs', iconv: 'iso-8859-13' },
  'iso-8859-14': { kind: 'sbcs', iconv: 'iso-8859-14' },
  'iso-8859-15': { kind: 'sbcs', iconv: 'iso-8859-15' },
  'iso-8859-16': { kind: 'sbcs', iconv: 'iso-8859-16' },
  'windows-1252': { kind: 'sbcs', iconv: 'windows-1252' },
  'windows-1258': { kind: 'sbcs', iconv: 'windows-1258' },
  viscii: { kind: 'sbcs', iconv: 'viscii' },
  tcvn3: { kind: 'sbcs', iconv: 'tcvn' }, // validity restricted to VN3 below
  tcvn5712: { kind: 'sbcs', iconv: 'tcvn' },
  gb18030: { kind: 'dbcs', iconv: 'gb18030' },
  big5: { kind: 'dbcs', iconv: 'big5' },
  'euc-kr': { kind: 'dbcs', iconv: 'euc-kr' },
  shift_jis: { kind: 'dbcs', iconv: 'shift_jis' },
};

/** Every supported charset name. */
export const CHARSET_NAMES: readonly CharsetName[] = Object.keys(DEFS) as CharsetName[];

/** True when `name` is one of the CharsetName values (exact spelling). */
export function isSupportedCharset(name: string): name is CharsetName {
  return Object.prototype.hasOwnProperty.call(DEFS, name);
}

export type CharsetErrorReason =
  /** A byte sequence is invalid in the charset (`offset` = its first byte). */
  | 'invalid-bytes'
  /** MSH-18 names a charset that is unknown or not supported (no offset). */
  | 'unsupported-charset'
  /** A character cannot be encoded in the device charset (`offset` = its index in the NFC text). */
  | 'unrepresentable'
  /** MSH-18 repeats (ISO 2022 code extension, MSH-20) and the message holds ESC bytes. */
  | 'charset-switching'
  /** The MSH segment read as bytes and as decoded text disagree on MSH-18. */
  | 'msh-not-ascii';

/**
 * Text could not be decoded or encoded without changing it. Code GW_ERR_CHARSET.
 * The message never carries payload text (PHI): only the charset, an offset, a byte value or a
 * code point, or the declared MSH-18 value.
 */
export class CharsetError extends GatewayError {
  /** The charset that failed (a CharsetName, or the raw MSH-18 value when unsupported). */
  readonly charset: string;
  /** First bad byte offset (decode) or character index in the NFC text (encode); undefined when not about bytes. */
  readonly offset: number | undefined;
  readonly reason: CharsetErrorReason;
  constructor(
    message: string,
    opts: { charset: string; offset?: number; reason: CharsetErrorReason; cause?: unknown },
  ) {
    super('GW_ERR_CHARSET', message, { cause: opts.cause });
    this.charset = opts.charset;
    this.offset = opts.offset;
    this.reason = opts.reason;
  }
}

const hex2 = (b: number): string => `0x${b.toString(16).toUpperCase().padStart(2, '0')}`;
const codePoint = (cp: number): string => `U+${cp.toString(16).toUpperCase().padStart(4, '0')}`;

// ---------------------------------------------------------------------------------------------
// UTF-8

/**
 * Offset of the first ill-formed UTF-8 sequence, or -1. Well-formed sequences per Unicode 15
 * §3.9 Table 3-7 (no overlongs, no surrogates D800–DFFF, nothing above U+10FFFF); a sequence cut
 * off by the end of the buffer is ill-formed and reported at its first byte.
 */
export function firstInvalidUtf8(b: Uint8Array): number {
  const n = b.length;
  let i = 0;
  while (i < n) {
    const c = b[i]!;
    if (c < 0x80) {
      i++;
      continue;
    }
    let need: number;
    let lo = 0x80;
    let hi = 0xbf;
    if (c >= 0xc2 && c <= 0xdf) need = 1;
    else if (c === 0xe0) (need = 2), (lo = 0xa0); // no overlong 3-byte
    else if ((c >= 0xe1 && c <= 0xec) || c === 0xee || c === 0xef) need = 2;
    else if (c === 0xed) (need = 2), (hi = 0x9f); // no surrogates
    else if (c === 0xf0) (need = 3), (lo = 0x90); // no overlong 4-byte
    else if (c >= 0xf1 && c <= 0xf3) need = 3;
    else if (c === 0xf4) (need = 3), (hi = 0x8f); // nothing above U+10FFFF
    else return i; // 0x80–0xC1 (continuation or overlong lead), 0xF5–0xFF
    if (i + need >= n) return i; // truncated at the end
    const b1 = b[i + 1]!;
    if (b1 < lo || b1 > hi) return i;
    for (let k = 2; k <= need; k++) {
      const bk = b[i + k]!;
      if (bk < 0x80 || bk > 0xbf) return i;
    }
    i += need + 1;
  }
  return -1;
}

// ---------------------------------------------------------------------------------------------
// Single-byte charsets: a validity mask per charset, built from iconv-lite's table

const validMasks = new Map<CharsetName, Uint8Array>();

/** VN3 capitals (the 7 without tone marks); VN3's other non-ASCII letters are all lowercase. */
const VN3_CAPITALS = new Set(['Ă', 'Â', 'Ê', 'Ô', 'Ơ', 'Ư', 'Đ']);

function sbcsValidMask(cs: CharsetName): Uint8Array {
  let mask = validMasks.get(cs);
  if (mask) return mask;
  mask = new Uint8Array(256);
  const all = Buffer.alloc(256);
  for (let b = 0; b < 256; b++) all[b] = b;
  const chars = iconv.decode(all, DEFS[cs].iconv, { stripBOM: false });
  for (let b = 0; b < 256; b++) {
    const ch = chars[b]!;
    let ok = ch !== '\ufffd'; // iconv-lite marks undefined positions (e.g. 0x81 in windows-1258) with U+FFFD
    if (cs === 'ascii') ok = b < 0x80;
    else if (cs === 'latin1' || cs.startsWith('iso-8859-')) {
      if (b >= 0x80 && b <= 0x9f) ok = false; // ISO 8859: no graphic characters in 0x80–0x9F
    } else if (cs === 'tcvn3') {
      // VN3 reassigns no control code; above 0x7F only the no-break space, lowercase letters and
      // the 7 capitals without tones. The 12 C0 bytes VN1 uses for capitals (0x01, 0x02,
      // 0x04–0x06, 0x11–0x17) are controls in VN3 and letters in iconv-lite's table: neither
      // reading is safe in message text, so they are refused, as are VN1's capitals with tones
      // and combining marks ('tcvn5712', e.g. as the fallback, reads them as VN1).
      if (b < 0x80) ok = ch.charCodeAt(0) === b;
      else ok = ch === '\u00a0' || VN3_CAPITALS.has(ch) || (ch.toLowerCase() === ch && ch.toUpperCase() !== ch);
    }
    mask[b] = ok ? 1 : 0;
  }
  validMasks.set(cs, mask);
  return mask;
}

function firstInvalidSbcs(bytes: Uint8Array, cs: CharsetName): number {
  const mask = sbcsValidMask(cs);
  for (let i = 0; i < bytes.length; i++) if (mask[bytes[i]!] === 0) return i;
  return -1;
}

// ---------------------------------------------------------------------------------------------
// Multi-byte (DBCS) charsets: iconv-lite marks every invalid sequence with U+FFFD

const fffdBytes = new Map<CharsetName, Buffer | null>();

/** The bytes that encode U+FFFD itself in `cs` (gb18030 has them), or null. */
function encodedFffd(cs: CharsetName): Buffer | null {
  if (!fffdBytes.has(cs)) {
    const enc = iconv.encode('\ufffd', DEFS[cs].iconv);
    const back = iconv.decode(enc, DEFS[cs].iconv);
    fffdBytes.set(cs, back === '\ufffd' && !(enc.length === 1 && enc[0] === 0x3f) ? enc : null);
  }
  return fffdBytes.get(cs)!;
}

/**
 * First invalid sequence for a DBCS charset, or -1. Only called when the one-shot decode produced
 * U+FFFD: replays the bytes one at a time to find where the replacement came from, and lets a
 * U+FFFD that the input really encodes (gb18030 84 31 A4 37) through.
 */
function firstInvalidDbcs(bytes: Buffer, cs: CharsetName): number {
  const dec = iconv.getDecoder(DEFS[cs].iconv, { stripBOM: false });
  const legit = encodedFffd(cs);
  let seqStart = 0; // first byte not yet turned into output
  for (let i = 0; i < bytes.length; i++) {
    const out = dec.write(bytes.subarray(i, i + 1));
    if (out.length === 0) continue;
    if (out.includes('\ufffd')) {
      const seq = bytes.subarray(seqStart, i + 1);
      if (!(out === '\ufffd' && legit !== null && seq.equals(legit))) return seqStart;
    }
    seqStart = i + 1;
  }
  const tail = dec.end();
  if (tail !== undefined && tail.length > 0) return seqStart; // truncated multi-byte sequence at the end
  return -1;
}

// ---------------------------------------------------------------------------------------------
// Decoding

/** Offset of the first byte sequence invalid in `charset`, or -1 when all bytes are valid. */
export function findInvalidOffset(bytes: Buffer, charset: CharsetName): number {
  const def = DEFS[charset];
  if (def.kind === 'utf8') return isUtf8(bytes) ? -1 : firstInvalidUtf8(bytes);
  if (def.kind === 'sbcs') return firstInvalidSbcs(bytes, charset);
  const text = iconv.decode(bytes, def.iconv, { stripBOM: false });
  return text.includes('\ufffd') ? firstInvalidDbcs(bytes, charset) : -1;
}

function invalidBytes(bytes: Buffer, charset: CharsetName, offset: number): CharsetError {
  const b = bytes[offset];
  const what = b === undefined ? 'truncated sequence' : `byte ${hex2(b)}`;
  return new CharsetError(`invalid ${charset} ${what} at offset ${offset}`, {
    charset,
    offset,
    reason: 'invalid-bytes',
  });
}

/**
 * Strict decode: the text of `bytes` in `charset`, NFC-normalized.
 * Throws CharsetError (reason 'invalid-bytes', `offset` = first byte of the bad sequence) when any
 * byte sequence is invalid in the charset: UTF-8 invalid/overlong/surrogate/truncated sequences;
 * single-byte positions the charset leaves undefined (0x81 in windows-1258, 0x80–0x9F in ISO
 * 8859, ≥ 0x80 in ASCII, VN1-only positions in tcvn3); multi-byte sequences that do not exist.
 * Never returns U+FFFD for a bad byte (a U+FFFD correctly encoded in the input is kept).
 * Strips nothing: a UTF-8 byte order mark stays as U+FEFF, controls stay.
 */
export function decodeStrict(bytes: Buffer, charset: CharsetName): string {
  if (!isSupportedCharset(charset)) {
    throw new CharsetError(`unsupported charset ${JSON.stringify(String(charset).slice(0, 40))}`, {
      charset: String(charset),
      reason: 'unsupported-charset',
    });
  }
  const def = DEFS[charset];
  let text: string;
  if (def.kind === 'utf8') {
    const bad = isUtf8(bytes) ? -1 : firstInvalidUtf8(bytes);
    if (bad >= 0) throw invalidBytes(bytes, charset, bad);
    text = bytes.toString('utf8'); // keeps a BOM as U+FEFF
  } else if (def.kind === 'sbcs') {
    const bad = firstInvalidSbcs(bytes, charset);
    if (bad >= 0) throw invalidBytes(bytes, charset, bad);
    text = iconv.decode(bytes, def.iconv, { stripBOM: false });
  } else {
    text = iconv.decode(bytes, def.iconv, { stripBOM: false });
    if (text.includes('\ufffd')) {
      const bad = firstInvalidDbcs(bytes, charset);
      if (bad >= 0) throw invalidBytes(bytes, charset, bad);
    }
  }
  // NFC: windows-1258 / TCVN carry tones as combining marks (ê + U+0303); receivers expect ễ.
  return nfc(text);
}

/**
 * decodeStrict with the declared charset; on CharsetError, if `fallback` is given (and differs)
 * and decodes strictly, that text with usedFallback=true. When both fail, the declared charset's
 * CharsetError is thrown (its message also says where the fallback failed).
 */
export function decodeWithFallback(
  bytes: Buffer,
  declared: CharsetName,
  fallback?: CharsetName,
): { text: string; charset: CharsetName; usedFallback: boolean } {
  try {
    return { text: decodeStrict(bytes, declared), charset: declared, usedFallback: false };
  } catch (err) {
    if (!(err instanceof CharsetError) || fallback === undefined || fallback === declared) throw err;
    try {
      return { text: decodeStrict(bytes, fallback), charset: fallback, usedFallback: true };
    } catch (err2) {
      if (!(err2 instanceof CharsetError)) throw err2;
      throw new CharsetError(`${err.message}; fallback ${fallback} also failed: ${err2.message}`, {
        charset: declared,
        offset: err.offset,
        reason: err.reason,
        cause: err2,
      });
    }
  }
}

// ---------------------------------------------------------------------------------------------
// HL7: MSH-18

const CR = 0x0d;
const LF = 0x0a;

/**
 * All repetitions of MSH-18, read from raw bytes (latin1 view of each byte: MSH-18 codes are ASCII).
 * Looks only at the first segment (up to CR or LF). Empty array when there is no MSH segment or
 * no MSH-18. A leading UTF-8 BOM, CR, LF or space (what the HL7 parser tolerates before MSH) is
 * skipped for this look-up only.
 */
function msh18Repetitions(bytes: Uint8Array): string[] {
  // Skip what the HL7 parser tolerates before MSH: UTF-8 BOMs, CR, LF, spaces.
  let p = 0;
  for (;;) {
    if (bytes[p] === 0xef && bytes[p + 1] === 0xbb && bytes[p + 2] === 0xbf) p += 3;
    else if (bytes[p] === CR || bytes[p] === LF || bytes[p] === 0x20) p++;
    else break;
  }
  // "MSH" then MSH-1, the field separator (HL7 v2.5.1 2.15.9.1)
  if (bytes.length < p + 4 || bytes[p] !== 0x4d || bytes[p + 1] !== 0x53 || bytes[p + 2] !== 0x48) return [];
  const fs = bytes[p + 3]!;
  if (fs === CR || fs === LF) return [];
  let end = p + 4;
  while (end < bytes.length && bytes[end] !== CR && bytes[end] !== LF) end++;
  // MSH-2 encoding characters: component, repetition, escape, subcomponent (2.15.9.2)
  let i = p + 4;
  const msh2Start = i;
  while (i < end && bytes[i] !== fs) i++;
  const repSep = i - msh2Start >= 2 ? bytes[msh2Start + 1] : undefined;
  // The separator at p+3 is MSH-1; the one ending MSH-2 is the 2nd; MSH-18 follows the 17th.
  let field = 2;
  while (i < end && field < 18) {
    i++; // skip the separator
    field++;
    if (field === 18) break;
    while (i < end && bytes[i] !== fs) i++;
  }
  if (field !== 18 || i > end) return [];
  let j = i;
  while (j < end && bytes[j] !== fs) j++;
  const raw = Buffer.from(bytes.buffer, bytes.byteOffset + i, j - i).toString('latin1');
  return repSep === undefined ? [raw] : raw.split(String.fromCharCode(repSep));
}

/**
 * The raw MSH-18 first repetition (the message's charset, HL7 v2.5.1 2.15.9.18), '' when absent.
 * Reads bytes without decoding the message: the MSH segment is ASCII-compatible in every
 * supported charset. MSH-1 gives the field separator, MSH-2 the repetition separator. Bounded:
 * looks at most at the first segment.
 */
export function readMsh18(bytes: Buffer): string {
  return msh18Repetitions(bytes)[0] ?? '';
}

/**
 * HL7 inbound decode policy (HL7 v2.5.1 2.15.9.18, Table 0211):
 * - MSH-18 first repetition valued and known → that charset;
 * - valued but unknown or unsupported → CharsetError 'unsupported-charset' naming the value;
 * - empty → `listenerCharset` (default 'utf8'; the standard's default, ASCII, is a subset).
 * Invalid bytes → `fallback` when given and it decodes (usedFallback), else CharsetError.
 * Later MSH-18 repetitions name ISO 2022 alternates (MSH-20, Table 0356): they are not decoded;
 * a message that declares them and contains an ESC byte is refused ('charset-switching').
 * Returns the NFC text, the charset used, and the raw declared MSH-18 first repetition.
 */
export function decodeHl7Message(
  bytes: Buffer,
  opts: { listenerCharset?: CharsetName; fallback?: CharsetName } = {},
): { text: string; charset: CharsetName; declared: string; usedFallback: boolean } {
  const reps = msh18Repetitions(bytes);
  let declared = reps[0] ?? '';
  let charset: CharsetName;
  if (declared.trim() === '') {
    charset = opts.listenerCharset ?? 'utf8';
  } else {
    const found = charsetFromTable0211(declared);
    if (found === undefined) {
      const entry = lookupTable0211(declared);
      const shown = JSON.stringify(declared.slice(0, 40));
      const why = entry?.unsupported ?? 'not a value of HL7 Table 0211';
      throw new CharsetError(`MSH-18 ${shown} is not supported: ${why}`, {
        charset: declared,
        reason: 'unsupported-charset',
      });
    }
    charset = found;
  }
  // HL7 v2.5.1 2.15.9.18/2.15.9.20: repetitions 2+ are alternates switched by ISO 2022 escapes.
  if (reps.slice(1).some((r) => r.trim() !== '') && bytes.includes(0x1b)) {
    throw new CharsetError(
      `MSH-18 declares alternate character sets and the message holds ESC (ISO 2022) bytes; charset switching is not supported`,
      { charset, offset: bytes.indexOf(0x1b), reason: 'charset-switching' },
    );
  }
  const r = decodeWithFallback(bytes, charset, opts.fallback);
  // The byte-level read assumed MSH-3..MSH-17 are ASCII. In a multi-byte charset (Big5,
  // Shift_JIS, GB18030) a trail byte can equal '|'. Read MSH-18 again from the decoded text: it
  // must lead to the charset that was used, else the message is refused rather than guessed.
  const lead = /^[\ufeff\r\n ]*/.exec(r.text)![0].length;
  const segEnd = r.text.slice(lead, lead + 65_536).search(/[\r\n]/);
  const firstSegment = r.text.slice(lead, segEnd < 0 ? lead + 65_536 : lead + segEnd);
  const again = msh18Repetitions(Buffer.from(firstSegment, 'utf8'))[0] ?? '';
  if (again !== declared) {
    const meant = again.trim() === '' ? (opts.listenerCharset ?? 'utf8') : charsetFromTable0211(again);
    if (r.usedFallback || meant !== r.charset) {
      throw new CharsetError(`MSH-18 read from bytes and from the decoded text differ; MSH is not ASCII-compatible`, {
        charset: r.charset,
        reason: 'msh-not-ascii',
      });
    }
    declared = again;
  }
  return { text: r.text, charset: r.charset, declared, usedFallback: r.usedFallback };
}

// ---------------------------------------------------------------------------------------------
// Encoding

const LONE_SURROGATE = /[\uD800-\uDBFF](?![\uDC00-\uDFFF])|(?<![\uD800-\uDBFF])[\uDC00-\uDFFF]/;

/** Bytes 0x00–0x1F and 0x7F: framing and control bytes (E1381 STX/ETX/ENQ…, MLLP VT/FS, CR). */
const isControlByte = (b: number): boolean => b < 0x20 || b === 0x7f;

function countControlBytes(buf: Uint8Array): number {
  let n = 0;
  for (const b of buf) if (isControlByte(b)) n++;
  return n;
}

function countControlChars(s: string): number {
  let n = 0;
  for (let i = 0; i < s.length; i++) if (isControlByte(s.charCodeAt(i))) n++;
  return n;
}

/** Bytes for one character (or short sequence), or undefined when `cs` cannot carry it safely. */
function encodeExact(s: string, cs: CharsetName): Buffer | undefined {
  const buf = iconv.encode(s, DEFS[cs].iconv);
  // A letter may never become a control byte: VISCII and TCVN VN1 put letters at C0 positions,
  // which collide with ASTM E1381 framing (STX, ENQ, ACK, NAK, ETB) and MLLP.
  if (countControlBytes(buf) !== countControlChars(s)) return undefined;
  if (findInvalidOffset(buf, cs) >= 0) return undefined;
  const back = nfc(iconv.decode(buf, DEFS[cs].iconv, { stripBOM: false }));
  return back === nfc(s) ? buf : undefined;
}

/** More combining marks in a row than UAX #15 §13 (stream-safe text) allows: 30. */
const LONG_MARK_RUN = /\p{M}{31,}/u;
const LONG_MARK_RUNS = /\P{M}?\p{M}{31,}/gu;

/**
 * NFC in time linear in the text (issue 10). ICU reorders a run of combining marks by insertion, so
 * `normalize` is quadratic in the length of one run (20,000 marks: seconds). No real text has more
 * than 30 marks in a row (UAX #15 §13 stream-safe limit), so such a run, with its base character, is
 * kept exactly as received (not reordered, not composed); everything around it is NFC as usual.
 * Nothing is removed or added.
 */
export function nfc(text: string): string {
  if (!LONG_MARK_RUN.test(text)) return text.normalize('NFC');
  let out = '';
  let last = 0;
  LONG_MARK_RUNS.lastIndex = 0;
  for (let m = LONG_MARK_RUNS.exec(text); m !== null; m = LONG_MARK_RUNS.exec(text)) {
    out += text.slice(last, m.index).normalize('NFC') + m[0];
    last = m.index + m[0].length;
  }
  return out + text.slice(last).normalize('NFC');
}

/** All subsets of [0..n), largest first (n ≤ 4 for real text; guarded by the caller). */
function subsetsLargestFirst(n: number): number[][] {
  const out: number[][] = [];
  for (let m = (1 << n) - 1; m >= 0; m--) {
    const s: number[] = [];
    for (let k = 0; k < n; k++) if (m & (1 << k)) s.push(k);
    out.push(s);
  }
  return out.sort((a, b) => b.length - a.length);
}

/**
 * One code point the charset has no single code for: try base letter + combining marks, composing
 * as many marks into the base as the charset allows (windows-1258: ệ = ê 0xEA + dot below 0xF2).
 */
function encodeDecomposed(ch: string, cs: CharsetName): Buffer | undefined {
  const parts = Array.from(ch.normalize('NFD'));
  if (parts.length < 2 || parts.length > 5) return undefined;
  const base = parts[0]!;
  const marks = parts.slice(1);
  for (const subset of subsetsLargestFirst(marks.length)) {
    const head = (base + subset.map((k) => marks[k]).join('')).normalize('NFC');
    if (Array.from(head).length !== 1) continue;
    const headBytes = encodeExact(head, cs);
    if (!headBytes) continue;
    const rest: Buffer[] = [headBytes];
    let ok = true;
    for (let k = 0; k < marks.length && ok; k++) {
      if (subset.includes(k)) continue;
      const mb = encodeExact(marks[k]!, cs);
      if (mb) rest.push(mb);
      else ok = false;
    }
    if (!ok) continue;
    const out = Buffer.concat(rest);
    const back = iconv.decode(out, DEFS[cs].iconv, { stripBOM: false }).normalize('NFC');
    if (back === ch) return out;
  }
  return undefined;
}

/**
 * Encode text for a device (ASTM host answers, HL7 ACKs to a device): NFC first, then strict.
 * Throws CharsetError ('unrepresentable', `offset` = index in the NFC text, message names the
 * code point) when a character cannot be represented, including lone surrogates and letters a
 * legacy charset would put on a control byte (VISCII Ẳ Ẵ Ẫ Ỷ Ỹ Ỵ, TCVN VN1 capitals at C0).
 * windows-1258 / tcvn5712: letters without a precomposed code are written as base + combining mark.
 * `asciiFold` (device profile option): the whole text goes through foldToAscii first (Vietnamese
 * and Latin diacritics removed); characters with no ASCII spelling still throw when the charset
 * cannot carry them.
 */
export function encodeFor(text: string, charset: CharsetName, opts: { asciiFold?: boolean } = {}): Buffer {
  if (!isSupportedCharset(charset)) {
    throw new CharsetError(`unsupported charset ${JSON.stringify(String(charset).slice(0, 40))}`, {
      charset: String(charset),
      reason: 'unsupported-charset',
    });
  }
  const lone = text.search(LONE_SURROGATE);
  if (lone >= 0) {
    throw new CharsetError(`lone surrogate ${codePoint(text.charCodeAt(lone))} cannot be encoded`, {
      charset,
      offset: lone,
      reason: 'unrepresentable',
    });
  }
  const s = nfc(opts.asciiFold ? foldToAscii(text) : text);
  if (charset === 'utf8') return Buffer.from(s, 'utf8');
  // Fast path: iconv-lite writes '?' for what it cannot map, so accept only an exact round trip.
  const whole = iconv.encode(s, DEFS[charset].iconv);
  if (
    countControlBytes(whole) === countControlChars(s) &&
    findInvalidOffset(whole, charset) < 0 &&
    nfc(iconv.decode(whole, DEFS[charset].iconv, { stripBOM: false })) === s
  ) {
    return whole;
  }
  // Slow path: one code point at a time, with base + combining mark fallback.
  const out: Buffer[] = [];
  let idx = 0;
  for (const ch of s) {
    const b = encodeExact(ch, charset) ?? encodeDecomposed(ch, charset);
    if (!b) {
      throw new CharsetError(`${codePoint(ch.codePointAt(0)!)} at index ${idx} cannot be encoded in ${charset}`, {
        charset,
        offset: idx,
        reason: 'unrepresentable',
      });
    }
    out.push(b);
    idx += ch.length;
  }
  return Buffer.concat(out);
}
