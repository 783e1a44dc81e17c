/**
 * The dicom-store output against a real Orthanc (started here, free ports, killed in teardown):
 * every fixture forwarded from disk arrives with identical data set bytes (pixel data included);
 * association re-use; a refused instance dead-lettered alone; fallback to explicit VR LE only for
 * native data; a file changed on disk never sent; the outbox worker over a PACS outage.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFileSync, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import dimse from 'dcmjs-dimse';
import { join } from 'node:path';
import { freePort, requirePeer, tempDir, waitFor } from '../../../../test/helpers/env';
import { SC_STORAGE, writeSyntheticDicom } from '../../../../bench/dicom-synth';
import { startOrthanc, type Orthanc } from '../../../../test/helpers/orthanc';
import type { Observation } from '../../contracts/observation';
import type { DeliveryOutcome, OutboxEntry } from '../../contracts/output';
import { GatewayStore } from '../../store/gateway-store';
import { OutboxWorker } from '../../pipeline/outbox-worker';
import { datasetUids, parseFileMeta } from './dicom-file';
import { classifyStoreStatus, DicomStoreOutput, type DicomStoreDescriptor } from './dicom-store-output';

// dcmjs ships no type declarations
const { data: dcmjsData } = require('dcmjs') as {
  data: { DicomMessage: { readFile(ab: ArrayBuffer): { dict: unknown } }; DicomMetaDictionary: { naturalizeDataset(d: unknown): unknown } };
};

const FIXTURES = join(__dirname, '../../../../drivers/dicom/fixtures'); // the pydicom files copied into the project (licence note there)
const FILES = readdirSync(FIXTURES).filter((f) => f.endsWith('.dcm') && f !== 'no_meta.dcm');
const JPEG_LIKE = new Set(['JPEG-lossy.dcm', 'JPEG2000.dcm', 'MR_small_RLE.dcm', 'MR_small_jpeg_ls_lossless.dcm', 'SC_rgb_jpeg_dcmtk.dcm']);

let tmp: { dir: string; cleanup(): void };
let dataDir: string;
let pacs: Orthanc;

/** An observation as the storage SCP builds it (drivers/dicom/contracts.ts), pointing to a copied file. */
function observationFor(file: string, seq: number): Observation {
  const rel = `dicom/test/${file}`;
  mkdirSync(join(dataDir, 'dicom/test'), { recursive: true });
  copyFileSync(join(FIXTURES, file), join(dataDir, rel));
  const meta = parseFileMeta(readFileSync(join(dataDir, rel)));
  return {
    id: `M${seq}-1`,
    messageId: seq,
    messageUid: `M${seq}`,
    seq: 1,
    deviceId: 'modality-1',
    driver: 'dicom',
    sourceMessageId: meta.sopInstanceUid,
    receivedAt: '2026-11-30T10:00:00.000Z',
    code: { system: 'urn:ietf:rfc:3986', code: `urn:oid:${meta.sopClassUid}` },
    category: 'imaging',
    status: 'final',
    value: { kind: 'reference', pointer: rel, application: 'iomt-gateway', typeOfData: 'application', subtype: 'dicom' },
  } as Observation;
}

const entry = (id: number, payload: Buffer): OutboxEntry => ({ id, destination: 'pacs', key: `k${id}`, payload, attempts: 0, createdAt: Date.now() });
const never = new AbortController().signal;

function outputFor(o: Orthanc, extra: Partial<ConstructorParameters<typeof DicomStoreOutput>[0]> = {}): DicomStoreOutput {
  return new DicomStoreOutput({ destination: 'pacs', host: '127.0.0.1', port: o.dicomPort, calledAeTitle: o.aet, callingAeTitle: 'IOMT_GW', dataDir, lingerMs: 200, dimseTimeoutMs: 20_000, ...extra });
}

/** Every data set element (meta group left out), binary values as base64: comparable with toEqual. */
function elementsOf(file: Buffer): Record<string, unknown> {
  const dict = dcmjsData.DicomMessage.readFile(file.buffer.slice(file.byteOffset, file.byteOffset + file.byteLength) as ArrayBuffer).dict as Record<string, unknown>;
  const norm = (v: unknown): unknown => {
    if (v instanceof ArrayBuffer) return Buffer.from(v).toString('base64');
    if (ArrayBuffer.isView(v)) return Buffer.from(v.buffer, v.byteOffset, v.byteLength).toString('base64');
    if (Array.isArray(v)) return v.map(norm);
    if (v && typeof v === 'object') return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, norm(x)]));
    return v;
  };
  const out = norm(dict) as Record<string, { Value?: unknown[] }>;
  // pixel data (all fragments) as one string, to report it apart
  const px = out['7FE00010'];
  return px ? { ...out, '7FE00010': (px.Value ?? []).join('|') } : out;
}

