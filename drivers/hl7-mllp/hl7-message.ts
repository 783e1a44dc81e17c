/**
 * Small, fast HL7 v2 tokenizer (our own instead of node-hl7-client's parser, for throughput).
 * Segments are split eagerly; fields lazily; components only when asked for.
 * Field numbering follows HL7: for MSH, MSH-1 is the field separator and MSH-2 the encoding
 * characters (HL7 v2.5.1 2.5.4 / 2.15.9.1-2); for other segments field 1 follows the name.
 */
import { ParseError } from '../../gateway/src/contracts/errors';

export interface Hl7Delimiters {
  field: string; // MSH-1, usually |
  component: string; // MSH-2[0], usually ^
  repetition: string; // MSH-2[1], usually ~
  escape: string; // MSH-2[2], usually \
  subcomponent: string; // MSH-2[3], usually &
}

export const STANDARD_DELIMITERS: Hl7Delimiters = { field: '|', component: '^', repetition: '~', escape: '\\', subcomponent: '&' };

const SEGMENT_NAME = /^[A-Z][A-Z0-9]{2}$/; // HL7 v2.5.1 2.5.2: segment ID is three characters

/** How a segment was damaged on the way in (set by parseHl7's recovery; see `parseHl7`). */
export type SegmentDamage = 'truncated' | 'joined';

export class Hl7Segment {
  /** Field values as raw (still escaped) strings, index = HL7 field number; [0] is the segment name. */
  readonly fields: string[];
  /**
   * 'truncated': this segment ran into the next one without a terminator (its end was lost), and was
   * split where the next segment began; 'joined': this segment was split off the end of the previous one.
   */
  damage?: SegmentDamage;
  constructor(
    readonly name: string,
    fields: string[],
    /** 1-based occurrence of this segment name in the message (ERR-2 segment sequence). */
    readonly seq: number,
    /** 1-based position among all segments. */
    readonly position: number,
    private readonly d: Hl7Delimiters,
  ) {
    this.fields = fields;
  }

  /** The message's delimiters (MSH-1, MSH-2). */
  get delimiters(): Hl7Delimiters {
    return this.d;
  }

  /** Raw (escaped) field text, '' when absent. */
  raw(field: number): string {
    return this.fields[field] ?? '';
  }

  /** Number of the last field present. */
  get fieldCount(): number {
    return this.fields.length - 1;
  }

  private repCache: Array<string[] | undefined> | undefined;

  /**
   * Raw repetitions of a field (HL7 v2.5.1 2.5.5 repetition separator). MSH-2 is never split. Split once
   * per field and kept: reading every repetition of a field is linear in its length (issue 10: 20,000
   * repetitions in PID-3 must not cost a split per repetition). Do not mutate the returned array.
   */
  repetitions(field: number): string[] {
    const r = this.raw(field);
    if (r === '') return [];
    if (this.name === 'MSH' && field <= 2) return [r];
    const cache = (this.repCache ??= []);
    let reps = cache[field];
    if (reps === undefined) cache[field] = reps = r.split(this.d.repetition);
    return reps;
  }

  /**
   * Decoded value of one component (1-based) of one repetition (1-based). Without `sub`, the whole
   * component (subcomponent separators kept). Returns '' when absent.
   */
  get(field: number, comp = 1, rep = 1, sub?: number): string {
    let r = this.raw(field);
    if (r === '') return '';
    if (this.name === 'MSH' && field <= 2) return comp === 1 && rep === 1 ? r : '';
    if (rep === 1 && r.indexOf(this.d.repetition) === -1) {
      // common case: one repetition; its components are split once per field and kept
      if (r.indexOf(this.d.component) !== -1) r = this.componentsOf(field, r)[comp - 1] ?? '';
      else if (comp !== 1) return '';
    } else {
      r = this.repetitions(field)[rep - 1] ?? '';
      if (comp !== 1 || r.indexOf(this.d.component) !== -1) r = r.split(this.d.component)[comp - 1] ?? '';
    }
    if (sub !== undefined) r = r.split(this.d.subcomponent)[sub - 1] ?? '';
    return r.indexOf(this.d.escape) === -1 ? r : unescapeHl7(r, this.d);
  }

  private compCache: Array<string[] | undefined> | undefined;

