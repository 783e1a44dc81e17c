/**
 * DICOM Part 10 pieces the storage SCP needs without holding an object in memory:
 * - `buildFileMeta`: the 128-byte preamble, "DICM" and the File Meta Information group (PS3.10 7.1,
 *   always explicit VR little endian), written in front of the dataset bytes exactly as received;
 * - `readHeader`: a walker over the first bytes of a received dataset that reads only the top-level
 *   attributes of groups 0008–0020 the index needs and skips everything else by length (sequences of
 *   undefined length item by item), so a 1 GB object costs a bounded prefix, never the whole object.
 *
 * Sources: PS3.5 7.1 (data elements, explicit/implicit VR), 7.5 (nesting, undefined lengths, item and
 * delimitation tags), 6.2 (VRs with a 32-bit length), A.5 (deflate: raw deflate of the explicit LE
 * dataset), PS3.10 7.1 (File Meta Information), PS3.3 C.12.1.1.2 (Specific Character Set).
 */
import { inflateRawSync, constants as zc } from 'node:zlib';
import iconv from 'iconv-lite';
import { isUtf8 } from 'node:buffer';

export const TS = {
  implicitLE: '1.2.840.10008.1.2',
  explicitLE: '1.2.840.10008.1.2.1',
  deflatedLE: '1.2.840.10008.1.2.1.99',
  explicitBE: '1.2.840.10008.1.2.2',
} as const;

/** Our implementation class UID (PS3.7 D.3.3.2; 2.25 = UUID-derived root, PS3.5 B.2) and version name. */
export const IMPLEMENTATION_CLASS_UID = '2.25.247619871120731092498219532860839417641';
export const IMPLEMENTATION_VERSION = 'IOMT_GW_1';

/** A dataset that cannot be read (PS3.4 B.2.3 Cxxx "cannot understand") or lacks a Type 1 key (A9xx). */
export class DatasetError extends Error {
  constructor(message: string, readonly status: number) {
    super(message);
    this.name = 'DatasetError';
  }
}

/** More bytes are needed to finish the walk (the caller reads a longer prefix, up to its cap). */
export class NeedMoreBytes extends Error {
  constructor() {
    super('dataset prefix too short');
    this.name = 'NeedMoreBytes';
  }
}

function pad(s: string, padChar: string): Buffer {
  const b = Buffer.from(s, 'latin1');
  return b.length % 2 ? Buffer.concat([b, Buffer.from(padChar, 'latin1')]) : b; // PS3.5 6.2: even length; UI pads with NUL
}

function element(group: number, elem: number, vr: string, value: Buffer): Buffer {
  const long = vr === 'OB';
  const h = Buffer.alloc(long ? 12 : 8);
  h.writeUInt16LE(group, 0);
  h.writeUInt16LE(elem, 2);
  h.write(vr, 4, 'latin1');
  if (long) h.writeUInt32LE(value.length, 8);
  else h.writeUInt16LE(value.length, 6);
  return Buffer.concat([h, value]);
}

/**
 * Preamble + "DICM" + File Meta Information (PS3.10 7.1), explicit VR LE. The same input gives the
 * same bytes (no time, no calling AE): a re-sent instance hashes the same (dedupe on sha256).
 */
export function buildFileMeta(m: { sopClassUid: string; sopInstanceUid: string; transferSyntaxUid: string }): Buffer {
  const body = Buffer.concat([
    element(0x0002, 0x0001, 'OB', Buffer.from([0x00, 0x01])), // File Meta Information Version
    element(0x0002, 0x0002, 'UI', pad(m.sopClassUid, '\0')), // Media Storage SOP Class UID
    element(0x0002, 0x0003, 'UI', pad(m.sopInstanceUid, '\0')), // Media Storage SOP Instance UID
    element(0x0002, 0x0010, 'UI', pad(m.transferSyntaxUid, '\0')), // Transfer Syntax UID
    element(0x0002, 0x0012, 'UI', pad(IMPLEMENTATION_CLASS_UID, '\0')),
    element(0x0002, 0x0013, 'SH', pad(IMPLEMENTATION_VERSION, ' ')),
  ]);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(body.length, 0);
  const groupLength = element(0x0002, 0x0000, 'UL', len);
  return Buffer.concat([Buffer.alloc(128), Buffer.from('DICM', 'latin1'), groupLength, body]);
}

