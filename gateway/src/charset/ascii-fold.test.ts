import { describe, expect, it } from 'vitest';
import { foldToAscii } from './ascii-fold';

const isAscii = (s: string): boolean => /^[\x00-\x7f]*$/.test(s);

describe('foldToAscii', () => {
  it.each([
    ['Nguyễn Thị Đào', 'Nguyen Thi Dao'],
    ['ĐẶNG THU THẢO', 'DANG THU THAO'],
    ['Huỳnh Tấn Phát', 'Huynh Tan Phat'],
    ['Lê Thị Phượng', 'Le Thi Phuong'],
    ['Mẫu bị đông, đề nghị lấy lại', 'Mau bi dong, de nghi lay lai'],
    ['Ứng Ỷ Ẳ Ẵ Ẫ Ỹ Ỵ', 'Ung Y A A A Y Y'],
    ['Prélèvement hémolysé', 'Prelevement hemolyse'],
    ['Łódź', 'Lodz'],
    ['Straße', 'Strasse'],
    ['Søren Ærø', 'Soren AEro'],
    ['Œuvre cœur', 'OEuvre coeur'],
    ['Þór Ðrífa', 'THor Drifa'],
    ['µmol/L', 'umol/L'],
    ['“Hb” – 12…', '"Hb" - 12...'],
    ['O’Brien', "O'Brien"],
    ['a\u00a0b', 'a b'],
    ['Nguye\u0302\u0303n (NFD input)', 'Nguyen (NFD input)'],
  ])('%j → %j', (input, expected) => {
    expect(foldToAscii(input)).toBe(expected);
  });

  it('every Vietnamese vowel (12 × 6 tones, both cases) folds to its base letter', () => {
    const vowels = ['a', 'ă', 'â', 'e', 'ê', 'i', 'o', 'ô', 'ơ', 'u', 'ư', 'y'];
    const tones = ['', '\u0300', '\u0309', '\u0303', '\u0301', '\u0323'];
    const base: Record<string, string> = { ă: 'a', â: 'a', ê: 'e', ô: 'o', ơ: 'o', ư: 'u' };
    let n = 0;
    for (const v of vowels) {
      for (const t of tones) {
        const letter = (v + t).normalize('NFC');
        const expected = base[v] ?? v;
        expect(foldToAscii(letter), letter).toBe(expected);
        expect(foldToAscii(letter.toUpperCase()), letter.toUpperCase()).toBe(expected.toUpperCase());
        n += 2;
      }
    }
    expect(n).toBe(144);
    expect(foldToAscii('đĐ')).toBe('dD');
  });

  it('never uses compatibility decomposition: superscripts and units keep their meaning', () => {
    expect(foldToAscii('10⁹/L')).toBe('10⁹/L');
    expect(foldToAscii('m²')).toBe('m²');
    expect(foldToAscii('ﬁ')).toBe('ﬁ');
  });

  it('leaves other scripts alone (no ASCII spelling to give)', () => {
    expect(foldToAscii('Йод')).toBe('Йод');
    expect(foldToAscii('李明')).toBe('李明');
    expect(foldToAscii('37 °C')).toBe('37 °C');
  });

  it('Vietnamese and Western European text comes out ASCII', () => {
    const corpus = 'Bệnh viện Chợ Rẫy, Khoa Xét nghiệm; Phòng khám Đa khoa Quốc tế; Größe Çà et là, naïve façade';
    const out = foldToAscii(corpus);
    expect(isAscii(out)).toBe(true);
    expect(out).toBe('Benh vien Cho Ray, Khoa Xet nghiem; Phong kham Da khoa Quoc te; Grosse Ca et la, naive facade');
  });
});
