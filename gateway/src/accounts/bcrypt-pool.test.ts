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
    // the control, in the same run under the same machine load: bcryptjs's own async API computes on this
    // thread in slices of up to 100 ms (wall clock), five at once: the loop is held ~0.5 s
    const blocking = await maxLoopGap(() => Promise.all([1, 2, 3, 4, 5].map((i) => bcrypt.compare(`wrong ${i}`, hash))));
    expect(blocking, 'the control holds the loop: the probe sees a freeze').toBeGreaterThan(90);
    // the pool only passes messages: its largest gap is scheduling noise (ms on a quiet box, a few tens of ms when
    // a 2-core CI machine runs at load 8), far below the control's. Any main-thread bcrypt (sync or sliced) holds
    // the loop for at least one whole hash or slice, i.e. about as long as the control: the bound fails on it.
    // An absolute bound of 40 ms failed on a loaded CI box; the requirement's scale (issue 10: 5 logins held
    // it 150-600 ms) is kept by the relative one.
    expect(gap, `pool ${gap.toFixed(1)} ms vs bcryptjs async ${blocking.toFixed(1)} ms`).toBeLessThan(blocking / 4);
  });
});
