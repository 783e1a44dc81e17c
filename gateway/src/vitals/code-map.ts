/**
 * The MDC <-> LOINC <-> UCUM code map for vital signs (issue 12 §4; protocols.md §4.2). The table is data:
 * firmware-config/code-maps/mdc-loinc-ucum.json (each row says how sure its numbers are: C confirmed from
 * vendor messages, S secondary source, U unconfirmed — check against the NIST RTMMS).
 *
 * An MDC code is written three ways and all are accepted (IEEE 11073-10101: code = partition * 65536 + term):
 *   - the reference id `MDC_PULS_OXIM_SAT_O2`;
 *   - the 32-bit numeric code `150456` (what HL7 OBX-3.1 carries, IHE PCD TF-2 Appendix A);
 *   - `partition::term`, e.g. `2::19384`.
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Coding } from '../contracts/observation';
import { packageRoot } from '../package-root';
import { UcumLhcUtils } from '@lhncbc/ucum-lhc';
import { isValidUcum } from '../units/ucum';

export const MDC_SYSTEM = 'urn:iso:std:iso:11073:10101';
export const LOINC_SYSTEM = 'http://loinc.org';
export const UCUM_SYSTEM = 'http://unitsofmeasure.org';

export type Confidence = 'C' | 'S' | 'U';
export type TermKind = 'metric' | 'object' | 'event' | 'attribute';

interface TermRow {
  refid: string;
  numeric: number;
  kind: TermKind;
  display?: string;
  loinc?: string;
  loincDisplay?: string;
  loincAlso?: string[];
  ucum?: string;
  mdcUnit?: string;
  confidence: Confidence;
  loincConfidence?: Confidence;
}
interface UnitRow {
  refid: string;
  numeric: number;
  ucum: string;
  confidence: Confidence;
}
export interface CodeMapFile {
  terms: TermRow[];
  units: UnitRow[];
  unitSynonyms?: Record<string, string>;
}

/** One vital's codes. `mdc.code` is the numeric code as a string (HL7 OBX-3.1 form), `mdc.display` the reference id. */
export interface VitalLookup {
  mdc: Coding;
  /** Reference id, e.g. MDC_PULS_OXIM_SAT_O2. */
  refid: string;
  /** `partition::term` (IEEE 11073-10101). */
  mdcNumeric?: string;
  /** The LOINC vital-sign code where one exists (FHIR vital-signs profile code first). */
  loinc?: Coding;
  /** Further LOINC codes of the same measurement (e.g. 59408-5 SpO2 by pulse oximetry). */
  loincAlso?: Coding[];
  /** The UCUM unit the metric is normally reported in. */
  ucum?: string;
  /** The MDC unit of the metric for that UCUM unit (e.g. MDC_DIM_RESP_PER_MIN for a respiration rate in /min). */
  mdcUnit?: { refid: string; code: string };
  kind: TermKind;
  confidence: Confidence;
}

export interface UnitLookup {
  ucum: string;
  /** The MDC unit reference id when known (e.g. MDC_DIM_MMHG). */
  mdcUnit?: string;
  /** The MDC numeric unit code when known (e.g. 266016). */
  mdcUnitCode?: string;
}

/** `partition::term` of a 32-bit MDC code. */
export function mdcPartitionTerm(numeric: number): string {
  return `${Math.floor(numeric / 65536)}::${numeric % 65536}`;
}

/** Parse an MDC numeric code written as `150456` or `2::19384`; undefined if it is neither. */
export function parseMdcNumeric(s: string): number | undefined {
  const t = s.trim();
  if (/^\d{1,10}$/.test(t)) {
    const n = Number(t);
    return n <= 0xffffffff ? n : undefined;
  }
  const m = /^(\d{1,5})::(\d{1,5})$/.exec(t);
  if (!m) return undefined;
  const p = Number(m[1]);
  const term = Number(m[2]);
  if (p > 0xffff || term > 0xffff) return undefined;
  return p * 65536 + term;
}

