/**
 * The `iomt-dicom-in` node: configuration → SCP options (data-driven), its field spec, and the node
 * itself in a minimal Node-RED stand-in with a real runtime and store: it listens after flows:started,
 * stores a C-STORE from storescu, emits the committed observation and shows a status dot.
 */
import { execFile } from 'node:child_process';
import { EventEmitter } from 'node:events';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { loadSettings } from '../../gateway/src/config/settings';
import { specProblems } from '../../gateway/src/node-red/device-node';
import { GatewayRuntime, setRuntime } from '../../gateway/src/runtime';
import { GatewayStore } from '../../gateway/src/store/gateway-store';
import { freePort, requirePeer, tempDir, waitFor } from '../../test/helpers/env';
import { dicomInOptions, dicomInServices, parseCallers, providerRuntime } from './dicom-in-node';
import { DICOM_IN_SPEC } from './node-red/iomt-dicom-in.spec';

const run = promisify(execFile);

describe('iomt-dicom-in configuration', () => {
  it.each([
    ['CT01@10.1.2.3, MR01@10.1.2.0/24; US01', [{ aeTitle: 'CT01', host: '10.1.2.3' }, { aeTitle: 'MR01', host: '10.1.2.0/24' }, { aeTitle: 'US01' }]],
    ['', []],
    [' XR 01 @::1 ', [{ aeTitle: 'XR 01', host: '::1' }]],
  ])('allowed callers %j', (spec, expected) => {
    expect(parseCallers(spec)).toEqual(expected);
  });

  it.each([['CT01@not-an-address'], ['AN_AE_TITLE_TOO_LONG@10.0.0.1'], ['@10.0.0.1']])('a bad caller entry %j is refused with its reason', (spec) => {
    expect(() => parseCallers(spec)).toThrow(/not-an-address|1-16 characters/);
  });

  it('defaults and ${ENV} templates resolve to SCP options', () => {
    process.env.H11A_TEST_PORT = '11999';
    const o = dicomInOptions({ id: 'n1', port: '${H11A_TEST_PORT}', aeTitle: '${DICOM_AET_UNSET:-PACS_GW}', maxStorageMb: '2', storage: '${X_UNSET:-false}' }, '/data');
    expect(o).toMatchObject({ deviceId: 'n1', aeTitle: 'PACS_GW', port: 11999, host: '0.0.0.0', dataDir: '/data', maxAssociations: 16, idleTimeoutMs: 60_000, storage: false, maxStorageBytes: 2 * 1024 * 1024 });
    expect(() => dicomInOptions({ id: 'n1', port: '70000' }, '/data')).toThrow(/invalid port/);
    expect(() => dicomInOptions({ id: 'n1', tls: true, tlsCert: '/nonexistent.crt', tlsKey: '/nonexistent.key' }, '/data')).toThrow(/TLS certificate file/);
  });

  it('the field spec refuses a bad AE title, port and caller list', () => {
    const ok = { id: 'n', port: '11112', aeTitle: 'IOMT_GW', allowedCallers: 'CT01@10.0.0.1' };
    expect(specProblems(DICOM_IN_SPEC, ok, {})).toBeUndefined();
    expect(specProblems(DICOM_IN_SPEC, { ...ok, aeTitle: 'A\\B' }, {})).toMatch(/aeTitle/);
    expect(specProblems(DICOM_IN_SPEC, { ...ok, aeTitle: 'SEVENTEEN_CHARS_X' }, {})).toMatch(/aeTitle/);
    expect(specProblems(DICOM_IN_SPEC, { ...ok, port: '99999' }, {})).toMatch(/port/);
  });

  it('the editor HTML has an input for every field (bool fields as iomt-bool widgets), and literal defaults pass their own check', () => {
    const html = require('node:fs').readFileSync(join(__dirname, 'node-red', 'iomt-dicom-in.html'), 'utf8') as string;
    expect(html).toContain("iomtFields.defaults('iomt-dicom-in')");
    for (const f of DICOM_IN_SPEC.fields) {
      if (f.type === 'bool') expect(html, f.name).toContain(`data-field="${f.name}"`);
      else expect(html, f.name).toMatch(new RegExp(`id="node-input-${f.name}"`));
    }
    const literal = Object.fromEntries(DICOM_IN_SPEC.fields.filter((f) => f.type !== 'file').map((f) => [f.name, f.default]));
    expect(specProblems(DICOM_IN_SPEC, { ...literal, id: 'n' }, {})).toBeUndefined();
  });

  it('the providers\' runtime hands each MPPS commit on (to be emitted) and reads the order cache when used', async () => {
    const seen: string[] = [];
    const rt: { orders: unknown; store: { submit(m: any): Promise<any> } } = { orders: undefined, store: { submit: async (m) => ({ messageId: 7, messageUid: 'u7', duplicate: false, observations: [], type: m.messageType }) } };
    const p = providerRuntime(rt, (r, m) => seen.push(`${r.messageId} ${m.messageType}`));
    const r = await p.store.submit({ deviceId: 'd', driver: 'dicom', raw: Buffer.from('{}'), drafts: [], messageType: 'N-CREATE' });
    expect(r.messageId).toBe(7);
    expect(seen).toEqual(['7 N-CREATE']);
    expect(p.orders).toBeUndefined();
    rt.orders = { marker: 1 };
    expect(p.orders).toEqual({ marker: 1 });
  });

  it('worklist and MPPS providers are wired only when switched on', () => {
    const rt = { orders: undefined, store: { submit: async () => ({ duplicate: false }) } };
    expect(dicomInServices({ id: 'n' }, rt)).toEqual({});
    const s = dicomInServices({ id: 'n', worklist: true, mpps: 'true' }, rt);
    expect(typeof s.worklist?.find).toBe('function');
    expect(typeof s.mpps?.nCreate).toBe('function');
  });
});

