import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ParseError, UnsupportedMessageError } from '../../gateway/src/contracts/errors';
import { parseHl7 } from './hl7-message';
import { hl7TimeToIso, parseOru } from './oru-parser';

const casesDir = join(__dirname, 'cases');

describe('parseOru golden cases (cases/<name>/input.hl7 + expected.json)', () => {
  for (const name of readdirSync(casesDir)) {
    it(name, () => {
      const input = readFileSync(join(casesDir, name, 'input.hl7'), 'utf8');
      const expected = JSON.parse(readFileSync(join(casesDir, name, 'expected.json'), 'utf8'));
      if (expected.error) {
        let err: unknown;
        try {
          parseOru(parseHl7(input));
        } catch (e) {
          err = e;
        }
        expect(err).toBeDefined();
        const e = err as ParseError;
        expect({ class: e.constructor.name, code: e.code, location: e.location, hl7ErrorCode: e.hl7ErrorCode }).toEqual(expected.error);
      } else {
        const r = parseOru(parseHl7(input));
        expect(JSON.parse(JSON.stringify({ header: r.header, drafts: r.drafts }))).toEqual(expected);
      }
    });
  }
});

const H = (type = 'ORU^R01', ver = '2.5.1') => `MSH|^~\\&|APP|FAC|||20240101||${type}|C1|P|${ver}`;

