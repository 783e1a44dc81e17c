/**
 * Vietnamese patient identifiers, typed and checked (protocols.md §7.1; issue 13 §3).
 * - CCCD / personal ID number: 12 digits `PPP G YY RRRRRR` (NĐ 137/2015/NĐ-CP; TT 59/2021/TT-BCA):
 *   PPP province of birth registration, G century + sex, YY birth year. No check digit.
 * - BHXH social insurance number: 10 digits.
 * - BHYT card code: the legacy 15 characters `AA N PP XXXXXXXXXX` (QĐ 1351/QĐ-BHXH) or, since
 *   QĐ 1666/QĐ-BHXH (card form from 01/04/2021), the 10-digit BHXH number alone.
 * - Hospital MRN: any non-empty text without control characters.
 * A bad identifier is reported as a problem (and flagged on the observations by the caller), never dropped.
 */
import type { PatientIdentifier, QualityFlag, Subject } from '../contracts/observation';
import { loadSiteConfig, VN_IDENTIFIER_KINDS, type FhirSiteConfig, type VnIdentifierKind } from './site-config';

/**
 * Province codes of the CCCD (the 63 codes of the 2004 administrative list, 3 digits with a leading 0;
 * TT 07/2016/TT-BCA annex I). Numbers issued before the 2025 province mergers keep these codes.
 */
const CCCD_PROVINCES = new Set(
  [1, 2, 4, 6, 8, 10, 11, 12, 14, 15, 17, 19, 20, 22, 24, 25, 26, 27, 30, 31, 33, 34, 35, 36, 37, 38, 40, 42, 44, 45, 46, 48, 49, 51, 52, 54, 56, 58, 60, 62, 64, 66, 67, 68, 70, 72, 74, 75, 77, 79, 80, 82, 83, 84, 86, 87, 89, 91, 92, 93, 94, 95, 96].map((n) => String(n).padStart(3, '0')),
);

/** Birth year from YYYYMMDD / YYYY-MM-DD / ISO; undefined when not a date. */
function birthYear(birthDate: string | undefined): number | undefined {
  const m = /^(\d{4})/.exec(birthDate?.trim() ?? '');
  return m ? Number(m[1]) : undefined;
}

/**
 * Problems of a CCCD number (empty = valid). With `birthDate` / `sex` (HL7 Table 0001 M/F) the century,
 * year and sex digits are cross-checked (NĐ 137/2015 art. 7: G = 0/1 born 19xx male/female, 2/3 20xx, 4/5 21xx ...).
 */
export function checkCccd(value: string, ctx: { birthDate?: string; sex?: string; now?: number } = {}): string[] {
  if (!/^\d{12}$/.test(value)) return ['CCCD must be 12 digits'];
  const problems: string[] = [];
  if (!CCCD_PROVINCES.has(value.slice(0, 3))) problems.push('CCCD digits 1-3 are not a province code');
  const g = Number(value[3]);
  const year = 1900 + Math.floor(g / 2) * 100 + Number(value.slice(4, 6));
  // a birth year after this year (G 4-9 = 22nd-24th century, or 2/3 with a later YY) is no one's number yet
  if (year > new Date(ctx.now ?? Date.now()).getUTCFullYear()) problems.push('CCCD century/year digits (4-6) give a birth year in the future');
  const born = birthYear(ctx.birthDate);
  if (born !== undefined && born !== year) problems.push('CCCD century/year digits (4-6) do not match the birth date');
  const sex = ctx.sex?.trim().toUpperCase();
  if ((sex === 'M' || sex === 'F') && (g % 2 === 0 ? 'M' : 'F') !== sex) problems.push('CCCD century/sex digit (4) does not match the patient\'s sex');
  return problems;
}

/** BHXH number: 10 digits. */
export function checkBhxh(value: string): string[] {
  return /^\d{10}$/.test(value) ? [] : ['BHXH number must be 10 digits'];
}

