/**
 * Fuzz / property tests of the MQTT device path (issue 12, as issue 10 part 8 for the other parsers):
 * - payloads (vitals, alarms): valid-looking JSON damaged in every field, and random bytes. Only PayloadError
 *   may be thrown; an accepted payload keeps every value exactly as sent, one draft per entry, an unknown code
 *   or unit is kept and flagged; what the validator accepts, the shipped JSON Schema accepts (ajv 2020-12).
 * - the broker: random bytes and random PUBLISH packets after a valid CONNECT never take it down; every QoS 1
 *   publish is answered by a PUBACK or a closed connection, and a good device still gets its PUBACK afterwards.
 * Fixed seed and bounded runs (fuzz-config.ts); FUZZ_RUNS / FUZZ_SEED run longer or another sequence.
 */
import fc from 'fast-check';
import net from 'node:net';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import Ajv2020 from 'ajv/dist/2020';
import mqtt from 'mqtt';
import { normalizeAlarms, normalizeVitals, PayloadError } from '../../drivers/mqtt/payload';
import { MqttBroker } from '../../drivers/mqtt/broker';
import { lookupVital } from '../../gateway/src/vitals/code-map';
import { GatewayStore } from '../../gateway/src/store/gateway-store';
import { tempDir } from '../helpers/env';
import { FUZZ_RUNS, FUZZ_SEED, FUZZ_TIME_LIMIT_MS } from './fuzz-config';

const params = (runs = FUZZ_RUNS) => ({ seed: FUZZ_SEED, numRuns: runs, interruptAfterTimeLimit: FUZZ_TIME_LIMIT_MS, markInterruptAsFailure: false });
const ROOT = join(__dirname, '..', '..');
const ajv = new Ajv2020({ strict: false, validateFormats: false });
const vitalsSchema = JSON.parse(readFileSync(join(ROOT, 'docs', 'schemas', 'vitals.schema.json'), 'utf8'));
ajv.addSchema(vitalsSchema, 'vitals.schema.json');
const schemaVitals = ajv.compile(vitalsSchema);
const schemaAlarms = ajv.compile(JSON.parse(readFileSync(join(ROOT, 'docs', 'schemas', 'alarms.schema.json'), 'utf8')));
const ctx = { clientId: 'bed-01', receivedAt: new Date('2026-11-30T10:00:00Z') };

