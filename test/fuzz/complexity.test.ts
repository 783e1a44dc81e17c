/**
 * Issue 10 part 1: no input makes the work grow faster than its size. Each case builds a message whose
 * one dimension (repetitions, segments, fields, components, subcomponents, escape sequences, glued
 * segments, digit / space / mark runs, records, frames, chunks) doubles 5k → 10k → 20k → 40k, runs the
 * whole path (parse, normalize, build, ACK, hash, decode), and asserts that no doubling costs 3× or
 * more (quadratic work costs 4×). The repeated unit is drawn by fast-check (fixed seed), so the check
 * is not tied to one spelling. This is a complexity check, not a benchmark: least of 3 runs (other
 * processes and GC only add time), a doubling over 3× measured again after full collections, times
 * under FLOOR_MS = 25 ms count as 25 ms (one major GC of the test heap costs about that; any quadratic
 * path costs far more at 40k: 40k² steps of 1 ns are 1.6 s). Limits are off (NO_HL7_LIMITS) to
 * measure the parser itself.
 */
import fc from 'fast-check';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { describe, expect, it } from 'vitest';
import { buildAck } from '../../drivers/hl7-mllp/ack';
import { NO_HL7_LIMITS, parseHl7, peekHeader, readHeader } from '../../drivers/hl7-mllp/hl7-message';
import { contentHash } from '../../drivers/hl7-mllp/hl7-receiver';
import { MllpDecoder, encodeMllp } from '../../drivers/hl7-mllp/mllp-decoder';
import { isOrderMessage, parseOrders } from '../../drivers/hl7-mllp/order-parser';
import { buildOruR251 } from '../../drivers/hl7-mllp/oru-builder';
import { parseOru } from '../../drivers/hl7-mllp/oru-parser';
import { encodeFrame, parseFrame } from '../../drivers/astm/frame';
import { parseRecords } from '../../drivers/astm/records';
import { parseAstmMessage } from '../../drivers/astm/results-parser';
import { decodeHl7Message, encodeFor } from '../../gateway/src/charset/charset';
import type { Observation } from '../../gateway/src/contracts/observation';
import { FUZZ_SEED } from './fuzz-config';

const SIZES = [5_000, 10_000, 20_000, 40_000];
const FLOOR_MS = 25;
const MAX_RATIO = 3;
const RUNS = 3;
const ATTEMPTS = 3;

// on a re-measurement, a full collection before each timed run, so one run does not pay for the garbage of another
setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

/** Least time of RUNS runs: other processes and GC only ever add time, so the least is the work itself. */
function minMs(fn: () => void, collect = false): number {
  let best = Infinity;
  for (let i = 0; i < RUNS; i++) {
    if (collect) gc();
    const a = process.hrtime.bigint();
    fn();
    best = Math.min(best, Number(process.hrtime.bigint() - a) / 1e6);
  }
  return best;
}

/**
 * Times of `run` over inputs built at each size; fails (with all times) when a doubling costs ≥ 3×.
 * A doubling over the bound is measured again after full collections (up to ATTEMPTS times, keeping the
 * least time per size): a busy machine slows one measurement, quadratic work is slow every time.
 * Garbage collection still makes single steps (a larger heap is scanned more often), so one doubling of
 * 3–4.5× passes only when a window of two doublings around it grows less than 9× (3²). Quadratic work
 * grows 4× per doubling and 16× per two: it fails either way.
 */
