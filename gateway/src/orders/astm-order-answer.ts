/**
 * The answer to an ASTM host query (E1394 Q record, protocols.md §2.2 / §2.3 C), taken from the order
 * cache only — never a synchronous HIS call. The ASTM driver turns each item into a P and an O record
 * (O.3 specimen id, O.5 tests joined with the repeat delimiter, O.6 priority, O.7/O.8 times, O.12
 * action code, O.16 specimen type, O.26 = Q) and `'unknown'` into `L|1|I` (or an O record with O.26 Y/Z).
 */
import type { OrderCache } from './order-cache';
import type { CachedOrder, OrderPriority, OrderTest } from './order-types';

export interface AstmQuery {
  /** ASTM Q.3 patient id component (P.3 practice-assigned id); empty/absent = not asked. */
  patientId?: string;
  /** ASTM Q.3 specimen id component(s) (O.3 barcode). */
  specimenIds: string[];
  /** ASTM Q.5 test ids (local codes); absent, empty or `ALL` = every test. */
  tests?: string[];
}

/** One order for the analyzer (one O record under one P record). PHI. */
export interface AstmOrderAnswer {
  orderId: number;
  specimenId: string;
  patientId?: string;
  /** `last^first^middle` (HL7 PID-5 family^given^middle maps 1:1 onto ASTM P.6). */
  patientName?: string;
  birthDate?: string; // YYYYMMDD (P.8)
  sex?: string; // P.9
  /** Analyzer test codes (after `testCodeFor`), in order. */
  tests: string[];
  priority?: OrderPriority;
  /** E1394 O.12: N new specimen, A add tests to an existing specimen, C cancel. */
  actionCode: 'N' | 'A' | 'C';
  /** ASTM timestamps YYYYMMDDHHMMSS in the gateway's local time (O.7, O.8). */
  requestedAt?: string;
  collectedAt?: string;
  specimenType?: string; // O.16
}

/** Default test code for the analyzer: the alternate (local) code when the HIS sent one, else the code. */
export const defaultTestCode = (t: OrderTest): string => t.altCode || t.code;

/**
 * Orders answering one host query, or `'unknown'` when nothing matches (no order for these specimens /
 * this patient, or none of the asked-for tests is ordered).
 *
 * Lookup: `OrderCache.lookup` (specimen ids first; the patient's pending orders only when no specimen
 * matched). Pending orders answer with action code N; cancelled ones with C (their cancelled tests
 * listed) so an analyzer that already has the order drops it. 'A' is never produced here: whether an
 * analyzer already holds the specimen is the driver's knowledge (`OrderCache.downloadedTo`).
 */
export function ordersForAstmQuery(cache: OrderCache, query: AstmQuery, testCodeFor: (test: OrderTest) => string = defaultTestCode): AstmOrderAnswer[] | 'unknown' {
  const specimenIds = query.specimenIds.map((s) => s.trim()).filter((s) => s !== '' && s.toUpperCase() !== 'ALL');
  const patientId = query.patientId?.trim() || undefined;
  if (specimenIds.length === 0 && !patientId) return 'unknown';
  const wanted = (query.tests ?? []).map((t) => t.trim()).filter((t) => t !== '');
  const filter = wanted.length === 0 || wanted.some((t) => t.toUpperCase() === 'ALL') ? undefined : new Set(wanted);

  const out: AstmOrderAnswer[] = [];
  for (const o of cache.lookup({ specimenIds, patientId })) {
    const a = toAstmOrder(o, testCodeFor);
    if (filter) a.tests = a.tests.filter((t) => filter.has(t));
    if (a.tests.length === 0) continue;
    out.push(a);
  }
  return out.length ? out : 'unknown';
}

/** One cached order → the ASTM answer shape (also used by broadcast mode on `pendingSince` results). */
export function toAstmOrder(o: CachedOrder, testCodeFor: (test: OrderTest) => string = defaultTestCode): AstmOrderAnswer {
  const tests: string[] = [];
  for (const t of o.tests) {
    const c = testCodeFor(t);
    if (c && !tests.includes(c)) tests.push(c);
  }
  const a: AstmOrderAnswer = { orderId: o.id, specimenId: o.specimenId, tests, actionCode: o.status === 'cancelled' ? 'C' : 'N' };
  const p = o.patient;
  if (p?.patientId) a.patientId = p.patientId;
  if (p?.name) a.patientName = p.name;
  if (p?.birthDate) a.birthDate = p.birthDate;
  if (p?.sex) a.sex = p.sex;
  if (o.priority) a.priority = o.priority;
  const req = isoToAstm(o.requestedAt);
  if (req) a.requestedAt = req;
  const coll = isoToAstm(o.collectedAt);
  if (coll) a.collectedAt = coll;
  if (o.specimenType) a.specimenType = o.specimenType;
  return a;
}

/**
 * ISO 8601 (as produced by `hl7TimeToIso`) → ASTM `YYYYMMDD[HHMMSS]` local time (E1394 timestamps
 * carry no zone). Without an offset the wall-clock digits are kept as they are; with one the instant is
 * converted to the process's local time zone.
 */
export function isoToAstm(iso: string | undefined): string | undefined {
  if (!iso) return undefined;
  const m = /^(\d{4})(?:-(\d{2}))?(?:-(\d{2}))?(?:T(\d{2}):(\d{2}):(\d{2})(?:\.\d+)?)?(Z|[+-]\d{2}:\d{2})?$/.exec(iso);
  if (!m) return undefined;
  const [, y, mo = '', d = '', h, mi, s, tz] = m;
  if (!h) return `${y}${mo}${d}`;
  if (!tz) return `${y}${mo}${d}${h}${mi}${s}`;
  const t = new Date(iso);
  if (Number.isNaN(t.getTime())) return undefined;
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${p(t.getFullYear(), 4)}${p(t.getMonth() + 1)}${p(t.getDate())}${p(t.getHours())}${p(t.getMinutes())}${p(t.getSeconds())}`;
}