const odd = fc.constantFrom<unknown>(null, true, [], {}, '', ' ', 'NaN', -1, 1.5, 1e300, '\u0000', 'é', '\ud83d\ude00', 'x'.repeat(300), { $ref: '#' }, ['a']);
const code = fc.oneof(
  fc.constantFrom('MDC_PULS_OXIM_SAT_O2', 'MDC_ECG_HEART_RATE', 'MDC_PRESS_BLD_NONINV_SYS', '150456', '2::19384', 'MDC_NOT_REAL', 'VENDOR-X', 'MDCX_ODD', '0', '4294967295', '99999999999'),
  fc.integer({ min: 0, max: 4294967295 }),
  odd,
);
const unit = fc.oneof(fc.constantFrom('%', '/min', 'mm[Hg]', 'MDC_DIM_MMHG', '266016', 'Cel', 'mmHg', 'bpm', 'percent', 'kPa', '10*3/uL', '{beats}/min'), odd);
const time = fc.oneof(
  fc.date({ min: new Date('2000-01-01'), max: new Date('2100-01-01'), noInvalidDate: true }).map((d) => d.toISOString()),
  fc.constantFrom('2026-11-30T10:15:00+07:00', '2026-11-30T10:15:00', '2026-13-40T99:99:99Z', '2026-11-30 10:15:00Z', 'yesterday', ''),
  odd,
);
const maybe = <T>(a: fc.Arbitrary<T>) => fc.option(a, { nil: undefined, freq: 3 });
const observation = fc.record({ code: maybe(code), value: maybe(fc.oneof(fc.double({ noNaN: true, noDefaultInfinity: true }), odd)), unit: maybe(unit), time: maybe(time), containment: maybe(fc.constantFrom('1.3.1.150456', '1', '1.2.3.4.5.6', 'a.b')), extra: maybe(odd) }, { requiredKeys: [] });
const envelope = {
  time: maybe(time),
  bed: maybe(fc.oneof(fc.constantFrom('ICU1-03', 'Giường 5'), odd)),
  eui64: maybe(fc.constantFrom('00A037009A0053DE', '00a037009a0053de', '00A037', 'ZZZZZZZZZZZZZZZZ')),
  patient: maybe(fc.oneof(fc.record({ id: maybe(fc.oneof(fc.constantFrom('12345', 'BN001'), odd)), idType: maybe(fc.constantFrom('MR', 'NNVNM')) }, { requiredKeys: [] }), odd)),
  extra: maybe(odd),
};
const strip = (o: Record<string, unknown>) => Object.fromEntries(Object.entries(o).filter(([k, v]) => v !== undefined && (k !== 'extra' || v !== undefined)));
const vitalsPayload = fc.record({ ...envelope, observations: maybe(fc.oneof(fc.array(observation.map(strip), { maxLength: 12 }), odd)) }, { requiredKeys: [] }).map(strip);
const alarm = fc.record({ id: maybe(fc.oneof(fc.constantFrom('A-1', 'x'), odd)), source: maybe(code), event: maybe(code), priority: maybe(fc.oneof(fc.constantFrom('PH', 'PM', 'PL', 'PN', 'HIGH', 'ph'), odd)), phase: maybe(fc.constantFrom('start', 'end', 'continue', 'begin')), state: maybe(fc.constantFrom('active', 'inactive', 'latched', 'on')), kind: maybe(fc.constantFrom('physiological', 'technical', 'other')), text: maybe(fc.oneof(fc.string(), odd)), value: maybe(fc.oneof(fc.double({ noNaN: true, noDefaultInfinity: true }), odd)), unit: maybe(unit) }, { requiredKeys: [] }).map(strip);
const alarmsPayload = fc.record({ ...envelope, alarms: maybe(fc.oneof(fc.array(alarm, { maxLength: 6 }), odd)) }, { requiredKeys: [] }).map(strip);

/** the validator's contract on one input */
function check(kind: 'vitals' | 'alarms', payload: unknown, raw: Buffer): void {
  let n;
  try {
    n = kind === 'vitals' ? normalizeVitals(raw, ctx) : normalizeAlarms(raw, ctx);
  } catch (e) {
    if (!(e instanceof PayloadError)) throw e;
    expect(e.path).toMatch(/^(\/[A-Za-z0-9_$]+)*$/);
    return;
  }
  const p = payload as Record<string, any>;
  // accepted → the shipped schema accepts it too (the validator may be stricter, never looser)
  expect(kind === 'vitals' ? schemaVitals(p) : schemaAlarms(p), JSON.stringify((kind === 'vitals' ? schemaVitals : schemaAlarms).errors)).toBe(true);
  const list = kind === 'vitals' ? p.observations : p.alarms;
  expect(n.drafts.length).toBe(list.length);
  n.drafts.forEach((d, i) => {
    const src = list[i];
    const c = String(kind === 'vitals' ? src.code : (src.event ?? src.source));
    const known = lookupVital(c);
    expect(d.code.code).toBe(known ? known.mdc.code : c);
    if (!known) expect(d.quality?.some((q) => q.code === 'unmapped-code' && q.original === c)).toBe(true);
    if (src.value !== undefined) expect(d.value).toMatchObject({ kind: 'quantity', value: src.value });
    if (kind === 'alarms') expect(d.alarm?.priority).toBe(src.priority);
    expect(d.equipment?.id).toBe('bed-01');
    expect(Number.isNaN(Date.parse(d.effectiveAt!))).toBe(false);
  });
}

