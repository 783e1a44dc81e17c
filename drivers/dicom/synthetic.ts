/**
 * Synthetic Part 10 objects of any size, written by streaming (tests, benchmarks, the modality
 * simulator): a small explicit VR LE header and an 8-bit MONOCHROME2 multi-frame pixel data element
 * (7FE0,0010) OB of `frames` × rows × columns bytes, produced 1 MiB at a time, so a 1 GB object never
 * needs 1 GB of memory. Secondary Capture Image Storage (PS3.4 B.5; PS3.3 A.8 Multi-frame 8 bit SC
 * would be stricter; storage SCPs store any SOP class as received).
 */
import { once } from 'node:events';
import { createWriteStream } from 'node:fs';
import { buildFileMeta, TS } from './part10';

export const SC_STORAGE = '1.2.840.10008.5.1.4.1.1.7';

function el(group: number, elem: number, vr: string, value: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16LE(group, 0);
  h.writeUInt16LE(elem, 2);
  h.write(vr, 4, 'latin1');
  h.writeUInt16LE(value.length, 6);
  return Buffer.concat([h, value]);
}
const str = (s: string, padChar = ' ') => Buffer.from(s.length % 2 ? s + padChar : s, 'latin1');
const u16 = (n: number) => {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(n, 0);
  return b;
};

export interface SyntheticObject {
  sopInstanceUid: string;
  studyInstanceUid: string;
  seriesInstanceUid: string;
  patientId?: string;
  patientName?: string;
  accessionNumber?: string;
  modality?: string;
  rows?: number;
  columns?: number;
  frames: number;
}

/** The dataset bytes before the pixel data value, explicit VR LE (ascending tags, PS3.5 7.1). */
export function syntheticHeader(o: SyntheticObject): { dataset: Buffer; pixelBytes: number } {
  const rows = o.rows ?? 1024;
  const cols = o.columns ?? 1024;
  const pixelBytes = rows * cols * o.frames;
  const pdHeader = Buffer.alloc(12);
  pdHeader.writeUInt16LE(0x7fe0, 0);
  pdHeader.writeUInt16LE(0x0010, 2);
  pdHeader.write('OB', 4, 'latin1');
  pdHeader.writeUInt32LE(pixelBytes + (pixelBytes % 2), 8);
  const dataset = Buffer.concat([
    el(0x0008, 0x0008, 'CS', str('DERIVED\\SECONDARY')),
    el(0x0008, 0x0016, 'UI', str(SC_STORAGE, '\0')),
    el(0x0008, 0x0018, 'UI', str(o.sopInstanceUid, '\0')),
    el(0x0008, 0x0020, 'DA', str('20250301')),
    el(0x0008, 0x0050, 'SH', str(o.accessionNumber ?? '')),
    el(0x0008, 0x0060, 'CS', str(o.modality ?? 'OT')),
    el(0x0008, 0x0064, 'CS', str('WSD')),
    el(0x0010, 0x0010, 'PN', str(o.patientName ?? 'TEST^SYNTHETIC')),
    el(0x0010, 0x0020, 'LO', str(o.patientId ?? 'SYN-1')),
    el(0x0020, 0x000d, 'UI', str(o.studyInstanceUid, '\0')),
    el(0x0020, 0x000e, 'UI', str(o.seriesInstanceUid, '\0')),
    el(0x0028, 0x0002, 'US', u16(1)),
    el(0x0028, 0x0004, 'CS', str('MONOCHROME2')),
    el(0x0028, 0x0008, 'IS', str(String(o.frames))),
    el(0x0028, 0x0010, 'US', u16(rows)),
    el(0x0028, 0x0011, 'US', u16(cols)),
    el(0x0028, 0x0100, 'US', u16(8)),
    el(0x0028, 0x0101, 'US', u16(8)),
    el(0x0028, 0x0102, 'US', u16(7)),
    el(0x0028, 0x0103, 'US', u16(0)),
    pdHeader,
  ]);
  return { dataset, pixelBytes };
}

/** Write the object as a Part 10 file (explicit VR LE) by streaming; resolves with the file size. */
export async function writeSyntheticFile(path: string, o: SyntheticObject): Promise<number> {
  const { dataset, pixelBytes } = syntheticHeader(o);
  const out = createWriteStream(path);
  const meta = buildFileMeta({ sopClassUid: SC_STORAGE, sopInstanceUid: o.sopInstanceUid, transferSyntaxUid: TS.explicitLE });
  out.write(meta);
  out.write(dataset);
  const chunk = Buffer.alloc(1024 * 1024);
  for (let i = 0; i < chunk.length; i++) chunk[i] = (i * 7) & 0xff; // a gradient, not all zero
  let left = pixelBytes + (pixelBytes % 2);
  while (left > 0) {
    const part = left >= chunk.length ? chunk : chunk.subarray(0, left);
    left -= part.length;
    if (!out.write(part)) await once(out, 'drain');
  }
  out.end();
  await once(out, 'finish');
  return meta.length + dataset.length + pixelBytes + (pixelBytes % 2);
}
