/**
 * kill -9 during a C-STORE (issue 11 "How it will be checked"): the SCP runs in its own process on a
 * real store; storescu sends small objects, then a large one; the process is killed with SIGKILL while
 * the large one streams in. After a restart on the same data dir:
 * - every instance storescu reported Success for has its file (sha256 = the index row's) and its row;
 * - the killed transfer got no success, left no row, and its temp file is gone;
 * - the killed object, sent again, is stored.
 */
import { execFile, spawn, type ChildProcess } from 'node:child_process';
import { createHash } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { afterAll, describe, expect, it } from 'vitest';
import { GatewayStore } from '../../gateway/src/store/gateway-store';
import { freePort, requirePeer, tempDir, waitFor } from '../helpers/env';
import type { DicomInstanceRecord } from '../../drivers/dicom/contracts';
import { writeSyntheticFile } from '../../drivers/dicom/synthetic';

const run = promisify(execFile);
const ROOT = join(__dirname, '..', '..');
const FIX = join(ROOT, 'drivers', 'dicom', 'fixtures');

function startScp(dataDir: string, port: number): Promise<{ child: ChildProcess; out: () => string }> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(ROOT, 'drivers', 'dicom', 'run-scp.ts'), dataDir, String(port)], {
    cwd: ROOT,
    env: { ...process.env, IOMT_LOG_LEVEL: 'warn' },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  return waitFor(() => {
    if (child.exitCode !== null) throw new Error(`run-scp exited: ${out}`);
    return out.includes('READY') ? { child, out: () => out } : undefined;
  }, 30_000, 50);
}

describe('kill -9 during a transfer', () => {
  const tmp = tempDir('iomt-dicom-crash-');
  const children: ChildProcess[] = [];
  afterAll(() => {
    for (const c of children) if (c.exitCode === null) c.kill('SIGKILL');
    tmp.cleanup();
  });

  it('no success without a durable object; everything that got success is there after restart', async () => {
    requirePeer('storescu');
    const dataDir = join(tmp.dir, 'data');
    const port = await freePort();
    const big = join(tmp.dir, 'big.dcm');
    await writeSyntheticFile(big, { sopInstanceUid: '2.25.777.3', studyInstanceUid: '2.25.777.1', seriesInstanceUid: '2.25.777.2', frames: 96 });
    const first = await startScp(dataDir, port);
    children.push(first.child);
    // small objects first: each gets its status before the next is sent
    const small = ['CT_small.dcm', 'MR_small.dcm', 'rtplan.dcm', 'reportsi.dcm'].map((f) => join(FIX, f));
    const okRun = await run('storescu', ['-v', '-aet', 'MOD1', '-aec', 'IOMT_GW', '127.0.0.1', String(port), ...small], { encoding: 'utf8' });
    const successes = (okRun.stderr.match(/Received Store Response \(Success\)/g) ?? []).length;
    expect(successes).toBe(small.length);
    // the large one: kill -9 once a few MB of it are on disk in the temp dir
    const sending = run('storescu', ['-v', '-aet', 'MOD1', '-aec', 'IOMT_GW', '127.0.0.1', String(port), big], { encoding: 'utf8' }).then(
      (r) => ({ rc: 0, out: r.stderr }),
      (e: { code?: number; stderr?: string }) => ({ rc: e.code ?? 1, out: e.stderr ?? '' }),
    );
    const tmpDir = join(dataDir, 'dicom', 'tmp');
    await waitFor(() => readdirSync(tmpDir).some((f) => require('node:fs').statSync(join(tmpDir, f)).size > 8 * 1024 * 1024), 30_000, 10);
    first.child.kill('SIGKILL');
    const big1 = await sending;
    expect(big1.rc).not.toBe(0);
    expect(big1.out).not.toContain('Received Store Response (Success)');
    expect(readdirSync(tmpDir).length).toBe(1); // the partial object, left by the crash

    // restart on the same data dir
    const second = await startScp(dataDir, port);
    children.push(second.child);
    expect(readdirSync(tmpDir)).toEqual([]); // swept at start: it never got a success
    // every success has its row and its file, byte-identical to what the row says
    const store = GatewayStore.open({ dataDir: join(tmp.dir, 'data') });
    let rows: DicomInstanceRecord[];
    try {
      rows = store.searchMessages({ limit: 100 }).map((m) => store.getMessage(m.id)!.meta as unknown as DicomInstanceRecord);
    } finally {
      await store.close();
    }
    expect(rows.map((r) => r.sopInstanceUid).sort()).toHaveLength(small.length);
    expect(rows.some((r) => r.sopInstanceUid === '2.25.777.3')).toBe(false);
    for (const r of rows) {
      const file = readFileSync(join(dataDir, r.relPath));
      expect(createHash('sha256').update(file).digest('hex')).toBe(r.sha256);
    }
    // the killed object, sent again, is stored
    const again = await run('storescu', ['-v', '-aet', 'MOD1', '-aec', 'IOMT_GW', '127.0.0.1', String(port), big], { encoding: 'utf8' });
    expect(again.stderr).toContain('Received Store Response (Success)');
    await waitFor(() => second.out().includes('COMMITTED 2.25.777.3'), 10_000);
    second.child.kill('SIGTERM');
    await new Promise((r) => second.child.once('exit', r));
  }, 120_000);
});
