import { describe, expect, it } from 'vitest';
import { backoffMs, DEFAULT_DESTINATION_POLICY, isExhausted, LeaseTable, resolvePolicy } from './outbox';

describe('outbox policy helpers', () => {
  it('defaults: 10 attempts, 7 days, 1 s .. 5 min, 20 % jitter, no strict order', () => {
    expect(resolvePolicy()).toEqual({ maxAttempts: 10, maxAgeMs: 604_800_000, backoffBaseMs: 1000, backoffMaxMs: 300_000, jitter: 0.2, strictOrder: false });
    expect(resolvePolicy({ strictOrder: true, jitter: undefined }).jitter).toBe(0.2);
  });

  it('rejects invalid policies with every problem listed', () => {
    expect(() => resolvePolicy({ maxAttempts: 0, jitter: 2 })).toThrow(/maxAttempts.*jitter/);
    expect(() => resolvePolicy({ backoffBaseMs: 10, backoffMaxMs: 5 })).toThrow(/backoffMaxMs/);
  });

  it('backoff doubles from the base and is capped; jitter stays within ±jitter', () => {
    const p = { ...DEFAULT_DESTINATION_POLICY, jitter: 0 };
    expect([1, 2, 3, 4, 9, 10, 60].map((a) => backoffMs(p, a))).toEqual([1000, 2000, 4000, 8000, 256_000, 300_000, 300_000]);
    const j = { ...DEFAULT_DESTINATION_POLICY, jitter: 0.2 };
    expect(backoffMs(j, 1, () => 0)).toBe(800);
    expect(backoffMs(j, 1, () => 1)).toBe(1200);
    expect(backoffMs(j, 1, () => 0.5)).toBe(1000);
  });

  it('exhausted by attempts or by age', () => {
    const p = DEFAULT_DESTINATION_POLICY;
    expect(isExhausted(p, 9, 0, 1000)).toBe(false);
    expect(isExhausted(p, 10, 0, 1000)).toBe(true);
    expect(isExhausted(p, 1, 0, p.maxAgeMs + 1)).toBe(true);
  });

  it('leases expire and are released per destination only', () => {
    const t = new LeaseTable();
    t.take(1, 'his', 100);
    t.take(2, 'emr', 100);
    expect(t.activeUntil(1, 50)).toBe(100);
    t.release('emr', [1]); // wrong destination: kept
    expect(t.activeUntil(1, 50)).toBe(100);
    expect([...t.inFlight(50)]).toEqual([['his', 1], ['emr', 1]]);
    expect(t.activeUntil(1, 100)).toBeUndefined();
  });
});
