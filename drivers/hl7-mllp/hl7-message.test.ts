import { describe, expect, it } from 'vitest';
import { ParseError } from '../../gateway/src/contracts/errors';
import { escapeHl7, formatHl7Timestamp, parseHl7, peekHeader, readHeader, unescapeHl7 } from './hl7-message';

const MSG = 'MSH|^~\\&|APP^EUI^EUI-64|FAC|||20240101||ORU^R01^ORU_R01|C1|P|2.5.1\rPID|1||A1^^^H^MR~B2^^^VNM^NNVNM||Nguyễn^Văn An\rOBX|1|ST|x^y^LN||a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f\\.br\\g\\X41\\';

describe('parseHl7', () => {
  it('uses HL7 field numbering (MSH-1 is the field separator)', () => {
    const m = parseHl7(MSG);
    expect(m.get('MSH', 1)).toBe('|');
    expect(m.get('MSH', 2)).toBe('^~\\&');
    expect(m.get('MSH', 3)).toBe('APP');
    expect(m.get('MSH', 3, 2)).toBe('EUI');
    expect(m.get('MSH', 9, 2)).toBe('R01');
    expect(m.get('MSH', 10)).toBe('C1');
    expect(m.get('PID', 3, 1, 2)).toBe('B2');
    expect(m.get('PID', 3, 5, 2)).toBe('NNVNM');
    expect(m.get('PID', 5, 2)).toBe('Văn An');
    expect(m.get('PID', 99)).toBe('');
    expect(m.segments('OBX')).toHaveLength(1);
    expect(m.segments().map((s) => s.name)).toEqual(['MSH', 'PID', 'OBX']);
  });

  it('decodes escapes', () => {
    expect(parseHl7(MSG).get('OBX', 5)).toBe('a|b^c&d~e\\f\ngA');
  });

  it('accepts CR, LF and CRLF segment terminators', () => {
    for (const sep of ['\r', '\n', '\r\n']) {
      const m = parseHl7(['MSH|^~\\&|A|B|||1||ORU^R01|X|P|2.3', 'PID|1', 'OBX|1'].join(sep) + sep);
      expect(m.segments().map((s) => s.name)).toEqual(['MSH', 'PID', 'OBX']);
    }
  });

  it('reads delimiters from MSH-1/MSH-2', () => {
    const m = parseHl7('MSH#*@!%#APP*X#F\rOBX#1#ST#c*d#a@b#v!F!w');
    expect(m.get('MSH', 3, 2)).toBe('X');
    expect(m.get('OBX', 3, 2)).toBe('d');
    expect(m.get('OBX', 4, 1, 2)).toBe('b');
    expect(m.get('OBX', 5)).toBe('v#w');
    expect(m.fieldStandard(m.segment('MSH'), 3)).toBe('APP^X');
  });

  it('throws ParseError with location and Table 0357 code', () => {
    const cases: Array<[string, string, number]> = [
      ['PID|1\rOBX|1', 'MSH^1', 100],
      ['MSH', 'MSH^1^2', 102],
      ['MSH|^~|A', 'MSH^1^2', 102],
      ['MSH|^^\\&|A', 'MSH^1^2', 102],
      ['MSH|^~\\&|A\rOBXX|1', 'OBX^2', 100],
      ['MSH|^~\\&|A\rob|1', 'ob^2', 100],
    ];
    for (const [text, loc, code] of cases) {
      try {
        parseHl7(text);
        expect.fail(`no error for ${JSON.stringify(text)}`);
      } catch (e) {
        expect(e).toBeInstanceOf(ParseError);
        expect((e as ParseError).location).toBe(loc);
        expect((e as ParseError).hl7ErrorCode).toBe(code);
      }
    }
  });

  it('escape/unescape round trip', () => {
    const s = 'a|b^c&d~e\\f\ng';
    expect(escapeHl7(s)).toBe('a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f\\X0A\\g'); // an LF is data: hex (2.7.4), never raw
    expect(escapeHl7(s, { formatted: true })).toBe('a\\F\\b\\S\\c\\T\\d\\R\\e\\E\\f\\.br\\g'); // FT line break (2.7.6)
    expect(escapeHl7('bell\x07 tab\t del\x7f')).toBe('bell\\X07\\ tab\\X09\\ del\\X7F\\');
    expect(unescapeHl7(escapeHl7(s))).toBe(s);
    expect(escapeHl7('Nguyễn')).toBe('Nguyễn'); // no hex escapes under UTF-8 (protocols.md §3.1)
    expect(unescapeHl7('\\H\\bold\\N\\ \\Zxx\\ \\Q\\')).toBe('bold  \\Q\\');
  });

  it('readHeader / peekHeader', () => {
    const h = readHeader(parseHl7(MSG));
    expect(h).toMatchObject({ sendingApp: 'APP^EUI^EUI-64', sendingFacility: 'FAC', controlId: 'C1', messageType: 'ORU', trigger: 'R01', version: '2.5.1', processingId: 'P' });
    expect(peekHeader('MSH|^~\\&|A|B|||1||ORU^R01|ID7|P|2.3\rOBX X')?.controlId).toBe('ID7');
    expect(peekHeader('garbage')).toBeUndefined();
  });

  it('formatHl7Timestamp has a ±ZZZZ offset', () => {
    expect(formatHl7Timestamp(new Date())).toMatch(/^\d{14}[+-]\d{4}$/);
  });
});
