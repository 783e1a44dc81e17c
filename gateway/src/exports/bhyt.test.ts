/**
 * BHYT XML4 export (issue 13 §4) — review cases (session 8, brief B-fhir): time zone of NGAY_KQ, CSV
 * formula injection, amended results, the XML parses with an independent parser (python3's expat) and
 * keeps the Vietnamese text.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import type { Observation } from '../contracts/observation';
import { ngayKq, toCsv, toXml4, xml4Rows, XML4_FIELDS, type BhytCodeMap } from './bhyt';

const MAP: BhytCodeMap = { version: 1, rows: [{ code: 'GLU', MA_DICH_VU: '23.0075.1494', MA_CHI_SO: 'GLU', TEN_CHI_SO: 'Định lượng Glucose' }] };
const OBS = (over: Partial<Observation> = {}): Observation => ({
  id: 'U1-1', messageId: 1, messageUid: 'U1', seq: 1, deviceId: 'an-1', driver: 'astm', receivedAt: '2025-03-01T03:10:05.000Z',
  code: { system: 'local', code: 'GLU', display: 'Glucose' },
  value: { kind: 'quantity', value: 5.4, unit: 'mmol/L', decimal: '5.40' },
  status: 'final', statusCode: 'F', effectiveAt: '2025-03-01T10:10:00+07:00',
  subject: { specimenId: 'S1' }, equipment: { id: 'an-1', machineCode: 'XN.01' },
  ...over,
});

describe('BHYT XML4 export (review)', () => {
  const tz = process.env.TZ;
  afterEach(() => {
    if (tz === undefined) delete process.env.TZ;
    else process.env.TZ = tz;
  });

  it.each([
    ['UTC', '2025-03-01T10:10:00', '202503011010'],
    ['America/New_York', '2025-03-01T10:10:00', '202503011010'],
    ['UTC', '2025-03-01T10:10:00+07:00', '202503011010'],
    ['UTC', '2025-03-01T03:10:00Z', '202503011010'],
    ['UTC', '2025-03-01T23:59:30.5', '202503012359'],
    ['UTC', '2025-03-01', '202503010000'],
    ['UTC', 'not a time', ''],
  ])('NGAY_KQ with the gateway in TZ=%s: %s → %s (a device time without offset is the site time, as sent)', (zone, iso, want) => {
    process.env.TZ = zone;
    expect(ngayKq(iso)).toBe(want);
  });

  it('CSV: formulas are neutralised, plain signed numbers are not; Vietnamese intact with a BOM', () => {
    const rows = xml4Rows(
      [
        OBS({ id: 'a', value: { kind: 'text', text: '-2+3+cmd|\' /C calc\'!A0' }, subject: { specimenId: 'S1' } }),
        OBS({ id: 'b', value: { kind: 'text', text: '=HYPERLINK("http://x")' }, subject: { specimenId: 'S2' } }),
        OBS({ id: 'c', value: { kind: 'quantity', value: -2.5, unit: 'mmol/L', decimal: '-2.5' }, subject: { specimenId: 'S3' } }),
        OBS({ id: 'd', value: { kind: 'quantity', value: 0.5, unit: 'mmol/L', decimal: '0.5', comparator: '<' }, subject: { specimenId: 'S4' } }),
      ],
      MAP,
    );
    const csv = toCsv(rows);
    expect(csv.startsWith('\uFEFFMA_LK,STT,')).toBe(true);
    const lines = csv.split('\r\n');
    const gia = (i: number) => lines[i + 1].split(',')[5];
    expect(gia(0).startsWith("'-2+3")).toBe(true);
    expect(gia(1).startsWith('"\'=HYPERLINK')).toBe(true);
    expect(gia(2)).toBe('-2.5');
    expect(gia(3)).toBe('<0.5');
    expect(csv).toContain('Định lượng Glucose');
  });

  it('an amended result (Table 0085 A, v2.6) replaces the row it amends, like C', () => {
    const rows = xml4Rows([OBS(), OBS({ id: 'U2-1', statusCode: 'A', status: 'amended', value: { kind: 'quantity', value: 6.1, unit: 'mmol/L', decimal: '6.1' } })], MAP);
    expect(rows.map((r) => r.GIA_TRI)).toEqual(['6.1']);
  });

  it('a deleted (D) or wrong (W) result withdraws the row it replaces; another result stays', () => {
    for (const st of [{ statusCode: 'D', status: 'entered-in-error' }, { statusCode: 'W', status: 'entered-in-error' }] as const) {
      const rows = xml4Rows([OBS(), OBS({ id: 'o2', subject: { specimenId: 'S2' } }), OBS({ id: 'U2-1', ...st, value: undefined })], MAP);
      expect(rows.map((r) => r.STT + ':' + r.GIA_TRI), st.statusCode).toEqual(['1:5.40']);
    }
  });

  it('XML parses (python3 expat) with the XML4 element names, Vietnamese and markup characters intact', () => {
    const rows = xml4Rows([OBS({ value: { kind: 'text', text: 'Âm tính <5 & "ổn"\u0001' } })], MAP);
    const xml = toXml4(rows);
    const py = [
      'import sys, json, xml.etree.ElementTree as ET',
      'r = ET.fromstring(sys.stdin.buffer.read())',
      'rows = r.findall("./DSACH_CHI_TIET_CLS/CHI_TIET_CLS")',
      'print(json.dumps({"root": r.tag, "rows": [{c.tag: (c.text or "") for c in x} for x in rows]}, ensure_ascii=False))',
    ].join('\n');
    const parsed = JSON.parse(execFileSync('python3', ['-c', py], { input: Buffer.from(xml, 'utf8') }).toString('utf8'));
    expect(parsed.root).toBe('CHITIEU_CHITIET_DICHVUCANLAMSANG');
    expect(Object.keys(parsed.rows[0])).toEqual(XML4_FIELDS);
    expect(parsed.rows[0]).toMatchObject({ STT: '1', MA_DICH_VU: '23.0075.1494', TEN_CHI_SO: 'Định lượng Glucose', GIA_TRI: 'Âm tính <5 & "ổn"', NGAY_KQ: '202503011010', MA_MAY: 'XN.01' });
  });
});
