/**
 * The `iomt-fhir-out` Node-RED node in a running gateway runtime (issue 13 §6): an analyzer sends
 * ORU^R01 over MLLP (python-hl7's mllp_send) to the HL7 receiver, whose sink is the device-settings
 * wrapper (MA_MAY); each committed message goes to the node, which queues one Bundle in the durable
 * outbox and delivers it to the Medplum FHIR router with a token from oidc-provider (client secret
 * read from the environment variable the node names).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { EventEmitter } from 'node:events';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort, requirePeer, tempDir, waitFor } from '../helpers/env';
import { startFhirServer, type FhirTestServer } from '../helpers/fhir-server';
import { startOAuthServer, type OAuthTestServer } from '../helpers/oauth-server';
import { GatewayStore } from '../../gateway/src/store/gateway-store';
import { GatewayRuntime, setRuntime } from '../../gateway/src/runtime';
import { loadSettings } from '../../gateway/src/config/settings';
import { Hl7Receiver } from '../../drivers/hl7-mllp/hl7-receiver';
import { withDeviceSettings } from '../../gateway/src/identifiers/device-sink';
import { createRootLogger } from '../../gateway/src/log/logger';

const pexec = promisify(execFile);

interface FakeNode {
  id: string;
  lastStatus?: { fill?: string; text?: string };
  errors: unknown[];
}

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

const oru = (id: string, msh11 = 'P') =>
  [
    `MSH|^~\\&|XN1000|LAB|GW|BV|20250301093100+0700||ORU^R01|${id}|${msh11}|2.5.1|||||VNM|UNICODE UTF-8`,
    'PID|1||BN0101^^^BV^MR~001200001234^^^BCA^CCCD||Đặng^Minh^Văn||20000101|M',
    `OBR|1|ORD-${id}|S-${id}|GLU^Glucose^L|||20250301080000+0700`,
    'OBX|1|NM|GLU^Glucose^L||5.40|mmol/L|3.9-6.4|N|||F|||20250301092900+0700',
  ].join('\r');

describe('iomt-fhir-out node: MLLP in → outbox → FHIR server', () => {
  const tmp = tempDir('iomt-fhir-node-');
  let fhir: FhirTestServer;
  let oauth: OAuthTestServer;
  let store: GatewayStore;
  let rt: GatewayRuntime;
  let receiver: Hl7Receiver;
  let port = 0;
  const abort = new AbortController();
  const nodes: FakeNode[] = [];
  let types: Map<string, new (config: Record<string, unknown>) => FakeNode>;

  beforeAll(async () => {
    requirePeer('mllp_send');
    createRootLogger('silent');
    [fhir, oauth] = await Promise.all([startFhirServer(), startOAuthServer()]);
    fhir.requireToken = (t) => oauth.check(t);
    store = GatewayStore.open({ dataDir: tmp.dir });
    rt = new GatewayRuntime(loadSettings({ env: { IOMT_DATA_DIR: tmp.dir } }), store);
    setRuntime(rt);
    const f = fakeRed();
    types = f.types;
    ((await import('../../gateway/src/outputs/fhir-http/node-red/iomt-fhir-out')).default as unknown as (r: unknown) => void)(f.RED);
    process.env.E2E_FHIR_SECRET = oauth.basic.clientSecret;
    const Out = types.get('iomt-fhir-out')!;
    const node = new Out({ id: 'n-emr', name: 'EMR', destination: 'emr', baseUrl: fhir.url, authType: 'client-credentials', tokenUrl: oauth.tokenUrl, clientId: oauth.basic.clientId, clientSecretEnv: 'E2E_FHIR_SECRET', privateKeyFile: '', keyId: '', keyAlg: 'RS384', scope: 'system/Observation.c', profileSet: 'vn-core', requestTimeoutS: '10', maxAttempts: '10', maxAgeHours: '1', processingIds: 'P' });
    nodes.push(node);
    port = await freePort();
    receiver = new Hl7Receiver({ deviceId: 'xn1000', host: '127.0.0.1', port }, withDeviceSettings(store, 'xn1000', { machineCode: 'XN-HH-07' }), (r) => {
      if (r.duplicate) return;
      (node as unknown as EventEmitter).emit('input', { payload: r.observations, _iomt: { messageUid: r.messageUid, messageId: r.messageId } }, () => undefined, () => undefined);
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
    await Promise.all([fhir?.close(), oauth?.close()]);
    delete process.env.E2E_FHIR_SECRET;
    tmp.cleanup();
  });

  async function send(name: string, text: string): Promise<string> {
    const file = join(tmp.dir, `${name}.hl7`);
    writeFileSync(file, text);
    return (await pexec('timeout', ['10', 'mllp_send', '--loose', '-f', file, '-p', String(port), '127.0.0.1'])).stdout;
  }

  it('a result sent over MLLP reaches the FHIR server with MA_MAY, Vietnamese name and its identifiers; a T message is not sent', async () => {
    expect(nodes[0].errors).toEqual([]);
    expect(await send('m1', oru('N-0001'))).toMatch(/MSA\|AA\|N-0001/);
    await waitFor(() => store.destinationStats('emr')[0]?.delivered === 1, 15_000);
    const [obs] = await fhir.search('Observation');
    expect(obs.valueQuantity).toMatchObject({ value: 5.4, unit: 'mmol/L', code: 'mmol/L' });
    const dev = await fhir.repo.readReference({ reference: obs.device.reference } as never);
    expect((dev as { identifier: Array<{ value: string }> }).identifier[0].value).toBe('XN-HH-07');
    const [pat] = await fhir.search('Patient');
    expect(pat.name[0].text).toBe('Đặng Văn Minh');
    expect(pat.identifier.map((i: { value: string }) => i.value)).toEqual(['BN0101', '001200001234']);
    expect(fhir.invalid).toEqual([]);
    await waitFor(() => nodes[0].lastStatus?.fill === 'green', 5000);
    expect(nodes[0].lastStatus?.text).toMatch(/^connected queue 0/);

    expect(await send('m2', oru('N-0002', 'T'))).toMatch(/MSA\|AA\|N-0002/);
    await new Promise((r) => setTimeout(r, 500));
    expect(store.destinationStats('emr')[0]).toMatchObject({ delivered: 1, pending: 0 });
    expect(await fhir.search('Observation')).toHaveLength(1);
  });

  it('F, a rerun F and a C for the same specimen: the node reads the store, the rerun is corrected, the first stays final, nothing dead', async () => {
    const before = store.destinationStats('emr')[0]?.delivered ?? 0;
    const msg = (id: string, v: string, st: string) => oru(id).replace(`S-${id}`, 'S-RERUN').replace('|5.40|mmol/L|3.9-6.4|N|||F|', `|${v}|mmol/L|3.9-6.4|N|||${st}|`);
    expect(await send('r1', msg('N-0101', '5.40', 'F'))).toMatch(/MSA\|AA/);
    expect(await send('r2', msg('N-0102', '5.90', 'F'))).toMatch(/MSA\|AA/);
    expect(await send('r3', msg('N-0103', '6.10', 'C'))).toMatch(/MSA\|AA/);
    await waitFor(() => {
      if (store.deadLetters('emr').length) throw new Error(`dead: ${store.deadLetters('emr')[0].lastError}`);
      return store.destinationStats('emr')[0]?.delivered === before + 3;
    }, 30_000);
    const mine: Array<[string, number]> = [];
    for (const o of await fhir.search('Observation')) {
      const sp = o.specimen ? ((await fhir.repo.readReference({ reference: o.specimen.reference } as never)) as { accessionIdentifier?: { value: string } }) : undefined;
      if (sp?.accessionIdentifier?.value === 'S-RERUN') mine.push([o.status, o.valueQuantity.value]);
    }
    expect(mine.sort()).toEqual([['corrected', 6.1], ['final', 5.4]]);
    expect(fhir.invalid).toEqual([]);
  });

  it('a node whose secret variable is not set fails visibly, naming the variable, never a value', async () => {
    const Out = types.get('iomt-fhir-out')!;
    const bad = new Out({ id: 'n-bad', destination: 'emr2', baseUrl: fhir.url, authType: 'client-credentials', tokenUrl: oauth.tokenUrl, clientId: 'gw-basic', clientSecretEnv: 'E2E_NOT_SET_SECRET', processingIds: 'P' });
    nodes.push(bad);
    expect(bad.errors.map(String).join('\n')).toMatch(/environment variable E2E_NOT_SET_SECRET is not set/);
    expect(bad.lastStatus).toMatchObject({ fill: 'red' });
    expect(rt.destinationNames()).not.toContain('emr2');
  });
});