/** The data set bytes after the File Meta Information (PS3.10 7.1). */
const datasetOf = (file: Buffer) => file.subarray(parseFileMeta(file).datasetOffset);

beforeAll(async () => {
  tmp = tempDir('iomt-dicom-out-');
  dataDir = join(tmp.dir, 'data');
  pacs = await startOrthanc({ dir: join(tmp.dir, 'orthanc'), aet: 'PACS_T', extra: { OverwriteInstances: true } });
}, 40_000);

afterAll(async () => {
  await pacs?.stop();
  tmp?.cleanup();
}, 20_000);

describe('dicom-store output → Orthanc', () => {
  it('every fixture arrives in its stored syntax with identical elements and pixel data bytes', async () => {
    // several fixtures share one SOP Instance UID (MR_small in 5 syntaxes): send and check one at a time
    for (const [i, f] of FILES.entries()) {
      const out = outputFor(pacs);
      const d = out.prepare([observationFor(f, i + 1)], `k${i + 1}`);
      const [r] = await out.write([entry(i + 1, d.payload)], never);
      expect(r, f).toEqual({ id: i + 1, outcome: 'delivered' });
      await out.close();
      const ours = readFileSync(join(FIXTURES, f));
      const meta = parseFileMeta(ours);
      const ids = await pacs.lookupInstance(datasetUids(ours)?.sopInstanceUid ?? meta.sopInstanceUid);
      expect(ids, f).toHaveLength(1);
      const theirs = await pacs.instanceFile(ids[0]);
      expect(parseFileMeta(theirs).transferSyntaxUid, f).toBe(meta.transferSyntaxUid);
      // Orthanc rewrites the File Meta (its implementation UID) and re-encodes sequence lengths when it
      // writes the file; every element, pixel data included, is what we sent (the byte-for-byte check is
      // against storescp --bit-preserving below)
      const a = elementsOf(theirs);
      const b = elementsOf(ours);
      expect(a, f).toEqual(b);
      if (b['7FE00010']) expect(a['7FE00010'], `${f}: pixel data`).toBe(b['7FE00010']);
    }
  }, 40_000);

  it('a batch of every fixture goes over one association (one context per class and stored syntax)', async () => {
    const out = outputFor(pacs);
    const descs = FILES.map((f, i) => out.prepare([observationFor(f, 50 + i)], `b${i}`));
    const outcomes = await out.write(descs.map((d, i) => entry(i + 1, d.payload)), never);
    expect(outcomes.map((o) => o.outcome)).toEqual(FILES.map(() => 'delivered'));
    expect(out.associationsOpened).toBe(1);
    // the next batch within lingerMs re-uses it
    const again = await out.write([entry(99, descs[0].payload)], never);
    expect(again[0].outcome).toBe('delivered');
    expect(out.associationsOpened).toBe(1);
    await out.close();
  }, 30_000);

  it('a descriptor carries the index row values; the same input gives the same bytes', () => {
    const out = outputFor(pacs);
    const obs = observationFor('CT_small.dcm', 100);
    const a = out.prepare([obs], 'k');
    const b = out.prepare([obs], 'k');
    expect(a.payload.equals(b.payload)).toBe(true);
    const d = JSON.parse(a.payload.toString()) as DicomStoreDescriptor;
    expect(d).toMatchObject({ relPath: 'dicom/test/CT_small.dcm', transferSyntaxUid: '1.2.840.10008.1.2.1', bytes: 39206 });
    expect(d.sha256).toMatch(/^[0-9a-f]{64}$/);
    const withRow = JSON.parse(out.prepare([obs], 'k', { relPath: obs.value!.kind === 'reference' ? (obs.value as { pointer: string }).pointer : '', sha256: 'ab'.repeat(32), bytes: 1, studyInstanceUid: '1.2.3' }).payload.toString());
    expect(withRow).toMatchObject({ sha256: 'ab'.repeat(32), bytes: 1, studyInstanceUid: '1.2.3' });
    expect(() => out.prepare([{ ...obs, value: { kind: 'reference', pointer: '../../etc/passwd' } } as Observation], 'k')).toThrow(/outside the data dir/);
    expect(() => out.prepare([{ ...obs, value: { kind: 'numeric', value: 1 } } as unknown as Observation], 'k')).toThrow(/one DICOM instance/);
  });

  it('a file changed on disk after it was stored is never sent (dead), the others are', async () => {
    const out = outputFor(pacs);
    const a = out.prepare([observationFor('rtplan.dcm', 200)], 'a');
    const b = out.prepare([observationFor('reportsi.dcm', 201)], 'b');
    // rtplan and reportsi were already sent by the first test: use fresh copies with other content
    const path = join(dataDir, 'dicom/test/rtplan.dcm');
    const buf = readFileSync(path);
    buf[buf.length - 1] ^= 0xff; // same size, other content
    writeFileSync(path, buf);
    const [ra, rb] = await out.write([entry(1, a.payload), entry(2, b.payload)], never);
    expect(ra).toMatchObject({ outcome: 'dead', error: expect.stringMatching(/changed on disk/) });
    expect(rb.outcome).toBe('delivered');
    const missing = { ...(JSON.parse(b.payload.toString()) as DicomStoreDescriptor), relPath: 'dicom/test/nothing.dcm' };
    const [rc] = await out.write([entry(3, Buffer.from(JSON.stringify(missing)))], never);
    expect(rc).toMatchObject({ outcome: 'dead', error: expect.stringMatching(/missing/) });
    await out.close();
  }, 20_000);

  it('connection refused → unavailable for the whole batch (not an attempt)', async () => {
    const out = new DicomStoreOutput({ destination: 'pacs', host: '127.0.0.1', port: 1, calledAeTitle: 'X', dataDir, connectTimeoutMs: 2000 });
    const d = out.prepare([observationFor('MR_small.dcm', 300)], 'k');
    const r = await out.write([entry(1, d.payload), entry(2, d.payload)], never);
    expect(r.map((x) => x.outcome)).toEqual(['unavailable', 'unavailable']);
    // a wrong called AE: Orthanc rejects the association (DicomCheckCalledAet) → unavailable too
    const wrong = new DicomStoreOutput({ destination: 'pacs', host: '127.0.0.1', port: pacs.dicomPort, calledAeTitle: 'NOT_PACS', dataDir });
    const [w] = await wrong.write([entry(1, d.payload)], never);
    expect(w).toMatchObject({ outcome: 'unavailable', error: expect.stringMatching(/A-ASSOCIATE-RJ/) });
  }, 20_000);

  it('C-STORE status classes (PS3.4 B.2.3)', () => {
    const cases: Array<[number, string]> = [
      [0x0000, 'success'],
      [0xb000, 'warning'],
      [0xb007, 'warning'],
      [0xb006, 'warning'],
      [0x0001, 'warning'],
      [0x0107, 'warning'],
      [0x0116, 'warning'],
      [0xa700, 'out-of-resources'],
      [0xa7ff, 'out-of-resources'],
      [0xa900, 'failure'],
      [0xc000, 'failure'],
      [0x0122, 'failure'],
      [0x0124, 'failure'],
      [0xfe00, 'cancel'],
    ];
    for (const [s, cls] of cases) expect(classifyStoreStatus(s), s.toString(16)).toBe(cls);
  });
});

