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

/**
 * Structural limits per message (issue 10: no input may make the gateway work without bound). Over a
 * limit, parseHl7 throws a ParseError (the receiver answers AE with the reason and quarantines the
 * message). Generous: far above any real device message (an ORU with 10,000 segments is a large
 * microbiology or waveform batch; HL7 v2.5.1 PID-3 has no fixed cardinality, but no site sends
 * 1,000 identifiers; the widest v2.5.1 data types (XPN, XAD, XON) have fewer than 25 components).
 */
export interface Hl7Limits {
  /** Segments per message. Default 10,000. */
  maxSegments: number;
  /** Fields per segment. Default 1,000. */
  maxFields: number;
  /** Repetitions per field (HL7 v2.5.1 2.5.5). Default 1,000. */
  maxRepetitions: number;
  /** Components per field repetition (2.5.6). Default 100. */
  maxComponents: number;
  /** Subcomponents per component (2.5.7). Default 100. */
  maxSubcomponents: number;
}

export const DEFAULT_HL7_LIMITS: Readonly<Hl7Limits> = Object.freeze({
  maxSegments: 10_000,
  maxFields: 1_000,
  maxRepetitions: 1_000,
  maxComponents: 100,
  maxSubcomponents: 100,
});

/** No limits (tests and tools that measure the parser itself). */
export const NO_HL7_LIMITS: Readonly<Hl7Limits> = Object.freeze({
  maxSegments: Infinity,
  maxFields: Infinity,
  maxRepetitions: Infinity,
  maxComponents: Infinity,
  maxSubcomponents: Infinity,
});

export interface ParseHl7Options {
  /** Structural limits; absent ones default to DEFAULT_HL7_LIMITS. */
  limits?: Partial<Hl7Limits>;
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
  const limits: Hl7Limits = opts.limits ? { ...DEFAULT_HL7_LIMITS, ...opts.limits } : DEFAULT_HL7_LIMITS;
  const forms = fieldSep === '|' ? STANDARD_FORMS : recoverableForms(fieldSep);
  const push = (name: string, parts: string[], damage?: SegmentDamage): Hl7Segment => {
    if (segs.length >= limits.maxSegments) {
      // issue 10 limit; Table 0357 100 (the message's segment structure is refused)
      throw new ParseError(`more than ${limits.maxSegments} segments in one message (limit)`, { location: `${name}^${(counts.get(name) ?? 0) + 1}`, hl7ErrorCode: 100 });
    }
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
        checkLimits(line, d, limits, 'MSH', 1, true);
        const parts = line.split(fieldSep);
        parts.splice(1, 0, fieldSep); // MSH-1 is the field separator itself (2.15.9.1)
        push(name, parts);
      } else {
        // lenient: a segment that runs into the next (terminator lost), e.g. `OBX|17|NM|704-7^BAS#^LNOBX|37|IS|…`
        const cuts = opts.lenient ? findRunTogether(line, fieldSep, forms) : [];
        let from = 0;
        let damage: SegmentDamage | undefined;
        for (const cut of cuts) {
          const part = line.slice(from, cut);
          checkLimits(part, d, limits, part.slice(0, 3), (counts.get(part.slice(0, 3)) ?? 0) + 1, false);
          push(part.slice(0, 3), part.split(fieldSep), damage === 'joined' ? 'joined' : 'truncated');
          from = cut;
          damage = 'joined';
        }
        const rest = from === 0 ? line : line.slice(from);
        checkLimits(rest, d, limits, rest.slice(0, 3), (counts.get(rest.slice(0, 3)) ?? 0) + 1, false);
        push(rest.slice(0, 3), rest.split(fieldSep), damage);
      }
    }
    pos = next;
  }
  return new Hl7Message(d, segs, damaged, terminator);
}

