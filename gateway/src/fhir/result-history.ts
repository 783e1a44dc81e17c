/**
 * Which earlier result a correction replaces (issue 13 review: a correction after a rerun was dead-lettered,
 * "Conditional PUT matched multiple resources").
 *
 * Rule: a corrected / amended result (HL7 v2.5.1 Table 0085 C, A) or a withdrawal (D, W → entered-in-error)
 * applies to the LATEST earlier result of the same device + specimen + test (+ sub-id) that the gateway
 * stored — the one the analyser sent (or re-sent) last, or the correction already applied to it — never
 * to several at once. Its target is that result's own observation id (`urn:iomt-gateway:observation`,
 * unique per occurrence), so the conditional update matches at most one resource.
 *
 * Read-only: its own SQLite connection on the store file (WAL, committed data only), opened only for a
 * message that holds a correction, and closed again (as gateway/src/http/studies.ts). Called at prepare
 * time, when the outbox entry is built once: a re-delivery sends the same bytes.
 * Search: message_keys (kind 'specimen', indexed) when the result has a specimen id; else the device's last
 * `scanLimit` messages (the result key then comes from the filler / placer order number).
 */
import Database from 'better-sqlite3';
import type { Observation } from '../contracts/observation';
import { decodeObservations } from '../store/codec';
import { resultKey } from './bundle';

/** For a correction: the observation id (`<messageUid>-<seq>`) of the result it replaces; undefined when unknown. */
export type CorrectionTarget = (o: Observation) => string | undefined;

interface Row {
  id: number;
  uid: string;
  device_id: string;
  observations: Buffer;
}

/**
 * Resolve the targets of the corrections among `observations` from the store file `dbFile` (read-only).
 * Returns a lookup (observation → target id). A missing file or an unreadable message gives no target
 * (the bundle then falls back to the conditional update on the result key).
 */
export function correctionTargets(dbFile: string, observations: Observation[], isCorrection: (o: Observation) => boolean, scanLimit = 2000): CorrectionTarget {
  const wanted = observations.filter((o) => isCorrection(o) && resultKey(o));
  const found = new Map<Observation, string>();
  if (!wanted.length) return () => undefined;
  let db: Database.Database;
  try {
    db = new Database(dbFile, { readonly: true, fileMustExist: true });
  } catch {
    return () => undefined;
  }
  try {
    const bySpecimen = db.prepare(
      `SELECT m.id, m.uid, m.device_id, b.observations FROM message_keys k JOIN messages m ON m.id = k.message_id JOIN message_bodies b ON b.message_id = m.id
       WHERE k.kind = 'specimen' AND k.value = ? AND m.device_id = ? AND m.id < ? ORDER BY m.id DESC`,
    );
    const byDevice = db.prepare(`SELECT m.id, m.uid, m.device_id, b.observations FROM messages m JOIN message_bodies b ON b.message_id = m.id WHERE m.device_id = ? AND m.id < ? ORDER BY m.id DESC LIMIT ?`);
    for (const o of wanted) {
      const rk = resultKey(o)!;
      const before = o.messageId ?? Number.MAX_SAFE_INTEGER;
      const sid = o.subject?.specimenId;
      const rows = (sid ? bySpecimen.all(sid, o.deviceId, before) : byDevice.all(o.deviceId, before, scanLimit)) as Row[];
      for (const r of rows) {
        if (r.uid === o.messageUid) continue;
        let drafts;
        try {
          drafts = decodeObservations(r.observations);
        } catch {
          continue; // an unreadable stored message never blocks the correction
        }
        // newest first within the message too: the last OBX of that test in the message the device sent last
        for (let i = drafts.length - 1; i >= 0; i--) {
          const prior = { ...drafts[i], deviceId: r.device_id } as Observation;
          if (resultKey(prior) === rk) {
            found.set(o, `${r.uid}-${i + 1}`);
            break;
          }
        }
        if (found.has(o)) break;
      }
    }
  } finally {
    db.close();
  }
  return (o) => found.get(o);
}