export class CodeMap {
  private readonly byRef = new Map<string, TermRow>();
  private readonly byNum = new Map<number, TermRow>();
  private readonly unitByRef = new Map<string, UnitRow>();
  private readonly unitByNum = new Map<number, UnitRow>();
  private readonly unitByUcum = new Map<string, UnitRow>();
  /** UCUM units with more than one MDC unit (/min: beats, breaths): never mapped back without the metric. */
  private readonly ambiguousUcum = new Set<string>();
  private readonly synonyms = new Map<string, string>();

  /** @throws Error when a row is malformed or two rows share a reference id or numeric code. */
  constructor(file: CodeMapFile) {
    for (const t of file.terms) {
      if (!/^MDC[X]?_[A-Z0-9_]+$/.test(t.refid) || !Number.isInteger(t.numeric)) throw new Error(`code map: bad term row ${t.refid}`);
      if (this.byRef.has(t.refid) || this.byNum.has(t.numeric)) throw new Error(`code map: duplicate term ${t.refid} / ${t.numeric}`);
      this.byRef.set(t.refid, t);
      this.byNum.set(t.numeric, t);
    }
    for (const u of file.units) {
      if (this.unitByRef.has(u.refid) || this.unitByNum.has(u.numeric)) throw new Error(`code map: duplicate unit ${u.refid} / ${u.numeric}`);
      this.unitByRef.set(u.refid, u);
      this.unitByNum.set(u.numeric, u);
      if (this.unitByUcum.has(u.ucum)) this.ambiguousUcum.add(u.ucum);
      else this.unitByUcum.set(u.ucum, u);
    }
    for (const [k, v] of Object.entries(file.unitSynonyms ?? {})) if (!k.startsWith('$')) this.synonyms.set(k, v);
    for (const u of this.ambiguousUcum) this.unitByUcum.delete(u);
    for (const t of file.terms) if (t.mdcUnit && !this.unitByRef.has(t.mdcUnit)) throw new Error(`code map: ${t.refid} names unknown unit ${t.mdcUnit}`);
  }

  /** A vital by reference id, numeric code or `partition::term`; undefined when not in the table. */
  lookupVital(codeOrRefIdOrNumeric: string): VitalLookup | undefined {
    const s = codeOrRefIdOrNumeric.trim();
    let row = this.byRef.get(s);
    if (!row) {
      const n = parseMdcNumeric(s);
      if (n !== undefined) row = this.byNum.get(n);
    }
    if (!row) return undefined;
    return {
      mdc: { system: MDC_SYSTEM, code: String(row.numeric), display: row.refid },
      refid: row.refid,
      mdcNumeric: mdcPartitionTerm(row.numeric),
      loinc: row.loinc ? { system: LOINC_SYSTEM, code: row.loinc, display: row.loincDisplay } : undefined,
      loincAlso: row.loincAlso?.map((c) => ({ system: LOINC_SYSTEM, code: c })),
      ucum: row.ucum,
      mdcUnit: this.metricUnit(row),
      kind: row.kind,
      confidence: row.loinc ? worse(row.confidence, row.loincConfidence) : row.confidence,
    };
  }

  /**
   * A unit as UCUM: an MDC unit (reference id, numeric, `partition::term`), a known device spelling
   * (`mmHg`, `bpm`), or a valid UCUM expression as is. undefined when none of these.
   */
  normalizeUnit(unit: string): UnitLookup | undefined {
    const s = unit.trim();
    if (!s) return undefined;
    let row = this.unitByRef.get(s);
    const n = row ? undefined : parseMdcNumeric(s);
    if (n !== undefined) row = this.unitByNum.get(n);
    if (row) return { ucum: row.ucum, mdcUnit: row.refid, mdcUnitCode: String(row.numeric) };
    // an MDC unit code or reference id not in the table is not UCUM (a bare number is a valid UCUM factor, not a unit)
    if (n !== undefined || /^MDC_DIM_/.test(s)) return undefined;
    const syn = this.synonyms.get(s);
    const ucum = syn ?? (isValidUcum(s) ? s : undefined);
    if (!ucum) return undefined;
    const back = this.unitByUcum.get(ucum);
    return back ? { ucum, mdcUnit: back.refid, mdcUnitCode: String(back.numeric) } : { ucum };
  }

