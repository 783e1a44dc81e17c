import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { tempDir } from '../../test/helpers/env';
import { createRootLogger } from '../../gateway/src/log/logger';
import { OrderCache } from '../../gateway/src/orders/order-cache';
import { parseHl7 } from '../hl7-mllp/hl7-message';
import { parseOrders } from '../hl7-mllp/order-parser';
import type { DicomDataset } from './contracts';
import { createWorklistProvider } from './worklist';
import { ormCt } from './worklist-fixtures';
import { matches } from './mwl-match';

const OMI = [
  'MSH|^~\\&|RIS|BV_DEMO|IOMT-GW|RIS|20250302080000+0700||OMI^O23^OMI_O23|OMI-1|P|2.5.1|||AL|NE|VNM|UNICODE UTF-8',
  'PID|1||BN0011111^^^BV_DEMO^MR||Trần^Thị Bình||19850505|F',
  'ORC|NW|PL-MR-1|FI-MR-1||||||20250302080000',
  'TQ1|1||||||20250302143000||S', // TQ1-7 start, TQ1-9 priority
  'OBR|1|PL-MR-1|FI-MR-1|MRBRAIN^MRI sọ não^99RIS',
  'IPC|ACC-MR-1|RP-MR-1|1.2.826.0.1.3680043.8.498.777|SPS-MR-1|MR|BRAIN-STD^Brain standard^99GW|MR_ROOM1|PHONG MR 1|MR01',
].join('\r');

