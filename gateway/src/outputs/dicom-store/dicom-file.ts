/**
 * Reading the File Meta Information of a stored Part-10 file (PS3.10 7.1) without loading the
 * object: the PACS gets the dataset bytes after the meta group exactly as stored.
 */
import { closeSync, openSync, readSync } from 'node:fs';

// dcmjs ships no type declarations: the one call used here
const { data: dcmjsData } = require('dcmjs') as {
  data: { DicomMessage: { readFile(ab: ArrayBuffer, o?: { untilTag?: string; includeUntilTagValue?: boolean; ignoreErrors?: boolean }): { dict: Record<string, { Value?: unknown[] }> } } };
};

/** Uncompressed (native) transfer syntaxes: the only ones that may be re-encoded (PS3.5 A.1-A.3). */
export const TS = {
  implicitLE: '1.2.840.10008.1.2',
  explicitLE: '1.2.840.10008.1.2.1',
  deflatedLE: '1.2.840.10008.1.2.1.99',
  explicitBE: '1.2.840.10008.1.2.2',
} as const;

/**
 * Stored syntaxes we may send as explicit VR little endian when the PACS does not take them: only
 * deflated explicit VR LE, whose raw inflate is exactly the explicit LE data set (PS3.5 A.5). Never
 * encapsulated syntaxes (compressed pixel data, PS3.5 A.4). Implicit VR LE is the default syntax every
 * SCP supports (PS3.5 10.1) and is sent as stored; big endian is not re-encoded: the re-encoders at hand
 * (dcmjs 0.50) rewrite DS/IS texts and leave OW values unswapped, which would change what the PACS keeps.
 */
export function isReencodable(ts: string): boolean {
  return ts === TS.deflatedLE;
}

export interface DicomFileMeta {
  /** Byte offset of the dataset (first byte after the meta group). */
  datasetOffset: number;
  transferSyntaxUid: string; // (0002,0010)
  sopClassUid: string; // (0002,0002) Media Storage SOP Class UID
  sopInstanceUid: string; // (0002,0003) Media Storage SOP Instance UID
  /** (0008,0016) / (0008,0018) of the data set itself when readable from the head of the file; the
   * C-STORE command must carry these (PS3.7 9.3.1.1; a PACS may answer 0xA900 otherwise). */
  dataset?: { sopClassUid?: string; sopInstanceUid?: string };
}

const trimUid = (b: Buffer) => b.toString('latin1').replace(/[\0 ]+$/, '');

/**
 * Parse the meta group from the first bytes of a Part-10 file: 128-byte preamble, "DICM", then
 * group 0002 in explicit VR little endian (PS3.10 7.1). Throws a TypeError when the file has no
 * meta (e.g. a raw dataset) or the meta is cut short.
 */
export function parseFileMeta(head: Buffer): DicomFileMeta {
  if (head.length < 132 || head.toString('latin1', 128, 132) !== 'DICM') throw new TypeError('not a DICOM Part-10 file (no DICM prefix, PS3.10 7.1)');
  let p = 132;
  const found: Record<string, string> = {};
  while (p + 8 <= head.length && head.readUInt16LE(p) === 0x0002) {
    const el = head.readUInt16LE(p + 2);
    const vr = head.toString('latin1', p + 4, p + 6);
    let len: number;
    let hdr: number;
    // PS3.5 7.1.2: OB, OW, OF, SQ, UT, UN (and OD, OL, OV, UC, UR, SV, UV) carry 2 reserved bytes and a 32-bit length
    if (['OB', 'OW', 'OF', 'SQ', 'UT', 'UN', 'OD', 'OL', 'OV', 'UC', 'UR', 'SV', 'UV'].includes(vr)) {
      if (p + 12 > head.length) break;
      len = head.readUInt32LE(p + 8);
      hdr = 12;
    } else {
      len = head.readUInt16LE(p + 6);
      hdr = 8;
    }
    if (p + hdr + len > head.length) throw new TypeError('File Meta Information cut short');
    const v = head.subarray(p + hdr, p + hdr + len);
    if (el === 0x0002) found.sopClassUid = trimUid(v);
    else if (el === 0x0003) found.sopInstanceUid = trimUid(v);
    else if (el === 0x0010) found.transferSyntaxUid = trimUid(v);
    p += hdr + len;
  }
  if (!found.transferSyntaxUid || !found.sopClassUid || !found.sopInstanceUid) throw new TypeError('File Meta Information lacks (0002,0002), (0002,0003) or (0002,0010)');
  return { datasetOffset: p, transferSyntaxUid: found.transferSyntaxUid, sopClassUid: found.sopClassUid, sopInstanceUid: found.sopInstanceUid };
}

/** Read the meta of a file from disk (reads at most 64 KiB). */
export function readFileMeta(path: string): DicomFileMeta {
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.alloc(64 * 1024);
    const n = readSync(fd, buf, 0, buf.length, 0);
    const head = buf.subarray(0, n);
    const meta = parseFileMeta(head);
    meta.dataset = datasetUids(head);
    return meta;
  } finally {
    closeSync(fd);
  }
}

/** (0008,0016) and (0008,0018) from the head of a Part-10 file, or undefined (deflated, cut short, odd). */
export function datasetUids(head: Buffer): { sopClassUid?: string; sopInstanceUid?: string } | undefined {
  try {
    const ab = head.buffer.slice(head.byteOffset, head.byteOffset + head.byteLength) as ArrayBuffer;
    const m = dcmjsData.DicomMessage.readFile(ab, { untilTag: '00080018', includeUntilTagValue: true, ignoreErrors: true });
    const v = (tag: string) => {
      const x = m.dict[tag]?.Value?.[0];
      return typeof x === 'string' && x ? x.replace(/[\0 ]+$/, '') : undefined;
    };
    const r = { sopClassUid: v('00080016'), sopInstanceUid: v('00080018') };
    return r.sopClassUid || r.sopInstanceUid ? r : undefined;
  } catch {
    return undefined;
  }
}