describe('a PACS that refuses some instances', () => {
  let picky: Orthanc;
  beforeAll(async () => {
    picky = await startOrthanc({
      dir: join(tmp.dir, 'picky'),
      aet: 'PICKY',
      // little endian native syntaxes only: compressed and big endian objects cannot be offered, deflated
      // falls back to explicit LE; unknown SOP classes refused at negotiation (PS3.8 9.3.3.2 result 3)
      extra: { AcceptedTransferSyntaxes: ['1.2.840.10008.1.2', '1.2.840.10008.1.2.1'], UnknownSopClassAccepted: false, OverwriteInstances: true },
    });
  }, 40_000);
  afterAll(async () => {
    await picky?.stop();
  }, 20_000);

  it('instances it cannot take are dead one by one, the others delivered; deflated sent inflated with the same values', async () => {
    const out = outputFor(picky);
    const descs = FILES.map((f, i) => out.prepare([observationFor(f, 400 + i)], `k${i}`));
    // a SOP class Orthanc does not know
    mkdirSync(join(dataDir, 'dicom/test'), { recursive: true });
    const odd = writeSyntheticDicom(join(dataDir, 'dicom/test/odd-class.dcm'), 4096, { sopClassUid: '1.2.840.10008.5.1.4.1.1.77.1.99999' });
    const oddObs = { ...observationFor('CT_small.dcm', 450), sourceMessageId: odd.sopInstanceUid, code: { system: 'urn:ietf:rfc:3986', code: 'urn:oid:1.2.840.10008.5.1.4.1.1.77.1.99999' }, value: { kind: 'reference', pointer: 'dicom/test/odd-class.dcm' } } as Observation;
    descs.push(out.prepare([oddObs], 'odd'));
    const outcomes = await out.write(descs.map((d, i) => entry(i + 1, d.payload)), never);
    expect(out.associationsOpened).toBe(1);
    const byFile = Object.fromEntries([...FILES, 'odd-class.dcm'].map((f, i) => [f, outcomes[i]]));
    for (const f of FILES) {
      if (JPEG_LIKE.has(f)) expect(byFile[f], f).toMatchObject({ outcome: 'dead', error: expect.stringMatching(/does not accept .*compressed: sent only as stored/) });
      else if (f !== 'MR_small_bigendian.dcm') expect(byFile[f].outcome, f).toBe('delivered');
    }
    expect(byFile['odd-class.dcm']).toMatchObject({ outcome: 'dead', error: expect.stringMatching(/does not accept SOP class 1\.2\.840\.10008\.5\.1\.4\.1\.1\.77\.1\.99999/) });
    expect(await picky.lookupInstance(odd.sopInstanceUid)).toEqual([]);
    // big endian is not re-encoded (see dicom-file.ts)
    expect(byFile['MR_small_bigendian.dcm']).toMatchObject({ outcome: 'dead', error: expect.stringMatching(/big endian/) });
    // a deflated object goes as explicit VR LE (its raw inflate): every element the same
    requirePeer('dcmconv');
    execFileSync('dcmconv', ['+td', join(FIXTURES, 'CT_small.dcm'), join(dataDir, 'dicom/test/ct-deflated.dcm')]);
    const deflObs = { ...observationFor('CT_small.dcm', 460), value: { kind: 'reference', pointer: 'dicom/test/ct-deflated.dcm' } } as Observation;
    const defl = out.prepare([deflObs], 'defl');
    expect(JSON.parse(defl.payload.toString()).transferSyntaxUid).toBe('1.2.840.10008.1.2.1.99');
    const [rd] = await out.write([entry(1, defl.payload)], never);
    expect(rd).toEqual({ id: 1, outcome: 'delivered', detail: 'sent as 1.2.840.10008.1.2.1' });
    const ct = readFileSync(join(FIXTURES, 'CT_small.dcm'));
    const [ctId] = await picky.lookupInstance(parseFileMeta(ct).sopInstanceUid);
    const theirs = await picky.instanceFile(ctId);
    expect(parseFileMeta(theirs).transferSyntaxUid).toBe('1.2.840.10008.1.2.1');
    expect(elementsOf(theirs)).toEqual(elementsOf(ct));
    await out.close();
  }, 30_000);
});

