import { describe, expect, it } from 'vitest';
import type { Observation } from '../../gateway/src/contracts/observation';
import { parseHl7 } from './hl7-message';
import { buildOruR251, isoToHl7Time } from './oru-builder';
import { parseOru } from './oru-parser';
import { assertValidOruR01v251, validateOruR01v251 } from '../../test/helpers/hl7v251-validator';

function obs(p: Partial<Observation> & Pick<Observation, 'code'>, seq: number): Observation {
  return { id: `m1-${seq}`, messageId: 1, messageUid: 'm1', seq, deviceId: 'd', driver: 'hl7-mllp', receivedAt: '2025-03-01T02:31:00.000Z', status: 'final', ...p };
}

const subject = { patientId: 'BN0012345', patientIds: [{ id: 'BN0012345', authority: 'BV_DEMO', type: 'MR' }, { id: '079085001234', authority: 'VNM', type: 'NNVNM' }], patientName: 'Nguyễn^Văn An', birthDate: '19850412', sex: 'M', specimenId: '2503010042' };
const order = { placerOrderNumber: 'HIS-ORD-7781', fillerOrderNumber: '2503010042', service: { system: 'http://loinc.org', code: '58410-2', display: 'CBC panel' }, collectedAt: '2025-03-01T08:05:00+07:00', section: 'HM', specimenType: { system: 'HL70487', code: 'BLD', display: 'Whole blood' } };
const OBS: Observation[] = [
  obs({ code: { system: 'http://loinc.org', code: '6690-2', display: 'WBC' }, valueType: 'NM', value: { kind: 'quantity', value: 7.85, unit: '10*3/uL', decimal: '7.850' }, referenceRange: '4.00-10.00', interpretation: ['N'], effectiveAt: '2025-03-01T09:29:50+07:00', subject, order, equipment: { id: 'XN1000-1', name: 'HEMA01' }, operator: 'tech1' }, 1),
  obs({ code: { system: 'http://loinc.org', code: '777-3', display: 'PLT' }, value: { kind: 'quantity', value: 512, unit: '10*3/uL' }, interpretation: ['H', 'A'], subject, order, comments: ['Platelet clumps? a|b^c'], status: 'preliminary', statusCode: 'R' }, 2),
  obs({ code: { system: 'http://loinc.org', code: '1988-5', display: 'CRP' }, value: { kind: 'quantity', value: 0.5, unit: 'mg/L', comparator: '<' }, subject, order }, 3),
  obs({ code: { system: 'urn:iso:std:iso:11073:10101', code: '150456', display: 'MDC_PULS_OXIM_SAT_O2' }, value: { kind: 'quantity', value: 97, unit: '%' }, subject: { patientId: 'P2' }, status: 'corrected' }, 4),
  obs({ code: { system: '99MRC', code: '13103', display: 'Neutrophilia' }, value: { kind: 'text', text: 'T & more ~ text' }, subject, order }, 5),
  obs({ code: { system: 'local', code: 'BG' }, value: { kind: 'coded', system: 'http://loinc.org', code: 'LA1', display: 'A+' }, subject, order }, 6),
];
const OPTS = { controlId: 'GW-000123', sendingApp: 'VNGW', sendingFacility: 'BV_DEMO', receivingApp: 'HIS', receivingFacility: 'BV_DEMO', now: new Date('2025-03-01T02:31:00Z'), country: 'VNM' as const };

