/**
 * Fuzz suite for every parser and framer (issue 10 part 8): HL7 (tokenizer lenient/strict, ORU and
 * order parsers, ACK round trip, ORU^R01 v2.5.1 build + validator), MLLP decoder (random chunking),
 * ASTM frames and link (random bytes: no crash, no hang), ASTM records + results, charset decode.
 * fast-check with a fixed seed (fuzz-config.ts); `FUZZ_RUNS=20000 npx vitest run test/fuzz` runs
 * longer, `FUZZ_SEED=n` another sequence. An input that fails is kept in test/fuzz/cases/ (cases.test.ts).
 */
import fc from 'fast-check';
import { describe, it } from 'vitest';
import { encodeMllp } from '../../drivers/hl7-mllp/mllp-decoder';
import { encodeFrame } from '../../drivers/astm/frame';
import { CHARSET_NAMES, checkAstmFrame, checkHl7Transport, checkAstmLink, checkAstmRecords, checkCharset, checkHl7, checkMllp } from './checks';
import { FUZZ_RUNS, FUZZ_SEED, FUZZ_TIME_LIMIT_MS } from './fuzz-config';

const params = (runs = FUZZ_RUNS) => ({ seed: FUZZ_SEED, numRuns: runs, interruptAfterTimeLimit: FUZZ_TIME_LIMIT_MS, markInterruptAsFailure: false });

// ---------------------------------------------------------------- HL7 grammar (valid-looking, then damaged)

const DELIMS = '|^~\\&';
/** Field text: mostly plain, with delimiters, escapes, control characters and non-ASCII mixed in. */
const atom = fc.oneof(
  { weight: 6, arbitrary: fc.stringMatching(/^[A-Za-z0-9 .:<>=+\-/]{0,8}$/) },
  { weight: 2, arbitrary: fc.constantFrom('^', '~', '&', '\\', '\\F\\', '\\S\\', '\\T\\', '\\R\\', '\\E\\', '\\X0D\\', '\\X0A\\', '\\XC3A9\\', '\\.br\\', '\\H\\', '\\N\\', '\\Zx\\', '\\C2842\\', '\\X\\', '\\X0\\', '\\') },
  { weight: 1, arbitrary: fc.constantFrom('\n', '\t', '\x00', '\x85', '\u0301', 'é', 'ễ', 'Đ', '\u2028', '\ud83d\ude00', '\ufffd', '\ufeff') },
  { weight: 1, arbitrary: fc.constantFrom('4.20', '<0.5', '>=1500', '2-5', '1:40', '10^9/L', '-', '.', '1e3', '  7 ', '20240101', '20240101120000+0700', '2024', 'NaN') },
);
const field = fc.array(atom, { maxLength: 4 }).map((a) => a.join(''));
const fields = (n: number) => fc.array(field, { minLength: 0, maxLength: n }).map((f) => f.join('|'));
const valueType = fc.constantFrom('NM', 'SN', 'ST', 'TX', 'FT', 'CE', 'CWE', 'CNE', 'ED', 'RP', 'DT', 'TS', 'IS', '', 'XX', 'nm');
const status = fc.constantFrom('F', 'P', 'C', 'R', 'X', 'D', 'W', 'U', 'I', '', 'f', 'Z', ' F');

const msh = fc.record({
  type: fc.constantFrom('ORU^R01', 'ORU^R01^ORU_R01', 'ORM^O01', 'OML^O21', 'ADT^A01', 'ORU^R30', 'ORU', ''),
  version: fc.constantFrom('2.5.1', '2.3.1', '2.4', '2.6', '2.7', '', '2.5'),
  control: fc.oneof(fc.stringMatching(/^[A-Za-z0-9-]{1,12}$/), field),
  processing: fc.constantFrom('P', 'T', 'D', 'p', 'P^T', '', 'X'),
  charset: fc.constantFrom('', 'UNICODE UTF-8', '8859/1', 'ASCII', 'XYZ'),
  app: field,
});
const segment = fc.oneof(
  fc.record({ pid3: fields(1), f: fields(6) }).map(({ pid3, f }) => `PID|1||${pid3}|${f}`),
  fc.record({ f: fields(8) }).map(({ f }) => `OBR|1|${f}`),
  fc.record({ vt: valueType, code: fc.constantFrom('2093-3^Chol^LN', '^^^X^Y^L', '', 'A^B', '150045^MDC_PULS_OXIM_SAT_O2^MDC'), value: fields(2), unit: field, flags: field, st: status, sub: fc.constantFrom('', '1', '1.0.0.1', 'a') }).map(
    ({ vt, code, value, unit, flags, st, sub }) => `OBX|1|${vt}|${code}|${sub}|${value}|${unit}|<5|${flags}|||${st}|||20240101120000`,
  ),
  fc.record({ f: fields(3) }).map(({ f }) => `NTE|1|L|${f}`),
  fc.record({ f: fields(4) }).map(({ f }) => `SPM|1|${f}`),
  fc.record({ c: fc.constantFrom('NW', 'CA', 'XO', '', 'SC'), f: fields(4) }).map(({ c, f }) => `ORC|${c}|${f}`),
  fc.record({ f: fields(3) }).map(({ f }) => `SAC|${f}`),
  fc.record({ f: fields(3) }).map(({ f }) => `ZXX|${f}`),
  fc.constantFrom('', 'GARBAGE', 'obx|1|NM', 'OB|1', 'MSH|^~\\&|X', '12345'),
);
const terminator = fc.constantFrom('\r', '\r', '\r', '\n', '\r\n');

