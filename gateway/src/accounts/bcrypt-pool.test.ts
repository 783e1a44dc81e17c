import { afterAll, describe, expect, it } from 'vitest';
import bcrypt from 'bcryptjs';
import { bcryptCompare, bcryptHash, closeBcryptPool } from './bcrypt-pool';

/** Largest gap between 1 ms timer ticks while `work` runs: how long the event loop was held. */
async function maxLoopGap(work: () => Promise<unknown>): Promise<number> {
  let max = 0;
  let last = performance.now();
  const t = setInterval(() => {
    const n = performance.now();
    max = Math.max(max, n - last);
    last = n;
  }, 1);
  try {
    await work();
  } finally {
    clearInterval(t);
  }
  // the last stretch counts too: a loop held for the whole run never fires the timer at all
  return Math.max(max, performance.now() - last);
}

describe('bcrypt worker pool (issue 10 §5: bcrypt off the main thread)', () => {
  const hash = bcrypt.hashSync('right password', 10);
  afterAll(() => closeBcryptPool());

  it('gives the same answers as bcryptjs', async () => {
    expect(await bcryptCompare('right password', hash)).toBe(true);
    expect(await bcryptCompare('wrong password', hash)).toBe(false);
    expect(await bcryptCompare('x', 'not a hash')).toBe(false);
    const h = await bcryptHash('new password', 4);
    expect(h).toMatch(/^\$2[ab]\$04\$.{53}$/);
    expect(bcrypt.compareSync('new password', h)).toBe(true);
  });

  it('five parallel wrong passwords keep the event loop free (bcryptjs async holds it for hundreds of ms)', async () => {
    await bcryptCompare('warm up', hash);
    const gap = await maxLoopGap(() => Promise.all([1, 2, 3, 4, 5].map((i) => bcryptCompare(`wrong ${i}`, hash))));
    expect(gap).toBeLessThan(40);
    // the same load on bcryptjs's own async API holds the loop much longer: the test can fail
    const blocking = await maxLoopGap(() => Promise.all([1, 2, 3, 4, 5].map((i) => bcrypt.compare(`wrong ${i}`, hash))));
    expect(blocking).toBeGreaterThan(gap);
  });
});