describe('buildOruR251', () => {
  it('builds the v2.5.1 structure', () => {
    const text = buildOruR251(OBS, OPTS);
    const lines = text.split('\r');
    expect(lines[0]).toMatch(/^MSH\|\^~\\&\|VNGW\|BV_DEMO\|HIS\|BV_DEMO\|\d{14}[+-]\d{4}\|\|ORU\^R01\^ORU_R01\|GW-000123\|P\|2\.5\.1\|\|\|\|\|VNM\|UNICODE UTF-8$/);
    expect(lines.map((l) => l.slice(0, 3))).toEqual(['MSH', 'PID', 'OBR', 'OBX', 'OBX', 'NTE', 'OBX', 'OBX', 'OBX', 'SPM', 'PID', 'OBR', 'OBX']);
    expect(lines[1]).toBe('PID|1||BN0012345^^^BV_DEMO^MR~079085001234^^^VNM^NNVNM||Nguyễn^Văn An||19850412|M');
    expect(lines[3]).toBe('OBX|1|NM|6690-2^WBC^LN||7.850|10*3/uL^^UCUM|4.00-10.00|N|||F|||20250301092950+0700||tech1||XN1000-1^HEMA01');
    expect(lines[4]).toContain('|H~A|||R');
    expect(lines[5]).toBe('NTE|1|L|Platelet clumps? a\\F\\b\\S\\c');
    expect(lines[6]).toContain('|SN|1988-5^CRP^LN||<^0.5|mg/L^^UCUM|');
    expect(lines[7]).toContain('|ST|13103^Neutrophilia^99MRC||T \\T\\ more \\R\\ text|');
    expect(lines[8]).toContain('|CWE|BG^^L||LA1^A+^LN|');
    expect(lines[9]).toBe('SPM|1|2503010042||BLD^Whole blood^HL70487');
    expect(lines[10]).toBe('PID|2||P2^^^^U||""');
    expect(lines[12]).toContain('|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC||97|%^^UCUM|||||C');
    assertValidOruR01v251(text);
  });

  it('is deterministic for the same input and now', () => {
    expect(buildOruR251(OBS, OPTS)).toBe(buildOruR251(JSON.parse(JSON.stringify(OBS)), { ...OPTS }));
  });

  it('round trip: build → parse gives the same values, units, flags, specimen ids', () => {
    const r = parseOru(parseHl7(buildOruR251(OBS, OPTS)));
    expect(r.header).toMatchObject({ controlId: 'GW-000123', version: '2.5.1', messageType: 'ORU', trigger: 'R01', charset: 'UNICODE UTF-8' });
    expect(r.drafts).toHaveLength(OBS.length);
    const byCode = new Map(r.drafts.map((d) => [d.code.code, d]));
    for (const o of OBS) {
      const d = byCode.get(o.code.code)!;
      expect(d.code).toEqual(o.code);
      // numbers travel as the device wrote them: precision ('7.850') is part of a lab result
      if (o.value?.kind === 'quantity') {
        expect(d.value).toEqual({ ...o.value, decimal: o.value.decimal ?? String(o.value.value) });
      } else expect(d.value).toEqual(o.value);
      expect(d.interpretation).toEqual(o.interpretation);
      expect(d.referenceRange).toEqual(o.referenceRange);
      expect(d.status).toBe(o.status);
      expect(d.subject?.specimenId).toEqual(o.subject?.specimenId);
      expect(d.subject?.patientId).toEqual(o.subject?.patientId);
      expect(d.comments).toEqual(o.comments);
      if (o.effectiveAt) expect(d.effectiveAt).toBe(o.effectiveAt);
      if (o.equipment) expect(d.equipment).toEqual(o.equipment);
    }
    expect(byCode.get('6690-2')!.subject).toMatchObject({ patientIds: subject.patientIds, patientName: subject.patientName, birthDate: '19850412', sex: 'M' });
    expect(byCode.get('6690-2')!.order).toMatchObject({ placerOrderNumber: 'HIS-ORD-7781', fillerOrderNumber: '2503010042', collectedAt: '2025-03-01T08:05:00+07:00', section: 'HM' });
  });

  it('isoToHl7Time', () => {
    expect(isoToHl7Time('2025-03-01T09:29:50Z')).toBe('20250301092950+0000');
    expect(isoToHl7Time('2025-03-01T09:29:50')).toBe('20250301092950');
    expect(isoToHl7Time('2025-03-01')).toBe('20250301');
    expect(isoToHl7Time('2025-03-01T09:29:50.250+07:00')).toBe('20250301092950.250+0700');
  });

  // issue 8 part 5: one rule a case; every output passes the independent v2.5.1 validator
  const one = (p: Partial<Observation>, extra: Partial<Observation> = {}) =>
    buildOruR251([obs({ code: { system: 'http://loinc.org', code: '2345-7', display: 'Glucose' }, subject: { patientId: 'P1', patientIds: [{ id: 'P1', type: 'MR' }] }, ...p, ...extra } as Observation, 1)], OPTS);
  const obxOf = (text: string) => text.split('\r').find((l) => l.startsWith('OBX'))!;
  const rules: Array<{ name: string; p: Partial<Observation>; obx?: string; has?: string[]; not?: string[] }> = [
    { name: 'NM kept with its precision, valid UCUM labelled UCUM', p: { value: { kind: 'quantity', value: 5.4, unit: 'mmol/L', decimal: '5.40' } }, obx: 'OBX|1|NM|2345-7^Glucose^LN||5.40|mmol/L^^UCUM|||||F' },
    { name: 'a unit that is not UCUM is a local code', p: { value: { kind: 'quantity', value: 1200, unit: 'RLU' } }, obx: 'OBX|1|NM|2345-7^Glucose^LN||1200|RLU^^L|||||F' },
    { name: 'IU/mL is not UCUM ([IU]/mL is)', p: { value: { kind: 'quantity', value: 3, unit: 'IU/mL' } }, has: ['|IU/mL^^L|'] },
    { name: 'comparator → SN', p: { value: { kind: 'quantity', value: 1500, unit: 'U/L', comparator: '>=', decimal: '1500' } }, has: ['|SN|', '|>=^1500|U/L^^UCUM|'] },
    { name: 'range → SN with separator', p: { value: { kind: 'structured-numeric', num1: '2', separator: '-', num2: '5', unit: '' } }, has: ['|SN|2345-7^Glucose^LN||^2^-^5|'] },
    { name: 'ratio → SN', p: { value: { kind: 'structured-numeric', num1: '1', separator: ':', num2: '40', unit: '' } }, has: ['||^1^:^40|'] },
    { name: 'bad NM kept as ST with the original text and a quality NTE', p: { valueType: 'NM', value: { kind: 'text', text: '4,5' }, quality: [{ code: 'invalid-number', location: 'OBX^1^5', original: '4,5', text: 'NM value is not a number' }] }, has: ['|ST|2345-7^Glucose^LN||4,5|', 'NTE|1|O|IOMT-GW data quality: invalid-number at OBX[1]-5 - NM value is not a number (device sent: 4,5)|RE^Remark^HL70364'] },
    { name: 'ED with its components', p: { value: { kind: 'encapsulated', sourceApplication: 'ERBA', typeOfData: 'AP', dataSubtype: 'octet-stream', encoding: 'Base64', data: 'aGk=' } }, has: ['|ED|2345-7^Glucose^LN||ERBA^AP^octet-stream^Base64^aGk=|'] },
    { name: 'RP with its components', p: { value: { kind: 'reference', pointer: '/img/1.png', application: 'PACS', typeOfData: 'IM', subtype: 'PNG' } }, has: ['|RP|2345-7^Glucose^LN||/img/1.png^PACS^IM^PNG|'] },
    { name: 'CWE with alternate and original text', p: { value: { kind: 'coded', system: 'SCT', code: '10828004', display: 'Positive', alternate: { system: 'local', code: 'POS', display: 'Pos' }, originalText: 'pos!' } }, has: ['|CWE|2345-7^Glucose^LN||10828004^Positive^SCT^POS^Pos^L^^^pos!|'] },
    { name: 'TX repetitions kept, blank lines included', p: { valueType: 'TX', value: { kind: 'text', text: 'a\n\nc', repetitions: ['a', '', 'c'] } }, has: ['|TX|2345-7^Glucose^LN||a~~c|'] },
    { name: 'FT formatting kept as sent', p: { valueType: 'FT', value: { kind: 'text', text: 'Bold text\nnext', formatted: ['\\H\\Bold\\N\\ text\\.br\\next'] } }, has: ['|FT|2345-7^Glucose^LN||\\H\\Bold\\N\\ text\\.br\\next|'] },
    { name: 'a lone LF in text is data: \\X0A\\, never raw', p: { value: { kind: 'text', text: 'line1\nline2' } }, has: ['||line1\\X0A\\line2|'] },
    { name: 'control characters never raw', p: { value: { kind: 'text', text: 'a\u0007b\u001bc' } }, has: ['||a\\X07\\b\\X1B\\c|'] },
    { name: 'IS (not in v2.5.1 Table 0125) goes as ST with the same text', p: { valueType: 'IS', value: { kind: 'text', text: 'A' } }, has: ['|ST|2345-7^Glucose^LN||A|'] },
    { name: 'DT keeps its type', p: { valueType: 'DT', value: { kind: 'text', text: '20250301' } }, has: ['|DT|2345-7^Glucose^LN||20250301|'] },
    { name: 'status from Table 0085 letter, not the device letter', p: { status: 'preliminary', statusCode: 'R', deviceStatus: 'W', value: { kind: 'quantity', value: 1, unit: 'g/L' } }, has: ['|||||R'], not: ['|||||W'] },
    { name: 'no statusCode: mapped from the FHIR status', p: { status: 'corrected', value: { kind: 'quantity', value: 1, unit: 'g/L' } }, has: ['|||||C'] },
  ];
  for (const r of rules) {
    it(`rule: ${r.name}`, () => {
      const text = one(r.p);
      if (r.obx) expect(obxOf(text)).toBe(r.obx);
      for (const h of r.has ?? []) expect(text).toContain(h);
      for (const n of r.not ?? []) expect(obxOf(text)).not.toContain(n);
      expect(validateOruR01v251(text)).toEqual([]);
    });
  }

  it('MSH-11 passes through the source processing id (T stays T); default P', () => {
    expect(one({ processingId: 'T', value: { kind: 'quantity', value: 1, unit: 'g/L' } }).split('\r')[0]).toContain('|GW-000123|T|2.5.1|');
    expect(one({ processingId: 'D' }).split('\r')[0]).toContain('|D|2.5.1|');
    expect(one({}).split('\r')[0]).toContain('|P|2.5.1|');
  });

  it('OBR-4 from the order, else the result code; a name but no patient id → PID-3 "" with the name, still valid; nothing about the patient → no PID', () => {
    const t = buildOruR251([obs({ code: { system: 'local', code: 'HBA1C', display: 'HbA1c' }, value: { kind: 'quantity', value: 6.1, unit: '%' }, subject: { specimenId: 'S1', patientName: 'DOE^JANE', birthDate: '19800101', sex: 'F' } }, 1)], OPTS);
    const lines = t.split('\r');
    expect(lines.map((l) => l.slice(0, 3))).toEqual(['MSH', 'PID', 'OBR', 'OBX']);
    expect(lines[1]).toBe('PID|1||""||DOE^JANE||19800101|F');
    expect(lines[2]).toContain('OBR|1||S1|HBA1C^HbA1c^L|');
    assertValidOruR01v251(t);
    const anon = buildOruR251([obs({ code: { system: 'local', code: 'HBA1C' }, value: { kind: 'quantity', value: 6.1, unit: '%' }, subject: { specimenId: 'S1' } }, 1)], OPTS);
    expect(anon.split('\r').map((l) => l.slice(0, 3))).toEqual(['MSH', 'OBR', 'OBX']);
    assertValidOruR01v251(anon);
  });
});