const hl7Message = fc
  .record({ h: msh, segs: fc.array(segment, { maxLength: 12 }), term: terminator, glue: fc.boolean(), lead: fc.constantFrom('', '\ufeff', '\r\n', ' ') })
  .map(({ h, segs, term, glue, lead }) => {
    const head = `MSH|^~\\&|${h.app}|LAB|GW|HOSP|20240101120000||${h.type}|${h.control}|${h.processing}|${h.version}|||||${h.charset}`;
    const body = [head, ...segs];
    // a lost terminator: two segments glued together (the lenient recovery path)
    return lead + (glue && body.length > 2 ? [...body.slice(0, -2), body[body.length - 2] + body[body.length - 1]] : body).join(term) + term;
  });

/** The same message with a few random edits (insert, delete, replace a character). */
const mutated = fc
  .tuple(hl7Message, fc.array(fc.tuple(fc.nat(), fc.constantFrom('ins', 'del', 'rep'), fc.constantFrom(...DELIMS.split(''), '\r', '\n', 'A', '1', '\x00', 'é')), { maxLength: 6 }))
  .map(([m, edits]) => {
    let s = m;
    for (const [at, op, c] of edits) {
      const i = s.length ? at % s.length : 0;
      s = op === 'ins' ? s.slice(0, i) + c + s.slice(i) : op === 'del' ? s.slice(0, i) + s.slice(i + 1) : s.slice(0, i) + c + s.slice(i + 1);
    }
    return s;
  });

describe('fuzz: HL7 parse / ORU / orders / ACK / ORU^R01 build (issue 10 part 8)', () => {
  it('generated messages: only ParseError / UnsupportedMessageError; builds validate; ACK echoes MSH-10', () => {
    fc.assert(fc.property(hl7Message, (m) => checkHl7(m)), params());
  });
  it('mutated messages', () => {
    fc.assert(fc.property(mutated, (m) => checkHl7(m)), params());
  });
  it('the worker boundary: prepareHl7 results clone unchanged, failures revive with their class and fields (orders on/off, strict, fallback charset)', () => {
    const opts = fc.record({ orders: fc.boolean(), strict: fc.boolean(), fallbackCharset: fc.constantFrom(undefined, 'windows-1258' as const), charset: fc.constantFrom(undefined, 'latin1' as const) });
    const bytes = fc.oneof(mutated.map((m) => Buffer.from(m, 'utf8')), fc.tuple(mutated, fc.uint8Array({ maxLength: 8 })).map(([m, b]) => Buffer.concat([Buffer.from(m, 'latin1'), Buffer.from(b)])));
    fc.assert(fc.property(bytes, opts, (b, o) => checkHl7Transport(b, o)), params());
  });
  it('MSH then random text (other delimiters too)', () => {
    const any = fc.tuple(fc.constantFrom('MSH|^~\\&|', 'MSH#$%*!|', 'MSH|^~\\&#|', 'MSH|^~\\|', 'MSH||||'), fc.string({ unit: 'binary', maxLength: 300 })).map(([a, b]) => a + b);
    fc.assert(fc.property(any, (m) => checkHl7(m)), params());
  });
});

// ---------------------------------------------------------------- MLLP