/** Byte length of a Part 10 file's preamble + File Meta group (for comparing datasets). Throws DatasetError. */
export function fileMetaLength(file: Buffer): number {
  if (file.length < 144 || file.toString('latin1', 128, 132) !== 'DICM') throw new DatasetError('no DICM prefix', 0xc000);
  if (file.readUInt16LE(132) !== 0x0002 || file.readUInt16LE(134) !== 0x0000) throw new DatasetError('no (0002,0000) group length', 0xc000);
  return 144 + file.readUInt32LE(140);
}

/** What the index needs from a dataset (strings trimmed of padding; PHI: never logged above debug). */
export interface DatasetHeader {
  specificCharacterSet?: string;
  sopClassUid?: string;
  sopInstanceUid?: string;
  studyInstanceUid?: string;
  seriesInstanceUid?: string;
  modality?: string;
  accessionNumber?: string;
  studyDate?: string;
  stationName?: string;
  patientName?: string;
  patientId?: string;
  patientBirthDate?: string;
  patientSex?: string;
  /** The Specific Character Set is not one we decode: names were read as ISO 8859-1. */
  charsetFallback?: boolean;
}

const WANTED: Record<number, keyof DatasetHeader> = {
  0x00080005: 'specificCharacterSet',
  0x00080016: 'sopClassUid',
  0x00080018: 'sopInstanceUid',
  0x00080020: 'studyDate',
  0x00080050: 'accessionNumber',
  0x00080060: 'modality',
  0x00081010: 'stationName',
  0x00100010: 'patientName',
  0x00100020: 'patientId',
  0x00100030: 'patientBirthDate',
  0x00100040: 'patientSex',
  0x0020000d: 'studyInstanceUid',
  0x0020000e: 'seriesInstanceUid',
};
/** Attributes whose text depends on the Specific Character Set (PS3.5 6.1.2.3: PN, LO, SH ...). */
const CHARSET_TEXT = new Set<keyof DatasetHeader>(['patientName', 'patientId', 'accessionNumber', 'stationName']);
/** Explicit VRs with a reserved 2 bytes and a 32-bit length (PS3.5 7.1.2 Table 7.1-1). */
const LONG_VRS = new Set(['OB', 'OD', 'OF', 'OL', 'OV', 'OW', 'SQ', 'SV', 'UC', 'UN', 'UR', 'UT', 'UV']);
const UNDEFINED = 0xffffffff;
const ITEM = 0xfffee000;
const ITEM_DELIM = 0xfffee00d;
const SEQ_DELIM = 0xfffee0dd;
/** Nesting deeper than this is not a real object (and would be a stack risk): Cxxx. */
const MAX_DEPTH = 32;
/** Largest inflated prefix of a deflated dataset the header walker looks at (PS3.5 A.5). */
const INFLATE_MAX = 16 * 1024 * 1024;

/** Specific Character Set (PS3.3 C.12.1.1.2, first value) → an iconv-lite name; undefined = not supported. */
export function charsetOf(term: string | undefined): string | undefined {
  const t = (term ?? '').split('\\')[0].trim().toUpperCase();
  const map: Record<string, string> = {
    '': 'latin1', 'ISO_IR 6': 'latin1', 'ISO 2022 IR 6': 'latin1', 'ISO_IR 100': 'latin1', 'ISO 2022 IR 100': 'latin1',
    'ISO_IR 101': 'iso-8859-2', 'ISO_IR 109': 'iso-8859-3', 'ISO_IR 110': 'iso-8859-4', 'ISO_IR 144': 'iso-8859-5',
    'ISO_IR 127': 'iso-8859-6', 'ISO_IR 126': 'iso-8859-7', 'ISO_IR 138': 'iso-8859-8', 'ISO_IR 148': 'iso-8859-9',
    'ISO_IR 166': 'tis-620', 'ISO_IR 192': 'utf8', GB18030: 'gb18030', GBK: 'gbk',
  };
  return map[t];
}