describe('iomt-dicom-in node in a Node-RED stand-in', () => {
  const tmp = tempDir('iomt-dicom-node-');
  let store: GatewayStore | undefined;
  afterAll(async () => {
    setRuntime(undefined);
    await store?.close();
    tmp.cleanup();
  });

  it('listens after flows:started, commits a C-STORE, emits it and shows a green dot; close stops it', async () => {
    requirePeer('storescu');
    store = GatewayStore.open({ dataDir: tmp.dir });
    const rt = new GatewayRuntime(loadSettings({ env: { IOMT_DATA_DIR: tmp.dir } }), store);
    setRuntime(rt);
    const events = new EventEmitter();
    let ctor: ((this: any, config: any) => void) | undefined;
    const RED = { events, nodes: { createNode: () => undefined, registerType: (_t: string, c: any) => (ctor = c) } };
    const mod = (await import('./node-red/iomt-dicom-in')) as unknown as { default: (red: unknown) => void };
    mod.default(RED);
    const sent: any[] = [];
    const statuses: any[] = [];
    const closers: Array<(removed: boolean, done: () => void) => void> = [];
    const node = { id: 'node1', send: (m: unknown) => sent.push(m), status: (s: unknown) => statuses.push(s), on: (_e: string, cb: any) => closers.push(cb), error: () => undefined, warn: () => undefined, log: () => undefined };
    const port = await freePort();
    ctor!.call(node, { id: 'node1', name: 'modalities', host: '127.0.0.1', port: String(port), aeTitle: 'IOMT_GW' });
    expect(statuses.at(-1)).toMatchObject({ fill: 'yellow' });
    events.emit('flows:started');
    await waitFor(() => rt.deviceStatuses().find((d) => d.deviceId === 'modalities' && d.state === 'listening'));
    const r = await run('storescu', ['-v', '-aet', 'CT01', '-aec', 'IOMT_GW', '127.0.0.1', String(port), join(__dirname, 'fixtures', 'CT_small.dcm')], { encoding: 'utf8' });
    expect(r.stderr).toContain('Received Store Response (Success)');
    await waitFor(() => sent.length === 1);
    expect(sent[0].topic).toBe('modalities');
    expect(sent[0].payload[0]).toMatchObject({ category: 'imaging', driver: 'dicom', equipment: { id: 'CT01' } });
    expect(statuses.some((s) => s.fill === 'green')).toBe(true);
    await new Promise<void>((res) => closers[0](false, res));
    expect(rt.deviceStatuses().find((d) => d.deviceId === 'modalities')).toBeUndefined();
    await expect(run('echoscu', ['-aec', 'IOMT_GW', '127.0.0.1', String(port)])).rejects.toThrow();
  });
});
