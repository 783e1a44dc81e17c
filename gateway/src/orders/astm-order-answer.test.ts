import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { tempDir } from '../../../test/helpers/env';
import { createRootLogger } from '../log/logger';
import { isoToAstm, ordersForAstmQuery, toAstmOrder } from './astm-order-answer';
import { OrderCache } from './order-cache';
import type { OrderUpdate } from './order-types';

/** protocols.md §2.3 C: specimen 2503010057, tests 717 / 690 / 685 (Roche-style local codes as OBR-4 alternates). */
const ORDER: OrderUpdate = {
  control: 'NW',
  specimenId: '2503010057',
  placerOrderNumber: 'HIS-ORD-9001',
  patient: { patientId: 'BN0067890', patientIds: [{ id: 'BN0067890' }], name: 'TRAN^THI BINH', birthDate: '19790130', sex: 'F' },
  tests: [
    { code: '2345-7', display: 'Glucose', system: 'LN', altCode: '717/' },
    { code: '2160-0', display: 'Creatinine', system: 'LN', altCode: '690/' },
    { code: '1751-7', display: 'Albumin', system: 'LN', altCode: '685/' },
  ],
  priority: 'R',
  requestedAt: '2025-03-01T09:45:00',
  collectedAt: '2025-03-01T09:40:00',
  specimenType: 'SER',
};

describe('ordersForAstmQuery', () => {
  let tmp: { dir: string; cleanup: () => void };
  let db: Database.Database;
  let cache: OrderCache;
  beforeAll(() => createRootLogger('silent'));
  beforeEach(() => {
    tmp = tempDir('astm-answer-');
    db = new Database(join(tmp.dir, 'gateway.db'));
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    cache = new OrderCache(db);
    cache.apply([ORDER], { deviceId: 'his', messageControlId: 'M1' });
  });
  afterEach(() => {
    db.close();
    tmp.cleanup();
  });

  it('known specimen → the P/O content of protocols.md §2.3 C (local codes from OBR-4 alternates, action N)', () => {
    const r = ordersForAstmQuery(cache, { specimenIds: ['2503010057'], tests: ['ALL'] });
    expect(r).toEqual([
      {
        orderId: expect.any(Number),
        specimenId: '2503010057',
        patientId: 'BN0067890',
        patientName: 'TRAN^THI BINH',
        birthDate: '19790130',
        sex: 'F',
        tests: ['717/', '690/', '685/'],
        priority: 'R',
        actionCode: 'N',
        requestedAt: '20250301094500',
        collectedAt: '20250301094000',
        specimenType: 'SER',
      },
    ]);
  });

  it('unknown specimen / empty query → "unknown" (driver answers L|1|I or O.26 Y/Z)', () => {
    expect(ordersForAstmQuery(cache, { specimenIds: ['9999999999'] })).toBe('unknown');
    expect(ordersForAstmQuery(cache, { specimenIds: ['', 'ALL'] })).toBe('unknown');
    expect(ordersForAstmQuery(cache, { specimenIds: ['2503010057'], tests: ['999/'] })).toBe('unknown');
  });

  it('cancelled order → action code C with the cancelled tests', () => {
    cache.apply([{ control: 'CA', specimenId: '2503010057', tests: [] }], { deviceId: 'his', messageControlId: 'M2' });
    const r = ordersForAstmQuery(cache, { specimenIds: ['2503010057'] });
    expect(r).toMatchObject([{ specimenId: '2503010057', actionCode: 'C', tests: ['717/', '690/', '685/'] }]);
  });

  it('by patient (no specimen matched) → that patient\'s pending orders', () => {
    expect(ordersForAstmQuery(cache, { patientId: 'BN0067890', specimenIds: [] })).toMatchObject([{ specimenId: '2503010057' }]);
    expect(ordersForAstmQuery(cache, { patientId: 'BN0000000', specimenIds: [] })).toBe('unknown');
  });

  it('Q.5 test list filters; a profile mapping replaces the default (altCode else code)', () => {
    expect(ordersForAstmQuery(cache, { specimenIds: ['2503010057'], tests: ['690/'] })).toMatchObject([{ tests: ['690/'] }]);
    const map: Record<string, string> = { '2345-7': 'GLU', '2160-0': 'CREA' };
    const r = ordersForAstmQuery(cache, { specimenIds: ['2503010057'] }, (t) => map[t.code] ?? '');
    expect(r).toMatchObject([{ tests: ['GLU', 'CREA'] }]); // unmapped tests are left out
    const o = cache.findBySpecimen('2503010057')!;
    expect(toAstmOrder({ ...o, tests: [{ code: 'X' }, { code: 'X' }] }).tests).toEqual(['X']);
  });

  it('isoToAstm: wall-clock digits without offset; an offset is converted to local time', () => {
    expect(isoToAstm('2025-03-01T09:45:00')).toBe('20250301094500');
    expect(isoToAstm('2025-03-01')).toBe('20250301');
    expect(isoToAstm('2025')).toBe('2025');
    const d = new Date('2025-03-01T09:45:00+07:00');
    const p = (n: number) => String(n).padStart(2, '0');
    expect(isoToAstm('2025-03-01T09:45:00+07:00')).toBe(`${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`);
    expect(isoToAstm('garbage')).toBeUndefined();
    expect(isoToAstm(undefined)).toBeUndefined();
  });
});
