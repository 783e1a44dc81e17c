/**
 * Replays the inputs kept in test/fuzz/cases/ (issue 10 part 8: failing inputs found by the fuzz suite
 * are kept as cases) through the same checks as the fuzzer. A case with `pending` names a fault reported
 * to another file's owner: it must still fail with `pendingError`, so it turns red the day the fault is
 * fixed (then remove `pending`, and the pattern in checks.ts KNOWN).
 */
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { checkAstmFrame, checkAstmLink, checkAstmRecords, checkCharset, checkHl7, checkHl7Strict, checkMllp } from './checks';
import type { CharsetName } from '../../gateway/src/charset/charset';

interface FuzzCase {
  kind: 'hl7' | 'mllp' | 'astm-frame' | 'astm-link' | 'astm-records' | 'charset';
  description: string;
  found?: string;
  pending?: string;
  /** Text of the error a pending case still raises (the test turns red when it no longer does). */
  pendingError?: string;
  input?: string;
  inputBase64?: string;
  build?: { vt?: boolean; fill: number; length: number };
  cuts?: number[];
  charset?: CharsetName;
}

const dir = join(__dirname, 'cases');
const files = readdirSync(dir).filter((f) => f.endsWith('.json')).sort();

function bytesOf(c: FuzzCase): Buffer {
  if (c.build) return Buffer.concat([c.build.vt ? Buffer.from([0x0b]) : Buffer.alloc(0), Buffer.alloc(c.build.length, c.build.fill)]);
  if (c.inputBase64) return Buffer.from(c.inputBase64, 'base64');
  return Buffer.from(c.input ?? '', 'latin1');
}

describe('kept fuzz cases (test/fuzz/cases/*.json)', () => {
  it('has cases', () => expect(files.length).toBeGreaterThan(0));
  for (const f of files) {
    const c = JSON.parse(readFileSync(join(dir, f), 'utf8')) as FuzzCase;
    const run = async () => {
      switch (c.kind) {
        case 'hl7':
          return c.pending ? checkHl7Strict(c.input ?? '') : checkHl7(c.input ?? '');
        case 'mllp':
          return checkMllp(bytesOf(c), c.cuts ?? []);
        case 'astm-frame':
          return checkAstmFrame(bytesOf(c));
        case 'astm-link':
          return checkAstmLink((c.cuts ?? []).length ? splitAt(bytesOf(c), c.cuts ?? []) : [bytesOf(c)]);
        case 'astm-records':
          return checkAstmRecords(c.input ?? '');
        case 'charset':
          return checkCharset(bytesOf(c), c.charset ?? 'utf8');
      }
    };
    if (c.pending) it(`${f} still fails as reported (pending: ${c.pending})`, async () => expect(run()).rejects.toThrow(c.pendingError ?? ''));
    else it(`${f}: ${c.description}`, run);
  }
});

function splitAt(b: Buffer, cuts: number[]): Buffer[] {
  const out: Buffer[] = [];
  let from = 0;
  for (const c of [...cuts].sort((x, y) => x - y)) {
    out.push(b.subarray(from, c));
    from = c;
  }
  out.push(b.subarray(from));
  return out;
}
