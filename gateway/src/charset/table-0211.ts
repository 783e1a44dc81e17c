/**
 * HL7 Table 0211 (Alternate character sets), the values of MSH-18 (HL7 v2.5.1 2.15.9.18), mapped
 * to the encodings this gateway decodes (through iconv-lite). Source of the codes: HL7 v2.5.1
 * Table 0211 and the HL7 Terminology code system v2-0211 (which adds 8859/15 in v2.6 and marks
 * JAS2020, JIS X 0202, UNICODE UTF-16/-32 deprecated in v2.9).
 *
 * Matching is case-insensitive and ignores spaces, '-' and '_' (so 'unicode utf-8', 'UNICODE
 * UTF8', 'ISO_IR 100' all match). A few spellings that are not in Table 0211 but are
 * unambiguous and seen from real senders are accepted as aliases (listed in ALIASES).
 */
import type { CharsetName } from './charset';

export interface Table0211Entry {
  /** The code as HL7 spells it. */
  code: string;
  /** The encoding it means, when supported. */
  charset?: CharsetName;
  /** Why it is not supported (iconv-lite has no codec for it, or it cannot be found in an ASCII MSH). */
  unsupported?: string;
}

/** Table 0211, every code (HL7 v2.5.1 Table 0211; 8859/15 from v2.6). */
export const TABLE_0211: readonly Table0211Entry[] = [
  { code: 'ASCII', charset: 'ascii' }, // "default if this field is omitted" (Table 0211 comment)
  { code: '8859/1', charset: 'latin1' },
  { code: '8859/2', charset: 'iso-8859-2' },
  { code: '8859/3', charset: 'iso-8859-3' },
  { code: '8859/4', charset: 'iso-8859-4' },
  { code: '8859/5', charset: 'iso-8859-5' },
  { code: '8859/6', charset: 'iso-8859-6' },
  { code: '8859/7', charset: 'iso-8859-7' },
  { code: '8859/8', charset: 'iso-8859-8' },
  { code: '8859/9', charset: 'iso-8859-9' },
  { code: '8859/15', charset: 'iso-8859-15' },
  { code: 'ISO IR6', charset: 'ascii' }, // ISO-IR-6 = ASCII graphic set
  {
    code: 'ISO IR14',
    unsupported: 'JIS X 0201 (ISO-IR-14) has no codec in iconv-lite',
  },
  {
    code: 'ISO IR87',
    unsupported: 'JIS X 0208 (ISO-IR-87) needs ISO 2022 escape sequences; iconv-lite has no ISO-2022-JP codec',
  },
  {
    code: 'ISO IR159',
    unsupported: 'JIS X 0212 (ISO-IR-159) needs ISO 2022 escape sequences; iconv-lite has no codec for it',
  },
  { code: 'GB 18030-2000', charset: 'gb18030' },
  // KS X 1001 is carried as EUC-KR; iconv-lite decodes EUC-KR with its cp949 (UHC) table, a superset.
  { code: 'KS X 1001', charset: 'euc-kr' },
  {
    code: 'CNS 11643-1992',
    unsupported: 'CNS 11643-1992 (EUC-TW) has no codec in iconv-lite',
  },
  // iconv-lite's big5 is the WHATWG Big5 (cp950 + HKSCS), a superset of Big5.
  { code: 'BIG-5', charset: 'big5' },
  // Deprecated in v2.5 ("replaced by specific Unicode encoding codes"); v2.3.1 senders use it
  // for UTF-8, the only Unicode form whose MSH is ASCII-readable.
  { code: 'UNICODE', charset: 'utf8' },
  { code: 'UNICODE UTF-8', charset: 'utf8' },
  {
    code: 'UNICODE UTF-16',
    unsupported:
      'UTF-16 cannot be declared in an MSH that was read as single bytes; deprecated in HL7 v2.9',
  },
  {
    code: 'UNICODE UTF-32',
    unsupported:
      'UTF-32 cannot be declared in an MSH that was read as single bytes; deprecated in HL7 v2.9',
  },
  {
    code: 'JAS2020',
    unsupported: 'JAS2020 (ISO 2022 subset for Kanji) has no codec in iconv-lite; deprecated in HL7 v2.9',
  },
  {
    code: 'JIS X 0202',
    unsupported: 'JIS X 0202 (ISO 2022 with escapes) has no codec in iconv-lite; deprecated in HL7 v2.9',
  },
];

