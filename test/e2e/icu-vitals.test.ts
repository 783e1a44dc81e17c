/**
 * ICU vitals end to end (issue 12 §3-§5), in one process with the real parts: python-hl7's `mllp_send`
 * as the central station → the HL7 receiver (commit to SQLite on disk before AA) → the shipped nodes
 * iomt-pcd-out (PCD-01 to an EMR, downsampled; ACM PCD-04 to an alarm manager) and iomt-mqtt-upstream
 * (everything to mosquitto) → the durable outbox → an independent MLLP receiver as EMR and as alarm
 * manager (test/helpers/independent-his.ts), and mosquitto read back with mosquitto_sub.
 *
 * The upstream broker is down for most of the run: what the gateway could not deliver waits in the
 * outbox and arrives once the broker is back. Alarms arrive while the EMR's vitals are downsampled.
 * (The built-gateway run of flows/icu-vitals.json needs the node specs in NODE_SPECS: see the report.)
 */
import { EventEmitter } from 'node:events';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { GatewayStore } from '../../gateway/src/store/gateway-store';
import { GatewayRuntime, setRuntime } from '../../gateway/src/runtime';
import { loadSettings } from '../../gateway/src/config/settings';
import { Hl7Receiver } from '../../drivers/hl7-mllp/hl7-receiver';
import { registry } from '../../gateway/src/metrics/registry';
import { MosquittoPeer } from '../helpers/mosquitto-peer';
import { IndependentHis, seg, splitHl7 } from '../helpers/independent-his';
import { freePort, requirePeer, tempDir, waitFor } from '../helpers/env';

const pexec = promisify(execFile);
const CASES = join(__dirname, '../golden/cases');
const VITALS = readFileSync(join(CASES, 'pcd01-vitals-identified/input.hl7'), 'utf8');
const ALARMS = readFileSync(join(CASES, 'pcd04-alarm-acm/input.hl7'), 'utf8');

type Handler = (msg: unknown, send: (m: unknown) => void, done: (e?: unknown) => void) => void;
interface FakeNode {
  id: string;
  handlers: Map<string, Handler[]>;
  lastStatus?: { fill?: string; text?: string };
  errors: unknown[];
}

/** Just enough of Node-RED's RED object to run our node files (createNode, registerType). */
function fakeRed() {
  const types = new Map<string, new (config: Record<string, unknown>) => FakeNode>();
  const RED = {
    nodes: {
      createNode(node: FakeNode & Record<string, unknown>, config: { id: string }) {
        const ee = new EventEmitter();
        node.id = config.id;
        node.errors = [];
        node.on = (ev: string, cb: (...a: unknown[]) => void) => ee.on(ev, cb);
        node.emit = (ev: string, ...a: unknown[]) => ee.emit(ev, ...a);
        node.status = (s: FakeNode['lastStatus']) => (node.lastStatus = s);
        node.error = (e: unknown) => node.errors.push(e);
        node.warn = () => undefined;
        node.log = () => undefined;
        node.send = () => undefined;
      },
      registerType(name: string, ctor: new (config: Record<string, unknown>) => FakeNode) {
        types.set(name, ctor);
      },
    },
  };
  return { RED, types };
}

function input(node: FakeNode, payload: unknown, messageUid: string, messageId: number): Promise<void> {
  return new Promise((resolve, reject) => {
    (node as unknown as EventEmitter).emit('input', { payload, _iomt: { messageUid, messageId } }, () => undefined, (e?: unknown) => (e ? reject(e) : resolve()));
  });
}

const downsampled = (destination: string) => registry.counter('iomt_vitals_downsampled_total', '').get({ destination });

