import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Worker } from 'node:worker_threads';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { StoreError, StoreFullError } from '../contracts/errors';
import { metrics, registry } from '../metrics/registry';
import { tempDir } from '../../../test/helpers/env';
import type { CommitResult } from '../contracts/driver';
import { GatewayStore } from './gateway-store';
import { SCHEMA_VERSION } from './migrations';
import { sampleMessage } from './test/fixtures';

describe('GatewayStore', () => {
  let tmp: ReturnType<typeof tempDir>;
  let store: GatewayStore;

  beforeEach(() => {
    tmp = tempDir('iomt-store-');
    store = GatewayStore.open({ dataDir: tmp.dir });
  });
  afterEach(async () => {
    await store.close();
    tmp.cleanup();
  });

  describe('open and schema', () => {
    it('creates gateway.db with WAL, synchronous=FULL, incremental auto_vacuum, foreign keys, busy_timeout, latest schema', () => {
      const d = store.diagnostics();
      expect(store.file).toBe(join(tmp.dir, 'gateway.db'));
      expect(d.journalMode).toBe('wal');
      expect(d.synchronous).toBe(2); // FULL
      expect(d.autoVacuum).toBe(2); // INCREMENTAL: set before the first table was created
      expect(d.foreignKeys).toBe(1);
      expect(d.busyTimeoutMs).toBeGreaterThan(0);
      expect(d.userVersion).toBe(SCHEMA_VERSION);
      expect(store.stats().schemaVersion).toBe(SCHEMA_VERSION);
    });

    it('reopens an existing file without re-running migrations and keeps the data', async () => {
      const r = await store.submit(sampleMessage(1));
      await store.close();
      store = GatewayStore.open({ dataDir: tmp.dir });
      expect(store.diagnostics().userVersion).toBe(SCHEMA_VERSION);
      expect(store.getMessage(r.messageId)?.uid).toBe(r.messageUid);
    });

    it('converts a pre-existing file without auto_vacuum (VACUUM once)', async () => {
      await store.close();
      const other = tempDir('iomt-store-old-');
      try {
        const raw = new Database(join(other.dir, 'gateway.db'));
        raw.exec('CREATE TABLE legacy (x)');
        raw.close();
        const s = GatewayStore.open({ dataDir: other.dir });
        expect(s.diagnostics().autoVacuum).toBe(2);
        expect(s.diagnostics().userVersion).toBe(SCHEMA_VERSION);
        await s.close();
      } finally {
        other.cleanup();
        store = GatewayStore.open({ dataDir: tmp.dir });
      }
    });
  });

  describe('submit', () => {
    it('stores raw bytes + metadata and returns observations with stable ids', async () => {
      const msg = sampleMessage(7, { n: 3, sender: 'LAB^X', dedupeKey: 'k7' });
      const r = await store.submit(msg);
      expect(r.duplicate).toBe(false);
      expect(r.messageUid.length).toBeLessThanOrEqual(20);
      expect(r.messageUid).toMatch(/^[0-9A-HJKMNP-TV-Z]+$/);
      expect(r.observations.map((o) => o.id)).toEqual([1, 2, 3].map((s) => `${r.messageUid}-${s}`));
      expect(r.observations[0]).toMatchObject({ messageId: r.messageId, messageUid: r.messageUid, seq: 1, deviceId: 'analyzer-1', driver: 'hl7-mllp', sourceMessageId: 'MSG7', status: 'final', code: msg.drafts[0].code, subject: msg.drafts[0].subject });
      const d = store.getMessage(r.messageId)!;
      expect(d.raw.equals(msg.raw)).toBe(true);
      expect(d).toMatchObject({ id: r.messageId, uid: r.messageUid, deviceId: 'analyzer-1', messageType: 'ORU^R01', sourceMessageId: 'MSG7', status: 'committed', observationCount: 3, bytes: msg.raw.length, meta: { remote: '10.0.0.5' } });
      expect(d.observations).toEqual(r.observations);
      expect(d.deliveries).toEqual([]);
    });

    it('uses receivedAt from the message when given', async () => {
      const at = new Date('2023-05-06T07:08:09.010Z');
      const r = await store.submit(sampleMessage(1, { receivedAt: at }));
      expect(store.getMessage(r.messageId)!.receivedAt).toBe(at.toISOString());
      expect(r.observations[0].receivedAt).toBe(at.toISOString());
    });

    it('uids sort in submit order', async () => {
      const rs = await Promise.all(Array.from({ length: 50 }, (_, i) => store.submit(sampleMessage(i))));
      const uids = rs.map((r) => r.messageUid);
      expect([...uids].sort()).toEqual(uids);
      expect(new Set(uids).size).toBe(50);
    });

    it('a repeated (deviceId, dedupeKey) resolves duplicate with the original ids and writes nothing', async () => {
      const first = await store.submit(sampleMessage(1, { dedupeKey: 'MSH10-A' }));
      const again = await store.submit(sampleMessage(99, { dedupeKey: 'MSH10-A' }));
      const { controlIdReused, ...ids } = first;
      expect(controlIdReused).toBe(false); // new message, no controlKey
      expect(again).toEqual({ ...ids, duplicate: true }); // a duplicate says nothing about reuse
      expect(store.searchMessages({})).toHaveLength(1);
      // same key, other device: a different message
      const other = await store.submit(sampleMessage(1, { dedupeKey: 'MSH10-A', deviceId: 'analyzer-2' }));
      expect(other.duplicate).toBe(false);
      // no key: never de-duplicated
      await store.submit(sampleMessage(1));
      await store.submit(sampleMessage(1));
      expect(store.searchMessages({})).toHaveLength(4);
    });

    it('duplicates submitted in the same tick (same group transaction) are stored once', async () => {
      const rs = await Promise.all([1, 2, 3].map((i) => store.submit(sampleMessage(i, { dedupeKey: 'same' }))));
      expect(rs.map((r) => r.duplicate)).toEqual([false, true, true]);
      expect(new Set(rs.map((r) => r.messageId)).size).toBe(1);
      expect(store.searchMessages({})).toHaveLength(1);
    });

    it('rejects an invalid message with StoreError and does not affect the others', async () => {
      const bad = store.submit({ ...sampleMessage(1), raw: 'not a buffer' as unknown as Buffer });
      const good = store.submit(sampleMessage(2));
      await expect(bad).rejects.toBeInstanceOf(StoreError);
      await expect(good).resolves.toMatchObject({ duplicate: false });
    });
  });

  describe('group commit', () => {
    it('100 concurrent submits share far fewer than 100 transactions, and all are durable', async () => {
      const before = store.stats().transactions;
      const batchCount = () => registry.render().match(/^iomt_commit_batch_size_count (\d+)/m)?.[1];
      const latencyBefore = Number(registry.render().match(/^iomt_commit_latency_seconds_count (\d+)/m)?.[1] ?? 0);
      const rs = await Promise.all(Array.from({ length: 100 }, (_, i) => store.submit(sampleMessage(i))));
      const tx = store.stats().transactions - before;
      expect(tx).toBeGreaterThanOrEqual(1);
      expect(tx).toBeLessThanOrEqual(5);
      expect(new Set(rs.map((r) => r.messageId)).size).toBe(100);
      expect(store.searchMessages({ limit: 1000 })).toHaveLength(100);
      expect(batchCount()).toBeDefined();
      const latencyAfter = Number(registry.render().match(/^iomt_commit_latency_seconds_count (\d+)/m)?.[1] ?? 0);
      expect(latencyAfter - latencyBefore).toBe(100);
      // reopen: really on disk
      await store.close();
      store = GatewayStore.open({ dataDir: tmp.dir });
      expect(store.searchMessages({ limit: 1000 })).toHaveLength(100);
    });

    // posts = messages from the main thread to the writer worker: each becomes at least one transaction
    const countPosts = () => {
      const spy = vi.spyOn(Worker.prototype, 'postMessage');
      return { get n() { return spy.mock.calls.length; }, restore: () => spy.mockRestore() };
    };
    const nextTurn = () => new Promise((r) => setImmediate(r));

    it('commit delay (InboundMessage.commitDelayMs): submits arriving one by one within the delay reach the writer together and share one transaction', async () => {
      const before = store.stats().transactions;
      let posts = countPosts();
      const rs: Array<Promise<CommitResult>> = [];
      for (let i = 0; i < 5; i++) {
        rs.push(store.submit(sampleMessage(i, { commitDelayMs: 100 })));
        await nextTurn(); // each in its own turn of the event loop, as devices' publishes are
      }
      const done = await Promise.all(rs);
      expect(posts.n).toBe(1);
      posts.restore();
      expect(new Set(done.map((r) => r.messageId)).size).toBe(5);
      expect(store.stats().transactions - before).toBe(1);
      // without the delay, each turn posts its own (the test can fail)
      posts = countPosts();
      const rs2: Array<Promise<CommitResult>> = [];
      for (let i = 5; i < 10; i++) {
        rs2.push(store.submit(sampleMessage(i)));
        await nextTurn();
      }
      await Promise.all(rs2);
      expect(posts.n).toBe(5);
      posts.restore();
    });

    it('a submit without a delay is posted at once and takes the held ones with it (holding never slows it down)', async () => {
      const before = store.stats().transactions;
      const posts = countPosts();
      const held = store.submit(sampleMessage(1, { commitDelayMs: 100 }));
      await nextTurn();
      const now = store.submit(sampleMessage(2));
      await Promise.all([held, now]);
      expect(posts.n).toBe(1);
      posts.restore();
      // one transaction: had the held submit waited out its 100 ms it would have committed on its own
      expect(store.stats().transactions - before).toBe(1);
    });

    it('no hold while the writer is busy with an earlier post: the command joins its queue at once', async () => {
      const posts = countPosts();
      const first = store.submit(sampleMessage(1));
      await Promise.resolve();
      await Promise.resolve(); // the first post went out (a microtask); its answer cannot have come yet (a message event)
      expect(posts.n).toBe(1);
      const second = store.submit(sampleMessage(2, { commitDelayMs: 100 }));
      await Promise.resolve();
      await Promise.resolve();
      expect(posts.n).toBe(2); // not held for 100 ms
      await Promise.all([first, second]);
      posts.restore();
    });

    it('a held submit is committed, not lost, when the store closes before its delay ran out', async () => {
      const held = store.submit(sampleMessage(3, { commitDelayMs: 100 }));
      await store.close();
      await expect(held).resolves.toMatchObject({ duplicate: false });
      store = GatewayStore.open({ dataDir: tmp.dir });
      expect(store.searchMessages({ limit: 10 })).toHaveLength(1);
    });

    it('flow bookkeeping (markFinished, appendOutbox) waits up to deferredHoldMs and rides with the next submit', async () => {
      const r1 = await store.submit(sampleMessage(1));
      const before = store.stats().transactions;
      let posts = countPosts();
      const fin = store.markFinished([r1.messageId]);
      const out = store.appendOutbox('his', [{ key: 'k1', messageId: r1.messageId, payload: Buffer.from('x') }]);
      await nextTurn();
      const r2 = store.submit(sampleMessage(2));
      await Promise.all([fin, out, r2]);
      expect(posts.n).toBe(1);
      posts.restore();
      expect(store.stats().transactions - before).toBe(1);
      // deferredHoldMs 0: the bookkeeping is posted on its own at once
      await store.close();
      store = GatewayStore.open({ dataDir: tmp.dir, deferredHoldMs: 0 });
      const r3 = await store.submit(sampleMessage(3));
      posts = countPosts();
      const fin2 = store.markFinished([r3.messageId]);
      await nextTurn();
      await Promise.all([fin2, store.submit(sampleMessage(4))]);
      expect(posts.n).toBe(2);
      posts.restore();
    });

    it('honours maxBatch', async () => {
      await store.close();
      store = GatewayStore.open({ dataDir: tmp.dir, maxBatch: 10 });
      const before = store.stats().transactions;
      await Promise.all(Array.from({ length: 100 }, (_, i) => store.submit(sampleMessage(i))));
      expect(store.stats().transactions - before).toBe(10);
    });
  });

  describe('flow bookkeeping', () => {
    it('unfinished returns committed messages oldest first with the same observations; markFinished removes them', async () => {
      const rs: CommitResult[] = [];
      for (let i = 0; i < 4; i++) rs.push(await store.submit(sampleMessage(i, { n: 2 })));
      await store.submit(sampleMessage(9, { deviceId: 'other' }));
      await store.markFinished([rs[1].messageId], 'routed');
      await store.markFinished([rs[2].messageId], 'flow-error');
      const u = store.unfinished('analyzer-1');
      expect(u.map((x) => x.messageId)).toEqual([rs[0].messageId, rs[3].messageId]);
      expect(u[0]).toEqual({ messageId: rs[0].messageId, messageUid: rs[0].messageUid, observations: rs[0].observations });
      expect(store.unfinished('analyzer-1', 1)).toHaveLength(1);
      expect(store.getMessage(rs[1].messageId)!.status).toBe('routed');
      expect(store.getMessage(rs[2].messageId)!.status).toBe('flow-error');
      await store.markFinished([rs[0].messageId, rs[3].messageId]);
      expect(store.unfinished('analyzer-1')).toEqual([]);
    });
  });

  describe('quarantine', () => {
    it('keeps raw bytes, reason and code; lists newest first with paging', async () => {
      const ids: number[] = [];
      for (let i = 0; i < 5; i++) {
        ids.push(await store.quarantine({ deviceId: 'analyzer-1', driver: 'hl7-mllp', raw: Buffer.from(`garbage ${i}`), reason: 'no MSH', errorCode: 'GW_ERR_PARSE', meta: { i } }));
      }
      const page1 = store.listQuarantine(2);
      expect(page1.map((q) => q.id)).toEqual([ids[4], ids[3]]);
      expect(store.listQuarantine(10, page1[1].id).map((q) => q.id)).toEqual([ids[2], ids[1], ids[0]]);
      const q = store.getQuarantine(ids[0])!;
      expect(q).toMatchObject({ deviceId: 'analyzer-1', driver: 'hl7-mllp', reason: 'no MSH', errorCode: 'GW_ERR_PARSE', bytes: 9, meta: { i: 0 } });
      expect(q.raw.toString()).toBe('garbage 0');
      expect(store.getQuarantine(999_999)).toBeUndefined();
    });
  });

  describe('search', () => {
    it('filters by device, time, patient, specimen and status; pages newest first', async () => {
      const t0 = Date.parse('2024-03-01T00:00:00Z');
      const rs: CommitResult[] = [];
      for (let i = 0; i < 10; i++) {
        rs.push(
          await store.submit(
            sampleMessage(i, { deviceId: i % 2 ? 'odd' : 'even', receivedAt: new Date(t0 + i * 60_000), patientId: i < 3 ? 'P-1' : 'P-2', specimenId: `S-${i}` }),
          ),
        );
      }
      await store.markFinished([rs[0].messageId, rs[1].messageId]);
      const ids = (q: Parameters<GatewayStore['searchMessages']>[0]) => store.searchMessages(q).map((m) => m.id);
      const id = (i: number) => rs[i].messageId;
      expect(ids({})).toEqual([9, 8, 7, 6, 5, 4, 3, 2, 1, 0].map(id));
      expect(ids({ deviceId: 'odd' })).toEqual([9, 7, 5, 3, 1].map(id));
      expect(ids({ from: new Date(t0 + 2 * 60_000).toISOString(), to: new Date(t0 + 5 * 60_000).toISOString() })).toEqual([4, 3, 2].map(id));
      expect(ids({ patientId: 'P-1' })).toEqual([2, 1, 0].map(id));
      expect(ids({ specimenId: 'S-4' })).toEqual([id(4)]);
      expect(ids({ status: 'routed' })).toEqual([1, 0].map(id));
      expect(ids({ status: 'committed', deviceId: 'even', patientId: 'P-2' })).toEqual([8, 6, 4].map(id));
      expect(ids({ limit: 3 })).toEqual([9, 8, 7].map(id));
      expect(ids({ limit: 3, beforeId: id(7) })).toEqual([6, 5, 4].map(id));
      const s = store.searchMessages({ limit: 1 })[0];
      expect(s).toMatchObject({ uid: rs[9].messageUid, deviceId: 'odd', driver: 'hl7-mllp', observationCount: 2, status: 'committed' });
      expect(store.getMessage(123_456)).toBeUndefined();
    });

    it('getMessage shows the outbox deliveries of the message', async () => {
      const r = await store.submit(sampleMessage(1));
      await store.appendOutbox('his', [{ key: r.observations[0].id, messageId: r.messageId, payload: Buffer.from('p') }]);
      await store.appendOutbox('emr', [{ key: r.observations[0].id, messageId: r.messageId, payload: Buffer.from('p') }]);
      const [e] = store.lease('his', 1, 10_000);
      await store.settle('his', [{ id: e.id, outcome: 'delivered' }]);
      const d = store.getMessage(r.messageId)!.deliveries;
      expect(d).toHaveLength(2);
      expect(d[0]).toMatchObject({ destination: 'his', key: r.observations[0].id, state: 'delivered', attempts: 1 });
      expect(typeof d[0].deliveredAt).toBe('string');
      expect(d[1]).toMatchObject({ destination: 'emr', state: 'pending', attempts: 0 });
    });
  });

  describe('quota (disk full)', () => {
    async function fillUntilFull(s: GatewayStore, rawBytes: number): Promise<{ ok: number[]; errors: unknown[] }> {
      const ok: number[] = [];
      const errors: unknown[] = [];
      for (let round = 0; round < 200 && errors.length === 0; round++) {
        const rs = await Promise.allSettled(Array.from({ length: 5 }, (_, i) => s.submit(sampleMessage(round * 5 + i, { rawBytes }))));
        for (const r of rs) (r.status === 'fulfilled' ? ok.push(r.value.messageId) : errors.push(r.reason));
      }
      return { ok, errors };
    }

    it('writes beyond maxDbBytes reject with StoreFullError; raising the quota makes submits succeed again', async () => {
      await store.close();
      store = GatewayStore.open({ dataDir: tmp.dir, maxDbBytes: 512 * 1024 });
      const { ok, errors } = await fillUntilFull(store, 20_000);
      expect(errors.length).toBeGreaterThan(0);
      for (const e of errors) {
        expect(e).toBeInstanceOf(StoreFullError);
        expect((e as StoreFullError).code).toBe('GW_ERR_STORE_FULL');
      }
      // everything acknowledged is there
      for (const id of ok) expect(store.getMessage(id)).toBeDefined();
      await expect(store.submit(sampleMessage(1, { rawBytes: 20_000 }))).rejects.toBeInstanceOf(StoreFullError);
      // the store keeps working for small writes that fit and for reads
      expect(store.searchMessages({ limit: 1000 }).length).toBe(ok.length);
      store.setMaxDbBytes(4 * 1024 * 1024);
      const again = await store.submit(sampleMessage(2, { rawBytes: 20_000 }));
      expect(store.getMessage(again.messageId)).toBeDefined();
    });

    it('after retention frees space, submits succeed again under the same quota', async () => {
      await store.close();
      store = GatewayStore.open({ dataDir: tmp.dir, maxDbBytes: 512 * 1024 });
      const { ok, errors } = await fillUntilFull(store, 20_000);
      expect(errors.length).toBeGreaterThan(0);
      await store.markFinished(ok, 'routed');
      const rep = await store.applyRetention({ maxAgeDays: 0, maxBytes: 128 * 1024, settledMaxAgeDays: 0, quarantineMaxAgeDays: 0 });
      expect(rep.messagesDeleted).toBeGreaterThan(0);
      const r = await store.submit(sampleMessage(1, { rawBytes: 20_000 }));
      expect(r.duplicate).toBe(false);
    });

    it('an outbox append beyond the quota rejects with StoreFullError (no silent drop)', async () => {
      await store.close();
      store = GatewayStore.open({ dataDir: tmp.dir, maxDbBytes: 256 * 1024 });
      const errors: unknown[] = [];
      for (let i = 0; i < 100 && !errors.length; i++) {
        await store.appendOutbox('his', [{ key: `k${i}`, payload: Buffer.alloc(20_000, 1) }]).catch((e) => errors.push(e));
      }
      expect(errors[0]).toBeInstanceOf(StoreFullError);
    });
  });

  describe('close', () => {
    it('drains queued writes before closing, is safe twice, and rejects later writes with StoreError', async () => {
      const p = store.submit(sampleMessage(1));
      const c1 = store.close();
      const c2 = store.close();
      const r = await p;
      await Promise.all([c1, c2]);
      await store.close();
      await expect(store.submit(sampleMessage(2))).rejects.toBeInstanceOf(StoreError);
      await expect(store.appendOutbox('his', [{ key: 'k', payload: Buffer.from('x') }])).rejects.toBeInstanceOf(StoreError);
      expect(() => store.searchMessages({})).toThrow(StoreError);
      store = GatewayStore.open({ dataDir: tmp.dir });
      expect(store.getMessage(r.messageId)?.uid).toBe(r.messageUid);
    });
  });

  describe('metrics', () => {
    it('counts outbox outcomes per destination and exposes depth/oldest-age gauges', async () => {
      const dest = `metrics-${Date.now()}`;
      store.setDestinationPolicy(dest, { maxAttempts: 1 });
      await store.appendOutbox(dest, ['a', 'b', 'c'].map((key) => ({ key, payload: Buffer.from(key) })));
      const text = registry.render();
      expect(text).toContain(`iomt_outbox_depth{destination="${dest}"} 3`);
      expect(text).toMatch(new RegExp(`iomt_outbox_oldest_age_seconds\\{destination="${dest}"\\} [0-9.]+`));
      const [a, b] = store.lease(dest, 2, 10_000);
      await store.settle(dest, [
        { id: a.id, outcome: 'delivered' },
        { id: b.id, outcome: 'retry', error: 'AE' }, // maxAttempts 1: dead at once
      ]);
      expect(metrics.delivered.get({ destination: dest })).toBe(1);
      expect(metrics.failed.get({ destination: dest })).toBe(1);
      expect(metrics.deadLettered.get({ destination: dest })).toBe(1);
      expect(registry.render()).toContain(`iomt_outbox_depth{destination="${dest}"} 1`);
    });
  });
});