describe('parseOru rules', () => {
  it('Erba quirks: empty flag repetitions ignored, LOINC/local systems', () => {
    const r = parseOru(parseHl7(readFileSync(join(casesDir, 'erba-msg-003', 'input.hl7'), 'utf8')));
    const wbc = r.drafts.find((d) => d.code.code === '6690-2')!;
    expect(wbc).toMatchObject({ code: { system: 'http://loinc.org' }, value: { kind: 'quantity', value: 17.37, unit: '10*3/uL' }, interpretation: ['H', 'A'], referenceRange: '4.00-10.00', status: 'final' });
    expect(r.drafts.find((d) => d.code.code === '751-8')?.interpretation).toEqual(['H', 'A']);
    expect(r.drafts.find((d) => d.code.code === '706-2')?.interpretation).toEqual(['N']);
    expect(r.drafts.every((d) => d.subject?.specimenId === '25058641')).toBe(true);
  });

  it('PCD-01: MDC codes, units to UCUM, OBX-18 EUI-64 inherited from the MDS row', () => {
    const r = parseOru(parseHl7(readFileSync(join(casesDir, 'pcd01-identified', 'input.hl7'), 'utf8')));
    const hr = r.drafts.find((d) => d.code.code === '147842')!;
    expect(hr.code.system).toBe('urn:iso:std:iso:11073:10101');
    expect(hr.value).toEqual({ kind: 'quantity', value: 72, unit: '/min', decimal: '72' });
    expect(hr.equipment).toEqual({ id: 'FEDCBA9876543210' });
    expect(hr.effectiveAt).toBe('2024-01-01T12:00:00+00:00');
    expect(hr.subject?.patientId).toBe('PID123');
  });

  it('the results of one order share one subject, order and equipment object; another order gets its own', () => {
    const msg = [
      H(),
      'PID|1||P1^^^HIS^MR||DOE^JOHN',
      'OBR|1||S1|58410-2^CBC^LN',
      'OBX|1|NM|6690-2^WBC^LN||5.1|10*3/uL|||||F',
      'OBX|2|NM|789-8^RBC^LN||4.2|10*6/uL|||||F',
      'OBR|2||S2|24323-8^CMP^LN',
      'OBX|1|NM|2345-7^GLU^LN||5.5|mmol/L|||||F',
    ].join('\r');
    const [a, b, c] = parseOru(parseHl7(msg)).drafts;
    expect(a.subject).toBe(b.subject);
    expect(a.order).toBe(b.order);
    expect(a.equipment).toBe(c.equipment); // MSH-3 for every result
    expect(c.subject).not.toBe(a.subject);
    expect(a.subject).toMatchObject({ patientId: 'P1', specimenId: 'S1' });
    expect(c.subject).toMatchObject({ patientId: 'P1', specimenId: 'S2' });
    expect(c.order?.fillerOrderNumber).toBe('S2');
  });

  it('zero OBX is valid', () => {
    expect(parseOru(parseHl7(`${H()}\rPID|1||X\rOBR|1||S1`)).drafts).toEqual([]);
  });

  it('SN, CWE, TX repetitions, NTE comments, OBX-16 operator, SPM specimen', () => {
    const r = parseOru(
      parseHl7(
        [
          H(),
          'PID|1||P1^^^H^MR~N9^^^VNM^NNVNM||DOE^JOHN||19700101|M',
          'OBR|1|PL1|FI1|58410-2^CBC^LN|||20250301080500+0700',
          'OBX|1|SN|x^a^LN||<^0.5|mg/L^^UCUM||L~|||P|||20250301092950||OP1',
          'NTE|1|L|first',
          'NTE|2|L|second',
          'OBX|2|CWE|y^b^LN||260373001^Detected^SCT||||||C',
          'OBX|3|TX|z^c^99X||line1~line2||||||W',
          'OBX|4|SN|r^d^LN||^1^:^128||||||F',
          'SPM|1|SPEC-9||BLD',
        ].join('\r'),
      ),
    );
    expect(r.drafts).toHaveLength(4);
    const [a, b, c, d] = r.drafts;
    expect(a).toMatchObject({ value: { kind: 'quantity', value: 0.5, unit: 'mg/L', comparator: '<' }, interpretation: ['L'], status: 'preliminary', operator: 'OP1', comments: ['first', 'second'] });
    expect(a.subject).toMatchObject({ patientId: 'P1', patientIds: [{ id: 'P1', authority: 'H', type: 'MR' }, { id: 'N9', authority: 'VNM', type: 'NNVNM' }], patientName: 'DOE^JOHN', birthDate: '19700101', sex: 'M', specimenId: 'SPEC-9' });
    expect(a.order).toMatchObject({ placerOrderNumber: 'PL1', fillerOrderNumber: 'FI1', collectedAt: '2025-03-01T08:05:00+07:00' });
    expect(a.effectiveAt).toBe('2025-03-01T09:29:50');
    expect(b).toMatchObject({ value: { kind: 'coded', system: 'SCT', code: '260373001', display: 'Detected' }, status: 'corrected' });
    expect(c).toMatchObject({ code: { system: '99X' }, value: { kind: 'text', text: 'line1\nline2' }, status: 'entered-in-error' });
    expect(d.value).toEqual({ kind: 'text', text: '1:128' });
  });

  it('specimen id falls back to OBR-3 then OBR-2', () => {
    const one = (obr: string) => parseOru(parseHl7(`${H()}\r${obr}\rOBX|1|NM|x^^LN||1`)).drafts[0].subject?.specimenId;
    expect(one('OBR|1|PL|FI')).toBe('FI');
    expect(one('OBR|1|PL|')).toBe('PL');
    expect(one('OBR|1||')).toBeUndefined();
  });

  it('unsupported type / event / version → UnsupportedMessageError 200 / 201 / 203', () => {
    const code = (text: string) => {
      try {
        parseOru(parseHl7(text));
      } catch (e) {
        expect(e).toBeInstanceOf(UnsupportedMessageError);
        return (e as UnsupportedMessageError).hl7ErrorCode;
      }
      return 0;
    };
    expect(code(`${H('ADT^A01')}\rPID|1`)).toBe(200);
    expect(code(`${H('ORU^R30')}\rPID|1`)).toBe(201);
    expect(code(`${H('ORU^R01', '2.7')}\rPID|1`)).toBe(203);
    expect(code(`${H('ORU^R01', '2.2')}\rPID|1`)).toBe(203);
    for (const v of ['2.3', '2.3.1', '2.4', '2.5', '2.5.1', '2.6']) expect(code(`${H('ORU^R01', v)}\rPID|1`)).toBe(0);
  });

  it('broken content → ParseError with location', () => {
    const loc = (text: string) => {
      try {
        parseOru(parseHl7(text));
      } catch (e) {
        expect(e).toBeInstanceOf(ParseError);
        return `${(e as ParseError).location} ${(e as ParseError).hl7ErrorCode}`;
      }
      return 'ok';
    };
    expect(loc(`${H()}\rOBR|1\rOBX|1|NM|x^^LN||1\rOBX|2|NM|y^^LN||abc`)).toBe('OBX^2^5 102');
    expect(loc(`${H()}\rOBR|1\rOBX|1|NM|||1`)).toBe('OBX^1^3 101');
    expect(loc(`${H()}\rOBX|1|NM|x^^LN||1`)).toBe('OBX^1 100');
    expect(loc(`${H()}\rOBR|1\rOBX|1|NM|x^^LN||1||||||F|||2024-01-01`)).toBe('OBX^1^14 102');
    expect(loc(`MSH|^~\\&|A|B|||1||ORU^R01||P|2.5`)).toBe('MSH^1^10 101');
  });

  it('hl7TimeToIso', () => {
    expect(hl7TimeToIso('20250301', 'x')).toBe('2025-03-01');
    expect(hl7TimeToIso('202503010930', 'x')).toBe('2025-03-01T09:30:00');
    expect(hl7TimeToIso('20250301093010.123-0500', 'x')).toBe('2025-03-01T09:30:10.123-05:00');
    expect(hl7TimeToIso('', 'x')).toBeUndefined();
  });
});
