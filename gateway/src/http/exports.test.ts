import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import express from 'express';
import type { AddressInfo } from 'node:net';
import type { Server } from 'node:http';
import { tempDir } from '../../../test/helpers/env';
import { GatewayStore } from '../store/gateway-store';
import { withDeviceSettings } from '../identifiers/device-sink';
import { parseHl7 } from '../../../drivers/hl7-mllp/hl7-message';
import { parseOru } from '../../../drivers/hl7-mllp/oru-parser';
import { apiErrorHandler } from './errors';
import { exportsRouter } from './exports';
import { ngayKq, toXml4, xml4Rows, type Xml4Row } from '../exports/bhyt';
import type { Observation } from '../contracts/observation';
import { createRootLogger } from '../log/logger';

// PV1-19 visit number (the HIS's visit key: MA_LK) on M1 and M2; M3 has no PV1
const VISIT = 'PV1|1|O|KB^^^BV||||||||||||||||LK.2025.000123^^^BV^VN';
const oru = (id: string, obx: string[], msh11 = 'P', pv1: string[] = [VISIT]) =>
  [
    `MSH|^~\\&|XN1000|LAB|GW|BV|20250301093100+0700||ORU^R01|${id}|${msh11}|2.5.1|||||VNM|UNICODE UTF-8`,
    'PID|1||BN0001^^^BV^MR||Nguyễn^An^Văn||19850312|M',
    ...pv1,
    'OBR|1|ORD-77|S-1001|CBC^Công thức máu^L|||20250301080000+0700',
    ...obx,
  ].join('\r');

