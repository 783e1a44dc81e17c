/**
 * The JSON numbers of an MQTT payload as the device wrote them (issue 12 §2, result fidelity).
 *
 * JSON.parse reads `36.80` as 36.8 and `120.0` as 120: the device's stated precision (trailing zeros)
 * would be lost, and a value below 5e-324 would silently read as 0. This is a bounded scan of the number
 * lexemes (RFC 8259 §6: `-? int frac? exp?`), strings skipped (§7), in one pass over the text:
 * - a value that reads as 0 although its digits are not all 0 throws (underflow: the meaning would change);
 * - the lexemes whose number does not print back as written (`String(Number(t)) !== t`: a fraction ending in
 *   0, an exponent, `-0`, more digits than a double holds) are kept with their JSON path.
 * The common case (integers, decimals without trailing zeros) is told apart by one native regex test
 * (MAYBE_SPECIAL), without the scan; only a payload that may hold such a lexeme is scanned, paths tracked.
 *
 * The kept text goes to the observation as `decimal` (gateway/src/contracts/observation.ts), in HL7 NM form
 * (HL7 v2.5.1 2.A.47: sign, digits, decimal point, no exponent): an exponent is shifted into the digits
 * (`1.50e2` → `150`, `1.0e-3` → `0.0010`), so every significant digit the device sent is kept.
 */

/** Thrown for a number that would read as 0 although it is not 0 (the caller turns it into a PayloadError). */
export class NumberUnderflow extends Error {
  constructor(readonly lexeme: string) {
    super(`number ${lexeme.slice(0, 32)} is too small for a double and would read as 0`);
  }
}

const enum C {
  QUOTE = 0x22,
  BACKSLASH = 0x5c,
  MINUS = 0x2d,
  PLUS = 0x2b,
  DOT = 0x2e,
  ZERO = 0x30,
  NINE = 0x39,
  E = 0x65,
  UPPER_E = 0x45,
  LBRACE = 0x7b,
  RBRACE = 0x7d,
  LBRACKET = 0x5b,
  RBRACKET = 0x5d,
  COMMA = 0x2c,
  COLON = 0x3a,
}

/** Index after the string whose opening quote is at `i` (RFC 8259 §7: a backslash escapes the next char). */
function stringEnd(text: string, i: number): number {
  for (;;) {
    const q = text.indexOf('"', i + 1);
    if (q < 0) return text.length;
    let b = q - 1;
    while (text.charCodeAt(b) === C.BACKSLASH) b--;
    if ((q - 1 - b) % 2 === 0) return q + 1; // an even number of backslashes: the quote is not escaped
    i = q;
  }
}

/** Index after the number lexeme starting at `i` (valid JSON: the text was accepted by JSON.parse first). */
function numberEnd(text: string, i: number): number {
  let j = i;
  for (; j < text.length; j++) {
    const ch = text.charCodeAt(j);
    if (!((ch >= C.ZERO && ch <= C.NINE) || ch === C.DOT || ch === C.MINUS || ch === C.PLUS || ch === C.E || ch === C.UPPER_E)) break;
  }
  return j;
}

/**
 * Could the lexeme print back differently, or underflow? Cheap and never wrong in the "no" direction:
 * an exponent, a fraction ending in 0, a leading `-0`, or more than 15 digits (a double holds 15 exactly).
 */
function special(text: string, start: number, end: number): boolean {
  let digits = 0;
  let lastFracDigit = -1;
  let inFrac = false;
  for (let j = start; j < end; j++) {
    const ch = text.charCodeAt(j);
    if (ch === C.E || ch === C.UPPER_E) return true;
    if (ch === C.DOT) inFrac = true;
    else if (ch >= C.ZERO && ch <= C.NINE) {
      digits++;
      if (inFrac) lastFracDigit = ch;
    }
  }
  if (lastFracDigit === C.ZERO || digits > 15) return true;
  return text.charCodeAt(start) === C.MINUS && text.charCodeAt(start + 1) === C.ZERO && !inFrac; // "-0"
}

/**
 * Could the text hold a number that `special` would pick? A JSON number ends before `,`, `}`, `]` or
 * whitespace (RFC 8259 §2) and an exponent follows a digit, so one native regex test tells the common case
 * (no fraction ending in 0, no exponent, no `-0`, no 16 digits in a row, a point between them or not)
 * without the scan. It may also match inside a string (then the scan finds nothing to keep); it never
 * misses a number (the property test). Linear: each branch is a fixed-count or single-run match.
 */
const MAYBE_SPECIAL = /\.\d*0[,}\]\s]|\d[eE]|-0[,}\]\s]|\d[\d.]{15}/;
const NONE: ReadonlyMap<string, string> = new Map();
/** Deepest path a kept text may have (payload fields are at `observations/<i>/value`, `alarms/<i>/value`). */
const MAX_PATH_DEPTH = 4;
/** Longest key a kept text's path may hold (payload field names are short). */
const MAX_KEY_LENGTH = 64;

