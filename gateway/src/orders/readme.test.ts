import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { describe, expect, it } from 'vitest';
import { parseHl7 } from '../../../drivers/hl7-mllp/hl7-message';
import { parseOrders } from '../../../drivers/hl7-mllp/order-parser';
import { tempDir } from '../../../test/helpers/env';
import { createRootLogger } from '../log/logger';
import { ordersForAstmQuery } from './astm-order-answer';
import { OrderCache } from './order-cache';
import { createWorklistProvider } from '../../../drivers/dicom/worklist';

describe('README example', () => {
  it('parses, applies and answers the query', () => {
    createRootLogger('silent');
    const md = readFileSync(join(__dirname, 'README.md'), 'utf8');
    const block = /```hl7\n([\s\S]*?)```/.exec(md)![1];
    const { header, orders } = parseOrders(parseHl7(block));
    const tmp = tempDir('orders-readme-');
    const db = new Database(join(tmp.dir, 'gateway.db'));
    try {
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      const cache = new OrderCache(db, { expiryDays: 7 });
      cache.apply(orders, { deviceId: 'his', messageControlId: `${header.sendingApp}^${header.sendingFacility}|${header.controlId}` });
      expect(ordersForAstmQuery(cache, { specimenIds: ['2503010057'] })).toMatchObject([
        { specimenId: '2503010057', patientId: 'BN0067890', patientName: 'Trần^Thị Bình', birthDate: '19790130', sex: 'F', tests: ['717/', '690/'], priority: 'R', actionCode: 'N' },
      ]);
    } finally {
      db.close();
      tmp.cleanup();
    }
  });

  it('the imaging example (OMI^O23) becomes the worklist item the README describes', async () => {
    createRootLogger('silent');
    const md = readFileSync(join(__dirname, 'README.md'), 'utf8');
    const block = [...md.matchAll(/```hl7\n([\s\S]*?)```/g)][1][1];
    const { header, orders } = parseOrders(parseHl7(block));
    const tmp = tempDir('orders-readme-');
    const db = new Database(join(tmp.dir, 'gateway.db'));
    try {
      db.pragma('journal_mode = WAL');
      db.pragma('synchronous = FULL');
      const cache = new OrderCache(db);
      cache.apply(orders, { deviceId: 'ris', messageControlId: header.controlId });
      const [item] = await createWorklistProvider({ orders: cache }).find(
        { PatientName: '', AccessionNumber: '', StudyInstanceUID: '', RequestedProcedurePriority: '', ScheduledProcedureStepSequence: [{ ScheduledStationAETitle: 'MR01', Modality: 'MR', ScheduledProcedureStepStartDate: '20250302', ScheduledProcedureStepStartTime: '', ScheduledProcedureStepID: '', ScheduledStationName: '', ScheduledProcedureStepLocation: '' }] },
        { callingAeTitle: 'MR01', calledAeTitle: 'IOMT_GW' },
      );
      expect(item).toEqual({
        SpecificCharacterSet: 'ISO_IR 192',
        PatientName: 'Trần^Thị Bình',
        AccessionNumber: 'ACC-MR-1',
        StudyInstanceUID: '1.2.826.0.1.3680043.8.498.777',
        RequestedProcedurePriority: 'STAT',
        ScheduledProcedureStepSequence: [{ ScheduledStationAETitle: 'MR01', Modality: 'MR', ScheduledProcedureStepStartDate: '20250302', ScheduledProcedureStepStartTime: '143000', ScheduledProcedureStepID: 'SPS-MR-1', ScheduledStationName: 'MR_ROOM1', ScheduledProcedureStepLocation: 'PHONG MR 1' }],
      });
    } finally {
      db.close();
      tmp.cleanup();
    }
  });
});
