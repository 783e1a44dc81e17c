/**
 * ASTM E1394 / CLSI LIS02 record layer (protocols.md §2). Pure functions; throws ParseError.
 *
 * Field numbering follows the standard: field 1 is the record type letter, so `field(rec, 3)` is
 * O.3 (specimen ID). Delimiters come from the H record, never hard-coded (LIS02 §2.1).
 */
import { ParseError } from '../../gateway/src/contracts/errors';

export interface Delimiters {
  field: string;
  repeat: string;
  component: string;
  escape: string;
}

export const DEFAULT_DELIMITERS: Delimiters = { field: '|', repeat: '\\', component: '^', escape: '&' };

export interface AstmRecord {
  /** Record type letter: H P O R C Q L M S (upper-cased). */
  type: string;
  /** fields[0] is the type letter (field 1); fields[n-1] is field n. Raw, still escaped. */
  fields: string[];
  raw: string;
}

export interface AstmMessage {
  delimiters: Delimiters;
  records: AstmRecord[];
}

/** LIS02 §2.1: the character after `H` is the field delimiter, then repeat, component, escape. */
export function delimitersFromHeader(h: string): Delimiters {
  if (h.length < 5 || h[0].toUpperCase() !== 'H') throw new ParseError('first record is not an H record', { location: 'H^1^1' });
  const d = { field: h[1], repeat: h[2], component: h[3], escape: h[4] };
  const set = new Set([d.field, d.repeat, d.component, d.escape]);
  if (set.size !== 4 || [...set].some((c) => /[A-Za-z0-9\r\n ]/.test(c))) {
    throw new ParseError('H record delimiters are invalid', { location: 'H^1^2' });
  }
  return d;
}

/** Split records (already separated, no CR) into typed records using the H record's delimiters. */
export function parseRecords(lines: string[]): AstmMessage {
  const recs = lines.map(trimCrLf).filter((l) => l.length > 0);
  if (!recs.length) throw new ParseError('empty message');
  const hIdx = recs.findIndex((l) => /^[Hh]/.test(l));
  if (hIdx !== 0) throw new ParseError('message does not start with an H record', { location: 'H^1^1' });
  const delimiters = delimitersFromHeader(recs[0]);
  const records: AstmRecord[] = [];
  for (const raw of recs) {
    const type = raw[0].toUpperCase();
    if (!/^[HPOCRQLMS]$/.test(type)) throw new ParseError(`unknown record type '${printable(type)}'`, { location: `${printable(type)}^${records.length + 1}^1` });
    let fields: string[];
    if (type === 'H') {
      // H.2 holds the delimiter definition itself and is not split
      const rest = raw.slice(5);
      fields = ['H', raw.slice(2, 5), ...(rest.startsWith(delimiters.field) ? rest.slice(1).split(delimiters.field) : rest ? [rest] : [])];
    } else {
      fields = raw.split(delimiters.field);
      fields[0] = type;
    }
    records.push({ type, fields, raw });
  }
  return { delimiters, records };
}

/**
 * `l` without CR/LF at either end. A loop, not `/^[\r\n]+|[\r\n]+$/g`: that regex is quadratic on a
 * long run of line breaks inside a record (issue 10).
 */
function trimCrLf(l: string): string {
  let a = 0;
  let b = l.length;
  while (a < b && (l.charCodeAt(a) === 13 || l.charCodeAt(a) === 10)) a++;
  while (b > a && (l.charCodeAt(b - 1) === 13 || l.charCodeAt(b - 1) === 10)) b--;
  return a === 0 && b === l.length ? l : l.slice(a, b);
}

function printable(c: string): string {
  return /^[\x20-\x7e]$/.test(c) ? c : `0x${c.charCodeAt(0).toString(16)}`;
}

/** Field n (1-based, as in the standard); '' when absent (trailing empty fields may be omitted). */
export function field(rec: AstmRecord, n: number): string {
  return rec.fields[n - 1] ?? '';
}

