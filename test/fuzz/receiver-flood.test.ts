/**
 * Issue 10 part 1 over TCP: a 40 KB message with 20,000 repetitions (PID-3, OBX-5, OBX-8) or 20,000
 * components sent to a real Hl7Receiver is answered within 2 s, and a second connection's small message
 * is answered meanwhile. With the default limits the answer is AE (ERR-3 Table 0357 code, ERR-2
 * location, the reason) and the message is quarantined; with the limits lifted the linear parser still
 * answers AA in time. The event loop is watched (perf_hooks) the whole time.
 */
import net from 'node:net';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { CommitResult, InboundMessage, ObservationSink, QuarantineInput } from '../../gateway/src/contracts/driver';
import { createRootLogger } from '../../gateway/src/log/logger';
import { parseAck } from '../../drivers/hl7-mllp/ack';
import { NO_HL7_LIMITS, type Hl7Limits } from '../../drivers/hl7-mllp/hl7-message';
import { Hl7Receiver } from '../../drivers/hl7-mllp/hl7-receiver';
import { encodeMllp, MllpDecoder } from '../../drivers/hl7-mllp/mllp-decoder';
import { freePort } from '../helpers/env';

class MemorySink implements ObservationSink {
  readonly messages: InboundMessage[] = [];
  readonly quarantined: QuarantineInput[] = [];
  async submit(msg: InboundMessage): Promise<CommitResult> {
    this.messages.push(msg);
    return { messageId: this.messages.length, messageUid: `u${this.messages.length}`, duplicate: false, observations: [] };
  }
  async quarantine(q: QuarantineInput): Promise<number> {
    this.quarantined.push(q);
    return this.quarantined.length;
  }
}

/** Send one framed message on a new connection; resolves with the ACK text and the time it took. */
function exchange(port: number, payload: string): Promise<{ ack: string; ms: number }> {
  return new Promise((resolve, reject) => {
    const t0 = performance.now();
    const s = net.connect(port, '127.0.0.1');
    const dec = new MllpDecoder();
    const timer = setTimeout(() => {
      s.destroy();
      reject(new Error('no ACK within 10 s'));
    }, 10_000);
    s.on('connect', () => s.write(encodeMllp(Buffer.from(payload, 'utf8'))));
    s.on('data', (d) => {
      for (const ev of dec.push(d)) {
        if (ev.type !== 'frame') continue;
        clearTimeout(timer);
        s.destroy();
        resolve({ ack: ev.payload.toString('utf8'), ms: performance.now() - t0 });
      }
    });
    s.on('error', (e) => {
      clearTimeout(timer);
      reject(e);
    });
  });
}

const MSH = (id: string) => `MSH|^~\\&|ANALYZER|LAB|GW|HOSP|20240101120000||ORU^R01|${id}|P|2.5.1`;
const message = (id: string, o: { pid3?: string; obx5?: string; obx2?: string; obx8?: string } = {}) =>
  [
    MSH(id),
    `PID|1||${o.pid3 ?? 'P1^^^HOSP^MR'}||DOE^JOHN||19800101|M`,
    'OBR|1|PL1|FL1|24331-1^Lipid panel^LN',
    `OBX|1|${o.obx2 ?? 'NM'}|2093-3^Cholesterol^LN||${o.obx5 ?? '4.2'}|mg/dL|<200|${o.obx8 ?? 'N'}|||F`,
  ].join('\r');

const N = 20_000;
const reps = (unit: string, sep: string) => Array.from({ length: N }, () => unit).join(sep);

/** The attack variants of issue 10; each is ~40 KB or more. `field` is the ERR-2 location expected with the default limits. */
const VARIANTS: Array<{ name: string; text: (id: string) => string; location: string; what: string }> = [
  { name: 'PID-3 with 20,000 repetitions', text: (id) => message(id, { pid3: reps('1', '~') }), location: 'PID^1^3', what: 'repetitions' },
  { name: 'OBX-5 (ST) with 20,000 repetitions', text: (id) => message(id, { obx2: 'ST', obx5: reps('a', '~') }), location: 'OBX^1^5', what: 'repetitions' },
  { name: 'OBX-5 (NM) with 20,000 repetitions', text: (id) => message(id, { obx5: reps('1', '~') }), location: 'OBX^1^5', what: 'repetitions' },
  { name: 'OBX-8 with 20,000 repetitions', text: (id) => message(id, { obx8: reps('H', '~') }), location: 'OBX^1^8', what: 'repetitions' },
  { name: 'OBX-5 with 20,000 components', text: (id) => message(id, { obx5: reps('1', '^') }), location: 'OBX^1^5', what: 'components' },
  { name: 'PID-3 with 20,000 subcomponents', text: (id) => message(id, { pid3: `P1^^^${reps('H', '&')}^MR` }), location: 'PID^1^3', what: 'subcomponents' },
];