describe('MQTT payload fuzz', () => {
  it('vitals: structured damage', () => {
    fc.assert(fc.property(vitalsPayload, (p) => check('vitals', p, Buffer.from(JSON.stringify(p)))), params());
  });
  it('alarms: structured damage', () => {
    fc.assert(fc.property(alarmsPayload, (p) => check('alarms', p, Buffer.from(JSON.stringify(p)))), params());
  });
  it('random bytes and truncated JSON only ever give PayloadError', () => {
    fc.assert(
      fc.property(fc.oneof(fc.uint8Array({ maxLength: 300 }).map((b) => Buffer.from(b)), vitalsPayload.chain((p) => fc.nat({ max: 400 }).map((k) => Buffer.from(JSON.stringify(p).slice(0, k))))), (raw) => {
        for (const f of [normalizeVitals, normalizeAlarms]) {
          try {
            f(raw, ctx);
          } catch (e) {
            expect(e).toBeInstanceOf(PayloadError);
          }
        }
      }),
      params(),
    );
  });
  it('a payload at the limits is handled in linear time (200 observations, long strings)', () => {
    const payload = (n: number) =>
      Buffer.from(JSON.stringify({ time: '2026-11-30T10:00:00Z', bed: 'b'.repeat(64), observations: Array.from({ length: n }, (_, i) => ({ code: i % 2 ? 'MDC_ECG_HEART_RATE' : `MDC_UNKNOWN_${i}`, value: i, unit: i % 3 ? '/min' : 'u'.repeat(64) })) }));
    const [small, big] = [payload(20), payload(200)];
    // the best of 15 interleaved runs each: a run the scheduler interrupted (a loaded 2-core CI box) is not the
    // minimum; the two sizes see the same machine, so their ratio does not depend on its speed or load
    const best = { small: Infinity, big: Infinity };
    for (let k = 0; k < 15; k++) {
      let t0 = performance.now();
      normalizeVitals(small, ctx);
      best.small = Math.min(best.small, performance.now() - t0);
      t0 = performance.now();
      normalizeVitals(big, ctx);
      best.big = Math.min(best.big, performance.now() - t0);
    }
    // 10× the observations: linear costs ~10× (fixed per-payload work makes it less), quadratic ~100×
    expect(best.big, `20 observations ${best.small.toFixed(2)} ms, 200: ${best.big.toFixed(2)} ms`).toBeLessThan(30 * best.small);
    // and a payload at the limits stays far from a long task even on a slow box (the old absolute bound)
    expect(best.big).toBeLessThan(50);
  });
});

