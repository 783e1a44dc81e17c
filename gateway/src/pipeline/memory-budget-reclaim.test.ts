import { describe, expect, it } from 'vitest';
import { RECLAIM_AFTER_BYTES, reclaimAfterWork, reclaimStats } from './memory-budget';

describe('reclaimAfterWork (issue 10 §7: a large message\'s garbage returned after its answer)', () => {
  it.each([
    { case: 'below the threshold', bytes: RECLAIM_AFTER_BYTES - 1, env: {}, runs: false },
    { case: 'turned off', bytes: 8 * 1024 * 1024, env: { IOMT_GC_AFTER_LARGE: '0' }, runs: false },
    { case: 'at the threshold', bytes: RECLAIM_AFTER_BYTES, env: {}, runs: true },
    { case: 'an 8 MB message', bytes: 8 * 1024 * 1024, env: { IOMT_GC_AFTER_LARGE: '1' }, runs: true },
  ])('$case: collection run = $runs', ({ bytes, env, runs }) => {
    const before = reclaimStats.runs;
    expect(reclaimAfterWork(bytes, env)).toBe(runs);
    expect(reclaimStats.runs - before).toBe(runs ? 1 : 0);
  });

  it('frees an unreachable 8 MB value at once (no --expose-gc needed)', async () => {
    const { getHeapStatistics } = await import('node:v8');
    reclaimAfterWork(RECLAIM_AFTER_BYTES, {});
    const base = getHeapStatistics().used_heap_size;
    let big: string[] | undefined = Array.from({ length: 8 }, (_, i) => `${i}`.repeat(1024 * 1024).split('').join(''));
    expect(big.join('').length).toBe(8 * 1024 * 1024);
    const grown = getHeapStatistics().used_heap_size;
    expect(grown - base).toBeGreaterThan(8 * 1024 * 1024);
    big = undefined;
    expect(reclaimAfterWork(8 * 1024 * 1024, {})).toBe(true);
    expect(grown - getHeapStatistics().used_heap_size).toBeGreaterThan(7 * 1024 * 1024); // the 8 MiB, less what the test itself allocated since
    expect(reclaimStats.maxMs).toBeGreaterThan(0);
  });
});
