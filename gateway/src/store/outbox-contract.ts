import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { GatewayStoreApi } from '../contracts/store';

/**
 * The outbox contract (architecture §3 step 5, conventions §6.10): one suite every Outbox
 * implementation passes. Time is controlled by faking only `Date` (timers stay real, so group
 * commit still flushes on setImmediate).
 */
export function outboxContract(name: string, make: () => Promise<{ store: GatewayStoreApi; cleanup(): Promise<void> }>): void {
  describe(`outbox contract: ${name}`, () => {
    let store: GatewayStoreApi;
    let cleanup: () => Promise<void>;
    let now: number;
    const T0 = Date.parse('2025-01-01T00:00:00Z');
    const advance = (ms: number) => {
      now += ms;
      vi.setSystemTime(now);
    };
    const p = (s: string) => Buffer.from(s);
    const append = (dest: string, keys: string[]) => store.appendOutbox(dest, keys.map((key) => ({ key, payload: p(`payload ${key}`), contentType: 'application/hl7-v2' })));
    const keys = (es: Array<{ key: string }>) => es.map((e) => e.key);

    beforeEach(async () => {
      vi.useFakeTimers({ toFake: ['Date'] });
      now = T0;
      vi.setSystemTime(now);
      ({ store, cleanup } = await make());
    });
    afterEach(async () => {
      await cleanup();
      vi.useRealTimers();
    });

    describe('append (idempotent by destination + key)', () => {
      it('inserts new keys and ignores keys already present', async () => {
        expect(await append('his', ['a', 'b'])).toEqual({ inserted: 2, ignored: 0 });
        expect(await append('his', ['b', 'c'])).toEqual({ inserted: 1, ignored: 1 });
        expect(await append('emr', ['a'])).toEqual({ inserted: 1, ignored: 0 }); // other destination, own queue
        expect(keys(store.lease('his', 10, 60_000))).toEqual(['a', 'b', 'c']);
      });

      it('ignores a key that was already delivered or dead-lettered', async () => {
        await append('his', ['a', 'b']);
        const [a, b] = store.lease('his', 2, 60_000);
        await store.settle('his', [
          { id: a.id, outcome: 'delivered' },
          { id: b.id, outcome: 'dead', error: 'AR' },
        ]);
        expect(await append('his', ['a', 'b'])).toEqual({ inserted: 0, ignored: 2 });
        expect(store.lease('his', 10, 60_000)).toEqual([]);
      });

      it('keeps payload, content type, message id and creation time exactly', async () => {
        const payload = Buffer.from([0x0b, 0x4d, 0x53, 0x48, 0x00, 0xff, 0x1c, 0x0d]);
        await store.appendOutbox('his', [{ key: 'k', messageId: 42, payload, contentType: 'application/hl7-v2' }]);
        const [e] = store.lease('his', 1, 60_000);
        expect(e).toMatchObject({ destination: 'his', key: 'k', messageId: 42, contentType: 'application/hl7-v2', attempts: 0, createdAt: T0 });
        expect(e.payload.equals(payload)).toBe(true);
      });
    });

    describe('lease', () => {
      it('returns due pending entries oldest first, up to the limit, and not those in flight', async () => {
        await append('his', ['1', '2', '3', '4', '5']);
        expect(keys(store.lease('his', 2, 60_000))).toEqual(['1', '2']);
        expect(keys(store.lease('his', 2, 60_000))).toEqual(['3', '4']);
        expect(keys(store.lease('his', 10, 60_000))).toEqual(['5']);
        expect(store.lease('his', 10, 60_000)).toEqual([]);
        expect(store.lease('nobody', 10, 60_000)).toEqual([]);
      });

      it('a lease expires after leaseMs: the entry can be leased again', async () => {
        await append('his', ['a']);
        expect(keys(store.lease('his', 1, 1000))).toEqual(['a']);
        advance(999);
        expect(store.lease('his', 1, 1000)).toEqual([]);
        advance(1);
        const again = store.lease('his', 1, 1000);
        expect(keys(again)).toEqual(['a']);
        expect(again[0].attempts).toBe(0); // an expired lease is not an attempt
      });

      it('release gives leases back without using up an attempt', async () => {
        await append('his', ['a', 'b']);
        const es = store.lease('his', 2, 60_000);
        store.release('his', es.map((e) => e.id));
        const again = store.lease('his', 2, 60_000);
        expect(keys(again)).toEqual(['a', 'b']);
        expect(again.map((e) => e.attempts)).toEqual([0, 0]);
      });

      it("an 'unavailable' outcome is a release, not an attempt", async () => {
        await append('his', ['a']);
        const [e] = store.lease('his', 1, 60_000);
        await store.settle('his', [{ id: e.id, outcome: 'unavailable', error: 'ECONNREFUSED' }]);
        const [again] = store.lease('his', 1, 60_000);
        expect(again).toMatchObject({ key: 'a', attempts: 0 });
        expect(store.destinationStats('his')[0]).toMatchObject({ pending: 1, dead: 0 });
      });
    });

    describe('settle', () => {
      it('delivered entries are never leased again', async () => {
        await append('his', ['a', 'b']);
        const [a] = store.lease('his', 1, 60_000);
        await store.settle('his', [{ id: a.id, outcome: 'delivered' }]);
        advance(10 * 24 * 3600_000);
        expect(keys(store.lease('his', 10, 60_000))).toEqual(['b']);
        expect(store.destinationStats('his')[0]).toMatchObject({ delivered: 1, pending: 1 });
      });

      it('retry: attempts + 1 and not due before the backoff (base * 2^(attempts-1), capped, with jitter)', async () => {
        store.setDestinationPolicy('his', { backoffBaseMs: 1000, backoffMaxMs: 5000, jitter: 0, maxAttempts: 100 });
        await append('his', ['a']);
        const delays: number[] = [];
        for (let attempt = 1; attempt <= 5; attempt++) {
          const [e] = store.lease('his', 1, 60_000);
          expect(e.attempts).toBe(attempt - 1);
          await store.settle('his', [{ id: e.id, outcome: 'retry', error: 'timeout' }]);
          const due = store.nextDueInMs('his')!;
          delays.push(due);
          expect(store.lease('his', 1, 60_000)).toEqual([]); // not due yet
          advance(due);
        }
        expect(delays).toEqual([1000, 2000, 4000, 5000, 5000]);
      });

      it("retry with the destination's retryAfterMs (HTTP Retry-After): not due before it, the backoff still a floor", async () => {
        store.setDestinationPolicy('his', { backoffBaseMs: 1000, backoffMaxMs: 5000, jitter: 0, maxAttempts: 100 });
        await append('his', ['a']);
        const [e] = store.lease('his', 1, 60_000);
        await store.settle('his', [{ id: e.id, outcome: 'retry', error: '429', retryAfterMs: 30_000 }]);
        expect(store.nextDueInMs('his')).toBe(30_000);
        advance(29_999);
        expect(store.lease('his', 1, 60_000)).toEqual([]);
        advance(1);
        const [again] = store.lease('his', 1, 60_000);
        await store.settle('his', [{ id: again.id, outcome: 'retry', error: '503', retryAfterMs: 10 }]);
        expect(store.nextDueInMs('his')).toBe(2000); // the policy's backoff when Retry-After is shorter
      });

      it('jitter keeps the delay within ± jitter of the nominal backoff', async () => {
        store.setDestinationPolicy('his', { backoffBaseMs: 10_000, jitter: 0.2 });
        await append('his', Array.from({ length: 20 }, (_, i) => `k${i}`));
        const es = store.lease('his', 20, 60_000);
        await store.settle('his', es.map((e) => ({ id: e.id, outcome: 'retry' as const, error: 'x' })));
        const due = store.nextDueInMs('his')!;
        expect(due).toBeGreaterThanOrEqual(8000);
        expect(due).toBeLessThanOrEqual(12_000);
        advance(7999);
        expect(store.lease('his', 20, 60_000)).toEqual([]);
        advance(4001);
        expect(store.lease('his', 20, 60_000)).toHaveLength(20);
      });

      it('dead after maxAttempts failed attempts, with the last error; a dead entry is not leased', async () => {
        store.setDestinationPolicy('his', { maxAttempts: 3, backoffBaseMs: 10, jitter: 0 });
        await append('his', ['a']);
        for (let i = 0; i < 3; i++) {
          const [e] = store.lease('his', 1, 60_000);
          expect(e).toBeDefined();
          await store.settle('his', [{ id: e.id, outcome: 'retry', error: `fail ${i}` }]);
          advance(1000);
        }
        expect(store.lease('his', 1, 60_000)).toEqual([]);
        expect(store.nextDueInMs('his')).toBeNull();
        const [d] = store.deadLetters('his');
        expect(d).toMatchObject({ destination: 'his', key: 'a', attempts: 3, lastError: 'fail 2' });
        expect(store.destinationStats('his')[0]).toMatchObject({ pending: 0, dead: 1 });
      });

      it('dead when older than maxAgeMs, even on a retry outcome', async () => {
        store.setDestinationPolicy('his', { maxAgeMs: 60_000, maxAttempts: 100 });
        await append('his', ['a']);
        advance(60_001);
        const [e] = store.lease('his', 1, 60_000);
        await store.settle('his', [{ id: e.id, outcome: 'retry', error: 'late' }]);
        expect(store.deadLetters('his').map((d) => d.key)).toEqual(['a']);
      });

      it("outcome 'dead' dead-letters at once", async () => {
        await append('his', ['a']);
        const [e] = store.lease('his', 1, 60_000);
        await store.settle('his', [{ id: e.id, outcome: 'dead', error: 'AR: unknown patient' }]);
        expect(store.deadLetters()).toEqual([expect.objectContaining({ key: 'a', attempts: 1, lastError: 'AR: unknown patient', deadAt: new Date(T0).toISOString() })]);
      });

      it('a failing entry does not block the ones behind it (no strict order)', async () => {
        await append('his', ['bad', 'good1', 'good2']);
        const [bad] = store.lease('his', 1, 60_000);
        await store.settle('his', [{ id: bad.id, outcome: 'retry', error: 'x' }]);
        expect(keys(store.lease('his', 10, 60_000))).toEqual(['good1', 'good2']);
      });

      it('settling an entry twice is a no-op', async () => {
        await append('his', ['a']);
        const [e] = store.lease('his', 1, 60_000);
        await store.settle('his', [{ id: e.id, outcome: 'delivered' }]);
        await store.settle('his', [{ id: e.id, outcome: 'retry', error: 'late answer' }]);
        expect(store.destinationStats('his')[0]).toMatchObject({ delivered: 1, pending: 0, dead: 0 });
      });
    });

    describe('strict order (head-of-line)', () => {
      it('only the oldest pending entry may be leased, and only when due', async () => {
        store.setDestinationPolicy('his', { strictOrder: true, backoffBaseMs: 1000, jitter: 0 });
        await append('his', ['1', '2', '3']);
        const first = store.lease('his', 10, 60_000);
        expect(keys(first)).toEqual(['1']);
        expect(store.lease('his', 10, 60_000)).toEqual([]); // head in flight blocks
        await store.settle('his', [{ id: first[0].id, outcome: 'retry', error: 'x' }]);
        expect(store.lease('his', 10, 60_000)).toEqual([]); // head in backoff blocks
        expect(store.nextDueInMs('his')).toBe(1000);
        advance(1000);
        const again = store.lease('his', 10, 60_000);
        expect(keys(again)).toEqual(['1']);
        await store.settle('his', [{ id: again[0].id, outcome: 'delivered' }]);
        expect(keys(store.lease('his', 10, 60_000))).toEqual(['2']);
      });

      it('an entry that goes dead stops blocking', async () => {
        store.setDestinationPolicy('his', { strictOrder: true });
        await append('his', ['1', '2']);
        const [h] = store.lease('his', 10, 60_000);
        await store.settle('his', [{ id: h.id, outcome: 'dead', error: 'AR' }]);
        expect(keys(store.lease('his', 10, 60_000))).toEqual(['2']);
      });
    });

    describe('nextDueInMs', () => {
      it('null when nothing pending, 0 when due, time until the lease ends for entries in flight', async () => {
        expect(store.nextDueInMs('his')).toBeNull();
        await append('his', ['a']);
        expect(store.nextDueInMs('his')).toBe(0);
        store.lease('his', 1, 30_000);
        expect(store.nextDueInMs('his')).toBe(30_000);
      });
    });

    describe('dead letters and replay', () => {
      async function makeDead(dest: string, ks: string[]) {
        await append(dest, ks);
        const es = store.lease(dest, ks.length, 60_000);
        await store.settle(dest, es.map((e) => ({ id: e.id, outcome: 'dead' as const, error: `rejected ${e.key}` })));
      }

      it('lists dead letters newest first with paging and a destination filter', async () => {
        await makeDead('his', ['a', 'b', 'c']);
        await makeDead('emr', ['x']);
        expect(store.deadLetters().map((d) => d.key)).toEqual(['x', 'c', 'b', 'a']);
        const page = store.deadLetters('his', 2);
        expect(page.map((d) => d.key)).toEqual(['c', 'b']);
        expect(store.deadLetters('his', 2, page[1].id).map((d) => d.key)).toEqual(['a']);
      });

      it('replay by id puts an entry back to pending with attempts reset, due now', async () => {
        await makeDead('his', ['a', 'b']);
        const [b] = store.deadLetters('his');
        expect(await store.replay({ ids: [b.id] })).toBe(1);
        const [e] = store.lease('his', 10, 60_000);
        expect(e).toMatchObject({ key: 'b', attempts: 0 });
        expect(store.deadLetters('his').map((d) => d.key)).toEqual(['a']);
        expect(await store.replay({ ids: [e.id] })).toBe(0); // not dead: nothing to replay
      });

      it('replay by destination (or everything) only touches dead entries', async () => {
        await makeDead('his', ['a', 'b']);
        await makeDead('emr', ['x']);
        await append('his', ['pending']);
        expect(await store.replay({ destination: 'his' })).toBe(2);
        expect(store.destinationStats('emr')[0].dead).toBe(1);
        expect(keys(store.lease('his', 10, 60_000)).sort()).toEqual(['a', 'b', 'pending']);
        expect(await store.replay({})).toBe(1);
        expect(store.deadLetters()).toEqual([]);
      });
    });

    describe('destinationStats', () => {
      it('reports pending, in flight, dead, delivered and the age of the oldest pending entry', async () => {
        await append('his', ['a', 'b', 'c', 'd']);
        advance(5000);
        const [a, b, c] = store.lease('his', 3, 60_000);
        await store.settle('his', [
          { id: a.id, outcome: 'delivered' },
          { id: b.id, outcome: 'dead', error: 'x' },
        ]);
        const [s] = store.destinationStats('his');
        expect(s).toEqual({ destination: 'his', pending: 2, inFlight: 1, dead: 1, delivered: 1, oldestPendingAgeMs: 5000 });
        void c;
        await append('emr', ['z']);
        expect(store.destinationStats().map((x) => x.destination).sort()).toEqual(['emr', 'his']);
        expect(store.destinationStats('emr')[0]).toMatchObject({ pending: 1, inFlight: 0, oldestPendingAgeMs: 0 });
      });
    });
  });
}