describe('MQTT broker fuzz (real socket, real store)', () => {
  const t = tempDir('iomt-mqtt-fuzz-');
  let store: GatewayStore;
  let broker: MqttBroker;
  let port: number;
  let pw: string;
  beforeAll(async () => {
    store = GatewayStore.open({ dataDir: t.dir });
    broker = new MqttBroker({ deviceId: 'fuzz', dataDir: t.dir, host: '127.0.0.1', port: 0, maxPerAddress: 1000 }, store);
    pw = (await broker.credentials.add('bed-01')).password;
    port = (await broker.start()).port!;
  });
  afterAll(async () => {
    await broker.close();
    await store.close();
    t.cleanup();
  });

  /** CONNECT (MQTT 3.1.1, clean session, user = client id) */
  const connectPacket = (id: string, password: string) => {
    const s = (x: string) => {
      const b = Buffer.from(x);
      return Buffer.concat([Buffer.from([b.length >> 8, b.length & 255]), b]);
    };
    const body = Buffer.concat([s('MQTT'), Buffer.from([4, 0xc2, 0, 30]), s(id), s(id), s(password)]);
    return Buffer.concat([Buffer.from([0x10, body.length]), body]);
  };
  const publishPacket = (topic: string, payload: Buffer, mid: number) => {
    const tb = Buffer.from(topic);
    const body = Buffer.concat([Buffer.from([tb.length >> 8, tb.length & 255]), tb, Buffer.from([mid >> 8, mid & 255]), payload]);
    const len: number[] = [];
    let x = body.length;
    do {
      let byte = x % 128;
      x = Math.floor(x / 128);
      if (x > 0) byte |= 128;
      len.push(byte);
    } while (x > 0);
    return Buffer.concat([Buffer.from([0x32, ...len]), body]);
  };

  it('random PUBLISH packets and random bytes after CONNECT: each QoS 1 publish gets PUBACK or a close; the broker lives on', async () => {
    await fc.assert(
      fc.asyncProperty(
        // publishes, then (maybe) garbage: garbage before a publish can announce a long packet that swallows it
        fc.tuple(
          fc.array(fc.record({ topic: fc.constantFrom('iomt/bed-01/vitals', 'iomt/bed-01/alarms', 'iomt/bed-01/x', 'iomt/bed-01/status', 'iomt/bed-02/vitals', 'iomt/bed-01/errors'), payload: fc.oneof(vitalsPayload.map((p) => Buffer.from(JSON.stringify(p))), fc.uint8Array({ maxLength: 64 }).map((b) => Buffer.from(b))) }), { minLength: 1, maxLength: 4 }),
          fc.array(fc.uint8Array({ minLength: 1, maxLength: 32 }).map((b) => Buffer.from(b)), { maxLength: 2 }),
        ).map(([pubs, junk]) => [...pubs, ...junk] as Array<Buffer | { topic: string; payload: Buffer }>),
        async (items) => {
          const sock = net.connect(port, '127.0.0.1');
          let got = Buffer.alloc(0);
          sock.on('data', (d) => (got = Buffer.concat([got, d])));
          const closed = new Promise<void>((r) => sock.once('close', () => r()));
          sock.on('error', () => {});
          sock.write(connectPacket('bed-01', pw));
          let mid = 1;
          const sent: number[] = [];
          for (const it of items) {
            if (Buffer.isBuffer(it)) sock.write(it);
            else {
              sent.push(mid);
              sock.write(publishPacket(it.topic, it.payload, mid++));
            }
          }
          await Promise.race([closed, new Promise((r) => setTimeout(r, 1500))]);
          const pubacks = new Set<number>();
          for (let i = 0; i + 3 < got.length; i++) if (got[i] === 0x40 && got[i + 1] === 2) pubacks.add(got.readUInt16BE(i + 2));
          const isClosed = sock.destroyed || sock.readableEnded;
          // either every QoS 1 publish was acknowledged, or the connection was closed (no negative PUBACK in 3.1.1)
          expect(isClosed || sent.every((m) => pubacks.has(m))).toBe(true);
          sock.destroy();
        },
      ),
      { ...params(Math.min(FUZZ_RUNS, 60)) },
    );
    // garbage anywhere, a huge announced length, a CONNECT that never ends: the broker lives on
    for (const junk of [Buffer.from([0x30, 0xff, 0xff, 0xff, 0x7f]), Buffer.from([0x10, 0xff, 0xff, 0x7f]), Buffer.from([0xb0, 0xa7, 0x92, 0x46, 0xfd])]) {
      const sock = net.connect(port, '127.0.0.1');
      sock.on('error', () => {});
      const closed = new Promise<void>((r) => sock.once('close', () => r()));
      if (junk[0] !== 0x10) sock.write(connectPacket('bed-01', pw));
      sock.write(junk);
      // an announced length over the limit closes the connection at once (not after buffering it)
      await Promise.race([closed, new Promise((_r, j) => setTimeout(() => j(new Error('not closed')), 3000))]);
    }
    // the broker still serves a good device
    const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: 'bed-01', username: 'bed-01', password: pw, protocolVersion: 4, reconnectPeriod: 0 });
    await c.publishAsync('iomt/bed-01/vitals', JSON.stringify({ time: '2026-11-30T10:00:00Z', observations: [{ code: 150456, value: 97, unit: '%' }] }), { qos: 1 });
    await c.endAsync();
  }, 120_000);
});
