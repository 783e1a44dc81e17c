/**
 * Host-query answer (protocols.md §2.3 C): H, then P + O per order (O.12 action code, O.26 'Q'),
 * then `L|1|F`; nothing known → H, `L|1|I` (or O.26 Y/Z with noInfoStyle 'order-record').
 * Sent as a new sender session after the analyzer's EOT.
 */
import { foldToAscii } from '../../gateway/src/charset/ascii-fold';
import { DEFAULT_DELIMITERS, escapeValue } from './records';
import { defaultProfile, type AstmProfile } from './profile';
import type { AstmHostQuery } from './results-parser';

export interface AstmOrder {
  specimenId: string;
  patientId?: string;
  /** `family^given^…` as stored; folded to ASCII only when the profile says `asciiFold` (protocols.md §1.4). */
  patientName?: string;
  birthDate?: string; // YYYYMMDD
  sex?: string; // M F U
  /** Test codes: local instrument codes, or mapped codes found in the profile's codeMap (reverse-mapped). */
  tests: string[];
  priority?: string; // O.6: S stat, A ASAP, R routine
  actionCode?: string; // O.12: N new (default), A add, C cancel ...
  requestedAt?: string; // O.7 YYYYMMDDHHMMSS
  collectedAt?: string; // O.8 YYYYMMDDHHMMSS
  specimenType?: string; // O.16 specimen descriptor (SER, WB ...)
}

export interface OrderResponseOptions {
  profile?: AstmProfile;
  now?: Date;
}

function ts(d: Date): string {
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}


/** Records (strings without CR) answering `query`. */
export function buildOrderResponse(query: AstmHostQuery, orders: AstmOrder[] | 'unknown', opts: OrderResponseOptions = {}): string[] {
  const profile = opts.profile ?? defaultProfile();
  const d = DEFAULT_DELIMITERS;
  // ASCII folding only toward an analyzer whose profile needs it (issue 8 part 4); otherwise the text goes
  // as is and the driver encodes it in the profile's encoding (a character it cannot carry is an error)
  const fold = profile.asciiFold ? foldToAscii : (v: string) => v;
  const e = (v: string | undefined): string => escapeValue(fold(v ?? ''), d);
  const template = profile.query.orderTestIdTemplate ?? `${'^'.repeat(profile.records.testIdComponent - 1)}{code}${profile.records.testIdSeparator ?? ''}`;
  const reverse = new Map<string, string>();
  for (const [local, m] of Object.entries(profile.codeMap)) if (!reverse.has(m.code)) reverse.set(m.code, local);
  const testId = (code: string): string => template.replace('{code}', e(profile.codeMap[code] ? code : reverse.get(code) ?? code));
  const testList = (codes: string[]): string => codes.map(testId).join(d.repeat);

  // H.5 sender = us; H.10 receiver = the querying instrument; H.12 P; H.13 version; H.14 time
  const recs: string[] = [`H|\\^&|||${e(profile.query.senderName)}|||||${query.requester ? query.requester.split('^').map(e).join('^') : ''}||P|1|${ts(opts.now ?? new Date())}`];
  const known = orders === 'unknown' ? [] : orders;
  const wanted = query.specimenIds.length ? query.specimenIds : known.map((o) => o.specimenId);
  const missing = wanted.filter((s) => !known.some((o) => o.specimenId === s));
  if (!known.length && profile.query.noInfoStyle === 'terminator') {
    recs.push('L|1|I'); // LIS02 L.3 'I': no information available for the last query
    return recs;
  }
  let p = 0;
  for (const o of known) {
    p++;
    // P.3 practice ID, P.6 name, P.8 DOB, P.9 sex
    recs.push(trimFields(`P|${p}|${e(o.patientId)}|||${(o.patientName ?? '').split('^').map(e).join('^')}||${e(o.birthDate)}|${e(o.sex)}`));
    const tests = o.tests.length ? o.tests : query.tests.filter((t) => t !== 'ALL');
    // O.3 specimen, O.5 tests, O.6 priority, O.7/O.8 times, O.12 action code, O.16 specimen type,
    // O.26 report type 'Q' (response to query) — protocols.md §2.3 C
    recs.push(`O|1|${e(o.specimenId)}||${testList(tests)}|${e(o.priority ?? 'R')}|${e(o.requestedAt)}|${e(o.collectedAt)}||||${e(o.actionCode ?? 'N')}||||${e(o.specimenType)}||||||||||Q`);
  }
  if (profile.query.noInfoStyle === 'order-record') {
    for (const s of missing) {
      p++;
      recs.push(`P|${p}`);
      // O.26 'Y': no order on record for this test/specimen; 'Z': no record of this patient
      const code = query.patientId && !query.specimenIds.length ? 'Z' : 'Y';
      recs.push(`O|1|${e(s)}||${testList(query.tests.filter((t) => t !== 'ALL'))}|R||||||||||||||||||||${code}`);
    }
    if (!known.length && !missing.length) {
      recs.push('P|1');
      recs.push(`O|1|||||R||||||||||||||||||||Z`);
    }
  }
  recs.push('L|1|F'); // LIS02 L.3 'F': last request for information processed
  return recs;
}

function trimFields(rec: string): string {
  return rec.replace(/\|+$/, '');
}