function expectLinear<T>(name: string, build: (n: number) => T, run: (x: T) => void): void {
  const inputs = SIZES.map(build);
  for (const x of inputs) run(x); // JIT warm-up on every size, so a later re-optimisation is not timed
  const times = inputs.map((x) => minMs(() => run(x)));
  const t = (i: number) => Math.max(times[i], FLOOR_MS);
  const ratio = (i: number) => t(i) / t(i - 1);
  const window = (i: number) => Math.min(i >= 2 ? t(i) / t(i - 2) : Infinity, i + 1 < SIZES.length ? t(i + 1) / t(i - 1) : Infinity);
  for (let i = 1; i < SIZES.length; i++) {
    for (let a = 1; a < ATTEMPTS && ratio(i) >= MAX_RATIO; a++) {
      for (const k of [i - 1, i, i + 1].filter((k) => k < SIZES.length)) times[k] = Math.min(times[k], minMs(() => run(inputs[k]), true));
    }
  }
  const all = `ms: ${times.map((x) => x.toFixed(1)).join(', ')}`;
  for (let i = 1; i < SIZES.length; i++) {
    const r = ratio(i);
    if (r < MAX_RATIO) continue;
    expect(r, `${name}: ${SIZES[i - 1]} → ${SIZES[i]} cost ${r.toFixed(1)}× (${all})`).toBeLessThan(4.5);
    expect(window(i), `${name}: ${SIZES[i - 1]} → ${SIZES[i]} cost ${r.toFixed(1)}× and two doublings around it ${window(i).toFixed(1)}× (${all})`).toBeLessThan(MAX_RATIO * MAX_RATIO);
  }
}

/** One property per dimension: the repeated unit is drawn by fast-check (fixed seed, no shrinking: the times say enough). */
function linearProperty<U, T>(name: string, unit: fc.Arbitrary<U>, build: (u: U, n: number) => T, run: (x: T) => void, numRuns = 1, skip = false): void {
  // retry: a CI machine shared with other test files can stall one measurement; a real quadratic path
  // fails every attempt (16× over two doublings), a scheduling blip does not
  (skip ? it.skip : it)(name, { retry: 2 }, () => {
    fc.assert(
      fc.property(unit, (u) => {
        expectLinear(name, (n) => build(u, n), run);
      }),
      { seed: FUZZ_SEED, numRuns, endOnFailure: true },
    );
  });
}

// ---------------------------------------------------------------- HL7: the receiver's whole path

const MSH = 'MSH|^~\\&|DEV^0001^EUI-64|LAB|GW|HOSP|20240101120000||ORU^R01^ORU_R01|CTRL1|P|2.5.1';

function oru(opts: { pid3?: string; pid5?: string; obx2?: string; obx5?: string; obx8?: string; obxExtra?: string; nte3?: string; obxCount?: number; tail?: string }): string {
  const obx = (i: number) =>
    `OBX|${i}|${opts.obx2 ?? 'NM'}|2093-3^Cholesterol^LN||${opts.obx5 ?? '4.2'}|mg/dL|<200|${opts.obx8 ?? 'N'}|||F|||20240101115900${opts.obxExtra ?? ''}`;
  const lines = [
    MSH,
    `PID|1||${opts.pid3 ?? 'P1^^^HOSP^MR'}||${opts.pid5 ?? 'DOE^JOHN'}||19800101|M`,
    'OBR|1|PL1|FL1|24331-1^Lipid panel^LN|||20240101115500',
  ];
  for (let i = 1; i <= (opts.obxCount ?? 1); i++) lines.push(obx(i));
  lines.push(`NTE|1|L|${opts.nte3 ?? 'comment'}`);
  return lines.join('\r') + (opts.tail ?? '') + '\r';
}

const RECEIVED_AT = '2024-01-01T12:00:00.000Z';

/** What Hl7Receiver does with a message, then the ORU^R01 v2.5.1 build of the results. */
function hl7Path(text: string): void {
  const decoded = decodeHl7Message(Buffer.from(text, 'utf8'), { listenerCharset: 'utf8' });
  const msg = parseHl7(decoded.text, { lenient: true, limits: NO_HL7_LIMITS });
  const header = readHeader(msg);
  if (isOrderMessage(header)) parseOrders(msg);
  else {
    const r = parseOru(msg);
    if (r.drafts.length) {
      const obs = r.drafts.map((d, i) => ({ ...d, id: `o${i}`, messageId: 1, messageUid: 'u', seq: i + 1, deviceId: 'd', driver: 'hl7-mllp', receivedAt: RECEIVED_AT }) as Observation);
      buildOruR251(obs, { controlId: 'GW1', sendingApp: 'IOMT-GW', now: new Date(RECEIVED_AT) });
    }
  }
  peekHeader(decoded.text);
  buildAck({ request: header, code: 'AA', controlId: 'ACK1' });
  contentHash(decoded.text);
}