  private componentsOf(field: number, r: string): string[] {
    const cache = (this.compCache ??= []);
    let c = cache[field];
    if (c === undefined) cache[field] = c = r.split(this.d.component);
    return c;
  }

  /** All decoded components of a repetition. */
  components(field: number, rep = 1): string[] {
    const r = this.repetitions(field)[rep - 1];
    if (r === undefined) return [];
    return r.split(this.d.component).map((c) => unescapeHl7(c, this.d));
  }

  /** Location string for ERR-2 / ParseError: `SEG^seq^field` (HL7 v2.5.1 2.A.26 ERL). */
  location(field?: number): string {
    return field === undefined ? `${this.name}^${this.seq}` : `${this.name}^${this.seq}^${field}`;
  }
}

/** A line that is not a segment (bad segment ID): kept aside by a lenient parse, never silently dropped. */
export interface Hl7DamagedLine {
  /** 1-based position among the message's lines. */
  position: number;
  /** The line as received (decoded text). */
  text: string;
  reason: string;
}

export class Hl7Message {
  constructor(
    readonly delimiters: Hl7Delimiters,
    readonly segmentList: Hl7Segment[],
    /** Lines a lenient parse could not read as segments (parseHl7 `lenient`); empty otherwise. */
    readonly damagedLines: Hl7DamagedLine[] = [],
    /** Segment terminator found: 'CR' (standard), 'CRLF' or 'LF' (tolerated on input). */
    readonly terminator: 'CR' | 'CRLF' | 'LF' = 'CR',
  ) {}

  /** All segments with this name (all segments when omitted), in message order. */
  segments(name?: string): Hl7Segment[] {
    return name === undefined ? this.segmentList : this.segmentList.filter((s) => s.name === name);
  }

  /** The n-th (1-based) segment with this name. */
  segment(name: string, occurrence = 1): Hl7Segment | undefined {
    let k = 0;
    for (const s of this.segmentList) if (s.name === name && ++k === occurrence) return s;
    return undefined;
  }

  /** Decoded component value; `seg` is a segment name (first occurrence) or a segment. '' when absent. */
  get(seg: string | Hl7Segment, field: number, comp = 1, rep = 1, sub?: number): string {
    const s = typeof seg === 'string' ? this.segment(seg) : seg;
    return s ? s.get(field, comp, rep, sub) : '';
  }

  /** Field re-serialized with the standard delimiters (|^~\&), e.g. to echo MSH-3 in an ACK. */
  fieldStandard(seg: Hl7Segment | undefined, field: number): string {
    if (!seg) return '';
    const reps = seg.repetitions(field);
    const d = this.delimiters;
    return reps
      .map((r) => r.split(d.component).map((c) => c.split(d.subcomponent).map((sc) => escapeHl7(unescapeHl7(sc, d))).join('&')).join('^'))
      .join('~');
  }
}

export interface ParseHl7Options {
  /**
   * Keep going past damage that is not structural (issue 8: one bad part never costs the good parts):
   * a line that is not a segment is kept in `damagedLines` instead of failing the message, and two
   * segments run together (a lost terminator: `…^LNOBX|37|…`) are split where the second began, both
   * marked (`Hl7Segment.damage`). Without it (strict), both are ParseErrors (Table 0357 100).
   */
  lenient?: boolean;
}

/** Segments that a device may run together when it (or a logger) loses a terminator; recovery only splits before these. */
/**
 * Segments that a device may run together when it (or a logger) loses a terminator. Recovery splits
 * only before one of these, and only when what follows reads like that segment: its set ID (digits),
 * then a field of the expected form (OBX-2 a value type, NTE-2 a comment source).
 */
const RECOVERABLE: Record<string, RegExp> = {
  OBX: /\d{1,4}\|[A-Z]{2,3}\|[^|]/y, // OBX-1 set ID, OBX-2 value type (Table 0125), OBX-3 present
  NTE: /\d{1,4}\|[LPO]?\|/y, // NTE-1 set ID, NTE-2 source of comment (Table 0105)
  OBR: /\d{1,4}\|[^|]*\|[^|]*\|[^|]/y, // OBR-1 set ID, OBR-4 present
};

/**
 * Parse an HL7 v2 message. Segment terminator (HL7 v2.5.1 2.5.1; protocols.md §3.1): CR. When the
 * message holds any CR, CR ends a segment, an LF right after it is part of a CRLF terminator, and a
 * lone LF is data inside a field (kept; outputs escape it as \X0A\). A message with no CR at all is
 * LF-terminated (tolerated on input). Throws ParseError (with location and Table 0357 code) when
 * there is no MSH, bad delimiters, or (strict) a malformed segment.
 */
