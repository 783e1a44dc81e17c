/**
 * Attacks on the number-text scan (number-lexemes.ts) from outside: payloads a LAN client can publish.
 * - cost: the scan runs on every publish before the schema check, so a payload the validator will refuse
 *   must still cost time linear in its size (no path built per number of a deep or long-keyed payload);
 * - meaning: for any valid JSON text, a kept text reads as exactly the number JSON.parse gave at its path,
 *   and the scan throws nothing but NumberUnderflow.
 */
import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { keptNumberTexts, NumberUnderflow } from './number-lexemes';
import { normalizeVitals, PayloadError } from './payload';

const ctx = { clientId: 'bed-03', receivedAt: new Date('2026-11-30T10:15:01.000Z') };

/** ms of one normalizeVitals call (the payload is refused or accepted: only the time counts here). */
function cost(text: string): number {
  const t0 = performance.now();
  try {
    normalizeVitals(Buffer.from(text), ctx);
  } catch (e) {
    expect(e).toBeInstanceOf(PayloadError);
  }
  return performance.now() - t0;
}

describe('number-text scan: cost bounded by the payload size', () => {
  // measured before the bound on paths: 2.3 s (long key: keys over 16 K characters hash alike in V8, every
  // path collided) and 0.6-1.7 s (nesting: one path of depth 8000 joined per number) for these 24-40 KB texts;
  // a 256 KB publish (the broker's limit) held the event loop for minutes. Linear: a few ms.
  const numbers = (n: number) => Array(n).fill('1.0').join(',');
  const CASES: Array<[string, string]> = [
    ['numbers under a 16 K-character key', `{"time":"2026-11-30T10:15:00Z","${'k'.repeat(16_400)}":[${numbers(2000)}]}`],
    ['numbers 8000 arrays deep', `{"time":"2026-11-30T10:15:00Z","x":${'['.repeat(8000)}${numbers(8000)}${']'.repeat(8000)}}`],
    ['one kept number, then plain ones deep', `{"observations":[{"value":1.50}],"x":${'['.repeat(8000)}${Array(8000).fill('1').join(',')}${']'.repeat(8000)}}`],
  ];
  it.each(CASES)('%s: under 300 ms', (_name, text) => {
    expect(Math.min(cost(text), cost(text))).toBeLessThan(300);
  });

  it('a number deep or under a long key is still checked for underflow', () => {
    expect(() => keptNumberTexts(`{"x":${'['.repeat(50)}1e-400${']'.repeat(50)}}`)).toThrow(NumberUnderflow);
    expect(() => keptNumberTexts(`{"${'k'.repeat(100)}":[1.0e-999]}`)).toThrow(NumberUnderflow);
  });
});

describe('number-text scan: a kept text always reads as the parsed number at its path', () => {
  const ws = fc.constantFrom('', ' ', '\n', '\t', '\r\n ');
  const digits = fc.stringMatching(/^[0-9]{1,18}$/);
  const lexeme = fc
    .tuple(fc.boolean(), fc.stringMatching(/^(0|[1-9][0-9]{0,17})$/), fc.option(digits, { nil: undefined }), fc.option(fc.tuple(fc.constantFrom('e', 'E'), fc.constantFrom('', '+', '-'), fc.integer({ min: 0, max: 330 })), { nil: undefined }))
    .map(([neg, int, frac, exp]) => `${neg ? '-' : ''}${int}${frac !== undefined ? `.${frac}` : ''}${exp ? `${exp[0]}${exp[1]}${exp[2]}` : ''}`);
  // keys: the payload's own names, their escaped spellings, quotes, backslashes, unicode (no '/': the path separator)
  const key = fc.constantFrom('value', 'val\\u0075e', 'observations', 'alarms', '\\"value', 'v\\\\', 'välue', '\\ud83d\\ude00', '', '1.50', '-0');
  const str = fc.constantFrom('"36.80"', '"a\\"1.0,"', '"\\\\"', '"-0 "', '"1e-400"', '"x\\\\\\"2.0]"');
  const { value } = fc.letrec<{ value: string }>((tie) => ({
    value: fc.oneof(
      { depthSize: 'small', withCrossShrink: true },
      lexeme,
      str,
      fc.constantFrom('true', 'false', 'null'),
      fc.array(fc.tuple(ws, tie('value'), ws), { maxLength: 4 }).map((xs) => `[${xs.map(([a, v, b]) => a + v + b).join(',')}]`),
      fc.array(fc.tuple(ws, key, ws, tie('value'), ws), { maxLength: 4 }).map((xs) => `{${xs.map(([a, k, b, v, c]) => `${a}"${k}"${b}:${b}${v}${c}`).join(',')}}`),
    ),
  }));
  const doc = fc.tuple(ws, fc.array(fc.tuple(key, value), { minLength: 1, maxLength: 4 }), ws).map(([a, kv, b]) => `${a}{${kv.map(([k, v]) => `"${k}":${v}`).join(',')}}${b}`);

  const at = (root: unknown, path: string): unknown => {
    let v = root;
    for (const part of path === '' ? [] : path.split('/')) {
      if (v === null || typeof v !== 'object') return undefined;
      v = (v as Record<string, unknown>)[part];
    }
    return v;
  };

  it('any valid JSON text: throws only NumberUnderflow; every kept text is the number at its path, as written', () => {
    fc.assert(
      fc.property(doc, (text) => {
        const parsed = JSON.parse(text) as unknown;
        let kept: Map<string, string>;
        try {
          kept = keptNumberTexts(text);
        } catch (e) {
          expect(e).toBeInstanceOf(NumberUnderflow);
          return;
        }
        for (const [path, t] of kept) {
          const v = at(parsed, path);
          // a stale text (an earlier duplicate key) may stay only where the last value is not a number
          if (typeof v === 'number') expect(Object.is(Number(t), v)).toBe(true);
          expect(text).toContain(t);
        }
      }),
      { numRuns: 3000 },
    );
  });
});