const rep = (u: string, n: number, sep: string) => Array.from({ length: n }, () => u).join(sep);
const word = fc.stringMatching(/^[A-Z0-9]{1,6}$/);
const cx = fc.tuple(word, word).map(([id, auth]) => `${id}^^^${auth}^MR`);

describe('HL7: parse, normalize, build, ACK and hash are linear (issue 10)', () => {
  linearProperty('PID-3 repetitions', cx, (u, n) => oru({ pid3: rep(u, n / 2, '~') }), hl7Path);
  linearProperty('OBX-5 repetitions (ST)', word, (u, n) => oru({ obx2: 'ST', obx5: rep(u, n, '~') }), hl7Path);
  linearProperty('OBX-5 repetitions (NM, kept as text)', word, (u, n) => oru({ obx2: 'NM', obx5: rep(u, n, '~') }), hl7Path);
  linearProperty('OBX-5 repetitions (CWE)', cx, (u, n) => oru({ obx2: 'CWE', obx5: rep(u, n, '~') }), hl7Path);
  linearProperty('OBX-8 repetitions', fc.constantFrom('H', 'L', 'A', ''), (u, n) => oru({ obx8: rep(u, n, '~') }), hl7Path);
  linearProperty('NTE-3 repetitions', word, (u, n) => oru({ nte3: rep(u, n, '~') }), hl7Path);
  linearProperty('OBX-5 components (NM)', word, (u, n) => oru({ obx2: 'NM', obx5: rep(u, n, '^') }), hl7Path);
  linearProperty('OBX-5 components (ST)', word, (u, n) => oru({ obx2: 'ST', obx5: rep(u, n, '^') }), hl7Path);
  linearProperty('PID-5 components', word, (u, n) => oru({ pid5: rep(u, n, '^') }), hl7Path);
  linearProperty('OBX-5 subcomponents', word, (u, n) => oru({ obx2: 'ST', obx5: rep(u, n, '&') }), hl7Path);
  linearProperty('MSH-3 components (echoed in the ACK)', word, (u, n) => oru({}).replace('DEV^0001^EUI-64', rep(u, n, '^')), hl7Path);
  linearProperty('fields in one OBX', word, (u, n) => oru({ obxExtra: `|${rep(u, n, '|')}` }), hl7Path);
  linearProperty('OBX segments', fc.constant(0), (_u, n) => oru({ obxCount: n / 20 }), hl7Path);
  linearProperty('escape sequences', fc.constantFrom('\\F\\', '\\S\\', '\\X0D\\', '\\.br\\', '\\E\\', '\\Zq\\', '\\'), (u, n) => oru({ obx2: 'FT', obx5: rep(`a${u}`, n, '') }), hl7Path);
  linearProperty(
    'segments glued together (lenient recovery)',
    fc.constant(0),
    (_u, n) => oru({ obx5: '1', tail: '' }).replace('|N|||F|||20240101115900', `|N|||F|||20240101115900${rep('xOBX|2|NM|2093-3^C^LN||1|', n / 10, '')}`),
    hl7Path,
  );
  linearProperty('"OBX|" inside a field (not a glued segment)', fc.constant(0), (_u, n) => oru({ obx2: 'ST', obx5: rep('|OBX', n / 4, '') }), hl7Path);
  linearProperty('digit run in NM', fc.constantFrom('x', '.x', 'e', ' '), (u, n) => oru({ obx2: 'NM', obx5: `${'1'.repeat(n)}${u}` }), hl7Path);
  linearProperty('digit run in SN', fc.constantFrom('x', '.x', 'e'), (u, n) => oru({ obx2: 'SN', obx5: `<^${'1'.repeat(n)}${u}` }), hl7Path);
  linearProperty('spaces after a comparator in NM', fc.constantFrom('\\X0A\\', 'x'), (u, n) => oru({ obx2: 'NM', obx5: `<${' '.repeat(n)}${u}` }), hl7Path);
  linearProperty('spaces before a ratio separator in NM', fc.constantFrom('x', '-x'), (u, n) => oru({ obx2: 'NM', obx5: `1${' '.repeat(n)}${u}` }), hl7Path);
  linearProperty('run of empty components in ST', fc.constantFrom('x', '\\F\\'), (u, n) => oru({ obx2: 'ST', obx5: `${'^'.repeat(n)}${u}` }), hl7Path);
  linearProperty('run of segment terminators', fc.constantFrom('\r', '\r\n', '\n'), (u, n) => oru({ tail: u.repeat(n) + 'ZZZ|1' }), hl7Path);
  linearProperty('combining marks in a value', fc.constantFrom('\u0301\u0323', '\u0323\u0301', '\u0300'), (u, n) => oru({ obx2: 'ST', obx5: `a${rep(u, n / 2, '')}` }), hl7Path);
  linearProperty('combining marks spread over words', fc.constantFrom('e\u0302\u0301 ', 'o\u031b\u0323 '), (u, n) => oru({ obx2: 'ST', obx5: rep(u, n / 4, '') }), hl7Path);
});

