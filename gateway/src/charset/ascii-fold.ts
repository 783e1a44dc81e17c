/**
 * ASCII folding for devices whose profile says they only take ASCII (issue 8 part 4:
 * "ASCII folding happens only toward an analyzer whose profile needs it"). Never applied to
 * what the gateway stores or forwards: only to text encoded for such a device (encodeFor with
 * `asciiFold`).
 *
 * Folding uses canonical decomposition (NFD) only, never compatibility decomposition (NFKD):
 * NFKD would turn `10⁹/L` into `109/L` and `m²` into `m2`, which changes a value's meaning.
 */

/** Letters and punctuation that NFD does not decompose, with their conventional ASCII spelling. */
const SPECIAL: Readonly<Record<string, string>> = {
  // Vietnamese: đ/Đ (d with stroke) has no canonical decomposition.
  'đ': 'd', 'Đ': 'D',
  // Other Latin letters without a decomposition.
  'ð': 'd', 'Ð': 'D',
  'ø': 'o', 'Ø': 'O',
  'ł': 'l', 'Ł': 'L',
  'ß': 'ss', 'ẞ': 'SS',
  'æ': 'ae', 'Æ': 'AE',
  'œ': 'oe', 'Œ': 'OE',
  'þ': 'th', 'Þ': 'TH',
  'ħ': 'h', 'Ħ': 'H',
  'ı': 'i',
  'ŀ': 'l', 'Ŀ': 'L',
  'ŧ': 't', 'Ŧ': 'T',
  'ŋ': 'ng', 'Ŋ': 'NG',
  'ĸ': 'q',
  'ſ': 's',
  'ƀ': 'b', 'Ɓ': 'B',
  'ƒ': 'f',
  'ɨ': 'i', 'Ɨ': 'I',
  'ʉ': 'u',
  // Micro sign and Greek mu: the ASCII form of µmol/L is umol/L (the UCUM spelling).
  'µ': 'u', 'μ': 'u',
  // Typographic punctuation an ASCII device cannot show.
  '\u00a0': ' ', // no-break space
  '\u2018': "'", '\u2019': "'", '\u201a': "'", '\u201b': "'",
  '\u201c': '"', '\u201d': '"', '\u201e': '"', '\u201f': '"',
  '\u2010': '-', '\u2011': '-', '\u2012': '-', '\u2013': '-', '\u2014': '-', '\u2212': '-',
  '\u2026': '...',
  '\u00ab': '"', '\u00bb': '"',
};

const SPECIAL_RE = new RegExp(`[${Object.keys(SPECIAL).join('')}]`, 'gu');
// Nonspacing combining marks (General Category Mn) on a Latin base letter: Vietnamese tone and
// vowel marks after NFD, and every Latin diacritic. Marks on other scripts are left alone
// (stripping the breve from Cyrillic й would give и, another letter, not an ASCII spelling).
const LATIN_MARKS_RE = /(\p{Script=Latin})\p{Mn}+/gu;

/**
 * Fold text toward ASCII, Vietnamese-aware.
 * - All tone marks (huyền, hỏi, ngã, sắc, nặng) and vowel marks (ă, â, ê, ô, ơ, ư) removed:
 *   NFD, then every nonspacing mark (Mn) on a Latin letter stripped.
 * - đ → d, Đ → D, and other Latin letters NFD does not decompose (ø, ł, ß → ss, æ → ae, œ → oe …).
 * - Typographic quotes/dashes/ellipsis/no-break space → ASCII; µ → u.
 * Characters with no ASCII spelling (CJK, Cyrillic, symbols such as °) are left as they are: the
 * encoder then refuses them rather than guessing.
 *
 * Example: `foldToAscii('Nguyễn Thị Đào') === 'Nguyen Thi Dao'`.
 */
export function foldToAscii(s: string): string {
  return s
    .normalize('NFD')
    .replace(LATIN_MARKS_RE, '$1')
    .replace(SPECIAL_RE, (c) => SPECIAL[c] ?? c)
    .normalize('NFC');
}
