import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import * as iconv from 'iconv-lite';
import { describe, expect, it } from 'vitest';
import { GatewayError } from '../contracts/errors';
import {
  CHARSET_NAMES,
  CharsetError,
  type CharsetName,
  decodeHl7Message,
  decodeStrict,
  decodeWithFallback,
  encodeFor,
  firstInvalidUtf8,
  isSupportedCharset,
  readMsh18,
} from './charset';

const FIXTURES = join(__dirname, 'fixtures');
const hex = (h: string): Buffer => Buffer.from(h.replace(/\s+/g, ''), 'hex');

/** The CharsetError thrown by fn (fails the test when fn does not throw one). */
function charsetError(fn: () => unknown): CharsetError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(CharsetError);
    return err as CharsetError;
  }
  throw new Error('expected a CharsetError, nothing was thrown');
}

/** Deterministic PRNG (mulberry32) so a failing property case can be replayed. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

// Vietnamese alphabet: 12 vowels × 6 tones (none, huyền, hỏi, ngã, sắc, nặng), both cases, plus đ
// and the Latin consonants. Built from combining marks, so it does not depend on the code under test.
const VOWELS = ['a', 'ă', 'â', 'e', 'ê', 'i', 'o', 'ô', 'ơ', 'u', 'ư', 'y'];
const TONES = ['', '\u0300', '\u0309', '\u0303', '\u0301', '\u0323'];
const VI_VOWELS_LOWER = VOWELS.flatMap((v) => TONES.map((t) => (v + t).normalize('NFC')));
const VI_VOWELS = [...VI_VOWELS_LOWER, ...VI_VOWELS_LOWER.map((v) => v.toUpperCase())];
const VI_CONSONANTS = [...'bcdđghklmnpqrstvx', ...'BCDĐGHKLMNPQRSTVX'];
const VI_LETTERS = [...VI_VOWELS, ...VI_CONSONANTS];

/** Real Vietnamese text as it appears in lab messages (fake names). */
const VI_SAMPLES = [
  'Nguyễn Thị Đào',
  'Trần Văn Hùng',
  'Lê Thị Phượng',
  'Phạm Ngọc Ánh',
  'Đặng Thu Thảo',
  'Vũ Quốc Khánh',
  'Huỳnh Tấn Phát',
  'Bệnh viện Bạch Mai',
  'Xét nghiệm huyết học',
  'Mẫu bị đông, đề nghị lấy lại',
  'ĐƯỜNG HUYẾT LÚC ĐÓI',
  'Ứng Thị Ỷ, Ẳng Ẵm Ẫn, Ỹ Ỵ',
];

describe('charset names', () => {
  it('every CharsetName is supported and backed by an iconv-lite codec', () => {
    for (const cs of CHARSET_NAMES) {
      expect(isSupportedCharset(cs)).toBe(true);
      if (cs !== 'utf8') expect(iconv.encodingExists(cs === 'tcvn3' || cs === 'tcvn5712' ? 'tcvn' : cs)).toBe(true);
    }
  });

  it.each(['tcvn', 'UTF-8', 'utf-8', 'iso-8859-1', 'ISO-IR87', 'utf16le', '', 'toString'])(
    'rejects %j (exact names only)',
    (name) => {
      expect(isSupportedCharset(name)).toBe(false);
    },
  );

  it('decodeStrict refuses a name that is not a CharsetName instead of guessing', () => {
    const e = charsetError(() => decodeStrict(Buffer.from('x'), 'utf-16' as CharsetName));
    expect(e.reason).toBe('unsupported-charset');
  });
});

describe('CharsetError', () => {
  it('is a GatewayError with code GW_ERR_CHARSET, charset, offset, and no payload text', () => {
    const bytes = Buffer.concat([Buffer.from('PID|1||12345||Nguyễn^Thị Đào|', 'utf8'), hex('ff'), Buffer.from('|F')]);
    const e = charsetError(() => decodeStrict(bytes, 'utf8'));
    expect(e).toBeInstanceOf(GatewayError);
    expect(e.code).toBe('GW_ERR_CHARSET');
    expect(e.name).toBe('CharsetError');
    expect(e.charset).toBe('utf8');
    expect(e.offset).toBe(bytes.indexOf(0xff));
    expect(e.reason).toBe('invalid-bytes');
    for (const phi of ['Nguy', 'Thị', 'Đào', '12345', 'PID']) expect(e.message).not.toContain(phi);
  });
});