describe('one message never freezes the receiver (issue 10 part 1)', () => {
  let rx: Hl7Receiver | undefined;
  beforeAll(() => {
    createRootLogger('silent');
  });
  afterEach(async () => {
    await rx?.close();
    rx = undefined;
  });

  async function start(limits?: Partial<Hl7Limits>): Promise<{ port: number; sink: MemorySink }> {
    const sink = new MemorySink();
    const port = await freePort();
    rx = new Hl7Receiver({ deviceId: 'flood-1', host: '127.0.0.1', port, idleTimeoutMs: 60_000, maxConnections: 16, ...(limits ? { limits } : {}) }, sink);
    await rx.start();
    return { port, sink };
  }

  /** Big message on one connection, a small one on a second meanwhile; both answered within 2 s; loop delay watched. */
  async function flood(port: number, big: string, id: string) {
    const h = monitorEventLoopDelay({ resolution: 5 });
    h.enable();
    const bigP = exchange(port, big);
    const smallP = new Promise((r) => setTimeout(r, 5)).then(() => exchange(port, message(`${id}-small`)));
    const [b, s] = await Promise.all([bigP, smallP]);
    h.disable();
    expect(Buffer.byteLength(big)).toBeGreaterThanOrEqual(40_000);
    expect(b.ms, 'the big message is answered within 2 s').toBeLessThan(2_000);
    expect(s.ms, 'the small message on another connection is answered within 2 s').toBeLessThan(2_000);
    expect(parseAck(s.ack)).toMatchObject({ code: 'AA', controlId: `${id}-small` });
    return { big: parseAck(b.ack), maxLoopDelayMs: h.max / 1e6 };
  }

  for (const v of VARIANTS) {
    it(`${v.name}: AE within 2 s (default limits: ParseError with location and Table 0357 102), quarantined; a second connection is answered meanwhile`, async () => {
      const { port, sink } = await start();
      const r = await flood(port, v.text('BIG1'), 'C1');
      expect(r.big).toMatchObject({ code: 'AE', controlId: 'BIG1', hl7ErrorCode: 102, location: v.location });
      expect(r.big.errorText).toContain(v.what);
      expect(r.big.errorText).toContain('limit');
      expect(sink.quarantined).toHaveLength(1);
      expect(sink.quarantined[0].raw.length).toBeGreaterThanOrEqual(40_000); // the whole message is kept
      expect(sink.messages.map((m) => m.sourceMessageId)).toEqual(['C1-small']);
      // the failure guarded is a parse holding the loop for seconds (issue 10: 64 s); a loaded 2-core CI box adds
      // scheduling noise to the histogram (52 ms measured at load 7), so the bound is 500 ms like the lifted case
      expect(r.maxLoopDelayMs, 'no long task on the event loop').toBeLessThan(500);
    });

    it(`${v.name}: with the limits lifted, the linear parser still answers AA within 2 s`, async () => {
      const { port, sink } = await start(NO_HL7_LIMITS);
      const r = await flood(port, v.text('BIG2'), 'C2');
      expect(r.big).toMatchObject({ code: 'AA', controlId: 'BIG2' });
      expect(sink.messages.map((m) => m.sourceMessageId).sort()).toEqual(['BIG2', 'C2-small']);
      expect(r.maxLoopDelayMs, 'no long task on the event loop').toBeLessThan(500);
    });
  }

  it('too many segments: AE 100 at the first segment over the limit', async () => {
    const { port, sink } = await start({ maxSegments: 50 });
    const big = [message('SEG1'), ...Array.from({ length: 2_000 }, (_, i) => `OBX|${i + 2}|NM|2093-3^Cholesterol^LN||4.2|mg/dL|<200|N|||F`)].join('\r');
    const r = await flood(port, big, 'C3');
    expect(r.big).toMatchObject({ code: 'AE', controlId: 'SEG1', hl7ErrorCode: 100, location: 'OBX^48' });
    expect(r.big.errorText).toContain('more than 50 segments');
    expect(sink.quarantined).toHaveLength(1);
  });
});
