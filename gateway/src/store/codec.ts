import { constants, deflateRawSync, inflateRawSync } from 'node:zlib';
import type { ObservationDraft } from '../contracts/observation';

/**
 * Storage format of a message's observations (`message_bodies.observations`, a BLOB): one format
 * byte, then the payload.
 *   0x00  plain JSON text (UTF-8), as produced by `draftsToJson`
 *   0x01  raw DEFLATE (level 1) of that JSON text
 * The writer always stores 0x01; readers accept both. `draftsToJson` runs on the main thread
 * (submit), the deflate in the writer worker.
 *
 * The JSON text has two layouts; readers accept both:
 *   v1  `[draft, ...]`, the draft array as is (rows written before shared objects existed);
 *   v2  `{"v":2,"shared":[object, ...],"drafts":[draft, ...]}`, where a draft's `subject`, `order` and
 *       `equipment` are numbers: indexes into `shared`. Parsers give all the results of one order the
 *       same subject, order and equipment objects; v2 writes each of them once instead of once per
 *       result, which halves the text and the time to stringify and deflate it (a 13-result CBC:
 *       7.7 KB → 4.1 KB).
 *
 * Why: plain `JSON.stringify` is cheap and exact (reads return the same objects), and the JSON of
 * one analyzer message repeats the same keys, codes, times and order data for every result, so
 * level-1 deflate shrinks it ~12x. On this disk, commit cost grows with the pages written.
 */
export const OBS_PLAIN_JSON = 0x00;
export const OBS_DEFLATE_JSON = 0x01;

const DEFLATE_OPTS = { level: 1, strategy: constants.Z_DEFAULT_STRATEGY };

/** Encode the storage JSON text of a draft array (`draftsToJson`). */
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

const SHARED_KEYS = ['subject', 'order', 'equipment'] as const;

/** The storage JSON text (layout v2) of a draft array. Objects are shared by reference identity only. */
export function draftsToJson(drafts: readonly ObservationDraft[]): string {
  const index = new Map<object, number>();
  const shared: object[] = [];
  const rows: Record<string, unknown>[] = new Array(drafts.length);
  for (let i = 0; i < drafts.length; i++) {
    const d = drafts[i];
    const row = Object.assign({}, d) as unknown as Record<string, unknown>;
    for (const k of SHARED_KEYS) {
      const o = d[k];
      if (o === undefined || o === null) continue;
      let n = index.get(o);
      if (n === undefined) {
        n = shared.length;
        shared.push(o);
        index.set(o, n);
      }
      row[k] = n;
    }
    rows[i] = row;
  }
  return JSON.stringify({ v: 2, shared, drafts: rows });
}

/**
 * Drafts from the storage JSON text (layout v1 or v2). With v2, drafts that shared an object when
 * stored share one object again: treat them as read-only.
 */
export function draftsFromJson(json: string): ObservationDraft[] {
  const parsed = JSON.parse(json) as unknown;
  if (Array.isArray(parsed)) return parsed as ObservationDraft[]; // v1
  const doc = parsed as { v?: unknown; shared?: unknown; drafts?: unknown };
  if (doc === null || typeof doc !== 'object' || doc.v !== 2 || !Array.isArray(doc.shared) || !Array.isArray(doc.drafts)) {
    throw new Error('unknown observations layout');
  }
  const shared = doc.shared as object[];
  for (const row of doc.drafts as Record<string, unknown>[]) {
    for (const k of SHARED_KEYS) {
      const n = row[k];
      if (n === undefined) continue;
      if (typeof n !== 'number' || shared[n] === undefined) throw new Error(`observations: bad shared reference in ${k}`);
      row[k] = shared[n];
    }
  }
  return doc.drafts as ObservationDraft[];
}

export function decodeObservations(blob: Buffer | Uint8Array | string): ObservationDraft[] {
  return draftsFromJson(decodeObservationsJson(blob));
}