describe('decodeStrict: UTF-8', () => {
  // [description, bytes, offset of the first bad sequence]
  const invalid: Array<[string, string, number]> = [
    ['lone lead byte C3 before ASCII', '41 c3 41', 1],
    ['lead byte C3 at the end', '41 42 c3', 2],
    ['0xFF', '41 ff 42', 1],
    ['0xFE', 'fe', 0],
    ['lone continuation byte', '41 80', 1],
    ['overlong C0 AF ("/")', 'c0 af', 0],
    ['overlong C1 BF', '41 c1 bf', 1],
    ['overlong 3-byte E0 80 AF', 'e0 80 af', 0],
    ['overlong 4-byte F0 80 80 AF', 'f0 80 80 af', 0],
    ['surrogate ED A0 80 (U+D800)', '41 ed a0 80', 1],
    ['surrogate ED BF BF (U+DFFF)', 'ed bf bf', 0],
    ['above U+10FFFF (F4 90 80 80)', 'f4 90 80 80', 0],
    ['F5 lead byte', 'f5 80 80 80', 0],
    ['truncated E1 BB at the end (ễ cut short)', '4e 67 75 79 e1 bb', 4],
    ['truncated 4-byte at the end', 'f0 9f 98', 0],
    ['3-byte sequence broken by ASCII', 'e1 bb 41', 0],
    ['valid Vietnamese, then bad byte', 'e1 bb 85 6e c3 28', 4],
  ];
  it.each(invalid)('%s → CharsetError at offset %#', (_name, h, offset) => {
    const e = charsetError(() => decodeStrict(hex(h), 'utf8'));
    expect(e.offset).toBe(offset);
    expect(e.charset).toBe('utf8');
  });

  it.each([
    ['real U+FFFD encoded correctly', 'ef bf bd', '\ufffd'],
    ['byte order mark is kept, not stripped', 'ef bb bf 41', '\ufeffA'],
    ['4-byte sequence', 'f0 9f a7 aa', '\u{1F9EA}'],
    ['largest code point', 'f4 8f bf bf', '\u{10FFFF}'],
    ['controls kept', '0d 0a 09 41', '\r\n\tA'],
    ['empty', '', ''],
  ])('%s', (_name, h, expected) => {
    expect(decodeStrict(hex(h), 'utf8')).toBe(expected);
  });

  it('agrees with a fatal WHATWG TextDecoder on 3,000 random byte strings', () => {
    const rnd = prng(8_4_1);
    const fatal = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
    let invalidSeen = 0;
    for (let n = 0; n < 3000; n++) {
      const len = 1 + Math.floor(rnd() * 12);
      // bias to bytes that form (or almost form) multi-byte sequences
      const pool = [0x41, 0x80, 0x8f, 0x90, 0x9f, 0xa0, 0xbf, 0xc0, 0xc2, 0xdf, 0xe0, 0xe1, 0xed, 0xef, 0xf0, 0xf4, 0xf5, 0xff];
      const buf = Buffer.from(Array.from({ length: len }, () => pool[Math.floor(rnd() * pool.length)]!));
      let ok = true;
      try {
        fatal.decode(buf);
      } catch {
        ok = false;
      }
      const off = firstInvalidUtf8(buf);
      expect(off === -1, buf.toString('hex')).toBe(ok);
      if (!ok) {
        invalidSeen++;
        // everything before the reported offset is well-formed
        expect(() => fatal.decode(buf.subarray(0, off)), buf.toString('hex')).not.toThrow();
        expect(() => decodeStrict(buf, 'utf8')).toThrow(CharsetError);
      } else {
        expect(decodeStrict(buf, 'utf8')).toBe(buf.toString('utf8').normalize('NFC'));
      }
    }
    expect(invalidSeen).toBeGreaterThan(500);
  });
});

