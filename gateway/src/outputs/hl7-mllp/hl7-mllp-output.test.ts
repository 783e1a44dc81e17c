import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import type { Observation } from '../../contracts/observation';
import type { OutboxEntry } from '../../contracts/output';
import { ConfigError } from '../../contracts/errors';
import { createRootLogger } from '../../log/logger';
import { freePort } from '../../../../test/helpers/env';
import { buildAck } from '../../../../drivers/hl7-mllp/ack';
import { parseHl7, readHeader } from '../../../../drivers/hl7-mllp/hl7-message';
import { MllpServer } from '../../../../drivers/hl7-mllp/mllp-server';
import { controlIdForKey, Hl7MllpOutput } from './hl7-mllp-output';
import { hl7MllpOutputDefinition } from './index';

type Mode = 'AA' | 'AE' | 'AR' | 'silence' | 'close' | 'wrong-id';

/** An in-test HIS: answers every ORU according to `mode`, records the MSH-10s it saw. */
class FakeHis {
  mode: Mode = 'AA';
  seen: string[] = [];
  server: MllpServer;
  constructor(port: number) {
    this.server = new MllpServer({ host: '127.0.0.1', port, closeTimeoutMs: 200 }, async (payload) => {
      const h = readHeader(parseHl7(payload.toString('utf8')));
      this.seen.push(h.controlId);
      const mode = this.mode;
      if (mode === 'silence') return new Promise<Buffer>(() => undefined);
      if (mode === 'close') throw new Error('HIS closes the connection');
      if (mode === 'wrong-id') return Buffer.from(buildAck({ request: { ...h, controlId: 'OTHER' }, code: 'AA', controlId: 'H1' }));
      const error = mode === 'AA' ? undefined : { location: 'PID^1^3', hl7Code: mode === 'AE' ? 101 : 200, text: mode === 'AE' ? 'patient unknown' : 'not accepted' };
      return Buffer.from(buildAck({ request: h, code: mode, controlId: 'H1', error }));
    });
  }
}

const OBS: Observation[] = [
  {
    id: 'u1-1', messageId: 1, messageUid: 'u1', seq: 1, deviceId: 'erba-1', driver: 'hl7-mllp', receivedAt: '2025-03-01T02:31:00.000Z',
    code: { system: 'http://loinc.org', code: '718-7', display: 'HGB' }, value: { kind: 'quantity', value: 11.6, unit: 'g/dL' },
    interpretation: ['L'], status: 'final', subject: { patientId: 'BN1', specimenId: 'S1' },
  },
];

