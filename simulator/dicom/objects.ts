/**
 * Objects the modality simulator sends, as streamed dataset sources (scu.ts DatasetSource):
 * - `generatedObject`: a Multi-frame Grayscale Byte Secondary Capture (PS3.3 A.8.3) of any size in
 *   explicit VR little endian: the header (PS3.5 7.1.2) is built in memory, the pixel data (7FE0,0010)
 *   OB is generated chunk by chunk (a 1 GB object costs one chunk of RAM);
 * - `fileObject`: a Part-10 file (PS3.10 7.1) streamed from disk after its File Meta Information,
 *   in the transfer syntax it was written in (no transcoding).
 * Fake data only.
 */
import { createReadStream, openSync, readSync, closeSync, statSync } from 'node:fs';
import { randomUUID } from 'node:crypto';
import type { DatasetSource } from './scu';
import { EXPLICIT_LE } from './scu';

export const SC_MULTIFRAME_BYTE = '1.2.840.10008.5.1.4.1.1.7.2';
const FRAME_COLS = 512;
const FRAME_ROWS = 512;
const FRAME_BYTES = FRAME_COLS * FRAME_ROWS; // 8 bits allocated, 1 sample

/** A UID under 2.25 (PS3.5 B.2: a UUID as a decimal integer). */
export function newUid(): string {
  return `2.25.${BigInt(`0x${randomUUID().replace(/-/g, '')}`).toString()}`;
}

const LONG_VRS = new Set(['OB', 'OW', 'OF', 'SQ', 'UT', 'UN', 'UC', 'UR']); // PS3.5 7.1.2: 4-byte length

function el(group: number, elem: number, vr: string, value: Buffer | string): Buffer {
  let v = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
  if (v.length % 2) v = Buffer.concat([v, Buffer.from([vr === 'UI' || vr === 'OB' ? 0 : 0x20])]); // PS3.5 7.1 even length
  const long = LONG_VRS.has(vr);
  const h = Buffer.alloc(long ? 12 : 8);
  h.writeUInt16LE(group, 0);
  h.writeUInt16LE(elem, 2);
  h.write(vr, 4, 'latin1');
  if (long) h.writeUInt32LE(v.length, 8);
  else h.writeUInt16LE(v.length, 6);
  return Buffer.concat([h, v]);
}

const us = (n: number) => {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(n, 0);
  return b;
};

export interface ObjectInfo {
  sopClassUid: string;
  sopInstanceUid: string;
  transferSyntaxUid: string;
  source: DatasetSource;
}

export interface GeneratedOptions {
  /** Pixel data bytes wanted (rounded up to whole 512×512 frames). */
  bytes: number;
  patientName?: string;
  patientId?: string;
  accessionNumber?: string;
  studyInstanceUid?: string;
  seriesInstanceUid?: string;
  sopInstanceUid?: string;
  modality?: string;
}