describe('decodeStrict: single-byte charsets', () => {
  // [charset, bad byte]: positions the charset leaves undefined
  const undefinedBytes: Array<[CharsetName, number]> = [
    ['windows-1258', 0x81],
    ['windows-1258', 0x8a],
    ['windows-1258', 0x9e],
    ['windows-1252', 0x81],
    ['windows-1252', 0x9d],
    ['latin1', 0x85], // C1: ISO 8859 has no graphic character there
    ['latin1', 0x93],
    ['iso-8859-15', 0x9f],
    ['iso-8859-3', 0xa5], // unassigned in Latin-3
    ['ascii', 0x80],
    ['ascii', 0xe9],
    ['tcvn3', 0x01], // VN1 letter at a C0 position: not VN3
    ['tcvn3', 0x80], // À: VN1/VN2 only
    ['tcvn3', 0xb0], // combining grave: not in VN3
  ];
  it.each(undefinedBytes)('%s: byte %i is invalid, offset reported', (cs, b) => {
    const bytes = Buffer.concat([Buffer.from('OBX|1|ST|'), Buffer.of(b), Buffer.from('|')]);
    const e = charsetError(() => decodeStrict(bytes, cs));
    expect(e.offset).toBe(9);
    expect(e.charset).toBe(cs);
    expect(e.message).toContain(`0x${b.toString(16).toUpperCase().padStart(2, '0')}`);
  });

  it('windows-1258 has exactly the undefined positions of the Microsoft table', () => {
    const bad: number[] = [];
    for (let b = 0; b < 256; b++) {
      try {
        decodeStrict(Buffer.of(b), 'windows-1258');
      } catch {
        bad.push(b);
      }
    }
    expect(bad).toEqual([0x81, 0x8a, 0x8d, 0x8e, 0x8f, 0x90, 0x9a, 0x9d, 0x9e]);
  });

  it('tcvn3 accepts ASCII (less the C0 bytes VN1 uses for letters) + the 75 VN3 characters', () => {
    const extra: string[] = [];
    const refusedC0: number[] = [];
    let ascii = 0;
    for (let b = 0; b < 256; b++) {
      let ch: string;
      try {
        ch = decodeStrict(Buffer.of(b), 'tcvn3');
      } catch {
        if (b < 0x80) refusedC0.push(b);
        continue;
      }
      if (b < 0x80) {
        expect(ch.charCodeAt(0)).toBe(b); // VN3 reassigns no control code
        ascii++;
      } else extra.push(ch);
    }
    // VN3 keeps these as control codes, VN1 (iconv-lite's table) as capitals: neither reading is
    // safe inside message text, so tcvn3 refuses them (a 'tcvn5712' fallback reads them as VN1).
    expect(refusedC0).toEqual([0x01, 0x02, 0x04, 0x05, 0x06, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17]);
    expect(ascii).toBe(128 - 12);
    expect(extra).toHaveLength(75);
    const lower = extra.filter((c) => c !== c.toUpperCase());
    expect(lower).toHaveLength(67);
    expect(extra.filter((c) => c !== c.toLowerCase()).sort()).toEqual(['Ă', 'Â', 'Ê', 'Ô', 'Ơ', 'Ư', 'Đ'].sort());
    expect(extra).toContain('\u00a0');
    // every Vietnamese lowercase letter is there
    for (const v of [...VI_VOWELS_LOWER.filter((x) => !'aeiouy'.includes(x)), 'đ']) {
      expect(extra, v).toContain(v);
    }
  });

  it('tcvn5712 (VN1) reads the capitals tcvn3 refuses, including its C0 positions', () => {
    expect(decodeStrict(Buffer.of(0x01, 0x80, 0x11), 'tcvn5712')).toBe('ÚÀỨ');
  });

  it('known bytes: TCVN3 ă â ê ô ơ ư đ = A8..AE, à = B5, á = B8', () => {
    expect(decodeStrict(hex('a8 a9 aa ab ac ad ae b5 b8'), 'tcvn3')).toBe('ăâêôơưđàá');
  });

  it('windows-1258 tones are combining marks; the result is NFC, not decomposed', () => {
    // Microsoft cp1258: EA = ê, DE = U+0303 combining tilde, F2 = U+0323 dot below, D0 = Đ, EC = U+0301
    const text = decodeStrict(hex('4e 67 75 79 ea de 6e 20 d0 61 f2 6f'), 'windows-1258');
    expect(text).toBe('Nguyễn Đạo');
    expect(text).toBe(text.normalize('NFC'));
    expect(text).toHaveLength(10); // precomposed ễ and ạ
    expect(decodeStrict(hex('61 ec'), 'windows-1258')).toBe('\u00e1');
  });

  it('every decoded result is NFC', () => {
    const samples: Array<[CharsetName, Buffer]> = [
      ['windows-1258', hex('ea de')],
      ['tcvn5712', hex('aa b2')], // ê + combining tilde (VN1 B2)
      ['utf8', Buffer.from('Nguye\u0302\u0303n', 'utf8')], // NFD input from a device
    ];
    for (const [cs, bytes] of samples) {
      const t = decodeStrict(bytes, cs);
      expect(t, cs).toBe(t.normalize('NFC'));
      expect(t, cs).toContain('ễ');
    }
  });
});

describe('decodeStrict: multi-byte charsets', () => {
  it.each<[CharsetName, string, number]>([
    ['shift_jis', '41 82 a0 ff 41', 3],
    ['shift_jis', '41 81', 1], // truncated at the end
    ['gb18030', '41 84 31 a4 37 ff 41', 5], // 84 31 A4 37 is a real U+FFFD, FF is not
    ['big5', '41 a4 40 80', 3],
    ['big5', '41 a4', 1],
    ['euc-kr', '41 b0 a1 ff', 3],
  ])('%s %s → offset %i', (cs, h, offset) => {
    const e = charsetError(() => decodeStrict(hex(h), cs));
    expect(e.offset).toBe(offset);
  });

  it.each<[CharsetName, string, string]>([
    ['gb18030', '84 31 a4 37', '\ufffd'],
    ['big5', 'a4 40', '一'],
    ['euc-kr', 'b0 a1', '가'],
    ['shift_jis', '82 a0', 'あ'],
  ])('%s %s decodes', (cs, h, expected) => {
    expect(decodeStrict(hex(h), cs)).toBe(expected);
  });

  it('relies on iconv-lite marking bad sequences with U+FFFD (its default)', () => {
    expect(iconv.defaultCharUnicode).toBe('\ufffd');
  });
});