class Reader {
  pos = 0;
  constructor(readonly buf: Buffer, public explicit: boolean, readonly bigEndian: boolean, readonly complete: boolean) {}
  need(n: number): void {
    if (this.pos + n > this.buf.length) {
      if (this.complete) throw new DatasetError(`dataset ends inside an element at byte ${this.pos}`, 0xc000);
      throw new NeedMoreBytes();
    }
  }
  u16(): number {
    this.need(2);
    const v = this.bigEndian ? this.buf.readUInt16BE(this.pos) : this.buf.readUInt16LE(this.pos);
    this.pos += 2;
    return v;
  }
  u32(): number {
    this.need(4);
    const v = this.bigEndian ? this.buf.readUInt32BE(this.pos) : this.buf.readUInt32LE(this.pos);
    this.pos += 4;
    return v;
  }
  /** Tag as group << 16 | element. Item and delimitation tags are always read in the dataset's byte order. */
  tag(): number {
    const g = this.u16();
    const e = this.u16();
    return ((g << 16) | e) >>> 0;
  }
  /** One element header: tag, VR (explicit, or '' implicit), value length. */
  header(): { tag: number; vr: string; length: number } {
    const tag = this.tag();
    if (tag === ITEM || tag === ITEM_DELIM || tag === SEQ_DELIM) return { tag, vr: '', length: this.u32() }; // PS3.5 7.5: no VR
    if (!this.explicit) return { tag, vr: '', length: this.u32() };
    this.need(2);
    const vr = this.buf.toString('latin1', this.pos, this.pos + 2);
    this.pos += 2;
    if (!/^[A-Z]{2}$/.test(vr)) throw new DatasetError(`invalid VR at byte ${this.pos - 2}`, 0xc000);
    if (LONG_VRS.has(vr)) {
      this.need(2);
      this.pos += 2; // reserved
      return { tag, vr, length: this.u32() };
    }
    return { tag, vr, length: this.u16() };
  }
  skip(n: number): void {
    this.need(n);
    this.pos += n;
  }
}

/** Skip the items of a sequence (or encapsulated pixel data) of undefined length, nested ones included. */
function skipUndefined(r: Reader, depth: number, unknownVr = false): void {
  if (depth > MAX_DEPTH) throw new DatasetError('sequences nested too deep', 0xc000);
  // PS3.5 6.2.2: the content of a UN element of undefined length is implicit VR little endian
  const explicit = r.explicit;
  if (unknownVr) r.explicit = false;
  try {
    skipItems(r, depth);
  } finally {
    r.explicit = explicit;
  }
}

function skipItems(r: Reader, depth: number): void {
  for (;;) {
    const h = r.header();
    if (h.tag === SEQ_DELIM) return;
    if (h.tag !== ITEM) throw new DatasetError(`expected an item in a sequence of undefined length at byte ${r.pos - 8}`, 0xc000);
    if (h.length !== UNDEFINED) {
      r.skip(h.length);
      continue;
    }
    // an item of undefined length: elements until the item delimiter (PS3.5 7.5.1)
    for (;;) {
      const e = r.header();
      if (e.tag === ITEM_DELIM) break;
      if (e.tag === ITEM || e.tag === SEQ_DELIM) throw new DatasetError('item or sequence delimiter out of place', 0xc000);
      if (e.length === UNDEFINED) skipUndefined(r, depth + 1, e.vr === 'UN');
      else r.skip(e.length);
    }
  }
}

/**
 * Read the index attributes from the start of a dataset as received (no File Meta). `complete`: the
 * buffer is the whole dataset (else a prefix: NeedMoreBytes when the walk runs past it). Stops at the
 * first top-level element of a group after 0020 (nothing later is needed). Throws DatasetError (0xC000)
 * for bytes that are not a dataset in this transfer syntax.
 */
