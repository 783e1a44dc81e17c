/**
 * End to end (issue 11 §2, "How it will be checked"): dcmtk's storescu → the gateway's storage SCP
 * (drivers/dicom, durable, ack after commit) → the outbox → the dicom-store output → a real Orthanc.
 * The wiring between SCP and output is what the `iomt-dicom-out` node does on each flow message:
 * prepare the descriptor from the committed observations and the index row, append to the PACS's
 * outbox, wake its worker.
 * - every fixture (except no_meta.dcm) arrives in Orthanc in its stored syntax with identical
 *   elements and pixel data bytes;
 * - a PACS outage: storescu still gets success (the object is durable in the gateway), the entries
 *   wait without using attempts, and are delivered when Orthanc is back;
 * - /studies (searchStudies) shows the study waiting, then delivered.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { freePort, requirePeer, tempDir, waitFor } from '../helpers/env';
import { startOrthanc, type Orthanc } from '../helpers/orthanc';
import { GatewayStore, DB_FILE } from '../../gateway/src/store/gateway-store';
import { OutboxWorker } from '../../gateway/src/pipeline/outbox-worker';
import { DicomStoreOutput } from '../../gateway/src/outputs/dicom-store';
import { datasetUids, parseFileMeta } from '../../gateway/src/outputs/dicom-store/dicom-file';
import { searchStudies } from '../../gateway/src/http/studies';
import { DicomStorageScp } from '../../drivers/dicom/storage-scp';
import { newUid, writeSyntheticDicom } from '../../bench/dicom-synth';
import type { DicomInstanceRecord } from '../../drivers/dicom/contracts';

const run = promisify(execFile);
const FIXTURES = join(__dirname, '../../drivers/dicom/fixtures'); // the pydicom files copied into the project (licence note there)
const FILES = readdirSync(FIXTURES).filter((f) => f.endsWith('.dcm') && f !== 'no_meta.dcm');
// storescu options to propose each file's own syntax (peers.md: compressed files need theirs proposed)
const PROPOSE: Record<string, string[]> = {
  'JPEG-lossy.dcm': ['-xx'],
  'JPEG2000.dcm': ['-xw'],
  'MR_small_RLE.dcm': ['-xr'],
  'MR_small_jpeg_ls_lossless.dcm': ['-xt'],
  'SC_rgb_jpeg_dcmtk.dcm': ['-xy'],
  'MR_small_bigendian.dcm': ['-xb'],
  'MR_small_implicit.dcm': ['-xi'],
  'rtplan.dcm': ['-xi'],
};
// dcmjs ships no type declarations
const { data: dcmjsData } = require('dcmjs') as { data: { DicomMessage: { readFile(ab: ArrayBuffer): { dict: Record<string, unknown> } } } };

let tmp: { dir: string; cleanup(): void };
let store: GatewayStore;
let pacs: Orthanc;
let scp: DicomStorageScp;
let scpPort: number;
let output: DicomStoreOutput;
let worker: OutboxWorker;
const appends: Promise<unknown>[] = [];
/** the file the gateway stored last for a SOP Instance UID (relative to the data dir) */
const storedPath = new Map<string, string>();
let lastDuplicate = false;

function elementsOf(file: Buffer): Record<string, unknown> {
  const dict = dcmjsData.DicomMessage.readFile(file.buffer.slice(file.byteOffset, file.byteOffset + file.byteLength) as ArrayBuffer).dict;
  const norm = (v: unknown): unknown =>
    v instanceof ArrayBuffer ? Buffer.from(v).toString('base64') : Array.isArray(v) ? v.map(norm) : v && typeof v === 'object' ? Object.fromEntries(Object.entries(v).map(([k, x]) => [k, norm(x)])) : v;
  return norm(dict) as Record<string, unknown>;
}

async function storescuFile(path: string, opts: string[] = []): Promise<string> {
  const { stdout, stderr } = await run('storescu', ['-v', '-aet', 'MODALITY', '-aec', 'IOMT_GW', ...opts, '127.0.0.1', String(scpPort), path], { timeout: 20_000 });
  return stdout + stderr;
}
const storescu = (file: string) => storescuFile(join(FIXTURES, file), PROPOSE[file]);

const stats = () => store.destinationStats('pacs')[0] ?? { pending: 0, delivered: 0, dead: 0 };

