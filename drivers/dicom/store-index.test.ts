/**
 * Migration 4 (gateway/src/store/migrations.ts): stored DICOM instances are found by accession number
 * and by study through partial expression indexes, not by scanning every message's JSON; other
 * messages are not indexed. Real SQLite on disk, rows written by the store as the SCP writes them.
 */
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { DB_FILE, GatewayStore } from '../../gateway/src/store/gateway-store';
import { tempDir } from '../../test/helpers/env';
import type { DicomInstanceRecord } from './contracts';
import { instanceInbound } from './storage-scp';

describe('DICOM instance indexes (migration 4)', () => {
  const tmp = tempDir('iomt-dicom-index-');
  afterAll(() => tmp.cleanup());

  it('accession and study lookups use the indexes and find exactly the instances', async () => {
    const store = GatewayStore.open({ dataDir: tmp.dir });
    try {
      for (let i = 0; i < 30; i++) {
        const rec: DicomInstanceRecord = {
          sopClassUid: '1.2.840.10008.5.1.4.1.1.2',
          sopInstanceUid: `2.25.5.${i}`,
          studyInstanceUid: `2.25.7.${i % 3}`,
          seriesInstanceUid: '2.25.6',
          accessionNumber: `ACC${i % 3}`,
          transferSyntaxUid: '1.2.840.10008.1.2.1',
          callingAeTitle: 'CT01',
          calledAeTitle: 'IOMT_GW',
          relPath: `dicom/x/${i}.dcm`,
          bytes: 100,
          sha256: String(i).padStart(64, '0'),
          receivedAt: new Date().toISOString(),
        };
        await store.submit(instanceInbound('modalities', rec, { patientId: 'P1' }, '127.0.0.1:1'));
      }
      // an HL7 message with an accessionNumber-looking meta is not a DICOM instance
      await store.submit({ deviceId: 'lab', driver: 'hl7-mllp', raw: Buffer.from('x'), drafts: [], meta: { accessionNumber: 'ACC1' } });
    } finally {
      await store.close();
    }
    const db = new Database(join(tmp.dir, DB_FILE), { readonly: true });
    try {
      const where = `m.driver = 'dicom' AND m.message_type = 'C-STORE'`;
      const plan = (sql: string) => (db.prepare(`EXPLAIN QUERY PLAN ${sql}`).all('ACC1') as Array<{ detail: string }>).map((r) => r.detail).join(' | ');
      const byAcc = `SELECT m.id FROM messages m WHERE ${where} AND json_extract(m.meta, '$.accessionNumber') = ?`;
      expect(plan(byAcc)).toContain('messages_dicom_accession');
      expect(db.prepare(byAcc).all('ACC1')).toHaveLength(10);
      const byStudy = `SELECT m.id FROM messages m WHERE ${where} AND json_extract(m.meta, '$.studyInstanceUid') = ?`;
      expect(plan(byStudy)).toContain('messages_dicom_study');
      expect(db.prepare(byStudy).all('2.25.7.1')).toHaveLength(10);
      // only the 30 dicom rows are in the partial index
      const n = db.prepare(`SELECT count(*) AS n FROM messages m INDEXED BY messages_dicom_accession WHERE ${where} AND json_extract(m.meta, '$.accessionNumber') IS NOT NULL`).get() as { n: number };
      expect(n.n).toBe(30);
    } finally {
      db.close();
    }
  });
});
