import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { tempDir } from '../../test/helpers/env';
import type { CommitResult, InboundMessage } from '../../gateway/src/contracts/driver';
import { createRootLogger } from '../../gateway/src/log/logger';
import { OrderCache } from '../../gateway/src/orders/order-cache';
import { GatewayStore } from '../../gateway/src/store/gateway-store';
import { Hl7MllpOutput } from '../../gateway/src/outputs/hl7-mllp/hl7-mllp-output';
import { parseHl7 } from '../hl7-mllp/hl7-message';
import { parseOrders } from '../hl7-mllp/order-parser';
import { buildOrmStatus } from '../hl7-mllp/orm-status-builder';
import { createMppsHandler, MPPS_STATUS } from './mpps';
import { ormCt } from './worklist-fixtures';

const ctx = { callingAeTitle: 'CT01', calledAeTitle: 'IOMT_GW' };

const create = (acc: string, extra: Record<string, unknown> = {}) => ({
  PerformedProcedureStepStatus: 'IN PROGRESS',
  PerformedProcedureStepID: 'PPS-1',
  PerformedStationAETitle: 'CT01',
  PerformedStationName: 'CT Phòng 1',
  PerformedProcedureStepStartDate: '20250301',
  PerformedProcedureStepStartTime: '101500',
  Modality: 'CT',
  PatientName: 'Nguyễn^Văn An',
  PatientID: 'BN0067890',
  ScheduledStepAttributesSequence: [{ AccessionNumber: acc, RequestedProcedureID: 'RP-ORD-1', ScheduledProcedureStepID: 'SPS-ORD-1', StudyInstanceUID: '' }],
  PerformedSeriesSequence: [],
  ...extra,
});
const set = (status: string, extra: Record<string, unknown> = {}) => ({ PerformedProcedureStepStatus: status, PerformedProcedureStepEndDate: '20250301', PerformedProcedureStepEndTime: '103000', ...extra });

