/**
 * drivers/hl7-mllp/hl7-in-node.ts without Node-RED: configuration → Hl7Receiver options (defaults,
 * ${ENV} templates, TLS files), each bad setting refused with its reason and status detail (in the
 * order the node checks them), the loopback default of an orders listener, and the order acceptor
 * against a real order cache on disk.
 */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { afterAll, describe, expect, it } from 'vitest';
import { tempDir } from '../../test/helpers/env';
import { NodeStartError } from '../../gateway/src/node-red/device-node';
import { OrderCache } from '../../gateway/src/orders/order-cache';
import { deviceIdOf, hl7InSettings, orderAcceptor, type Hl7InConfig } from './hl7-in-node';

const tmp = tempDir('hl7-in-node-');
afterAll(() => tmp.cleanup());
const file = (name: string, text: string) => {
  const p = join(tmp.dir, name);
  writeFileSync(p, text);
  return p;
};

describe('iomt-hl7-in configuration → receiver options', () => {
  it('defaults', () => {
    const s = hl7InSettings({ id: 'n1' });
    expect(s.options).toEqual({
      deviceId: 'n1',
      host: '0.0.0.0',
      port: 2575,
      tls: undefined,
      maxBytes: 8 * 1024 * 1024,
      idleTimeoutMs: 600_000,
      maxConnections: 64,
      maxPerAddress: 8,
      firstFrameTimeoutMs: 10_000,
      charset: 'utf8',
      strict: false,
    });
    expect(s).toMatchObject({ acceptOrders: false, machineCode: undefined });
    expect(s.loopbackNotice).toBeUndefined();
  });

  it('set values and ${ENV} templates', () => {
    process.env.H_HL7IN_PORT = '12575';
    const s = hl7InSettings({
      id: 'n1', name: 'lab', deviceId: '${H_HL7IN_DEV_UNSET}', host: ' 127.0.0.1 ', port: '${H_HL7IN_PORT}', maxBytes: '1024', idleTimeoutS: '5', maxConnections: '2',
      maxPerAddress: '1', firstFrameTimeoutS: '3', allowFrom: '10.0.0.0/8', charset: 'latin1', fallbackCharset: 'windows-1258', strict: 'yes', machineCode: ' MA-7 ',
    });
    expect(s.options).toMatchObject({ deviceId: 'lab', host: '127.0.0.1', port: 12575, maxBytes: 1024, idleTimeoutMs: 5000, maxConnections: 2, maxPerAddress: 1, firstFrameTimeoutMs: 3000, allowFrom: '10.0.0.0/8', charset: 'latin1', fallbackCharset: 'windows-1258', strict: true });
    expect(s.machineCode).toBe('MA-7');
    expect(deviceIdOf({ id: 'n1', deviceId: ' icu ', name: 'x' })).toBe('icu');
  });

  it('orders listener: allowFrom kept when set, else loopback only with a notice', () => {
    const open = hl7InSettings({ id: 'n1', acceptOrders: true });
    expect(open.acceptOrders).toBe(true);
    expect(open.options.allowFrom).toBe('127.0.0.1, ::1');
    expect(open.loopbackNotice).toMatch(/only loopback/);
    const set = hl7InSettings({ id: 'n1', acceptOrders: 'true', allowFrom: '10.2.0.0/16' });
    expect(set.options.allowFrom).toBe('10.2.0.0/16');
    expect(set.loopbackNotice).toBeUndefined();
  });

  it('TLS: certificate, key, optional CA (an empty template is no CA), requestCert', () => {
    const cert = file('cert.pem', 'CERT');
    const key = file('key.pem', 'KEY');
    const s = hl7InSettings({ id: 'n1', tls: true, tlsCert: cert, tlsKey: key, tlsCa: '${H_HL7IN_CA_UNSET}' });
    expect(s.options.tls).toEqual({ cert: Buffer.from('CERT'), key: Buffer.from('KEY'), ca: undefined, requestCert: false });
    const ca = file('ca.pem', 'CA');
    expect(hl7InSettings({ id: 'n1', tls: 'on', tlsCert: cert, tlsKey: key, tlsCa: ca, requestCert: 'yes' }).options.tls).toMatchObject({ ca: Buffer.from('CA'), requestCert: true });
  });

  // the node checks in this order: bools, charset, port, TLS files
  const refused: { config: Omit<Hl7InConfig, 'id'>; reason: RegExp; detail: string }[] = [
    { config: { strict: 'sometimes', port: '99999' }, reason: /'sometimes' does not resolve to true or false/, detail: 'invalid setting' },
    { config: { charset: 'klingon', port: '99999' }, reason: /^unsupported charset 'klingon'$/, detail: 'charset' },
    { config: { fallbackCharset: 'klingon' }, reason: /^unsupported charset 'klingon'$/, detail: 'charset' },
    { config: { port: '99999', tls: true }, reason: /^invalid port '99999' \(resolves to '99999'\)$/, detail: 'invalid port' },
    { config: { port: 'abc' }, reason: /^invalid port 'abc'/, detail: 'invalid port' },
    { config: { tls: true, tlsCert: '/nonexistent/cert.pem', tlsKey: '/nonexistent/key.pem' }, reason: /^TLS files: ENOENT/, detail: 'TLS files' },
  ];
  for (const r of refused) {
    it(`refused: ${r.detail} (${JSON.stringify(r.config)})`, () => {
      let err: unknown;
      try {
        hl7InSettings({ id: 'n1', ...r.config });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(NodeStartError);
      expect((err as NodeStartError).detail).toBe(r.detail);
      expect((err as Error).message).toMatch(r.reason);
    });
  }
});

describe('order acceptor', () => {
  it('applies ORM/OML updates to the order cache, keyed by this device and MSH-10', async () => {
    const db = new Database(join(tmp.dir, 'gateway.db'));
    try {
      const cache = new OrderCache(db);
      const acceptor = orderAcceptor(cache, 'his-1');
      const update = { control: 'NW' as const, specimenId: 'S1', patient: { patientId: 'P1' }, tests: [{ code: '2345-7', system: 'LN' }] };
      const header = { controlId: 'MSG-1' } as Parameters<typeof acceptor.accept>[1];
      await acceptor.accept([update], header, Buffer.alloc(0), { deviceId: 'his-1', duplicate: false });
      expect(cache.pendingSince(0, 10).orders.map((o) => o.specimenId)).toEqual(['S1']);
      // the acceptor's source is (this device, MSH-10): the same pair again is a duplicate, another device's is not
      expect(cache.apply([update], { deviceId: 'his-1', messageControlId: 'MSG-1' }).duplicate).toBe(true);
      expect(cache.apply([update], { deviceId: 'his-2', messageControlId: 'MSG-1' }).duplicate).toBe(false);
    } finally {
      db.close();
    }
  });
});