describe('ICU vitals: PCD-01 in → EMR (downsampled), alarm manager (ACM), upstream mosquitto (outage)', () => {
  const t = tempDir();
  const emr = new IndependentHis();
  const acm = new IndependentHis();
  const broker = new MosquittoPeer();
  let store: GatewayStore;
  let rt: GatewayRuntime;
  let receiver: Hl7Receiver;
  let pcdPort = 0;
  const abort = new AbortController();
  const nodes: FakeNode[] = [];

  beforeAll(async () => {
    requirePeer('mllp_send');
    const brokerPort = await broker.start();
    store = GatewayStore.open({ dataDir: t.dir });
    rt = new GatewayRuntime(loadSettings({ env: { IOMT_DATA_DIR: t.dir } }), store);
    setRuntime(rt);
    const { RED, types } = fakeRed();
    ((await import('../../gateway/src/outputs/pcd/node-red/iomt-pcd-out')).default as unknown as (r: unknown) => void)(RED);
    ((await import('../../gateway/src/outputs/mqtt-upstream/node-red/iomt-mqtt-upstream')).default as unknown as (r: unknown) => void)(RED);
    const emrPort = await emr.start();
    const acmPort = await acm.start();
    process.env.E2E_UPSTREAM_PASSWORD = 'gw-secret';
    const common = { ackTimeoutS: '5', reconnectMaxS: '1', maxAttempts: '100', maxAgeHours: '1', processingIds: 'P' };
    const Pcd = types.get('iomt-pcd-out')!;
    const Up = types.get('iomt-mqtt-upstream')!;
    nodes.push(
      new Pcd({ id: 'emr', destination: 'emr', mode: 'pcd-01', host: '127.0.0.1', port: String(emrPort), downsampleS: '60', sendingEui64: '0A1B2C3D4E5F6071', ...common }),
      new Pcd({ id: 'acm', destination: 'alarm-manager', mode: 'acm', host: '127.0.0.1', port: String(acmPort), downsampleS: '0', ...common }),
      new Up({ id: 'up', destination: 'upstream', url: `mqtt://127.0.0.1:${brokerPort}`, username: 'gateway', passwordEnv: 'E2E_UPSTREAM_PASSWORD', topicPrefix: 'vn/bv', gateway: 'gw1', downsampleS: '0', pubackTimeoutS: '3', reconnectMaxS: '1', maxAttempts: '1000', maxAgeHours: '1', processingIds: 'P' }),
    );
    for (const n of nodes) expect(n.errors, n.id).toEqual([]);
    pcdPort = await freePort();
    receiver = new Hl7Receiver({ deviceId: 'central-stations', host: '127.0.0.1', port: pcdPort }, store, (r) => {
      if (r.duplicate) return;
      for (const n of nodes) void input(n, r.observations, r.messageUid, r.messageId);
    });
    await receiver.start(abort.signal);
  });

  afterAll(async () => {
    abort.abort();
    await receiver?.close().catch(() => undefined);
    for (const n of nodes) await new Promise<void>((r) => (n as unknown as EventEmitter).emit('close', true, r));
    await rt?.stopAll().catch(() => undefined);
    setRuntime(undefined);
    await store?.close();
    await emr.stop();
    await acm.stop();
    await broker.stop();
    broker.cleanup();
    t.cleanup();
  });

  async function send(name: string, text: string): Promise<string> {
    const f = join(t.dir, `${name}.hl7`);
    writeFileSync(f, text);
    const { stdout } = await pexec('timeout', ['10', 'mllp_send', '--loose', '-f', f, '-p', String(pcdPort), '127.0.0.1']);
    return stdout;
  }
  const variant = (id: string, stamp: string, hr: string, flag = '') =>
    VITALS.replaceAll('PCD01-0001', id).replaceAll('20240101120000', stamp).replace('|72|264864^MDC_DIM_BEAT_PER_MIN^MDC|50-120||', `|${hr}|264864^MDC_DIM_BEAT_PER_MIN^MDC|50-120|${flag}|`);

  it('PCD-01 reaches the EMR as PCD-01 v2.6; vitals 10 s later are downsampled; alarms reach the alarm manager; an abnormal value passes; the upstream gets everything after its outage', { timeout: 55_000 }, async () => {
    // 1. the first vitals: AA only after commit, then PCD-01 to the EMR (all 8 metrics), upstream too
    expect(await send('v1', VITALS)).toMatch(/MSA\|AA\|PCD01-0001/);
    await waitFor(() => emr.received.length === 1, 10_000);
    const first = emr.received[0].text;
    expect(seg(first, 'MSH')!.field(12)).toBe('2.6');
    expect(seg(first, 'MSH')!.field(21)).toBe('IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO');
    expect(seg(first, 'PV1')!.field(3)).toBe('ICU^^BED05^HOSP');
    const obx = splitHl7(first).filter((s) => s.id === 'OBX');
    expect(obx[0].field(18)).toBe('FEDCBA9876543210^^FEDCBA9876543210^EUI-64');
    expect(obx.slice(1).map((s) => `${s.c(3, 2)} ${s.field(4)} ${s.field(5)} ${s.c(6, 2)}`)).toEqual([
      'MDC_ECG_HEART_RATE 1.1.1.1 72 MDC_DIM_BEAT_PER_MIN',
      'MDC_PULS_OXIM_SAT_O2 1.2.1.1 97 MDC_DIM_PERCENT',
      'MDC_PULS_OXIM_PULS_RATE 1.2.1.2 71 MDC_DIM_BEAT_PER_MIN',
      'MDC_PRESS_CUFF_SYS 1.3.1.1 118 MDC_DIM_MMHG',
      'MDC_PRESS_CUFF_DIA 1.3.1.2 76 MDC_DIM_MMHG',
      'MDC_PRESS_CUFF_MEAN 1.3.1.3 90 MDC_DIM_MMHG',
      'MDC_TTHOR_RESP_RATE 1.1.2.1 16 MDC_DIM_RESP_PER_MIN',
      'MDC_TEMP 1.4.1.1 36.8 MDC_DIM_DEGC',
    ]);
    await waitFor(() => store.destinationStats('upstream')[0]?.delivered === 1, 10_000);

    // 2. the upstream broker goes down; vitals 10 s later: stored, not sent to the EMR (one value per minute), counted
    await broker.stop();
    const before = downsampled('emr');
    expect(await send('v2', variant('PCD01-0002', '20240101120010', '74'))).toMatch(/MSA\|AA\|PCD01-0002/);
    await waitFor(() => downsampled('emr') - before === 8, 10_000);

    // 3. alarms while vitals are downsampled: straight to the alarm manager as ACM PCD-04
    expect(await send('a1', ALARMS)).toMatch(/MSA\|AA\|ACM-0001/);
    await waitFor(() => acm.received.length === 1, 10_000);
    const r40 = acm.received[0].text;
    expect(seg(r40, 'MSH')!.field(9)).toBe('ORU^R40^ORU_R40');
    expect(seg(r40, 'MSH')!.c(21, 1)).toBe('IHE_PCD_ACM_001');
    const events = splitHl7(r40).filter((s) => s.id === 'OBX' && s.field(4).endsWith('.1') && s.field(4).split('.').length === 5);
    expect(events.map((s) => `${s.c(3, 2)} ${s.field(8)}`)).toEqual(['MDC_PULS_OXIM_SAT_O2 L~PH~SP', 'MDC_EVT_SENSOR_DISCONN PL~ST']);

    // 4. an abnormal heart rate 20 s later passes the EMR's downsampling (alone); the 7 normal values do not
    expect(await send('v3', variant('PCD01-0003', '20240101120020', '134', 'H'))).toMatch(/MSA\|AA\|PCD01-0003/);
    await waitFor(() => emr.received.length === 2, 10_000);
    const third = splitHl7(emr.received[1].text).filter((s) => s.id === 'OBX');
    expect(third.map((s) => `${s.c(3, 2)} ${s.field(5)} ${s.field(8)}`)).toEqual(['MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS  ', 'MDC_ECG_HEART_RATE 134 H']);
    expect(downsampled('emr') - before).toBe(15);
    expect(emr.received.some((m) => m.text.includes('ORU^R40'))).toBe(false); // alarms are the alarm manager's

    // 5. nothing reached the upstream while it was down; it is all in the outbox (store on disk)
    expect(store.destinationStats('upstream')[0]).toMatchObject({ delivered: 1, pending: 3 });

    // 6. the broker is back: the three queued messages arrive, the alarm message on the alarms topic
    await broker.start(broker.port);
    const sub = broker.subscribe('vn/bv/#', 'vn/bv/probe', 3);
    try {
      await sub.ready;
      const lines = await Promise.race([sub.done, new Promise<string[]>((_, rej) => setTimeout(() => rej(new Error(`upstream: ${sub.messages.length} of 3`)), 20_000))]);
      const topics = lines.map((l) => l.slice(0, l.indexOf(' '))).sort();
      expect(topics).toEqual(['vn/bv/gw1/alarms/00A037009A0053DE', 'vn/bv/gw1/vitals/FEDCBA9876543210', 'vn/bv/gw1/vitals/FEDCBA9876543210']);
      const bodies = lines.map((l) => JSON.parse(l.slice(l.indexOf(' ') + 1)) as { observations: Array<{ code: { display?: string }; value?: { value?: number } }> });
      // the upstream got every value, including the ones the EMR's downsampling left out
      expect(bodies.filter((b) => b.observations.length === 8)).toHaveLength(2);
      await waitFor(() => store.destinationStats('upstream')[0]?.pending === 0, 10_000);
    } finally {
      sub.stop();
    }
    expect(store.destinationStats('emr')[0]).toMatchObject({ delivered: 2, pending: 0, dead: 0 });
    expect(store.destinationStats('alarm-manager')[0]).toMatchObject({ delivered: 1, pending: 0, dead: 0 });
  });

  it('a vital whose outbox append failed passes the EMR\'s downsampling when the flow sends it again (not thinned as a repeat of itself)', { timeout: 20_000 }, async () => {
    const at = new Date().toISOString();
    const r = await store.submit({
      deviceId: 'bedside-mqtt', driver: 'mqtt-monitor', raw: Buffer.from('retry-case'), receivedAt: new Date(at), sender: 'dev-retry', messageType: 'MQTT vitals',
      drafts: [{ code: { system: 'urn:iso:std:iso:11073:10101', code: '147842', display: 'MDC_ECG_HEART_RATE' }, status: 'preliminary', statusCode: 'R', category: 'vital-signs', valueType: 'NM', value: { kind: 'quantity', value: 77, unit: '/min' }, effectiveAt: at, equipment: { id: 'dev-retry' }, location: { bed: 'RETRY-01' } }],
    });
    const emrNode = nodes.find((n) => n.id === 'emr')!;
    const real = store.appendOutbox.bind(store);
    let failed = 0;
    (store as unknown as { appendOutbox: typeof real }).appendOutbox = async (...a: Parameters<typeof real>) => {
      if (a[0] === 'emr' && failed++ === 0) throw new Error('disk full (test)');
      return real(...a);
    };
    try {
      await expect(input(emrNode, r.observations, r.messageUid, r.messageId)).rejects.toThrow(/disk full/);
      await input(emrNode, r.observations, r.messageUid, r.messageId); // the flow tracker's re-emission
    } finally {
      (store as unknown as { appendOutbox: typeof real }).appendOutbox = real;
    }
    expect(failed).toBe(2);
    await waitFor(() => emr.received.some((m) => m.text.includes('RETRY-01')), 10_000);
  });
});
