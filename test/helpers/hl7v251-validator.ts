/**
 * HL7 v2.5.1 ORU^R01 structure validator for tests.
 *
 * It is independent of the project's own HL7 builder and parser: it imports nothing from
 * drivers/ or gateway/. It splits the message itself (segments on CR; fields, repetitions,
 * components and subcomponents on the separators that MSH-1 and MSH-2 declare). It takes the
 * v2.5.1 segment structure, segment fields, data type components and tables from the
 * `hl7-dictionary` package, with the v2.5.1 corrections in hl7v251-tables.ts.
 *
 * What it checks:
 * - bytes: segments end in CR; no LF and no raw control characters anywhere; well-formed escape
 *   sequences;
 * - MSH;
 * - the ORU_R01 segment grammar;
 * - required fields and components, non-repeating fields, Set IDs;
 * - NM/SI/DT/TM/DTM/TS forms and HL7 (ID) table values;
 * - OBX-5 against OBX-2;
 * - the tables in the brief.
 *
 * Problems read `<where>: <why> (HL7 v2.5.1 <clause>)`. <where> is like `OBX[3]-5(2).1.2`:
 * the 3rd OBX, field 5, repetition 2 (shown only when the field repeats), component 1,
 * subcomponent 2. Values are quoted only for codes and numbers, never for names, ids or text.
 */
import {
  V251,
  SN_COMPARATORS,
  SN_SEPARATORS,
  TABLE_0125_V251,
  TABLE_0487_V251,
  inTable,
  inTable0203,
  tableName,
  dictTable,
  type DictField,
  type DictMsgNode,
} from './hl7v251-tables';

/** Rules that belong to the gateway's output profile rather than to HL7 v2.5.1 itself. */
export interface OruValidationProfile {
  /**
   * MSH-18 must be this character set (issue 8: output is UTF-8 and MSH-18 says so). Default
   * 'UNICODE UTF-8'. null: MSH-18 only has to be empty or in Table 0211.
   */
  charset?: string | null;
  /** Every PID-3 repetition must carry an identifier type (CX-5, Table 0203). Default true (issue 8). */
  requirePid3Type?: boolean;
}

interface Enc {
  field: string;
  comp: string;
  rep: string;
  esc: string;
  sub: string;
}

interface Seg {
  /** Segment ID as written (a leading LF is already reported and removed here). */
  id: string;
  /** 1-based position in the message. */
  pos: number;
  /** `OBX[3]`: third OBX of the message. */
  label: string;
  /** fields[n] = raw text of field n (n >= 1); fields[0] = segment ID. For MSH, [1] is MSH-1, [2] is MSH-2. */
  fields: string[];
}

const HL7_NULL = '""';

// ---------------------------------------------------------------------------------------------
// Small forms

/** HL7 v2.5.1 2.A.47 NM: optional leading sign, digits, optional decimal point. */
const NM_RE = /^[+-]?(\d+\.?\d*|\.\d+)$/;
/** SI (HL7 v2.5.1 2.A): a non-negative integer. */
const SI_RE = /^\d+$/;

function daysIn(year: number, month: number): number {
  return new Date(Date.UTC(year, month, 0)).getUTCDate();
}

function validOffset(z: string | undefined): boolean {
  if (z === undefined) return true;
  const h = Number(z.slice(1, 3));
  const m = Number(z.slice(3, 5));
  return h <= 14 && m <= 59;
}

/** HL7 v2.5.1 2.A.22 DTM: YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ]. */
export function isDtm(v: string): boolean {
  const m = /^(\d{4})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:(\d{2})(?:\.\d{1,4})?)?)?)?)?)?([+-]\d{4})?$/.exec(v);
  if (!m) return false;
  const [, y, mo, d, h, mi, s, z] = m;
  if (mo !== undefined && (Number(mo) < 1 || Number(mo) > 12)) return false;
  if (d !== undefined && (Number(d) < 1 || Number(d) > daysIn(Number(y), Number(mo)))) return false;
  if (h !== undefined && Number(h) > 23) return false;
  if (mi !== undefined && Number(mi) > 59) return false;
  if (s !== undefined && Number(s) > 59) return false;
  return validOffset(z);
}

/** HL7 v2.5.1 2.A.21 DT: YYYY[MM[DD]]. */
export function isDt(v: string): boolean {
  const m = /^(\d{4})(?:(\d{2})(?:(\d{2}))?)?$/.exec(v);
  if (!m) return false;
  const [, y, mo, d] = m;
  if (mo !== undefined && (Number(mo) < 1 || Number(mo) > 12)) return false;
  if (d !== undefined && (Number(d) < 1 || Number(d) > daysIn(Number(y), Number(mo)))) return false;
  return true;
}

/** HL7 v2.5.1 2.A.75 TM: HH[MM[SS[.S[S[S[S]]]]]][+/-ZZZZ]. */
export function isTm(v: string): boolean {
  const m = /^(\d{2})(?:(\d{2})(?:(\d{2})(?:\.\d{1,4})?)?)?([+-]\d{4})?$/.exec(v);
  if (!m) return false;
  const [, h, mi, s, z] = m;
  if (Number(h) > 23) return false;
  if (mi !== undefined && Number(mi) > 59) return false;
  if (s !== undefined && Number(s) > 59) return false;
  return validOffset(z);
}

function show(v: string, max = 24): string {
  const s = v.length > max ? `${v.slice(0, max)}…` : v;
  return `'${s}'`;
}

function hex(c: string): string {
  return `0x${c.charCodeAt(0).toString(16).toUpperCase().padStart(2, '0')}`;
}