describe('decodeWithFallback', () => {
  const latin1Bytes = Buffer.concat([Buffer.from('NTE|1|L|Pr'), hex('e9 6c e8'), Buffer.from('vement')]);

  it('uses the declared charset when it decodes', () => {
    expect(decodeWithFallback(Buffer.from('Đào', 'utf8'), 'utf8', 'latin1')).toEqual({
      text: 'Đào',
      charset: 'utf8',
      usedFallback: false,
    });
  });

  it('falls back when the declared charset fails and the fallback decodes strictly', () => {
    expect(decodeWithFallback(latin1Bytes, 'utf8', 'latin1')).toEqual({
      text: 'NTE|1|L|Prélèvement',
      charset: 'latin1',
      usedFallback: true,
    });
  });

  it('latin1 with windows-1252 smart quotes → fallback windows-1252', () => {
    const r = decodeWithFallback(hex('93 48 62 93 20 85'), 'latin1', 'windows-1252');
    expect(r).toEqual({ text: '\u201cHb\u201c \u2026', charset: 'windows-1252', usedFallback: true });
  });

  it('without a fallback the declared error is thrown', () => {
    const e = charsetError(() => decodeWithFallback(latin1Bytes, 'utf8'));
    expect(e.offset).toBe(10);
  });

  it('when the fallback fails too, the declared error is thrown and names both', () => {
    const e = charsetError(() => decodeWithFallback(hex('41 e9 81'), 'utf8', 'windows-1258'));
    expect(e.charset).toBe('utf8');
    expect(e.offset).toBe(1);
    expect(e.message).toContain('windows-1258');
    expect((e.cause as CharsetError).offset).toBe(2);
  });
});

describe('readMsh18', () => {
  it.each<[string, string, string]>([
    ['Table 0211 value', 'MSH|^~\\&|A|B|C|D|20250301||ORU^R01|1|P|2.5|||||FRA|8859/1\rPID|1', '8859/1'],
    ['first repetition only', 'MSH|^~\\&|A|B|C|D|20250301||ORU^R01|1|P|2.5|||||VNM|UNICODE UTF-8~8859/1|\r', 'UNICODE UTF-8'],
    ['fields after MSH-18', 'MSH|^~\\&|A|B|C|D|20250301||ORU^R01|1|P|2.5|||||FRA|8859/1|fr^French|ISO 2022-1994\r', '8859/1'],
    ['other field separator (MSH-1)', 'MSH#^~\\&#A#B#C#D#20250301##ORU^R01#1#P#2.5######UNICODE UTF-8\r', 'UNICODE UTF-8'],
    ['other repetition separator (MSH-2)', 'MSH|^@\\&|A|B|C|D|20250301||ORU^R01|1|P|2.5||||||GB 18030-2000@ISO IR87\r', 'GB 18030-2000'],
    ['LF segment terminator', 'MSH|^~\\&|A|B|C|D|20250301||ORU^R01|1|P|2.5||||||ASCII\nPID|1', 'ASCII'],
    ['MSH-18 empty, MSH-19 valued', 'MSH|^~\\&|A|B|C|D|20250301||ORU^R01|1|P|2.5||||||~8859/1|en\r', ''],
    ['MSH-18 absent (12 fields)', 'MSH|^~\\&|A|B|C|D|20250301||ORU^R01|1|P|2.5\rPID|1', ''],
    ['ends exactly after MSH-17', 'MSH|^~\\&|A|B|C|D|20250301||ORU^R01|1|P|2.5|||||FRA', ''],
    ['only the first segment is read', 'MSH|^~\\&|A|B\rZZZ|1|2|3|4|5|6|7|8|9|10|11|12|13|14|15|16|17|8859/1\r', ''],
    ['not an MSH segment', 'PID|1||12345', ''],
    ['too short', 'MSH', ''],
    ['leading UTF-8 BOM skipped for the look-up', '\ufeffMSH|^~\\&|A|B|C|D|20250301||ORU^R01|1|P|2.5||||||UNICODE UTF-8\r', 'UNICODE UTF-8'],
    ['leading CR LF and space skipped (as the parser does)', '\r\n MSH|^~\\&|A|B|C|D|20250301||ORU^R01|1|P|2.5||||||8859/1\r', '8859/1'],
  ])('%s', (_name, msg, expected) => {
    expect(readMsh18(Buffer.from(msg, 'utf8'))).toBe(expected);
  });

  it('does not decode: non-ASCII bytes elsewhere in the segment are skipped over', () => {
    const bytes = Buffer.concat([
      Buffer.from('MSH|^~\\&|A|'),
      hex('c9 74 e9'), // latin1 "Été" in MSH-4
      Buffer.from('|C|D|20250301||ORU^R01|1|P|2.5|||||FRA|8859/1\r'),
    ]);
    expect(readMsh18(bytes)).toBe('8859/1');
  });
});