/**
 * LIS02 §2.1 escapes: `&F&` field, `&S&` component, `&R&` repeat, `&E&` escape, `&Xhhhh&` hex [S].
 * `&H&`/`&N&` (highlight) are removed; `&Z…&` (local) is kept verbatim.
 */
export function unescape(text: string, d: Delimiters): string {
  const e = d.escape;
  if (!text.includes(e)) return text;
  let out = '';
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c !== e) {
      out += c;
      i++;
      continue;
    }
    const end = text.indexOf(e, i + 1);
    if (end < 0) {
      out += text.slice(i);
      break;
    }
    const seq = text.slice(i + 1, end);
    if (seq === 'F') out += d.field;
    else if (seq === 'S') out += d.component;
    else if (seq === 'R') out += d.repeat;
    else if (seq === 'E') out += d.escape;
    else if (seq === 'H' || seq === 'N') out += '';
    else if (/^X([0-9A-Fa-f]{2})+$/.test(seq)) out += Buffer.from(seq.slice(1), 'hex').toString('latin1');
    else {
      out += text.slice(i, end + 1); // unknown: keep verbatim
    }
    i = end + 1;
  }
  return out;
}

/** Repeats of a field value (raw). */
export function repeats(value: string, d: Delimiters): string[] {
  return value === '' ? [] : value.split(d.repeat);
}

/** Components of a field value or repeat, unescaped. */
export function components(value: string, d: Delimiters): string[] {
  return value.split(d.component).map((c) => unescape(c, d));
}

/** Component n (1-based), unescaped; '' when absent. */
export function component(value: string, n: number, d: Delimiters): string {
  return components(value, d)[n - 1] ?? '';
}

/** Whole field text, unescaped (component delimiters kept). */
export function text(rec: AstmRecord, n: number, d: Delimiters): string {
  return unescape(field(rec, n), d);
}

// ---------------------------------------------------------------- typed views

export interface HeaderRecord {
  messageControlId?: string; // H.3
  sender: string[]; // H.5 components (trimmed)
  receiver?: string; // H.10
  processingId?: string; // H.12
  version?: string; // H.13
  timestamp?: string; // H.14
}

export function readHeader(rec: AstmRecord, d: Delimiters): HeaderRecord {
  return {
    messageControlId: text(rec, 3, d).trim() || undefined,
    sender: components(field(rec, 5), d).map((s) => s.trim()),
    receiver: text(rec, 10, d).trim() || undefined,
    processingId: text(rec, 12, d).trim() || undefined,
    version: text(rec, 13, d).trim() || undefined,
    timestamp: text(rec, 14, d).trim() || undefined,
  };
}

export interface QueryRecord {
  /** Q.3 starting range, one entry per repeat: components trimmed. */
  ranges: string[][];
  /** Q.5 test IDs (raw components per repeat). */
  tests: string[][];
  /** Q.13 request information status (O: orders and demographics — the typical host query). */
  status: string;
}

export function readQuery(rec: AstmRecord, d: Delimiters): QueryRecord {
  return {
    ranges: repeats(field(rec, 3), d).map((r) => components(r, d).map((c) => c.trim())),
    tests: repeats(field(rec, 5), d).map((r) => components(r, d)),
    status: text(rec, 13, d).trim(),
  };
}

/** L.3 termination code (N normal, T, R, E, Q, I, F — LIS02 §2.2). */
export function terminationCode(rec: AstmRecord, d: Delimiters): string {
  return text(rec, 3, d).trim();
}

/** Escape a value for emission (inverse of `unescape` for the four delimiters). */
export function escapeValue(v: string, d: Delimiters = DEFAULT_DELIMITERS): string {
  let out = '';
  for (const c of v) {
    if (c === d.escape) out += `${d.escape}E${d.escape}`;
    else if (c === d.field) out += `${d.escape}F${d.escape}`;
    else if (c === d.component) out += `${d.escape}S${d.escape}`;
    else if (c === d.repeat) out += `${d.escape}R${d.escape}`;
    else out += c;
  }
  return out;
}