// ---------------------------------------------------------------------------------------------
// Escape sequences (HL7 v2.5.1 2.7)

interface EscapeScan {
  problems: string[];
  /** Formatting commands (\.br\ ...): FT only (2.7 formatted text). */
  formatting: boolean;
  /** Highlighting (\H\ \N\): TX, FT, CF only (2.7). */
  highlight: boolean;
}

/** The body of one escape sequence, i.e. what stands between the two escape characters. */
function escapeBodyValid(body: string): 'delim' | 'hex' | 'highlight' | 'format' | 'charset' | 'local' | null {
  if (/^[FSTRE]$/.test(body)) return 'delim'; // \F\ \S\ \T\ \R\ \E\
  if (/^[HN]$/.test(body)) return 'highlight'; // \H\ start, \N\ normal
  if (/^X(?:[0-9A-Fa-f]{2})+$/.test(body)) return 'hex'; // \Xdddd..\: one or more hex pairs
  if (/^C[0-9A-Fa-f]{4}$/.test(body)) return 'charset'; // \Cxxyy\ single-byte charset switch
  if (/^M[0-9A-Fa-f]{4}(?:[0-9A-Fa-f]{2})?$/.test(body)) return 'charset'; // \Mxxyyzz\ multi-byte charset switch
  if (/^Z/.test(body)) return 'local'; // \Zdddd..\ locally defined
  // formatting commands (FT): .sp <n>, .br, .fi, .nf, .in <n>, .ti <n>, .sk <n>, .ce
  if (/^\.(br|fi|nf|ce|sp ?\d*|sk ?\d*|in ?[+-]?\d+|ti ?[+-]?\d+)$/.test(body)) return 'format';
  return null;
}

/** Checks one leaf value (a subcomponent: escape sequences never span a separator). */
function scanEscapes(text: string, enc: Enc, where: string): EscapeScan {
  const out: EscapeScan = { problems: [], formatting: false, highlight: false };
  let i = text.indexOf(enc.esc);
  while (i !== -1) {
    const j = text.indexOf(enc.esc, i + 1);
    if (j === -1) {
      out.problems.push(
        `${where}: unclosed escape sequence at character ${i + 1} (every '${enc.esc}' opens a sequence that a second '${enc.esc}' closes; a literal '${enc.esc}' is written \\E\\; HL7 v2.5.1 2.7)`,
      );
      break;
    }
    const body = text.slice(i + 1, j);
    const kind = escapeBodyValid(body);
    if (!kind) {
      const head = body.length ? `'${body[0]}'` : 'empty';
      out.problems.push(
        `${where}: invalid escape sequence at character ${i + 1} (code ${head}; allowed: \\F\\ \\S\\ \\T\\ \\R\\ \\E\\ \\Xhh..\\ \\H\\ \\N\\ \\Cxxyy\\ \\Mxxyyzz\\ \\Z..\\ and FT formatting commands; HL7 v2.5.1 2.7)`,
      );
    } else if (kind === 'format') out.formatting = true;
    else if (kind === 'highlight') out.highlight = true;
    i = text.indexOf(enc.esc, j + 1);
  }
  return out;
}

/** Unescape the delimiter and hex sequences (for decoding ED data); other sequences are dropped. */
function unescape(text: string, enc: Enc): string {
  if (!text.includes(enc.esc)) return text;
  let out = '';
  let i = 0;
  while (i < text.length) {
    const c = text[i];
    if (c !== enc.esc) {
      out += c;
      i++;
      continue;
    }
    const j = text.indexOf(enc.esc, i + 1);
    if (j === -1) {
      out += text.slice(i);
      break;
    }
    const body = text.slice(i + 1, j);
    const map: Record<string, string> = { F: enc.field, S: enc.comp, T: enc.sub, R: enc.rep, E: enc.esc };
    if (map[body] !== undefined) out += map[body];
    else if (/^X(?:[0-9A-Fa-f]{2})+$/.test(body)) out += Buffer.from(body.slice(1), 'hex').toString('latin1');
    i = j + 1;
  }
  return out;
}

// ---------------------------------------------------------------------------------------------
// Segment grammar (HL7 v2.5.1 7.3.1 ORU_R01, taken from the dictionary)

interface Ancestor {
  name: string;
  id: number;
}
interface MatchResult {
  ok: boolean;
  pos: number;
  assigns: Array<[number, Ancestor[]]>;
  missing: string[];
}

class GrammarMatcher {
  private nextId = 1;
  constructor(private readonly ids: string[]) {}

  private where(pos: number): string {
    return pos < this.ids.length ? `before segment #${pos + 1} (${this.ids[pos]})` : 'at the end of the message';
  }

  /** One occurrence of a node at pos. */
  matchNode(node: DictMsgNode, pos: number, anc: Ancestor[]): MatchResult {
    if (node.compounds) {
      for (const alt of node.compounds) {
        const r = this.matchNode(alt, pos, anc);
        if (r.ok) return r;
      }
      return { ok: false, pos, assigns: [], missing: [] };
    }
    if (node.children) {
      const inner = [...anc, { name: node.name, id: this.nextId++ }];
      const r = this.matchSeq(node.children, pos, inner, node.name);
      // a group occurrence exists only if it took at least one segment; what it lacks is reported
      if (r.pos === pos) return { ok: false, pos, assigns: [], missing: [] };
      return { ok: true, pos: r.pos, assigns: r.assigns, missing: r.missing };
    }
    if (pos < this.ids.length && this.ids[pos] === node.name) return { ok: true, pos: pos + 1, assigns: [[pos, anc]], missing: [] };
    return { ok: false, pos, assigns: [], missing: [] };
  }

