/**
 * The broker counts every publish through a labelled child of the counter (gateway/src/metrics/registry.ts
 * Counter.child: the label key built once). It must be the same series as `inc(labels)`, with the same
 * Prometheus text-format escapes (backslash, double quote, line feed) as before the one-label fast path.
 */
import { describe, expect, it } from 'vitest';
import { Registry } from '../../gateway/src/metrics/registry';

describe('Counter.child and label keys', () => {
  it('child().inc and inc(labels) add to one series', () => {
    const r = new Registry();
    const c = r.counter('t_total', 'test');
    const child = c.child({ device: 'icu-mqtt' });
    child.inc();
    c.inc({ device: 'icu-mqtt' });
    child.inc(3);
    expect(c.get({ device: 'icu-mqtt' })).toBe(5);
    expect(r.render()).toContain('t_total{device="icu-mqtt"} 5\n');
  });

  it.each([
    [{ device: 'a"b' }, 'device="a\\"b"'],
    [{ device: 'a\\b' }, 'device="a\\\\b"'],
    [{ device: 'a\nb' }, 'device="a\\nb"'],
    [{ reason: 'x', device: 'd' }, 'device="d",reason="x"'],
    [{ reason: 'q"', device: 'd\\' }, 'device="d\\\\",reason="q\\""'],
  ])('%j → {%s}', (labels, key) => {
    const r = new Registry();
    const c = r.counter('t_total', 'test');
    c.inc(labels);
    if (Object.keys(labels).length === 1) c.child(labels).inc();
    expect(r.render()).toContain(`t_total{${key}} ${Object.keys(labels).length === 1 ? 2 : 1}\n`);
  });
});
