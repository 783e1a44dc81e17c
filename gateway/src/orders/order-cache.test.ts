import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { tempDir } from '../../../test/helpers/env';
import { StoreError, StoreFullError } from '../contracts/errors';
import { createRootLogger } from '../log/logger';
import { OrderCache } from './order-cache';
import type { OrderTest, OrderUpdate } from './order-types';

const DAY = 86_400_000;

function openDb(file: string): Database.Database {
  const db = new Database(file);
  db.pragma('journal_mode = WAL');
  db.pragma('synchronous = FULL');
  return db;
}

const GLU: OrderTest = { code: '2345-7', display: 'Glucose', system: 'LN', altCode: '717' };
const CREA: OrderTest = { code: '2160-0', display: 'Creatinine', system: 'LN', altCode: '690' };
const ALB: OrderTest = { code: '1751-7', display: 'Albumin', system: 'LN', altCode: '685' };

const patient = { patientId: 'BN0067890', patientIds: [{ id: 'BN0067890', authority: 'BV_DEMO', type: 'MR' }], name: 'Trần^Thị Bình', birthDate: '19790130', sex: 'F' };

const nw = (specimenId: string, tests: OrderTest[], extra: Partial<OrderUpdate> = {}): OrderUpdate => ({ control: 'NW', specimenId, tests, patient, placerOrderNumber: `P-${specimenId}`, priority: 'R', ...extra });
const src = (id: string) => ({ deviceId: 'his-1', messageControlId: id });
const codes = (o: { tests: OrderTest[] } | undefined) => o?.tests.map((t) => t.code);

