/**
 * HL7 v2.5.1 vocabulary for the test-only ORU^R01 validator (hl7v251-validator.ts).
 *
 * Most tables come from the `hl7-dictionary` package (its `tables` export). That export is one
 * table set for every version, and for a few tables it is not the v2.5.1 content. Those are
 * corrected here, each with the reason. Nothing here comes from the project's drivers/ or
 * gateway/ code.
 */
import { createRequire } from 'node:module';

/** Shape of the parts of `hl7-dictionary` that the validator reads (the package ships no types). */
export interface DictField {
  datatype: string;
  desc: string;
  len?: number;
  /** 1 = optional (conditional fields are also 1 at segment level), 2 = required, 3 = conditional (components). */
  opt: number;
  /** 0 = unbounded, 1 = does not repeat, N = at most N. */
  rep?: number;
  table?: number;
}
export interface DictSegment {
  desc: string;
  fields: DictField[];
}
export interface DictType {
  desc: string;
  subfields?: DictField[];
}
export interface DictMsgNode {
  name: string;
  desc: string;
  min: number;
  /** 0 = unbounded. */
  max: number;
  children?: DictMsgNode[];
  compounds?: DictMsgNode[];
}
export interface DictMessage {
  desc: string;
  name: string;
  segments: { desc: string; segments: DictMsgNode[] };
}
export interface DictTable {
  desc: string;
  values: Record<string, string>;
}
export interface DictVersion {
  segments: Record<string, DictSegment>;
  fields: Record<string, DictType>;
  messages: Record<string, DictMessage>;
}
interface Hl7Dictionary {
  definitions: Record<string, DictVersion>;
  tables: Record<string, DictTable>;
}

// `hl7-dictionary` is CommonJS without type declarations: load it through require and type it here.
const dictionary = createRequire(__filename)('hl7-dictionary') as Hl7Dictionary;

/** v2.5.1 message, segment and data type definitions from `hl7-dictionary`. */
export const V251: DictVersion = dictionary.definitions['2.5.1'];

/** Table number as HL7 writes it: 85 -> "0085". */
export function tableName(no: number): string {
  return `Table ${String(no).padStart(4, '0')}`;
}

/** The dictionary's table, or undefined when it does not carry that table. */
export function dictTable(no: number): DictTable | undefined {
  return dictionary.tables[String(no)];
}

function dictValues(no: number): string[] {
  // The dictionary writes the "no value" row of some tables (e.g. 0078 "No range defined") as the key "null".
  return Object.keys(dictTable(no)?.values ?? {}).filter((k) => k !== 'null');
}

/**
 * HL7 Table 0125 (value type, OBX-2; HL7 v2.5.1 7.4.2.2) as it stands in v2.5.1.
 * The dictionary's 0125 is the v2.6 list, which no longer has CE and TS; v2.5.1 has both, so
 * they are added back. NA and MA are the value types of waveform results (HL7 v2.5.1 7.14).
 */
export const TABLE_0125_V251: ReadonlySet<string> = new Set([...dictValues(125), 'CE', 'TS', 'NA', 'MA']);

/**
 * HL7 Table 0487 (specimen type, SPM-4; HL7 v2.5.1 7.4.3.4). In v2.5.1 it takes in the specimen source
 * codes of Table 0070 (BLD, SER, PLAS, UR, ...). The dictionary keeps those in 0070 only, so the
 * two are joined.
 */
export const TABLE_0487_V251: ReadonlySet<string> = new Set([...dictValues(487), ...dictValues(70)]);

/**
 * HL7 Table 0203 (identifier type, CX-5; HL7 v2.5.1 2.A.14). It also has a pattern row
 * "NNxxx": national identifier, where xxx is the ISO 3166 alpha-3 country code (e.g. NNVNM).
 * Only the pattern is checked, not the country list.
 */
export function inTable0203(v: string): boolean {
  return dictValues(203).includes(v) || /^NN[A-Z]{3}$/.test(v);
}

/**
 * HL7 Table 0396 (coding system, CE/CWE components 3 and 6). It also has pattern rows:
 * "HL7nnnn" (an HL7 table by number, e.g. HL70487) and "99zzz" or "L" (locally defined).
 */
export function inTable0396(v: string): boolean {
  return dictValues(396).includes(v) || /^HL7\d{4}$/.test(v) || /^99[A-Za-z0-9]{3}$/.test(v) || v === 'L';
}

/**
 * Tables whose values the validator does not check against the dictionary even though the field
 * is an ID:
 * - 0191 and 0291 (ED/RP type of data and subtype): senders use MIME types here, and 0291 is open.
 * - 0529 (TS precision): the dictionary does not carry it.
 */
export const UNCHECKED_ID_TABLES: ReadonlySet<number> = new Set([191, 291, 529]);

/**
 * Does the value belong to HL7 table `no`? Uses the v2.5.1 corrections above, otherwise the
 * dictionary. `undefined` when the dictionary does not carry the table, or when the table is in
 * UNCHECKED_ID_TABLES.
 */
export function inTable(no: number, value: string): boolean | undefined {
  if (no === 125) return TABLE_0125_V251.has(value);
  if (no === 487) return TABLE_0487_V251.has(value);
  if (no === 203) return inTable0203(value);
  if (no === 396) return inTable0396(value);
  if (UNCHECKED_ID_TABLES.has(no)) return undefined;
  const t = dictTable(no);
  if (!t) return undefined;
  return dictValues(no).includes(value);
}

/** SN comparator (HL7 v2.5.1 2.A.70.1): empty means "=". */
export const SN_COMPARATORS: ReadonlySet<string> = new Set(['', '<', '>', '<=', '>=', '=', '<>']);
/** SN separator/suffix (HL7 v2.5.1 2.A.70.3). */
export const SN_SEPARATORS: ReadonlySet<string> = new Set(['', '-', '+', '/', '.', ':']);