/** The path's key for `keptNumberTexts`, or undefined when no payload field can be there (bounded cost). */
function pathKey(path: ReadonlyArray<string | number>): string | undefined {
  if (path.length > MAX_PATH_DEPTH) return undefined;
  for (const p of path) if (typeof p === 'string' && p.length > MAX_KEY_LENGTH) return undefined;
  return path.join('/');
}

/**
 * Check every number of a JSON text (already accepted by JSON.parse) and return the ones that must keep
 * their text, by JSON path (`observations/3/value`; keys as decoded, array indexes as numbers). A duplicate
 * key keeps only its last value (as JSON.parse). Empty map in the common case (one regex test, no scan).
 * Every number is checked for underflow, but a text is kept only at a path a payload field can have
 * (at most MAX_PATH_DEPTH levels, keys of at most MAX_KEY_LENGTH characters; the validator refuses the
 * rest): a path per number of a deep or long-keyed payload would cost depth × numbers, and long keys
 * sharing a prefix hash alike (a 24 KB publish held the event loop 2.3 s).
 * @throws NumberUnderflow
 */
export function keptNumberTexts(text: string): Map<string, string> {
  if (!MAYBE_SPECIAL.test(text)) return NONE as Map<string, string>;
  // one pass: structure (for the paths), strings skipped, every number checked
  const out = new Map<string, string>();
  const path: Array<string | number> = [];
  const isArray: boolean[] = [];
  let expectKey = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text.charCodeAt(i);
    switch (ch) {
      case C.LBRACE:
        path.push('');
        isArray.push(false);
        expectKey = true;
        continue;
      case C.LBRACKET:
        path.push(0);
        isArray.push(true);
        expectKey = false;
        continue;
      case C.RBRACE:
      case C.RBRACKET:
        path.pop();
        isArray.pop();
        expectKey = false;
        continue;
      case C.COMMA:
        if (isArray[isArray.length - 1]) (path[path.length - 1] as number)++;
        else expectKey = true;
        continue;
      case C.COLON:
        expectKey = false;
        continue;
      case C.QUOTE: {
        const end = stringEnd(text, i);
        if (expectKey) {
          const raw = text.slice(i, end);
          path[path.length - 1] = raw.includes('\\') ? (JSON.parse(raw) as string) : raw.slice(1, -1);
        }
        i = end - 1;
        continue;
      }
    }
    if (ch !== C.MINUS && (ch < C.ZERO || ch > C.NINE)) continue;
    const end = numberEnd(text, i);
    let keep: string | undefined;
    if (special(text, i, end)) {
      const t = text.slice(i, end);
      const n = Number(t);
      if (n === 0 && /[1-9]/.test(t.split(/[eE]/)[0])) throw new NumberUnderflow(t);
      if (String(n) !== t) keep = t;
    }
    // the last duplicate key wins, as in JSON.parse: a plain number after a kept one removes it
    const key = keep !== undefined || out.size ? pathKey(path) : undefined;
    if (key !== undefined) {
      if (keep !== undefined) out.set(key, keep);
      else out.delete(key);
    }
    i = end - 1;
  }
  return out;
}

/**
 * A JSON number lexeme in HL7 NM form (sign, digits, optional point; no exponent), every digit kept:
 * `36.80` stays, `1.50e2` → `150`, `1.500e2` → `150.0`, `2.5E-3` → `0.0025`. Undefined when the
 * exponent is out of any double's range (|exp| > 400: the value was refused or is 0, and the text would
 * be hundreds of zeros).
 */
export function jsonNumberToNm(lexeme: string): string | undefined {
  // a JSON number without exponent is NM already: -?(0|[1-9]\d*)(\.\d+)? (RFC 8259 §6)
  if (!lexeme.includes('e') && !lexeme.includes('E')) return /^-?\d+(\.\d+)?$/.test(lexeme) ? lexeme : undefined;
  const m = /^(-?)(\d+)(?:\.(\d+))?(?:[eE]([+-]?\d+))?$/.exec(lexeme);
  if (!m) return undefined;
  if (m[4] === undefined) return lexeme;
  const exp = Number(m[4]);
  if (!(Math.abs(exp) <= 400)) return undefined;
  const digits = m[2] + (m[3] ?? '');
  const point = m[2].length + exp;
  let body: string;
  if (point <= 0) body = `0.${'0'.repeat(-point)}${digits}`;
  else if (point >= digits.length) body = digits + '0'.repeat(point - digits.length);
  else body = `${digits.slice(0, point)}.${digits.slice(point)}`;
  // integer part without leading zeros (one kept): "000.50" → "0.50"
  body = body.replace(/^0+(?=\d)/, '');
  return m[1] + body;
}
