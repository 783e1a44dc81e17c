/**
 * drivers/astm/astm-node.ts without Node-RED: configuration → driver options (profile line settings
 * unless the node sets them, each bad setting refused with its reason and status detail), the profile
 * set (a site directory, an invalid file), the host query answer from a real order cache on disk
 * (allowFrom, name/birth date left out, marked downloaded) and the order download.
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import pino from 'pino';
import { afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { tempDir, waitFor } from '../../test/helpers/env';
import { createRootLogger } from '../../gateway/src/log/logger';
import { NodeStartError } from '../../gateway/src/node-red/device-node';
import { OrderCache } from '../../gateway/src/orders/order-cache';
import type { OrderUpdate } from '../../gateway/src/orders/order-types';
import { astmHostQueryAnswer, astmNodeSettings, loadAstmProfiles, startOrderBroadcast, type AstmDeviceConfig } from './astm-node';
import type { AstmOrder } from './order-response';
import { defaultProfile, normalizeProfile, type AstmProfile } from './profile';

const silent = pino({ level: 'silent' });
const SITE = normalizeProfile({ id: 'site-analyzer', name: 'Site analyzer', serial: { baudRate: 19200, dataBits: 7, parity: 'even', stopBits: 2, rtscts: true, xon: false } });
const PROFILES = new Map<string, AstmProfile>([[SITE.id, SITE]]);

function startError(config: AstmDeviceConfig): { reason: string; detail: string } | undefined {
  try {
    astmNodeSettings(config, PROFILES);
    return undefined;
  } catch (e) {
    if (!(e as NodeStartError).detail) throw e;
    return { reason: (e as Error).message, detail: (e as NodeStartError).detail };
  }
}

describe('iomt-astm-device configuration → driver options', () => {
  const cases: { name: string; config: Omit<AstmDeviceConfig, 'id'>; transport: object }[] = [
    { name: 'serial: line settings from the profile', config: { profile: 'site-analyzer', serialPath: '/dev/ttyUSB0' }, transport: { kind: 'serial', path: '/dev/ttyUSB0', baudRate: 19200, dataBits: 7, parity: 'even', stopBits: 2, rtscts: true, xon: false } },
    { name: 'serial: the node overrides the profile', config: { profile: 'site-analyzer', transport: 'serial', serialPath: ' /dev/ttyS1 ', baudRate: '9600', dataBits: '8', parity: 'none', stopBits: '1', flowControl: 'xon' }, transport: { kind: 'serial', path: '/dev/ttyS1', baudRate: 9600, dataBits: 8, parity: 'none', stopBits: 1, rtscts: false, xon: true } },
    { name: 'serial: generic-lis2-a2 is built in', config: { serialPath: '/dev/ttyUSB0' }, transport: { kind: 'serial', baudRate: 9600, dataBits: 8, parity: 'none', stopBits: 1, rtscts: false, xon: false } },
    { name: 'tcp-server: all addresses, 8 per address, listener = device id', config: { deviceId: 'lab-1', transport: 'tcp-server', tcpPort: '${H_ASTM_PORT_UNSET:-5001}' }, transport: { kind: 'tcp-server', port: 5001, host: '0.0.0.0', listener: 'lab-1', maxPerAddress: 8 } },
    { name: 'tcp-server with allowFrom', config: { transport: 'tcp-server', tcpPort: '5001', tcpHost: '10.0.0.5', allowFrom: '10.1.0.0/16', maxPerAddress: '2' }, transport: { kind: 'tcp-server', port: 5001, host: '10.0.0.5', listener: 'n1', maxPerAddress: 2, allowFrom: '10.1.0.0/16' } },
    { name: 'tcp-client to loopback', config: { transport: 'tcp-client', tcpPort: '6000' }, transport: { kind: 'tcp-client', port: 6000, host: '127.0.0.1' } },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const s = astmNodeSettings({ id: 'n1', ...c.config }, PROFILES);
      expect(s.transport).toMatchObject(c.transport);
      if (c.transport && (c.transport as { kind: string }).kind === 'tcp-client') expect(s.transport).toEqual(c.transport);
    });
  }

  it('defaults: queries answered with name and birth date, no order download, no machine code; queryFrom only for tcp-server (loopback when allowFrom is empty)', () => {
    const serial = astmNodeSettings({ id: 'n1', serialPath: '/dev/ttyUSB0', machineCode: ' ' }, PROFILES);
    expect(serial).toMatchObject({ answerQueries: true, queryNameDob: true, broadcastOrders: false, machineCode: undefined, queryFrom: undefined });
    expect(serial.profile).toEqual(defaultProfile()); // no generic-lis2-a2 file in this set: the built-in one
    const server = astmNodeSettings({ id: 'n1', transport: 'tcp-server', tcpPort: '5001', answerQueries: 'off', queryNameDob: false, broadcastOrders: '${H_BCAST_UNSET:-yes}', machineCode: 'MA-01' }, PROFILES);
    expect(server).toMatchObject({ answerQueries: false, queryNameDob: false, broadcastOrders: true, machineCode: 'MA-01' });
    expect(server.queryFrom?.check('127.0.0.1', 'ipv4')).toBe(true);
    expect(server.queryFrom?.check('10.0.0.9', 'ipv4')).toBe(false);
  });

  const refused: { config: Omit<AstmDeviceConfig, 'id'>; reason: RegExp; detail: string }[] = [
    { config: { serialPath: '/dev/x', answerQueries: 'maybe' }, reason: /'maybe' does not resolve to true or false/, detail: 'invalid setting' },
    { config: { profile: 'nope', serialPath: '/dev/x' }, reason: /^unknown ASTM profile 'nope' \(have: site-analyzer\)$/, detail: 'unknown profile' },
    { config: { transport: 'serial', serialPath: '${H_SERIAL_UNSET}' }, reason: /^serial transport needs a port path/, detail: 'no serial port' },
    { config: { transport: 'tcp-server' }, reason: /^invalid TCP port 'undefined' \(resolves to ''\)$/, detail: 'invalid port' },
    { config: { transport: 'tcp-client', tcpPort: '70000' }, reason: /^invalid TCP port '70000'/, detail: 'invalid port' },
    { config: { transport: 'usb' }, reason: /^unknown transport 'usb'$/, detail: 'unknown transport' },
    { config: { transport: 'tcp-server', tcpPort: '5001', allowFrom: 'everyone' }, reason: /everyone/, detail: 'invalid allowFrom' },
  ];
  for (const r of refused) {
    it(`refused: ${r.detail} (${JSON.stringify(r.config)})`, () => {
      const e = startError({ id: 'n1', ...r.config });
      expect(e?.detail).toBe(r.detail);
      expect(e?.reason).toMatch(r.reason);
    });
  }
});

describe('ASTM profile set', () => {
  let tmp: { dir: string; cleanup: () => void };
  const saved = process.env.IOMT_PROFILES_DIR;
  beforeEach(() => (tmp = tempDir('astm-node-profiles-')));
  afterEach(() => {
    if (saved === undefined) delete process.env.IOMT_PROFILES_DIR;
    else process.env.IOMT_PROFILES_DIR = saved;
    tmp.cleanup();
  });

  it('the shipped profiles, plus a site directory (IOMT_PROFILES_DIR/astm)', () => {
    mkdirSync(join(tmp.dir, 'astm'));
    writeFileSync(join(tmp.dir, 'astm', 'site.json'), JSON.stringify({ id: 'site-analyzer', name: 'Site analyzer' }));
    process.env.IOMT_PROFILES_DIR = tmp.dir;
    const { profiles, error } = loadAstmProfiles(silent);
    expect(error).toBeUndefined();
    expect([...profiles.keys()]).toEqual(expect.arrayContaining(['generic-lis2-a2', 'sysmex-xn', 'site-analyzer']));
  });

  it('an invalid profile file: no profiles and the error', () => {
    mkdirSync(join(tmp.dir, 'astm'));
    writeFileSync(join(tmp.dir, 'astm', 'bad.json'), JSON.stringify({ id: 'bad', name: 'Bad', serial: { baudRate: 'fast' } }));
    process.env.IOMT_PROFILES_DIR = tmp.dir;
    const { profiles, error } = loadAstmProfiles(silent);
    expect(profiles.size).toBe(0);
    expect(error).toMatch(/baudRate/);
  });
});

const ORDER: OrderUpdate = {
  control: 'NW',
  specimenId: '2503010057',
  placerOrderNumber: 'HIS-ORD-9001',
  patient: { patientId: 'BN0067890', patientIds: [{ id: 'BN0067890' }], name: 'TRAN^THI BINH', birthDate: '19790130', sex: 'F' },
  tests: [{ code: '2345-7', display: 'Glucose', system: 'LN', altCode: '717/' }],
  priority: 'R',
};

describe('host query answer and order download (real order cache)', () => {
  let tmp: { dir: string; cleanup: () => void };
  let db: Database.Database;
  let cache: OrderCache;
  beforeAll(() => createRootLogger('silent'));
  beforeEach(() => {
    tmp = tempDir('astm-node-orders-');
    db = new Database(join(tmp.dir, 'gateway.db'));
    db.pragma('journal_mode = WAL');
    cache = new OrderCache(db);
    cache.apply([ORDER], { deviceId: 'his', messageControlId: 'M1' });
  });
  afterEach(() => {
    db.close();
    tmp.cleanup();
  });
  const query = { patientId: undefined, specimenIds: ['2503010057'], tests: ['ALL'] };
  const tcpServer = (allowFrom?: string) => astmNodeSettings({ id: 'n1', transport: 'tcp-server', tcpPort: '5001', allowFrom }, PROFILES).queryFrom;

  it('answers an allowed address with the order (name, birth date) and marks it downloaded to this device', async () => {
    const answer = astmHostQueryAnswer(cache, 'lab-1', tcpServer('10.1.0.0/16'), true, silent);
    const r = (await answer(query, { remote: '10.1.2.3:40000' })) as AstmOrder[];
    expect(r).toMatchObject([{ specimenId: '2503010057', patientId: 'BN0067890', patientName: 'TRAN^THI BINH', birthDate: '19790130', tests: ['717/'] }]);
    expect(cache.downloadedTo((r[0] as AstmOrder & { orderId: number }).orderId).map((d) => d.deviceId)).toEqual(['lab-1']);
  });

  it('an address outside allowFrom (default loopback) gets "unknown", and nothing is marked', async () => {
    const answer = astmHostQueryAnswer(cache, 'lab-1', tcpServer(), true, silent);
    expect(await answer(query, { remote: '10.1.2.3:40000' })).toBe('unknown');
    expect(await answer(query, { remote: '[::1]:40000' })).not.toBe('unknown');
    const id = cache.pendingSince(0, 10).orders[0].id;
    expect(cache.downloadedTo(id).length).toBe(1); // only the loopback answer
  });

  it('without queryNameDob the name and birth date are left out; serial (no queryFrom, no remote) is answered', async () => {
    const answer = astmHostQueryAnswer(cache, 'lab-1', undefined, false, silent);
    const [o] = (await answer(query)) as AstmOrder[];
    expect(o).toMatchObject({ patientId: 'BN0067890', sex: 'F' });
    expect(o.patientName).toBeUndefined();
    expect(o.birthDate).toBeUndefined();
    expect(await answer({ ...query, specimenIds: ['0000'] })).toBe('unknown');
  });

  it('order download: pending orders go to a connected analyzer once; not taken → offered again', async () => {
    const sent: AstmOrder[][] = [];
    let take = 0;
    const driver = { connections: 0, status: () => ({ connections: driver.connections }), sendOrders: async (o: AstmOrder[]) => (sent.push(o), take) };
    const stop = startOrderBroadcast(driver, cache, 'lab-1', () => {});
    try {
      await new Promise((r) => setTimeout(r, 2300));
      expect(sent.length).toBe(0); // not connected
      driver.connections = 1;
      await waitFor(() => sent.length >= 1, 5000);
      take = 1;
      await waitFor(() => cache.loadCursor('astm:lab-1') > 0, 5000);
      const n = sent.length;
      expect(sent.every((s) => s.length === 1 && s[0].specimenId === '2503010057')).toBe(true);
      await new Promise((r) => setTimeout(r, 2300));
      expect(sent.length).toBe(n); // nothing new after the cursor
    } finally {
      stop();
    }
  }, 20_000);
});