describe('Hl7MllpOutput against an in-test HIS', () => {
  let his: FakeHis | undefined;
  let out: Hl7MllpOutput | undefined;
  beforeAll(() => createRootLogger('silent'));
  afterEach(async () => {
    await out?.close();
    await his?.server.close();
    out = his = undefined;
  });

  async function setup(opts: Partial<ConstructorParameters<typeof Hl7MllpOutput>[0]> = {}) {
    const port = await freePort();
    his = new FakeHis(port);
    await his.server.start();
    out = new Hl7MllpOutput({ destination: 'his', host: '127.0.0.1', port, ackTimeoutMs: 300, ...opts });
    return { his, out, port };
  }
  const entry = (o: Hl7MllpOutput, id: number, key: string): OutboxEntry => ({ id, destination: 'his', key, payload: o.prepare(OBS, key).payload, attempts: 0, createdAt: 0 });
  const signal = () => new AbortController().signal;

  it('prepare: deterministic bytes, MSH-10 from the key (≤ 20 chars as is, else base32 hash)', async () => {
    const o = new Hl7MllpOutput({ destination: 'his', host: '127.0.0.1', port: 1 });
    const a = o.prepare(OBS, 'u1');
    expect(a.payload.equals(o.prepare(JSON.parse(JSON.stringify(OBS)), 'u1').payload)).toBe(true);
    expect(readHeader(parseHl7(a.payload.toString())).controlId).toBe('u1');
    const long = controlIdForKey('01J8Z2X7K9QW3E5R6T7Y8U9I0O-very-long-key');
    expect(long).toMatch(/^[A-Z2-7]{20}$/);
    expect(controlIdForKey('01J8Z2X7K9QW3E5R6T7Y8U9I0O-very-long-key')).toBe(long);
    expect(controlIdForKey('a|b')).toMatch(/^[A-Z2-7]{20}$/);
    await o.close();
  });

  it('AA → delivered (one connection kept open for the batch)', async () => {
    const { his, out } = await setup();
    const res = await out.write([entry(out, 1, 'k1'), entry(out, 2, 'k2')], signal());
    expect(res).toEqual([
      { id: 1, outcome: 'delivered', detail: 'AA' },
      { id: 2, outcome: 'delivered', detail: 'AA' },
    ]);
    expect(his.seen).toEqual(['k1', 'k2']);
    expect(his.server.connectionCount).toBe(1);
  });

  it('AE → dead with the reason; with aeRetryable → retry; AR → dead unless arRetryable', async () => {
    const { his, out } = await setup();
    his.mode = 'AE';
    expect(await out.write([entry(out, 1, 'k1')], signal())).toEqual([{ id: 1, outcome: 'dead', error: 'AE: patient unknown' }]);
    his.mode = 'AR';
    expect(await out.write([entry(out, 2, 'k2')], signal())).toEqual([{ id: 2, outcome: 'dead', error: 'AR: not accepted' }]);
    const o2 = new Hl7MllpOutput({ destination: 'his2', host: '127.0.0.1', port: out.config.port, aeRetryable: true, arRetryable: true });
    his.mode = 'AE';
    expect((await o2.write([entry(o2, 3, 'k3')], signal()))[0].outcome).toBe('retry');
    his.mode = 'AR';
    expect((await o2.write([entry(o2, 4, 'k4')], signal()))[0].outcome).toBe('retry');
    await o2.close();
  });

  it('silence → retry on ACK timeout, rest of the batch not attempted; re-delivery carries the same MSH-10', async () => {
    const { his, out } = await setup();
    his.mode = 'silence';
    const batch = [entry(out, 1, 'k1'), entry(out, 2, 'k2')];
    const res = await out.write(batch, signal());
    expect(res[0]).toMatchObject({ id: 1, outcome: 'retry' });
    expect(res[0].outcome === 'retry' && res[0].error).toMatch(/ACK timeout/);
    expect(res[1]).toMatchObject({ id: 2, outcome: 'unavailable' });
    his.mode = 'AA';
    // the worker re-delivers the stored payload: identical bytes, identical MSH-10
    const again = await out.write(batch, signal());
    expect(again.map((r) => r.outcome)).toEqual(['delivered', 'delivered']);
    expect(his.seen).toEqual(['k1', 'k1', 'k2']);
  });

  it('HIS closes the connection → retry; the next write reconnects', async () => {
    const { his, out } = await setup();
    his.mode = 'close';
    const res = await out.write([entry(out, 1, 'k1'), entry(out, 2, 'k2')], signal());
    expect(res.map((r) => r.outcome)).toEqual(['retry', 'unavailable']);
    his.mode = 'AA';
    expect((await out.write([entry(out, 1, 'k1')], signal()))[0].outcome).toBe('delivered');
  });

  it('an ACK for another MSH-10 → retry (connection reset)', async () => {
    const { his, out } = await setup();
    his.mode = 'wrong-id';
    expect((await out.write([entry(out, 1, 'k1')], signal()))[0]).toMatchObject({ outcome: 'retry' });
    his.mode = 'AA';
    expect((await out.write([entry(out, 1, 'k1')], signal()))[0].outcome).toBe('delivered');
  });

  it('connection refused → every entry unavailable (attempts not used up)', async () => {
    const port = await freePort();
    out = new Hl7MllpOutput({ destination: 'his', host: '127.0.0.1', port });
    const res = await out.write([entry(out, 1, 'k1'), entry(out, 2, 'k2')], signal());
    expect(res.map((r) => r.outcome)).toEqual(['unavailable', 'unavailable']);
    await expect(out.connect(signal())).rejects.toThrow(/ECONNREFUSED/);
  });

  it('definition.create validates and lists every problem', () => {
    expect(() => hl7MllpOutputDefinition.create({ destination: '', host: '', port: 0 })).toThrow(ConfigError);
    try {
      hl7MllpOutputDefinition.create({ destination: '', host: '', port: 0 });
    } catch (e) {
      expect((e as ConfigError).problems.map((p) => p.path)).toEqual(['destination', 'host', 'port']);
    }
    expect(hl7MllpOutputDefinition.create({ destination: 'd', host: 'h', port: 2575 }).config).toMatchObject({ ackTimeoutMs: 30000, connectTimeoutMs: 10000, aeRetryable: false, arRetryable: false, sendingApp: 'IOMT-GW' });
  });
});
