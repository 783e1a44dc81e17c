import { describe, expect, it } from 'vitest';
import { assertValidOruR01v251, validateOruR01v251 } from './hl7v251-validator';

// The ORU^R01 of /work/shared/docs/protocols.md §3.6 (composed example), one string per segment.
const EXAMPLE: readonly string[] = [
  'MSH|^~\\&|VNGW|BV_DEMO|HIS|BV_DEMO|20250301093100+0700||ORU^R01^ORU_R01|GW-000123|P|2.5.1|||||VNM|UNICODE UTF-8',
  'PID|1||BN0012345^^^BV_DEMO^MR~079085001234^^^VNM^NNVNM||Nguyễn^Văn An||19850412|M',
  'PV1|1|O|KHAMBENH',
  'ORC|RE|HIS-ORD-7781|2503010042^LIS||CM',
  'OBR|1|HIS-ORD-7781|2503010042^LIS|58410-2^CBC panel - Blood by Automated count^LN|||20250301080500|||||||||||||||20250301093010|||F',
  'OBX|1|NM|6690-2^Leukocytes [#/volume] in Blood by Automated count^LN||7.85|10*3/uL^^UCUM|4.00-10.00|N|||F|||20250301092950||||XN1000-1^HEMA01|20250301092950',
  'OBX|2|NM|718-7^Hemoglobin [Mass/volume] in Blood^LN||11.6|g/dL^^UCUM|13.0-17.0|L|||F|||20250301092950||||XN1000-1^HEMA01|20250301092950',
  'OBX|3|NM|777-3^Platelets [#/volume] in Blood by Automated count^LN||512|10*3/uL^^UCUM|150-400|H|||F|||20250301092950||||XN1000-1^HEMA01|20250301092950',
  'NTE|1|L|Platelet clumps?',
  'SPM|1|2503010042||BLD^Whole blood^HL70487|||||||||||||20250301080500|20250301084000',
];

const join = (segs: readonly string[]): string => segs.join('\r');

/** Index of the n-th (1-based) segment with this ID. */
function segIndex(segs: readonly string[], id: string, occ = 1): number {
  let seen = 0;
  const i = segs.findIndex((s) => s.startsWith(`${id}|`) && ++seen === occ);
  if (i < 0) throw new Error(`no ${id}[${occ}] in the test message`);
  return i;
}

/** The example with field `n` of segment `id[occ]` replaced (MSH-n counts MSH-1 as the separator). */
function withField(id: string, n: number, value: string, occ = 1, base: readonly string[] = EXAMPLE): string[] {
  const segs = [...base];
  const i = segIndex(segs, id, occ);
  const f = segs[i].split('|');
  const k = id === 'MSH' ? n - 1 : n;
  while (f.length <= k) f.push('');
  f[k] = value;
  segs[i] = f.join('|');
  return segs;
}

function without(id: string, occ = 1, base: readonly string[] = EXAMPLE): string[] {
  const segs = [...base];
  segs.splice(segIndex(segs, id, occ), 1);
  return segs;
}

function moved(id: string, beforeId: string, base: readonly string[] = EXAMPLE): string[] {
  const segs = [...base];
  const [seg] = segs.splice(segIndex(segs, id), 1);
  segs.splice(segIndex(segs, beforeId), 0, seg);
  return segs;
}

