import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import Database from 'better-sqlite3';
import type { Worker } from 'node:worker_threads';
import { StoreError } from '../contracts/errors';
import { tempDir } from '../../../test/helpers/env';
import { GatewayStore } from './gateway-store';
import { sampleMessage } from './test/fixtures';

/** the writer worker behind a store (private: tests only) */
const workerOf = (s: GatewayStore) => (s as unknown as { writer: { worker: Worker } }).writer.worker;

describe('store writer worker', () => {
  let tmp: ReturnType<typeof tempDir>;
  let store: GatewayStore;
  beforeEach(() => {
    tmp = tempDir('iomt-writer-');
    store = GatewayStore.open({ dataDir: tmp.dir });
  });
  afterEach(async () => {
    await store.close();
    tmp.cleanup();
  });

  it('stores observations compressed (format byte + deflate) and reads back identical observations with the same ids', async () => {
    const msg = sampleMessage(3, { n: 5 });
    // differing keys between consecutive drafts
    delete (msg.drafts[1] as { interpretation?: unknown }).interpretation;
    (msg.drafts[2] as unknown as Record<string, unknown>).note = 'extra key';
    const r = await store.submit(msg);
    const d = store.getMessage(r.messageId)!;
    expect(d.observations).toEqual(r.observations);
    expect(d.observations.map((o) => o.id)).toEqual([1, 2, 3, 4, 5].map((k) => `${r.messageUid}-${k}`));
    expect('interpretation' in d.observations[1]).toBe(false);
    expect(store.unfinished('analyzer-1')[0].observations).toEqual(r.observations);
    const db = new Database(store.file, { readonly: true });
    try {
      const row = db.prepare('SELECT typeof(observations) AS t, observations AS o FROM message_bodies WHERE message_id = ?').get(r.messageId) as { t: string; o: Buffer };
      expect(row.t).toBe('blob');
      expect(row.o[0]).toBe(0x01);
      expect(row.o.length).toBeLessThan(JSON.stringify(msg.drafts).length);
    } finally {
      db.close();
    }
  });

  it('group commit: submits issued together share one transaction; the writer takes what queued up during a commit', async () => {
    await store.submit(sampleMessage(0)); // worker up
    const before = store.stats().transactions;
    await Promise.all(Array.from({ length: 64 }, (_, i) => store.submit(sampleMessage(i + 1))));
    expect(store.stats().transactions - before).toBe(1);

    // 8 stop-and-wait senders, each next message in its own macrotask (like sockets): still batched
    const t0 = store.stats().transactions;
    let n = 0;
    await Promise.all(
      Array.from({ length: 8 }, async (_, w) => {
        for (let k = 0; k < 25; k++) {
          await new Promise((r) => setImmediate(r));
          await store.submit(sampleMessage(1000 + w * 100 + k));
          n++;
        }
      }),
    );
    const tx = store.stats().transactions - t0;
    expect(n).toBe(200);
    expect(tx).toBeGreaterThan(0);
    expect(tx).toBeLessThanOrEqual(200);
    expect(store.searchMessages({ limit: 1000 })).toHaveLength(265);
  });

  it('a writer crash rejects pending and later writes with StoreError (no hang); reads still work; reopening recovers', async () => {
    const kept = await store.submit(sampleMessage(1));
    store.crashWriterForTest();
    const pending = Array.from({ length: 5 }, (_, i) => store.submit(sampleMessage(10 + i)));
    const outbox = store.appendOutbox('his', [{ key: 'k', payload: Buffer.from('x') }]);
    const settled = await Promise.allSettled([...pending, outbox]);
    for (const s of settled) {
      expect(s.status).toBe('rejected');
      expect((s as PromiseRejectedResult).reason).toBeInstanceOf(StoreError);
      expect((s as PromiseRejectedResult).reason.code).toBe('GW_ERR_STORE');
    }
    await expect(store.submit(sampleMessage(20))).rejects.toBeInstanceOf(StoreError);
    await expect(store.markFinished([kept.messageId])).rejects.toBeInstanceOf(StoreError);
    expect(store.getMessage(kept.messageId)?.uid).toBe(kept.messageUid); // reads: main-thread connection
    await store.close();
    await store.close();
    store = GatewayStore.open({ dataDir: tmp.dir });
    expect(store.getMessage(kept.messageId)?.uid).toBe(kept.messageUid);
    await expect(store.submit(sampleMessage(21))).resolves.toMatchObject({ duplicate: false });
  });

  it('a terminated writer (killed thread) rejects the writes in flight and later ones with StoreError', async () => {
    await store.submit(sampleMessage(1));
    const pending = Array.from({ length: 20 }, (_, i) => store.submit(sampleMessage(10 + i)));
    void workerOf(store).terminate();
    const settled = await Promise.allSettled(pending);
    for (const s of settled) {
      expect(s.status).toBe('rejected');
      expect((s as PromiseRejectedResult).reason).toBeInstanceOf(StoreError);
    }
    await expect(store.quarantine({ deviceId: 'd', driver: 'x', raw: Buffer.from('r'), reason: 'r', errorCode: 'GW_ERR_PARSE' })).rejects.toBeInstanceOf(StoreError);
  });

  it('open() returns a ready store: the schema exists before the writer started, writes issued at once commit', async () => {
    await store.close();
    store = GatewayStore.open({ dataDir: tmp.dir });
    expect(store.searchMessages({})).toEqual([]);
    const r = await store.submit(sampleMessage(1)); // issued before the worker finished starting
    expect(store.getMessage(r.messageId)).toBeDefined();
  });
});