describe('storescp --bit-preserving as the PACS', () => {
  it('the data set of every fixture arrives byte for byte as stored', async () => {
    requirePeer('storescp');
    const port = await freePort();
    const dir = join(tmp.dir, 'storescp');
    mkdirSync(dir, { recursive: true });
    // +B: write the data set exactly as received; +xa: accept every syntax; +uf: unique file names
    // (several fixtures share one SOP Instance UID)
    const scp = spawn('storescp', ['-aet', 'STORESCP', '-od', dir, '+B', '+xa', '+uf', String(port)], { stdio: 'ignore' });
    try {
      await waitFor(() => new Promise<boolean>((resolve) => {
        const c = connect({ host: '127.0.0.1', port }, () => (c.destroy(), resolve(true)));
        c.on('error', () => resolve(false));
      }), 10_000, 50);
      const out = new DicomStoreOutput({ destination: 'scp', host: '127.0.0.1', port, calledAeTitle: 'STORESCP', dataDir });
      const descs = FILES.map((f, i) => out.prepare([observationFor(f, 600 + i)], `s${i}`));
      const outcomes = await out.write(descs.map((d, i) => entry(i + 1, d.payload)), never);
      expect(outcomes.map((o) => o.outcome)).toEqual(FILES.map(() => 'delivered'));
      await out.close();
      const hash = (b: Buffer) => createHash('sha256').update(datasetOf(b)).digest('hex');
      const sent = FILES.map((f) => hash(readFileSync(join(FIXTURES, f)))).sort();
      const got = await waitFor(() => {
        const fs = readdirSync(dir);
        return fs.length === FILES.length ? fs.map((f) => hash(readFileSync(join(dir, f)))).sort() : undefined;
      }, 30_000); // returns as soon as storescp's files are there; the deadline is for a loaded machine
      expect(got).toEqual(sent);
    } finally {
      scp.kill('SIGKILL');
    }
  }, 30_000);
});