  private metricUnit(row: TermRow): { refid: string; code: string } | undefined {
    const u = row.mdcUnit ? this.unitByRef.get(row.mdcUnit) : row.ucum ? this.unitByUcum.get(row.ucum) : undefined;
    return u ? { refid: u.refid, code: String(u.numeric) } : undefined;
  }

  /** Every term row (for tests and docs). */
  terms(): readonly TermRow[] {
    return [...this.byRef.values()];
  }
}

function worse(a: Confidence, b?: Confidence): Confidence {
  const order: Confidence[] = ['C', 'S', 'U'];
  return b && order.indexOf(b) > order.indexOf(a) ? b : a;
}

let shipped: CodeMap | undefined;

/** The shipped map (firmware-config/code-maps/mdc-loinc-ucum.json), loaded once. */
export function shippedCodeMap(): CodeMap {
  if (!shipped) {
    const p = join(packageRoot(), 'firmware-config', 'code-maps', 'mdc-loinc-ucum.json');
    shipped = new CodeMap(JSON.parse(readFileSync(p, 'utf8')) as CodeMapFile);
  }
  return shipped;
}

/** `shippedCodeMap().lookupVital(...)`: MDC coding, `partition::term`, LOINC where one exists, UCUM unit. */
export function lookupVital(codeOrRefIdOrNumeric: string): VitalLookup | undefined {
  return shippedCodeMap().lookupVital(codeOrRefIdOrNumeric);
}

/**
 * An MDC unit only (IEEE 11073-10101 partition 4, dimensions): its numeric code (e.g. 265987), `4::3843`
 * or its reference id (MDC_DIM_KILO_PASCAL) → UCUM and the MDC unit; undefined for an MDC unit not in the
 * table and for anything that is not an MDC unit (a UCUM string is not looked up here).
 */
export function mdcUnit(idOrRefId: string, map: CodeMap = shippedCodeMap()): UnitLookup | undefined {
  const x = idOrRefId.trim();
  return x && (parseMdcNumeric(x) !== undefined || /^MDC_DIM_/.test(x)) ? map.normalizeUnit(x) : undefined;
}

/** `shippedCodeMap().normalizeUnit(...)`: UCUM (and the MDC unit when known) for an MDC unit, device spelling or UCUM. */
export function normalizeUnit(unit: string): UnitLookup | undefined {
  return shippedCodeMap().normalizeUnit(unit);
}

const fits = new Map<string, boolean>();
let ucumUtils: ReturnType<typeof UcumLhcUtils.getInstance> | undefined;

/**
 * Can a value in UCUM unit `unit` be a value of a metric whose usual UCUM unit is `expected`? True when
 * they are the same or commensurable (UCUM: one converts to the other, e.g. `/min` and `{beats}/min`,
 * `mm[Hg]` and `kPa`, `Cel` and `[degF]`); false for a heart rate in `mm[Hg]` or an SpO2 in `Cel`, a unit
 * that changes the value's meaning. Checked with @lhncbc/ucum-lhc (NLM's UCUM library); cached.
 */
export function unitFitsMetric(unit: string, expected: string): boolean {
  if (unit === expected) return true;
  const k = `${unit}\u0000${expected}`;
  let ok = fits.get(k);
  if (ok === undefined) {
    try {
      ok = (ucumUtils ??= UcumLhcUtils.getInstance()).convertUnitTo(unit, 1, expected).status === 'succeeded';
    } catch {
      ok = false;
    }
    if (fits.size >= 4096) fits.clear();
    fits.set(k, ok);
  }
  return ok;
}
