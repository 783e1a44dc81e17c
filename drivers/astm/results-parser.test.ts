import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ParseError } from '../../gateway/src/contracts/errors';
import { buildOrderResponse } from './order-response';
import { loadProfiles } from './profile';
import { field, parseRecords, unescape } from './records';
import { ASTM_RESULT_STATUS, mapAstmResultStatus } from './result-status';
import { parseAstmMessage, parseAstmValue } from './results-parser';

const profiles = loadProfiles(join(__dirname, '../../firmware-config/profiles/astm'));
const lines = (f: string): string[] => readFileSync(join(__dirname, 'fixtures', f), 'latin1').split(/\r?\n|\r/).filter((l) => l);

describe('E1394 records', () => {
  it('takes delimiters from the H record (Cepheid-style H|@^\\ with @ as repeat)', () => {
    const m = parseRecords(['H|@^\\|||GX^1', 'O|1|S1||^^^A@^^^B', 'L|1|N']);
    expect(m.delimiters).toEqual({ field: '|', repeat: '@', component: '^', escape: '\\' });
    expect(field(m.records[1], 5).split(m.delimiters.repeat)).toEqual(['^^^A', '^^^B']);
  });
  it('decodes escapes &F& &S& &R& &E& and &Xhhhh&', () => {
    const d = { field: '|', repeat: '\\', component: '^', escape: '&' };
    expect(unescape('a&F&b&S&c&R&d&E&e&X4142&', d)).toBe('a|b^c\\d&eAB');
  });
  it('rejects a message that does not start with H', () => {
    expect(() => parseRecords(['P|1', 'L|1|N'])).toThrow(ParseError);
    expect(() => parseRecords(['hello world'])).toThrow(ParseError);
  });
  it('passes M and S records through', () => {
    const m = parseRecords(lines('vendor-roche-c311.astm'));
    expect(m.records.map((r) => r.type).join('')).toBe('HPORCRCRML');
  });
});

