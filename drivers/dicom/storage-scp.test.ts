/**
 * Peer tests: dcmtk's storescu / echoscu / findscu and a raw upper-layer client against a
 * DicomStorageScp with a real GatewayStore (SQLite on disk) in a temp dir.
 */
import { execFile, spawn } from 'node:child_process';
import { createHash } from 'node:crypto';
import { copyFileSync, existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import dimse from 'dcmjs-dimse';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { CommitResult, ObservationSink } from '../../gateway/src/contracts/driver';
import { GatewayStore } from '../../gateway/src/store/gateway-store';
import { freePort, requirePeer, tempDir, waitFor } from '../../test/helpers/env';
import { makeCerts } from '../../test/helpers/tls';
import type { DicomDataset, DicomInstanceRecord } from './contracts';
import { fileMetaLength, TS } from './part10';
import { associateRq, contextResults, cStoreCommand, pData, RawAssociation, RELEASE_RQ, userInfoItems } from './raw-scu';
import { DicomStorageScp, instanceFileName, MPPS_SOP_CLASS, MWL_FIND_SOP_CLASS, type DicomScpOptions } from './storage-scp';

const run = promisify(execFile);
const FIX = join(__dirname, 'fixtures');
const AET = 'IOMT_GW';

/** storescu's option that proposes exactly a file's transfer syntax (so storescu sends it unchanged). */
const PROPOSE: Record<string, string> = {
  [TS.implicitLE]: '-xi',
  [TS.explicitLE]: '-xe',
  [TS.explicitBE]: '-xb',
  [TS.deflatedLE]: '-xd',
  '1.2.840.10008.1.2.4.50': '-xy',
  '1.2.840.10008.1.2.4.51': '-xx',
  '1.2.840.10008.1.2.4.70': '-xs',
  '1.2.840.10008.1.2.4.80': '-xt',
  '1.2.840.10008.1.2.4.90': '-xv',
  '1.2.840.10008.1.2.4.91': '-xw',
  '1.2.840.10008.1.2.5': '-xr',
};

function metaTs(file: Buffer): string {
  // (0002,0010) in the explicit LE meta group
  const i = file.indexOf(Buffer.from([0x02, 0x00, 0x10, 0x00, 0x55, 0x49]));
  return file.toString('latin1', i + 8, i + 8 + file.readUInt16LE(i + 6)).replace(/\0+$/, '');
}
/** A UI value of the File Meta group: (0002,0002) SOP class, (0002,0003) SOP instance. */
function metaUid(file: Buffer, elem: number): string {
  const tag = Buffer.from([0x02, 0x00, elem, 0x00, 0x55, 0x49]);
  const i = file.indexOf(tag);
  return file.toString('latin1', i + 8, i + 8 + file.readUInt16LE(i + 6)).replace(/\0+$/, '');
}
const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
const datasetOf = (file: Buffer) => file.subarray(fileMetaLength(file));

async function storescu(port: number, file: string, extra: string[] = [], calling = 'MOD1', called = AET): Promise<{ rc: number; out: string }> {
  const ts = metaTs(readFileSync(file));
  try {
    const r = await run('storescu', ['-v', '-aet', calling, '-aec', called, PROPOSE[ts] ?? '-xe', ...extra, '127.0.0.1', String(port), file], { encoding: 'utf8', timeout: 30_000 });
    return { rc: 0, out: r.stdout + r.stderr };
  } catch (e) {
    const err = e as { code?: number; stdout?: string; stderr?: string };
    return { rc: typeof err.code === 'number' ? err.code : 1, out: `${err.stdout ?? ''}${err.stderr ?? ''}` };
  }
}

describe('DICOM storage SCP with dcmtk (storescu, echoscu, findscu) and a real store', () => {
  const tmp = tempDir('iomt-dicom-');
  let store: GatewayStore;
  let scp: DicomStorageScp;
  let port: number;
  const committed: Array<{ r: CommitResult; record: DicomInstanceRecord }> = [];
  const fixtures: string[] = [];

  async function startScp(opts: Partial<DicomScpOptions> = {}, dataDir = tmp.dir, s: ObservationSink = store): Promise<{ scp: DicomStorageScp; port: number }> {
    const x = new DicomStorageScp({ deviceId: `modalities-${Math.random().toString(36).slice(2, 7)}`, aeTitle: AET, host: '127.0.0.1', port: 0, dataDir, ...opts }, s, (r, inbound) => committed.push({ r, record: inbound.meta as unknown as DicomInstanceRecord }));
    const { port: p } = await x.start();
    return { scp: x, port: p };
  }

  beforeAll(async () => {
    for (const p of ['storescu', 'echoscu', 'findscu', 'dcmconv', 'dcmcjpeg', 'dcmodify']) requirePeer(p);
    store = GatewayStore.open({ dataDir: tmp.dir });
    ({ scp, port } = await startScp());
    for (const f of readdirSync(FIX)) if (f.endsWith('.dcm') && f !== 'no_meta.dcm') fixtures.push(join(FIX, f));
    // transfer syntaxes without a fixture, made with dcmtk: deflate, JPEG lossless SV1 (P14: see the raw test)
    const gen = join(tmp.dir, 'gen');
    require('node:fs').mkdirSync(gen);
    await run('dcmconv', ['+td', join(FIX, 'CT_small.dcm'), join(gen, 'CT_deflated.dcm')]);
    await run('dcmcjpeg', ['+e1', join(FIX, 'MR_small.dcm'), join(gen, 'MR_jpeg_lossless_sv1.dcm')]);
    for (const f of readdirSync(gen)) fixtures.push(join(gen, f));
  }, 60_000);

  afterAll(async () => {
    await scp?.close();
    await store?.close();
    tmp.cleanup();
  });

  it('echoscu: C-ECHO success (PS3.7 9.1.5)', async () => {
    const r = await run('echoscu', ['-v', '-aet', 'MOD1', '-aec', AET, '127.0.0.1', String(port)], { encoding: 'utf8' });
    expect(r.stderr).toContain('Received Echo Response (Success)');
  });

  it('every fixture (10 transfer syntaxes) is stored by storescu exactly as sent (compared with dcmtk storescp +B, bit-preserving), with its index row', async () => {
    // the reference for "as received": dcmtk's own SCP in bit-preserving mode, fed by the same storescu
    // command (storescu drops e.g. trailing padding (FFFC,FFFC), so the wire dataset can be shorter than the file's)
    const refDir = join(tmp.dir, 'storescp');
    require('node:fs').mkdirSync(refDir);
    const refPort = await freePort();
    const ref = spawn('storescp', ['-aet', 'REF', '-od', refDir, '+B', '+xa', String(refPort)], { stdio: 'ignore' });
    await waitFor(() => run('echoscu', ['-aec', 'REF', '127.0.0.1', String(refPort)]).then(() => true, () => false), 10_000, 100);
    const seen = new Set<string>();
    let sameAsFile = 0;
    try {
      for (const f of fixtures) {
        const refRun = await storescu(refPort, f, [], 'MOD1', 'REF');
        expect(refRun.rc, refRun.out).toBe(0);
        const [refName] = readdirSync(refDir);
        const wire = datasetOf(readFileSync(join(refDir, refName)));
        require('node:fs').unlinkSync(join(refDir, refName));
        const before = committed.length;
        const r = await storescu(port, f);
        expect(r.rc, `${f}: ${r.out}`).toBe(0);
        expect(r.out).toContain('Received Store Response (Success)');
        expect(committed.length, f).toBe(before + 1);
        const { record, r: result } = committed[committed.length - 1];
        const src = readFileSync(f);
        const stored = readFileSync(join(tmp.dir, record.relPath));
        // PS3.10 7.1: our File Meta + the dataset exactly as it came over the wire, no transcoding
        expect(sha(datasetOf(stored)), f).toBe(sha(wire));
        if (sha(datasetOf(stored)) === sha(datasetOf(src))) sameAsFile++;
    expect(record.sha256).toBe(sha(stored));
      expect(record.bytes).toBe(stored.length);
      expect(record.transferSyntaxUid).toBe(metaTs(src));
      expect(metaTs(stored)).toBe(metaTs(src));
      expect(record.relPath).toMatch(/^dicom\/[0-9.]+\/[0-9.]+\/[0-9.]+\.[0-9a-f]{8}\.dcm$/);
      // the row is committed: the message, its flags-free summary, its single imaging observation
      const m = store.getMessage(result.messageId);
      expect(m?.driver).toBe('dicom');
      expect(m?.messageType).toBe('C-STORE');
      expect(result.observations).toHaveLength(1);
      expect(result.observations[0].category).toBe('imaging');
      expect(result.observations[0].value).toEqual({ kind: 'reference', pointer: record.relPath, application: 'iomt-gateway', typeOfData: 'application', subtype: 'dicom' });
      expect(result.observations[0].equipment?.id).toBe('MOD1');
      seen.add(record.transferSyntaxUid);
      // dcmtk reads what we wrote as a valid Part 10 file
      await run('dcmdump', ['-q', join(tmp.dir, record.relPath)]);
      }
    } finally {
      ref.kill('SIGKILL');
    }
    // storescu itself re-encodes some (drops trailing padding, fixes odd lengths): the raw test below
    // sends every file's own dataset bytes and compares with the file
    expect(sameAsFile).toBeGreaterThan(0);
    expect([...seen].sort()).toEqual(
      [TS.implicitLE, TS.explicitLE, TS.explicitBE, TS.deflatedLE, '1.2.840.10008.1.2.4.50', '1.2.840.10008.1.2.4.51', '1.2.840.10008.1.2.4.70', '1.2.840.10008.1.2.4.80', '1.2.840.10008.1.2.4.91', '1.2.840.10008.1.2.5'].sort(),
    );
    expect(readdirSync(scp.tmpDir)).toEqual([]);
  }, 120_000);

  it('a re-sent identical instance gets success and is stored once; the same SOP Instance UID with other content is kept, flagged and counted', async () => {
    const dir = tempDir('iomt-dicom-dup-');
    const s2 = GatewayStore.open({ dataDir: dir.dir });
    const x = await startScp({}, dir.dir, s2);
    try {
      const f = join(FIX, 'CT_small.dcm');
      const n = committed.length;
      expect((await storescu(x.port, f)).rc).toBe(0);
      expect(committed.length).toBe(n + 1);
      const again = await storescu(x.port, f);
      expect(again.out).toContain('Received Store Response (Success)');
      expect(committed.length).toBe(n + 1); // a duplicate is not handed on
      expect(s2.searchMessages({}).length).toBe(1);
      const other = join(dir.dir, 'CT_other.dcm');
      copyFileSync(f, other);
      await run('dcmodify', ['-nb', '-m', '(0010,0010)=OTHER^NAME', other]);
      const changed = await storescu(x.port, other);
      expect(changed.out).toContain('Received Store Response (Success)');
      expect(committed.length).toBe(n + 2);
      const last = committed[committed.length - 1];
      expect(last.r.controlIdReused).toBe(true);
      expect(s2.getMessage(last.r.messageId)?.flags).toContain('control-id-reused');
      expect(s2.searchMessages({ flag: 'control-id-reused' }).length).toBe(1);
      // both contents are on disk under the same SOP Instance UID
      const series = join(dir.dir, 'dicom', last.record.studyInstanceUid, last.record.seriesInstanceUid);
      expect(readdirSync(series).filter((y) => y.startsWith(last.record.sopInstanceUid)).length).toBe(2);
      expect(x.scp.status().controlIdReused).toBe(1);
    } finally {
      await x.scp.close();
      await s2.close();
      dir.cleanup();
    }
  }, 60_000);

  it("every fixture's own dataset bytes, sent raw in its transfer syntax (plus JPEG lossless P14, which storescu cannot propose), are stored byte for byte", async () => {
    const p14 = join(tmp.dir, 'CT_p14.dcm');
    await run('dcmcjpeg', ['+el', join(FIX, 'CT_small.dcm'), p14]);
    expect(metaTs(readFileSync(p14))).toBe('1.2.840.10008.1.2.4.57');
    let mismatches = 0;
    for (const f of [...fixtures, p14]) {
      const file = readFileSync(f);
      const ts = metaTs(file);
      const sopClass = metaUid(file, 0x0002);
      const a = await RawAssociation.connect(port);
      a.write(associateRq({ calling: 'MOD1', called: AET, contexts: [{ abstractSyntax: sopClass, transferSyntaxes: [ts] }] }));
      const ac = await a.read();
      expect(contextResults(ac!.body).get(1), f).toEqual({ result: 0, transferSyntax: ts });
      const n = committed.length;
      // the command names the dataset's own SOP Instance UID (0008,0018), as storescu does
      const sop = /\[([0-9.]+)\]/.exec((await run('dcmdump', ['+P', '0008,0018', f], { encoding: 'utf8' })).stdout)?.[1] as string;
      try {
        for (const p of pData(1, cStoreCommand(sopClass, sop), true)) a.write(p);
        for (const p of pData(1, datasetOf(file), false, 4000)) a.write(p);
        expect(await a.readStatus(), f).toBe(0);
        if (sop !== metaUid(file, 0x0003)) {
          // rtplan.dcm: its File Meta names another instance than its dataset; a command with that
          // UID does not match the dataset: 0xA900 (PS3.4 B.2.3), nothing stored
          const before = committed.length;
          for (const p of pData(1, cStoreCommand(sopClass, metaUid(file, 0x0003), 2), true)) a.write(p);
          for (const p of pData(1, datasetOf(file), false, 4000)) a.write(p);
          expect(await a.readStatus(), f).toBe(0xa900);
          expect(committed.length).toBe(before);
          mismatches++;
        }
        a.write(RELEASE_RQ);
        expect((await a.read())?.type).toBe(0x06); // A-RELEASE-RP
      } finally {
        a.close();
      }
      const rec = committed.length > n ? committed[n].record : undefined; // undefined: a duplicate of an earlier send
      const stored = rec ? readFileSync(join(tmp.dir, rec.relPath)) : undefined;
      if (stored) {
        expect(rec!.transferSyntaxUid).toBe(ts);
        expect(datasetOf(stored).equals(datasetOf(file)), f).toBe(true);
      }
    }
    expect(mismatches).toBe(1);
  }, 60_000);

  it('a C-STORE on a presentation context of another SOP class (here: verification) is refused 0x0122, nothing stored, its first 64 KiB quarantined', async () => {
    const a = await RawAssociation.connect(port);
    try {
      a.write(associateRq({ calling: 'MOD1', called: AET, contexts: [{ abstractSyntax: '1.2.840.10008.1.1', transferSyntaxes: [TS.explicitLE] }] }));
      expect((await a.read())?.type).toBe(0x02);
      const file = readFileSync(join(FIX, 'MR_small.dcm'));
      const n = committed.length;
      for (const p of pData(1, cStoreCommand(metaUid(file, 0x0002), metaUid(file, 0x0003)), true)) a.write(p);
      for (const p of pData(1, datasetOf(file), false)) a.write(p);
      expect(await a.readStatus()).toBe(0x0122);
      expect(committed.length).toBe(n);
      expect(readdirSync(scp.tmpDir)).toEqual([]);
      // nothing refused without quarantine (before: discarded with no trace but a log line)
      const q = await waitFor(() => store.listQuarantine(50).find((x) => x.reason.includes('refused 0x0122')));
      expect(store.getQuarantine(q.id)?.raw.equals(datasetOf(file).subarray(0, 64 * 1024))).toBe(true);
    } finally {
      a.close();
    }
  });

  it('an asynchronous operations window proposed by the SCU is not granted: the A-ASSOCIATE-AC has no 0x53 item (PS3.7 D.3.3.3)', async () => {
    const a = await RawAssociation.connect(port);
    try {
      a.write(associateRq({ calling: 'MOD1', called: AET, contexts: [{ abstractSyntax: '1.2.840.10008.1.1', transferSyntaxes: [TS.implicitLE] }], asyncOps: [4, 4] }));
      const ac = await a.read();
      expect(ac?.type).toBe(0x02);
      const items = userInfoItems(ac!.body);
      expect(items).toContain(0x51);
      expect(items).not.toContain(0x53);
    } finally {
      a.close();
    }
  });

  it('a C-STORE on a presentation context id that was never proposed: A-ABORT and close, nothing kept, the listener keeps serving', async () => {
    const a = await RawAssociation.connect(port);
    try {
      a.write(associateRq({ calling: 'MOD1', called: AET, contexts: [{ abstractSyntax: '1.2.840.10008.5.1.4.1.1.4', transferSyntaxes: [TS.explicitLE] }] }));
      expect((await a.read())?.type).toBe(0x02);
      const file = readFileSync(join(FIX, 'MR_small.dcm'));
      const n = committed.length;
      for (const p of pData(7, cStoreCommand(metaUid(file, 0x0002), metaUid(file, 0x0003)), true)) a.write(p);
      for (const p of pData(7, datasetOf(file), false)) a.write(p);
      const p = await a.read(5000);
      expect(p?.type).toBe(0x07);
      await waitFor(() => a.closed, 5000);
      expect(committed.length).toBe(n);
    } finally {
      a.close();
    }
    await waitFor(() => readdirSync(scp.tmpDir).length === 0, 5000);
    expect((await storescu(port, join(FIX, 'MR_small.dcm'))).rc).toBe(0);
  });

  it('a second A-ASSOCIATE-RQ on an established association: A-ABORT "unexpected PDU" (PS3.8 9.2 AA-8), quarantined; the association count does not leak', async () => {
    // before: the second RQ was negotiated again and counted, the close gave back one: with a limit of 2,
    // one such connection left a slot taken for ever, and the next two modalities got "local limit exceeded"
    const x = await startScp({ maxAssociations: 2 });
    const rq = associateRq({ calling: 'MOD1', called: AET, contexts: [{ abstractSyntax: '1.2.840.10008.1.1', transferSyntaxes: [TS.implicitLE] }] });
    const held: RawAssociation[] = [];
    try {
      const a = await RawAssociation.connect(x.port);
      a.write(rq);
      expect((await a.read())?.type).toBe(0x02);
      a.write(rq);
      const p = await a.read(5000);
      expect(p?.type).toBe(0x07);
      expect([p?.body[2], p?.body[3]]).toEqual([2, 2]); // source 2 service provider, reason 2 unexpected PDU
      await waitFor(() => a.closed, 5000);
      const q = await waitFor(() => store.listQuarantine(50).find((r) => r.reason.includes('unexpected A-ASSOCIATE-RQ')));
      expect(q.driver).toBe('dicom');
      for (let i = 0; i < 2; i++) {
        const b = await RawAssociation.connect(x.port);
        held.push(b);
        b.write(rq);
        expect((await b.read())?.type, `fresh association ${i + 1} of 2`).toBe(0x02);
      }
    } finally {
      for (const b of held) b.close();
      await x.scp.close();
    }
  });

  it('PDUs the library cannot handle (P-DATA before any association; 0-length A-RELEASE-RQ / A-ASSOCIATE-RQ): A-ABORT, closed and quarantined with the reason', async () => {
    const cases: Array<{ name: string; bytes: Buffer[] }> = [
      { name: 'P-DATA before association', bytes: pData(1, cStoreCommand('1.2.840.10008.5.1.4.1.1.7', '1.2.3.4'), true) },
      { name: 'empty A-RELEASE-RQ', bytes: [Buffer.from([0x05, 0, 0, 0, 0, 0])] },
      { name: 'empty A-ASSOCIATE-RQ', bytes: [Buffer.from([0x01, 0, 0, 0, 0, 0])] },
    ];
    for (const c of cases) {
      const before = store.listQuarantine(200).filter((r) => r.reason.startsWith('refused PDU: PDU not handled')).length;
      const a = await RawAssociation.connect(port);
      for (const b of c.bytes) a.write(b);
      expect((await a.read(5000))?.type, c.name).toBe(0x07);
      await waitFor(() => a.closed, 5000);
      await waitFor(() => store.listQuarantine(200).filter((r) => r.reason.startsWith('refused PDU: PDU not handled')).length === before + 1, 5000);
    }
    expect((await run('echoscu', ['-aet', 'MOD1', '-aec', AET, '127.0.0.1', String(port)])).stderr).toBe('');
  });

  it('a wrong called AE title gets A-ASSOCIATE-RJ "called AE title not recognized" (PS3.8 9.3.4 reason 7)', async () => {
    const r = await storescu(port, join(FIX, 'CT_small.dcm'), [], 'MOD1', 'NOT_US');
    expect(r.rc).not.toBe(0);
    expect(r.out).toContain('Called AE Title Not Recognized');
  });

  it('a calling AE not on the allow-list (or from another host) is rejected "calling AE title not recognized" (reason 3)', async () => {
    const x = await startScp({ allowedCallers: [{ aeTitle: 'CT01', host: '127.0.0.1' }, { aeTitle: 'MR01', host: '10.9.9.9' }] });
    try {
      expect((await storescu(x.port, join(FIX, 'MR_small.dcm'), [], 'CT01')).rc).toBe(0);
      for (const calling of ['XR01', 'MR01']) {
        const r = await storescu(x.port, join(FIX, 'MR_small.dcm'), [], calling);
        expect(r.rc, calling).not.toBe(0);
        expect(r.out).toContain('Calling AE Title Not Recognized');
      }
    } finally {
      await x.scp.close();
    }
  }, 30_000);

  it('garbage bytes on the port: A-ABORT, closed, quarantined with the reason; the listener keeps working', async () => {
    const a = await RawAssociation.connect(port);
    a.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    const p = await a.read(5000);
    expect(p?.type).toBe(0x07); // A-ABORT
    await waitFor(() => a.closed, 5000);
    const q = await waitFor(() => store.listQuarantine(10).find((r) => r.reason.includes('unknown PDU type 0x47')));
    expect(q.driver).toBe('dicom');
    expect(store.getQuarantine(q.id)?.raw.toString('latin1')).toContain('GET / HTTP/1.1');
    const echo = await run('echoscu', ['-aet', 'MOD1', '-aec', AET, '127.0.0.1', String(port)]);
    expect(echo.stderr).toBe('');
  });

  it('a PDU cut short (connection closed inside an A-ASSOCIATE-RQ) is quarantined as truncated', async () => {
    const rq = associateRq({ calling: 'MOD1', called: AET, contexts: [{ abstractSyntax: '1.2.840.10008.1.1', transferSyntaxes: [TS.implicitLE] }] });
    const a = await RawAssociation.connect(port);
    a.write(rq.subarray(0, 40));
    await new Promise((r) => setTimeout(r, 100));
    a.close();
    const q = await waitFor(() => store.listQuarantine(10).find((r) => r.reason.includes('truncated PDU') && r.reason.includes('A-ASSOCIATE-RQ')));
    expect(store.getQuarantine(q.id)?.raw.length).toBe(40);
  });

  it('no_meta.dcm: storescu refuses it; its bytes sent raw as a dataset are refused 0xC000 (explicit LE: unreadable) or 0xA900 (implicit LE: no Study/Series UID), quarantined', async () => {
    const file = join(FIX, 'no_meta.dcm');
    const r = await storescu(port, file);
    expect(r.rc).not.toBe(0);
    expect(r.out).toContain('Bad DICOM file');
    const bytes = readFileSync(file);
    const sopClass = '1.2.840.10008.5.1.4.1.1.2';
    const status = async (ts: string) => {
      const a = await RawAssociation.connect(port);
      a.write(associateRq({ calling: 'MOD1', called: AET, contexts: [{ abstractSyntax: sopClass, transferSyntaxes: [ts] }] }));
      const ac = await a.read();
      expect(ac?.type).toBe(0x02);
      expect(contextResults(ac!.body).get(1)?.result).toBe(0);
      const uid = /1\.3\.6\.1\.4\.1\.5962\.1\.1\.1\.1\.1\.[0-9.]+/.exec(bytes.toString('latin1'))?.[0] as string;
      for (const p of pData(1, cStoreCommand(sopClass, uid), true)) a.write(p);
      for (const p of pData(1, bytes, false)) a.write(p);
      const s = await a.readStatus();
      a.write(RELEASE_RQ);
      await a.read();
      a.close();
      return s;
    };
    expect(await status(TS.explicitLE)).toBe(0xc000);
    const q = await waitFor(() => store.listQuarantine(20).find((x) => x.reason.startsWith('unreadable dataset')));
    expect(store.getQuarantine(q.id)?.raw.equals(bytes.subarray(0, 64 * 1024))).toBe(true);
    // read as implicit LE its first tag is (0820,0500): past the index groups at once, so no Type 1 UIDs
    const n = committed.length;
    expect(await status(TS.implicitLE)).toBe(0xa900);
    await waitFor(() => store.listQuarantine(20).find((x) => x.reason.includes('Study or Series Instance UID missing')));
    expect(committed.length).toBe(n);
    expect(readdirSync(scp.tmpDir)).toEqual([]);
    expect((await storescu(port, join(FIX, 'MR_small.dcm'))).rc).toBe(0); // still serving
  }, 30_000);

  it.each([
    ['(0008,0018) SOP Instance UID', '(0008,0018)'],
    ['(0008,0016) SOP Class UID', '(0008,0016)'],
  ])('a dataset without its %s (Type 1, PS3.3 C.12.1) is refused 0xA900 and quarantined, not stored', async (_what, tag) => {
    // before: Success, then the PACS (Orthanc) refused the forwarded object 0xC000 → dead letter the modality never saw
    const src = join(tmp.dir, `no-${tag.replace(/[^0-9A-F]/gi, '')}.dcm`);
    copyFileSync(join(FIX, 'CT_small.dcm'), src);
    await run('dcmodify', ['-nb', '-ea', tag, src]);
    const file = readFileSync(src);
    const sopClass = metaUid(readFileSync(join(FIX, 'CT_small.dcm')), 0x0002);
    const sop = metaUid(readFileSync(join(FIX, 'CT_small.dcm')), 0x0003);
    const a = await RawAssociation.connect(port);
    const n = committed.length;
    try {
      a.write(associateRq({ calling: 'MOD1', called: AET, contexts: [{ abstractSyntax: sopClass, transferSyntaxes: [metaTs(file)] }] }));
      expect((await a.read())?.type).toBe(0x02);
      for (const p of pData(1, cStoreCommand(sopClass, sop), true)) a.write(p);
      for (const p of pData(1, datasetOf(file), false)) a.write(p);
      expect(await a.readStatus()).toBe(0xa900);
      a.write(RELEASE_RQ);
      await a.read();
    } finally {
      a.close();
    }
    await waitFor(() => store.listQuarantine(50).find((x) => x.reason.includes('SOP Class or SOP Instance UID missing')));
    expect(committed.length).toBe(n);
    expect(readdirSync(scp.tmpDir)).toEqual([]);
  });

  it('disk full (storage quota): 0xA700 out of resources, nothing kept, the next object after freeing space is stored', async () => {
    const dir = tempDir('iomt-dicom-quota-');
    const s2 = GatewayStore.open({ dataDir: dir.dir });
    const x = await startScp({ maxStorageBytes: 60_000 }, dir.dir, s2);
    try {
      expect((await storescu(x.port, join(FIX, 'MR_small.dcm'))).rc).toBe(0); // ~10 KB
      const r = await storescu(x.port, join(FIX, 'CT_small.dcm')); // ~39 KB + 10 KB > 60 KB? no: fits
      expect(r.rc).toBe(0);
      const big = await storescu(x.port, join(FIX, 'waveform_ecg.dcm')); // 291 KB: over the quota
      expect(big.out).toMatch(/Store Response \(Refused: OutOfResources|Status: A700|0xa700/i);
      expect(readdirSync(x.scp.tmpDir)).toEqual([]);
      expect(existsSync(join(dir.dir, 'dicom'))).toBe(true);
      expect(x.scp.storedBytes).toBeLessThanOrEqual(60_000);
      // the association is still usable after a refused object (the bytes were drained, not the link)
      expect((await storescu(x.port, join(FIX, 'JPEG2000.dcm'))).rc).toBe(0);
    } finally {
      await x.scp.close();
      await s2.close();
      dir.cleanup();
    }
  }, 30_000);

  it('storage quota: files deleted by retention give their space back while running (no restart needed)', async () => {
    // before: the quota counter was measured at start only; once full, every C-STORE got 0xA700 until a
    // restart, although retention had deleted the delivered files
    const dir = tempDir('iomt-dicom-quota2-');
    const s2 = GatewayStore.open({ dataDir: dir.dir });
    const x = await startScp({ maxStorageBytes: 45_000, quotaRecountMs: 200 }, dir.dir, s2);
    try {
      expect((await storescu(x.port, join(FIX, 'CT_small.dcm'))).rc).toBe(0); // ~39 KB
      const refused = await storescu(x.port, join(FIX, 'MR_small.dcm')); // ~10 KB more: over 45 KB
      expect(refused.out).toMatch(/Refused: OutOfResources|A700/i);
      // retention deletes the delivered CT file (file-retention.ts: unlink)
      const files = (readdirSync(join(dir.dir, 'dicom'), { recursive: true }) as string[]).filter((f) => f.endsWith('.dcm'));
      expect(files).toHaveLength(1);
      require('node:fs').unlinkSync(join(dir.dir, 'dicom', files[0]));
      await waitFor(() => x.scp.storedBytes < 1000, 5000, 50);
      expect((await storescu(x.port, join(FIX, 'MR_small.dcm'))).rc).toBe(0);
    } finally {
      await x.scp.close();
      await s2.close();
      dir.cleanup();
    }
  }, 30_000);

  it('a store that cannot commit the row (database quota: StoreFullError) gives 0xA700; after space is freed the re-send is stored', async () => {
    const dir = tempDir('iomt-dicom-dbfull-');
    const s2 = GatewayStore.open({ dataDir: dir.dir, maxDbBytes: 512 * 1024 });
    const x = await startScp({}, dir.dir, s2);
    try {
      // fill the database: big rows until one is refused, then smaller ones, so no instance row fits
      let k = 0;
      for (const size of [20_000, 2_000, 200, 20])
        for (let i = 0; i < 500; i++) {
          const full = await s2.submit({ deviceId: 'filler', driver: 'test', raw: Buffer.alloc(size, i), drafts: [], dedupeKey: `f${k++}` }).then(
            () => false,
            () => true,
          );
          if (full) break;
        }
      const n = committed.length;
      const refused = await storescu(x.port, join(FIX, 'MR_small.dcm'));
      expect(refused.out).toMatch(/Store Response \(Refused: OutOfResources|Status: A700|0xa700/i);
      expect(refused.out).not.toContain('Store Response (Success)');
      expect(committed.length).toBe(n);
      s2.setMaxDbBytes(8 * 1024 * 1024);
      const ok = await storescu(x.port, join(FIX, 'MR_small.dcm'));
      expect(ok.out).toContain('Store Response (Success)');
      expect(committed.length).toBe(n + 1);
      expect(existsSync(join(dir.dir, committed[n].record.relPath))).toBe(true);
    } finally {
      await x.scp.close();
      await s2.close();
      dir.cleanup();
    }
  }, 30_000);

  it('association limit: a surplus association gets A-ASSOCIATE-RJ transient "local limit exceeded"; the idle one is aborted after the idle timeout', async () => {
    const x = await startScp({ maxAssociations: 1, idleTimeoutMs: 1500 });
    try {
      const held = await RawAssociation.connect(x.port);
      held.write(associateRq({ calling: 'MOD1', called: AET, contexts: [{ abstractSyntax: '1.2.840.10008.1.1', transferSyntaxes: [TS.implicitLE] }] }));
      expect((await held.read())?.type).toBe(0x02);
      const r = await storescu(x.port, join(FIX, 'MR_small.dcm'));
      expect(r.rc).not.toBe(0);
      expect(r.out).toMatch(/Local Limit Exceeded|transient/i);
      // idle: the library's PDU timeout aborts the held association (A-ABORT), then the socket closes
      const t0 = Date.now();
      const p = await held.read(6000);
      expect(p?.type).toBe(0x07);
      await waitFor(() => held.closed, 5000);
      expect(Date.now() - t0).toBeLessThan(5000);
      expect((await storescu(x.port, join(FIX, 'MR_small.dcm'))).rc).toBe(0);
    } finally {
      await x.scp.close();
    }
  }, 30_000);

  it('a commit slower than the idle timeout still gets its success: the SCU is waiting for us, not idle', async () => {
    const slow: ObservationSink = {
      submit: async (m) => {
        await new Promise((r) => setTimeout(r, 2500));
        return store.submit(m);
      },
      quarantine: (q) => store.quarantine(q),
    };
    const x = await startScp({ idleTimeoutMs: 1000 }, tmp.dir, slow);
    try {
      const r = await storescu(x.port, join(FIX, 'reportsi.dcm'));
      expect(r.out).toContain('Received Store Response (Success)');
    } finally {
      await x.scp.close();
    }
  }, 30_000);

  it('connections per source address are limited (listener guard): the surplus one is closed at once', async () => {
    const x = await startScp({ maxPerAddress: 1 });
    try {
      const held = await RawAssociation.connect(x.port);
      held.write(associateRq({ calling: 'MOD1', called: AET, contexts: [{ abstractSyntax: '1.2.840.10008.1.1', transferSyntaxes: [TS.implicitLE] }] }));
      expect((await held.read())?.type).toBe(0x02);
      const r = await storescu(x.port, join(FIX, 'MR_small.dcm'));
      expect(r.rc).not.toBe(0);
      expect(r.out).not.toContain('Association Accepted');
      held.close();
      await waitFor(() => x.scp.status().connections === 0, 5000);
      expect((await storescu(x.port, join(FIX, 'MR_small.dcm'))).rc).toBe(0);
    } finally {
      await x.scp.close();
    }
  }, 30_000);

  it('DICOM TLS (PS3.15 B.1) with a required client certificate: storescu with a certificate stores, without one fails', async () => {
    const dir = tempDir('iomt-dicom-tls-');
    const c = makeCerts(dir.dir);
    const x = await startScp({ tls: { key: c.key, cert: c.cert, ca: c.ca, requestCert: true } });
    try {
      // storescu verifies our certificate against the CA (+cf) and presents its own (+tls key cert)
      const ok = await storescu(x.port, join(FIX, 'MR_small.dcm'), ['+tls', c.keyFile, c.certFile, '+cf', c.caFile]);
      expect(ok.rc, ok.out).toBe(0);
      expect(ok.out).toContain('Received Store Response (Success)');
      // anonymous TLS (no client certificate): the handshake is refused
      const no = await storescu(x.port, join(FIX, 'MR_small.dcm'), ['+tla', '+cf', c.caFile]);
      expect(no.rc).not.toBe(0);
      expect(no.out).toMatch(/TLS|handshake|Association Request Failed/i);
      expect(no.out).not.toContain('Store Response');
      const plain = await storescu(x.port, join(FIX, 'MR_small.dcm'));
      expect(plain.rc).not.toBe(0);
      // the same anonymous client is accepted when client certificates are optional
      const y = await startScp({ tls: { key: c.key, cert: c.cert } });
      try {
        const anon = await storescu(y.port, join(FIX, 'MR_small.dcm'), ['+tla', '+cf', c.caFile]);
        expect(anon.rc, anon.out).toBe(0);
      } finally {
        await y.scp.close();
      }
    } finally {
      await x.scp.close();
      dir.cleanup();
    }
  }, 30_000);

  it('worklist C-FIND and MPPS N-CREATE/N-SET are routed to the providers when given (and refused otherwise)', async () => {
    const queries: DicomDataset[] = [];
    const mppsCalls: string[] = [];
    const x = await startScp({
      services: {
        worklist: {
          async find(q, ctx) {
            queries.push({ ...q, _calling: ctx.callingAeTitle });
            return [
              { PatientName: 'NGUYEN^VAN AN', PatientID: 'P1', SpecificCharacterSet: 'ISO_IR 192' },
              { PatientName: 'TRAN^THI BINH', PatientID: 'P2', SpecificCharacterSet: 'ISO_IR 192' },
            ];
          },
        },
        mpps: {
          async nCreate(uid) {
            mppsCalls.push(`create ${uid}`);
            return 0x0000;
          },
          async nSet(uid) {
            mppsCalls.push(`set ${uid}`);
            return 0x0000;
          },
        },
      },
    });
    try {
      const r = await run('findscu', ['-v', '-W', '-aet', 'CT01', '-aec', AET, '-k', 'PatientName=', '-k', 'PatientID=', '-k', '(0040,0100)[0].Modality=CT', '127.0.0.1', String(x.port)], { encoding: 'utf8' });
      const out = r.stdout + r.stderr;
      expect(out.match(/Find Response: \d+ \(Pending\)/g)?.length).toBe(2);
      expect(out).toContain('NGUYEN^VAN AN');
      expect(out).toContain('Received Final Find Response (Success)');
      expect(queries).toHaveLength(1);
      expect(queries[0]._calling).toBe('CT01');
      expect(JSON.stringify(queries[0])).toContain('CT');
      // MPPS with dcmjs-dimse's own client (dcmtk has no MPPS SCU)
      const statuses = await mppsRoundTrip(x.port);
      expect(statuses).toEqual([0, 0]);
      expect(mppsCalls).toEqual(['create 1.2.826.0.1.3680043.2.1125.1.1', 'set 1.2.826.0.1.3680043.2.1125.1.1']);
      // the plain SCP (no providers) does not accept the worklist context
      const none = await run('findscu', ['-W', '-aet', 'CT01', '-aec', AET, '-k', 'PatientName=', '127.0.0.1', String(port)], { encoding: 'utf8' }).then(
        () => 0,
        () => 1,
      );
      expect(none).toBe(1);
    } finally {
      await x.scp.close();
    }
  }, 30_000);

  it('a file already at an instance\'s path with other content (8-hex sha256 prefix collision) is never replaced: the new one gets the full sha256 name', async () => {
    const dir = join(tmp.dir, 'collide');
    require('node:fs').mkdirSync(dir);
    const mine = Buffer.from('content B');
    const shaB = sha(mine);
    const short = `1.2.3.${shaB.slice(0, 8)}.dcm`;
    expect(await instanceFileName(dir, '1.2.3', shaB)).toBe(short); // nothing there
    require('node:fs').writeFileSync(join(dir, short), mine);
    expect(await instanceFileName(dir, '1.2.3', shaB)).toBe(short); // identical re-send: same file
    const other = Buffer.from('content A, acknowledged earlier, same 8 hex by construction');
    require('node:fs').writeFileSync(join(dir, short), other);
    // before: the rename replaced it (an acknowledged object overwritten, its row's sha256 then wrong)
    expect(await instanceFileName(dir, '1.2.3', shaB)).toBe(`1.2.3.${shaB}.dcm`);
    expect(readFileSync(join(dir, short)).equals(other)).toBe(true);
  });

  it('a deflated object whose pixel data compresses very well (80 MB inflating from ~100 KB) is stored, not refused 0xC000', async () => {
    // before: the header walker inflated the whole prefix with a 64 MiB output limit and refused the object
    const { writeSyntheticFile } = await import('./synthetic');
    const plain = join(tmp.dir, 'big-plain.dcm');
    const deflated = join(tmp.dir, 'big-deflated.dcm');
    await writeSyntheticFile(plain, { sopInstanceUid: '2.25.7001', studyInstanceUid: '2.25.7002', seriesInstanceUid: '2.25.7003', frames: 80, rows: 1000, columns: 1000 });
    await run('dcmconv', ['+td', plain, deflated]);
    require('node:fs').unlinkSync(plain);
    expect(require('node:fs').statSync(deflated).size).toBeLessThan(1024 * 1024);
    const n = committed.length;
    const r = await storescu(port, deflated, ['-xd']);
    expect(r.out).not.toMatch(/Error: Cannot understand|0xc000/i);
    expect(r.rc).toBe(0);
    expect(committed.length).toBe(n + 1);
    expect(committed.at(-1)!.record).toMatchObject({ sopInstanceUid: '2.25.7001', studyInstanceUid: '2.25.7002', transferSyntaxUid: TS.deflatedLE });
  }, 60_000);

  it.each([
    ['worklist, no allow-list, all interfaces', { services: { worklist: { find: async () => [] } } }, true],
    ['worklist with allowFrom', { services: { worklist: { find: async () => [] } }, allowFrom: '10.1.2.0/24' }, false],
    ['worklist with allowed callers', { services: { worklist: { find: async () => [] } }, allowedCallers: [{ aeTitle: 'CT01' }] }, false],
    ['storage only, no allow-list', {}, false],
  ] as Array<[string, Partial<DicomScpOptions>, boolean]>)('%s: the status says whether the worklist (patient names) is limited to loopback → %s', async (_what, opts, open) => {
    // the default imaging flow listens on 0.0.0.0 with the worklist on and no allow-list: any host
    // reaching the port read the scheduled patients (findscu -W with any AE title), and nothing said so
    const x = await startScp({ host: '0.0.0.0', ...opts });
    try {
      expect(x.scp.status().detail?.includes('worklist/MPPS only from loopback')).toBe(open);
    } finally {
      await x.scp.close();
    }
  });

  it.each([
    ['no allow-list, from 127.0.0.1', {}, '127.0.0.1', 0],
    ['no allow-list, from 127.0.0.2 (another host)', {}, '127.0.0.2', 3],
    ['allowFrom 127.0.0.0/8, from 127.0.0.2', { allowFrom: '127.0.0.0/8' }, '127.0.0.2', 0],
    ['allowed caller MOD1, from 127.0.0.2', { allowedCallers: [{ aeTitle: 'MOD1' }] }, '127.0.0.2', 0],
  ] as Array<[string, Partial<DicomScpOptions>, string, number]>)('worklist and MPPS contexts (patient data) %s → result %i; storage and echo always', async (_what, opts, from, want) => {
    // issue 10 §3: a service that gives out patient data is never "anyone" by default (PS3.8 9.3.3.2 result 3: abstract syntax not supported)
    const x = await startScp({ host: '0.0.0.0', services: { worklist: { find: async () => [] }, mpps: { nCreate: async () => 0, nSet: async () => 0 } }, ...opts });
    try {
      const a = await RawAssociation.connect(x.port, '127.0.0.1', from);
      a.write(associateRq({ calling: 'MOD1', called: AET, contexts: [MWL_FIND_SOP_CLASS, MPPS_SOP_CLASS, '1.2.840.10008.1.1', '1.2.840.10008.5.1.4.1.1.2'].map((abstractSyntax) => ({ abstractSyntax, transferSyntaxes: [TS.explicitLE] })) }));
      const ac = await a.read();
      expect(ac?.type).toBe(0x02);
      const r = contextResults(ac!.body);
      expect([r.get(1)?.result, r.get(3)?.result]).toEqual([want, want]);
      expect([r.get(5)?.result, r.get(7)?.result]).toEqual([0, 0]);
      a.socket.destroy();
    } finally {
      await x.scp.close();
    }
  });

  it('kills no process: the SCP status reports the listener and no stray temp files', () => {
    expect(scp.status()).toMatchObject({ driver: 'dicom', state: 'listening' });
    expect(readdirSync(scp.tmpDir)).toEqual([]);
  });
});

async function mppsRoundTrip(port: number): Promise<number[]> {
  const { Client, requests, constants } = dimse;
  const uid = '1.2.826.0.1.3680043.2.1125.1.1';
  const client = new Client();
  const statuses: number[] = [];
  const create = new requests.NCreateRequest(MPPS_SOP_CLASS, uid);
  create.setDataset(new dimse.Dataset({ PerformedProcedureStepStatus: 'IN PROGRESS', Modality: 'CT' }));
  create.on('response', (r: { getStatus(): number }) => statuses.push(r.getStatus()));
  const set = new requests.NSetRequest(MPPS_SOP_CLASS, uid);
  set.setDataset(new dimse.Dataset({ PerformedProcedureStepStatus: 'COMPLETED' }));
  set.on('response', (r: { getStatus(): number }) => statuses.push(r.getStatus()));
  client.addRequest(create);
  client.addRequest(set);
  await new Promise<void>((resolve, reject) => {
    client.on('networkError', (e: Error) => reject(e));
    client.on('closed', () => resolve());
    client.send('127.0.0.1', port, 'CT01', AET, { associationTimeout: 5000 });
  });
  void constants;
  return statuses;
}
