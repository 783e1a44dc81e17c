import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { tempDir } from '../../../test/helpers/env';
import type { InboundMessage } from '../contracts/driver';
import { StoreError } from '../contracts/errors';
import { DB_FILE, GatewayStore } from './gateway-store';
import { MIGRATIONS, SCHEMA_VERSION } from './migrations';
import { sampleMessage } from './test/fixtures';

/**
 * Store side of "nothing is discarded silently" (README "Duplicates and reused control ids"):
 * a duplicate is the same (device, dedupeKey) — sender, control id and content; a new message whose
 * (device, controlKey) is already stored is stored too, and flagged 'control-id-reused'.
 */
describe('duplicates and reused control ids', () => {
  let tmp: ReturnType<typeof tempDir>;
  let store: GatewayStore;

  beforeEach(() => {
    tmp = tempDir('iomt-store-flags-');
    store = GatewayStore.open({ dataDir: tmp.dir });
  });
  afterEach(async () => {
    await store.close();
    tmp.cleanup();
  });

  /** What the HL7 receiver sends: dedupeKey = sender|MSH-10|content hash, controlKey = sender|MSH-10. */
  const hl7 = (i: number, o: { control?: string; content?: string; device?: string; extra?: Partial<InboundMessage> } = {}): InboundMessage => {
    const control = o.control ?? `MSG${i}`;
    const content = o.content ?? `h${i}`;
    return sampleMessage(i, {
      deviceId: o.device ?? 'analyzer-1',
      sender: 'LAB^X',
      sourceMessageId: control,
      controlKey: `LAB^X|${control}`,
      dedupeKey: `LAB^X|${control}|${content}`,
      ...o.extra,
    });
  };

  const rowCount = () => store.searchMessages({ limit: 1000 }).length;

  it('same dedupeKey twice: duplicate with the original ids, one row, no reuse flag', async () => {
    const first = await store.submit(hl7(1, { control: 'C1', content: 'same' }));
    const again = await store.submit(hl7(2, { control: 'C1', content: 'same' }));
    expect(first).toMatchObject({ duplicate: false, controlIdReused: false });
    expect(again).toEqual({ messageId: first.messageId, messageUid: first.messageUid, duplicate: true, observations: first.observations });
    expect(again.controlIdReused).toBeUndefined();
    expect(rowCount()).toBe(1);
    expect(store.getMessage(first.messageId)!.flags).toBeUndefined();
  });

  it('same controlKey, other content: stored as a new message, controlIdReused, flagged in getMessage and searchMessages({flag})', async () => {
    const first = await store.submit(hl7(1, { control: 'C1', content: 'patient-A' }));
    const second = await store.submit(hl7(2, { control: 'C1', content: 'patient-B' }));
    expect(second.duplicate).toBe(false);
    expect(second.controlIdReused).toBe(true);
    expect(second.messageId).not.toBe(first.messageId);
    expect(second.observations.map((o) => o.id)).toEqual([1, 2].map((k) => `${second.messageUid}-${k}`));
    expect(second.observations[0].value).toEqual(hl7(2).drafts[0].value); // its own results, not the first message's
    expect(rowCount()).toBe(2);
    // the first one is not flagged retroactively: only the message that reused the id
    expect(store.getMessage(first.messageId)!.flags).toBeUndefined();
    expect(store.getMessage(second.messageId)!.flags).toEqual(['control-id-reused']);
    const found = store.searchMessages({ flag: 'control-id-reused' });
    expect(found.map((m) => m.id)).toEqual([second.messageId]);
    expect(found[0].flags).toEqual(['control-id-reused']);
    // a third use is flagged again; a resend of the second is a duplicate (not a third row)
    const third = await store.submit(hl7(3, { control: 'C1', content: 'patient-C' }));
    const resend = await store.submit(hl7(2, { control: 'C1', content: 'patient-B' }));
    expect(third.controlIdReused).toBe(true);
    expect(resend).toMatchObject({ duplicate: true, messageId: second.messageId });
    expect(store.searchMessages({ flag: 'control-id-reused' }).map((m) => m.id)).toEqual([third.messageId, second.messageId]);
    expect(rowCount()).toBe(3);
  });

  // data-driven: [case, first message, second message, expected controlIdReused of the second]
  const cases: Array<[string, (s: typeof hl7) => InboundMessage, (s: typeof hl7) => InboundMessage, boolean]> = [
    ['same controlKey, same device', (m) => m(1, { control: 'C', content: 'a' }), (m) => m(2, { control: 'C', content: 'b' }), true],
    ['same controlKey on another device', (m) => m(1, { control: 'C', content: 'a' }), (m) => m(2, { control: 'C', content: 'b', device: 'analyzer-2' }), false],
    ['other controlKey', (m) => m(1, { control: 'C', content: 'a' }), (m) => m(2, { control: 'D', content: 'b' }), false],
    ['controlKey absent on the second', (m) => m(1, { control: 'C', content: 'a' }), (m) => m(2, { control: 'C', content: 'b', extra: { controlKey: undefined } }), false],
    ['controlKey absent on the first', (m) => m(1, { control: 'C', content: 'a', extra: { controlKey: undefined } }), (m) => m(2, { control: 'C', content: 'b' }), false],
    ['controlKey absent on both', (m) => m(1, { control: 'C', content: 'a', extra: { controlKey: undefined } }), (m) => m(2, { control: 'C', content: 'b', extra: { controlKey: undefined } }), false],
    ['empty controlKey is no key', (m) => m(1, { control: 'C', content: 'a', extra: { controlKey: '' } }), (m) => m(2, { control: 'C', content: 'b', extra: { controlKey: '' } }), false],
    ['no dedupeKey, same controlKey', (m) => m(1, { control: 'C', extra: { dedupeKey: undefined } }), (m) => m(2, { control: 'C', extra: { dedupeKey: undefined } }), true],
  ];
  it.each(cases)('%s', async (_name, a, b, reused) => {
    const first = await store.submit(a(hl7));
    const second = await store.submit(b(hl7));
    expect(first.controlIdReused).toBe(false);
    expect(second).toMatchObject({ duplicate: false, controlIdReused: reused });
    expect(rowCount()).toBe(2);
    expect(store.getMessage(second.messageId)!.flags).toEqual(reused ? ['control-id-reused'] : undefined);
  });

  it('reuse inside one group transaction (submitted in the same tick) is seen too', async () => {
    const rs = await Promise.all([
      store.submit(hl7(1, { control: 'C', content: 'a' })),
      store.submit(hl7(2, { control: 'C', content: 'b' })),
      store.submit(hl7(3, { control: 'C', content: 'a' })), // duplicate of the first
      store.submit(hl7(4, { control: 'C', content: 'c' })),
    ]);
    expect(rs.map((r) => [r.duplicate, r.controlIdReused])).toEqual([
      [false, false],
      [false, true],
      [true, undefined],
      [false, true],
    ]);
    expect(rowCount()).toBe(3);
  });

  it('flags of the inbound message are stored (no repeats) and united with control-id-reused', async () => {
    const a = await store.submit(hl7(1, { control: 'C', content: 'a', extra: { flags: ['charset-fallback', 'charset-fallback'] } }));
    const b = await store.submit(hl7(2, { control: 'C', content: 'b', extra: { flags: ['charset-fallback', 'segment-terminator-missing'] } }));
    const c = await store.submit(hl7(3, { control: 'D', content: 'c', extra: { flags: [] } }));
    expect(store.getMessage(a.messageId)!.flags).toEqual(['charset-fallback']);
    expect(store.getMessage(b.messageId)!.flags).toEqual(['charset-fallback', 'segment-terminator-missing', 'control-id-reused']);
    expect(store.getMessage(c.messageId)!.flags).toBeUndefined(); // empty list = none (NULL)
    const ids = (flag: string) => store.searchMessages({ flag }).map((m) => m.id);
    expect(ids('charset-fallback')).toEqual([b.messageId, a.messageId]);
    expect(ids('segment-terminator-missing')).toEqual([b.messageId]);
    expect(ids('control-id-reused')).toEqual([b.messageId]);
    expect(ids('charset')).toEqual([]); // whole flags only, not substrings
    expect(store.searchMessages({ flag: 'charset-fallback', deviceId: 'analyzer-2' })).toEqual([]);
    // a driver that flags the reuse itself: reply and flags agree, the flag is not repeated
    const d = await store.submit(hl7(4, { control: 'E', content: 'd', extra: { flags: ['control-id-reused'] } }));
    expect(d.controlIdReused).toBe(true);
    expect(store.getMessage(d.messageId)!.flags).toEqual(['control-id-reused']);
    const e = await store.submit(hl7(5, { control: 'E', content: 'e', extra: { flags: ['control-id-reused'] } }));
    expect(store.getMessage(e.messageId)!.flags).toEqual(['control-id-reused']);
  });

  it('rejects malformed flags, controlKey or processingId with StoreError (nothing stored)', async () => {
    const bad: Array<Partial<InboundMessage>> = [
      { flags: 'charset-fallback' as unknown as string[] },
      { flags: [''] },
      { flags: [42 as unknown as string] },
      { controlKey: 7 as unknown as string },
      { processingId: {} as unknown as string },
    ];
    for (const extra of bad) await expect(store.submit(hl7(1, { extra }))).rejects.toBeInstanceOf(StoreError);
    expect(rowCount()).toBe(0);
  });

  it('processingId is stored and carried by every observation: submit, getMessage, observationsOf (duplicate), unfinished, summary', async () => {
    const t = await store.submit(hl7(1, { extra: { processingId: 'T' } }));
    const p = await store.submit(hl7(2, { extra: { processingId: 'P' } }));
    const none = await store.submit(hl7(3));
    expect(t.observations.map((o) => o.processingId)).toEqual(['T', 'T']);
    expect(p.observations.map((o) => o.processingId)).toEqual(['P', 'P']);
    expect(none.observations.every((o) => !('processingId' in o))).toBe(true);
    expect(store.getMessage(t.messageId)!.observations).toEqual(t.observations);
    expect(store.getMessage(t.messageId)!.processingId).toBe('T');
    expect(store.getMessage(none.messageId)!.processingId).toBeUndefined();
    expect(store.getMessage(none.messageId)!.observations).toEqual(none.observations);
    const dup = await store.submit(hl7(1, { extra: { processingId: 'T' } }));
    expect(dup.duplicate).toBe(true);
    expect(dup.observations).toEqual(t.observations);
    const u = store.unfinished('analyzer-1');
    expect(u.map((x) => x.observations[0].processingId)).toEqual(['T', 'P', undefined]);
    expect(store.searchMessages({}).map((m) => m.processingId)).toEqual([undefined, 'P', 'T']);
  });

  it('the flag filter walks the partial index of flagged messages', () => {
    const db = new Database(join(tmp.dir, DB_FILE), { readonly: true });
    try {
      const plan = db
        .prepare(`EXPLAIN QUERY PLAN SELECT m.id FROM messages m WHERE m.flags IS NOT NULL AND EXISTS (SELECT 1 FROM json_each(m.flags) WHERE value = ?) ORDER BY m.id DESC LIMIT 50`)
        .all('control-id-reused') as Array<{ detail: string }>;
      expect(plan.map((r) => r.detail).join('\n')).toMatch(/messages_flagged/);
      const ctl = db.prepare(`EXPLAIN QUERY PLAN SELECT 1 FROM messages WHERE device_id = ? AND control_key = ? LIMIT 1`).all('d', 'k') as Array<{ detail: string }>;
      expect(ctl.map((r) => r.detail).join('\n')).toMatch(/messages_control/);
    } finally {
      db.close();
    }
  });
});