/** A generated object; the header carries ISO_IR 192 so Vietnamese names travel as UTF-8. */
export function generatedObject(o: GeneratedOptions): ObjectInfo {
  const frames = Math.max(1, Math.ceil(o.bytes / FRAME_BYTES));
  const pixelBytes = frames * FRAME_BYTES;
  const sop = o.sopInstanceUid ?? newUid();
  const today = new Date().toISOString().slice(0, 10).replace(/-/g, '');
  // elements in ascending tag order (PS3.5 7.1)
  const header = Buffer.concat([
    el(0x0008, 0x0005, 'CS', 'ISO_IR 192'),
    el(0x0008, 0x0016, 'UI', SC_MULTIFRAME_BYTE),
    el(0x0008, 0x0018, 'UI', sop),
    el(0x0008, 0x0020, 'DA', today),
    el(0x0008, 0x0050, 'SH', o.accessionNumber ?? ''),
    el(0x0008, 0x0060, 'CS', o.modality ?? 'OT'),
    el(0x0008, 0x0064, 'CS', 'SYN'),
    el(0x0010, 0x0010, 'PN', o.patientName ?? 'TEST^SIMULATED'),
    el(0x0010, 0x0020, 'LO', o.patientId ?? 'SIM0001'),
    el(0x0020, 0x000d, 'UI', o.studyInstanceUid ?? newUid()),
    el(0x0020, 0x000e, 'UI', o.seriesInstanceUid ?? newUid()),
    el(0x0020, 0x0013, 'IS', '1'),
    el(0x0028, 0x0002, 'US', us(1)),
    el(0x0028, 0x0004, 'CS', 'MONOCHROME2'),
    el(0x0028, 0x0008, 'IS', String(frames)),
    el(0x0028, 0x0010, 'US', us(FRAME_ROWS)),
    el(0x0028, 0x0011, 'US', us(FRAME_COLS)),
    el(0x0028, 0x0100, 'US', us(8)),
    el(0x0028, 0x0101, 'US', us(8)),
    el(0x0028, 0x0102, 'US', us(7)),
    el(0x0028, 0x0103, 'US', us(0)),
  ]);
  const pixHead = Buffer.alloc(12);
  pixHead.writeUInt16LE(0x7fe0, 0);
  pixHead.writeUInt16LE(0x0010, 2);
  pixHead.write('OB', 4, 'latin1');
  pixHead.writeUInt32LE(pixelBytes, 8);
  const head = Buffer.concat([header, pixHead]);
  return {
    sopClassUid: SC_MULTIFRAME_BYTE,
    sopInstanceUid: sop,
    transferSyntaxUid: EXPLICIT_LE,
    source: {
      length: head.length + pixelBytes,
      async *chunks(size: number) {
        yield head;
        // a gradient pattern, the same block reused: generation costs no memory per byte
        const block = Buffer.alloc(Math.max(1, Math.min(size, 1 << 20)));
        for (let i = 0; i < block.length; i++) block[i] = i & 0xff;
        for (let left = pixelBytes; left > 0; left -= block.length) yield left >= block.length ? block : block.subarray(0, left);
      },
    },
  };
}

/** Read a Part-10 file's File Meta (PS3.10 7.1): its length and the (0002,0002/0003/0010) UIDs. */
export function readFileMeta(path: string): { metaEnd: number; sopClassUid: string; sopInstanceUid: string; transferSyntaxUid: string } {
  const fd = openSync(path, 'r');
  try {
    const head = Buffer.alloc(64 * 1024);
    const n = readSync(fd, head, 0, head.length, 0);
    if (n < 132 || head.toString('latin1', 128, 132) !== 'DICM') throw new Error(`${path}: not a DICOM Part-10 file (no DICM prefix)`);
    let p = 132;
    const out: Record<string, string> = {};
    // group 0002 is explicit VR little endian (PS3.10 7.1)
    while (p + 8 <= n && head.readUInt16LE(p) === 0x0002) {
      const e = head.readUInt16LE(p + 2);
      const vr = head.toString('latin1', p + 4, p + 6);
      const long = LONG_VRS.has(vr);
      const len = long ? head.readUInt32LE(p + 8) : head.readUInt16LE(p + 6);
      const vs = p + (long ? 12 : 8);
      if (vr === 'UI') out[e.toString(16)] = head.toString('latin1', vs, vs + len).replace(/[\0 ]+$/, '');
      p = vs + len;
    }
    if (!out['2'] || !out['3'] || !out['10']) throw new Error(`${path}: File Meta lacks (0002,0002), (0002,0003) or (0002,0010)`);
    return { metaEnd: p, sopClassUid: out['2'], sopInstanceUid: out['3'], transferSyntaxUid: out['10'] };
  } finally {
    closeSync(fd);
  }
}

/** A Part-10 file streamed from disk, dataset only (the File Meta is not sent over DIMSE, PS3.7 9.3.1). */
export function fileObject(path: string): ObjectInfo {
  const m = readFileMeta(path);
  const size = statSync(path).size;
  return {
    sopClassUid: m.sopClassUid,
    sopInstanceUid: m.sopInstanceUid,
    transferSyntaxUid: m.transferSyntaxUid,
    source: {
      length: size - m.metaEnd,
      async *chunks(chunkSize: number) {
        for await (const c of createReadStream(path, { start: m.metaEnd, highWaterMark: Math.max(chunkSize, 64 * 1024) })) yield c as Buffer;
      },
    },
  };
}