const ORM_MSH = 'MSH|^~\\&|HIS|H|GW|LAB|20240101120000||ORM^O01|C1|P|2.5.1';

describe('HL7 orders: parse is linear (issue 10)', () => {
  const obrs = (n: number) => [ORM_MSH, 'PID|1||P1^^^H^MR||DOE^J', 'ORC|NW|PL1|S1', ...Array.from({ length: n }, (_, i) => `OBR|${i + 1}|PL1|S1|T${i % 50}^Test^L`)].join('\r');
  const spms = (n: number) => [ORM_MSH, 'PID|1||P1^^^H^MR||DOE^J', 'ORC|NW|PL1|S1', 'OBR|1|PL1|S1|T1^Test^L', ...Array.from({ length: n }, (_, i) => `SPM|${i + 1}|SP${i}`)].join('\r');
  linearProperty('OBR segments for one specimen (tests merged)', fc.constant(0), (_u, n) => obrs(n / 20), hl7Path);
  linearProperty('SPM segments in one OBR', fc.constant(0), (_u, n) => spms(n / 20), hl7Path);
  linearProperty('PID-3 repetitions in an order', cx, (u, n) => obrs(1).replace('P1^^^H^MR', rep(u, n / 2, '~')), hl7Path);
});

// ---------------------------------------------------------------- ASTM

const RESULTS_PARSER_PENDING = false;
const ASTM_H = 'H|\\^&|||ANALYZER^1.0|||||||P|1|20240101120000';
const astmPath = (lines: string[]) => parseAstmMessage(parseRecords(lines));
const astm = (r: string, count = 1) => [ASTM_H, 'P|1||PID1', 'O|1|S1||^^^GLU', ...Array.from({ length: count }, () => r), 'L|1|N'];

