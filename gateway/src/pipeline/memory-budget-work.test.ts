/**
 * MemoryBudget work charges (issue 10 §7): a large message's processing is charged before it starts;
 * work never waits for readers (the first always runs), further work runs when it fits, readers get
 * what work leaves.
 */
import { describe, expect, it } from 'vitest';
import { MemoryBudget } from './memory-budget';

const MiB = 1024 * 1024;
const tick = () => new Promise((r) => setImmediate(r));

describe('MemoryBudget.acquireWork', () => {
  it('the first work is granted even when readers fill the budget (no deadlock); the next waits until it fits, in order', async () => {
    const b = new MemoryBudget({ maxBytes: 64 * MiB, headroomBytes: 8 * MiB });
    const conn = {};
    expect(b.tryReserve(conn, 56 * MiB)).toBe(true); // the regular part is full
    const r1 = await b.acquireWork(48 * MiB); // granted: no other work runs
    expect(b.work).toBe(48 * MiB);
    const order: string[] = [];
    const p2 = b.acquireWork(8 * MiB).then((r) => (order.push('w2'), r));
    const p3 = b.acquireWork(1 * MiB).then((r) => (order.push('w3'), r));
    await tick();
    expect(order).toEqual([]);
    expect(b.workWaiting).toBe(2);
    // readers get nothing but the headroom (lent to one holder) while work is charged
    const h1 = {};
    expect(b.tryReserve(h1, 1)).toBe(true);
    expect(b.tryReserve({}, 1)).toBe(false);
    b.release(h1, 1);
    r1();
    r1(); // twice: no effect
    const r2 = await p2;
    // 56 held + 8 work = 64: w3 (1 MiB) does not fit beside them, and waits behind w2 (FIFO)
    await tick();
    expect(order).toEqual(['w2']);
    b.release(conn, 56 * MiB);
    const r3 = await p3;
    expect(order).toEqual(['w2', 'w3']);
    expect(b.work).toBe(9 * MiB);
    r2();
    r3();
    expect(b.work).toBe(0);
    expect(b.peakWithWork).toBe(104 * MiB + 1); // 56 held + 48 of the one work allowed beyond (+1 headroom byte)
    expect(b.peakUsed).toBe(56 * MiB + 1);
  });

  it('small work runs side by side while it fits', async () => {
    const b = new MemoryBudget({ maxBytes: 64 * MiB });
    const rs = await Promise.all(Array.from({ length: 8 }, () => b.acquireWork(6 * MiB)));
    expect(b.work).toBe(48 * MiB);
    let ninth = false;
    void b.acquireWork(24 * MiB).then(() => (ninth = true));
    await tick();
    expect(ninth).toBe(false);
    rs[0]();
    await tick();
    expect(ninth).toBe(false); // 42 + 24 > 64
    rs[1]();
    await tick();
    expect(ninth).toBe(true); // 36 + 24 ≤ 64
  });
});