export function parseHl7(text: string, opts: ParseHl7Options = {}): Hl7Message {
  let start = 0;
  // tolerate a BOM and leading whitespace/newlines before MSH
  while (start < text.length && (text.charCodeAt(start) === 0xfeff || text[start] === '\r' || text[start] === '\n' || text[start] === ' ')) start++;
  if (text.startsWith('MSH', start) === false) {
    // HL7 v2.5.1 2.5.2: every message begins with MSH; Table 0357 100 segment sequence error
    throw new ParseError('message does not start with an MSH segment', { location: 'MSH^1', hl7ErrorCode: 100 });
  }
  const fieldSep = text[start + 3];
  const enc = readEncodingChars(text, start + 4, fieldSep);
  const d: Hl7Delimiters = { field: fieldSep, component: enc[0], repetition: enc[1], escape: enc[2], subcomponent: enc[3] };

  const crMode = text.indexOf('\r', start) !== -1;
  const terminator: 'CR' | 'CRLF' | 'LF' = !crMode ? 'LF' : text.indexOf('\r\n', start) !== -1 ? 'CRLF' : 'CR';
  const segs: Hl7Segment[] = [];
  const damaged: Hl7DamagedLine[] = [];
  const counts = new Map<string, number>();
  const n = text.length;
  let pos = start;
  let lineNo = 0;
  const push = (name: string, parts: string[], damage?: SegmentDamage): Hl7Segment => {
    const seq = (counts.get(name) ?? 0) + 1;
    counts.set(name, seq);
    const seg = new Hl7Segment(name, parts, seq, segs.length + 1, d);
    if (damage) seg.damage = damage;
    segs.push(seg);
    return seg;
  };
  while (pos < n) {
    let end = crMode ? text.indexOf('\r', pos) : text.indexOf('\n', pos);
    if (end === -1) end = n;
    let next = end + 1;
    if (crMode && text.charCodeAt(next) === 10) next++; // CRLF: the LF belongs to the terminator
    if (end > pos) {
      lineNo++;
      const line = text.slice(pos, end);
      const sep = line.indexOf(fieldSep);
      const name = sep === -1 ? line : line.slice(0, sep);
      if (!SEGMENT_NAME.test(name)) {
        const seqNo = segs.length + 1;
        if (!opts.lenient || segs.length === 0) {
          // HL7 v2.5.1 2.5.2 segment ID; Table 0357 100 segment sequence error
          throw new ParseError(`segment ${seqNo}: invalid segment name`, { location: `${sanitizeName(name)}^${seqNo}`, hl7ErrorCode: 100 });
        }
        damaged.push({ position: lineNo, text: line, reason: `line ${lineNo} is not a segment (no valid segment ID)` });
      } else if (name === 'MSH') {
        if (segs.length > 0) {
          throw new ParseError('more than one MSH segment in one message', { location: `MSH^2`, hl7ErrorCode: 100 });
        }
        const parts = line.split(fieldSep);
        parts.splice(1, 0, fieldSep); // MSH-1 is the field separator itself (2.15.9.1)
        push(name, parts);
      } else {
        let rest = line;
        let damage: SegmentDamage | undefined;
        // lenient: a segment that runs into the next (terminator lost), e.g. `OBX|17|NM|704-7^BAS#^LNOBX|37|IS|…`
        while (opts.lenient) {
          const cut = findRunTogether(rest, fieldSep);
          if (cut === -1) break;
          push(rest.slice(0, 3), rest.slice(0, cut).split(fieldSep), damage === 'joined' ? 'joined' : 'truncated');
          rest = rest.slice(cut);
          damage = 'joined';
        }
        push(rest.slice(0, 3), rest.split(fieldSep), damage);
      }
    }
    pos = next;
  }
  return new Hl7Message(d, segs, damaged, terminator);
}

/**
 * Where a second segment begins inside `line` without a terminator: a field that ends in a known
 * segment ID immediately followed by `|<set id>|` (the ID glued to the lost end of the previous
 * field). -1 when none. Only after the segment's own ID and first field.
 */