/** Sticky forms of RECOVERABLE for a field separator (the standard one precomputed). */
function recoverableForms(fs: string): Map<string, RegExp> {
  const m = new Map<string, RegExp>();
  for (const id of Object.keys(RECOVERABLE)) {
    m.set(id, fs === '|' ? RECOVERABLE[id] : new RegExp(RECOVERABLE[id].source.split('\\|').join(escapeRe(fs)), 'y'));
  }
  return m;
}
const STANDARD_FORMS = recoverableForms('|');

/**
 * Every place where a further segment begins inside `line` without a terminator: a field that ends in
 * a known segment ID immediately followed by `|<set id>|` (the ID glued to the lost end of the
 * previous field). Each cut is at least 5 characters after the previous one (after the segment's own
 * ID and first field). One pass over the line's field separators: linear in the line (issue 10; it
 * used to search the rest of the line again after each cut).
 */
function findRunTogether(line: string, fs: string, forms: Map<string, RegExp>): number[] {
  const cuts: number[] = [];
  let segStart = 0;
  for (let p = line.indexOf(fs, 5); p !== -1; p = line.indexOf(fs, p + 1)) {
    const k = p - 3; // where a glued segment ID would begin
    if (k < segStart + 5) continue;
    if (line[k - 1] === fs) continue; // a field that is exactly 'OBX' is data, not a glued segment
    const form = forms.get(line.slice(k, p));
    if (form === undefined) continue;
    form.lastIndex = p + 1; // sticky: tested in place, no copy of the rest of the line
    if (form.test(line)) {
      cuts.push(k);
      segStart = k;
    }
  }
  return cuts;
}

/**
 * Throws a ParseError when one segment exceeds the fields / repetitions / components / subcomponents
 * limits (issue 10). One pass over the line's characters; the delimiters never occur inside an escape
 * sequence (HL7 v2.5.1 2.7), so counting them raw is exact. For MSH, MSH-1 and MSH-2 (the delimiters
 * themselves) are skipped. Table 0357 102 (the field does not have the structure of a data type).
 */
function checkLimits(line: string, d: Hl7Delimiters, l: Hl7Limits, name: string, seq: number, msh: boolean): void {
  const fs = d.field.charCodeAt(0);
  const rs = d.repetition.charCodeAt(0);
  const cs = d.component.charCodeAt(0);
  const ss = d.subcomponent.charCodeAt(0);
  let i = 0;
  let field = 0; // HL7 field number of the text at i
  if (msh) {
    // `MSH|^~\&|`: MSH-1 is the separator, MSH-2 the encoding characters; MSH-3 begins after the second separator
    i = line.indexOf(d.field, 4);
    if (i === -1) return;
    i++;
    field = 3;
  } else {
    i = line.indexOf(d.field);
    if (i === -1) return;
    i++;
    field = 1;
  }
  let reps = 1;
  let comps = 1;
  let subs = 1;
  const over = (what: string, max: number): ParseError =>
    new ParseError(`${name}-${field} has more than ${max} ${what} (limit)`, { location: `${name}^${seq}^${field}`, hl7ErrorCode: 102 });
  for (const n = line.length; i < n; i++) {
    const c = line.charCodeAt(i);
    if (c === fs) {
      field++;
      if (field > l.maxFields) {
        throw new ParseError(`${name} has more than ${l.maxFields} fields (limit)`, { location: `${name}^${seq}^${field}`, hl7ErrorCode: 102 });
      }
      reps = comps = subs = 1;
    } else if (c === rs) {
      if (++reps > l.maxRepetitions) throw over('repetitions', l.maxRepetitions);
      comps = subs = 1;
    } else if (c === cs) {
      if (++comps > l.maxComponents) throw over('components in one repetition', l.maxComponents);
      subs = 1;
    } else if (c === ss) {
      if (++subs > l.maxSubcomponents) throw over('subcomponents in one component', l.maxSubcomponents);
    }
  }
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
    return readHeader(parseHl7(m[1], { limits: NO_HL7_LIMITS })); // the line is capped at 64 KiB above; the AE still echoes MSH-10
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