/** An ORU^R01 with the given MSH-18 (undefined: MSH stops at MSH-12) and a PID-5 name. */
function hl7(msh18: string | undefined, name: string, encode: (s: string) => Buffer, sep = '\r'): Buffer {
  const msh =
    msh18 === undefined
      ? 'MSH|^~\\&|ANALYZER|LAB|GW|HOSP|20250301093100||ORU^R01|C1|P|2.5'
      : `MSH|^~\\&|ANALYZER|LAB|GW|HOSP|20250301093100||ORU^R01|C1|P|2.5|||||VNM|${msh18}`;
  return encode([msh, `PID|1||12345^^^HOSP^MR||${name}||19800101|F`, 'OBX|1|NM|GLU^Glucose^L||5.4|mmol/L|||||F', ''].join(sep));
}
const utf8 = (s: string): Buffer => Buffer.from(s, 'utf8');
const latin1 = (s: string): Buffer => Buffer.from(s, 'latin1');

describe('decodeHl7Message', () => {
  it('fidelity 08: ISO 8859-1 declared as 8859/1 on a default listener arrives intact', () => {
    const framed = readFileSync(join(FIXTURES, '08-latin1-msh18-8859-1.hl7'));
    // strip MLLP framing: <VT> … <FS><CR>
    expect(framed[0]).toBe(0x0b);
    expect([...framed.subarray(-2)]).toEqual([0x1c, 0x0d]);
    const bytes = framed.subarray(1, -2);
    const r = decodeHl7Message(bytes, {});
    expect(r.charset).toBe('latin1');
    expect(r.declared).toBe('8859/1');
    expect(r.usedFallback).toBe(false);
    expect(r.text).toContain('DOÉ^Gwénaëlle');
    expect(r.text).toContain('GLU^Glucose sérique^L');
    expect(r.text).toContain('NTE|1|L|Prélèvement hémolysé');
    expect(r.text).not.toContain('\ufffd');
    // what the old receiver did (utf8 regardless of MSH-18) now fails loudly, at the É of DOÉ
    const e = charsetError(() => decodeStrict(bytes, 'utf8'));
    expect(e.offset).toBe(bytes.indexOf(0xc9));
    // UTF-8 out: the same text re-encoded is valid UTF-8 with the accents as two-byte sequences
    expect(Buffer.from(r.text, 'utf8').includes(hex('c3 a9'))).toBe(true);
  });

  it('MSH-18 UNICODE UTF-8 with Vietnamese', () => {
    const r = decodeHl7Message(hl7('UNICODE UTF-8', 'Nguyễn^Thị Đào', utf8), { listenerCharset: 'latin1' });
    expect(r).toMatchObject({ charset: 'utf8', declared: 'UNICODE UTF-8', usedFallback: false });
    expect(r.text).toContain('|Nguyễn^Thị Đào|');
  });

  it('MSH-18 repeats: the first repetition is the message charset (2.15.9.18)', () => {
    const r = decodeHl7Message(hl7('UNICODE UTF-8~8859/1', 'Nguyễn^Thị Đào', utf8), {});
    expect(r).toMatchObject({ charset: 'utf8', declared: 'UNICODE UTF-8' });
    expect(r.text).toContain('Nguyễn^Thị Đào');
  });

  it('MSH-18 repeats and the message holds ESC bytes → charset-switching refused', () => {
    const bytes = hl7('8859/1~ISO IR87', 'YAMADA^\x1b$B;3ED\x1b(B', latin1);
    const e = charsetError(() => decodeHl7Message(bytes, {}));
    expect(e.reason).toBe('charset-switching');
    expect(e.offset).toBe(bytes.indexOf(0x1b));
  });

  it('MSH-18 absent → listenerCharset latin1', () => {
    const r = decodeHl7Message(hl7(undefined, 'Müller^Zoë', latin1), { listenerCharset: 'latin1' });
    expect(r).toMatchObject({ charset: 'latin1', declared: '', usedFallback: false });
    expect(r.text).toContain('|Müller^Zoë|');
  });

  it('MSH-18 absent, default listener (utf8), latin1 bytes → CharsetError; fallback latin1 → used', () => {
    const bytes = hl7(undefined, 'Müller^Zoë', latin1);
    const e = charsetError(() => decodeHl7Message(bytes, {}));
    expect(e.reason).toBe('invalid-bytes');
    expect(e.charset).toBe('utf8');
    expect(e.offset).toBe(bytes.indexOf(0xfc));
    const r = decodeHl7Message(bytes, { fallback: 'latin1' });
    expect(r).toMatchObject({ charset: 'latin1', declared: '', usedFallback: true });
    expect(r.text).toContain('Müller^Zoë');
  });

  it('MSH-18 empty with LF segment terminators → listener charset', () => {
    const r = decodeHl7Message(hl7('', 'Đào', utf8, '\n'), {});
    expect(r).toMatchObject({ charset: 'utf8', declared: '' });
    expect(r.text).toContain('Đào');
  });

  it('MSH-18 wins over the listener charset', () => {
    const r = decodeHl7Message(hl7('8859/1', 'Gwénaëlle', latin1), { listenerCharset: 'utf8' });
    expect(r.charset).toBe('latin1');
    expect(r.text).toContain('Gwénaëlle');
  });

  it.each([
    ['KLINGON', 'not a value of HL7 Table 0211'],
    ['ISO IR87', 'ISO 2022'],
    ['UNICODE UTF-16', 'UTF-16'],
    ['CNS 11643-1992', 'iconv-lite'],
  ])('MSH-18 %j → CharsetError unsupported-charset naming the value', (value, why) => {
    const e = charsetError(() => decodeHl7Message(hl7(value, 'DOE^JANE', latin1), { fallback: 'latin1' }));
    expect(e.reason).toBe('unsupported-charset');
    expect(e.charset).toBe(value);
    expect(e.offset).toBeUndefined();
    expect(e.message).toContain(value);
    expect(e.message).toContain(why);
  });

  it('MSH-18 says UTF-8 but the bytes are latin1 → CharsetError at the first bad byte, or the profile fallback', () => {
    const bytes = hl7('UNICODE UTF-8', 'DOÉ^Gwénaëlle', latin1);
    const e = charsetError(() => decodeHl7Message(bytes, {}));
    expect(e.offset).toBe(bytes.indexOf(0xc9));
    const r = decodeHl7Message(bytes, { fallback: 'latin1' });
    expect(r).toMatchObject({ charset: 'latin1', declared: 'UNICODE UTF-8', usedFallback: true });
    expect(r.text).toContain('DOÉ^Gwénaëlle');
  });

  it('MSH-18 8859/1 with a windows-1252 byte (C1) → error, or fallback windows-1252', () => {
    const bytes = hl7('8859/1', 'O\x92BRIEN^ANN', latin1); // 0x92 = ’ in windows-1252
    expect(charsetError(() => decodeHl7Message(bytes, {})).offset).toBe(bytes.indexOf(0x92));
    expect(decodeHl7Message(bytes, { fallback: 'windows-1252' }).text).toContain('O\u2019BRIEN^ANN');
  });

  it('MSH-18 ASCII with an 8-bit byte → error (ASCII is 7-bit)', () => {
    const bytes = hl7('ASCII', 'Gwénaëlle', latin1);
    expect(charsetError(() => decodeHl7Message(bytes, {})).charset).toBe('ascii');
  });

  it('Table 0211 spellings are tolerated (case, spaces)', () => {
    const r = decodeHl7Message(hl7(' unicode  utf-8 ', 'Đào', utf8), {});
    expect(r.charset).toBe('utf8');
    expect(r.declared).toBe(' unicode  utf-8 ');
  });

  it('windows-1258 profile: decoded NFC', () => {
    const bytes = hl7(undefined, 'Nguy\xea\xden^Thi\xf2', latin1); // cp1258: ê EA + tilde DE; i + dot below F2
    const r = decodeHl7Message(bytes, { listenerCharset: 'windows-1258' });
    expect(r.text).toContain('|Nguyễn^Thị|');
  });

  it('leading newlines before MSH: MSH-18 still honoured', () => {
    const r = decodeHl7Message(Buffer.concat([Buffer.from('\r\n'), hl7('8859/1', 'Gwénaëlle', latin1)]), {});
    expect(r).toMatchObject({ charset: 'latin1', declared: '8859/1' });
    expect(r.text.startsWith('\r\nMSH|')).toBe(true);
  });

  it('a UTF-8 BOM is found past for MSH-18 and kept in the text (strips nothing)', () => {
    const r = decodeHl7Message(Buffer.concat([hex('ef bb bf'), hl7('UNICODE UTF-8', 'Đào', utf8)]), {});
    expect(r.charset).toBe('utf8');
    expect(r.text.startsWith('\ufeffMSH|')).toBe(true);
  });

  describe('Big5 trail byte equal to "|" inside MSH', () => {
    // A Big5 character whose second byte is 0x7C ('|'), found from iconv-lite's own table.
    const pipeChar = (() => {
      for (let cp = 0x4e00; cp < 0x9fff; cp++) {
        const b = iconv.encode(String.fromCodePoint(cp), 'big5');
        if (b.length === 2 && b[1] === 0x7c) return String.fromCodePoint(cp);
      }
      throw new Error('no Big5 character with trail byte 0x7C');
    })();
    const msg = (msh17: string, msh18: string): Buffer =>
      iconv.encode(`MSH|^~\\&|A|${pipeChar}|C|D|20250301||ORU^R01|1|P|2.5|||||${msh17}|${msh18}\rPID|1\r`, 'big5');

    it('byte read is off by one field but the listener charset is right → accepted, declared corrected', () => {
      const bytes = msg('', 'BIG-5');
      expect(readMsh18(bytes)).toBe(''); // the raw read sees MSH-17
      const r = decodeHl7Message(bytes, { listenerCharset: 'big5' });
      expect(r).toMatchObject({ charset: 'big5', declared: 'BIG-5' });
      expect(r.text).toContain(pipeChar);
    });

    it('byte read and decoded MSH-18 lead to different charsets → msh-not-ascii', () => {
      const e = charsetError(() => decodeHl7Message(msg('BIG-5', 'GB 18030-2000'), {}));
      expect(e.reason).toBe('msh-not-ascii');
    });
  });
});