describe('results parser', () => {
  it('generic layout ^^^CODE with LOINC mapping, ranges, comments, status, operator, instrument', () => {
    const r = parseAstmMessage(parseRecords(lines('vendor-generic.astm')), profiles.get('generic-lis2-a2')!);
    expect(r.header.messageControlId).toBe('MSG-0042');
    expect(r.drafts).toHaveLength(3);
    expect(r.drafts[0]).toMatchObject({
      code: { system: 'http://loinc.org', code: '6690-2' },
      localCode: { system: 'local', code: 'WBC' },
      value: { kind: 'quantity', value: 7.85, unit: '10*3/uL', decimal: '7.85' },
      referenceRange: '4.00-10.00',
      interpretation: ['N'],
      status: 'final',
      statusCode: 'F',
      operator: 'TECH01',
      effectiveAt: '2025-03-01T09:29:50',
      equipment: { id: 'XN1000-1', name: 'HEMA01' },
      subject: { patientId: 'BN0099999', specimenId: '2503010042', instrumentSpecimenId: '12', birthDate: '19850412', sex: 'M' },
    });
    expect(r.drafts[0].subject!.patientIds).toEqual([
      // HL7 Table 0203 types (LIS02 P.3 practice-assigned → MR, P.5 → PT), not the former PRACTICE/PID3
      { id: 'BN0099999', type: 'MR' },
      { id: 'NID-000111', type: 'PT' },
    ]);
    expect(r.drafts[1]).toMatchObject({ referenceRange: '13.0-17.0', status: 'corrected', comments: ['Platelet clumps^check smear'] });
    expect(r.drafts[2]).toMatchObject({ code: { system: 'local', code: 'CRP' }, value: { kind: 'quantity', value: 0.5, comparator: '<', unit: 'mg/L' }, status: 'preliminary', equipment: { id: 'HEMA01' } });
    // the results of one P/O context share one subject and one order object (written once by the store)
    expect(r.drafts[1].subject).toBe(r.drafts[0].subject);
    expect(r.drafts[2].subject).toBe(r.drafts[0].subject);
    expect(r.drafts[1].order).toBe(r.drafts[0].order);
  });

  it('Sysmex layout ^^^^WBC^1, padded sender and sample number, flag-only and image results kept', () => {
    const r = parseAstmMessage(parseRecords(lines('vendor-sysmex-xn.astm')), profiles.get('sysmex-xn')!);
    expect(r.drafts.map((d) => d.localCode?.code ?? d.code.code)).toEqual(['WBC', 'RBC', 'HGB', 'PLT', 'Anemia', 'SCAT_WDF']);
    expect(r.drafts[0]).toMatchObject({ code: { code: '6690-2' }, equipment: { id: 'XN-550' }, subject: { patientId: 'PID-7781', specimenId: '77', instrumentSpecimenId: '77' } });
    expect(r.drafts[3].value).toEqual({ kind: 'quantity', value: 10, unit: '10*3/uL', comparator: '<', decimal: '10' });
    expect(r.drafts[4]).toMatchObject({ interpretation: ['A'], status: 'final' });
    expect(r.drafts[4].value).toBeUndefined();
    expect(r.drafts[5].value).toEqual({ kind: 'text', text: 'PNG\\20250301\\QA_WDF.PNG' });
  });

  it('Roche layout ^^^717/ (code before /), units mapped to UCUM, C records attached, R without mapping kept', () => {
    const r = parseAstmMessage(parseRecords(lines('vendor-roche-c311.astm')), profiles.get('roche-cobas-c311')!);
    expect(r.drafts).toHaveLength(3);
    expect(r.drafts[0]).toMatchObject({ code: { code: '14749-6' }, localCode: { code: '717' }, value: { value: 9.85, unit: 'mmol/L' }, comments: ['43'], subject: { specimenId: 'QA-5501' }, equipment: { id: 'P1', name: 'c311' } });
    expect(r.drafts[1]).toMatchObject({ value: { value: 88, unit: 'umol/L' }, comments: ['0'] });
    expect(r.drafts[2]).toMatchObject({ code: { system: 'urn:iomt:astm:roche-cobas', code: '999' }, value: { comparator: '>', value: 2000, unit: 'U/L' }, interpretation: ['>'] });
  });

  it('results without an O record are kept; empty status uses the profile default', () => {
    const r = parseAstmMessage(parseRecords(['H|\\^&||PSWD|Maglumi User|||||Lis||P|E1394-97|20250701', 'P|1', 'R|1|^^^TSH II|3.007|uIU/mL|0.3 to 4.5|N||||||20250630152021', 'L|1|N']), profiles.get('snibe-maglumi')!);
    expect(r.drafts[0]).toMatchObject({ code: { code: '3016-3' }, status: 'final', value: { unit: 'u[IU]/mL' }, effectiveAt: '2025-06-30T15:20:21', equipment: { id: 'Maglumi User' } });
  });

  it('protocols.md §2.3 B with the Roche profile', () => {
    const recs = ['H|\\^&|||CHEM01^c311^1|||||LIS||P|1|20250301111500', 'P|1|BN0067890', 'O|1|2503010057|^0^41^2|^^^717/\\^^^690/|R||||||||||SER|||||||20250301111450|||F', 'R|1|^^^717/|9.85|mmol/l|3.9 to 6.4|H||F||SYSTEM||20250301111200|c311-1', 'R|2|^^^690/|88|umol/l|62 to 106|N||F||SYSTEM||20250301111300|c311-1', 'L|1|N'];
    const r = parseAstmMessage(parseRecords(recs), profiles.get('roche-cobas-c311')!);
    expect(r.drafts.map((d) => [d.code.code, d.referenceRange, d.interpretation])).toEqual([
      ['14749-6', '3.9-6.4', ['H']],
      ['14682-9', '62-106', ['N']],
    ]);
  });
});