describe('HL7 v2.5.1 ORU^R01 validator: valid messages', () => {
  const valid: Array<[string, string]> = [
    ['the protocols.md §3.6 example, CR-joined', join(EXAMPLE)],
    ['the example with a final CR', `${join(EXAMPLE)}\r`],
    ['SN with comparator', join(withField('OBX', 5, '<^0.5', 1, withField('OBX', 2, 'SN')))],
    ['SN ratio', join(withField('OBX', 5, '^1^:^128', 1, withField('OBX', 2, 'SN')))],
    ['SN suffix 2+', join(withField('OBX', 5, '^2^+', 1, withField('OBX', 2, 'SN')))],
    ['NM with sign and trailing zeros', join(withField('OBX', 5, '-4.20'))],
    ['ED with Base64 data', join(withField('OBX', 5, '^AP^PDF^Base64^JVBERi0xLjQK', 1, withField('OBX', 2, 'ED')))],
    ['TX with blank repetitions and escapes', join(withField('OBX', 5, 'line 1~~a \\F\\ b \\S\\ c \\T\\ d \\R\\ e \\E\\ f\\X0D0A\\', 1, withField('OBX', 2, 'TX')))],
    ['FT with formatting commands', join(withField('OBX', 5, 'first\\.br\\second\\.sp 2\\\\H\\bold\\N\\', 1, withField('OBX', 2, 'FT')))],
    ['CWE result', join(withField('OBX', 5, '260385009^Negative^SCT', 1, withField('OBX', 2, 'CWE')))],
    ['CE result with a local code system', join(withField('OBX', 5, 'NEG^Negative^99LAB', 1, withField('OBX', 2, 'CE')))],
    ['TS result', join(withField('OBX', 5, '20250301092950+0700', 1, withField('OBX', 2, 'TS')))],
    ['no patient (PATIENT group is optional)', join(without('PV1', 1, without('PID')))],
    ['OBX in the SPECIMEN group', join([...EXAMPLE, 'OBX|1|NM|9999-9^Specimen volume^LN||2.0|mL^^UCUM|||||F'])],
    ['two patients, OBR-1 and OBX-1 restart', join([...EXAMPLE, 'PID|2||BN0099^^^BV_DEMO^MR||Tran^Binh', 'OBR|1||X1^LIS|718-7^Hb^LN', 'OBX|1|NM|718-7^Hb^LN||12.0|g/dL^^UCUM|||||F', 'DSC|1'])],
    ['MSH-11 T', join(withField('MSH', 11, 'T'))],
  ];
  it.each(valid)('%s', (_name, msg) => {
    expect(validateOruR01v251(msg)).toEqual([]);
    expect(() => assertValidOruR01v251(msg)).not.toThrow();
  });

  it('profile: another Table 0211 charset passes only when the profile allows it', () => {
    const msg = join(withField('MSH', 18, '8859/1'));
    expect(validateOruR01v251(msg, { charset: null })).toEqual([]);
    expect(validateOruR01v251(msg).join('\n')).toContain("MSH[1]-18: character set must be 'UNICODE UTF-8'");
  });
});