  /** A sequence of nodes with their cardinalities (min 0/1; max 0 = unbounded, else treated as an upper bound). */
  matchSeq(nodes: DictMsgNode[], pos: number, anc: Ancestor[], groupName: string): MatchResult {
    const assigns: Array<[number, Ancestor[]]> = [];
    const missing: string[] = [];
    for (const node of nodes) {
      let count = 0;
      while ((node.max === 0 || count < node.max) && pos < this.ids.length) {
        const r = this.matchNode(node, pos, anc);
        if (!r.ok) break;
        pos = r.pos;
        assigns.push(...r.assigns);
        missing.push(...r.missing);
        count++;
      }
      if (count < node.min) {
        const first = firstSegment(node);
        const what = node.children || node.compounds ? `${node.name} group (starting with ${first})` : node.name;
        missing.push(`${this.where(pos)}: required ${what} missing in ${groupName} (segment out of order or absent; ORU_R01, HL7 v2.5.1 7.3.1)`);
      }
    }
    return { ok: true, pos, assigns, missing };
  }
}

function firstSegment(node: DictMsgNode): string {
  if (node.compounds) return node.compounds.map(firstSegment).join('/');
  if (!node.children) return node.name;
  const req = node.children.find((c) => c.min > 0) ?? node.children[0];
  return firstSegment(req);
}

// ---------------------------------------------------------------------------------------------
// Tokenizing

function splitKeep(s: string, sep: string): string[] {
  return s.split(sep);
}

function repsOf(seg: Seg, n: number, enc: Enc): string[] {
  const raw = seg.fields[n] ?? '';
  if (seg.id === 'MSH' && (n === 1 || n === 2)) return [raw];
  return splitKeep(raw, enc.rep);
}

function locOf(seg: Seg, n?: number, rep?: number, repCount = 1, comp?: number, sub?: number): string {
  let s = seg.label;
  if (n === undefined) return s;
  s += `-${n}`;
  if (rep !== undefined && repCount > 1) s += `(${rep})`;
  if (comp !== undefined) s += `.${comp}`;
  if (sub !== undefined) s += `.${sub}`;
  return s;
}

// ---------------------------------------------------------------------------------------------
// The validator

class Validator {
  readonly problems: string[] = [];
  private enc: Enc = { field: '|', comp: '^', rep: '~', esc: '\\', sub: '&' };
  private segs: Seg[] = [];

  constructor(
    private readonly message: string,
    private readonly profile: Required<OruValidationProfile>,
  ) {}

  private add(p: string): void {
    this.problems.push(p);
  }

  run(): string[] {
    if (!this.bytesAndSegments()) return this.problems;
    this.msh();
    this.structure();
    for (const seg of this.segs) this.segment(seg);
    this.obxRules();
    this.pidRules();
    this.spmRules();
    return this.problems;
  }

  // -- bytes, terminators, tokenizing (HL7 v2.5.1 2.5.1 segments end in CR; 2.5.4 delimiters; 2.7 escapes)
  private bytesAndSegments(): boolean {
    const msg = this.message;
    if (!msg.startsWith('MSH')) {
      this.add(`message: does not begin with an MSH segment (HL7 v2.5.1 2.5.2)`);
      return false;
    }
    const lfCount = (msg.match(/\n/g) ?? []).length;
    if (lfCount > 0) {
      const first = msg.indexOf('\n');
      const segNo = msg.slice(0, first).split('\r').length;
      this.add(
        `message: ${lfCount} LF (0x0A) character(s), first in segment #${segNo}; the segment terminator is CR alone and an LF in data must be escaped as \\X0A\\ (HL7 v2.5.1 2.5.1, 2.7)`,
      );
    }
    if (msg.length < 8) {
      this.add(`MSH[1]: too short to hold MSH-1 and MSH-2 (HL7 v2.5.1 2.5.4)`);
      return false;
    }
    const fs = msg[3];
    const encChars = msg.slice(4, msg.indexOf(fs, 4) === -1 ? 8 : msg.indexOf(fs, 4));
    this.enc = {
      field: fs,
      comp: encChars[0] ?? '^',
      rep: encChars[1] ?? '~',
      esc: encChars[2] ?? '\\',
      sub: encChars[3] ?? '&',
    };
    const parts = msg.split('\r');
    if (parts.length > 1 && parts[parts.length - 1] === '') parts.pop(); // a final CR ends the last segment
    const occ = new Map<string, number>();
    parts.forEach((text, i) => {
      const pos = i + 1;
      if (text === '') {
        this.add(`segment #${pos}: empty segment (two CRs in a row; HL7 v2.5.1 2.5.1)`);
        return;
      }
      const clean = text.replace(/^\n+/, ''); // LF already reported above
      const id = clean.slice(0, 3);
      const n = (occ.get(id) ?? 0) + 1;
      occ.set(id, n);
      const label = `${id}[${n}]`;
      if (!/^[A-Z][A-Z0-9]{2}$/.test(id)) this.add(`segment #${pos}: segment ID must be three upper-case letters or digits (HL7 v2.5.1 2.5.2)`);
      if (clean.length > 3 && clean[3] !== fs) this.add(`segment #${pos} (${label}): the segment ID is not followed by the field separator (HL7 v2.5.1 2.5.2)`);
      let fields: string[];
      if (id === 'MSH') {
        const rest = clean.slice(4).split(fs);
        fields = ['MSH', fs, ...rest];
      } else fields = clean.split(fs);
      this.segs.push({ id, pos, label, fields });
    });
    return true;
  }

