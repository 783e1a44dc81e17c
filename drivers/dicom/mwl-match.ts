/**
 * C-FIND attribute matching for the Modality Worklist (DICOM PS3.4 C.2.2.2, K.6.1.2). Pure functions.
 *
 * - Universal matching (C.2.2.2.3): an empty key matches everything and is returned filled.
 * - Single value matching (C.2.2.2.1): exact, case-sensitive, except PN (below).
 * - Wildcard matching (C.2.2.2.4): `*` any run (also none), `?` one character; not for DA/TM/DT/UI.
 * - Range matching (C.2.2.2.5): DA/TM `a-b`, `a-` (from a), `-b` (up to b), inclusive.
 * - List of UID matching (C.2.2.2.2): UI `uid1\uid2`.
 * - PN (C.2.2.2.1 allows case/accent-insensitive literal matching): DOCUMENTED CHOICE: both sides are
 *   folded to ASCII (Vietnamese tone and vowel marks removed, đ → d) and upper-cased before matching,
 *   so `NGUYEN*` finds `Nguyễn^Văn An` and `nguyễn^văn an` matches too. Wildcards apply to the folded form.
 */
import { foldToAscii } from '../../gateway/src/charset/ascii-fold';

/** The VR of the attributes the worklist matches or returns (PS3.6). Anything else is treated as a string (LO). */
export const MWL_VR: Readonly<Record<string, string>> = {
  SpecificCharacterSet: 'CS',
  AccessionNumber: 'SH',
  ReferringPhysicianName: 'PN',
  PatientName: 'PN',
  PatientID: 'LO',
  IssuerOfPatientID: 'LO',
  PatientBirthDate: 'DA',
  PatientSex: 'CS',
  StudyInstanceUID: 'UI',
  RequestingPhysician: 'PN',
  RequestedProcedureDescription: 'LO',
  RequestedProcedureID: 'SH',
  RequestedProcedurePriority: 'SH',
  AdmissionID: 'LO',
  MedicalAlerts: 'LO',
  PlacerOrderNumberImagingServiceRequest: 'LO',
  FillerOrderNumberImagingServiceRequest: 'LO',
  ScheduledStationAETitle: 'AE',
  ScheduledProcedureStepStartDate: 'DA',
  ScheduledProcedureStepStartTime: 'TM',
  Modality: 'CS',
  ScheduledPerformingPhysicianName: 'PN',
  ScheduledProcedureStepDescription: 'LO',
  ScheduledProcedureStepID: 'SH',
  ScheduledStationName: 'SH',
  ScheduledProcedureStepLocation: 'SH',
  ScheduledProcedureStepStatus: 'CS',
};

/**
 * A query value as a string: dcmjs gives strings, string arrays (multi-valued), PN as
 * `[{ Alphabetic }]` or `[]`, numbers; values may keep their even-length space padding (PS3.5 6.2).
 * Returns '' for an empty (universal) key.
 */
export function keyValue(v: unknown): string {
  if (v === undefined || v === null) return '';
  if (Array.isArray(v)) {
    if (v.length === 0) return '';
    const first = v[0] as unknown;
    if (first && typeof first === 'object' && 'Alphabetic' in (first as object)) return keyValue((first as { Alphabetic?: unknown }).Alphabetic);
    if (v.length > 1 && v.every((x) => typeof x === 'string')) return (v as string[]).map((x) => x.trim()).join('\\');
    return keyValue(first);
  }
  if (typeof v === 'object') {
    if ('Alphabetic' in (v as object)) return keyValue((v as { Alphabetic?: unknown }).Alphabetic);
    return '';
  }
  // trailing space padding and the NUL pad of UI (PS3.5 6.2 / 9.1); leading spaces are not significant either (PS3.5 6.2 SH/LO/CS)
  return String(v).replace(/[\s\0]+$/, '').replace(/^\s+/, '');
}

/** Ranges for DA/TM: [from, to] inclusive, '' = open end; undefined when the value is not a range. */
export function rangeOf(q: string): [string, string] | undefined {
  const i = q.indexOf('-');
  if (i === -1) return undefined;
  return [q.slice(0, i).trim(), q.slice(i + 1).trim()];
}

/** TM normalised for comparison: HHMMSS.FFFFFF with missing parts as zeros (PS3.5 6.2 TM). */
function tmKey(t: string): string {
  const s = t.replace(/:/g, '');
  const [hms, frac = ''] = s.split('.');
  return hms.padEnd(6, '0') + '.' + frac.padEnd(6, '0');
}

const WILD_CACHE = new Map<string, RegExp>();

/** `*`/`?` wildcard (PS3.4 C.2.2.2.4) as an anchored RegExp (cached; other characters literal). */
export function wildcardRegExp(pattern: string, flags = ''): RegExp {
  const key = `${flags}\u0000${pattern}`;
  let re = WILD_CACHE.get(key);
  if (!re) {
    const body = pattern.replace(/[.+^${}()|[\]\\]/g, '\\$&').replace(/\*/g, '[\\s\\S]*').replace(/\?/g, '[\\s\\S]');
    re = new RegExp(`^${body}$`, flags);
    if (WILD_CACHE.size > 1000) WILD_CACHE.clear();
    WILD_CACHE.set(key, re);
  }
  return re;
}

/** PN comparison form: ASCII-folded, upper case, trailing empty components dropped. */
export function pnKey(name: string): string {
  return foldToAscii(name).toUpperCase().replace(/\^+$/, '');
}

/**
 * Does the stored value `have` match the query value `q` for an attribute of VR `vr`? `q` is non-empty
 * (empty keys are universal and never come here). A missing stored value matches no non-empty key,
 * except where the caller decides otherwise (see worklist.ts: station AE from configuration).
 */
export function matches(vr: string, q: string, have: string | undefined): boolean {
  if (have === undefined || have === '') return false;
  switch (vr) {
    case 'DA':
    case 'TM': {
      // C.2.2.2.5 range matching, else single value (no wildcards for dates and times, C.2.2.2.4)
      const key = vr === 'TM' ? tmKey : (s: string) => s;
      const r = rangeOf(q);
      if (!r) return vr === 'TM' ? tmKey(have) === tmKey(q) : have === q;
      const v = key(have);
      return (r[0] === '' || v >= key(r[0])) && (r[1] === '' || v <= key(r[1]));
    }
    case 'UI':
      // C.2.2.2.2 list of UID matching
      return q.split('\\').some((u) => u.trim() === have);
    case 'PN': {
      const qk = pnKey(q);
      const hk = pnKey(have);
      return /[*?]/.test(qk) ? wildcardRegExp(qk).test(hk) : qk === hk;
    }
    default:
      return /[*?]/.test(q) ? wildcardRegExp(q).test(have) : q === have;
  }
}