describe('encodeFor', () => {
  it('Vietnamese to latin1 without fold → CharsetError naming the code point, not the text', () => {
    const e = charsetError(() => encodeFor('Nguyễn Thị Đào', 'latin1'));
    expect(e.reason).toBe('unrepresentable');
    expect(e.charset).toBe('latin1');
    expect(e.offset).toBe(4); // ễ
    expect(e.message).toContain('U+1EC5');
    expect(e.message).not.toContain('Nguy');
  });

  it('Vietnamese to latin1 / ascii with fold → ASCII', () => {
    expect(encodeFor('Nguyễn Thị Đào', 'latin1', { asciiFold: true })).toEqual(Buffer.from('Nguyen Thi Dao'));
    expect(encodeFor('P|1||12345||Nguyễn^Thị Đào\r', 'ascii', { asciiFold: true })).toEqual(
      Buffer.from('P|1||12345||Nguyen^Thi Dao\r'),
    );
  });

  it('folding does not invent spellings: CJK to ascii still throws', () => {
    expect(charsetError(() => encodeFor('Lê 李', 'ascii', { asciiFold: true })).offset).toBe(3);
  });

  it('French to latin1 needs no fold', () => {
    expect(encodeFor('Prélèvement hémolysé', 'latin1')).toEqual(latin1('Prélèvement hémolysé'));
  });

  it('windows-1258: known bytes, tone as combining mark after the precomposed vowel', () => {
    // ễ = ê (EA) + combining tilde (DE); ệ = ê (EA) + dot below (F2); Đ = D0; ạ = a + F2
    expect(encodeFor('Nguyễn Đạo bệnh', 'windows-1258')).toEqual(hex('4e 67 75 79 ea de 6e 20 d0 61 f2 6f 20 62 ea f2 6e 68'));
  });

  it('the output for a legacy charset never puts a letter on a control byte (E1381 framing, MLLP)', () => {
    for (const cs of ['windows-1258', 'tcvn5712', 'viscii', 'tcvn3', 'latin1'] as const) {
      for (const letter of VI_LETTERS) {
        let bytes: Buffer;
        try {
          bytes = encodeFor(letter, cs);
        } catch (err) {
          expect(err).toBeInstanceOf(CharsetError);
          continue;
        }
        expect([...bytes].some((b) => b < 0x20 || b === 0x7f), `${cs} ${letter}`).toBe(false);
        expect(decodeStrict(bytes, cs), `${cs} ${letter}`).toBe(letter);
      }
    }
  });

  it.each([
    ['Ẳ', 'A'],
    ['Ẵ', 'A'],
    ['Ẫ', 'A'],
    ['Ỷ', 'Y'],
    ['Ỹ', 'Y'],
    ['Ỵ', 'Y'],
  ])('VISCII puts %s on a C0 byte: refused (fold gives %s)', (ch, base) => {
    expect(charsetError(() => encodeFor(ch, 'viscii')).reason).toBe('unrepresentable');
    expect(encodeFor(ch, 'viscii', { asciiFold: true })).toEqual(Buffer.from(base));
  });

  it('tcvn3 has no capitals with tones: refused; tcvn5712 writes them without C0 bytes', () => {
    expect(charsetError(() => encodeFor('Ánh', 'tcvn3')).offset).toBe(0);
    expect(encodeFor('Ánh', 'tcvn3', { asciiFold: true })).toEqual(Buffer.from('Anh'));
    const vn1 = encodeFor('ỨNG', 'tcvn5712'); // Ứ is 0x11 in VN1: written as Ư + combining acute
    expect(vn1).toEqual(hex('a6 b3 4e 47'));
    expect(decodeStrict(vn1, 'tcvn5712')).toBe('ỨNG');
  });

  it('controls pass through (ASTM record terminator CR)', () => {
    expect(encodeFor('R|1|^^^HGB|11.6\r', 'windows-1258')).toEqual(Buffer.from('R|1|^^^HGB|11.6\r'));
  });

  it('lone surrogate → CharsetError, never a silent U+FFFD', () => {
    const e = charsetError(() => encodeFor('ab\ud800c', 'utf8'));
    expect(e.offset).toBe(2);
  });

  it('utf8 output is NFC', () => {
    expect(encodeFor('Nguye\u0302\u0303n', 'utf8')).toEqual(Buffer.from('Nguyễn', 'utf8'));
  });
});

