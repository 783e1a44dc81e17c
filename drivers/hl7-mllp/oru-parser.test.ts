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
        const r = parseOru(parseHl7(input, { lenient: true })); // the receiver's default
        expect(JSON.parse(JSON.stringify({ header: r.header, drafts: r.drafts }))).toEqual(expected);
      }
    });
  }
});

const H = (type = 'ORU^R01', ver = '2.5.1') => `MSH|^~\\&|APP|FAC|||20240101||${type}|C1|P|${ver}`;

describe('parseOru rules', () => {
  it('Erba msg_001 (cut by its logger): every readable OBX arrives, the damaged OBX 17 is flagged; strict refuses it', () => {
    const text = readFileSync(join(casesDir, 'erba-msg-001-truncated', 'input.hl7'), 'utf8');
    const r = parseOru(parseHl7(text, { lenient: true }));
    const obx = text.split('\r').filter((l) => l.startsWith('OBX')).length; // 18 lines, one of them two segments run together
    expect(r.drafts).toHaveLength(obx + 1);
    const damaged = r.drafts.filter((d) => d.quality?.length);
    expect(damaged.map((d) => d.code.code)).toEqual(['704-7', '15192-8']);
    expect(damaged[0].value).toBeUndefined();
    expect(damaged[0].statusCode).toBe('R');
    expect(r.drafts.filter((d) => !d.quality).every((d) => d.statusCode === 'F')).toBe(true);
    expect(() => parseOru(parseHl7(text), { strict: true })).toThrow(ParseError);
  });

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
    expect(hr.equipment).toEqual({ id: 'FEDCBA9876543210', eui64: 'FEDCBA9876543210' }); // OBX-18 ^EUI-64 (gateway/src/vitals/pcd-normalize.ts)
    expect(hr.codings).toEqual([{ system: 'http://loinc.org', code: '8867-4', display: 'Heart rate' }]);
    expect(hr.location).toEqual({ pointOfCare: 'ICU', bed: 'BED05', facility: 'HOSP' });
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

  it('PV1-19 visit number (CX-1) goes on every order of its patient group; a later PID without PV1 has none', () => {
    const msg = [
      H(),
      'PID|1||P1^^^HIS^MR',
      'PV1|1|O|KB^^^BV||||||||||||||||LK-2025-001^^^BV^VN',
      'OBR|1||S1|58410-2^CBC^LN',
      'OBX|1|NM|6690-2^WBC^LN||5.1|10*3/uL|||||F',
      'OBR|2||S2|24323-8^CMP^LN',
      'OBX|1|NM|2345-7^GLU^LN||5.5|mmol/L|||||F',
      'PID|2||P2^^^HIS^MR',
      'OBR|3||S3|24323-8^CMP^LN',
      'OBX|1|NM|2345-7^GLU^LN||6.1|mmol/L|||||F',
    ].join('\r');
    const d = parseOru(parseHl7(msg)).drafts;
    expect(d.map((x) => x.order?.visitNumber)).toEqual(['LK-2025-001', 'LK-2025-001', undefined]);
    expect(parseOru(parseHl7(`${H()}\rPID|1||P1\rPV1|1|O\rOBR|1||S1\rOBX|1|NM|x^^LN||1`)).drafts[0].order).toEqual({ fillerOrderNumber: 'S1' });
    // OBX before any OBR still carries the visit of its patient
    expect(parseOru(parseHl7(`${H()}\rPID|1||P1\rPV1|1|O|||||||||||||||||V9\rOBX|1|NM|x^^LN||1`)).drafts[0].order).toEqual({ visitNumber: 'V9' });
  });

  it('OBX-17 method kept as sent (CE components; text only kept with an empty code); absent → no method', () => {
    const one = (obx17: string) => parseOru(parseHl7(`${H()}\rOBR|1||S1\rOBX|1|NM|x^^LN||1||||||||||||${obx17}`)).drafts[0].method;
    expect(one('AMEAS^auto-measurement^MDC')).toEqual({ system: 'urn:iso:std:iso:11073:10101', code: 'AMEAS', display: 'auto-measurement' });
    expect(one('MMEAS')).toEqual({ system: 'local', code: 'MMEAS' });
    expect(one('^APERIODIC')).toEqual({ system: 'local', code: '', display: 'APERIODIC' });
    expect(one('AMEAS^auto~MMEAS^manual')).toEqual({ system: 'local', code: 'AMEAS', display: 'auto' });
    expect(one('')).toBeUndefined();
  });

  it.each([
    ['265987^MDC_DIM_KILO_PASCAL^MDC', 'kPa'], // IEEE 11073-10101 partition 4: 4::3843
    ['^MDC_DIM_KILO_PASCAL^MDC', 'kPa'],
    ['266016^MDC_DIM_MMHG^MDC', 'mm[Hg]'],
    ['264864^MDC_DIM_BEAT_PER_MIN^MDC', '/min'],
    ['266048^MDC_DIM_CM_H2O^MDC', 'MDC_DIM_CM_H2O'], // 4::3904 is cmH2O, never kPa: not in the map → its REFID as sent
    ['4::3843^^MDC', 'kPa'],
    ['mmol/L^^UCUM', 'mmol/L'],
  ])('lab OBX-6 %s → unit %s (MDC units from the shipped code map)', (obx6, unit) => {
    const d = parseOru(parseHl7(`${H()}\rOBR|1||S1\rOBX|1|NM|x^^LN||1|${obx6}`)).drafts[0];
    expect(d.value).toMatchObject({ kind: 'quantity', unit });
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
    expect(d.value).toEqual({ kind: 'structured-numeric', num1: '1', separator: ':', num2: '128', unit: '' });
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

  it('strict: broken content → ParseError with location (the listener option for sites that want AE)', () => {
    const loc = (text: string) => {
      try {
        parseOru(parseHl7(text), { strict: true });
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
    expect(loc(`${H()}\rOBR|1\rOBX|1|NM|x^^LN||<0.5||||||F`)).toBe('OBX^1^5 102');
    expect(loc(`${H()}\rOBR|1\rOBX|1|NM|x^^LN||1||||||Z`)).toBe('OBX^1^11 103');
  });

  it('lenient (default): structural faults only are errors: no MSH-9, MSH-10, MSH-12', () => {
    const loc = (text: string) => {
      try {
        parseOru(parseHl7(text, { lenient: true }));
      } catch (e) {
        expect(e).toBeInstanceOf(ParseError);
        return `${(e as ParseError).location} ${(e as ParseError).hl7ErrorCode}`;
      }
      return 'ok';
    };
    expect(loc(`MSH|^~\\&|A|B|||1||ORU^R01||P|2.5`)).toBe('MSH^1^10 101');
    expect(loc(`MSH|^~\\&|A|B|||1||||P|2.5`)).toBe('MSH^1^9 101');
    expect(loc(`MSH|^~\\&|A|B|||1||ORU^R01|C1|P|`)).toBe('MSH^1^12 101');
    expect(() => parseHl7('PID|1||X', { lenient: true })).toThrow(ParseError);
    expect(() => parseHl7('MSH|^~|A', { lenient: true })).toThrow(ParseError);
  });

  // one bad part never costs the good parts: every variant keeps the good result beside the bad one
  const lenientCases: Array<{ name: string; obx: string; expect: Record<string, unknown>; flag?: string }> = [
    { name: 'NM not a number', obx: 'OBX|2|NM|y^^LN||abc|mg/L|||||F', expect: { value: { kind: 'text', text: 'abc' }, statusCode: 'F' }, flag: 'invalid-number' },
    { name: 'NM decimal comma', obx: 'OBX|2|NM|y^^LN||4,5|mg/L|||||F', expect: { value: { kind: 'text', text: '4,5' } }, flag: 'invalid-number' },
    { name: 'NM <0.5', obx: 'OBX|2|NM|y^^LN||<0.5|mg/L|||||F', expect: { value: { kind: 'quantity', value: 0.5, comparator: '<', decimal: '0.5', unit: 'mg/L' } } },
    { name: 'NM >1500', obx: 'OBX|2|NM|y^^LN||>1500|U/L|||||F', expect: { value: { kind: 'quantity', value: 1500, comparator: '>', unit: 'U/L' } } },
    { name: 'NM <= 0.01', obx: 'OBX|2|NM|y^^LN||<= 0.01|ng/mL|||||F', expect: { value: { kind: 'quantity', value: 0.01, comparator: '<=', decimal: '0.01' } } },
    { name: 'NM >=2.50', obx: 'OBX|2|NM|y^^LN||>=2.50|ng/mL|||||F', expect: { value: { kind: 'quantity', comparator: '>=', decimal: '2.50' } } },
    { name: 'NM range 2-5', obx: 'OBX|2|NM|y^^LN||2-5|/[HPF]|||||F', expect: { value: { kind: 'structured-numeric', num1: '2', separator: '-', num2: '5' } } },
    { name: 'NM titer 1/80', obx: 'OBX|2|NM|y^^LN||1/80||||||F', expect: { value: { kind: 'structured-numeric', num1: '1', separator: '/', num2: '80' } } },
    { name: 'NM 2+', obx: 'OBX|2|NM|y^^LN||2+||||||F', expect: { value: { kind: 'structured-numeric', num1: '2', separator: '+' } } },
    { name: 'NM with spaces', obx: 'OBX|2|NM|y^^LN|| 7.0 |mg/L|||||F', expect: { value: { kind: 'quantity', value: 7, decimal: '7.0' } } },
    { name: 'SN malformed', obx: 'OBX|2|SN|y^^LN||=<^x^-^y||||||F', expect: { value: { kind: 'text' } }, flag: 'invalid-value' },
    { name: 'OBX-14 not a date', obx: 'OBX|2|NM|y^^LN||5|mg/L|||||F|||2024-01-01', expect: { value: { kind: 'quantity', value: 5 } }, flag: 'invalid-datetime' },
    { name: 'OBX-11 unknown letter', obx: 'OBX|2|NM|y^^LN||5|mg/L|||||Z', expect: { statusCode: 'R', deviceStatus: 'Z', status: 'preliminary' }, flag: 'unknown-status' },
    { name: 'OBX-11 empty', obx: 'OBX|2|NM|y^^LN||5|mg/L', expect: { statusCode: 'R', status: 'preliminary' }, flag: 'unknown-status' },
    { name: 'OBX-11 lower case f', obx: 'OBX|2|NM|y^^LN||5|mg/L|||||f', expect: { statusCode: 'F', deviceStatus: 'f', status: 'final' } },
    { name: 'NM with shifted components ^<^0.5 (not even an SN): kept whole as text', obx: 'OBX|2|NM|y^^LN||^<^0.5|mg/dL|||||F', expect: { value: { kind: 'text', text: '^<^0.5', unit: 'mg/dL' } }, flag: 'invalid-number' },
    { name: 'NM <^0.5 in components', obx: 'OBX|2|NM|y^^LN||<^0.5|mg/dL|||||F', expect: { value: { kind: 'quantity', value: 0.5, comparator: '<', unit: 'mg/dL' } } },
    { name: 'NM with repetitions ~5', obx: 'OBX|2|NM|y^^LN||~5|mg|||||F', expect: { value: { kind: 'text', text: '~5', unit: 'mg' } }, flag: 'invalid-number' },
    { name: 'NM 5~6 kept whole', obx: 'OBX|2|NM|y^^LN||5~6|mg|||||F', expect: { value: { kind: 'text', text: '5~6', unit: 'mg' } }, flag: 'invalid-number' },
    { name: 'NM with an exponent is not silently 1200', obx: 'OBX|2|NM|y^^LN||1.2e3|U/L|||||F', expect: { value: { kind: 'text', text: '1.2e3', unit: 'U/L' } }, flag: 'invalid-number' },
    { name: 'ST keeps its unit', obx: 'OBX|2|ST|y^^LN||POS|mg|||||F', expect: { value: { kind: 'text', text: 'POS', unit: 'mg' } } },
    { name: 'CE keeps its unit', obx: 'OBX|2|CE|y^^LN||A^B|mg/dL|||||F', expect: { value: { kind: 'coded', code: 'A', unit: 'mg/dL' } } },
    { name: 'empty OBX-2 with a value: kept with its unit, flagged', obx: 'OBX|2||y^^LN||42|mg/dL|||||F', expect: { value: { kind: 'text', text: '42', unit: 'mg/dL' } }, flag: 'invalid-value' },
    { name: 'unit 10^9/L with an unescaped ^ stays one unit', obx: 'OBX|2|NM|y^^LN||5.1|10^9/L|||||F', expect: { value: { kind: 'quantity', value: 5.1, unit: '10^9/L' } } },
    { name: 'ED without encoding', obx: 'OBX|2|ED|y^^LN||^image^png||||||F', expect: { value: { kind: 'text' } }, flag: 'invalid-value' },
  ];
  for (const c of lenientCases) {
    it(`lenient: ${c.name} → the good result stays, the odd one is kept${c.flag ? ` and flagged ${c.flag}` : ''}`, () => {
      const r = parseOru(parseHl7(`${H()}\rPID|1||P1\rOBR|1||S1|x^^LN\rOBX|1|NM|x^^LN||1.0|mg/L|||||F\r${c.obx}`, { lenient: true }));
      expect(r.drafts).toHaveLength(2);
      expect(r.drafts[0]).toMatchObject({ value: { kind: 'quantity', value: 1, decimal: '1.0' }, statusCode: 'F' });
      expect(r.drafts[0].quality).toBeUndefined();
      expect(r.drafts[1]).toMatchObject(c.expect);
      if (c.flag) expect(r.drafts[1].quality?.map((q) => q.code)).toContain(c.flag);
      else expect(r.drafts[1].quality).toBeUndefined();
    });
  }

  it('PID-2 and PID-4 identifiers are kept (after PID-3), so a device without PID-3 still names its patient', () => {
    const r = parseOru(parseHl7(`${H()}\rPID|1|777||ALT9^^^H|DOE^JANE||19800101|F\rOBR|1||S1|x^^LN\rOBX|1|NM|x^^LN||1||||||F`, { lenient: true }));
    expect(r.drafts[0].subject).toMatchObject({ patientId: '777', patientIds: [{ id: '777', type: 'PT' }, { id: 'ALT9', authority: 'H', type: 'U' }], patientName: 'DOE^JANE' });
  });

  it('lenient: an OBX without OBX-3 is withheld (for quarantine), the others arrive', () => {
    const r = parseOru(parseHl7(`${H()}\rOBR|1||S1|x^^LN\rOBX|1|NM|x^^LN||1||||||F\rOBX|2|NM|||2||||||F\rOBX|3|NM|z^^LN||3||||||F`, { lenient: true }));
    expect(r.drafts.map((d) => d.code.code)).toEqual(['x', 'z']);
    expect(r.withheld).toEqual([{ location: 'OBX^2', reason: 'OBX^2^3: observation identifier missing (the result cannot be identified)', text: 'OBX|2|NM|||2||||||F' }]);
  });

  it('lenient: OBX before any OBR keeps its results; PID-7 and OBR-7 faults are message flags', () => {
    const r = parseOru(parseHl7(`${H()}\rPID|1||P1||DOE^J||1970-01-01\rOBX|1|NM|x^^LN||1|||||F\rOBR|1||S1|x^^LN|||not-a-time\rOBX|1|NM|y^^LN||2|||||F`, { lenient: true }));
    expect(r.drafts.map((d) => d.code.code)).toEqual(['x', 'y']);
    expect(r.drafts[0].subject?.patientId).toBe('P1');
    expect(r.drafts[0].subject?.birthDate).toBeUndefined();
    expect(r.messageFlags.map((f) => `${f.code}@${f.location}`)).toEqual(['invalid-datetime@PID^1^7', 'invalid-value@OBX^1', 'invalid-datetime@OBR^1^7']);
  });

  it('lenient: two segments run together (lost terminator) are split and both flagged; a line that is not a segment is withheld', () => {
    const r = parseOru(parseHl7(`${H()}\rOBR|1||S1|x^^LN\rOBX|1|NM|704-7^BAS#^LNOBX|2|NM|711-2^EOS#^LN||0.12|10*3/uL|||||F\r||0.06|10*3/uL|0.00-0.10|~N|||F\rOBX|3|NM|z^^LN||3||||||F`, { lenient: true }));
    expect(r.drafts.map((d) => [d.code.code, d.code.system, d.quality?.map((q) => q.code) ?? []])).toEqual([
      ['704-7', 'http://loinc.org', ['segment-truncated', 'unknown-status']],
      ['711-2', 'http://loinc.org', ['segment-terminator-missing']],
      ['z', 'http://loinc.org', []],
    ]);
    expect(r.drafts[0].value).toBeUndefined();
    expect(r.drafts[1].value).toMatchObject({ kind: 'quantity', value: 0.12 });
    expect(r.withheld.map((w) => w.location)).toEqual(['LINE^4']);
  });

  it('a field value that merely ends in a segment ID is not split', () => {
    const r = parseOru(parseHl7(`${H()}\rOBR|1||S1|x^^LN\rOBX|1|ST|x^^LN||DOBX|1|||||F\rOBX|2|ST|y^^LN||NOTE|2|||||F`, { lenient: true }));
    expect(r.drafts.map((d) => d.value)).toEqual([{ kind: 'text', text: 'DOBX', unit: '1' }, { kind: 'text', text: 'NOTE', unit: '2' }]);
  });

  it('data types keep their components: ED, RP, CWE with alternate and original text, TX blank lines, FT formatting', () => {
    const b64 = Buffer.from('histogram').toString('base64');
    const r = parseOru(
      parseHl7(
        [
          H(),
          'OBR|1||S1|x^^LN',
          `OBX|1|ED|h^Histogram^99MRC||ERBA^Application^Octet-stream^Base64^${b64}||||||F`,
          'OBX|2|RP|p^Image^L||/img/1.png^PACS^IM^PNG||||||F',
          'OBX|3|CWE|c^^LN||10828004^Positive^SCT^POS^Pos^L^2024^1^positive!||||||F',
          'OBX|4|TX|t^^L||line 1~~line 3~||||||F',
          'OBX|5|FT|f^^L||\\H\\Bold\\N\\ text\\.br\\next||||||F',
        ].join('\r'),
        { lenient: true },
      ),
    );
    const [ed, rp, cwe, tx, ft] = r.drafts.map((d) => d.value);
    expect(ed).toEqual({ kind: 'encapsulated', sourceApplication: 'ERBA', typeOfData: 'Application', dataSubtype: 'Octet-stream', encoding: 'Base64', data: b64 });
    expect(rp).toEqual({ kind: 'reference', pointer: '/img/1.png', application: 'PACS', typeOfData: 'IM', subtype: 'PNG' });
    expect(cwe).toEqual({ kind: 'coded', system: 'SCT', code: '10828004', display: 'Positive', alternate: { system: 'local', code: 'POS', display: 'Pos' }, systemVersion: '2024', alternateSystemVersion: '1', originalText: 'positive!' });
    expect(tx).toEqual({ kind: 'text', text: 'line 1\n\nline 3\n', repetitions: ['line 1', '', 'line 3', ''] });
    expect(ft).toEqual({ kind: 'text', text: 'Bold text\nnext', formatted: ['\\H\\Bold\\N\\ text\\.br\\next'] });
  });

  it('hl7TimeToIso', () => {
    expect(hl7TimeToIso('20250301', 'x')).toBe('2025-03-01');
    expect(hl7TimeToIso('202503010930', 'x')).toBe('2025-03-01T09:30:00');
    expect(hl7TimeToIso('20250301093010.123-0500', 'x')).toBe('2025-03-01T09:30:10.123-05:00');
    expect(hl7TimeToIso('', 'x')).toBeUndefined();
  });
});