beforeAll(async () => {
  requirePeer('storescu');
  tmp = tempDir('iomt-e2e-pacs-');
  const dataDir = join(tmp.dir, 'data');
  store = GatewayStore.open({ dataDir });
  pacs = await startOrthanc({ dir: join(tmp.dir, 'orthanc'), aet: 'PACS_E2E', extra: { OverwriteInstances: true } });
  output = new DicomStoreOutput({ destination: 'pacs', host: '127.0.0.1', port: pacs.dicomPort, calledAeTitle: 'PACS_E2E', callingAeTitle: 'IOMT_GW', dataDir, connectTimeoutMs: 1000, lingerMs: 500 });
  worker = new OutboxWorker(store, output, { unavailableBackoffMs: { base: 200, max: 500 }, idlePollMs: 200 });
  scpPort = await freePort();
  scp = new DicomStorageScp({ deviceId: 'modalities', aeTitle: 'IOMT_GW', host: '127.0.0.1', port: scpPort, dataDir }, store, (r, inbound) => {
    const rec = inbound.meta as unknown as DicomInstanceRecord;
    storedPath.set(rec.sopInstanceUid, rec.relPath);
    lastDuplicate = r.duplicate;
    // what iomt-dicom-out does per flow message
    const p = output.prepare(r.observations, r.messageUid, inbound.meta as Partial<DicomInstanceRecord>);
    appends.push(store.appendOutbox('pacs', [{ key: r.messageUid, messageId: r.messageId, payload: p.payload, contentType: p.contentType }]).then(() => worker.wake()));
  });
  await scp.start();
  worker.start();
}, 60_000);

afterAll(async () => {
  await scp?.close();
  await worker?.stop();
  await pacs?.stop();
  await store?.close();
  tmp?.cleanup();
}, 30_000);

describe('storescu → gateway → Orthanc', () => {
  it('every fixture arrives in Orthanc in its stored syntax with identical elements and pixel data', async () => {
    // one at a time: several fixtures share one SOP Instance UID (Orthanc keeps the last)
    for (const f of FILES) {
      const before = stats();
      expect(await storescu(f), f).toMatch(/Store Response \(Success\)/);
      expect(lastDuplicate, `${f} was stored as a new object`).toBe(false);
      await waitFor(() => stats().delivered + stats().dead > before.delivered + before.dead, 15_000, 50).catch((e) => {
        throw new Error(`${f}: ${(e as Error).message}; stats ${JSON.stringify(stats())}, worker ${worker.state} ${worker.lastError ?? ''}`);
      });
      expect(store.deadLetters('pacs').map((d) => d.lastError), f).toEqual([]);
      // storescu may re-encode what it sends (it drops group lengths): compare with what the gateway got
      const sop = datasetUids(readFileSync(join(FIXTURES, f)))!.sopInstanceUid!;
      const ours = readFileSync(join(tmp.dir, 'data', storedPath.get(sop)!));
      const [id] = await pacs.lookupInstance(sop);
      expect(id, f).toBeDefined();
      const theirs = await pacs.instanceFile(id);
      expect(parseFileMeta(theirs).transferSyntaxUid, f).toBe(parseFileMeta(ours).transferSyntaxUid);
      const a = elementsOf(theirs);
      const b = elementsOf(ours);
      expect(a, f).toEqual(b);
      if (b['7FE00010']) expect(JSON.stringify(a['7FE00010']), `${f}: pixel data`).toBe(JSON.stringify(b['7FE00010']));
    }
    expect(stats()).toMatchObject({ dead: 0, pending: 0 });
    expect(output.associationsOpened).toBeGreaterThanOrEqual(1);
  }, 60_000);

  it('a PACS outage: the modality still gets success; the instances wait (no attempt used), then are delivered', async () => {
    await pacs.stop();
    const study = newUid();
    const objs = [0, 1, 2].map((i) => writeSyntheticDicom(join(tmp.dir, `outage-${i}.dcm`), 256 * 1024, { studyInstanceUid: study, seed: i + 7 }));
    const delivered = stats().delivered;
    for (const o of objs) expect(await storescuFile(o.path)).toMatch(/Store Response \(Success\)/);
    await Promise.all(appends);
    await waitFor(() => worker.state === 'backoff', 10_000);
    await new Promise((r) => setTimeout(r, 1000));
    expect(stats()).toMatchObject({ pending: 3, dead: 0 });
    expect(store.lease('pacs', 10, 1).every((e) => e.attempts === 0)).toBe(true); // unavailable is not an attempt
    const [waiting] = searchStudies(join(tmp.dir, 'data', DB_FILE), { limit: 50 }).filter((s) => s.studyInstanceUid === study);
    expect(waiting).toMatchObject({ instances: 3, destinations: { pacs: { delivered: 0, pending: 3, dead: 0, notQueued: 0 } }, allDelivered: false });
    await new Promise((r) => setTimeout(r, 5)); // the 1 ms test lease above has ended
    await pacs.start();
    worker.wake();
    await waitFor(() => stats().pending === 0, 20_000, 100);
    expect(stats()).toMatchObject({ delivered: delivered + 3, dead: 0 });
    for (const o of objs) expect(await pacs.lookupInstance(o.sopInstanceUid)).toHaveLength(1);
    const [done] = searchStudies(join(tmp.dir, 'data', DB_FILE), { limit: 50 }).filter((s) => s.studyInstanceUid === study);
    expect(done).toMatchObject({ instances: 3, destinations: { pacs: { delivered: 3, pending: 0, dead: 0, notQueued: 0 } }, allDelivered: true });
  }, 60_000);
});