export function readHeader(buf: Buffer, transferSyntaxUid: string, complete: boolean): DatasetHeader {
  let data = buf;
  let done = complete;
  if (transferSyntaxUid === TS.deflatedLE) {
    // PS3.5 A.5: the dataset is raw deflate; a prefix inflates with a sync flush as far as it goes.
    // Output is bounded (a deflate bomb must not take memory); when it would exceed the bound, the data
    // compresses very well (e.g. blank pixel data, ~1000:1) and the index attributes, which come first,
    // are in a shorter prefix: inflate ¼ of it, then ¼ of that … (before: such a legitimate object was
    // refused 0xC000)
    const inflate = (b: Buffer, flush: number) => inflateRawSync(b, { finishFlush: flush, maxOutputLength: INFLATE_MAX });
    const tooLarge = (e: unknown) => (e as NodeJS.ErrnoException).code === 'ERR_BUFFER_TOO_LARGE';
    try {
      data = inflate(buf, complete ? zc.Z_FINISH : zc.Z_SYNC_FLUSH);
    } catch (e) {
      if (!tooLarge(e)) throw new DatasetError(`deflated dataset does not inflate: ${(e as Error).message}`, 0xc000);
      for (let n = buf.length >> 2; ; n >>= 2) {
        if (n < 1024) throw new DatasetError('deflated dataset inflates beyond any bound within its first KiB', 0xc000);
        try {
          data = inflate(buf.subarray(0, n), zc.Z_SYNC_FLUSH);
          done = false; // a prefix now: NeedMoreBytes if the walk runs past it
          break;
        } catch (e2) {
          if (!tooLarge(e2)) throw new DatasetError(`deflated dataset does not inflate: ${(e2 as Error).message}`, 0xc000);
        }
      }
    }
  }
  const r = new Reader(data, transferSyntaxUid !== TS.implicitLE, transferSyntaxUid === TS.explicitBE, done);
  const raw: Partial<Record<keyof DatasetHeader, Buffer>> = {};
  let last = -1;
  let past = false; // reached a group after 0020: everything needed has been seen
  while (r.pos < data.length) {
    const start = r.pos;
    let h: { tag: number; vr: string; length: number };
    try {
      h = r.header();
    } catch (e) {
      // a dataset may end with trailing padding shorter than a header: not an error at the very end
      if (e instanceof NeedMoreBytes) throw e;
      if (done && data.length - start < 8 && data.subarray(start).every((b) => b === 0)) break;
      throw e;
    }
    if (h.tag === ITEM || h.tag === ITEM_DELIM || h.tag === SEQ_DELIM) throw new DatasetError(`item tag at top level (byte ${start})`, 0xc000);
    if (h.tag < last) throw new DatasetError(`attributes out of order at byte ${start} (PS3.5 7.1)`, 0xc000);
    last = h.tag;
    if (h.tag >>> 16 > 0x0020) {
      past = true;
      break;
    }
    const key = WANTED[h.tag];
    if (h.length === UNDEFINED) {
      if (key) throw new DatasetError(`undefined length on a text attribute at byte ${start}`, 0xc000);
      skipUndefined(r, 1, h.vr === 'UN');
      continue;
    }
    if (key) {
      if (h.length > 64 * 1024) throw new DatasetError(`attribute at byte ${start} is ${h.length} bytes long`, 0xc000);
      r.need(h.length);
      raw[key] = data.subarray(r.pos, r.pos + h.length);
    }
    r.skip(h.length);
  }
  // a prefix that ended before the index groups did: the rest may still hold them
  if (!past && !done) throw new NeedMoreBytes();
  const out: DatasetHeader = {};
  const text = (b: Buffer, enc: string) => iconv.decode(b, enc).replace(/[\0 ]+$/, '').replace(/^ +/, '');
  const cs = raw.specificCharacterSet ? text(raw.specificCharacterSet, 'latin1') : undefined;
  if (cs) out.specificCharacterSet = cs;
  let enc = charsetOf(cs);
  if (!enc) {
    enc = 'latin1';
    out.charsetFallback = true;
  }
  // PS3.5 6.1.2.1: without Specific Character Set (or ISO_IR 6) only the default repertoire (ASCII) may
  // be used. Bytes ≥ 0x80 there are outside what was declared (modalities that send UTF-8 undeclared):
  // the message is flagged charset-fallback, and a value that is valid UTF-8 is read as UTF-8 (ISO 8859-1
  // otherwise), never silently as mojibake.
  const defaultRepertoire = !cs || /^(ISO_IR 6|ISO 2022 IR 6)$/i.test(cs.split('\\')[0].trim());
  for (const k of Object.keys(raw) as Array<keyof DatasetHeader>) {
    if (k === 'specificCharacterSet') continue;
    const b = raw[k] as Buffer;
    let vEnc = CHARSET_TEXT.has(k) ? enc : 'latin1';
    if (CHARSET_TEXT.has(k) && defaultRepertoire && b.some((x) => x >= 0x80)) {
      out.charsetFallback = true;
      vEnc = isUtf8(b) ? 'utf8' : 'latin1';
    }
    const v = text(b, vEnc);
    if (v) (out as Record<string, unknown>)[k] = v;
  }
  return out;
}

/** A UID as a safe path component (PS3.5 9.1: digits and dots, ≤ 64); anything else → a hash-derived name. */
export function uidPathPart(uid: string, hash: (s: string) => string): string {
  return /^[0-9][0-9.]{0,63}$/.test(uid) && !uid.includes('..') ? uid : `x${hash(uid).slice(0, 32)}`;
}
