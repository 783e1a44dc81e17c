import { constants, deflateRawSync, inflateRawSync } from 'node:zlib';
import type { ObservationDraft } from '../contracts/observation';

/**
 * Storage format of a message's observations (`message_bodies.observations`, a BLOB): one format
 * byte, then the payload.
 *   0x00  plain JSON (UTF-8) of the draft array
 *   0x01  raw DEFLATE (level 1) of that JSON
 * The writer always stores 0x01; readers accept both. Encoding runs in the writer worker.
 *
 * Why: plain `JSON.stringify` is cheap and exact (reads return the same objects), and the JSON of
 * one analyzer message repeats the same keys, codes, times and order data for every result, so
 * level-1 deflate shrinks it ~12x. On this disk, commit cost grows with the pages written.
 */
export const OBS_PLAIN_JSON = 0x00;
export const OBS_DEFLATE_JSON = 0x01;

const DEFLATE_OPTS = { level: 1, strategy: constants.Z_DEFAULT_STRATEGY };

/** Encode the JSON text of a draft array (as produced by `JSON.stringify(drafts)`). */
export function encodeObservations(json: string): Buffer {
  const z = deflateRawSync(Buffer.from(json, 'utf8'), DEFLATE_OPTS);
  const out = Buffer.allocUnsafe(z.length + 1);
  out[0] = OBS_DEFLATE_JSON;
  z.copy(out, 1);
  return out;
}

export function decodeObservationsJson(blob: Buffer | Uint8Array | string): string {
  if (typeof blob === 'string') return blob; // defensive: a TEXT value is plain JSON
  const b = Buffer.isBuffer(blob) ? blob : Buffer.from(blob.buffer, blob.byteOffset, blob.byteLength);
  if (b.length === 0) return '[]';
  switch (b[0]) {
    case OBS_PLAIN_JSON:
      return b.toString('utf8', 1);
    case OBS_DEFLATE_JSON:
      return inflateRawSync(b.subarray(1)).toString('utf8');
    default:
      throw new Error(`unknown observations encoding 0x${b[0].toString(16)}`);
  }
}

export function decodeObservations(blob: Buffer | Uint8Array | string): ObservationDraft[] {
  return JSON.parse(decodeObservationsJson(blob)) as ObservationDraft[];
}
