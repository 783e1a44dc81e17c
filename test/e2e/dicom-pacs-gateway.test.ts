/**
 * The shipped imaging flow in the built gateway (issue 11 §7, "How it will be checked"): storescu →
 * `iomt-dicom-in` (flows/imaging.json) → switch → `iomt-dicom-out` → a real Orthanc; the API's
 * /studies shows each study received and taken by the PACS; a gateway killed with SIGKILL after the
 * modality got success still delivers after restart. Needs `npm run build` (as every gateway e2e).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort, requirePeer, tempDir, waitFor } from '../helpers/env';
import { startOrthanc, type Orthanc } from '../helpers/orthanc';
import { ROOT, startGatewayProcess, type GatewayProcess } from '../helpers/gateway-process';
import { newUid, writeSyntheticDicom } from '../../bench/dicom-synth';

const run = promisify(execFile);
let tmp: { dir: string; cleanup(): void };
let pacs: Orthanc;
let gw: GatewayProcess | undefined;
let env: Record<string, string>;

async function storescu(port: number, files: string[]): Promise<string> {
  const { stdout, stderr } = await run('storescu', ['-v', '-aet', 'CT01', '-aec', 'IOMT_GW', '-xe', '127.0.0.1', String(port), ...files], { timeout: 30_000 });
  return stdout + stderr;
}

type Study = { studyInstanceUid: string; instances: number; destinations: Record<string, { delivered: number; pending: number; dead: number; notQueued: number }>; allDelivered: boolean; patientId?: string };

beforeAll(async () => {
  requirePeer('storescu');
  tmp = tempDir('iomt-e2e-imaging-');
  pacs = await startOrthanc({ dir: join(tmp.dir, 'orthanc'), aet: 'PACS_FLOW' });
  env = {
    DICOM_HOST: '127.0.0.1',
    DICOM_PORT: String(await freePort()),
    PACS_HOST: '127.0.0.1',
    PACS_PORT: String(pacs.dicomPort),
    PACS_AET: 'PACS_FLOW',
    PACS_RECONNECT_MAX_S: '1',
    RIS_ORDERS_HOST: '127.0.0.1',
    RIS_ORDERS_PORT: String(await freePort()),
    RIS_HOST: '127.0.0.1',
    RIS_PORT: String(await freePort()), // no RIS listening: MPPS status would wait in its outbox
  };
}, 60_000);

afterAll(async () => {
  await gw?.kill('SIGKILL');
  await pacs?.stop();
  tmp?.cleanup();
}, 30_000);

const start = () => startGatewayProcess({ dataDir: join(tmp.dir, 'data'), flows: join(ROOT, 'flows', 'imaging.json'), env });

describe('flows/imaging.json in the built gateway', () => {
  it('storescu → gateway → Orthanc; /studies shows the study received and delivered', async () => {
    gw = await start();
    const study = newUid();
    const objs = [0, 1, 2].map((i) => writeSyntheticDicom(join(tmp.dir, `a${i}.dcm`), 200 * 1024, { studyInstanceUid: study, seed: i + 1 }));
    expect(await storescu(Number(env.DICOM_PORT), objs.map((o) => o.path))).toMatch(/Store Response \(Success\)/);
    const found = await waitFor(async () => {
      const { studies } = (await gw!.api(`/studies?from=2000-01-01`)) as { studies: Study[] };
      const s = studies.find((x) => x.studyInstanceUid === study);
      return s?.allDelivered ? s : undefined;
    }, 30_000, 200);
    expect(found).toMatchObject({ instances: 3, destinations: { pacs: { delivered: 3, pending: 0, dead: 0, notQueued: 0 } }, patientId: 'SYN-0001' });
    for (const o of objs) expect(await pacs.lookupInstance(o.sopInstanceUid)).toHaveLength(1);
  }, 60_000);

  it('PACS down, gateway killed (SIGKILL) after the modality got success: delivered after restart', async () => {
    await pacs.stop();
    const study = newUid();
    const objs = [0, 1].map((i) => writeSyntheticDicom(join(tmp.dir, `b${i}.dcm`), 100 * 1024, { studyInstanceUid: study, seed: i + 11 }));
    expect(await storescu(Number(env.DICOM_PORT), objs.map((o) => o.path))).toMatch(/Store Response \(Success\)/);
    await waitFor(async () => {
      const { studies } = (await gw!.api(`/studies?from=2000-01-01`)) as { studies: Study[] };
      return studies.find((x) => x.studyInstanceUid === study)?.destinations.pacs?.pending === 2;
    }, 20_000, 200);
    await gw!.kill('SIGKILL');
    await pacs.start();
    gw = await start();
    const done = await waitFor(async () => {
      const { studies } = (await gw!.api(`/studies?from=2000-01-01`)) as { studies: Study[] };
      const s = studies.find((x) => x.studyInstanceUid === study);
      return s?.allDelivered ? s : undefined;
    }, 30_000, 200);
    expect(done.destinations.pacs).toEqual({ delivered: 2, pending: 0, dead: 0, notQueued: 0 });
    for (const o of objs) expect(await pacs.lookupInstance(o.sopInstanceUid)).toHaveLength(1);
  }, 90_000);
});
