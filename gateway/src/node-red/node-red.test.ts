import { describe, expect, it } from 'vitest';
import { mkdirSync, readFileSync, writeFileSync, existsSync, symlinkSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { runInNewContext } from 'node:vm';
import { tempDir } from '../../../test/helpers/env';
import { resolveSiteFlows, inCheckout } from './flow-files';
import { editorFieldsScript } from './editor-fields';
import { NODE_SPECS } from '../config/node-specs';
import { GatewayRuntime } from '../runtime';
import { GatewayStore } from '../store/gateway-store';
import { loadSettings } from '../config/settings';
import { listSerialPorts } from '../../../drivers/astm/node-red/serial-ports';
import { specProblems } from './device-node';
import { HL7_IN_SPEC } from '../../../drivers/hl7-mllp/node-red/iomt-hl7-in.spec';
import { ASTM_DEVICE_SPEC } from '../../../drivers/astm/node-red/iomt-astm-device.spec';

const ROOT = join(__dirname, '..', '..', '..');

describe('site flows live in the data dir', () => {
  it('seeds <data dir>/flows.json from a shipped flow once, then runs the site copy; the checkout file is never the one run', () => {
    const t = tempDir();
    try {
      const shipped = join(ROOT, 'flows', 'lab-astm-to-his.json');
      const before = readFileSync(shipped, 'utf8');
      const first = resolveSiteFlows(t.dir, { flowsArg: shipped });
      expect(first.flowFile).toBe(join(t.dir, 'flows.json'));
      expect(first.seededFrom).toBe(shipped);
      expect(readFileSync(first.flowFile, 'utf8')).toBe(before);
      // a site edit (what Deploy writes) survives the next start, also with --flows of another shipped flow
      writeFileSync(first.flowFile, '[]');
      const again = resolveSiteFlows(t.dir, { flowsArg: join(ROOT, 'flows', 'hl7-relay.json') });
      expect(again.flowFile).toBe(join(t.dir, 'flows.json'));
      expect(again.seededFrom).toBeUndefined();
      expect(again.note).toMatch(/only seeds a new data dir/);
      expect(readFileSync(again.flowFile, 'utf8')).toBe('[]');
      expect(readFileSync(shipped, 'utf8')).toBe(before);
    } finally {
      t.cleanup();
    }
  });
  it('without --flows seeds the shipped default; a file outside the package is used in place; check-config mode copies nothing', () => {
    const t = tempDir();
    try {
      const dry = resolveSiteFlows(join(t.dir, 'd1'), { seed: false });
      expect(dry.flowFile).toBe(join(ROOT, 'flows', 'hl7-relay.json'));
      expect(existsSync(join(t.dir, 'd1', 'flows.json'))).toBe(false);
      mkdirSync(join(t.dir, 'd2'));
      expect(resolveSiteFlows(join(t.dir, 'd2')).flowFile).toBe(join(t.dir, 'd2', 'flows.json'));
      expect(readFileSync(join(t.dir, 'd2', 'flows.json'), 'utf8')).toBe(readFileSync(join(ROOT, 'flows', 'hl7-relay.json'), 'utf8'));
      const own = join(t.dir, 'site-managed.json');
      writeFileSync(own, '[]');
      expect(inCheckout(own, ROOT)).toBe(false);
      expect(inCheckout(join(ROOT, 'flows', 'x.json'), ROOT)).toBe(true);
      expect(resolveSiteFlows(join(t.dir, 'd2'), { flowsArg: own })).toEqual({ flowFile: own });
      expect(() => resolveSiteFlows(join(t.dir, 'd2'), { flowsArg: join(t.dir, 'missing.json') })).toThrow(/flows file not found/);
    } finally {
      t.cleanup();
    }
  });
});

describe('editor field helper (/editor/iomt/fields.js)', () => {
  const load = () => {
    const window: Record<string, any> = {};
    runInNewContext(editorFieldsScript(), { window });
    return window.iomtFields;
  };
  it('builds Node-RED defaults from the spec; validation accepts templates and rejects bad literals', () => {
    const f = load();
    for (const spec of NODE_SPECS) {
      const d = f.defaults(spec.type);
      expect(Object.keys(d)).toEqual(spec.fields.map((x) => x.name));
      for (const x of spec.fields) expect(d[x.name].value).toEqual(x.default);
    }
    const hl7in = f.defaults('iomt-hl7-in');
    const cases: Array<[string, unknown, boolean]> = [
      ['port', '2575', true],
      ['port', '99999', false],
      ['port', '${HL7_IN_PORT:-2575}', true],
      ['port', 'abc', false],
      ['tls', false, true],
      ['tls', '${HL7_IN_TLS:-false}', true],
      ['tls', 'sometimes', false],
      ['charset', 'windows-1258', true],
      ['charset', 'klingon', false],
      ['maxConnections', '0', false],
      ['host', 'his.example.org', true],
      ['host', 'bad host', false],
    ];
    for (const [field, v, ok] of cases) expect(hl7in[field].validate(v), `${field}=${String(v)}`).toBe(ok);
    expect(() => f.defaults('iomt-nope')).toThrow(/no field spec/);
  });
});

describe('a node that fails to start stays visible', () => {
  it('is listed with state error and the reason until its node closes', async () => {
    const t = tempDir();
    const store = GatewayStore.open({ dataDir: t.dir });
    try {
      const rt = new GatewayRuntime(loadSettings({ env: { IOMT_DATA_DIR: t.dir } }), store);
      rt.registerDevice('ok-dev', () => ({ deviceId: 'ok-dev', driver: 'hl7-mllp', state: 'listening' }));
      const clear = rt.reportNodeFailure({ kind: 'device', id: 'bad-dev', driver: 'astm', nodeId: 'n1', reason: "unknown ASTM profile 'x'" });
      const clearOut = rt.reportNodeFailure({ kind: 'destination', id: 'his', driver: 'hl7-mllp', nodeId: 'n2', reason: 'TLS files: ENOENT' });
      expect(rt.deviceStatuses()).toEqual([
        { deviceId: 'ok-dev', driver: 'hl7-mllp', state: 'listening' },
        expect.objectContaining({ deviceId: 'bad-dev', driver: 'astm', state: 'error', detail: "unknown ASTM profile 'x'", lastError: "unknown ASTM profile 'x'" }),
      ]);
      expect(rt.nodeFailures().map((f) => f.id)).toEqual(['bad-dev', 'his']);
      // a running device whose listener failed is shown in error, not as its driver's last state
      const clearOk = rt.reportNodeFailure({ kind: 'device', id: 'ok-dev', driver: 'hl7-mllp', nodeId: 'n0', reason: 'cannot listen: EADDRINUSE' });
      expect(rt.deviceStatuses()[0]).toMatchObject({ deviceId: 'ok-dev', state: 'error', detail: 'cannot listen: EADDRINUSE' });
      clear();
      clearOut();
      clearOk();
      expect(rt.nodeFailures()).toEqual([]);
      expect(rt.deviceStatuses()).toEqual([{ deviceId: 'ok-dev', driver: 'hl7-mllp', state: 'listening' }]);
      await rt.stopAll();
    } finally {
      await store.close();
      t.cleanup();
    }
  });
});

describe('serial port picker without udevadm', () => {
  it('falls back to /dev names and /dev/serial/by-id with a warning, and fails visibly when nothing works', async () => {
    const t = tempDir();
    try {
      const dev = join(t.dir, 'dev');
      mkdirSync(join(dev, 'serial', 'by-id'), { recursive: true });
      for (const n of ['ttyUSB0', 'ttyACM1', 'ttyS0', 'null', 'tty', 'ttyUSBx']) writeFileSync(join(dev, n), '');
      symlinkSync('../../ttyUSB0', join(dev, 'serial', 'by-id', 'usb-FTDI_FT232R_A1-if00-port0'));
      const enoent = Object.assign(new Error('spawn udevadm ENOENT'), { code: 'ENOENT' });
      const r = await listSerialPorts({ devDir: dev, list: () => Promise.reject(enoent) });
      expect(r.source).toBe('dev');
      expect(r.warning).toMatch(/udevadm is not installed/);
      expect(r.ports.map((p) => p.path)).toEqual([join(dev, 'ttyACM1'), join(dev, 'ttyS0'), join(dev, 'ttyUSB0')]);
      expect(r.stable).toEqual([join(dev, 'serial', 'by-id', 'usb-FTDI_FT232R_A1-if00-port0')]);
      const ok = await listSerialPorts({ devDir: dev, list: async () => [{ path: '/dev/ttyUSB0', manufacturer: 'FTDI' }] });
      expect(ok).toMatchObject({ source: 'serialport', ports: [{ path: '/dev/ttyUSB0', manufacturer: 'FTDI' }] });
      expect(ok.warning).toBeUndefined();
      await expect(listSerialPorts({ devDir: join(t.dir, 'no-dev'), list: () => Promise.reject(enoent) })).rejects.toThrow(/cannot list serial ports: udevadm is not installed.*not readable/);
      expect(statSync(dev).isDirectory()).toBe(true);
    } finally {
      t.cleanup();
    }
  });
});

describe('a node checks its own fields at start with the same spec as check-config', () => {
  it('names every bad field; a valid node passes', () => {
    const shipped = JSON.parse(readFileSync(join(ROOT, 'flows', 'lab-astm-to-his.json'), 'utf8')) as Array<Record<string, unknown>>;
    const hl7in = shipped.find((n) => n.id === 'hl7-orders-in')!;
    const astm = shipped.find((n) => n.id === 'astm-tcp')!;
    expect(specProblems(HL7_IN_SPEC, hl7in, {})).toBeUndefined();
    expect(specProblems(ASTM_DEVICE_SPEC, astm, {})).toBeUndefined();
    const bad = specProblems(HL7_IN_SPEC, { ...hl7in, port: '99999', tls: '${ORDERS_IN_TLS:-maybe}' }, {});
    expect(bad).toMatch(/^invalid configuration: /);
    expect(bad).toMatch(/port: '99999' is not a port number/);
    expect(bad).toMatch(/tls: '\$\{ORDERS_IN_TLS:-maybe\}' does not resolve to true or false/);
    expect(specProblems(ASTM_DEVICE_SPEC, { ...astm, profile: 'nope' }, {})).toMatch(/profile: unknown profile 'nope'/);
    expect(specProblems(ASTM_DEVICE_SPEC, { ...astm, tcpPort: '${ASTM_TCP_PORT}' }, {})).toMatch(/tcpPort: .*empty; set the variable or give a default/);
  });
});
