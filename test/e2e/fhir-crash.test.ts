/**
 * kill -9 during a FHIR delivery, then re-delivery: nothing is created twice (issue 13 §5).
 * A gateway-side process (store + outbox worker + FHIR output, run with `node --import tsx`) queues a
 * lab message and POSTs its Bundle; the FHIR server (Medplum router) stores the resources but holds its
 * answer back, and the process is killed with SIGKILL while it waits. The outcome was never recorded,
 * so the entry is still pending in SQLite. A new process delivers it again: the conditional creates
 * match what the first attempt stored.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir, waitFor } from '../helpers/env';
import { startFhirServer, type FhirTestServer } from '../helpers/fhir-server';

const ROOT = join(__dirname, '..', '..');
const ORU = [
  'MSH|^~\\&|XN1000|LAB|GW|BV|20250301093100+0700||ORU^R01|CRASH-1|P|2.5.1|||||VNM|UNICODE UTF-8',
  'PID|1||BN0009^^^BV^MR||Phạm^Hùng^Quốc||19700101|M',
  'OBR|1|ORD-9|S-9001|CBC^Công thức máu^L|||20250301080000+0700',
  'OBX|1|NM|HGB^Huyết sắc tố^L||14.1|g/dL|13.0-17.0|N|||F|||20250301092900+0700',
  'OBX|2|NM|PLT^PLT^L||>1000|10*3/uL|150-400|H|||F|||20250301092900+0700',
].join('\r');

const CHILD = `
import { readFileSync } from 'node:fs';
import { GatewayStore } from '${ROOT}/gateway/src/store/gateway-store';
import { OutboxWorker } from '${ROOT}/gateway/src/pipeline/outbox-worker';
import { FhirHttpOutput } from '${ROOT}/gateway/src/outputs/fhir-http';
import { withDeviceSettings } from '${ROOT}/gateway/src/identifiers/device-sink';
import { parseHl7 } from '${ROOT}/drivers/hl7-mllp/hl7-message';
import { parseOru } from '${ROOT}/drivers/hl7-mllp/oru-parser';
import { createRootLogger } from '${ROOT}/gateway/src/log/logger';
async function main() {
  createRootLogger('silent');
  const store = GatewayStore.open({ dataDir: process.env.DATA_DIR! });
  const out = new FhirHttpOutput({ destination: 'emr', baseUrl: process.env.FHIR_URL!, requestTimeoutMs: 60_000 });
  if (process.env.SUBMIT) {
    const text = readFileSync(process.env.SUBMIT, 'utf8');
    const r = await withDeviceSettings(store, 'xn1000', { machineCode: 'XN-HH-01' }).submit({ deviceId: 'xn1000', driver: 'hl7-mllp', raw: Buffer.from(text), drafts: parseOru(parseHl7(text)).drafts });
    const p = out.prepare(r.observations, r.messageUid);
    await store.appendOutbox('emr', [{ key: r.messageUid, messageId: r.messageId, payload: p.payload, contentType: p.contentType }]);
    console.log('queued ' + r.messageUid);
  }
  const w = new OutboxWorker(store, out, { idlePollMs: 50 });
  w.start();
  const t = setInterval(() => {
    const s = store.destinationStats('emr')[0];
    if (s && s.delivered >= 1) {
      clearInterval(t);
      console.log('delivered');
      void w.stop().then(() => store.close()).then(() => process.exit(0));
    }
  }, 50);
}
void main();
`;

describe('kill -9 while the FHIR server holds its answer, then re-delivery', () => {
  const tmp = tempDir('iomt-fhir-crash-');
  let fhir: FhirTestServer;
  const children: ChildProcess[] = [];
  beforeAll(async () => {
    fhir = await startFhirServer();
    writeFileSync(join(tmp.dir, 'child.ts'), CHILD);
    writeFileSync(join(tmp.dir, 'oru.hl7'), ORU);
  });
  afterAll(async () => {
    for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
    await fhir.close();
    tmp.cleanup();
  });

  function start(env: Record<string, string>) {
    const c = spawn(process.execPath, ['--import', 'tsx', join(tmp.dir, 'child.ts')], { cwd: ROOT, env: { ...process.env, DATA_DIR: join(tmp.dir, 'gw'), FHIR_URL: fhir.url, ...env }, stdio: ['ignore', 'pipe', 'pipe'] });
    children.push(c);
    let out = '';
    c.stdout!.on('data', (d) => (out += d));
    c.stderr!.on('data', (d) => (out += d));
    const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((r) => c.once('exit', (code, signal) => r({ code, signal })));
    return { c, out: () => out, exited };
  }

  const count = async () => Object.fromEntries(await Promise.all(['Observation', 'Patient', 'Device', 'Specimen', 'DiagnosticReport'].map(async (t) => [t, (await fhir.search(t)).length])));

  it('the second process re-delivers the stored entry and the server creates nothing new', async () => {
    fhir.holdResponse = () => true;
    const first = start({ SUBMIT: join(tmp.dir, 'oru.hl7') });
    await waitFor(() => fhir.received.some((r) => r.method === 'POST'), 30_000);
    expect(first.out()).toMatch(/queued [0-9A-Z]{18}/);
    first.c.kill('SIGKILL');
    expect((await first.exited).signal).toBe('SIGKILL');
    const afterCrash = await count();
    expect(afterCrash).toEqual({ Observation: 2, Patient: 1, Device: 1, Specimen: 1, DiagnosticReport: 1 });

    fhir.holdResponse = undefined;
    const second = start({});
    expect((await second.exited).code).toBe(0);
    expect(second.out()).toContain('delivered');
    const posts = fhir.received.filter((r) => r.method === 'POST');
    expect(posts).toHaveLength(2);
    expect(posts[1].raw).toBe(posts[0].raw); // the stored bytes, re-sent
    expect(posts[1].status).toBe(200);
    expect(await count()).toEqual(afterCrash);
    expect(fhir.invalid).toEqual([]);
  });
});
