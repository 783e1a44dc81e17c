import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { statSync } from 'node:fs';
import Database from 'better-sqlite3';
import { tempDir } from '../../../test/helpers/env';
import { GatewayStore } from './gateway-store';
import { sampleMessage } from './test/fixtures';

const DAY = 24 * 3600_000;
const OFF = { maxAgeDays: 0, maxBytes: 0, settledMaxAgeDays: 0, quarantineMaxAgeDays: 0 };

describe('retention', () => {
  let tmp: ReturnType<typeof tempDir>;
  let store: GatewayStore;
  beforeEach(() => {
    tmp = tempDir('iomt-retention-');
    store = GatewayStore.open({ dataDir: tmp.dir });
  });
  afterEach(async () => {
    await store.close();
    tmp.cleanup();
  });

  /** count rows through a second (read-only) connection: sees only committed data */
  function count(table: string): number {
    const db = new Database(store.file, { readonly: true });
    try {
      return (db.prepare(`SELECT count(*) AS n FROM ${table}`).get() as { n: number }).n;
    } finally {
      db.close();
    }
  }

  it('by age: deletes finished, settled messages with their observations; keeps unfinished and those with pending outbox rows', async () => {
    const now = Date.now();
    const old = new Date(now - 40 * DAY);
    const routed = await store.submit(sampleMessage(1, { receivedAt: old }));
    const flowError = await store.submit(sampleMessage(2, { receivedAt: old }));
    const unfinished = await store.submit(sampleMessage(3, { receivedAt: old }));
    const pendingOut = await store.submit(sampleMessage(4, { receivedAt: old }));
    const deliveredOut = await store.submit(sampleMessage(5, { receivedAt: old }));
    const recent = await store.submit(sampleMessage(6, { receivedAt: new Date(now - 1 * DAY) }));
    await store.markFinished([routed.messageId, pendingOut.messageId, deliveredOut.messageId, recent.messageId], 'routed');
    await store.markFinished([flowError.messageId], 'flow-error');
    await store.appendOutbox('his', [
      { key: 'p', messageId: pendingOut.messageId, payload: Buffer.from('p') },
      { key: 'd', messageId: deliveredOut.messageId, payload: Buffer.from('d') },
    ]);
    const leased = store.lease('his', 10, 60_000);
    await store.settle('his', [{ id: leased.find((e) => e.key === 'd')!.id, outcome: 'delivered' }]);
    store.release('his', leased.map((e) => e.id));
    expect(count('message_keys')).toBeGreaterThan(0);
    const keysBefore = count('message_keys');

    const r = await store.applyRetention({ ...OFF, maxAgeDays: 30 }, now);
    expect(r.messagesDeleted).toBe(3);
    const left = store.searchMessages({}).map((m) => m.id).sort((a, b) => a - b);
    expect(left).toEqual([unfinished.messageId, pendingOut.messageId, recent.messageId]);
    expect(count('message_keys')).toBeLessThan(keysBefore); // cascaded
    expect(store.getMessage(routed.messageId)).toBeUndefined();
    // the pending outbox row is untouched and still deliverable
    expect(store.lease('his', 10, 60_000).map((e) => e.key)).toEqual(['p']);
  });

  it('settled outbox rows by age (pending never), except those of messages the flow has not finished', async () => {
    const m = await store.submit(sampleMessage(1));
    await store.appendOutbox('his', ['a', 'b', 'c', 'e'].map((key) => ({ key, payload: Buffer.from(key) })));
    await store.appendOutbox('his', [{ key: 'of-unfinished', messageId: m.messageId, payload: Buffer.from('x') }]);
    const es = store.lease('his', 10, 60_000);
    const byKey = new Map(es.map((e) => [e.key, e.id]));
    await store.settle('his', [
      { id: byKey.get('a')!, outcome: 'delivered' },
      { id: byKey.get('b')!, outcome: 'dead', error: 'AR' },
      { id: byKey.get('of-unfinished')!, outcome: 'delivered' },
    ]);
    const r = await store.applyRetention({ ...OFF, settledMaxAgeDays: 7 }, Date.now() + 8 * DAY);
    expect(r.outboxDeleted).toBe(2);
    expect(count('outbox')).toBe(3); // c, e pending + the delivered row of the unfinished message
    expect(await store.appendOutbox('his', [{ key: 'of-unfinished', payload: Buffer.from('x') }])).toEqual({ inserted: 0, ignored: 1 });
  });

  it('quarantine by age', async () => {
    await store.quarantine({ deviceId: 'd', driver: 'astm', raw: Buffer.from('x'), reason: 'r', errorCode: 'GW_ERR_PARSE' });
    expect((await store.applyRetention({ ...OFF, quarantineMaxAgeDays: 90 }, Date.now() + 89 * DAY)).quarantineDeleted).toBe(0);
    expect((await store.applyRetention({ ...OFF, quarantineMaxAgeDays: 90 }, Date.now() + 91 * DAY)).quarantineDeleted).toBe(1);
    expect(store.listQuarantine()).toEqual([]);
  });

  it('by size: deletes the oldest finished messages and the file really shrinks on disk; unfinished data is kept', async () => {
    const ids: number[] = [];
    // ~12 MB of finished messages, then a few unfinished ones
    for (let round = 0; round < 30; round++) {
      const rs = await Promise.all(Array.from({ length: 20 }, (_, i) => store.submit(sampleMessage(round * 20 + i, { rawBytes: 20_000 }))));
      ids.push(...rs.map((r) => r.messageId));
    }
    await store.markFinished(ids, 'routed');
    const keep = await Promise.all(Array.from({ length: 5 }, (_, i) => store.submit(sampleMessage(1000 + i, { rawBytes: 20_000 }))));
    await store.appendOutbox('his', [{ key: 'pending', messageId: ids[0], payload: Buffer.alloc(1000) }]); // oldest finished, but not settled
    const before = statSync(store.file).size + safeSize(`${store.file}-wal`);
    expect(before).toBeGreaterThan(10 * 1024 * 1024);

    const r = await store.applyRetention({ ...OFF, maxBytes: 2 * 1024 * 1024 });
    const after = statSync(store.file).size + safeSize(`${store.file}-wal`);
    expect(r.fileBytesBefore).toBeGreaterThan(10 * 1024 * 1024);
    expect(r.pagesFreed).toBeGreaterThan(0);
    expect(after).toBeLessThan(2.5 * 1024 * 1024);
    expect(r.fileBytesAfter).toBe(after);
    expect(safeSize(`${store.file}-wal`)).toBe(0); // WAL truncated
    // newest finished kept, oldest deleted; unfinished and pending-outbox messages kept
    for (const k of keep) expect(store.getMessage(k.messageId)).toBeDefined();
    expect(store.getMessage(ids[0])).toBeDefined();
    expect(store.getMessage(ids[1])).toBeUndefined();
    expect(store.getMessage(ids[ids.length - 1])).toBeDefined();
    expect(store.unfinished('analyzer-1').length).toBe(5);
  });

  it('by size: never deletes unfinished messages even when still over the limit', async () => {
    await Promise.all(Array.from({ length: 50 }, (_, i) => store.submit(sampleMessage(i, { rawBytes: 20_000 }))));
    const r = await store.applyRetention({ ...OFF, maxBytes: 64 * 1024 });
    expect(r.messagesDeleted).toBe(0);
    expect(store.unfinished('analyzer-1', 1000)).toHaveLength(50);
  });
});

function safeSize(f: string): number {
  try {
    return statSync(f).size;
  } catch {
    return 0;
  }
}
