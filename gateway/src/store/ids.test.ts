import { describe, expect, it } from 'vitest';
import { CROCKFORD, UID_LENGTH, UidGenerator, uidTime } from './ids';

describe('UidGenerator', () => {
  it('makes Crockford base32 ids of at most 20 chars (HL7 MSH-10) that encode the time', () => {
    const g = new UidGenerator(() => 1_700_000_000_123);
    const id = g.next();
    expect(id).toHaveLength(UID_LENGTH);
    expect(id.length).toBeLessThanOrEqual(20);
    expect([...id].every((c) => CROCKFORD.includes(c))).toBe(true);
    expect(uidTime(id)).toBe(1_700_000_000_123);
  });

  it('is unique and strictly increasing over many ids in the same millisecond', () => {
    const g = new UidGenerator(() => 42);
    const ids = Array.from({ length: 100_000 }, () => g.next()); // > 32768 per ms: borrows the next ms
    expect(new Set(ids).size).toBe(ids.length);
    let sorted = true;
    for (let i = 1; i < ids.length; i++) if (!(ids[i] > ids[i - 1])) sorted = false;
    expect(sorted).toBe(true);
  });

  it('stays increasing when the clock steps back', () => {
    let t = 1_000_000;
    const g = new UidGenerator(() => t);
    const a = g.next();
    t -= 5000;
    const b = g.next();
    t += 10_000;
    const c = g.next();
    expect(b > a).toBe(true);
    expect(c > b).toBe(true);
  });

  it('differs between two generators in the same millisecond (random part)', () => {
    const a = new UidGenerator(() => 7).next();
    const b = new UidGenerator(() => 7).next();
    expect(a).not.toBe(b);
    expect(a.slice(0, 13)).toBe(b.slice(0, 13));
  });
});
