/**
 * The streaming C-STORE SCU (dimse-scu.ts) against dcmtk's storescp: the pinned dcmjs-dimse
 * internals it overrides still exist; a large object streams from disk with bounded memory and
 * arrives byte for byte; a file changed on disk is aborted before its last fragment.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream, mkdirSync, openSync, readdirSync, readSync, closeSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import dimse from 'dcmjs-dimse';
import { freePort, requirePeer, tempDir, waitFor } from '../../../../test/helpers/env';
import { SC_STORAGE, writeSyntheticDicom } from '../../../../bench/dicom-synth';
import { readFileMeta } from './dicom-file';
import { FileChangedError, StoreAssociation } from './dimse-scu';

let tmp: { dir: string; cleanup(): void };
let scp: ChildProcess;
let port: number;
const outDir = () => join(tmp.dir, 'scp-out');

async function sha256OfRange(path: string, start: number): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(path, { start })) h.update(c as Buffer);
  return h.digest('hex');
}

const rssMiB = () => process.memoryUsage.rss() / 1048576;

beforeAll(async () => {
  requirePeer('storescp');
  tmp = tempDir('iomt-dimse-scu-');
  mkdirSync(outDir(), { recursive: true });
  port = await freePort();
  // storescp: accepts any called AE; -fe .dcm; +uf unique file names; no fsync (a reference peer)
  scp = spawn('storescp', ['-aet', 'STORESCP', '-od', outDir(), '-fe', '.dcm', '+uf', String(port)], { stdio: 'ignore' });
  await waitFor(
    () =>
      new Promise<boolean>((resolve) => {
        const s = require('node:net').connect({ host: '127.0.0.1', port }, () => (s.destroy(), resolve(true)));
        s.on('error', () => resolve(false));
      }),
    10_000,
    50,
  );
}, 20_000);

afterAll(() => {
  scp?.kill('SIGKILL');
  tmp?.cleanup();
});

describe('dcmjs-dimse internals overridden by dimse-scu.ts (pinned 0.3.3)', () => {
  it('Network (the base class of Scp) still has the methods we override and call', () => {
    expect(dimse.version).toBe('0.3.3');
    const proto = Object.getPrototypeOf(dimse.Scp).prototype as Record<string, unknown>;
    for (const m of ['_sendDimse', '_sendPDataTF', '_processPdu', 'sendRequests', 'sendAssociationRequest', 'sendAssociationReleaseRequest', 'sendAbort', '_reset']) expect(typeof proto[m], m).toBe('function');
  });
});

describe('streaming C-STORE to storescp', () => {
  const open = () =>
    StoreAssociation.open({
      host: '127.0.0.1',
      port,
      callingAeTitle: 'IOMT_GW',
      calledAeTitle: 'STORESCP',
      contexts: [{ sopClassUid: SC_STORAGE, transferSyntaxUid: '1.2.840.10008.1.2.1' }],
      connectTimeoutMs: 5000,
      dimseTimeoutMs: 30_000,
      maxPduLength: 65536,
    });

  it('a 300 MB object arrives byte for byte; this process grows < 100 MB of RSS', async () => {
    const obj = writeSyntheticDicom(join(tmp.dir, 'big.dcm'), 300 * 1024 * 1024, { cols: 8192 });
    const meta = readFileMeta(obj.path);
    const sha = await sha256OfRange(obj.path, 0);
    (globalThis as { gc?: () => void }).gc?.();
    const before = rssMiB();
    let peak = before;
    const t = setInterval(() => (peak = Math.max(peak, rssMiB())), 50);
    const had = new Set(readdirSync(outDir()));
    const a = await open();
    try {
      const r = await a.store(SC_STORAGE, obj.sopInstanceUid, meta.transferSyntaxUid, { kind: 'file', path: obj.path, datasetOffset: meta.datasetOffset, sha256: sha, bytes: obj.bytes });
      expect(r.status).toBe(0);
    } finally {
      clearInterval(t);
      await a.release();
    }
    expect(peak - before, `RSS growth ${Math.round(peak - before)} MiB`).toBeLessThan(100);
    // storescp names files by its own scheme: the new one
    const files = readdirSync(outDir()).filter((f) => !had.has(f));
    expect(files).toHaveLength(1);
    const got = join(outDir(), files[0]);
    expect(await sha256OfRange(got, readFileMeta(got).datasetOffset)).toBe(await sha256OfRange(obj.path, meta.datasetOffset));
  }, 60_000);

  it('a file changed on disk is aborted before its last fragment: the peer stores nothing', async () => {
    const obj = writeSyntheticDicom(join(tmp.dir, 'changed.dcm'), 2 * 1024 * 1024);
    const meta = readFileMeta(obj.path);
    const sha = await sha256OfRange(obj.path, 0);
    const fd = openSync(obj.path, 'r+');
    const b = Buffer.alloc(1);
    readSync(fd, b, 0, 1, obj.bytes - 1000);
    b[0] ^= 0xff;
    writeSync(fd, b, 0, 1, obj.bytes - 1000);
    closeSync(fd);
    const had = new Set(readdirSync(outDir()));
    const a = await open();
    await expect(a.store(SC_STORAGE, obj.sopInstanceUid, meta.transferSyntaxUid, { kind: 'file', path: obj.path, datasetOffset: meta.datasetOffset, sha256: sha, bytes: obj.bytes })).rejects.toBeInstanceOf(FileChangedError);
    expect(a.alive).toBe(false);
    await new Promise((r) => setTimeout(r, 300));
    expect(readdirSync(outDir()).filter((f) => !had.has(f))).toEqual([]);
  }, 20_000);
});