describe('OrderCache', () => {
  let tmp: { dir: string; cleanup: () => void };
  let file: string;
  let db: Database.Database;
  let cache: OrderCache;

  beforeAll(() => createRootLogger('silent'));
  beforeEach(() => {
    tmp = tempDir('orders-');
    file = join(tmp.dir, 'gateway.db');
    db = openDb(file);
    cache = new OrderCache(db);
  });
  afterEach(() => {
    if (db.open) db.close();
    tmp.cleanup();
  });

  it('creates its own order_* tables and indices on construction (twice is fine)', () => {
    new OrderCache(db);
    const names = db.prepare("SELECT name FROM sqlite_master WHERE type IN ('table','index') AND name NOT LIKE 'sqlite_%' ORDER BY name").pluck().all() as string[];
    expect(names.filter((n) => !n.startsWith('order_'))).toEqual([]);
    expect(names).toEqual(expect.arrayContaining(['order_orders', 'order_tests', 'order_downloads', 'order_messages', 'order_meta', 'order_cursors', 'order_orders_patient', 'order_tests_order_seq']));
    // specimen_id is UNIQUE (its own index)
    expect(db.prepare("SELECT COUNT(*) FROM sqlite_master WHERE type='index' AND tbl_name='order_orders' AND sql IS NULL").pluck().get()).toBe(1);
  });

  it('NW creates an order; a second connection sees it at once (committed on return)', () => {
    const r = cache.apply([nw('2503010057', [GLU, CREA], { collectedAt: '2025-03-01T09:40:00', specimenType: 'SER' })], src('M1'));
    expect(r).toEqual({ created: 1, updated: 0, cancelled: 0, ignored: 0, duplicate: false });
    const o = cache.findBySpecimen('2503010057')!;
    expect(o).toMatchObject({ specimenId: '2503010057', placerOrderNumber: 'P-2503010057', status: 'pending', priority: 'R', collectedAt: '2025-03-01T09:40:00', specimenType: 'SER', patient });
    expect(o.tests).toEqual([GLU, CREA]);
    const other = new Database(file, { readonly: true });
    try {
      expect(other.prepare('SELECT COUNT(*) FROM order_tests').pluck().get()).toBe(2);
    } finally {
      other.close();
    }
  });

  it('the same message twice is a duplicate; the same content in a new message changes nothing', () => {
    cache.apply([nw('S1', [GLU])], src('M1'));
    const before = cache.findBySpecimen('S1')!;
    expect(cache.apply([nw('S1', [GLU])], src('M1'))).toMatchObject({ duplicate: true, created: 0, updated: 0 });
    expect(cache.apply([nw('S1', [GLU])], src('M2'))).toEqual({ created: 0, updated: 0, cancelled: 0, ignored: 1, duplicate: false });
    const after = cache.findBySpecimen('S1')!;
    expect(after).toEqual(before);
    expect(cache.pendingSince(before.changeSeq, 10).orders).toEqual([]);
  });

  it('NW for an existing order merges new tests (in order, no duplicates) and overwrites the fields it carries', () => {
    cache.apply([nw('S1', [GLU, CREA])], src('M1'));
    const r = cache.apply([nw('S1', [CREA, ALB], { priority: 'S' })], src('M2'));
    expect(r).toMatchObject({ updated: 1 });
    const o = cache.findBySpecimen('S1')!;
    expect(codes(o)).toEqual([GLU.code, CREA.code, ALB.code]);
    expect(o.priority).toBe('S');
    expect(o.placerOrderNumber).toBe('P-S1');
  });

  it('XO replaces the tests', () => {
    cache.apply([nw('S1', [GLU, CREA])], src('M1'));
    expect(cache.apply([{ control: 'XO', specimenId: 'S1', tests: [ALB] }], src('M2'))).toMatchObject({ updated: 1 });
    expect(codes(cache.findBySpecimen('S1'))).toEqual([ALB.code]);
    expect(cache.findBySpecimen('S1')!.patient).toEqual(patient); // not carried by the XO: kept
    expect(cache.apply([{ control: 'XO', specimenId: 'S1', tests: [ALB] }], src('M3'))).toMatchObject({ ignored: 1, updated: 0 });
    // XO for an order never seen creates it
    expect(cache.apply([{ control: 'XO', specimenId: 'S2', tests: [GLU] }], src('M4'))).toMatchObject({ created: 1 });
  });

  it('CA naming some tests removes them; naming the rest cancels the whole order (tests kept); CA again changes nothing', () => {
    cache.apply([nw('S1', [GLU, CREA, ALB])], src('M1'));
    expect(cache.apply([{ control: 'CA', specimenId: 'S1', tests: [CREA] }], src('M2'))).toMatchObject({ updated: 1, cancelled: 0 });
    expect(cache.findBySpecimen('S1')).toMatchObject({ status: 'pending' });
    expect(codes(cache.findBySpecimen('S1'))).toEqual([GLU.code, ALB.code]);
    // DC behaves like CA; naming all remaining tests = whole order
    expect(cache.apply([{ control: 'DC', specimenId: 'S1', tests: [GLU, ALB] }], src('M3'))).toMatchObject({ cancelled: 1 });
    const o = cache.findBySpecimen('S1')!;
    expect(o.status).toBe('cancelled');
    expect(codes(o)).toEqual([GLU.code, ALB.code]);
    expect(cache.apply([{ control: 'CA', specimenId: 'S1', tests: [] }], src('M4'))).toMatchObject({ cancelled: 0, ignored: 1 });
  });

  it('CA without tests cancels the whole order; CA for an unknown specimen or tests it lacks is ignored; SC is ignored', () => {
    cache.apply([nw('S1', [GLU, CREA])], src('M1'));
    expect(cache.apply([{ control: 'CA', specimenId: 'NOPE', tests: [] }], src('M2'))).toMatchObject({ ignored: 1 });
    expect(cache.apply([{ control: 'CA', specimenId: 'S1', tests: [ALB] }], src('M3'))).toMatchObject({ ignored: 1 });
    expect(cache.apply([{ control: 'SC', specimenId: 'S1', tests: [] }], src('M4'))).toMatchObject({ ignored: 1 });
    expect(cache.apply([{ control: 'CA', specimenId: 'S1', tests: [] }], src('M5'))).toMatchObject({ cancelled: 1 });
    expect(cache.findBySpecimen('S1')).toMatchObject({ status: 'cancelled' });
    expect(codes(cache.findBySpecimen('S1'))).toEqual([GLU.code, CREA.code]);
  });

  it('NW on a cancelled order makes it pending again with just the new tests', () => {
    cache.apply([nw('S1', [GLU, CREA])], src('M1'));
    cache.apply([{ control: 'CA', specimenId: 'S1', tests: [] }], src('M2'));
    expect(cache.apply([nw('S1', [ALB])], src('M3'))).toMatchObject({ updated: 1 });
    expect(cache.findBySpecimen('S1')).toMatchObject({ status: 'pending' });
    expect(codes(cache.findBySpecimen('S1'))).toEqual([ALB.code]);
  });

  it('one message: NW then CA for the same specimen leaves it cancelled', () => {
    expect(cache.apply([nw('S1', [GLU]), { control: 'CA', specimenId: 'S1', tests: [] }], src('M1'))).toMatchObject({ created: 1, cancelled: 1 });
    expect(cache.findBySpecimen('S1')!.status).toBe('cancelled');
  });

  it('patient lookup; lookup() takes specimen ids first (trimmed, case-sensitive), then the patient\'s pending orders', () => {
    cache.apply([nw('S1', [GLU]), nw('S2', [CREA]), nw('S3', [ALB]), nw('X1', [GLU], { patient: { patientId: 'OTHER' } })], src('M1'));
    cache.apply([{ control: 'CA', specimenId: 'S3', tests: [] }], src('M2'));
    expect(cache.findByPatient('BN0067890').map((o) => o.specimenId)).toEqual(['S1', 'S2', 'S3']);
    expect(cache.findByPatient(' BN0067890 ')).toHaveLength(3);
    expect(cache.lookup({ specimenIds: [' S2 ', 'S1', 'S2'], patientId: 'BN0067890' }).map((o) => o.specimenId)).toEqual(['S2', 'S1']);
    expect(cache.lookup({ specimenIds: ['s1'] })).toEqual([]);
    expect(cache.lookup({ specimenIds: ['S3'] })[0].status).toBe('cancelled');
    expect(cache.lookup({ specimenIds: ['nope'], patientId: 'BN0067890' }).map((o) => o.specimenId)).toEqual(['S1', 'S2']);
    expect(cache.lookup({ specimenIds: [], patientId: 'UNKNOWN' })).toEqual([]);
  });

  it('expire() deletes orders unchanged for expiryDays (tests, downloads too); sequences are not reused', () => {
    cache.apply([nw('S1', [GLU, CREA])], src('M1'));
    const o = cache.findBySpecimen('S1')!;
    cache.markDownloaded(o.id, 'c311-1');
    expect(cache.expire(Date.now() + 6 * DAY)).toBe(0);
    expect(cache.expire(Date.now() + 8 * DAY)).toBe(1);
    expect(cache.findBySpecimen('S1')).toBeUndefined();
    expect(cache.stats()).toMatchObject({ orders: 0, tests: 0, messages: 0 });
    expect(db.prepare('SELECT COUNT(*) FROM order_downloads').pluck().get()).toBe(0);
    // the same MSH-10 after expiry is applied again (the de-duplication memory expires with the orders)
    cache.apply([nw('S1', [GLU])], src('M1'));
    expect(cache.findBySpecimen('S1')!.changeSeq).toBeGreaterThan(o.changeSeq);
    // option
    const short = new OrderCache(db, { expiryDays: 1 });
    expect(short.expire(Date.now() + 2 * DAY)).toBe(1);
    expect(() => new OrderCache(db, { expiryDays: 0 })).toThrow(TypeError);
  });

  it('pendingSince: changes in order, the cursor resumes after a reopen; saveCursor/loadCursor persist it', () => {
    cache.apply([nw('S1', [GLU]), nw('S2', [CREA])], src('M1'));
    const a = cache.pendingSince(0, 1);
    expect(a.orders.map((o) => o.specimenId)).toEqual(['S1']);
    const b = cache.pendingSince(a.cursor, 10);
    expect(b.orders.map((o) => o.specimenId)).toEqual(['S2']);
    expect(cache.pendingSince(b.cursor, 10)).toEqual({ orders: [], cursor: b.cursor });
    cache.saveCursor('c311-1', b.cursor);

    db.close();
    db = openDb(file);
    cache = new OrderCache(db);
    expect(cache.loadCursor('c311-1')).toBe(b.cursor);
    expect(cache.loadCursor('never')).toBe(0);
    cache.apply([nw('S3', [ALB])], src('M2'));
    cache.apply([{ control: 'CA', specimenId: 'S1', tests: [] }], src('M3'));
    const c = cache.pendingSince(cache.loadCursor('c311-1'), 10);
    expect(c.orders.map((o) => [o.specimenId, o.status])).toEqual([
      ['S3', 'pending'],
      ['S1', 'cancelled'],
    ]);
    expect(c.cursor).toBeGreaterThan(b.cursor);
  });

  it('markDownloaded / downloadedTo record which analyzer got which version', () => {
    cache.apply([nw('S1', [GLU])], src('M1'));
    const o = cache.findBySpecimen('S1')!;
    expect(cache.downloadedTo(o.id)).toEqual([]);
    cache.markDownloaded(o.id, 'c311-1');
    cache.markDownloaded(o.id, 'c311-1');
    cache.markDownloaded(o.id, 'xn-1000');
    const d = cache.downloadedTo(o.id);
    expect(d.map((x) => x.deviceId).sort()).toEqual(['c311-1', 'xn-1000']);
    expect(d[0].changeSeq).toBe(o.changeSeq);
    expect(() => cache.markDownloaded(99999, 'c311-1')).toThrow(StoreError);
  });

  it('stats()', () => {
    cache.apply([nw('S1', [GLU, CREA]), nw('S2', [ALB])], src('M1'));
    cache.apply([{ control: 'CA', specimenId: 'S2', tests: [] }], src('M2'));
    expect(cache.stats()).toEqual({ orders: 2, pending: 1, cancelled: 1, tests: 3, lastChangeSeq: 3, messages: 2 });
  });

  it('a full database → StoreFullError and nothing half-applied; a closed connection → StoreError', () => {
    cache.apply([nw('S1', [GLU])], src('M1'));
    const pages = Number(db.pragma('page_count', { simple: true }));
    db.pragma(`max_page_count = ${pages}`);
    const many = Array.from({ length: 500 }, (_, i) => nw(`BIG-${i}`, [{ code: `T${i}`, display: 'x'.repeat(500) }]));
    expect(() => cache.apply(many, src('M2'))).toThrow(StoreFullError);
    expect(cache.findBySpecimen('BIG-0')).toBeUndefined();
    expect(cache.stats().orders).toBe(1);
    db.pragma('max_page_count = 1073741823');
    expect(cache.apply(many.slice(0, 2), src('M2'))).toMatchObject({ created: 2, duplicate: false }); // M2 was not remembered
    db.close();
    expect(() => cache.apply([nw('S9', [GLU])], src('M3'))).toThrow(StoreError);
    expect(() => cache.findBySpecimen('S1')).toThrow(StoreError);
  });

  it('refuses to run inside someone else\'s open transaction (its commit would not be durable on return)', () => {
    db.exec('BEGIN');
    expect(() => cache.apply([nw('S1', [GLU])], src('M1'))).toThrow(StoreError);
    db.exec('ROLLBACK');
  });
});
