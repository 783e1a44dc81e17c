/**
 * gateway/src/outputs/hl7-mllp/hl7-out-node.ts without Node-RED: configuration → output options and
 * outbox policy (defaults, templates, TLS files), each bad setting refused with its reason and status
 * detail, and the input handler against a real store on disk: one outbox entry per inbound message
 * (a re-emitted one is not queued twice), done() only after the append, a processing id this
 * destination does not take counted and not queued, a message not from a device node refused.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../../../../test/helpers/env';
import type { Observation } from '../../contracts/observation';
import { createRootLogger } from '../../log/logger';
import { metrics } from '../../metrics/registry';
import { NodeStartError, type RedNode } from '../../node-red/device-node';
import { GatewayStore } from '../../store/gateway-store';
import { Hl7MllpOutput } from './hl7-mllp-output';
import { destinationOf, hl7OutInput, hl7OutSettings, type Hl7OutConfig } from './hl7-out-node';

const tmp = tempDir('hl7-out-node-');
afterAll(() => tmp.cleanup());

describe('iomt-hl7-out configuration → output options and outbox policy', () => {
  it('defaults', () => {
    const s = hl7OutSettings({ id: 'n1' });
    expect(s.output).toEqual({
      destination: 'n1', host: '127.0.0.1', port: 2576, tls: undefined, ackTimeoutMs: 30_000, aeRetryable: false,
      sendingApp: undefined, sendingFacility: undefined, receivingApp: undefined, receivingFacility: undefined,
    });
    expect([...s.processingIds]).toEqual(['P']);
    expect(s.policy).toEqual({ strictOrder: false, maxAttempts: 10, maxAgeMs: 168 * 3600_000 });
    expect(s.unavailableBackoffMs).toEqual({ base: 1000, max: 30_000 });
  });

  it('set values, ${ENV} templates and TLS files', () => {
    process.env.H_HL7OUT_HOST = 'his.example';
    const ca = join(tmp.dir, 'ca.pem');
    writeFileSync(ca, 'CA');
    const s = hl7OutSettings({
      id: 'n1', name: 'his', host: '${H_HL7OUT_HOST}', port: '${H_HL7OUT_PORT_UNSET:-6661}', ackTimeoutS: '5', aeRetryable: 'yes', strictOrder: true, maxAttempts: '3', maxAgeHours: '2',
      reconnectMaxS: '0', sendingApp: ' IOMT ', receivingFacility: 'LAB', processingIds: ' p, t ,,D', tls: 'on', tlsCa: ca,
    });
    expect(s.output).toMatchObject({ destination: 'his', host: 'his.example', port: 6661, ackTimeoutMs: 5000, aeRetryable: true, sendingApp: 'IOMT', receivingFacility: 'LAB', tls: { ca: Buffer.from('CA'), cert: undefined, key: undefined } });
    expect([...s.processingIds]).toEqual(['P', 'T', 'D']);
    expect(s.policy).toEqual({ strictOrder: true, maxAttempts: 3, maxAgeMs: 2 * 3600_000 });
    expect(s.unavailableBackoffMs).toEqual({ base: 1000, max: 1000 }); // at least 1 s
    expect(destinationOf({ id: 'n1', name: 'x', destination: ' lis ' })).toBe('lis');
  });

  it('TLS on with a ${VAR} file template that resolves to empty (the shipped flows: tlsCa ${HIS_TLS_CA}): no such file, system CAs (the spec: "empty = system CAs")', () => {
    const s = hl7OutSettings({ id: 'n1', tls: '${H_HL7OUT_TLS_UNSET:-true}', tlsCa: '${H_HL7OUT_CA_UNSET}', tlsCert: ' ', tlsKey: '${H_HL7OUT_KEY_UNSET:-}' });
    expect(s.output.tls).toEqual({ ca: undefined, cert: undefined, key: undefined });
  });

  // the node checks in this order: port, bools, TLS files
  const refused: { config: Omit<Hl7OutConfig, 'id'>; reason: RegExp; detail: string }[] = [
    { config: { port: '0', tls: 'maybe' }, reason: /^invalid port '0' \(resolves to '0'\)$/, detail: 'invalid port' },
    { config: { port: '${H_HL7OUT_BAD_UNSET:-x}' }, reason: /^invalid port '\$\{H_HL7OUT_BAD_UNSET:-x\}' \(resolves to 'x'\)$/, detail: 'invalid port' },
    { config: { tls: 'maybe' }, reason: /'maybe' does not resolve to true or false/, detail: 'invalid setting' },
    { config: { tls: true, tlsCert: '/nonexistent/cert.pem' }, reason: /^TLS files: ENOENT/, detail: 'TLS files' },
  ];
  for (const r of refused) {
    it(`refused: ${r.detail} (${JSON.stringify(r.config)})`, () => {
      let err: unknown;
      try {
        hl7OutSettings({ id: 'n1', ...r.config });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(NodeStartError);
      expect((err as NodeStartError).detail).toBe(r.detail);
      expect((err as Error).message).toMatch(r.reason);
    });
  }
});

const obs = (processingId?: 'P' | 'T' | 'D'): Observation[] => [
  {
    id: 'u1-1', messageId: 1, messageUid: 'u1', seq: 1, deviceId: 'erba-1', driver: 'hl7-mllp', receivedAt: '2025-03-01T02:31:00.000Z',
    code: { system: 'http://loinc.org', code: '718-7', display: 'HGB' }, value: { kind: 'quantity', value: 11.6, unit: 'g/dL' },
    interpretation: ['L'], status: 'final', subject: { patientId: 'BN1', specimenId: 'S1' }, ...(processingId ? { processingId } : {}),
  } as Observation,
];

describe('iomt-hl7-out input handler (real store)', () => {
  let store: GatewayStore;
  beforeAll(() => {
    createRootLogger('silent');
    store = GatewayStore.open({ dataDir: tmp.dir });
  });
  afterAll(() => store.close());

  it('queues one entry per inbound message, done() after the append; skips what this destination does not take; refuses a non-device message', async () => {
    const destination = 'his-unit';
    const logs: string[] = [];
    const node = { log: (m: unknown) => logs.push(String(m)) } as unknown as RedNode;
    let wakes = 0;
    const output = new Hl7MllpOutput(hl7OutSettings({ id: 'n1', destination, port: '6661' }).output);
    const input = hl7OutInput({ node, store, destination, output, processingIds: new Set(['P']), worker: { wake: () => wakes++ } });
    const deliver = (msg: unknown) => new Promise<unknown>((res) => input(msg as never, undefined, (err) => res(err ?? 'done')));
    const pending = () => store.destinationStats(destination)[0]?.pending ?? 0;

    expect(await deliver({ payload: obs(), _iomt: { messageUid: 'u1' } })).toBe('done');
    expect(pending()).toBe(1);
    expect(wakes).toBe(1);
    expect(await deliver({ payload: obs('P'), _iomt: { messageUid: 'u1' } })).toBe('done'); // re-emitted: same key
    expect(pending()).toBe(1);

    const before = metrics.processingIdSkipped.get({ destination, processingId: 'T' });
    expect(await deliver({ payload: obs('T'), _iomt: { messageUid: 'u2' } })).toBe('done');
    expect(metrics.processingIdSkipped.get({ destination, processingId: 'T' })).toBe(before + 1);
    expect(logs.join('\n')).toMatch(/processing id T not taken by destination his-unit: message u2 not queued/);
    expect(await deliver({ payload: [], _iomt: { messageUid: 'u3' } })).toBe('done');
    expect(pending()).toBe(1);

    for (const bad of [{ payload: obs() }, { payload: 'x', _iomt: { messageUid: 'u4' } }]) {
      expect(String(await deliver(bad))).toMatch(/iomt-hl7-out expects msg.payload = observations from an IoMT device node/);
    }
    expect(pending()).toBe(1);
    expect(wakes).toBe(2);
  });
});