describe('MPPS handler (real store, real order cache)', () => {
  let tmp: { dir: string; cleanup: () => void };
  let db: Database.Database;
  let cache: OrderCache;
  let store: GatewayStore;
  let commits: Array<{ msg: InboundMessage; result: CommitResult }>;
  let failNext: number;
  let runtime: Parameters<typeof createMppsHandler>[0];

  beforeAll(() => createRootLogger('silent'));
  beforeEach(() => {
    tmp = tempDir('mpps-');
    store = GatewayStore.open({ dataDir: tmp.dir });
    db = new Database(join(tmp.dir, 'gateway.db'));
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.pragma('busy_timeout = 10000');
    cache = new OrderCache(db);
    const r = parseOrders(parseHl7(ormCt({ ctrl: 'M1', order: 'ORD-1', acc: 'ACC-1' })));
    cache.apply(r.orders, { deviceId: 'ris', messageControlId: 'M1' });
    commits = [];
    failNext = 0;
    runtime = {
      orders: cache,
      store: {
        async submit(msg) {
          if (failNext > 0) {
            failNext--;
            throw new Error('disk I/O error (test)');
          }
          const result = await store.submit(msg);
          commits.push({ msg, result });
          return result;
        },
      },
    };
  });
  afterEach(async () => {
    db.close();
    await store.close();
    tmp.cleanup();
  });

  const orm = (i: number) => buildOrmStatus(commits[i].result.observations, { controlId: `C${i}`, sendingApp: 'IOMT-GW', now: new Date('2025-03-01T03:30:00Z') }).split('\r');

  it('N-CREATE IN PROGRESS → committed as a message, worklist item STARTED, ORM^O01 ORC-1 SC ORC-5 IP', async () => {
    const h = createMppsHandler(runtime, { deviceId: 'ct-gw' });
    expect(await h.nCreate('1.2.3.100', create('ACC-1'), ctx)).toBe(MPPS_STATUS.Success);
    expect(commits).toHaveLength(1);
    expect(commits[0].msg).toMatchObject({ deviceId: 'ct-gw', driver: 'dicom', messageType: 'N-CREATE', sourceMessageId: '1.2.3.100' });
    expect(commits[0].result.duplicate).toBe(false);
    const id = cache.findBySpecimen('ORD-1')!.id;
    expect(cache.worklistEntry(id)).toMatchObject({ spsStatus: 'STARTED', mppsUid: '1.2.3.100' });
    expect(cache.mppsState('1.2.3.100')).toEqual({ sopInstanceUid: '1.2.3.100', status: 'IN PROGRESS', orderId: id, callingAeTitle: 'CT01' });
    const segs = orm(0);
    expect(segs[0]).toMatch(/^MSH\|\^~\\&\|IOMT-GW\|\|\|\|\d{14}[+-]\d{4}\|\|ORM\^O01\^ORM_O01\|C0\|P\|2\.5\.1\|+UNICODE UTF-8$/);
    expect(segs[1]).toBe('PID|1||BN0067890^^^BV_DEMO^MR||Nguyễn^Văn An||19790130|M');
    expect(segs[2]).toBe('ORC|SC|ORD-1|ORD-1||IP||||20250301101500');
    // OBR-19 Requested Procedure ID, OBR-20 SPS ID, ZDS-1 Study Instance UID from the worklist item (protocols.md §5.3)
    expect(segs[3]).toBe('OBR|1|ORD-1|ORD-1|CTCHEST^CT ngực không cản quang^99RIS||||||||||||||ACC-1|RP-ORD-1|SPS-ORD-1||20250301101500||CT');
    const study = cache.worklistEntry(id)!.imaging.studyInstanceUid;
    expect(study).toMatch(/^2\.25\.\d+$/);
    expect(segs[4]).toBe(`ZDS|${study}^IOMT-GW^Application^DICOM`);
    expect(segs).toHaveLength(5);
  });

  it.each([
    { name: 'keys from the worklist item win over the N-CREATE', acc: 'ACC-1', sss: { AccessionNumber: 'ACC-1', RequestedProcedureID: 'RP-X', ScheduledProcedureStepID: 'SPS-X', StudyInstanceUID: '' }, rp: 'RP-ORD-1', sps: 'SPS-ORD-1', study: 'order' },
    { name: 'unscheduled: keys from the Scheduled Step Attributes Sequence', acc: 'NO-SUCH', sss: { AccessionNumber: 'NO-SUCH', RequestedProcedureID: 'RP-U', ScheduledProcedureStepID: 'SPS-U', StudyInstanceUID: '1.2.840.99.7' }, rp: 'RP-U', sps: 'SPS-U', study: '1.2.840.99.7' },
    { name: 'unscheduled without keys: OBR-19/20 empty, no ZDS', acc: 'NO-SUCH', sss: { AccessionNumber: 'NO-SUCH' }, rp: '', sps: '', study: '' },
  ])('OBR-19/20 and ZDS-1 on IP and CM: $name', async ({ sss, rp, sps, study }) => {
    const h = createMppsHandler(runtime);
    expect(await h.nCreate('1.2.3.120', create('x', { ScheduledStepAttributesSequence: [sss] }), ctx)).toBe(0);
    // the N-SET repeats no Scheduled Step Attributes: the COMPLETED report still carries them
    expect(await h.nSet('1.2.3.120', set('COMPLETED'), ctx)).toBe(0);
    const uid = study === 'order' ? cache.worklistEntry(cache.findBySpecimen('ORD-1')!.id)!.imaging.studyInstanceUid : study;
    for (const i of [0, 1]) {
      const segs = orm(i);
      const obr = segs.find((x) => x.startsWith('OBR|'))!.split('|');
      expect([obr[19], obr[20]]).toEqual([rp, sps]);
      const zds = segs.filter((x) => x.startsWith('ZDS|'));
      expect(zds).toEqual(uid ? [`ZDS|${uid}^IOMT-GW^Application^DICOM`] : []);
      expect(commits[i].result.observations[0].order ?? {}).toMatchObject({ ...(rp ? { requestedProcedureId: rp } : {}), ...(sps ? { scheduledStepId: sps } : {}), ...(uid ? { studyInstanceUid: uid } : {}) });
    }
  });

  it('N-SET COMPLETED → ORC-5 CM; a further N-SET → 0x0110 (may no longer be updated); unknown instance → 0x0112', async () => {
    const h = createMppsHandler(runtime);
    expect(await h.nSet('1.2.3.999', set('COMPLETED'), ctx)).toBe(MPPS_STATUS.NoSuchObjectInstance);
    expect(await h.nCreate('1.2.3.101', create('ACC-1'), ctx)).toBe(0);
    expect(await h.nSet('1.2.3.101', set('COMPLETED'), ctx)).toBe(0);
    expect(orm(1)[2]).toBe('ORC|SC|ORD-1|ORD-1||CM||||20250301103000');
    expect(cache.worklistEntry(cache.findBySpecimen('ORD-1')!.id)!.spsStatus).toBe('COMPLETED');
    expect(await h.nSet('1.2.3.101', set('DISCONTINUED'), ctx)).toBe(MPPS_STATUS.ProcessingFailure);
    expect(await h.nSet('1.2.3.101', set('COMPLETED'), ctx)).toBe(MPPS_STATUS.ProcessingFailure);
    expect(commits).toHaveLength(2); // the refused ones committed nothing
  });

  it('DISCONTINUED with a reason → ORC-5 DC and the reason in an NTE', async () => {
    const h = createMppsHandler(runtime);
    await h.nCreate('1.2.3.102', create('ACC-1'), ctx);
    const ds = set('DISCONTINUED', { PerformedProcedureStepDiscontinuationReasonCodeSequence: [{ CodeValue: '110514', CodingSchemeDesignator: 'DCM', CodeMeaning: 'Incorrect worklist entry selected' }] });
    expect(await h.nSet('1.2.3.102', ds, ctx)).toBe(0);
    const segs = orm(1);
    expect(segs[2]).toBe('ORC|SC|ORD-1|ORD-1||DC||||20250301103000');
    expect(segs[4]).toBe('NTE|1|L|Discontinued: Incorrect worklist entry selected');
    expect(cache.worklistEntry(cache.findBySpecimen('ORD-1')!.id)!.spsStatus).toBe('DISCONTINUED');
  });

  it('wrong values: N-CREATE not IN PROGRESS → 0x0106; duplicate N-CREATE → 0x0111; N-SET to an unknown status → 0x0106', async () => {
    const h = createMppsHandler(runtime);
    expect(await h.nCreate('1.2.3.103', create('ACC-1', { PerformedProcedureStepStatus: 'COMPLETED' }), ctx)).toBe(MPPS_STATUS.InvalidAttributeValue);
    expect(await h.nCreate('1.2.3.103', create('ACC-1'), ctx)).toBe(0);
    expect(await h.nCreate('1.2.3.103', create('ACC-1'), ctx)).toBe(MPPS_STATUS.DuplicateSopInstance);
    expect(await h.nSet('1.2.3.103', set('DONE'), ctx)).toBe(MPPS_STATUS.InvalidAttributeValue);
    expect(commits).toHaveLength(1);
  });

  it('an N-SET without a status change is kept (no drafts: nothing to the RIS) and answered success', async () => {
    const h = createMppsHandler(runtime);
    await h.nCreate('1.2.3.104', create('ACC-1'), ctx);
    expect(await h.nSet('1.2.3.104', { PerformedSeriesSequence: [{ SeriesInstanceUID: '1.2.3.104.1' }] }, ctx)).toBe(0);
    expect(commits[1].msg.drafts).toEqual([]);
    expect(commits[1].result.observations).toEqual([]);
    expect(cache.mppsState('1.2.3.104')!.status).toBe('IN PROGRESS');
  });

  it('store cannot commit → 0x0110 and no state recorded; the retry succeeds', async () => {
    const h = createMppsHandler(runtime);
    failNext = 1;
    expect(await h.nCreate('1.2.3.105', create('ACC-1'), ctx)).toBe(MPPS_STATUS.ProcessingFailure);
    expect(cache.mppsState('1.2.3.105')).toBeUndefined();
    expect(cache.worklistEntry(cache.findBySpecimen('ORD-1')!.id)!.spsStatus).toBe('SCHEDULED');
    expect(await h.nCreate('1.2.3.105', create('ACC-1'), ctx)).toBe(0);
    expect(cache.mppsState('1.2.3.105')!.status).toBe('IN PROGRESS');
  });

  it('committed but the cache write lost (crash between the two): the re-sent N-CREATE is a store duplicate, then recorded', async () => {
    const h = createMppsHandler(runtime);
    const ds = create('ACC-1');
    await store.submit({ deviceId: 'dicom-mpps', driver: 'dicom', raw: Buffer.from(JSON.stringify(ds)), messageType: 'N-CREATE', drafts: [], dedupeKey: `1.2.3.106|N-CREATE|IN PROGRESS|${(await import('node:crypto')).createHash('sha256').update(JSON.stringify(ds)).digest('hex')}` });
    expect(await h.nCreate('1.2.3.106', ds, ctx)).toBe(0);
    expect(commits[0].result.duplicate).toBe(true);
    expect(cache.mppsState('1.2.3.106')!.status).toBe('IN PROGRESS');
  });

  it('an unscheduled step (no worklist match) is still committed and reported with what the modality sent', async () => {
    const h = createMppsHandler(runtime);
    expect(await h.nCreate('1.2.3.107', create('NO-SUCH-ACC', { ScheduledStepAttributesSequence: [] }), ctx)).toBe(0);
    expect(cache.mppsState('1.2.3.107')).toMatchObject({ sopInstanceUid: '1.2.3.107', status: 'IN PROGRESS', callingAeTitle: 'CT01' });
    expect(cache.mppsState('1.2.3.107')!.orderId).toBeUndefined();
    const segs = orm(0);
    expect(segs[1]).toBe('PID|1||BN0067890||Nguyễn^Văn An');
    expect(segs[2]).toBe('ORC|SC||||IP||||20250301101500');
    // its N-SET carries no patient: the COMPLETED report still names the patient and modality of the N-CREATE
    expect(await h.nSet('1.2.3.107', set('COMPLETED'), ctx)).toBe(0);
    const done = orm(1);
    expect(done[1]).toBe('PID|1||BN0067890||Nguyễn^Văn An');
    expect(done[2]).toBe('ORC|SC||||CM||||20250301103000');
    expect(done[3].split('|')[24]).toBe('CT');
  });

  it('onCommitted gets each newly committed state change once (not a store duplicate); a throwing callback does not change the answer', async () => {
    const seen: string[] = [];
    const h = createMppsHandler(runtime, {
      onCommitted: (r, m) => {
        seen.push(`${m.messageType}:${r.observations.length}`);
        throw new Error('flow down (test)');
      },
    });
    expect(await h.nCreate('1.2.3.109', create('ACC-1'), ctx)).toBe(0);
    expect(await h.nSet('1.2.3.109', { PerformedSeriesSequence: [] }, ctx)).toBe(0);
    expect(await h.nSet('1.2.3.109', set('COMPLETED'), ctx)).toBe(0);
    expect(seen).toEqual(['N-CREATE:1', 'N-SET:0', 'N-SET:1']);
  });

  it('the hl7-mllp output prepares an MPPS observation as ORM^O01 (not ORU^R01), with MSH-10 from the outbox key', async () => {
    const h = createMppsHandler(runtime);
    await h.nCreate('1.2.3.108', create('ACC-1'), ctx);
    const out = new Hl7MllpOutput({ destination: 'ris', host: '127.0.0.1', port: 1 });
    const text = out.prepare(commits[0].result.observations, 'K1').payload.toString('utf8');
    expect(text.split('\r')[0]).toContain('|ORM^O01^ORM_O01|K1|');
    expect(text).toContain('\rORC|SC|ORD-1|ORD-1||IP|');
    expect(text).not.toContain('OBX|');
    await out.close();
  });
});