function findRunTogether(line: string, fs: string): number {
  let best = -1;
  for (const id of Object.keys(RECOVERABLE)) {
    const form = fs === '|' ? RECOVERABLE[id] : new RegExp(RECOVERABLE[id].source.split('\\|').join(escapeRe(fs)), 'y');
    let from = 5;
    for (;;) {
      const k = line.indexOf(id + fs, from);
      if (k === -1 || (best !== -1 && k >= best)) break;
      from = k + 1;
      if (line[k - 1] === fs) continue; // a field that is exactly 'OBX' is data, not a glued segment
      form.lastIndex = k + 4; // sticky: tested in place, no copy of the rest of the line
      if (form.test(line)) {
        best = k;
        break;
      }
    }
  }
  return best;
}

function escapeRe(c: string): string {
  return c.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
}

function readEncodingChars(text: string, at: number, fieldSep: string | undefined): string {
  // HL7 v2.5.1 2.5.4 message delimiters: MSH-1 one char, MSH-2 four chars (a fifth, truncation '#', is v2.7+)
  const bad = (why: string) => new ParseError(`bad delimiters: ${why}`, { location: 'MSH^1^2', hl7ErrorCode: 102 });
  if (!fieldSep || /[A-Za-z0-9\r\n ]/.test(fieldSep)) throw bad('MSH-1 is not a valid field separator');
  const endEnc = text.indexOf(fieldSep, at);
  const enc = endEnc === -1 ? '' : text.slice(at, endEnc);
  if (enc.length < 4 || enc.length > 5) throw bad('MSH-2 must hold 4 encoding characters');
  const set = new Set([fieldSep, ...enc.slice(0, 4)]);
  if (set.size !== 5 || /[A-Za-z0-9\r\n ]/.test(enc)) throw bad('encoding characters must be distinct punctuation');
  return enc;
}

function sanitizeName(name: string): string {
  const s = name.slice(0, 3).replace(/[^A-Za-z0-9]/g, '?');
  return s || '???';
}

/**
 * Decode HL7 escape sequences (HL7 v2.5.1 2.7): \F\ \S\ \T\ \R\ \E\ delimiters, \Xhh..\ hex data,
 * \.br\ line break (2.7.6 formatted text). \H\ \N\ (highlight), \C..\ \M..\ (charset switch) and
 * \Z..\ (local) are dropped; anything unknown is kept verbatim.
 */
export function unescapeHl7(s: string, d: Hl7Delimiters = STANDARD_DELIMITERS): string {
  const e = d.escape;
  if (s.indexOf(e) === -1) return s;
  let out = '';
  let i = 0;
  while (i < s.length) {
    const j = s.indexOf(e, i);
    if (j === -1) {
      out += s.slice(i);
      break;
    }
    const k = s.indexOf(e, j + 1);
    if (k === -1) {
      out += s.slice(i);
      break;
    }
    out += s.slice(i, j);
    const seq = s.slice(j + 1, k);
    switch (seq) {
      case 'F':
        out += d.field;
        break;
      case 'S':
        out += d.component;
        break;
      case 'T':
        out += d.subcomponent;
        break;
      case 'R':
        out += d.repetition;
        break;
      case 'E':
        out += d.escape;
        break;
      case '.br':
        out += '\n';
        break;
      case 'H':
      case 'N':
        break;
      default:
        if (seq[0] === 'X' && /^X([0-9A-Fa-f]{2})+$/.test(seq)) {
          const bytes = Buffer.from(seq.slice(1), 'hex');
          const utf8 = bytes.toString('utf8');
          out += utf8.includes('\ufffd') ? bytes.toString('latin1') : utf8;
        } else if (seq[0] === 'C' || seq[0] === 'M' || seq[0] === 'Z') {
          // charset switch / locally defined escape: dropped
        } else {
          out += e + seq + e;
        }
    }
    i = k + 1;
  }
  return out;
}

const NEEDS_ESCAPE = /[|^~\\&\x00-\x1f\x7f-\x9f]/;

/**
 * Escape a plain value for an HL7 field using the standard delimiters (HL7 v2.5.1 2.7.1). Control
 * characters are never sent raw: CR, LF and the rest become `\Xhh\` (2.7.4 hexadecimal data), so a
 * lone LF that was data stays data. With `formatted` (FT, 2.7.6), an LF becomes the `\.br\` line break.
 */
