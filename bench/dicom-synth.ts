/**
 * Synthetic Part-10 objects of any size for tests and the benchmark (issue 11 §8 "generated objects
 * of any size"), written in 1 MiB chunks: a 1 GB object never sits in memory. Secondary Capture
 * (PS3.3 A.8.1), explicit VR little endian, 8-bit MONOCHROME2, one frame of `cols` columns.
 * Fake data only (patient TEST^SYNTHETIC).
 */
import { closeSync, openSync, writeSync } from 'node:fs';
import { randomUUID } from 'node:crypto';

export const SC_STORAGE = '1.2.840.10008.5.1.4.1.1.7';
const EXPLICIT_LE = '1.2.840.10008.1.2.1';

/** A UID under 2.25 (PS3.5 B.2: the UUID as a decimal integer). */
export function newUid(): string {
  return `2.25.${BigInt(`0x${randomUUID().replace(/-/g, '')}`).toString()}`;
}

function el(group: number, element: number, vr: string, value: Buffer): Buffer {
  const pad = value.length % 2 ? Buffer.from([vr === 'UI' || vr === 'OB' ? 0 : 0x20]) : Buffer.alloc(0);
  const v = Buffer.concat([value, pad]);
  const long = ['OB', 'OW', 'SQ', 'UN', 'UT'].includes(vr); // PS3.5 7.1.2
  const h = Buffer.alloc(long ? 12 : 8);
  h.writeUInt16LE(group, 0);
  h.writeUInt16LE(element, 2);
  h.write(vr, 4, 'latin1');
  if (long) h.writeUInt32LE(v.length, 8);
  else h.writeUInt16LE(v.length, 6);
  return Buffer.concat([h, v]);
}
const s = (x: string) => Buffer.from(x, 'latin1');
const us = (n: number) => {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(n);
  return b;
};

export interface SyntheticObject {
  path: string;
  sopInstanceUid: string;
  studyInstanceUid: string;
  bytes: number;
}

/** Write an object whose pixel data has about `pixelBytes` bytes (rounded up to whole rows). */
export function writeSyntheticDicom(path: string, pixelBytes: number, o: { studyInstanceUid?: string; sopInstanceUid?: string; sopClassUid?: string; cols?: number; seed?: number } = {}): SyntheticObject {
  const cols = o.cols ?? 1024;
  const rows = Math.max(1, Math.ceil(pixelBytes / cols));
  if (rows > 65535) throw new RangeError('too many rows for one frame: use more columns');
  const n = rows * cols;
  const sop = o.sopInstanceUid ?? newUid();
  const study = o.studyInstanceUid ?? newUid();
  const cls = o.sopClassUid ?? SC_STORAGE;
  const metaBody = Buffer.concat([
    el(0x0002, 0x0001, 'OB', Buffer.from([0, 1])),
    el(0x0002, 0x0002, 'UI', s(cls)),
    el(0x0002, 0x0003, 'UI', s(sop)),
    el(0x0002, 0x0010, 'UI', s(EXPLICIT_LE)),
    el(0x0002, 0x0012, 'UI', s('2.25.247619871120731092498219532860839417641')),
  ]);
  const glen = Buffer.alloc(4);
  glen.writeUInt32LE(metaBody.length);
  const head = Buffer.concat([
    Buffer.alloc(128),
    s('DICM'),
    el(0x0002, 0x0000, 'UL', glen),
    metaBody,
    el(0x0008, 0x0016, 'UI', s(cls)),
    el(0x0008, 0x0018, 'UI', s(sop)),
    el(0x0008, 0x0060, 'CS', s('OT')),
    el(0x0008, 0x0064, 'CS', s('WSD')),
    el(0x0010, 0x0010, 'PN', s('TEST^SYNTHETIC')),
    el(0x0010, 0x0020, 'LO', s('SYN-0001')),
    el(0x0020, 0x000d, 'UI', s(study)),
    el(0x0020, 0x000e, 'UI', s(`${study}.1`)),
    el(0x0028, 0x0002, 'US', us(1)),
    el(0x0028, 0x0004, 'CS', s('MONOCHROME2')),
    el(0x0028, 0x0010, 'US', us(rows)),
    el(0x0028, 0x0011, 'US', us(cols)),
    el(0x0028, 0x0100, 'US', us(8)),
    el(0x0028, 0x0101, 'US', us(8)),
    el(0x0028, 0x0102, 'US', us(7)),
    el(0x0028, 0x0103, 'US', us(0)),
  ]);
  const px = Buffer.alloc(12);
  px.writeUInt16LE(0x7fe0, 0);
  px.writeUInt16LE(0x0010, 2);
  px.write('OB', 4, 'latin1');
  const padded = n + (n % 2);
  px.writeUInt32LE(padded, 8);
  const fd = openSync(path, 'w');
  try {
    writeSync(fd, Buffer.concat([head, px]));
    const chunk = Buffer.alloc(1024 * 1024);
    let seed = (o.seed ?? 1) >>> 0;
    for (let i = 0; i < chunk.length; i++) {
      seed = (seed * 1103515245 + 12345) >>> 0; // a pattern, not zeros (nothing compresses it away)
      chunk[i] = seed >>> 24;
    }
    for (let left = padded; left > 0; ) {
      const k = Math.min(left, chunk.length);
      writeSync(fd, chunk, 0, k);
      left -= k;
    }
  } finally {
    closeSync(fd);
  }
  return { path, sopInstanceUid: sop, studyInstanceUid: study, bytes: head.length + px.length + padded };
}
