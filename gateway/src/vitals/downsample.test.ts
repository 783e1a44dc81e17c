import { describe, expect, it } from 'vitest';
import type { Observation } from '../contracts/observation';
import { Downsampler, downsampledTotal } from './downsample';

let n = 0;
function obs(code: string, at: string, extra: Partial<Observation> = {}): Observation {
  n++;
  return {
    id: `M-${n}`, messageId: n, messageUid: `M${n}`, seq: 1, deviceId: 'pcd-in', driver: 'hl7-mllp', receivedAt: at,
    code: { system: 'urn:iso:std:iso:11073:10101', code }, status: 'preliminary', effectiveAt: at,
    value: { kind: 'quantity', value: 70, unit: '/min' }, equipment: { id: 'E1', eui64: '0011223344556677' }, location: { bed: 'B1' },
    ...extra,
  };
}
const t = (s: number) => new Date(Date.UTC(2026, 10, 30, 10, 0, s)).toISOString();

describe('Downsampler (one value per parameter per interval; alarms never thinned)', () => {
  it('1 Hz heart rate for 3 minutes → one value per minute to the EMR, the rest counted', () => {
    const d = new Downsampler('emr-a', { intervalMs: 60_000 });
    const before = downsampledTotal.get({ destination: 'emr-a' });
    let kept = 0;
    for (let s = 0; s < 180; s++) kept += d.filter([obs('147842', t(s))]).kept.length;
    expect(kept).toBe(3); // at 0 s, 60 s, 120 s
    expect(downsampledTotal.get({ destination: 'emr-a' }) - before).toBe(177);
  });

  it('parameters are independent: another code, another bed, another device, another containment each pass', () => {
    const d = new Downsampler('emr-b', { intervalMs: 60_000 });
    expect(d.filter([obs('147842', t(0))]).kept).toHaveLength(1);
    const r = d.filter([
      obs('147842', t(1)), // same parameter: thinned
      obs('150456', t(1)),
      obs('147842', t(1), { location: { bed: 'B2' } }),
      obs('147842', t(1), { equipment: { id: 'E2', eui64: 'FFEEDDCCBBAA9988' } }),
      obs('147842', t(1), { subId: '1.2.1.1' }),
    ]);
    expect(r.kept.map((o) => o.code.code)).toEqual(['150456', '147842', '147842', '147842']);
    expect(r.dropped).toBe(1);
  });

  it('alarms, abnormal values and flagged values always pass', () => {
    const d = new Downsampler('emr-c', { intervalMs: 60_000 });
    d.filter([obs('150456', t(0))]);
    const r = d.filter([
      obs('150456', t(1), { alarm: { priority: 'PH', phase: 'start' } }),
      obs('150456', t(2), { interpretation: ['L'] }),
      obs('150456', t(3), { quality: [{ code: 'value-missing' }] }),
      obs('150456', t(4), { interpretation: ['N'] }),
    ]);
    expect(r.kept).toHaveLength(3);
    expect(r.dropped).toBe(1);
    const strict = new Downsampler('emr-d', { intervalMs: 60_000, keepAbnormal: false });
    strict.filter([obs('150456', t(0))]);
    expect(strict.filter([obs('150456', t(1), { interpretation: ['L'] })]).kept).toHaveLength(0);
  });

  it('interval 0 = everything passes (the upstream bus)', () => {
    const d = new Downsampler('up', { intervalMs: 0 });
    const batch = Array.from({ length: 10 }, (_, i) => obs('147842', t(i)));
    expect(d.filter(batch).kept).toHaveLength(10);
  });

  it('a device clock reset does not silence a parameter', () => {
    const d = new Downsampler('emr-e', { intervalMs: 60_000 });
    expect(d.filter([obs('147842', t(120))]).kept).toHaveLength(1);
    expect(d.filter([obs('147842', t(0))]).kept).toHaveLength(1); // device clock went back > interval
  });

  it('select(): what passed is remembered only on commit (a message re-emitted after a failed outbox append passes again)', () => {
    const d = new Downsampler('emr-retry', { intervalMs: 60_000 });
    const first = obs('147842', t(0));
    const a = d.select([first]);
    expect(a.kept).toEqual([first]);
    // the append failed: no commit; the flow re-emits the same message
    const b = d.select([first]);
    expect(b.kept).toEqual([first]);
    b.commit();
    // now queued: the same value and a later one within the interval are thinned
    expect(d.select([first]).kept).toEqual([]);
    expect(d.filter([obs('147842', t(30))]).kept).toEqual([]);
    // inside one message, two values of one parameter still see each other before the commit
    const two = d.select([obs('147842', t(60)), obs('147842', t(61))]);
    expect(two.kept.map((o) => o.effectiveAt)).toEqual([t(60)]);
  });
});