describe('Vietnamese round trips', () => {
  const all: CharsetName[] = ['utf8', 'windows-1258', 'tcvn5712', 'gb18030'];
  it.each(all)('%s: real strings', (cs) => {
    for (const s of VI_SAMPLES) expect(decodeStrict(encodeFor(s, cs), cs), s).toBe(s.normalize('NFC'));
  });

  it('viscii: real strings without the six C0 capitals', () => {
    for (const s of VI_SAMPLES.filter((x) => !/[ẲẴẪỶỸỴ]/u.test(x))) {
      expect(decodeStrict(encodeFor(s, 'viscii'), 'viscii'), s).toBe(s);
    }
  });

  it('tcvn3: lowercase text and toneless capitals', () => {
    for (const s of ['nguyễn thị đào', 'Đặng thu thảo', 'mẫu bị đông, đề nghị lấy lại', 'Ơn Ư Ă Â Ê Ô']) {
      expect(decodeStrict(encodeFor(s, 'tcvn3'), 'tcvn3'), s).toBe(s);
    }
  });

  it('property: 1,000 random Vietnamese strings, encodeFor(utf8) then decodeStrict = NFC input (also from NFD input)', () => {
    const rnd = prng(2025_03_01);
    for (let n = 0; n < 1000; n++) {
      const len = 1 + Math.floor(rnd() * 24);
      let s = '';
      for (let k = 0; k < len; k++) s += rnd() < 0.12 ? ' ' : VI_LETTERS[Math.floor(rnd() * VI_LETTERS.length)]!;
      const input = rnd() < 0.3 ? s.normalize('NFD') : s;
      for (const cs of ['utf8', 'windows-1258', 'tcvn5712'] as const) {
        expect(decodeStrict(encodeFor(input, cs), cs), `${cs} ${JSON.stringify(input)}`).toBe(s.normalize('NFC'));
      }
    }
  });
});