describe('fuzz: MLLP decoder (issue 10 part 8)', () => {
  const payload = fc.uint8Array({ maxLength: 200 }).map((a) => Buffer.from(a.filter((b) => b !== 0x0b && b !== 0x1c)));
  const piece = fc.oneof(
    { weight: 4, arbitrary: payload.map((p) => encodeMllp(p)) },
    { weight: 1, arbitrary: fc.uint8Array({ maxLength: 40 }).map((a) => Buffer.from(a)) }, // junk, stray VT / FS
    { weight: 1, arbitrary: fc.constantFrom(Buffer.from([0x0b]), Buffer.from([0x1c]), Buffer.from([0x1c, 0x0d]), Buffer.from('\r\n'), Buffer.alloc(5000, 0x41)) },
  );
  it('random frames in random chunks: the same frames as pushed whole', () => {
    fc.assert(
      fc.property(fc.array(piece, { maxLength: 8 }), fc.array(fc.nat({ max: 20_000 }), { maxLength: 12 }), (pieces, cuts) => checkMllp(Buffer.concat(pieces), cuts)),
      params(),
    );
  });
});

// ---------------------------------------------------------------- ASTM

describe('fuzz: ASTM frames, link, records and results (issue 10 part 8)', () => {
  const frameLike = fc.oneof(
    fc.uint8Array({ maxLength: 300 }).map((a) => Buffer.from(a)),
    fc.tuple(fc.nat({ max: 7 }), fc.uint8Array({ maxLength: 200 }), fc.boolean()).map(([fn, t, last]) => encodeFrame(fn, Buffer.from(t), last)),
  );
  it('parseFrame: any bytes, never a throw; an encoded frame parses back', () => {
    fc.assert(fc.property(frameLike, (b) => checkAstmFrame(b)), params());
  });

  const linkBytes = fc.array(
    fc.oneof(
      frameLike,
      fc.constantFrom(Buffer.from([0x05]), Buffer.from([0x04]), Buffer.from([0x06]), Buffer.from([0x15]), Buffer.from('H|\\^&\rL|1\r')),
      fc.tuple(fc.nat({ max: 7 }), fc.constantFrom('H|\\^&|||A\r', 'R|1|^^^GLU|5|mg/dL||N||F\r', 'L|1|N\r', 'O|1|S1\r')).map(([fn, t]) => encodeFrame(fn, Buffer.from(t), true)),
    ),
    { maxLength: 10 },
  );
  it('AstmLink: random bytes in random order never crash and always drain', async () => {
    await fc.assert(fc.asyncProperty(linkBytes, (chunks) => checkAstmLink(chunks)), params(Math.min(FUZZ_RUNS, 200)));
  });

  const astmField = fc.array(fc.oneof(fc.stringMatching(/^[A-Za-z0-9 .<>\-]{0,6}$/), fc.constantFrom('^', '\\', '&', '&F&', '&X41&', '&', '|', 'é', '\u0301')), { maxLength: 4 }).map((a) => a.join(''));
  const record = fc.oneof(
    fc.tuple(fc.constantFrom('P', 'O', 'R', 'C', 'Q', 'L', 'M', 'S', 'X', 'r', ''), fc.array(astmField, { maxLength: 14 })).map(([t, f]) => [t, '1', ...f].join('|')),
    fc.constantFrom('R|1|^^^GLU|5.4|mmol/L|3.9^6.1|N||F||||20240101120000', 'O|1|S1||^^^GLU|R||||||Q', 'Q|1|^S1||ALL||||||||O', 'R|1|^^^717/2|<0.5|||H\\L||W'),
  );
  const astmMessage = fc
    .tuple(fc.constantFrom('H|\\^&|||ANALYZER^1|||||||P|1|20240101', 'H|\\^&', 'H', 'H!@#$', 'h|\\^&|||A', 'X|\\^&'), fc.array(record, { maxLength: 10 }), fc.constantFrom('\r', '\n', '\r\n'))
    .map(([h, recs, t]) => [h, ...recs].join(t));
  it('records + results: only ParseError', () => {
    fc.assert(fc.property(astmMessage, (m) => checkAstmRecords(m)), params());
  });
});

// ---------------------------------------------------------------- charsets

describe('fuzz: charset decode (issue 10 part 8)', () => {
  it('any bytes in any supported charset: text (NFC) or CharsetError', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 200 }), fc.constantFrom(...CHARSET_NAMES), fc.constantFrom('', 'UNICODE UTF-8', '8859/1', 'CP1258', 'XYZ'), (bytes, cs, msh18) => {
        checkCharset(Buffer.concat([Buffer.from(`MSH|^~\\&|A|B|C|D|20240101||ORU^R01|1|P|2.5.1|||||VNM|${msh18}\r`, 'latin1'), Buffer.from(bytes)]), cs);
        checkCharset(Buffer.from(bytes), cs);
      }),
      params(),
    );
  });
});