describe('HL7 v2.5.1 ORU^R01 validator: each broken variant reports its problem', () => {
  const E = EXAMPLE;
  const broken: Array<[string, string, string]> = [
    // 1. bytes and terminators (2.5.1, 2.7)
    ['LF inside a field', join(withField('NTE', 3, 'Platelet\nclumps')), 'LF (0x0A)'],
    ['CRLF segment terminators', E.join('\r\n'), 'LF (0x0A)'],
    ['raw BEL 0x07', join(withField('NTE', 3, 'ring\x07bell')), 'NTE[1]-3: raw control character 0x07'],
    ['raw DEL 0x7F', join(withField('OBX', 7, '4.0\x7F')), 'OBX[1]-7: raw control character 0x7F'],
    ['raw TAB', join(withField('PID', 5, 'Nguyen\tVan')), 'PID[1]-5: raw control character 0x09'],
    ['empty segment', join([...E.slice(0, 3), '', ...E.slice(3)]), 'segment #4: empty segment'],
    ['unclosed escape', join(withField('NTE', 3, 'abc\\X0D')), 'NTE[1]-3.1.1: unclosed escape sequence'],
    ['unknown escape code', join(withField('NTE', 3, 'a\\Q\\b')), 'invalid escape sequence'],
    ['odd hex digits in \\X', join(withField('NTE', 3, 'a\\X0\\b')), 'invalid escape sequence'],
    ['empty escape \\\\', join(withField('NTE', 3, 'a\\\\b')), 'invalid escape sequence'],
    ['lower-case segment ID', join([...E.slice(0, 9), 'nte|2|L|x', ...E.slice(9)]), 'segment ID must be three upper-case'],
    // 2. MSH (2.15.9)
    ['MSH-2 not ^~\\&', E.map((s, i) => (i === 0 ? s.replace('^~\\&', '^~\\#') : s)).join('\r'), 'MSH[1]-2: encoding characters'],
    ['MSH-7 month 13', join(withField('MSH', 7, '20251301093100+0700')), 'MSH[1]-7.1: not a valid DTM'],
    ['MSH-7 missing', join(withField('MSH', 7, '')), 'MSH[1]-7: required field missing'],
    ['MSH-9 without structure', join(withField('MSH', 9, 'ORU^R01')), 'MSH[1]-9: message type must be'],
    ['MSH-9 ADT', join(withField('MSH', 9, 'ADT^A01^ADT_A01')), 'MSH[1]-9'],
    ['MSH-10 empty', join(withField('MSH', 10, '')), 'MSH[1]-10: required field missing'],
    ['MSH-10 longer than 20', join(withField('MSH', 10, 'GW-0001234567890123456')), 'MSH[1]-10: message control ID is 22 characters'],
    ['MSH-11 X', join(withField('MSH', 11, 'X')), "'X' is not in HL7 Table 0103"],
    ['MSH-12 2.3.1', join(withField('MSH', 12, '2.3.1')), "MSH[1]-12: version ID must be '2.5.1'"],
    ['MSH-18 not in Table 0211', join(withField('MSH', 18, 'UTF8')), 'is not in HL7 Table 0211'],
    // 3. structure (7.3.1)
    ['PV1 before PID', join(moved('PV1', 'PID')), 'required PID missing in PATIENT'],
    ['OBX before OBR', join(moved('OBR', 'NTE')), 'required OBR missing in ORDER_OBSERVATION'],
    ['no OBR at all', join(without('OBR')), 'required OBR missing'],
    ['SFT after PID', join([...E.slice(0, 2), 'SFT|Vendor^L|1.0|GW|1', ...E.slice(2)]), 'segment #3 (SFT[1]): unexpected segment SFT'],
    ['second MSH', join([...E, E[0]]), 'unexpected segment MSH'],
    ['Z segment', join([...E.slice(0, 6), 'ZXX|1|local', ...E.slice(6)]), 'unexpected segment ZXX'],
    ['DSC not last', join([...E.slice(0, 4), 'DSC|1', ...E.slice(4)]), 'segment #5 (DSC[1]): unexpected segment DSC'],
    // 4. required fields and Set IDs
    ['OBR-4 missing', join(withField('OBR', 4, '')), 'OBR[1]-4: required field missing'],
    ['PID-3 missing', join(withField('PID', 3, '')), 'PID[1]-3: required field missing'],
    ['PID-5 missing', join(withField('PID', 5, '')), 'PID[1]-5: required field missing'],
    ['OBX-3 missing', join(withField('OBX', 3, '', 2)), 'OBX[2]-3: required field missing'],
    ['OBX-11 missing', join(withField('OBX', 11, '', 3)), 'OBX[3]-11: required field missing'],
    ['SPM without SPM-4', join(withField('SPM', 4, '')), 'SPM[1]-4: required field missing'],
    ['PID-3 identifier without id', join(withField('PID', 3, '^^^BV_DEMO^MR')), 'PID[1]-3.1: required component missing'],
    ['OBX-2 empty with OBX-5 valued', join(withField('OBX', 2, '')), 'OBX[1]-2: value type is required when OBX-5 is valued'],
    ['OBX-1 out of sequence', join(withField('OBX', 1, '3', 2)), 'OBX[2]-1: Set ID is 3, expected 2'],
    ['PID-1 not 1', join(withField('PID', 1, '2')), 'PID[1]-1: Set ID is 2, expected 1'],
    ['NTE-1 not numeric', join(withField('NTE', 1, 'a')), "NTE[1]-1: 'a' is not an SI"],
    ['OBX-11 repeated', join(withField('OBX', 11, 'F~F')), 'OBX[1]-11: field does not repeat'],
    // 5. data types
    ['OBX-2 NM with <0.5', join(withField('OBX', 5, '<0.5')), "OBX[1]-5: '<0.5' is not a valid NM"],
    ['OBX-2 NM with components', join(withField('OBX', 5, '7.85^1')), 'OBX[1]-5: OBX-2 is NM (a primitive type) but OBX-5 has components'],
    ['OBX-2 not in Table 0125', join(withField('OBX', 2, 'XX')), "OBX[1]-2: 'XX' is not in HL7 Table 0125"],
    ['SN bad comparator', join(withField('OBX', 5, '<<^0.5', 1, withField('OBX', 2, 'SN'))), 'OBX[1]-5.1: SN comparator'],
    ['SN num1 not NM', join(withField('OBX', 5, '<^abc', 1, withField('OBX', 2, 'SN'))), 'OBX[1]-5.2: SN num1'],
    ['SN range without num2', join(withField('OBX', 5, '^1^-', 1, withField('OBX', 2, 'SN'))), 'OBX[1]-5.4: SN separator'],
    ['SN bad separator', join(withField('OBX', 5, '^1^x^2', 1, withField('OBX', 2, 'SN'))), 'OBX[1]-5.3: SN separator/suffix'],
    ['ED bad Base64', join(withField('OBX', 5, '^AP^PDF^Base64^abc$%', 1, withField('OBX', 2, 'ED'))), 'OBX[1]-5.5: ED data is not valid Base64'],
    ['ED unknown encoding', join(withField('OBX', 5, '^AP^PDF^Base32^MZXW6===', 1, withField('OBX', 2, 'ED'))), 'is not in HL7 Table 0299'],
    ['ED with 4 components', join(withField('OBX', 5, '^AP^PDF^Base64', 1, withField('OBX', 2, 'ED'))), 'ED has 5 components, found 4'],
    ['CWE coding system without code', join(withField('OBX', 5, '^^LN', 1, withField('OBX', 2, 'CWE'))), 'has neither an identifier nor a text'],
    ['CE coding system not in Table 0396', join(withField('OBX', 3, '718-7^Hb^LOINC', 2)), "OBX[2]-3.3: 'LOINC' is not in HL7 Table 0396"],
    ['DT result 30 February', join(withField('OBX', 5, '20250230', 1, withField('OBX', 2, 'DT'))), 'OBX[1]-5: not a valid DT'],
    ['OBR-7 not a date', join(withField('OBR', 7, 'notadate')), 'OBR[1]-7.1: not a valid DTM'],
    ['PID-7 bad date', join(withField('PID', 7, '19851312')), 'PID[1]-7.1: not a valid DTM'],
    ['formatting command in ST', join(withField('OBX', 5, 'a\\.br\\b', 1, withField('OBX', 2, 'ST'))), 'formatting commands'],
    // 6. tables
    ['OBX-11 Z', join(withField('OBX', 11, 'Z')), "OBX[1]-11: 'Z' is not in HL7 Table 0085"],
    ['OBX-8 Q', join(withField('OBX', 8, 'H~Q')), "OBX[1]-8(2): 'Q' is not in HL7 Table 0078"],
    ['PID-3 type PRACTICE', join(withField('PID', 3, 'BN0012345^^^BV_DEMO^PRACTICE')), "PID[1]-3.5: 'PRACTICE' is not in HL7 Table 0203"],
    ['PID-3 national type with bad pattern', join(withField('PID', 3, '079^^^VNM^NNVN')), "'NNVN' is not in HL7 Table 0203"],
    ['PID-3 type missing', join(withField('PID', 3, 'BN0012345^^^BV_DEMO')), 'PID[1]-3.5: identifier type missing'],
    ['PID-8 X', join(withField('PID', 8, 'X')), "PID[1]-8: 'X' is not in HL7 Table 0001"],
    ['SPM-4 not in Table 0487', join(withField('SPM', 4, 'BLOOD^Blood^HL70487')), "specimen type 'BLOOD' is not in HL7 Table 0487"],
    ['SPM-4 not in Table 0487, no coding system', join(withField('SPM', 4, 'XYZ')), "specimen type 'XYZ' is not in HL7 Table 0487"],
    ['OBX-6 UCUM without a code', join(withField('OBX', 6, '^per microliter^UCUM')), 'OBX[1]-6.1: coding system is UCUM but the unit code is empty'],
    ['ORC-1 not in Table 0119', join(withField('ORC', 1, 'ZZ')), "ORC[1]-1: 'ZZ' is not in HL7 Table 0119"],
  ];

  it('has at least 20 broken variants', () => {
    expect(broken.length).toBeGreaterThanOrEqual(20);
  });

  it.each(broken)('%s', (_name, msg, expected) => {
    const problems = validateOruR01v251(msg);
    expect(problems.some((p) => p.includes(expected)), `expected a problem containing "${expected}", got:\n${problems.join('\n')}`).toBe(true);
    expect(() => assertValidOruR01v251(msg)).toThrow(expected);
  });

  it.each([
    ['DSC in the middle', [...EXAMPLE.slice(0, 4), 'DSC|1', ...EXAMPLE.slice(4)], 'segment #5 (DSC[1])'],
    ['Z segment among OBX', [...EXAMPLE.slice(0, 6), 'ZXX|1', ...EXAMPLE.slice(6)], 'segment #7 (ZXX[1])'],
    ['SFT after PID', [...EXAMPLE.slice(0, 2), 'SFT|Vendor^L|1.0|GW|1', ...EXAMPLE.slice(2)], 'segment #3 (SFT[1])'],
  ])('a single misplaced segment is blamed alone: %s', (_name, segs, expected) => {
    const problems = validateOruR01v251(join(segs));
    expect(problems).toHaveLength(1);
    expect(problems[0]).toContain(expected);
  });

  it('keeps patient data out of problems about patient fields', () => {
    const msg = join(withField('PID', 5, 'Secretname\\Q\\x', 1, withField('PID', 3, 'SECRETID^^^BV_DEMO^PRACTICE')));
    const text = validateOruR01v251(msg).join('\n');
    expect(text).toContain('PID[1]-5');
    expect(text).toContain('PID[1]-3.5');
    expect(text).not.toContain('Secretname');
    expect(text).not.toContain('SECRETID');
  });

  it('reports each problem once, in a readable list', () => {
    const msg = join(withField('OBX', 11, 'Z', 1, withField('OBR', 4, '')));
    const problems = validateOruR01v251(msg);
    expect(problems).toHaveLength(2);
    expect(() => assertValidOruR01v251(msg)).toThrow(/2 problems[\s\S]*OBR\[1\]-4[\s\S]*OBX\[1\]-11/);
  });
});