describe('migration 2 on a database created at version 1', () => {
  it('adds control_key, flags, processing_id (NULL for old rows), keeps old rows readable and the dedupe index', async () => {
    const tmp = tempDir('iomt-store-v1-');
    try {
      const file = join(tmp.dir, DB_FILE);
      const v1 = new Database(file);
      v1.pragma('auto_vacuum = INCREMENTAL');
      v1.pragma('journal_mode = WAL');
      const m1 = MIGRATIONS.find((m) => m.version === 1)!;
      v1.exec(m1.up);
      v1.pragma('user_version = 1');
      const old = sampleMessage(1, { n: 1 });
      // a v1 row as the v1 writer stored it (dedupe_key = sender|MSH-10), observations in layout v1 plain JSON
      const id = Number(
        v1
          .prepare(
            `INSERT INTO messages (uid, device_id, driver, message_type, source_message_id, sender, dedupe_key, received_at, bytes, meta, observation_count)
             VALUES ('01HOLDUID000000001', 'analyzer-1', 'hl7-mllp', 'ORU^R01', 'MSG1', 'LAB^X', 'LAB^X|MSG1', '2024-01-01T00:00:00.000Z', ?, NULL, 1)`,
          )
          .run(old.raw.length).lastInsertRowid,
      );
      v1.prepare(`INSERT INTO message_bodies (message_id, raw, observations) VALUES (?, ?, ?)`).run(id, old.raw, Buffer.concat([Buffer.from([0]), Buffer.from(JSON.stringify(old.drafts))]));
      v1.close();

      const store = GatewayStore.open({ dataDir: tmp.dir });
      try {
        expect(SCHEMA_VERSION).toBeGreaterThanOrEqual(2);
        expect(store.diagnostics().userVersion).toBe(SCHEMA_VERSION);
        const d = store.getMessage(id)!;
        expect(d).toMatchObject({ id, uid: '01HOLDUID000000001', deviceId: 'analyzer-1', sourceMessageId: 'MSG1', observationCount: 1 });
        expect(d.raw.equals(old.raw)).toBe(true);
        expect(d.flags).toBeUndefined();
        expect(d.processingId).toBeUndefined();
        expect(d.observations).toHaveLength(1);
        expect(d.observations[0]).toMatchObject({ id: '01HOLDUID000000001-1', code: old.drafts[0].code, value: old.drafts[0].value });
        expect('processingId' in d.observations[0]).toBe(false);
        // the old dedupe key still de-duplicates (unique index kept) ...
        const dup = await store.submit(sampleMessage(1, { n: 1, sender: 'LAB^X', dedupeKey: 'LAB^X|MSG1' }));
        expect(dup).toMatchObject({ duplicate: true, messageId: id });
        // ... and the old row has no control key: it never marks a new message as a reuse
        const fresh = await store.submit(sampleMessage(2, { sender: 'LAB^X', dedupeKey: 'LAB^X|MSG1|h2', controlKey: 'LAB^X|MSG1', processingId: 'P' }));
        expect(fresh).toMatchObject({ duplicate: false, controlIdReused: false });
      } finally {
        await store.close();
      }
      const raw = new Database(file, { readonly: true });
      try {
        const row = raw.prepare(`SELECT control_key, flags, processing_id FROM messages WHERE id = ?`).get(id);
        expect(row).toEqual({ control_key: null, flags: null, processing_id: null });
        const idx = (raw.prepare(`SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = 'messages'`).all() as Array<{ name: string }>).map((r) => r.name);
        expect(idx).toEqual(expect.arrayContaining(['messages_dedupe', 'messages_control', 'messages_flagged']));
        expect(raw.pragma('integrity_check', { simple: true })).toBe('ok');
      } finally {
        raw.close();
      }
    } finally {
      tmp.cleanup();
    }
  });
});