  // -- MSH (HL7 v2.5.1 2.15.9)
  private msh(): void {
    const msh = this.segs[0];
    const f = (n: number) => msh.fields[n] ?? '';
    if (f(1) !== '|') this.add(`MSH[1]-1: field separator must be '|' (HL7 v2.5.1 2.15.9.1)`);
    if (f(2) !== '^~\\&') this.add(`MSH[1]-2: encoding characters must be '^~\\&' (HL7 v2.5.1 2.15.9.2, 2.5.4)`);
    if (f(9) !== 'ORU^R01^ORU_R01') this.add(`MSH[1]-9: message type must be 'ORU^R01^ORU_R01', found ${show(f(9))} (HL7 v2.5.1 2.15.9.9, 7.3.1)`);
    // an empty MSH-10 is reported by the required-field check
    if (f(10).length > 20) this.add(`MSH[1]-10: message control ID is ${f(10).length} characters, longer than 20 (ST length 20; HL7 v2.5.1 2.15.9.10)`);
    const version = f(12).split(this.enc.comp)[0];
    if (version !== '2.5.1') this.add(`MSH[1]-12: version ID must be '2.5.1', found ${show(version)} (HL7 v2.5.1 2.15.9.12)`);
    const charset = f(18).split(this.enc.rep)[0];
    if (this.profile.charset !== null && charset !== this.profile.charset) {
      this.add(`MSH[1]-18: character set must be '${this.profile.charset}' for the gateway's output, found ${show(charset)} (issue 8; HL7 v2.5.1 2.15.9.18)`);
    }
    // MSH-7 form, MSH-11 Table 0103 and MSH-18 Table 0211 come from the dictionary-driven checks
  }

