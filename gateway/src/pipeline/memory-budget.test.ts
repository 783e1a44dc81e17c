/**
 * MemoryBudget (issue 10 §7): reservations, waiters, the headroom lent to one holder at a time.
 * End to end with real sockets: drivers/hl7-mllp/mllp-budget.test.ts.
 */
import { describe, expect, it } from 'vitest';
import { DEFAULT_INFLIGHT_MAX_BYTES, MemoryBudget, inflightBudgetBytes } from './memory-budget';

const tick = () => new Promise((r) => setImmediate(r));

describe('MemoryBudget', () => {
  it('grants up to the regular part, then lends the headroom to one holder only', () => {
    const b = new MemoryBudget({ maxBytes: 100, headroomBytes: 40 });
    const [x, y, z] = [{}, {}, {}];
    expect(b.tryReserve(x, 30)).toBe(true);
    expect(b.tryReserve(y, 30)).toBe(true);
    expect(b.tryReserve(z, 1)).toBe(true); // 61 > 60: z becomes the lender
    expect(b.tryReserve(x, 10)).toBe(false); // headroom taken by z
    expect(b.tryReserve(z, 39)).toBe(true);
    expect(b.used).toBe(100);
    b.release(z, 40); // z done: headroom free again
    expect(b.heldBy(z)).toBe(0);
    expect(b.tryReserve(x, 10)).toBe(true);
    expect(b.used).toBe(70);
  });

  it('release never goes below what a holder holds; releaseAll frees everything and the wait', async () => {
    const b = new MemoryBudget({ maxBytes: 20, headroomBytes: 10 });
    const [x, y, z] = [{}, {}, {}];
    expect(b.tryReserve(x, 10)).toBe(true);
    expect(b.tryReserve(z, 5)).toBe(true); // z: the headroom
    b.release(y, 5);
    expect(b.used).toBe(15);
    let woke = 0;
    expect(b.tryReserve(y, 1)).toBe(false);
    b.wait(y, () => woke++);
    b.wait(y, () => woke++); // one wait per holder
    expect(b.waiting).toBe(1);
    b.releaseAll(x);
    expect(b.used).toBe(5);
    await tick();
    expect(woke).toBe(1);
    expect(b.waiting).toBe(0);
  });

  it('a holder that takes the headroom may finish its message beyond it (no deadlock); others wait', () => {
    const b = new MemoryBudget({ maxBytes: 10, headroomBytes: 4 });
    const [x, y] = [{}, {}];
    expect(b.tryReserve(x, 6)).toBe(true);
    expect(b.tryReserve(y, 6)).toBe(true); // lender
    expect(b.tryReserve(y, 6)).toBe(true); // overshoots by its excess rather than wait for ever
    expect(b.tryReserve(x, 1)).toBe(false);
    expect(b.peakUsed).toBe(18);
  });

  it('waiters are called in order after a release', async () => {
    const b = new MemoryBudget({ maxBytes: 10, headroomBytes: 0 });
    const h = [{}, {}, {}];
    b.tryReserve(h[0], 10);
    const calls: number[] = [];
    b.wait(h[1], () => calls.push(1));
    b.wait(h[2], () => calls.push(2));
    b.release(h[0], 1);
    await tick();
    expect(calls).toEqual([1, 2]);
  });

  it('IOMT_INFLIGHT_MAX_BYTES: default 32 MiB, a number of bytes ≥ 1 MiB, else an error naming it', () => {
    expect(inflightBudgetBytes({})).toBe(DEFAULT_INFLIGHT_MAX_BYTES);
    expect(DEFAULT_INFLIGHT_MAX_BYTES).toBe(32 * 1024 * 1024);
    expect(inflightBudgetBytes({ IOMT_INFLIGHT_MAX_BYTES: ' 16777216 ' })).toBe(16777216);
    for (const bad of ['64M', '-1', '1000', '1.5e7']) expect(() => inflightBudgetBytes({ IOMT_INFLIGHT_MAX_BYTES: bad })).toThrow(bad);
  });
});
