/**
 * Worker thread entry of the HL7 parse pool (hl7-worker-pool.ts): runs prepareHl7, the same function
 * the receiver calls inline for small messages, on one message at a time and posts the result back.
 * Errors cross as SerializedHl7Error and are revived into the same classes on the main thread.
 *
 * Large result arrays (drafts, withheld parts, orders) are handed over in slices of CHUNK items that
 * the main thread pulls one at a time: deserializing 10,000 drafts at once costs the main thread
 * ~120 ms; in slices its event loop runs between them (issue 10 §1). An object that several items share
 * (the subject, order and equipment of a message's results) crosses once; the slices carry references
 * to it, so the main thread gets the same sharing as inline (the store de-duplicates by identity).
 */
import { parentPort } from 'node:worker_threads';
import { prepareHl7, serializeHl7Error, type Hl7PrepareOptions } from './hl7-worker-parse';

export const CHUNK = 500;

export type Hl7WorkerRequest = { id: number; raw: Uint8Array; opts: Hl7PrepareOptions } | { id: number; pull: string; from: number };

/** The arrays of a result that are sent in slices, by path. */
type Parts = Record<string, unknown[]>;

/** A slice: the items, then [item index, key, shared id] for shared objects first sent here (defs) or sent before (refs). */
export interface Hl7WorkerChunk {
  id: number;
  chunk: unknown[];
  defs: Array<[number, string, number]>;
  refs: Array<[number, string, number]>;
}

let current: { id: number; parts: Parts; shared: Map<object, number>; sent: Set<number> } | undefined;

/** Objects held by more than one item (top-level values), numbered. */
function sharedObjects(parts: Parts): Map<object, number> {
  const seen = new Map<object, number>();
  for (const a of Object.values(parts))
    for (const item of a)
      if (item && typeof item === 'object')
        for (const v of Object.values(item)) if (v && typeof v === 'object') seen.set(v, (seen.get(v) ?? 0) + 1);
  const ids = new Map<object, number>();
  for (const [o, n] of seen) if (n > 1) ids.set(o, ids.size);
  return ids;
}

function slice(a: unknown[], from: number): Omit<Hl7WorkerChunk, 'id'> {
  const c = current as NonNullable<typeof current>;
  const chunk: unknown[] = [];
  const defs: Hl7WorkerChunk['defs'] = [];
  const refs: Hl7WorkerChunk['refs'] = [];
  for (let i = from; i < Math.min(a.length, from + CHUNK); i++) {
    let item = a[i] as Record<string, unknown>;
    if (item && typeof item === 'object' && c.shared.size) {
      let copied = false;
      for (const [k, v] of Object.entries(item)) {
        const id = v && typeof v === 'object' ? c.shared.get(v) : undefined;
        if (id === undefined) continue;
        if (!c.sent.has(id)) {
          c.sent.add(id);
          defs.push([chunk.length, k, id]);
          continue;
        }
        if (!copied) item = { ...item };
        copied = true;
        item[k] = null;
        refs.push([chunk.length, k, id]);
      }
    }
    chunk.push(item);
  }
  return { chunk, defs, refs };
}

function split(r: Record<string, unknown>): Parts {
  const parts: Parts = {};
  const oru = r.oru as Record<string, unknown[]> | undefined;
  const orders = r.orders as Record<string, unknown[]> | undefined;
  for (const [holder, name, keys] of [[oru, 'oru', ['drafts', 'withheld']], [orders, 'orders', ['orders']]] as const) {
    if (!holder) continue;
    for (const k of keys) {
      const a = holder[k];
      if (Array.isArray(a) && a.length > CHUNK) {
        parts[`${name}.${k}`] = a;
        holder[k] = [];
      }
    }
  }
  return parts;
}

parentPort?.on('message', (m: Hl7WorkerRequest) => {
  if ('pull' in m) {
    const a = current && current.id === m.id ? current.parts[m.pull] : undefined;
    const reply: Hl7WorkerChunk = { id: m.id, ...(a ? slice(a, m.from) : { chunk: [], defs: [], refs: [] }) };
    if (a && m.from + CHUNK >= a.length) {
      delete current!.parts[m.pull];
      if (!Object.keys(current!.parts).length) current = undefined;
    }
    parentPort?.postMessage(reply);
    return;
  }
  current = undefined;
  const raw = Buffer.from(m.raw.buffer, m.raw.byteOffset, m.raw.byteLength);
  let reply: unknown;
  try {
    const r = prepareHl7(raw, m.opts);
    if (r.ok) {
      const parts = split(r as unknown as Record<string, unknown>);
      const sizes = Object.fromEntries(Object.entries(parts).map(([k, v]) => [k, v.length]));
      if (Object.keys(parts).length) current = { id: m.id, parts, shared: sharedObjects(parts), sent: new Set() };
      reply = { id: m.id, r, parts: sizes };
    } else reply = { id: m.id, r: { ok: false, header: r.header, error: serializeHl7Error(r.error) } };
  } catch (e) {
    // prepareHl7 does not throw; a failure here is an internal error (AE 207 on the main thread)
    reply = { id: m.id, r: { ok: false, header: undefined, error: { cls: 'error', message: String((e as Error)?.message ?? e) } } };
  }
  parentPort?.postMessage(reply);
});