  // -- ORU_R01 grammar (HL7 v2.5.1 7.3.1)
  private ancestors = new Map<number, Ancestor[]>();
  private structure(): void {
    const def = V251.messages.ORU_R01;
    const ids = this.segs.map((s) => s.id);
    const match = (list: number[]) => new GrammarMatcher(list.map((i) => ids[i])).matchSeq(def.segments.segments, 0, [], 'ORU_R01');
    let kept = this.segs.map((_, i) => i); // indexes into this.segs still in play
    for (let guard = 0; guard <= this.segs.length; guard++) {
      const r = match(kept);
      if (r.pos < kept.length) {
        // The grammar cannot take the segment at r.pos. The culprit is that segment or one shortly
        // before it (a DSC in the middle ends the message early): drop the one whose removal lets
        // the rest match furthest, report it, and match again.
        let drop = r.pos;
        let best = -1;
        for (let k = r.pos; k >= Math.max(1, r.pos - 5); k--) {
          const trial = kept.filter((_, j) => j !== k);
          const reach = match(trial).pos;
          if (reach > best) {
            best = reach;
            drop = k;
          }
        }
        const seg = this.segs[kept[drop]];
        this.add(`segment #${seg.pos} (${seg.label}): unexpected segment ${seg.id} here (out of order or not part of ORU_R01; HL7 v2.5.1 7.3.1)`);
        kept = kept.filter((_, j) => j !== drop);
        continue;
      }
      for (const miss of r.missing) {
        // "before segment #k (X)" refers to positions in the kept list: rewrite to message positions
        this.add(
          miss.replace(/before segment #(\d+) \((\w+)\)/, (_all, k: string, id: string) => {
            const seg = this.segs[kept[Number(k) - 1]];
            return `before segment #${seg.pos} (${id})`;
          }),
        );
      }
      for (const [k, anc] of r.assigns) this.ancestors.set(kept[k], anc);
      break;
    }
    this.setIds();
  }

  // -- Set IDs: 1, 2, 3 ... within the parent group, or across the message (both readings are in use)
  private setIds(): void {
    const parentOf = (i: number, level: string): string => {
      const anc = this.ancestors.get(i) ?? [];
      const a = [...anc].reverse().find((x) => x.name === level);
      return a ? `${a.name}#${a.id}` : '';
    };
    const immediate = (i: number): string => {
      const anc = this.ancestors.get(i) ?? [];
      const a = anc[anc.length - 1];
      return a ? `${a.name}#${a.id}` : '';
    };
    const inGroup = (i: number, name: string) => (this.ancestors.get(i) ?? []).some((a) => a.name === name);
    const rules: Array<{ id: string; key: (i: number) => string; scope: string; filter?: (i: number) => boolean; globalOnly?: boolean; clause: string }> = [
      { id: 'PID', key: () => '', scope: 'the message', globalOnly: true, clause: '3.4.2.1' },
      { id: 'OBR', key: (i) => parentOf(i, 'PATIENT_RESULT'), scope: 'PATIENT_RESULT', clause: '4.5.3.1' },
      { id: 'OBX', key: (i) => parentOf(i, 'ORDER_OBSERVATION'), scope: 'ORDER_OBSERVATION', filter: (i) => !inGroup(i, 'SPECIMEN'), clause: '7.4.2.1' },
      { id: 'OBX', key: (i) => parentOf(i, 'SPECIMEN'), scope: 'SPECIMEN', filter: (i) => inGroup(i, 'SPECIMEN'), clause: '7.4.2.1' },
      { id: 'SPM', key: (i) => parentOf(i, 'ORDER_OBSERVATION'), scope: 'ORDER_OBSERVATION', clause: '7.4.3.1' },
      { id: 'NTE', key: (i) => immediate(i), scope: 'the group of notes', clause: '2.15.10.1' },
    ];
    for (const rule of rules) {
      const occ = this.segs
        .map((s, i) => ({ s, i }))
        .filter(({ s, i }) => s.id === rule.id && this.ancestors.has(i) && (!rule.filter || rule.filter(i)));
      if (occ.length === 0) continue;
      const counters = new Map<string, number>();
      const local: number[] = [];
      occ.forEach(({ i }) => {
        const k = rule.key(i);
        const n = (counters.get(k) ?? 0) + 1;
        counters.set(k, n);
        local.push(n);
      });
      const values = occ.map(({ s }) => s.fields[1] ?? '');
      // a Set ID that is not an SI is reported by the data type check
      if (values.some((v) => v !== '' && !SI_RE.test(v))) continue;
      const fits = (expected: (j: number) => number) => values.every((v, j) => v === '' || Number(v) === expected(j));
      if (fits((j) => local[j])) continue;
      if (!rule.globalOnly && fits((j) => j + 1)) continue;
      const j = values.findIndex((v, jj) => v !== '' && Number(v) !== (rule.globalOnly ? jj + 1 : local[jj]));
      const expected = rule.globalOnly ? j + 1 : local[j];
      this.add(
        `${occ[j].s.label}-1: Set ID is ${values[j]}, expected ${expected} (Set IDs count 1, 2, 3 ... within ${rule.scope}${rule.globalOnly ? '' : ' or across the message'}; HL7 v2.5.1 ${rule.clause})`,
      );
    }
  }

  // -- per segment: characters, escapes, dictionary-driven fields
  private segment(seg: Seg): void {
    const enc = this.enc;
    const def = V251.segments[seg.id];
    const last = seg.fields.length - 1;
    if (def && last > def.fields.length && seg.fields.slice(def.fields.length + 1).some((x) => x !== '')) {
      this.add(`${seg.label}: has field ${last} but ${seg.id} defines ${def.fields.length} fields in v2.5.1 (HL7 v2.5.1 2.5.3)`);
    }
    for (let n = 1; n <= last; n++) {
      const raw = seg.fields[n];
      // raw control characters (HL7 v2.5.1 2.7: write them as \Xhh\); LF is reported once for the message
      const ctl = raw.match(/[\x00-\x09\x0B-\x1F\x7F\x80-\x9F]/g);
      if (ctl) {
        this.add(`${locOf(seg, n)}: raw control character ${hex(ctl[0])}${ctl.length > 1 ? ` (and ${ctl.length - 1} more)` : ''}; control characters must be escaped as \\Xhh\\ (HL7 v2.5.1 2.7)`);
      }
      if (seg.id === 'MSH' && (n === 1 || n === 2)) continue;
      const reps = repsOf(seg, n, enc);
      reps.forEach((r, ri) => {
        r.split(enc.comp).forEach((c, ci) => {
          c.split(enc.sub).forEach((s, si) => {
            const scan = scanEscapes(s, enc, locOf(seg, n, ri + 1, reps.length, ci + 1, si + 1));
            for (const p of scan.problems) this.add(p);
          });
        });
      });
    }
    if (def) this.dictionaryFields(seg, def.fields);
  }

  private dictionaryFields(seg: Seg, defs: DictField[]): void {
    const enc = this.enc;
    defs.forEach((fd, idx) => {
      const n = idx + 1;
      if (seg.id === 'MSH' && (n === 1 || n === 2)) return;
      const raw = seg.fields[n] ?? '';
      if (raw === '') {
        // HL7 v2.5.1 2.5.3.4 usage R: the field must be valued
        if (fd.opt === 2) this.add(`${locOf(seg, n)}: required field missing (${fd.desc}; HL7 v2.5.1 2.5.3.4, ${seg.id} definition)`);
        return;
      }
      if (fd.datatype === 'VARIES') return; // OBX-5: checked against OBX-2 in obxRules
      const reps = repsOf(seg, n, enc);
      if (fd.rep === 1 && reps.length > 1) this.add(`${locOf(seg, n)}: field does not repeat but has ${reps.length} repetitions (${fd.desc}; HL7 v2.5.1 2.5.3.5)`);
      reps.forEach((r, ri) => this.typed(r, fd, 0, (c?: number, s?: number) => locOf(seg, n, ri + 1, reps.length, c, s), [], fd.desc));
    });
  }

  /**
   * Check a value against a dictionary data type. depth 0 = field repetition (components by
   * MSH-2 component separator), 1 = component (subcomponents), 2 = subcomponent.
   */
  private typed(value: string, fd: DictField, depth: number, loc: (c?: number, s?: number) => string, path: number[], desc: string): void {
    if (value === '' || value === HL7_NULL) return;
    const enc = this.enc;
    const where = loc(path[0], path[1]);
    const type = V251.fields[fd.datatype];
    const subs = type?.subfields ?? [];
    if (subs.length > 0 && depth < 2) {
      const parts = value.split(depth === 0 ? enc.comp : enc.sub);
      if (parts.length > subs.length) {
        this.add(`${where}: ${parts.length} ${depth === 0 ? 'components' : 'subcomponents'}, data type ${fd.datatype} has ${subs.length} (HL7 v2.5.1 2.A)`);
      }
      subs.forEach((sd, k) => {
        const part = parts[k] ?? '';
        const sub = [...path, k + 1];
        if (part === '') {
          if (sd.opt === 2) this.add(`${loc(sub[0], sub[1])}: required component missing (${fd.datatype}.${k + 1} ${sd.desc}; HL7 v2.5.1 2.A)`);
          return;
        }
        this.typed(part, sd, depth + 1, loc, sub, sd.desc);
      });
      return;
    }
    if (subs.length > 0) return; // a composite three levels down: HL7 has no separator for it
    // primitive
    const sep = depth === 0 ? enc.comp : depth === 1 ? enc.sub : '';
    if (sep && value.includes(sep)) {
      this.add(`${where}: ${fd.datatype} is a primitive type but the value has ${depth === 0 ? 'components' : 'subcomponents'} (an unescaped separator?; HL7 v2.5.1 2.A)`);
      return;
    }
    this.primitive(value, fd.datatype, fd.table, where, desc);
  }

  private primitive(value: string, datatype: string, table: number | undefined, where: string, desc: string): void {
    switch (datatype) {
      case 'NM':
        if (!NM_RE.test(value)) this.add(`${where}: ${show(value)} is not a valid NM (optional sign, digits, optional decimal point; HL7 v2.5.1 2.A.47)`);
        return;
      case 'SI':
        if (!SI_RE.test(value)) this.add(`${where}: ${show(value)} is not an SI (a non-negative integer; HL7 v2.5.1 2.A)`);
        return;
      case 'DTM':
        if (!isDtm(value)) this.add(`${where}: not a valid DTM YYYY[MM[DD[HH[MM[SS[.S[S[S[S]]]]]]]]][+/-ZZZZ] (${desc}; HL7 v2.5.1 2.A.22)`);
        return;
      case 'DT':
        if (!isDt(value)) this.add(`${where}: not a valid DT YYYY[MM[DD]] (${desc}; HL7 v2.5.1 2.A.21)`);
        return;
      case 'TM':
        if (!isTm(value)) this.add(`${where}: not a valid TM HH[MM[SS[.S[S[S[S]]]]]][+/-ZZZZ] (${desc}; HL7 v2.5.1 2.A.75)`);
        return;
      case 'ID': {
        // ID: value from an HL7-defined table (HL7 v2.5.1 2.A.35)
        if (table === undefined) return;
        const ok = inTable(table, value);
        if (ok === false) this.add(`${where}: ${show(value)} is not in HL7 ${tableName(table)} (${dictTable(table)?.desc ?? desc}; HL7 v2.5.1 2.A.35)`);
        return;
      }
      default:
        return; // ST, TX, FT, IS (user-defined tables): the escape check above is all
    }
  }

  private field(seg: Seg, n: number): string {
    return seg.fields[n] ?? '';
  }

  // -- OBX (HL7 v2.5.1 7.4.2)
  private obxRules(): void {
    const enc = this.enc;
    for (const seg of this.segs.filter((s) => s.id === 'OBX')) {
      const type = this.field(seg, 2);
      const value = this.field(seg, 5);
      // OBX-2 is required when OBX-5 is valued (7.4.2.2); Table 0125 (the generic ID check covers a valued OBX-2)
      if (value !== '' && type === '') this.add(`${locOf(seg, 2)}: value type is required when OBX-5 is valued (HL7 v2.5.1 7.4.2.2)`);
      if (value !== '' && TABLE_0125_V251.has(type)) {
        const reps = value.split(enc.rep);
        reps.forEach((r, ri) => this.obx5(seg, type, r, (c?: number, s?: number) => locOf(seg, 5, ri + 1, reps.length, c, s)));
      }
      // OBX-6 units: a UCUM coding needs a unit code (7.4.2.6); whether it is valid UCUM is checked elsewhere
      const units = this.field(seg, 6).split(enc.comp);
      if (units[2] === 'UCUM' && (units[0] ?? '') === '') this.add(`${locOf(seg, 6, undefined, 1, 1)}: coding system is UCUM but the unit code is empty (HL7 v2.5.1 7.4.2.6)`);
      if (units[5] === 'UCUM' && (units[3] ?? '') === '') this.add(`${locOf(seg, 6, undefined, 1, 4)}: alternate coding system is UCUM but the alternate unit code is empty (HL7 v2.5.1 7.4.2.6)`);
      // OBX-8 abnormal flags: each repetition in Table 0078 (7.4.2.8)
      const flags = this.field(seg, 8);
      if (flags !== '') {
        const reps = flags.split(enc.rep);
        reps.forEach((f, ri) => {
          if (f !== '' && !(inTable(78, f) ?? true)) this.add(`${locOf(seg, 8, ri + 1, reps.length)}: ${show(f)} is not in HL7 Table 0078 (abnormal flags; HL7 v2.5.1 7.4.2.8)`);
        });
      }
    }
  }

  /** OBX-5 conforms to OBX-2 (HL7 v2.5.1 7.4.2.5). */
  private obx5(seg: Seg, type: string, v: string, loc: (c?: number, s?: number) => string): void {
    if (v === '' || v === HL7_NULL) return;
    const enc = this.enc;
    const comps = v.split(enc.comp);
    const where = loc();
    const primitive = ['NM', 'ST', 'TX', 'FT', 'DT', 'TM', 'DTM'];
    if (primitive.includes(type) && (comps.length > 1 || v.includes(enc.sub))) {
      this.add(`${where}: OBX-2 is ${type} (a primitive type) but OBX-5 has components or subcomponents (an unescaped '${enc.comp}' or '${enc.sub}'?; HL7 v2.5.1 2.7, 7.4.2.5)`);
      return;
    }
    if (type !== 'FT' && type !== 'CF') {
      const scan = scanEscapes(v, enc, where);
      if (scan.formatting) this.add(`${where}: formatting commands (\\.br\\, \\.sp\\ ...) are only allowed in FT, OBX-2 is ${type} (HL7 v2.5.1 2.7, 2.A.31)`);
      if (scan.highlight && type !== 'TX') this.add(`${where}: highlighting (\\H\\ \\N\\) is only allowed in TX, FT and CF, OBX-2 is ${type} (HL7 v2.5.1 2.7)`);
    }
    switch (type) {
      case 'NM':
        if (!NM_RE.test(v)) this.add(`${where}: ${show(v)} is not a valid NM (optional sign, digits, optional decimal point; a comparator needs SN; HL7 v2.5.1 2.A.47)`);
        return;
      case 'SN':
        return this.sn(comps, loc);
      case 'ED':
        return this.ed(comps, loc);
      case 'CE':
      case 'CWE':
      case 'CF':
        return this.coded(type, comps, loc);
      case 'DT':
        if (!isDt(v)) this.add(`${where}: not a valid DT YYYY[MM[DD]] (HL7 v2.5.1 2.A.21)`);
        return;
      case 'TM':
        if (!isTm(v)) this.add(`${where}: not a valid TM (HL7 v2.5.1 2.A.75)`);
        return;
      case 'DTM':
        if (!isDtm(v)) this.add(`${where}: not a valid DTM (HL7 v2.5.1 2.A.22)`);
        return;
      case 'TS':
        if (comps.length > 2) this.add(`${where}: TS has 2 components, found ${comps.length} (HL7 v2.5.1 2.A.77)`);
        if (!isDtm(comps[0] ?? '')) this.add(`${loc(1)}: not a valid DTM (TS.1; HL7 v2.5.1 2.A.77, 2.A.22)`);
        return;
      case 'RP':
        if (comps.length > 4) this.add(`${where}: RP has 4 components, found ${comps.length} (HL7 v2.5.1 2.A.65)`);
        if ((comps[0] ?? '') === '') this.add(`${loc(1)}: RP pointer is empty (HL7 v2.5.1 2.A.65)`);
        return;
      default: {
        // other Table 0125 types (AD, CX, XPN, ...): the dictionary's component definitions
        const def: DictField = { datatype: type, desc: `OBX-5 as ${type}`, opt: 1 };
        this.typed(v, def, 0, loc, [], def.desc);
      }
    }
  }

  /** SN: comparator ^ num1 ^ separator/suffix ^ num2 (HL7 v2.5.1 2.A.70). */
  private sn(c: string[], loc: (c?: number, s?: number) => string): void {
    if (c.length > 4) this.add(`${loc()}: SN has 4 components, found ${c.length} (HL7 v2.5.1 2.A.70)`);
    const [cmp = '', n1 = '', sep = '', n2 = ''] = c;
    if (!SN_COMPARATORS.has(cmp)) this.add(`${loc(1)}: SN comparator ${show(cmp)} must be one of <, >, <=, >=, =, <> or empty (HL7 v2.5.1 2.A.70.1)`);
    if (n1 === '') this.add(`${loc(2)}: SN num1 is empty (HL7 v2.5.1 2.A.70.2)`);
    else if (!NM_RE.test(n1)) this.add(`${loc(2)}: SN num1 ${show(n1)} is not a valid NM (HL7 v2.5.1 2.A.70.2, 2.A.47)`);
    if (!SN_SEPARATORS.has(sep)) this.add(`${loc(3)}: SN separator/suffix ${show(sep)} must be one of -, +, /, ., : or empty (HL7 v2.5.1 2.A.70.3)`);
    if (n2 !== '' && !NM_RE.test(n2)) this.add(`${loc(4)}: SN num2 ${show(n2)} is not a valid NM (HL7 v2.5.1 2.A.70.4, 2.A.47)`);
    if (n2 !== '' && sep === '') this.add(`${loc(3)}: SN num2 is valued but the separator is empty (HL7 v2.5.1 2.A.70.3)`);
    // '+' may stand alone as a suffix ("2+"); the other separators join num1 and num2
    if (sep !== '' && sep !== '+' && n2 === '') this.add(`${loc(4)}: SN separator ${show(sep)} needs num2 (HL7 v2.5.1 2.A.70.4)`);
  }

  /** ED: source application ^ type of data ^ data subtype ^ encoding ^ data (HL7 v2.5.1 2.A.24). */
  private ed(c: string[], loc: (c?: number, s?: number) => string): void {
    if (c.length !== 5) this.add(`${loc()}: ED has 5 components, found ${c.length} (HL7 v2.5.1 2.A.24)`);
    const [, typeOfData = '', , encoding = '', data = ''] = c;
    if (typeOfData === '') this.add(`${loc(2)}: ED type of data is required (HL7 v2.5.1 2.A.24.2)`);
    if (!(inTable(299, encoding) ?? ['A', 'Hex', 'Base64'].includes(encoding))) {
      this.add(`${loc(4)}: ED encoding ${show(encoding)} is not in HL7 Table 0299 (A, Hex, Base64; HL7 v2.5.1 2.A.24.4)`);
      return;
    }
    if (data === '') {
      this.add(`${loc(5)}: ED data is required (HL7 v2.5.1 2.A.24.5)`);
      return;
    }
    const d = unescape(data, this.enc);
    if (encoding === 'Base64') {
      const ok = /^[A-Za-z0-9+/]*={0,2}$/.test(d) && d.length % 4 === 0 && Buffer.from(d, 'base64').toString('base64') === d;
      if (!ok) this.add(`${loc(5)}: ED data is not valid Base64 (RFC 4648 alphabet, padded to a multiple of 4; HL7 v2.5.1 2.A.24.5)`);
    } else if (encoding === 'Hex') {
      if (!/^(?:[0-9A-Fa-f]{2})+$/.test(d)) this.add(`${loc(5)}: ED data is not valid Hex (pairs of hex digits; HL7 v2.5.1 2.A.24.5)`);
    } else if (encoding === 'A') {
      if (/[^\x20-\x7E]/.test(d)) this.add(`${loc(5)}: ED data with encoding A must be printable ASCII (HL7 v2.5.1 2.A.24.5)`);
    }
  }

  /** CE / CWE / CF: identifier ^ text ^ coding system ^ alternate triplet [^ CWE 7-9] (HL7 v2.5.1 2.A.8, 2.A.13, 2.A.9). */
  private coded(type: string, c: string[], loc: (c?: number, s?: number) => string): void {
    const max = type === 'CWE' ? 9 : 6;
    if (c.length > max) this.add(`${loc()}: ${type} has ${max} components, found ${c.length} (HL7 v2.5.1 2.A)`);
    const [id = '', text = '', sys = '', altId = '', , altSys = ''] = c;
    if (id === '' && text === '' && altId === '') this.add(`${loc()}: ${type} has neither an identifier nor a text (HL7 v2.5.1 2.A)`);
    if (sys !== '' && id === '') this.add(`${loc(1)}: ${type} names coding system ${show(sys)} but has no identifier (HL7 v2.5.1 2.A)`);
    if (altSys !== '' && altId === '') this.add(`${loc(4)}: ${type} names alternate coding system ${show(altSys)} but has no alternate identifier (HL7 v2.5.1 2.A)`);
    for (const [k, s] of [
      [3, sys],
      [6, altSys],
    ] as const) {
      if (s !== '' && inTable(396, s) === false) this.add(`${loc(k)}: coding system ${show(s)} is not in HL7 Table 0396 (nor HL7nnnn, 99zzz, L; HL7 v2.5.1 2.A)`);
    }
  }

  // -- PID (HL7 v2.5.1 3.4.2)
  private pidRules(): void {
    const enc = this.enc;
    for (const seg of this.segs.filter((s) => s.id === 'PID')) {
      const pid3 = this.field(seg, 3);
      // `""` is the HL7 null (2.5.3): the device sent no identifier; nothing there to type
      if (pid3 !== '' && pid3 !== '""') {
        const reps = pid3.split(enc.rep);
        reps.forEach((r, ri) => {
          const type = r.split(enc.comp)[4] ?? '';
          const where = locOf(seg, 3, ri + 1, reps.length, 5);
          // the generic ID check already reports a type outside Table 0203 (with the NNxxx pattern)
          if (type === '' && this.profile.requirePid3Type) this.add(`${where}: identifier type missing (Table 0203, e.g. MR, NNVNM; the gateway's output profile, issue 8; HL7 v2.5.1 3.4.2.3)`);
          else if (type !== '' && !inTable0203(type) && !this.problems.some((p) => p.startsWith(`${where}:`))) {
            this.add(`${where}: ${show(type)} is not in HL7 Table 0203 (HL7 v2.5.1 3.4.2.3)`);
          }
        });
      }
      // PID-8 administrative sex, Table 0001 (user-defined, but v2.5.1 gives the values; 3.4.2.8)
      const sex = this.field(seg, 8);
      if (sex !== '' && sex !== HL7_NULL && !(inTable(1, sex) ?? true)) this.add(`${locOf(seg, 8)}: ${show(sex)} is not in HL7 Table 0001 (A, F, M, N, O, U; HL7 v2.5.1 3.4.2.8)`);
    }
  }

  // -- SPM (HL7 v2.5.1 7.4.3)
  private spmRules(): void {
    const enc = this.enc;
    for (const seg of this.segs.filter((s) => s.id === 'SPM')) {
      const t = this.field(seg, 4);
      if (t === '') continue; // reported as a required field
      const [code = '', , sys = ''] = t.split(enc.comp);
      if ((sys === '' || sys === 'HL70487') && code !== '' && !TABLE_0487_V251.has(code)) {
        this.add(`${locOf(seg, 4, undefined, 1, 1)}: specimen type ${show(code)} is not in HL7 Table 0487 (HL7 v2.5.1 7.4.3.4)`);
      }
    }
  }
}

/**
 * Validate one ORU^R01 message against HL7 v2.5.1.
 * @param message the message as a string (segments separated by CR; no MLLP framing).
 * @param profile the gateway output rules on top of the standard (defaults: MSH-18 'UNICODE UTF-8', PID-3 types required).
 * @returns the problems, each `<where>: <why> (HL7 v2.5.1 <clause>)`; empty when the message is valid.
 */
export function validateOruR01v251(message: string, profile: OruValidationProfile = {}): string[] {
  const p: Required<OruValidationProfile> = {
    charset: profile.charset === undefined ? 'UNICODE UTF-8' : profile.charset,
    requirePid3Type: profile.requirePid3Type ?? true,
  };
  return new Validator(message, p).run();
}

/** Throw an Error that lists every problem when the message is not a valid HL7 v2.5.1 ORU^R01. */
export function assertValidOruR01v251(message: string, profile?: OruValidationProfile): void {
  const problems = validateOruR01v251(message, profile);
  if (problems.length > 0) {
    throw new Error(`ORU^R01 is not valid HL7 v2.5.1 (${problems.length} problem${problems.length > 1 ? 's' : ''}):\n- ${problems.join('\n- ')}`);
  }
}
