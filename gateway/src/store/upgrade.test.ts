import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { deflateRawSync } from 'node:zlib';
import Database from 'better-sqlite3';
import { tempDir } from '../../../test/helpers/env';
import { GatewayStore } from './gateway-store';
import { MIGRATIONS, SCHEMA_VERSION } from './migrations';
import { sampleMessage } from './test/fixtures';

/**
 * Upgrade (issue 9 §4): a database written by an earlier released layout, with messages and outbox
 * entries still queued, opens with the current store, migrates forward, and its queue is delivered.
 * The fixture is written the way the old code wrote it: only the schema of migrations <= v (SQL taken
 * from MIGRATIONS, never edited once released), the file settings prepareDatabase() made at the time,
 * observations as format byte 0x01 + raw DEFLATE of the v1 JSON layout (`JSON.stringify(drafts)`),
 * one message_keys row per distinct patient/specimen id, PENDING outbox rows (one already retried).
 */
const EARLIER = MIGRATIONS.filter((m) => m.version < SCHEMA_VERSION).map((m) => m.version);

interface Fixture {
  messages: Array<{ id: number; uid: string; specimen: string; value: number }>;
  pending: Array<{ id: number; key: string; payload: string }>;
}

function writeOldDatabase(file: string, version: number, opts: { autoVacuum: boolean }): Fixture {
  const db = new Database(file);
  if (opts.autoVacuum) db.pragma('auto_vacuum = INCREMENTAL');
  db.pragma('journal_mode = WAL');
  for (const m of MIGRATIONS.filter((x) => x.version <= version)) {
    db.transaction(() => {
      db.exec(m.up);
      db.pragma(`user_version = ${m.version}`);
    })();
  }
  const insMsg = db.prepare(
    `INSERT INTO messages (uid, device_id, driver, message_type, source_message_id, sender, dedupe_key, received_at, bytes, meta, observation_count, status)
     VALUES (?, 'analyzer-1', 'hl7-mllp', 'ORU^R01', ?, 'LAB|X', ?, ?, ?, '{"remote":"10.0.0.5"}', ?, ?)`,
  );
  const insBody = db.prepare(`INSERT INTO message_bodies (message_id, raw, observations) VALUES (?, ?, ?)`);
  const insKey = db.prepare(`INSERT INTO message_keys (message_id, kind, value) VALUES (?, ?, ?)`);
  const insOut = db.prepare(
    `INSERT INTO outbox (destination, key, message_id, payload, content_type, state, attempts, next_attempt_at, created_at, last_error, delivered_at, dead_at)
     VALUES ('his', ?, ?, ?, 'application/hl7-v2', ?, ?, ?, ?, ?, ?, ?)`,
  );
  const fx: Fixture = { messages: [], pending: [] };
  const t0 = Date.now() - 3600_000;
  db.transaction(() => {
    for (let i = 0; i < 4; i++) {
      const m = sampleMessage(i, { specimenId: `OLD-SPEC-${i}` });
      const uid = `0OLDUID000000000${i}`.slice(-18);
      const receivedAt = new Date(t0 + i * 1000).toISOString();
      const status = i < 2 ? 'routed' : 'committed';
      const id = Number(insMsg.run(uid, m.sourceMessageId, `k${i}`, receivedAt, m.raw.length, m.drafts.length, status).lastInsertRowid);
      const obs = Buffer.concat([Buffer.from([0x01]), deflateRawSync(Buffer.from(JSON.stringify(m.drafts), 'utf8'), { level: 1 })]);
      insBody.run(id, m.raw, obs);
      insKey.run(id, 'patient', m.drafts[0].subject!.patientId!);
      insKey.run(id, 'specimen', `OLD-SPEC-${i}`);
      fx.messages.push({ id, uid, specimen: `OLD-SPEC-${i}`, value: (m.drafts[0].value as { value: number }).value });
      const payload = `MSH|^~\\&|GW|X|HIS|Y|||ORU^R01|${uid}|P|2.5.1\r`;
      // 0: delivered; 1: dead; 2: pending, never tried; 3: pending, failed twice, due now
      const state = i === 0 ? 'delivered' : i === 1 ? 'dead' : 'pending';
      const key = `${uid}-1`;
      const oid = Number(
        insOut.run(key, id, Buffer.from(payload), state, [1, 10, 0, 2][i], t0, t0 + i, i === 3 ? 'ECONNREFUSED' : null, i === 0 ? t0 + 10 : null, i === 1 ? t0 + 20 : null)
          .lastInsertRowid,
      );
      if (state === 'pending') fx.pending.push({ id: oid, key, payload });
    }
  })();
  db.close();
  return fx;
}