export function escapeHl7(s: string, opts?: { formatted?: boolean }): string {
  if (!NEEDS_ESCAPE.test(s)) return s;
  let out = '';
  for (let i = 0; i < s.length; i++) {
    const c = s[i];
    switch (c) {
      case '\\':
        out += '\\E\\';
        break;
      case '|':
        out += '\\F\\';
        break;
      case '^':
        out += '\\S\\';
        break;
      case '&':
        out += '\\T\\';
        break;
      case '~':
        out += '\\R\\';
        break;
      default: {
        const code = c.charCodeAt(0);
        if (code >= 0x80 && code <= 0x9f) {
          // C1 controls (U+0080–U+009F) are control characters too: their UTF-8 bytes as hex data (2.7.4)
          out += `\\X${Buffer.from(c, 'utf8').toString('hex').toUpperCase()}\\`;
        } else if (code < 0x20 || code === 0x7f) {
          if (opts?.formatted && c === '\n') out += '\\.br\\';
          else if (opts?.formatted && c === '\r' && s[i + 1] === '\n') {
            out += '\\.br\\';
            i++;
          } else out += `\\X${code.toString(16).toUpperCase().padStart(2, '0')}\\`;
        } else out += c;
      }
    }
  }
  return out;
}

/** Control characters in already-escaped HL7 text (e.g. FT kept as sent) → `\Xhh\` (HL7 v2.5.1 2.7.4). */
export function escapeControls(s: string): string {
  return s.replace(/[\x00-\x1f\x7f-\x9f]/g, (c) => `\\X${Buffer.from(c, 'utf8').toString('hex').toUpperCase()}\\`);
}

/** MSH fields that the ACK builder and the receiver need (re-serialized with standard delimiters). */
export interface Hl7Header {
  sendingApp: string; // MSH-3
  sendingFacility: string; // MSH-4
  receivingApp: string; // MSH-5
  receivingFacility: string; // MSH-6
  timestamp: string; // MSH-7 as sent
  messageType: string; // MSH-9.1
  trigger: string; // MSH-9.2
  structure: string; // MSH-9.3
  controlId: string; // MSH-10
  processingId: string; // MSH-11.1
  version: string; // MSH-12.1
  acceptAckType: string; // MSH-15
  appAckType: string; // MSH-16
  charset: string; // MSH-18
}

/** Read the MSH header of a parsed message. */
export function readHeader(msg: Hl7Message): Hl7Header {
  const msh = msg.segment('MSH');
  if (!msh) throw new ParseError('no MSH segment', { location: 'MSH^1', hl7ErrorCode: 100 });
  return {
    sendingApp: msg.fieldStandard(msh, 3),
    sendingFacility: msg.fieldStandard(msh, 4),
    receivingApp: msg.fieldStandard(msh, 5),
    receivingFacility: msg.fieldStandard(msh, 6),
    timestamp: msh.get(7),
    messageType: msh.get(9, 1),
    trigger: msh.get(9, 2),
    structure: msh.get(9, 3),
    controlId: msh.get(10),
    processingId: msh.get(11),
    version: msh.get(12),
    acceptAckType: msh.get(15),
    appAckType: msh.get(16),
    charset: msh.get(18),
  };
}

/**
 * Best effort: the header of a message whose body does not parse (so an AE can echo MSH-10).
 * Parses only the first line; undefined when even MSH is unusable.
 */
export function peekHeader(text: string): Hl7Header | undefined {
  try {
    const m = /^[\ufeff\r\n ]*(MSH[^\r\n]*)/.exec(text.length > 65536 ? text.slice(0, 65536) : text);
    if (!m) return undefined;
    return readHeader(parseHl7(m[1]));
  } catch {
    return undefined;
  }
}

/**
 * HL7 TS/DTM with the process's local UTC offset: YYYYMMDDHHMMSS+ZZZZ (HL7 v2.5.1 2.A.22; protocols.md §3.2
 * "send +0700"). Deterministic for a given Date and TZ.
 */
export function formatHl7Timestamp(d: Date): string {
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  const off = -d.getTimezoneOffset();
  const sign = off >= 0 ? '+' : '-';
  const a = Math.abs(off);
  return `${p(d.getFullYear(), 4)}${p(d.getMonth() + 1)}${p(d.getDate())}${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}${sign}${p(Math.floor(a / 60))}${p(a % 60)}`;
}
