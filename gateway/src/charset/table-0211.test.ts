import * as iconv from 'iconv-lite';
import { describe, expect, it } from 'vitest';
import { type CharsetName, isSupportedCharset } from './charset';
import { ALIASES, charsetFromTable0211, MSH18_UTF8, TABLE_0211, table0211Code } from './table-0211';

describe('HL7 Table 0211 → charset (HL7 v2.5.1 2.15.9.18)', () => {
  it.each<[string, CharsetName]>([
    ['ASCII', 'ascii'],
    ['ISO IR6', 'ascii'],
    ['8859/1', 'latin1'],
    ['8859/2', 'iso-8859-2'],
    ['8859/5', 'iso-8859-5'],
    ['8859/9', 'iso-8859-9'],
    ['8859/15', 'iso-8859-15'],
    ['UNICODE', 'utf8'], // v2.3.1
    ['UNICODE UTF-8', 'utf8'],
    ['GB 18030-2000', 'gb18030'],
    ['KS X 1001', 'euc-kr'],
    ['BIG-5', 'big5'],
    // case / space tolerance
    ['unicode utf-8', 'utf8'],
    ['  UNICODE   UTF-8  ', 'utf8'],
    ['UNICODE UTF8', 'utf8'],
    ['iso ir6', 'ascii'],
    ['gb18030-2000', 'gb18030'],
    ['Big5', 'big5'],
    // aliases seen from senders
    ['UTF-8', 'utf8'],
    ['ISO IR100', 'latin1'],
    ['ISO_IR 100', 'latin1'],
    ['ISO IR192', 'utf8'],
    ['ISO-8859-1', 'latin1'],
    ['windows-1258', 'windows-1258'],
    ['TCVN3', 'tcvn3'],
    ['VISCII', 'viscii'],
  ])('%j → %s', (value, cs) => {
    expect(charsetFromTable0211(value)).toBe(cs);
  });

  it.each([
    'ISO IR14',
    'ISO IR87',
    'ISO IR159',
    'CNS 11643-1992',
    'UNICODE UTF-16',
    'UNICODE UTF-32',
    'JAS2020',
    'JIS X 0202',
    'KLINGON',
    '8859/12',
    '8859/1 8859/2',
    '',
  ])('%j → undefined (unknown or unsupported)', (value) => {
    expect(charsetFromTable0211(value)).toBeUndefined();
  });

  it('does not confuse 8859/1 with 8859/15', () => {
    expect(charsetFromTable0211('8859/1')).not.toBe(charsetFromTable0211('8859/15'));
  });

  it('every entry is either supported by a charset with an iconv-lite codec, or says why not', () => {
    for (const e of TABLE_0211) {
      expect(e.charset === undefined, e.code).toBe(e.unsupported !== undefined);
      if (e.charset) {
        expect(isSupportedCharset(e.charset)).toBe(true);
        if (e.charset !== 'utf8' && e.charset !== 'ascii') expect(iconv.encodingExists(e.charset), e.code).toBe(true);
      }
    }
    for (const cs of Object.values(ALIASES)) expect(isSupportedCharset(cs)).toBe(true);
  });

  it('what iconv-lite lacks is really absent (so the table stays honest when the library changes)', () => {
    for (const name of ['iso-2022-jp', 'euc-tw', 'cns11643', 'jis_x0201', 'iso-ir-87', 'tcvn3', 'vscii3']) {
      expect(iconv.encodingExists(name), name).toBe(false);
    }
    for (const name of ['tcvn', 'viscii', 'windows-1258', 'gb18030', 'big5', 'euc-kr', 'utf16le', 'utf32le']) {
      expect(iconv.encodingExists(name), name).toBe(true);
    }
  });

  it('table0211Code round-trips and the output value is UNICODE UTF-8', () => {
    expect(MSH18_UTF8).toBe('UNICODE UTF-8');
    expect(table0211Code('utf8')).toBe('UNICODE UTF-8');
    expect(table0211Code('latin1')).toBe('8859/1');
    expect(table0211Code('windows-1258')).toBeUndefined();
    for (const e of TABLE_0211) {
      if (!e.charset) continue;
      const code = table0211Code(e.charset)!;
      expect(charsetFromTable0211(code)).toBe(e.charset);
    }
  });
});