describe('C-STORE statuses over the wire (a stub PACS answering each instance with a chosen status)', () => {
  it('success and warnings → delivered; failures → dead for that instance only; 0xA7xx → retry when configured; slow answers', async () => {
    const { Scp, constants, responses } = dimse;
    const statusOf = new Map<string, number>();
    let answerDelayMs = 0;
    class StatusScp extends Scp {
      associationRequested(a: InstanceType<typeof dimse.association.Association>) {
        for (const { context } of a.getPresentationContexts()) context.setResult(constants.PresentationContextResult.Accept, context.getTransferSyntaxUids()[0]);
        this.sendAssociationAccept();
      }
      cStoreRequest(req: InstanceType<typeof dimse.requests.CStoreRequest>, cb: (r: InstanceType<typeof dimse.responses.CStoreResponse>) => void) {
        const rsp = responses.CStoreResponse.fromRequest(req);
        rsp.setStatus(statusOf.get(req.getAffectedSopInstanceUid()) ?? 0);
        setTimeout(() => cb(rsp), answerDelayMs);
      }
      associationReleaseRequested() {
        this.sendAssociationReleaseResponse();
      }
    }
    const server = createServer((sock) => new StatusScp(sock, {}));
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
    const port = (server.address() as { port: number }).port;
    try {
      const cases: Array<[number, Partial<DeliveryOutcome>]> = [
        [0x0000, { outcome: 'delivered' }],
        [0xb000, { outcome: 'delivered', detail: 'warning 0xB000' }],
        [0xb007, { outcome: 'delivered', detail: 'warning 0xB007' }],
        [0xb006, { outcome: 'delivered', detail: 'warning 0xB006' }],
        [0xa700, { outcome: 'dead', error: 'out of resources 0xA700' }],
        [0xa900, { outcome: 'dead', error: 'refused 0xA900' }],
        [0xc000, { outcome: 'dead', error: 'refused 0xC000' }],
        [0x0122, { outcome: 'dead', error: 'refused 0x0122' }],
        [0xfe00, { outcome: 'retry', error: 'cancelled 0xFE00' }],
      ];
      mkdirSync(join(dataDir, 'dicom/st'), { recursive: true });
      const mk = (i: number) => {
        const o = writeSyntheticDicom(join(dataDir, `dicom/st/${i}.dcm`), 2048);
        return { o, d: { v: 1, relPath: `dicom/st/${i}.dcm`, sopClassUid: SC_STORAGE, sopInstanceUid: o.sopInstanceUid, transferSyntaxUid: '1.2.840.10008.1.2.1', sha256: createHash('sha256').update(readFileSync(o.path)).digest('hex'), bytes: o.bytes } };
      };
      const items = cases.map(([status], i) => {
        const x = mk(i);
        statusOf.set(x.o.sopInstanceUid, status);
        return x;
      });
      const out = new DicomStoreOutput({ destination: 'stub', host: '127.0.0.1', port, calledAeTitle: 'STUB', dataDir });
      const res = await out.write(items.map((x, i) => entry(i + 1, Buffer.from(JSON.stringify(x.d)))), never);
      cases.forEach(([status, want], i) => expect(res[i], status.toString(16)).toEqual({ id: i + 1, ...want }));
      expect(out.associationsOpened).toBe(1);
      await out.close();
      const lenient = new DicomStoreOutput({ destination: 'stub', host: '127.0.0.1', port, calledAeTitle: 'STUB', dataDir, outOfResourcesRetryable: true });
      const [r] = await lenient.write([entry(1, Buffer.from(JSON.stringify(items[4].d)))], never);
      expect(r).toEqual({ id: 1, outcome: 'retry', error: 'out of resources 0xA700' });
      await lenient.close();
      // a PACS slower to answer than the connect timeout (a large object being stored) is not dead:
      // after the association only dimseTimeoutMs counts
      answerDelayMs = 1500;
      // (connect timeout 1 s: 300 ms raced the connect event when a loaded machine stalled the loop; still < 1.5 s)
      const patient = new DicomStoreOutput({ destination: 'stub', host: '127.0.0.1', port, calledAeTitle: 'STUB', dataDir, connectTimeoutMs: 1000, dimseTimeoutMs: 5000 });
      const [slow] = await patient.write([entry(1, Buffer.from(JSON.stringify(items[0].d)))], never);
      expect(slow).toEqual({ id: 1, outcome: 'delivered' });
      await patient.close();
      // ... and one slower than dimseTimeoutMs is a retry (the association aborted)
      const impatient = new DicomStoreOutput({ destination: 'stub', host: '127.0.0.1', port, calledAeTitle: 'STUB', dataDir, connectTimeoutMs: 300, dimseTimeoutMs: 700 });
      const [late] = await impatient.write([entry(1, Buffer.from(JSON.stringify(items[0].d))), entry(2, Buffer.from(JSON.stringify(items[1].d)))], never);
      expect(late).toMatchObject({ id: 1, outcome: 'retry', error: expect.stringMatching(/timeout/i) });
      await impatient.close();
      // the worker stops during a transfer: aborted at once, 'unavailable' (not an attempt)
      answerDelayMs = 10_000;
      const stopping = new DicomStoreOutput({ destination: 'stub', host: '127.0.0.1', port, calledAeTitle: 'STUB', dataDir });
      const ac = new AbortController();
      const t0 = Date.now();
      setTimeout(() => ac.abort(), 300);
      const [stopped] = await stopping.write([entry(1, Buffer.from(JSON.stringify(items[0].d)))], ac.signal);
      expect(stopped).toMatchObject({ id: 1, outcome: 'unavailable' });
      expect(Date.now() - t0, 'aborted at once, not after the 10 s answer').toBeLessThan(8000); // margin for a loaded CI box
      await stopping.close();
    } finally {
      server.close();
    }
  }, 40_000);
});