describe('worklist provider over the order cache (real SQLite)', () => {
  let tmp: { dir: string; cleanup: () => void };
  let db: Database.Database;
  let cache: OrderCache;
  const ctx = { callingAeTitle: 'CT01', calledAeTitle: 'IOMT_GW' };

  beforeAll(() => createRootLogger('silent'));
  beforeEach(() => {
    tmp = tempDir('mwl-');
    db = new Database(join(tmp.dir, 'gateway.db'));
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    cache = new OrderCache(db);
    const load = (text: string) => {
      const r = parseOrders(parseHl7(text));
      cache.apply(r.orders, { deviceId: 'ris', messageControlId: r.header.controlId });
    };
    load(ormCt({ ctrl: 'M1', order: 'ORD-1', acc: 'ACC-1' }));
    load(ormCt({ ctrl: 'M2', order: 'ORD-2', acc: 'ACC-2', name: 'Lê^Văn^Cường', pid: 'BN2', date: '20250303090000' }));
    load(ormCt({ ctrl: 'M3', order: 'ORD-3', acc: 'ACC-3', name: 'Đỗ^Thị Ánh', pid: 'BN3', modality: 'US', date: '20250305081500' }));
    load(OMI);
  });
  afterEach(() => {
    db.close();
    tmp.cleanup();
  });

  const find = (q: DicomDataset, c = ctx, opts = {}) => createWorklistProvider({ orders: cache }, opts).find(q, c);
  const sps = (item: DicomDataset) => ({ ScheduledProcedureStepSequence: [item] });

  it('the parser gave the cache the imaging fields of ORM^O01 and OMI^O23 (§5.3)', () => {
    const ct = cache.worklistEntry(cache.findBySpecimen('ORD-1')!.id)!;
    expect(ct.imaging).toMatchObject({
      accessionNumber: 'ACC-1', requestedProcedureId: 'RP-ORD-1', spsId: 'SPS-ORD-1', modality: 'CT',
      spsStartDate: '20250301', spsStartTime: '100000', spsDescription: 'Chest w/o contrast',
      protocolCode: { code: 'CT-PROTO-7', meaning: 'Chest w/o contrast', scheme: '99GW' },
      requestedProcedureDescription: 'CT ngực không cản quang', requestingPhysician: 'Phạm^Minh^Đức',
      referringPhysician: 'Lê^Thị^Hoa', admissionId: 'VN2025-0001',
    });
    expect(ct.imaging.studyInstanceUid).toMatch(/^2\.25\.\d{10,39}$/); // generated (no ZDS), PS3.5 B.2
    const mr = cache.worklistEntry(cache.findBySpecimen('FI-MR-1')!.id)!;
    expect(mr.imaging).toMatchObject({ accessionNumber: 'ACC-MR-1', studyInstanceUid: '1.2.826.0.1.3680043.8.498.777', spsId: 'SPS-MR-1', modality: 'MR', stationName: 'MR_ROOM1', spsLocation: 'PHONG MR 1', stationAeTitle: 'MR01', spsStartDate: '20250302', spsStartTime: '143000' });
    expect(mr.priority).toBe('S');
  });

  it('the generated Study Instance UID is kept on an update (XO) that sends none', () => {
    const before = cache.worklistEntry(cache.findBySpecimen('ORD-1')!.id)!.imaging.studyInstanceUid;
    const r = parseOrders(parseHl7(ormCt({ ctrl: 'M1b', control: 'XO', order: 'ORD-1', acc: 'ACC-1', date: '20250301113000' })));
    expect(cache.apply(r.orders, { deviceId: 'ris', messageControlId: 'M1b' }).updated).toBe(1);
    const after = cache.worklistEntry(cache.findBySpecimen('ORD-1')!.id)!;
    expect(after.imaging.studyInstanceUid).toBe(before);
    expect(after.imaging.spsStartTime).toBe('113000');
  });

  // data-driven matching cases: query → the accession numbers that must come back (in SPS date order)
  const cases: Array<[string, DicomDataset, string[]]> = [
    ['universal (all keys empty)', { AccessionNumber: '', PatientName: '' }, ['ACC-1', 'ACC-MR-1', 'ACC-2', 'ACC-3']],
    ['modality CT', { AccessionNumber: '', ...sps({ Modality: 'CT' }) }, ['ACC-1', 'ACC-2']],
    ['modality with trailing pad', { AccessionNumber: '', ...sps({ Modality: 'US ' }) }, ['ACC-3']],
    ['single date', { AccessionNumber: '', ...sps({ ScheduledProcedureStepStartDate: '20250303' }) }, ['ACC-2']],
    ['date range a-b', { AccessionNumber: '', ...sps({ ScheduledProcedureStepStartDate: '20250302-20250303' }) }, ['ACC-MR-1', 'ACC-2']],
    ['date range a-', { AccessionNumber: '', ...sps({ ScheduledProcedureStepStartDate: '20250303-' }) }, ['ACC-2', 'ACC-3']],
    ['date range -b', { AccessionNumber: '', ...sps({ ScheduledProcedureStepStartDate: '-20250302' }) }, ['ACC-1', 'ACC-MR-1']],
    ['time range', { AccessionNumber: '', ...sps({ ScheduledProcedureStepStartTime: '0800-0900' }) }, ['ACC-2', 'ACC-3']],
    ['station AE from IPC-9', { AccessionNumber: '', ...sps({ ScheduledStationAETitle: 'MR01' }) }, ['ACC-1', 'ACC-MR-1', 'ACC-2', 'ACC-3']],
    ['station AE mismatch (IPC-9 set)', { AccessionNumber: '', ...sps({ ScheduledStationAETitle: 'CT01', Modality: 'MR' }) }, []],
    ['patient id', { AccessionNumber: '', PatientID: 'BN2' }, ['ACC-2']],
    ['accession', { AccessionNumber: 'ACC-3' }, ['ACC-3']],
    ['accession wildcard', { AccessionNumber: 'ACC-?' }, ['ACC-1', 'ACC-2', 'ACC-3']],
    ['name wildcard, folded: NGUYEN*', { AccessionNumber: '', PatientName: 'NGUYEN*' }, ['ACC-1']],
    ['name wildcard in Vietnamese, lower case', { AccessionNumber: '', PatientName: 'trần*' }, ['ACC-MR-1']],
    ['name đ folds to D', { AccessionNumber: '', PatientName: 'DO^THI*' }, ['ACC-3']],
    ['name ? wildcard', { AccessionNumber: '', PatientName: 'L?^VAN^CUONG' }, ['ACC-2']],
    ['name as dcmjs PN object', { AccessionNumber: '', PatientName: [{ Alphabetic: 'Lê*' }] }, ['ACC-2']],
    ['name exact (no wildcard) needs the whole name', { AccessionNumber: '', PatientName: 'NGUYEN' }, []],
    ['study uid list', { AccessionNumber: '', StudyInstanceUID: '1.2.3\\1.2.826.0.1.3680043.8.498.777' }, ['ACC-MR-1']],
    ['SPS status', { AccessionNumber: '', ...sps({ ScheduledProcedureStepStatus: 'SCHEDULED', Modality: 'MR' }) }, ['ACC-MR-1']],
    ['combined: CT + date + station', { AccessionNumber: '', ...sps({ Modality: 'CT', ScheduledProcedureStepStartDate: '20250301', ScheduledStationAETitle: 'CT01' }) }, ['ACC-1']],
  ];
  for (const [name, q, want] of cases) {
    it(`matching: ${name}`, async () => {
      const r = await find(q);
      expect(r.map((d) => d.AccessionNumber)).toEqual(want);
    });
  }

  it('returns only the keys asked (plus Specific Character Set ISO_IR 192), universal keys filled, UTF-8 names intact', async () => {
    const q = JSON.parse('{"_vrMap":{},"PatientName":[],"PatientID":"","IssuerOfPatientID":"","PatientWeight":"","ScheduledProcedureStepSequence":[{"_vrMap":{},"Modality":"CT","ScheduledStationAETitle":"","ScheduledProcedureStepStartDate":"20250301 ","ScheduledProtocolCodeSequence":[]}]}');
    const r = await find(q);
    expect(r).toEqual([
      {
        SpecificCharacterSet: 'ISO_IR 192',
        PatientName: 'Nguyễn^Văn An',
        PatientID: 'BN0067890',
        IssuerOfPatientID: 'BV_DEMO',
        PatientWeight: '', // not held: returned empty (optional key)
        ScheduledProcedureStepSequence: [
          { Modality: 'CT', ScheduledStationAETitle: '', ScheduledProcedureStepStartDate: '20250301', ScheduledProtocolCodeSequence: [{ CodeValue: 'CT-PROTO-7', CodingSchemeDesignator: '99GW', CodeMeaning: 'Chest w/o contrast' }] },
        ],
      },
    ]);
  });

  it('an empty SPS sequence key returns the whole SPS item; configured station AE per modality', async () => {
    const [r] = await find({ AccessionNumber: 'ACC-1', ScheduledProcedureStepSequence: [] }, ctx, { stationAeTitleByModality: { CT: 'CT01' } });
    expect(r.ScheduledProcedureStepSequence).toEqual([
      expect.objectContaining({ ScheduledStationAETitle: 'CT01', Modality: 'CT', ScheduledProcedureStepID: 'SPS-ORD-1', ScheduledProcedureStepStartDate: '20250301', ScheduledProcedureStepStartTime: '100000', ScheduledProcedureStepStatus: 'SCHEDULED', ScheduledProcedureStepDescription: 'Chest w/o contrast' }),
    ]);
    const other = await find({ AccessionNumber: '', ...sps({ ScheduledStationAETitle: 'CT02', Modality: 'CT' }) }, ctx, { stationAeTitleByModality: { CT: 'CT01' } });
    expect(other).toEqual([]);
  });

  it('ASCII folding for a calling AE listed as an old console; others get UTF-8', async () => {
    const q = { SpecificCharacterSet: '', PatientName: '', ReferringPhysicianName: '', RequestedProcedureDescription: '', AccessionNumber: 'ACC-1' };
    const [old] = await find(q, { callingAeTitle: 'OLDCT', calledAeTitle: 'GW' }, { asciiAeTitles: ['OLDCT'] });
    expect(old).toEqual({ SpecificCharacterSet: '', PatientName: 'Nguyen^Van An', ReferringPhysicianName: 'Le^Thi^Hoa', RequestedProcedureDescription: 'CT nguc khong can quang', AccessionNumber: 'ACC-1' });
    const [utf] = await find(q, ctx, { asciiAeTitles: ['OLDCT'] });
    expect(utf.SpecificCharacterSet).toBe('ISO_IR 192');
    expect(utf.PatientName).toBe('Nguyễn^Văn An');
  });

  it('a cancelled order (ORC-1 CA) leaves the worklist; DC too', async () => {
    expect((await find({ AccessionNumber: 'ACC-2' })).length).toBe(1);
    const ca = parseOrders(parseHl7(ormCt({ ctrl: 'C2', control: 'CA', order: 'ORD-2', acc: 'ACC-2', name: 'Lê^Văn^Cường', pid: 'BN2' })));
    expect(cache.apply(ca.orders, { deviceId: 'ris', messageControlId: 'C2' }).cancelled).toBe(1);
    expect(await find({ AccessionNumber: 'ACC-2' })).toEqual([]);
    const dc = parseOrders(parseHl7(['MSH|^~\\&|RIS|BV|||20250302||OMI^O23|D1|P|2.5.1', 'ORC|DC|PL-MR-1|FI-MR-1'].join('\r')));
    cache.apply(dc.orders, { deviceId: 'ris', messageControlId: 'D1' });
    expect(await find({ AccessionNumber: 'ACC-MR-1' })).toEqual([]);
    expect((await find({ AccessionNumber: '' })).map((d) => d.AccessionNumber)).toEqual(['ACC-1', 'ACC-3']);
  });

  it('the in-memory index follows changes: an XO moving the date, a new order, an expiry (full reload)', async () => {
    expect((await find({ AccessionNumber: '', ...sps({ ScheduledProcedureStepStartDate: '20250310' }) })).length).toBe(0);
    const xo = parseOrders(parseHl7(ormCt({ ctrl: 'X3', control: 'XO', order: 'ORD-3', acc: 'ACC-3', name: 'Đỗ^Thị Ánh', pid: 'BN3', modality: 'US', date: '20250310080000' })));
    cache.apply(xo.orders, { deviceId: 'ris', messageControlId: 'X3' });
    const nw = parseOrders(parseHl7(ormCt({ ctrl: 'N9', order: 'ORD-9', acc: 'ACC-9', pid: 'BN9', date: '20250310120000' })));
    cache.apply(nw.orders, { deviceId: 'ris', messageControlId: 'N9' });
    expect((await find({ AccessionNumber: '', ...sps({ ScheduledProcedureStepStartDate: '20250310' }) })).map((d) => d.AccessionNumber)).toEqual(['ACC-3', 'ACC-9']);
    expect(cache.expire(Date.now() + 8 * 86_400_000)).toBe(5);
    expect(await find({ AccessionNumber: '' })).toEqual([]);
  });

  it('MPPS progress shows as the SPS status', async () => {
    const id = cache.findImagingOrder({ accessionNumber: 'ACC-1' })!;
    cache.recordMpps('1.2.3.4', 'IN PROGRESS', id, 'CT01');
    const [r] = await find({ AccessionNumber: 'ACC-1', ...sps({ ScheduledProcedureStepStatus: '' }) });
    expect(r.ScheduledProcedureStepSequence).toEqual([{ ScheduledProcedureStepStatus: 'STARTED' }]);
    cache.recordMpps('1.2.3.4', 'COMPLETED', id, 'CT01');
    expect(await find({ AccessionNumber: '', ...sps({ ScheduledProcedureStepStatus: 'COMPLETED' }) })).toHaveLength(1);
  });

  it('lab orders (no modality in OBR-24, or a Table 0074 lab section with no imaging ids) never enter the worklist', async () => {
    const lab = parseOrders(parseHl7(['MSH|^~\\&|HIS|BV|||20250301||ORM^O01|L1|P|2.3.1', 'PID|1||BN9||X^Y', 'ORC|NW|P9|S9', `OBR|1|P9|S9|2345-7^Glucose^LN${'|'.repeat(20)}SR`].join('\r')));
    expect(lab.orders[0].imaging).toBeUndefined();
    cache.apply(lab.orders, { deviceId: 'his', messageControlId: 'L1' });
    expect((await find({ PatientID: 'BN9' })).length).toBe(0);
  });

  it('OMI^O23 errors are refused, never half-taken: no IPC (AE 100), several different IPC for one OBR (AE 100), no IPC-5 modality (AE 101)', () => {
    const base = ['MSH|^~\\&|RIS|BV|||20250302||OMI^O23|E1|P|2.5.1', 'PID|1||BN1||X^Y', 'ORC|NW|P1|F1', 'OBR|1|P1|F1|MR^MR^L'];
    const err = (segs: string[]) => {
      try {
        parseOrders(parseHl7(segs.join('\r')));
      } catch (e) {
        return `${(e as { location?: string }).location} ${(e as { hl7ErrorCode?: number }).hl7ErrorCode}`;
      }
      return 'no error';
    };
    expect(err(base)).toBe('OBR^1 100');
    expect(err([...base, 'IPC|A1|R1|1.2.3|S1|MR', 'IPC|A2|R2|1.2.3|S2|MR'])).toBe('IPC^2 100');
    expect(err([...base, 'IPC|A1|R1|1.2.3|S1|MR', 'IPC|A1|R1|1.2.3|S1|MR'])).toBe('no error'); // the same step twice
    expect(err([...base, 'IPC|A1|R1|1.2.3|S1'])).toBe('IPC^1^5 101');
    expect(err(['MSH|^~\\&|RIS|BV|||20250302||OMI^O23|E1|P|2.4', 'ORC|NW|P1|F1'])).toBe('undefined 203'); // OMI before v2.5 (no IPC segment) → unsupported version, AR 203
  });

  it('a database from the first imaging build (order_imaging without progress_seq, order_mpps without subject_json) is upgraded when the cache opens', () => {
    const file = join(tmp.dir, 'old.db');
    const old = new Database(file);
    old.exec(`CREATE TABLE order_imaging (order_id INTEGER PRIMARY KEY, accession TEXT, modality TEXT NOT NULL, sps_date TEXT, station_aet TEXT, study_uid TEXT NOT NULL,
      sps_id TEXT, requested_procedure_id TEXT, imaging_json TEXT NOT NULL, sps_status TEXT NOT NULL DEFAULT 'SCHEDULED', mpps_uid TEXT, progress_at INTEGER);
      CREATE TABLE order_mpps (sop_instance_uid TEXT PRIMARY KEY, status TEXT NOT NULL, order_id INTEGER, calling_aet TEXT, created_at INTEGER NOT NULL, updated_at INTEGER NOT NULL)`);
    old.close();
    const db2 = new Database(file);
    try {
      const c = new OrderCache(db2);
      expect(c.worklistCursor()).toEqual({ change: 0, progress: 0, expire: 0 });
      expect(db2.prepare("SELECT name FROM pragma_table_info('order_imaging') WHERE name = 'progress_seq'").get()).toBeDefined();
      c.recordMpps('1.2.3', 'IN PROGRESS', undefined, 'CT01', { PatientID: 'X' });
      expect(c.mppsState('1.2.3')!.subject).toEqual({ PatientID: 'X' });
    } finally {
      db2.close();
    }
  });

  it('without an order cache the provider throws (the SCP answers a failure status)', async () => {
    await expect(createWorklistProvider({ orders: undefined }).find({}, ctx)).rejects.toThrow(/order cache/);
  });
});

describe('mwl-match (PS3.4 C.2.2.2)', () => {
  const rows: Array<[string, string, string | undefined, boolean]> = [
    ['DA', '20250301', '20250301', true],
    ['DA', '20250301-20250331', '20250315', true],
    ['DA', '20250301-20250331', '20250401', false],
    ['DA', '-20250301', '20250301', true],
    ['DA', '2025030*', '20250301', false], // no wildcards on dates (C.2.2.2.4)
    ['TM', '0800-0900', '083000', true],
    ['TM', '0800', '080000', true],
    ['TM', '0800-', '075959', false],
    ['CS', 'C?', 'CT', true],
    ['CS', 'ct', 'CT', false], // case-sensitive except PN
    ['PN', 'nguyễn^văn an', 'Nguyễn^Văn An', true],
    ['PN', '*AN', 'Nguyễn^Văn An', true],
    ['UI', '1.2\\1.3', '1.3', true],
    ['LO', 'X', undefined, false],
    ['LO', 'a.b', 'axb', false], // regex metacharacters are literal
  ];
  for (const [vr, q, have, want] of rows) it(`${vr} '${q}' vs '${have}' → ${want}`, () => expect(matches(vr, q, have)).toBe(want));
});