describe('fidelity 21: Vietnamese in UTF-8 over ASTM (generic profile default utf8)', () => {
  it('every frame payload decodes strictly as UTF-8 and the Vietnamese is intact', () => {
    const wire = readFileSync(join(FIXTURES, '21-astm-vietnamese-utf8.astm'));
    // E1381 frame: <STX> FN text <ETX|ETB> C1 C2 <CR><LF>; take text between FN and ETX/ETB
    const payloads: Buffer[] = [];
    let i = wire.indexOf(0x02);
    while (i >= 0) {
      let end = i + 1;
      while (end < wire.length && wire[end] !== 0x03 && wire[end] !== 0x17) end++;
      payloads.push(wire.subarray(i + 2, end));
      i = wire.indexOf(0x02, end);
    }
    expect(payloads.length).toBeGreaterThanOrEqual(5);
    const text = payloads.map((p) => decodeStrict(p, 'utf8')).join('');
    expect(text).toContain('|Nguyễn^Thị Ánh|');
    expect(text).toContain('|Mẫu bị đông, đề nghị lấy lại|');
    expect(text).not.toContain('\ufffd');
    // the same bytes on a strict latin1 profile: ễ is E1 BB 85, and 0x85 is C1 → an error, not mojibake
    expect(charsetError(() => decodeStrict(payloads[1]!, 'latin1')).offset).toBe(payloads[1]!.indexOf(0x85));
  });
});
