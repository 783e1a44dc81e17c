import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { Database as Db } from 'better-sqlite3';
import { StoreError, StoreFullError } from '../contracts/errors';
import { tempDir } from '../../../test/helpers/env';
import { WriteQueue } from './write-queue';

describe('WriteQueue (group commit)', () => {
  let tmp: ReturnType<typeof tempDir>;
  let db: Db;
  let commits: number;

  beforeEach(() => {
    tmp = tempDir('iomt-wq-');
    db = new Database(join(tmp.dir, 'q.db'));
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.pragma('foreign_keys = ON');
    db.exec(`
      CREATE TABLE parent (id INTEGER PRIMARY KEY, v TEXT NOT NULL UNIQUE);
      CREATE TABLE child (id INTEGER PRIMARY KEY, parent_id INTEGER NOT NULL REFERENCES parent (id) DEFERRABLE INITIALLY DEFERRED);
    `);
    commits = 0;
  });
  afterEach(() => {
    if (db.open) db.close();
    tmp.cleanup();
  });

  const insert = (db: Db, v: string) => () => Number(db.prepare('INSERT INTO parent (v) VALUES (?)').run(v).lastInsertRowid);
  const count = () => (db.prepare('SELECT count(*) AS n FROM parent').get() as { n: number }).n;

  it('another connection of the process writing between a batch\'s first read and its first write cannot fail the batch (BEGIN IMMEDIATE)', async () => {
    // the order cache and the no-destination flag write on their own connection to gateway.db; under a
    // deferred BEGIN, such a commit between the batch's dedupe read and its insert gave SQLITE_BUSY at once
    // (no busy handler for a read-to-write upgrade on a stale WAL snapshot): the device got AE
    const other = new Database(join(tmp.dir, 'q.db'));
    other.pragma('busy_timeout = 0');
    const q = new WriteQueue(db, 512);
    let otherWrote = false;
    const id = await q.enqueue(() => {
      db.prepare('SELECT count(*) FROM parent').get(); // the batch reads first, as submit's dedupe lookup does
      try {
        other.prepare('INSERT INTO parent (v) VALUES (?)').run('other');
        otherWrote = true;
      } catch {
        /* the batch holds the write lock: the other connection waits (here: busy_timeout 0, so it gives up) */
      }
      return insert(db, 'mine')();
    });
    expect(id).toBeGreaterThan(0);
    expect(otherWrote).toBe(false);
    other.close();
  });

  it('deferred durability: a batch of only non-durable ops commits with synchronous=NORMAL, any durable op makes the batch FULL', async () => {
    const q = new WriteQueue(db, 512);
    const syncInside = (v: string) => () => {
      insert(db, v)();
      return Number(db.pragma('synchronous', { simple: true })); // the mode this transaction commits with
    };
    const deferredOnly = await Promise.all([q.enqueue(syncInside('a'), { durable: false }), q.enqueue(syncInside('b'), { durable: false })]);
    expect(deferredOnly).toEqual([1, 1]); // NORMAL: WAL frames written, no fsync
    expect(q.stats()).toMatchObject({ transactions: 1, deferredTransactions: 1 });
    const mixed = await Promise.all([q.enqueue(syncInside('c'), { durable: false }), q.enqueue(syncInside('d'))]);
    expect(mixed).toEqual([2, 2]); // FULL: the durable op's fsync also covers the deferred one (and every earlier frame)
    const durable = await q.enqueue(syncInside('e'));
    expect(durable).toBe(2);
    expect(q.stats()).toMatchObject({ transactions: 3, deferredTransactions: 1 });
    expect(count()).toBe(5);
  });

  it('commits ops enqueued in the same tick as one transaction and resolves after commit', async () => {
    const q = new WriteQueue(db, 512, { onBatch: () => commits++ });
    const ps = Array.from({ length: 100 }, (_, i) => q.enqueue(insert(db, `v${i}`)));
    expect(count()).toBe(0); // nothing written before the flush
    const ids = await Promise.all(ps);
    expect(new Set(ids).size).toBe(100);
    expect(count()).toBe(100);
    expect(q.stats().transactions).toBe(1);
    expect(q.stats().slowBatches).toBe(0); // no op failed: no savepoints were needed
    expect(commits).toBe(1);
    expect(db.inTransaction).toBe(false);
  });

  it('splits the queue into transactions of at most maxBatch ops', async () => {
    const sizes: number[] = [];
    const q = new WriteQueue(db, 16, { onBatch: (n) => sizes.push(n) });
    await Promise.all(Array.from({ length: 40 }, (_, i) => q.enqueue(insert(db, `v${i}`))));
    expect(sizes).toEqual([16, 16, 8]);
    expect(count()).toBe(40);
  });

  it('a failing op (constraint) rejects only its own promise; its neighbours commit', async () => {
    const q = new WriteQueue(db);
    const a = q.enqueue(insert(db, 'a'));
    const dup = q.enqueue(() => {
      db.prepare('INSERT INTO parent (v) VALUES (?)').run('b');
      return insert(db, 'a')(); // unique violation: the whole op (incl. 'b') rolls back to its savepoint
    });
    const c = q.enqueue(insert(db, 'c'));
    const r = await Promise.allSettled([a, dup, c]);
    expect(r.map((x) => x.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    const err = (r[1] as PromiseRejectedResult).reason;
    expect(err).toBeInstanceOf(StoreError);
    expect(err.cause?.code).toBe('SQLITE_CONSTRAINT_UNIQUE');
    expect(db.prepare('SELECT v FROM parent ORDER BY v').pluck().all()).toEqual(['a', 'c']);
    expect(q.stats().transactions).toBe(1);
    expect(q.stats().slowBatches).toBe(1); // the savepoint-free attempt was rolled back, then one savepoint per op
  });

  it('a failing COMMIT rejects every op of the batch with StoreError, and the next batch works', async () => {
    const q = new WriteQueue(db);
    const ok = q.enqueue(insert(db, 'x'));
    // a deferred foreign key is only checked at COMMIT: the commit itself fails
    const orphan = q.enqueue(() => db.prepare('INSERT INTO child (parent_id) VALUES (999)').run().changes);
    const r = await Promise.allSettled([ok, orphan]);
    expect(r.every((x) => x.status === 'rejected')).toBe(true);
    for (const x of r) expect((x as PromiseRejectedResult).reason).toBeInstanceOf(StoreError);
    expect(count()).toBe(0);
    expect(db.inTransaction).toBe(false);
    expect(q.stats().failedTransactions).toBe(1);

    await expect(q.enqueue(insert(db, 'y'))).resolves.toBeGreaterThan(0);
    expect(count()).toBe(1);
  });

  it('SQLITE_FULL (max_page_count) rejects with StoreFullError', async () => {
    const q = new WriteQueue(db);
    const pages = Number(db.pragma('page_count', { simple: true }));
    db.pragma(`max_page_count = ${pages}`);
    const big = 'x'.repeat(100_000);
    const r = await Promise.allSettled([q.enqueue(insert(db, big))]);
    expect(r[0].status).toBe('rejected');
    expect((r[0] as PromiseRejectedResult).reason).toBeInstanceOf(StoreFullError);
    expect((r[0] as PromiseRejectedResult).reason.code).toBe('GW_ERR_STORE_FULL');
    db.pragma('max_page_count = 100000');
    await expect(q.enqueue(insert(db, big))).resolves.toBeGreaterThan(0);
  });

  it('an op hitting SQLITE_FULL (SQLite rolls the whole transaction back) rejects alone; the others commit', async () => {
    const q = new WriteQueue(db);
    await q.enqueue(insert(db, 'seed'));
    db.pragma(`max_page_count = ${Number(db.pragma('page_count', { simple: true })) + 1}`);
    const r = await Promise.allSettled([q.enqueue(insert(db, 's1')), q.enqueue(insert(db, 'x'.repeat(200_000))), q.enqueue(insert(db, 's2'))]);
    expect(r.map((x) => x.status)).toEqual(['fulfilled', 'rejected', 'fulfilled']);
    expect((r[1] as PromiseRejectedResult).reason).toBeInstanceOf(StoreFullError);
    expect(db.prepare('SELECT v FROM parent ORDER BY id').pluck().all()).toEqual(['seed', 's1', 's2']);
  });

  it('closeAndDrain commits what is queued, then rejects new writes', async () => {
    const q = new WriteQueue(db);
    const p = q.enqueue(insert(db, 'late'));
    q.closeAndDrain();
    await expect(p).resolves.toBeGreaterThan(0);
    expect(count()).toBe(1);
    await expect(q.enqueue(insert(db, 'after'))).rejects.toBeInstanceOf(StoreError);
  });
});
