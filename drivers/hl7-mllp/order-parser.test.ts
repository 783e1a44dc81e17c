import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ParseError, UnsupportedMessageError } from '../../gateway/src/contracts/errors';
import { parseHl7 } from './hl7-message';
import { isOrderMessage, parseOrders } from './order-parser';

const casesDir = join(__dirname, 'cases');

/**
 * Golden cases `cases/orm-*` and `cases/oml-*`: input.hl7 + expected.json. expected.json holds
 * `parseOrders` ({header, orders} or {error}) and, under `error`, what parseOru says about the same
 * message (always AR 200), because oru-parser.test.ts runs every case folder through parseOru.
 */
describe('parseOrders golden cases (cases/orm-*, cases/oml-*)', () => {
  const names = readdirSync(casesDir).filter((n) => n.startsWith('orm-') || n.startsWith('oml-'));
  it('there are cases', () => expect(names.length).toBeGreaterThanOrEqual(10));
  for (const name of names) {
    it(name, () => {
      const input = readFileSync(join(casesDir, name, 'input.hl7'), 'utf8');
      const expected = JSON.parse(readFileSync(join(casesDir, name, 'expected.json'), 'utf8')).parseOrders;
      expect(expected).toBeDefined();
      if (expected.error) {
        let err: unknown;
        try {
          parseOrders(parseHl7(input));
        } catch (e) {
          err = e;
        }
        expect(err).toBeInstanceOf(expected.error.class === 'UnsupportedMessageError' ? UnsupportedMessageError : ParseError);
        const e = err as ParseError;
        expect({ class: e.constructor.name, code: e.code, location: e.location, hl7ErrorCode: e.hl7ErrorCode }).toEqual(expected.error);
      } else {
        const r = parseOrders(parseHl7(input));
        expect(JSON.parse(JSON.stringify(r))).toEqual(expected);
      }
    });
  }
});

const H = (type = 'ORM^O01', ver = '2.3.1') => `MSH|^~\\&|HIS|BV|||20250301||${type}|C1|P|${ver}`;
const parse = (...segs: string[]) => parseOrders(parseHl7(segs.join('\r')));