/**
 * Spellings outside Table 0211 that name one encoding without doubt. Accepted on input only;
 * the gateway always writes Table 0211 codes.
 */
export const ALIASES: Readonly<Record<string, CharsetName>> = {
  'UTF-8': 'utf8',
  'ISO-8859-1': 'latin1',
  'ISO IR100': 'latin1', // DICOM-style ISO-IR registration numbers (ISO_IR 100 …)
  'ISO IR101': 'iso-8859-2',
  'ISO IR109': 'iso-8859-3',
  'ISO IR110': 'iso-8859-4',
  'ISO IR144': 'iso-8859-5',
  'ISO IR127': 'iso-8859-6',
  'ISO IR126': 'iso-8859-7',
  'ISO IR138': 'iso-8859-8',
  'ISO IR148': 'iso-8859-9',
  'ISO IR203': 'iso-8859-15',
  'ISO IR192': 'utf8',
  'ISO IR180': 'tcvn5712', // ISO-IR-180 is the registration of TCVN 5712 (VN2)
  'ISO-8859-2': 'iso-8859-2',
  'ISO-8859-3': 'iso-8859-3',
  'ISO-8859-4': 'iso-8859-4',
  'ISO-8859-5': 'iso-8859-5',
  'ISO-8859-6': 'iso-8859-6',
  'ISO-8859-7': 'iso-8859-7',
  'ISO-8859-8': 'iso-8859-8',
  'ISO-8859-9': 'iso-8859-9',
  'ISO-8859-15': 'iso-8859-15',
  'WINDOWS-1252': 'windows-1252',
  CP1252: 'windows-1252',
  'WINDOWS-1258': 'windows-1258',
  CP1258: 'windows-1258',
  VISCII: 'viscii',
  TCVN3: 'tcvn3',
  'TCVN 5712': 'tcvn5712',
};

/** Canonical lookup key: upper case, no spaces, '-' or '_'. */
function key(v: string): string {
  return v.toUpperCase().replace(/[\s\-_]+/g, '');
}

const BY_KEY = new Map<string, Table0211Entry>();
for (const e of TABLE_0211) BY_KEY.set(key(e.code), e);
for (const [code, charset] of Object.entries(ALIASES)) {
  if (!BY_KEY.has(key(code))) BY_KEY.set(key(code), { code, charset });
}

/** The Table 0211 (or alias) entry for an MSH-18 value, or undefined when the value is unknown. */
export function lookupTable0211(value: string): Table0211Entry | undefined {
  return BY_KEY.get(key(value.trim()));
}

/**
 * Table 0211 value (MSH-18 first repetition) → the charset to decode with, or undefined when the
 * value is unknown or names a character set this gateway cannot decode (see TABLE_0211 for why).
 * Case/space tolerant. 'UNICODE' (v2.3.1) is read as UTF-8.
 * HL7 v2.5.1 2.15.9.18 (MSH-18), Table 0211.
 */
export function charsetFromTable0211(value: string): CharsetName | undefined {
  return lookupTable0211(value)?.charset;
}

/** MSH-18 value the gateway writes on every message it builds: its output is always UTF-8. */
export const MSH18_UTF8 = 'UNICODE UTF-8';

/**
 * The Table 0211 code for a charset (for an MSH-18 written in a device's own charset, e.g. an
 * ACK), or undefined when Table 0211 has no code for it (windows-125x, VISCII, TCVN, Shift_JIS).
 */
export function table0211Code(charset: CharsetName): string | undefined {
  if (charset === 'utf8') return MSH18_UTF8;
  if (charset === 'ascii') return 'ASCII';
  return TABLE_0211.find((e) => e.charset === charset)?.code;
}