describe('through the outbox worker: a PACS outage', () => {
  it('entries stay pending (no attempt used) while the PACS is down, then are delivered', async () => {
    const store = GatewayStore.open({ dataDir: join(tmp.dir, 'store') });
    const out = outputFor(pacs, { connectTimeoutMs: 1000 });
    const worker = new OutboxWorker(store, out, { unavailableBackoffMs: { base: 200, max: 500 }, idlePollMs: 200 });
    try {
      await pacs.stop();
      const files = ['MR_small_implicit.dcm', 'waveform_ecg.dcm', 'test-SR.dcm'];
      // fresh SOP instances are not needed: Orthanc was emptied of nothing, so check counts by lookup
      const descs = files.map((f, i) => out.prepare([observationFor(f, 500 + i)], `o${i}`));
      await store.appendOutbox('pacs', descs.map((d, i) => ({ key: `o${i}`, payload: d.payload, contentType: d.contentType })));
      worker.start();
      await waitFor(() => worker.state === 'backoff', 10_000);
      await new Promise((r) => setTimeout(r, 1200));
      expect(store.destinationStats('pacs')[0]).toMatchObject({ pending: 3, dead: 0, delivered: 0 });
      await pacs.start();
      worker.wake();
      await waitFor(() => store.destinationStats('pacs')[0].delivered === 3, 20_000, 100);
      expect(store.destinationStats('pacs')[0]).toMatchObject({ pending: 0, dead: 0 });
      for (const f of files) expect(await pacs.lookupInstance(parseFileMeta(readFileSync(join(FIXTURES, f))).sopInstanceUid), f).toHaveLength(1);
    } finally {
      await worker.stop();
      await store.close();
    }
  }, 45_000);
});