describe('parseOrders rules', () => {
  it('several OBRs with the same specimen → one order with several tests (duplicates dropped)', () => {
    const r = parse(H(), 'ORC|NW|P1|S1', 'OBR|1|P1|S1|A^a^L', 'ORC|NW|P2|S1', 'OBR|1|P2|S1|B^b^L', 'OBR|2|P2|S1|A^a^L');
    expect(r.orders).toHaveLength(1);
    expect(r.orders[0]).toMatchObject({ control: 'NW', specimenId: 'S1', placerOrderNumber: 'P1', tests: [{ code: 'A' }, { code: 'B' }] });
  });

  it('NW and CA for the same specimen in one message stay two updates, in message order', () => {
    const r = parse(H(), 'ORC|NW|P1|S1', 'OBR|1|P1|S1|A', 'ORC|CA|P1|S1', 'OBR|1|P1|S1|A');
    expect(r.orders.map((o) => o.control)).toEqual(['NW', 'CA']);
  });

  it('specimen id fallbacks: SPM-2 placer, SPM-2 filler, SAC-3, OBR-3, ORC-3, OBR-2, ORC-2 (trimmed)', () => {
    const id = (...segs: string[]) => parse(H('OML^O21', '2.5.1'), ...segs).orders.map((o) => o.specimenId);
    expect(id('ORC|NW|OP|OF', 'OBR|1|BP|BF|T', 'SPM|1| SPP &NS^SPF||SER', 'SAC|||TUBE')).toEqual(['SPP']);
    expect(id('ORC|NW|OP|OF', 'OBR|1|BP|BF|T', 'SPM|1|^SPF&LIS||SER', 'SAC|||TUBE')).toEqual(['SPF']);
    expect(id('ORC|NW|OP|OF', 'OBR|1|BP|BF|T', 'SPM|1|||SER', 'SAC|||TUBE')).toEqual(['TUBE']);
    expect(id('ORC|NW|OP|OF', 'OBR|1|BP|BF|T')).toEqual(['BF']);
    expect(id('ORC|NW|OP|OF', 'OBR|1|BP||T')).toEqual(['OF']);
    expect(id('ORC|NW|OP|', 'OBR|1|BP||T')).toEqual(['BP']);
    expect(id('ORC|NW|OP|', 'OBR|1|||T')).toEqual(['OP']);
    expect(id('ORC|CA|OP|')).toEqual(['OP']);
  });

  it('barcodes keep their case', () => {
    expect(parse(H(), 'ORC|NW||ab12X', 'OBR|1||ab12X|T').orders[0].specimenId).toBe('ab12X');
  });

  it('priority: ORC-7.6, TQ1-9, OBR-27.6, OBR-5; STAT/ASAP/ROUTINE words; unknown letters left out', () => {
    const pr = (...segs: string[]) => parse(H('OML^O21', '2.5.1'), ...segs).orders[0].priority;
    expect(pr('ORC|NW||S1||||^^^^^S', 'OBR|1||S1|T|R')).toBe('S');
    expect(pr('ORC|NW||S1', 'TQ1|1||||||||A', 'OBR|1||S1|T')).toBe('A');
    expect(pr('ORC|NW||S1', `OBR|1||S1|T${'|'.repeat(23)}^^^^^STAT`)).toBe('S'); // OBR-27.6
    expect(pr('ORC|NW||S1', 'OBR|1||S1|T|routine')).toBe('R');
    expect(pr('ORC|NW||S1', 'OBR|1||S1|T|P')).toBeUndefined();
  });

  it('most urgent priority wins when OBRs merge', () => {
    const r = parse(H(), 'ORC|NW||S1', 'OBR|1||S1|A', 'OBR|2||S1|B|S', 'OBR|3||S1|C|R');
    expect(r.orders[0].priority).toBe('S');
  });

  it('times become ISO 8601; an offset is kept; a bad time is AE 102 with its location', () => {
    const r = parse(H(), 'ORC|NW||S1||||||20250301094500+0700', 'OBR|1||S1|T|||20250301080000');
    expect(r.orders[0]).toMatchObject({ requestedAt: '2025-03-01T09:45:00+07:00', collectedAt: '2025-03-01T08:00:00' });
    expect(() => parse(H(), 'ORC|NW||S1', 'OBR|1||S1|T|||yesterday')).toThrow(expect.objectContaining({ location: 'OBR^1^7', hl7ErrorCode: 102 }));
  });

  it('escaped delimiters and custom delimiters are decoded', () => {
    const r = parseOrders(parseHl7('MSH#*~\\%#HIS#BV###20250301##ORM*O01#C9#P#2.3.1\rPID#1##BN1##NGUYEN*AN\rORC#NW##S\\F\\1\rOBR#1##S\\F\\1#GLU*Glucose\\S\\fasting*L'));
    expect(r.orders[0]).toMatchObject({ specimenId: 'S#1', tests: [{ code: 'GLU', display: 'Glucose*fasting', system: 'L' }], patient: { name: 'NGUYEN^AN' } });
  });

  it('unsupported: ORM^O02 → 201, ADT → 200, ORM 2.2 → 203', () => {
    const code = (h: string) => {
      try {
        parse(h, 'ORC|NW||S1', 'OBR|1||S1|T');
      } catch (e) {
        return e instanceof UnsupportedMessageError ? e.hl7ErrorCode : -1;
      }
      return 0;
    };
    expect(code(H('ORM^O02'))).toBe(201);
    expect(code(H('ADT^A01'))).toBe(200);
    expect(code(H('ORM^O01', '2.2'))).toBe(203);
  });

  it('ORC-1 missing → AE 101 at ORC^n^1; OBR before ORC → 100', () => {
    expect(() => parse(H(), 'ORC||P1|S1', 'OBR|1|P1|S1|T')).toThrow(expect.objectContaining({ location: 'ORC^1^1', hl7ErrorCode: 101 }));
    expect(() => parse(H(), 'OBR|1|P1|S1|T', 'ORC|NW|P1|S1')).toThrow(expect.objectContaining({ location: 'OBR^1', hl7ErrorCode: 100 }));
  });

  it('a CA whose OBR has no OBR-4 cancels the whole order (no tests named)', () => {
    expect(parse(H(), 'ORC|CA|P1|S1', 'OBR|1|P1|S1').orders[0]).toMatchObject({ control: 'CA', tests: [] });
  });

  it('isOrderMessage', () => {
    expect(isOrderMessage({ messageType: 'ORM', trigger: 'O01' })).toBe(true);
    expect(isOrderMessage({ messageType: 'OML', trigger: 'O21' })).toBe(true);
    expect(isOrderMessage({ messageType: 'ORU', trigger: 'R01' })).toBe(false);
    expect(isOrderMessage({ messageType: 'OML', trigger: 'O33' })).toBe(false);
  });
});