describe('store upgrade from earlier released layouts', () => {
  let tmp: ReturnType<typeof tempDir>;
  beforeEach(() => {
    tmp = tempDir('iomt-upgrade-');
  });
  afterEach(() => tmp.cleanup());

  it('there is at least one earlier layout to upgrade from', () => {
    expect(EARLIER).toContain(1);
  });

  const cases = EARLIER.flatMap((version) => [
    { version, autoVacuum: true },
    { version, autoVacuum: false }, // a file from before auto_vacuum was set: converted once with VACUUM
  ]);
  for (const c of cases) {
    it(`schema ${c.version} (auto_vacuum ${c.autoVacuum ? 'incremental' : 'none'}) → ${SCHEMA_VERSION}: messages read back, queued entries are delivered`, async () => {
      const fx = writeOldDatabase(join(tmp.dir, 'gateway.db'), c.version, { autoVacuum: c.autoVacuum });
      const store = GatewayStore.open({ dataDir: tmp.dir });
      try {
        const d = store.diagnostics();
        expect(d.userVersion).toBe(SCHEMA_VERSION);
        expect(d.autoVacuum).toBe(2);
        expect(d.journalMode).toBe('wal');

        // messages written by the old code read back, with their observations
        for (const m of fx.messages) {
          const got = store.getMessage(m.id);
          expect(got?.uid).toBe(m.uid);
          expect(got?.flags).toBeUndefined(); // columns added later read as NULL
          expect(got?.observations).toHaveLength(2);
          expect(got?.observations[0].value).toMatchObject({ kind: 'quantity', value: m.value, unit: 'g/dL' });
          expect(store.searchMessages({ specimenId: m.specimen }).map((s) => s.id)).toEqual([m.id]);
        }
        expect(store.unfinished('analyzer-1').map((u) => u.messageId)).toEqual(fx.messages.slice(2).map((m) => m.id));

        // the queue as it was: 2 pending, 1 delivered, 1 dead
        const before = store.destinationStats('his')[0];
        expect(before).toMatchObject({ destination: 'his', pending: 2, delivered: 1, dead: 1 });

        const leased = store.lease('his', 10, 60_000);
        expect(leased.map((e) => e.id)).toEqual(fx.pending.map((p) => p.id));
        expect(leased.map((e) => Buffer.from(e.payload).toString())).toEqual(fx.pending.map((p) => p.payload));
        expect(leased.map((e) => e.key)).toEqual(fx.pending.map((p) => p.key));
        expect(leased[1].attempts).toBe(2);

        await store.settle('his', leased.map((e) => ({ id: e.id, outcome: 'delivered' as const })));
        expect(store.destinationStats('his')[0]).toMatchObject({ pending: 0, delivered: 3, dead: 1 });
        expect(store.lease('his', 10, 60_000)).toEqual([]);
        expect(store.getMessage(fx.messages[3].id)?.deliveries).toEqual([expect.objectContaining({ destination: 'his', state: 'delivered' })]);

        // and the upgraded file takes new messages with the new columns
        const r = await store.submit(sampleMessage(99, { sourceMessageId: 'NEW99' }));
        expect(store.getMessage(r.messageId)?.uid).toBe(r.messageUid);
        expect(r.messageId).toBeGreaterThan(fx.messages[fx.messages.length - 1].id);
      } finally {
        await store.close();
      }
      const raw = new Database(join(tmp.dir, 'gateway.db'), { readonly: true });
      try {
        expect(raw.pragma('integrity_check', { simple: true })).toBe('ok');
        expect(raw.pragma('user_version', { simple: true })).toBe(SCHEMA_VERSION);
      } finally {
        raw.close();
      }
    });
  }
});
