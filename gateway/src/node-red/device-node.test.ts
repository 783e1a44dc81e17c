/**
 * The helpers device-node.ts gives the device nodes' plain modules and thin node files: yes/no fields
 * with their defaults (NodeStartError 'invalid setting'), reporting what a start threw, listing the
 * device (a duplicate id reported under `<id>#<node id>`), and the node's life: nothing runs before
 * flows:started; on close the timers stop, `stop` and `close` are called and done() follows `close`
 * even when it fails. Real runtime and store on disk.
 */
import { EventEmitter } from 'node:events';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { tempDir } from '../../../test/helpers/env';
import { loadSettings } from '../config/settings';
import type { DriverStatus } from '../contracts/driver';
import { createRootLogger } from '../log/logger';
import { GatewayRuntime, setRuntime } from '../runtime';
import { GatewayStore } from '../store/gateway-store';
import { DeviceEmitter, NodeStartError, registerDeviceOrReport, reportThrown, resolveBools, runDeviceNode, type RedNode } from './device-node';

describe('resolveBools', () => {
  const defaults = { tls: false, strict: false, answer: true };
  const cases: { config: object; want?: object; error?: RegExp }[] = [
    { config: {}, want: { tls: false, strict: false, answer: true } },
    { config: { tls: true, strict: 'yes', answer: 'off' }, want: { tls: true, strict: true, answer: false } },
    { config: { tls: '${H_DN_TLS_UNSET:-on}', answer: '' }, want: { tls: true, strict: false, answer: true } },
    // checked in the order of the defaults: the first bad one is reported
    { config: { strict: 'maybe', answer: 'never' }, error: /^'maybe' does not resolve to true or false/ },
  ];
  for (const c of cases) {
    it(JSON.stringify(c.config), () => {
      if (c.want) return void expect(resolveBools(c.config, defaults)).toEqual(c.want);
      let err: unknown;
      try {
        resolveBools(c.config, defaults);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(NodeStartError);
      expect((err as NodeStartError).detail).toBe('invalid setting');
      expect((err as Error).message).toMatch(c.error!);
    });
  }
});

describe('reportThrown', () => {
  it('a NodeStartError with its reason and detail; anything else as cannot start', () => {
    const seen: string[][] = [];
    const fail = (reason: string, detail: string) => void seen.push([reason, detail]);
    reportThrown(fail, new NodeStartError('invalid port 99999', 'invalid port'));
    reportThrown(fail, new TypeError('x is undefined'));
    expect(seen).toEqual([
      ['invalid port 99999', 'invalid port'],
      ['cannot start: x is undefined', 'cannot start'],
    ]);
  });
});

describe('a device node: listing and life (real runtime)', () => {
  const tmp = tempDir('device-node-');
  let store: GatewayStore;
  let rt: GatewayRuntime;
  beforeAll(() => {
    createRootLogger('silent');
    store = GatewayStore.open({ dataDir: tmp.dir });
    rt = new GatewayRuntime(loadSettings({ env: { IOMT_DATA_DIR: tmp.dir } }), store);
    setRuntime(rt);
  });
  afterAll(async () => {
    setRuntime(undefined);
    await store.close();
    tmp.cleanup();
  });

  function fakeNode(id: string) {
    const statuses: { fill?: string; text?: string }[] = [];
    const errors: string[] = [];
    const closers: Array<(removed: boolean, done: () => void) => void> = [];
    const node: RedNode = { id, send: () => undefined, status: (s) => void statuses.push(s), on: (_e: string, cb: any) => void closers.push(cb), error: (e) => void errors.push(String(e)), warn: () => undefined, log: () => undefined };
    const close = () => Promise.all(closers.map((c) => new Promise<void>((res) => c(false, res))));
    return { node, statuses, errors, close };
  }

  it('runs only after flows:started; close stops it and calls done() even when close fails; a duplicate id is reported under <id>#<node id>', async () => {
    const RED = { events: new EventEmitter() };
    const status: DriverStatus = { deviceId: 'dn-1', driver: 'test', state: 'listening' };
    const a = fakeNode('nodeA');
    const unregister = registerDeviceOrReport(a.node, 'dn-1', 'test', () => status);
    expect(unregister).toBeTypeOf('function');
    expect(rt.deviceStatuses().find((d) => d.deviceId === 'dn-1')).toMatchObject({ state: 'listening' });

    const b = fakeNode('nodeB');
    expect(registerDeviceOrReport(b.node, 'dn-1', 'test', () => status)).toBeUndefined();
    expect(b.statuses.at(-1)).toMatchObject({ fill: 'red', text: 'error duplicate device id' });
    expect(rt.deviceStatuses().find((d) => d.deviceId === 'dn-1#nodeB')).toMatchObject({ state: 'error' });
    await b.close();
    expect(rt.deviceStatuses().find((d) => d.deviceId === 'dn-1#nodeB')).toBeUndefined();

    const calls: string[] = [];
    runDeviceNode(RED, a.node, {
      emitter: new DeviceEmitter(a.node, 'dn-1', 'test'),
      status: () => status,
      statusEveryMs: 50,
      run: () => void calls.push('run'),
      stop: () => {
        calls.push('stop');
        unregister!();
      },
      close: async () => {
        calls.push('close');
        throw new Error('close failed');
      },
    });
    expect(a.statuses.at(-1)).toMatchObject({ fill: 'yellow', text: 'starting' });
    expect(calls).toEqual([]);
    RED.events.emit('flows:started');
    RED.events.emit('flows:started');
    expect(calls).toEqual(['run']);
    await new Promise((r) => setTimeout(r, 120));
    expect(a.statuses.at(-1)).toMatchObject({ fill: 'green', text: 'listening' });
    await a.close();
    expect(calls).toEqual(['run', 'stop', 'close']);
    expect(rt.deviceStatuses().find((d) => d.deviceId === 'dn-1')).toBeUndefined();
    const n = a.statuses.length;
    await new Promise((r) => setTimeout(r, 120));
    expect(a.statuses.length).toBe(n); // the status timer is stopped
  });

  it('closed before flows:started: the driver never runs', async () => {
    const RED = { events: new EventEmitter() };
    const c = fakeNode('nodeC');
    const calls: string[] = [];
    runDeviceNode(RED, c.node, { emitter: new DeviceEmitter(c.node, 'dn-2', 'test'), status: () => ({ deviceId: 'dn-2', driver: 'test', state: 'stopped' }), statusEveryMs: 1000, run: () => void calls.push('run'), stop: () => void calls.push('stop'), close: async () => void calls.push('close') });
    await c.close();
    RED.events.emit('flows:started');
    expect(calls).toEqual(['stop', 'close']);
  });
});