/** BHYT card code: `^[A-Z]{2}[1-5]\d{12}$` (legacy, province 01-99) or the 10-digit BHXH number. */
export function checkBhyt(value: string): string[] {
  if (/^\d{10}$/.test(value)) return [];
  if (/^[A-Z]{2}[1-5]\d{12}$/.test(value)) return value.slice(3, 5) === '00' ? ['BHYT card province code (characters 4-5) is 00'] : [];
  return ['BHYT card code must be 15 characters (2 letters, benefit level 1-5, province, BHXH number) or the 10-digit BHXH number'];
}

export function checkMrn(value: string): string[] {
  // eslint-disable-next-line no-control-regex
  return value.trim() && !/[\x00-\x1f]/.test(value) ? [] : ['MRN is empty or holds control characters'];
}

export interface ClassifiedIdentifier {
  /** Known kind, or undefined for an identifier of another (or no) type. */
  kind?: VnIdentifierKind;
  value: string;
  /** FHIR Identifier.system. */
  system: string;
  /** HL7 v2.5.1 Table 0203 code for PID-3 CX-5 ('U' when the source gave none and the kind is unknown). */
  hl7Type: string;
  /** v2-0203 code for FHIR Identifier.type (undefined: no type known). */
  fhirType?: string;
  authority?: string;
  problems: string[];
}

/** The kind whose aliases include this CX-5 type (case-insensitive), else undefined. */
export function kindOfType(type: string | undefined, cfg: FhirSiteConfig = loadSiteConfig()): VnIdentifierKind | undefined {
  const t = (type ?? '').trim().toUpperCase();
  if (!t) return undefined;
  return VN_IDENTIFIER_KINDS.find((k) => cfg.identifiers[k].aliases.some((a) => a.toUpperCase() === t));
}

/** Type and check one patient identifier (PID-3 repetition, ASTM P.3-P.5, MQTT patient id). */
export function classifyIdentifier(p: PatientIdentifier, subject: Pick<Subject, 'birthDate' | 'sex'> = {}, cfg: FhirSiteConfig = loadSiteConfig()): ClassifiedIdentifier {
  const kind = kindOfType(p.type, cfg) ?? kindOfType(p.authority, cfg);
  const value = p.id;
  if (!kind) {
    const t = (p.type ?? '').trim().toUpperCase();
    return { value, system: `${cfg.systems.patientId}${t || 'U'}`, hl7Type: t || 'U', fhirType: t && t !== 'U' ? t : undefined, authority: p.authority, problems: [] };
  }
  const c = cfg.identifiers[kind];
  const problems =
    kind === 'cccd' ? checkCccd(value, subject) : kind === 'bhxh' ? checkBhxh(value) : kind === 'bhyt' ? checkBhyt(value) : checkMrn(value);
  return { kind, value, system: c.system, hl7Type: c.hl7Type, fhirType: c.fhirType, authority: p.authority, problems };
}

/** Every identifier of a subject (patientIds, else patientId untyped), typed and checked. */
export function classifySubject(s: Subject | undefined, cfg: FhirSiteConfig = loadSiteConfig()): ClassifiedIdentifier[] {
  if (!s) return [];
  const ids: PatientIdentifier[] = s.patientIds?.length ? s.patientIds : s.patientId ? [{ id: s.patientId }] : [];
  return ids.map((p) => classifyIdentifier(p, s, cfg));
}

/**
 * Data-quality flags for the bad identifiers of a subject: code 'invalid-identifier' (protocols.md §7.1),
 * location the repetition (`PID^1^3` style is the driver's; here `patientIds[i]`),
 * text without the value (no PHI), original = the identifier as sent.
 */
export function identifierQuality(s: Subject | undefined, cfg: FhirSiteConfig = loadSiteConfig()): QualityFlag[] {
  const out: QualityFlag[] = [];
  classifySubject(s, cfg).forEach((c, i) => {
    if (c.problems.length) out.push({ code: 'invalid-identifier', location: `patientIds[${i}]`, original: c.value, text: `invalid-identifier ${c.kind}: ${c.problems.join('; ')}` });
  });
  return out;
}