describe('ASTM: records and results are linear (issue 10)', () => {
  linearProperty('R records', fc.constant(0), (_u, n) => astm('R|1|^^^GLU|5.4|mmol/L|3.9^6.1|N||F||||20240101120000', n / 20), astmPath);
  linearProperty('R.7 flag repeats', fc.constantFrom('H', 'L', 'A'), (u, n) => astm(`R|1|^^^GLU|5.4|mmol/L||${rep(u, n, '\\')}||F`), astmPath);
  linearProperty('R.4 components', word, (u, n) => astm(`R|1|^^^GLU|${rep(u, n, '^')}|mmol/L||N||F`), astmPath);
  linearProperty('R.3 components', word, (u, n) => astm(`R|1|${rep(u, n, '^')}|5.4|mmol/L||N||F`), astmPath);
  linearProperty('escape sequences in R.4', fc.constantFrom('&F&', '&X0D&', '&', '&Zq&'), (u, n) => astm(`R|1|^^^GLU|${rep(`a${u}`, n, '')}|mmol/L||N||F`), astmPath);
  linearProperty('line breaks inside a record', fc.constantFrom('\n', '\r\n'), (u, n) => astm(`R|1|^^^GLU|5.4${u.repeat(n)}x|mmol/L||N||F`), astmPath);
  // Known quadratic paths in drivers/astm/results-parser.ts (not this suite's file; the fix is proposed to
  // its owner): NUM `\\d+\\.?\\d*` backtracks on a long digit run, the R.6 range regex on a long space run.
  // Skipped until fixed; remove RESULTS_PARSER_PENDING then.
  linearProperty('digit run in R.4', fc.constantFrom('x', '.x'), (u, n) => astm(`R|1|^^^GLU|${'1'.repeat(n)}${u}|mmol/L||N||F`), astmPath, 1, RESULTS_PARSER_PENDING);
  linearProperty('spaces in an R.6 range', fc.constantFrom('x', '- x'), (u, n) => astm(`R|1|^^^GLU|5.4|mmol/L|1${' '.repeat(n)}${u}|N||F`), astmPath, 1, RESULTS_PARSER_PENDING);
  linearProperty('C records', word, (u, n) => [...astm('R|1|^^^GLU|5.4|mmol/L||N||F'), ...Array.from({ length: n / 10 }, () => `C|1|I|${u}|G`)], astmPath);
});

// ---------------------------------------------------------------- framing and charsets

describe('framers and charsets are linear (issue 10)', () => {
  linearProperty(
    'MLLP: frames fed in 7-byte chunks',
    fc.constant(0),
    (_u, n) => {
      const one = encodeMllp(Buffer.from(oru({}), 'utf8'));
      const all = Buffer.concat(Array.from({ length: Math.ceil(n / one.length) * 4 }, () => one));
      return all.subarray(0, n * 4);
    },
    (b) => {
      const d = new MllpDecoder();
      for (let i = 0; i < b.length; i += 7) d.push(b.subarray(i, i + 7));
      d.end();
    },
  );
  linearProperty(
    'MLLP: one frame of growing size in 16-byte chunks',
    fc.constant(0),
    (_u, n) => encodeMllp(Buffer.alloc(n * 16, 0x41)),
    (b) => {
      const d = new MllpDecoder();
      for (let i = 0; i < b.length; i += 16) d.push(b.subarray(i, i + 16));
      d.end();
    },
  );
  linearProperty(
    'ASTM frame: text of growing size',
    fc.constant(0),
    (_u, n) => encodeFrame(1, Buffer.alloc(n, 0x41), true),
    (f) => {
      expect(parseFrame(f).ok).toBe(true);
    },
  );
  linearProperty(
    'charset: windows-1258 decode + NFC of growing text',
    fc.constant(0),
    (_u, n) => Buffer.from(`MSH|^~\\&|A|B|C|D|20240101||ORU^R01|1|P|2.5.1|||||VNM|CP1258\r${'\xd4\xec'.repeat(n)}`, 'latin1'),
    (b) => decodeHl7Message(b, { listenerCharset: 'utf8' }),
  );
  linearProperty(
    'charset: encode with combining marks',
    fc.constantFrom('e\u0302\u0301', 'a\u0301\u0323\u0301'),
    (u, n) => rep(u, n / 40, ''),
    (s) => {
      try {
        encodeFor(s, 'windows-1258');
      } catch {
        // unrepresentable is an answer too; only the time counts here
      }
    },
  );
});
