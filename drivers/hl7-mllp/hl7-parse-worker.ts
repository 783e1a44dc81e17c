/**
 * Worker thread entry of the HL7 parse pool (hl7-worker-pool.ts): runs prepareHl7, the same function
 * the receiver calls inline for small messages, on one message at a time and posts the result back.
 * Errors cross as SerializedHl7Error and are revived into the same classes on the main thread.
 *
 * Large result arrays (drafts, withheld parts, orders) are handed over in slices of CHUNK items that
 * the main thread pulls one at a time: deserializing 10,000 drafts at once costs the main thread
 * ~120 ms; in slices its event loop runs between them (issue 10 §1).
 */
import { parentPort } from 'node:worker_threads';
import { prepareHl7, serializeHl7Error, type Hl7PrepareOptions } from './hl7-worker-parse';

export const CHUNK = 500;

export type Hl7WorkerRequest = { id: number; raw: Uint8Array; opts: Hl7PrepareOptions } | { id: number; pull: string; from: number };

/** The arrays of a result that are sent in slices, by path. */
type Parts = Record<string, unknown[]>;

let current: { id: number; parts: Parts } | undefined;

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
    const chunk = a ? a.slice(m.from, m.from + CHUNK) : [];
    if (a && m.from + CHUNK >= a.length) {
      delete current!.parts[m.pull];
      if (!Object.keys(current!.parts).length) current = undefined;
    }
    parentPort?.postMessage({ id: m.id, chunk });
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
      if (Object.keys(parts).length) current = { id: m.id, parts };
      reply = { id: m.id, r, parts: sizes };
    } else reply = { id: m.id, r: { ok: false, header: r.header, error: serializeHl7Error(r.error) } };
  } catch (e) {
    // prepareHl7 does not throw; a failure here is an internal error (AE 207 on the main thread)
    reply = { id: m.id, r: { ok: false, header: undefined, error: { cls: 'error', message: String((e as Error)?.message ?? e) } } };
  }
  parentPort?.postMessage(reply);
});