describe('host query', () => {
  const query = ['H|\\^&|||CHEM01^c311^1|||||LIS||P|1|20250301100000', 'Q|1|^2503010057||ALL||||||||O', 'L|1|N'];
  it('parses Q records into {patientId, specimenIds, tests, status}', () => {
    const r = parseAstmMessage(parseRecords(query), profiles.get('roche-cobas-c311')!);
    expect(r.drafts).toHaveLength(0);
    expect(r.queries).toEqual([{ specimenIds: ['2503010057'], tests: ['ALL'], status: 'O', requester: 'CHEM01^c311^1' }]);
    const q2 = parseAstmMessage(parseRecords(['H|\\^&', 'Q|1|P77^S1\\P77^S2||^^^717/\\^^^690/||||||||O', 'L|1|N']), profiles.get('roche-cobas-c311')!);
    expect(q2.queries[0]).toMatchObject({ patientId: 'P77', specimenIds: ['S1', 'S2'], tests: ['717', '690'] });
  });

  it('answers with H, P, O (action code N, O.26 Q), L|1|F (protocols.md §2.3 C)', () => {
    const profile = profiles.get('roche-cobas-c311')!;
    const q = parseAstmMessage(parseRecords(query), profile).queries[0];
    const recs = buildOrderResponse(q, [{ specimenId: '2503010057', patientId: 'BN0067890', patientName: 'TRẦN^THỊ BÌNH', birthDate: '19790130', sex: 'F', tests: ['14749-6', '690', '685'], requestedAt: '20250301094500', collectedAt: '20250301094000', specimenType: 'SER' }], { profile, now: new Date(2025, 2, 1, 10, 0, 2) });
    expect(recs[0]).toBe('H|\\^&|||IOMT-GW|||||CHEM01^c311^1||P|1|20250301100002');
    expect(recs[1]).toBe('P|1|BN0067890|||TRAN^THI BINH||19790130|F');
    // byte-identical to the composed example of protocols.md §2.3 C
    expect(recs[2]).toBe('O|1|2503010057||^^^717/\\^^^690/\\^^^685/|R|20250301094500|20250301094000||||N||||SER||||||||||Q');
    const o = parseRecords(recs).records[2];
    expect([field(o, 3), field(o, 5), field(o, 6), field(o, 12), field(o, 26)]).toEqual(['2503010057', '^^^717/\\^^^690/\\^^^685/', 'R', 'N', 'Q']);
    expect(recs[3]).toBe('L|1|F');
  });

  it('nothing known → L|1|I, or O.26 Y with noInfoStyle order-record', () => {
    const profile = profiles.get('generic-lis2-a2')!;
    const q = { specimenIds: ['X1'], tests: ['ALL'], status: 'O' };
    expect(buildOrderResponse(q, 'unknown', { profile }).slice(1)).toEqual(['L|1|I']);
    const rec = buildOrderResponse(q, 'unknown', { profile: { ...profile, query: { ...profile.query, noInfoStyle: 'order-record' } } });
    const o = parseRecords(rec).records.find((r) => r.type === 'O')!;
    expect([field(o, 3), field(o, 26)]).toEqual(['X1', 'Y']);
    expect(rec[rec.length - 1]).toBe('L|1|F');
  });
});