describe('GET /api/v1/exports/bhyt: XML4 rows + MA_MAY from the stored results', () => {
  const tmp = tempDir('iomt-export-');
  let store: GatewayStore;
  let server: Server;
  let base = '';
  const audits: Array<Record<string, unknown>> = [];
  let role = 'operator';

  beforeAll(async () => {
    createRootLogger('silent');
    store = GatewayStore.open({ dataDir: tmp.dir });
    const sink = withDeviceSettings(store, 'xn1000', { machineCode: 'XN-HH-01' });
    // as the HL7 receiver does: MSH-11 passes to the store with the message
    const submit = (text: string, processingId = 'P') => sink.submit({ deviceId: 'xn1000', driver: 'hl7-mllp', raw: Buffer.from(text), receivedAt: new Date('2025-03-01T02:31:00Z'), processingId, drafts: parseOru(parseHl7(text)).drafts });
    await submit(
      oru('M1', [
        'OBX|1|NM|HGB^Huyết sắc tố^L||11.60|g/dL|13.0-17.0|L|||F|||20250301092900+0700',
        'OBX|2|NM|CRP^CRP^L||<0.5|mg/L|0-5|N|||F|||20250301093000+0700',
        'OBX|3|NM|XYZ^Chỉ số lạ^L||7|U/L||N|||F|||20250301093000+0700',
        'OBX|4|NM|PLT^PLT^L||250|10*3/uL||N|||P|||20250301093000+0700',
      ]),
    );
    await submit(oru('M2', ['OBX|1|NM|HGB^Huyết sắc tố^L||12.6|g/dL|13.0-17.0|L|||C|||20250301101500+0700']));
    await submit(oru('M3', ['OBX|1|NM|WBC^WBC^L||9.9|10*3/uL||N|||F|||20250301093000+0700'], 'T', []), 'T');
    const app = express();
    app.use((_req, res, next) => {
      res.locals.principal = { user: 'u', role, via: 'basic', source: '127.0.0.1' };
      next();
    });
    app.use('/api/v1/exports', exportsRouter({ store } as never, { audit: { record: (e: Record<string, unknown>) => audits.push(e) } as never }));
    app.use(apiErrorHandler(() => undefined));
    server = app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/v1/exports/bhyt`;
  });
  afterAll(async () => {
    await new Promise((r) => server.close(r));
    await store.close();
    tmp.cleanup();
  });

  const range = 'from=2025-03-01T00:00:00Z&to=2025-03-02T00:00:00Z';

  it('JSON: one row per claimable result, MA_LK from PV1-19, mapped codes, values as sent, NGAY_KQ in UTC+7, MA_MAY; a correction replaces its result', async () => {
    const res = await fetch(`${base}?${range}&deviceId=xn1000`);
    expect(res.status).toBe(200);
    const body = (await res.json()) as { rows: Xml4Row[]; count: number };
    // PLT is preliminary and M3 is a training message (MSH-11 T): not claimable
    expect(body.rows.map((r) => [r.MA_LK, r.STT, r.MA_DICH_VU, r.MA_CHI_SO, r.TEN_CHI_SO, r.GIA_TRI, r.DON_VI_DO, r.NGAY_KQ, r.MA_MAY])).toEqual([
      ['LK.2025.000123', 1, '00.0000.0002', 'CRP', 'Định lượng CRP', '<0.5', 'mg/L', '202503010930', 'XN-HH-01'],
      ['LK.2025.000123', 2, '', '', 'Chỉ số lạ', '7', 'U/L', '202503010930', 'XN-HH-01'],
      ['LK.2025.000123', 3, '00.0000.0001', 'HGB', 'Huyết sắc tố (HGB)', '12.6', 'g/dL', '202503011015', 'XN-HH-01'],
    ]);
    expect(audits.at(-1)).toMatchObject({ action: 'export', target: 'bhyt-xml4', detail: { rows: 3, format: 'json' } });
  });

  it('XML in the XML4 element names (UTF-8) and CSV carry the same rows', async () => {
    const xml = await (await fetch(`${base}?${range}&format=xml`)).text();
    expect(xml).toMatch(/^<\?xml version="1.0" encoding="utf-8"\?>\n<CHITIEU_CHITIET_DICHVUCANLAMSANG>\n<DSACH_CHI_TIET_CLS>\n<CHI_TIET_CLS>\n<MA_LK>LK.2025.000123<\/MA_LK>\n<STT>1<\/STT>/);
    expect(xml.match(/<CHI_TIET_CLS>/g)).toHaveLength(3);
    expect(xml).toContain('<GIA_TRI>&lt;0.5</GIA_TRI>');
    expect(xml).toContain('<TEN_CHI_SO>Huyết sắc tố (HGB)</TEN_CHI_SO>');
    const csv = await (await fetch(`${base}?${range}&format=csv`)).text();
    const lines = csv.replace(/^\uFEFF/, '').trimEnd().split('\r\n');
    expect(lines[0]).toBe('MA_LK,STT,MA_DICH_VU,MA_CHI_SO,TEN_CHI_SO,GIA_TRI,DON_VI_DO,MO_TA,KET_LUAN,NGAY_KQ,MA_BS_DOC_KQ,DU_PHONG,MA_MAY');
    expect(lines.slice(1)).toEqual(['LK.2025.000123,1,00.0000.0002,CRP,Định lượng CRP,<0.5,mg/L,,,202503010930,,,XN-HH-01', 'LK.2025.000123,2,,,Chỉ số lạ,7,U/L,,,202503010930,,,XN-HH-01', 'LK.2025.000123,3,00.0000.0001,HGB,Huyết sắc tố (HGB),12.6,g/dL,,,202503011015,,,XN-HH-01']);
  });

  it('refuses a viewer, unknown parameters, bad formats and ranges', async () => {
    role = 'viewer';
    expect((await fetch(`${base}?${range}`)).status).toBe(403);
    role = 'operator';
    for (const q of [`${range}&x=1`, `${range}&format=pdf`, 'from=2025-03-01T00:00:00Z', 'from=2025-01-01T00:00:00Z&to=2025-03-01T00:00:00Z', 'from=bad&to=2025-03-01T00:00:00Z']) {
      expect((await fetch(`${base}?${q}`)).status, q).toBe(400);
    }
  });

  it('NGAY_KQ is yyyyMMddHHmm in Vietnam time; XML escapes markup', () => {
    expect(ngayKq('2025-03-01T02:29:00Z')).toBe('202503010929');
    expect(ngayKq('2025-12-31T20:00:00+07:00')).toBe('202512312000');
    expect(ngayKq('2025-12-31T17:30:00Z')).toBe('202601010030');
    expect(ngayKq('not a time')).toBe('');
    const row = { MA_LK: '', STT: 1, MA_DICH_VU: '', MA_CHI_SO: '', TEN_CHI_SO: 'A&B <x>', GIA_TRI: '"1"', DON_VI_DO: '', MO_TA: '', KET_LUAN: '', NGAY_KQ: '', MA_BS_DOC_KQ: '', DU_PHONG: '', MA_MAY: '' };
    expect(toXml4([row])).toContain('<TEN_CHI_SO>A&amp;B &lt;x&gt;</TEN_CHI_SO>\n<GIA_TRI>&quot;1&quot;</GIA_TRI>');
  });

  it('MA_LK is the order\'s visit number when there is one, else empty (the HIS joins on the specimen)', () => {
    const obs = (id: string, order?: Observation['order']): Observation => ({
      id, messageId: 1, messageUid: 'U', seq: 1, deviceId: 'd', driver: 'hl7-mllp', receivedAt: '2025-03-01T02:31:00Z',
      code: { system: 'local', code: id }, status: 'final', statusCode: 'F', value: { kind: 'quantity', value: 1, unit: 'g/L' }, ...(order ? { order } : {}),
    });
    const rows = xml4Rows([obs('A', { visitNumber: 'LK-9' }), obs('B', { fillerOrderNumber: 'S1' }), obs('C')], { version: 1, rows: [] });
    expect(rows.map((r) => [r.TEN_CHI_SO, r.MA_LK])).toEqual([['A', 'LK-9'], ['B', ''], ['C', '']]);
  });
});