describe('result fidelity (issue 8 §5, §6)', () => {
  it('R.9 table: by meaning, never HL7 W for ASTM W, unknown and empty statuses are not final', () => {
    // every LIS02 R.9 letter is in the table; none maps to HL7 W ("wrong patient") or N ("not asked")
    expect(Object.keys(ASTM_RESULT_STATUS).sort()).toEqual(['C', 'F', 'I', 'M', 'N', 'P', 'Q', 'R', 'S', 'V', 'W', 'X']);
    expect(Object.values(ASTM_RESULT_STATUS).map((m) => m.hl7)).not.toContain('W');
    const cases: Array<[string, string | undefined, string, string, string | undefined]> = [
      ['W', undefined, 'R', 'preliminary', 'validity-doubtful'],
      ['R', undefined, 'F', 'final', undefined],
      ['N', undefined, 'P', 'preliminary', undefined],
      ['x', undefined, 'X', 'cancelled', undefined],
      ['Z', undefined, 'R', 'unknown', 'unknown-status'],
      ['', undefined, 'R', 'unknown', 'unknown-status'],
      ['', 'final', 'F', 'final', undefined],
      ['', 'preliminary', 'P', 'preliminary', undefined],
      [' ', 'unknown', 'R', 'unknown', 'unknown-status'],
    ];
    for (const [r9, def, hl7, fhir, flag] of cases) {
      const m = mapAstmResultStatus(r9, def as 'final' | undefined);
      expect([r9, m.hl7, m.fhir, m.flag]).toEqual([r9, hl7, fhir, flag]);
    }
  });

  it('values: comparators, ranges, ratios, titers, text; decimals as sent', () => {
    const cases: Array<[string, unknown]> = [
      ['<0.5', { kind: 'quantity', value: 0.5, comparator: '<', decimal: '0.5', unit: 'u' }],
      ['>= 10.0', { kind: 'quantity', value: 10, comparator: '>=', decimal: '10.0', unit: 'u' }],
      ['-0.30', { kind: 'quantity', value: -0.3, decimal: '-0.30', unit: 'u' }],
      ['2 - 5', { kind: 'structured-numeric', num1: '2', separator: '-', num2: '5', unit: 'u' }],
      ['>1:320', { kind: 'structured-numeric', comparator: '>', num1: '1', separator: ':', num2: '320', unit: 'u' }],
      ['1/80', { kind: 'structured-numeric', num1: '1', separator: '/', num2: '80', unit: 'u' }],
      ['3+', { kind: 'structured-numeric', num1: '3', separator: '+', unit: 'u' }],
      ['REACTIVE', { kind: 'text', text: 'REACTIVE', unit: 'u' }],
      ['<', { kind: 'text', text: '<', unit: 'u' }],
      ['1-', { kind: 'text', text: '1-', unit: 'u' }],
    ];
    for (const [raw, want] of cases) expect([raw, parseAstmValue(raw, 'u')]).toEqual([raw, want]);
    expect(parseAstmValue('  ', 'u')).toBeUndefined();
  });

  const architect = profiles.get('abbott-architect')!;
  const arc = (rs: string[]): string[] => ['H|\\^&|||ARCHITECT^1.00|||||||P|1|20250301093000', 'P|1|||12345', 'O|1|S1||^^^0021^B-hCG^UNDILUTED^P|R', ...rs, 'L|1|N'];

  it('ARCHITECT aspects stay distinct; the raw signal is withheld, or forwarded flagged when the profile says so', () => {
    const recs = arc(['R|1|^^^0021^B-hCG^UNDILUTED^P^L1^S1^^F|3.1|mIU/mL||||F', 'R|2|^^^0021^B-hCG^UNDILUTED^P^L1^S1^^I|NEGATIVE|||||F', 'R|3|^^^0021^B-hCG^UNDILUTED^P^L1^S1^^P|9245|RLU||||F']);
    const r = parseAstmMessage(parseRecords(recs), architect);
    expect(r.drafts.map((x) => [x.code.code, x.code.display, x.value?.kind])).toEqual([
      ['0021', 'B-hCG', 'quantity'],
      ['0021:I', 'B-hCG (I)', 'text'],
    ]);
    expect(r.withheld).toHaveLength(1);
    expect(r.withheld[0]).toMatchObject({ reason: 'raw-signal', location: 'R^6^3', draft: { code: { code: '0021:P' }, value: { value: 9245, unit: 'RLU' } } });
    const fwd = { ...architect, records: { ...architect.records, rawSignal: { ...architect.records.rawSignal, forward: true } } };
    const f = parseAstmMessage(parseRecords(recs), fwd);
    expect(f.withheld).toEqual([]);
    expect(f.drafts[2]).toMatchObject({ code: { code: '0021:P' }, quality: [{ code: 'raw-signal', location: 'R^6^3' }] });
    // a raw unit alone (no aspect) is a raw signal too
    const u = parseAstmMessage(parseRecords(arc(['R|1|^^^0021^B-hCG^UNDILUTED|9245|RLU||||F'])), architect);
    expect([u.drafts.length, u.withheld[0]?.reason]).toEqual([0, 'raw-signal']);
  });

  it('a record without a test code is withheld and flagged; the good results of the message arrive', () => {
    const r = parseAstmMessage(parseRecords(arc(['R|1|^^^0021^B-hCG|3.1|mIU/mL||||F', 'R|2|^^^^^^|4.0|mIU/mL||||F'])), architect);
    expect(r.drafts.map((x) => x.code.code)).toEqual(['0021']);
    expect(r.withheld).toMatchObject([{ reason: 'no-test-code', location: 'R^5^3', draft: { quality: [{ code: 'code-missing', location: 'R^5^3' }], value: { value: 4 } } }]);
  });

  it('patient identifier types follow the profile (Table 0203)', () => {
    const g = profiles.get('generic-lis2-a2')!;
    const prof = { ...g, records: { ...g.records, patientIdTypes: { practice: 'PI', laboratory: 'AN', third: 'NNVNM' } } };
    const r = parseAstmMessage(parseRecords(['H|\\^&', 'P|1|A1|B2|C3', 'R|1|^^^GLU|5|mmol/L||||F', 'L|1|N']), prof);
    expect(r.drafts[0].subject!.patientIds).toEqual([
      { id: 'A1', type: 'PI' },
      { id: 'B2', type: 'AN' },
      { id: 'C3', type: 'NNVNM' },
    ]);
  });
});
