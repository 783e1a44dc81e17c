import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { chownSync, existsSync, mkdirSync, readFileSync, readdirSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createHash } from 'node:crypto';
import { spawn } from 'node:child_process';
import Database from 'better-sqlite3';
import * as tar from 'tar';
import { tempDir } from '../../../test/helpers/env';
import { GatewayStore } from '../store/gateway-store';
import { SCHEMA_VERSION } from '../store/migrations';
import { sampleMessage } from '../store/test/fixtures';
import type { CommitResult } from '../contracts/driver';
import { backup, restore, BackupError, checkDatabase, databaseInUse, MANIFEST_NAME, type BackupManifest } from './backup';
import { runBackupCommand, runRestoreCommand, type CliIo } from './cli-commands';

/** Data-dir files besides the database, as the gateway and Node-RED write them (synthetic content). */
const SIDE_FILES: Record<string, string> = {
  'flows.json': '[{"id":"n1","type":"iomt-hl7-in","port":"2575"}]',
  'flows_cred.json': '{"$":"encrypted"}',
  '.node-red-secret': 'a'.repeat(64),
  'admin.json': '{"user":"admin","passwordHash":"$2b$10$x"}',
  'node-red/.config.runtime.json': '{"instanceId":"abc"}',
  'dicom/1.2.840.1/1.2.840.1.1.dcm': 'DICM' + '\0'.repeat(300),
};
const EXCLUDED: Record<string, string> = {
  'admin-password.txt': 'plaintext\n',
  'node-red/node_modules/some-palette/index.js': 'module.exports = 1;',
};

function writeFiles(dir: string, files: Record<string, string>): void {
  for (const [p, c] of Object.entries(files)) {
    mkdirSync(join(dir, p, '..'), { recursive: true });
    writeFileSync(join(dir, p), c);
  }
}

function io(): CliIo & { text: () => string } {
  let s = '';
  return { out: (x) => void (s += x), err: (x) => void (s += x), text: () => s };
}

async function repack(archive: string, work: string, mutate: (dir: string, manifest: BackupManifest) => void, out: string): Promise<void> {
  mkdirSync(work, { recursive: true });
  await tar.extract({ file: archive, cwd: work });
  const manifest = JSON.parse(readFileSync(join(work, MANIFEST_NAME), 'utf8')) as BackupManifest;
  mutate(join(work, 'data'), manifest);
  writeFileSync(join(work, MANIFEST_NAME), JSON.stringify(manifest));
  await tar.create({ gzip: true, file: out, cwd: work, portable: true }, readdirSync(work));
}

const sha = (f: string) => createHash('sha256').update(readFileSync(f)).digest('hex');

describe('backup / restore', () => {
  let tmp: ReturnType<typeof tempDir>;
  let src: string;
  let store: GatewayStore | undefined;

  beforeEach(() => {
    tmp = tempDir('iomt-backup-');
    src = join(tmp.dir, 'data');
  });
  afterEach(async () => {
    await store?.close();
    store = undefined;
    tmp.cleanup();
  });

  it('under load: a backup taken while 2,000 messages are being committed holds every message committed before it started', async () => {
    store = GatewayStore.open({ dataDir: src });
    writeFiles(src, { ...SIDE_FILES, ...EXCLUDED });
    const N = 2000;
    const committedBefore = new Set<string>();
    let backupStarted = false;
    let resolvedDuringBackup = 0;
    let backupRunning = false;
    const results: Array<Promise<CommitResult>> = [];
    let backupPromise: Promise<Awaited<ReturnType<typeof backup>>> | undefined;
    let done = 0;
    for (let i = 0; i < N; i++) {
      const p = store.submit(sampleMessage(i, { sourceMessageId: `LOAD${i}`, specimenId: `S${i}` }));
      p.then((r) => {
        done++;
        if (!backupStarted) committedBefore.add(r.messageUid);
        if (backupRunning) resolvedDuringBackup++;
        // start the backup in the middle of the ingest, from a commit callback
        if (done === 600 && !backupStarted) {
          backupStarted = true;
          backupRunning = true;
          backupPromise = backup(src, join(tmp.dir, 'gw.tgz')).finally(() => {
            backupRunning = false;
          });
        }
      }, () => undefined);
      results.push(p);
      if (i % 100 === 99) await new Promise((r) => setImmediate(r)); // let commits resolve: ingest keeps going
    }
    const all = await Promise.all(results);
    expect(backupPromise).toBeDefined();
    const b = await backupPromise!;
    expect(all).toHaveLength(N);
    expect(committedBefore.size).toBeGreaterThanOrEqual(600);
    expect(committedBefore.size).toBeLessThan(N); // the backup really ran in the middle
    expect(b.manifest.schemaVersion).toBe(SCHEMA_VERSION);
    expect(b.snapshotMs).toBeLessThan(5000);
    expect(b.skipped.map((s) => s.path).sort()).toEqual(expect.arrayContaining(['admin-password.txt', 'node-red/node_modules']));
    expect(statSync(b.file).mode & 0o777).toBe(0o600);
    // commits kept completing while the backup ran: it did not stop ingest
    expect(resolvedDuringBackup).toBeGreaterThan(0);

    await store.close();
    store = undefined;

    const dst = join(tmp.dir, 'restored');
    const r = await restore(b.file, dst);
    expect(r.movedAside).toBeUndefined();
    expect(checkDatabase(join(dst, 'gateway.db')).integrity).toBe('ok');
    for (const [p, c] of Object.entries(SIDE_FILES)) expect(readFileSync(join(dst, p), 'utf8')).toBe(c);
    for (const p of Object.keys(EXCLUDED)) expect(existsSync(join(dst, p))).toBe(false);
    expect(readdirSync(dst).filter((n) => n.startsWith('.restore-'))).toEqual([]);
    expect(statSync(dst).mode & 0o777).toBe(0o700);

    const db = new Database(join(dst, 'gateway.db'), { readonly: true });
    const uids = new Set((db.prepare('SELECT uid FROM messages').all() as Array<{ uid: string }>).map((x) => x.uid));
    db.close();
    const missing = [...committedBefore].filter((u) => !uids.has(u));
    expect(missing).toEqual([]);
    expect(uids.size).toBeGreaterThanOrEqual(committedBefore.size);
    expect(uids.size).toBeLessThanOrEqual(N);

    // the restored dir opens with the current store and the messages read back
    const restored = GatewayStore.open({ dataDir: dst });
    try {
      const some = all.find((x) => committedBefore.has(x.messageUid))!;
      const m = restored.getMessage(some.messageId);
      expect(m?.uid).toBe(some.messageUid);
      expect(m?.observations.length).toBe(2);
    } finally {
      await restored.close();
    }
  }, 60_000);

  it('under load from another process: the backup command, run while a gateway process commits, holds every ACKed message', { retry: 2, timeout: 120_000 }, async () => {
    const child = spawn(process.execPath, ['--import', 'tsx', join(__dirname, 'test/ingest-child.ts'), src, '3000', '32'], { stdio: ['ignore', 'pipe', 'pipe'] });
    const acked: string[] = [];
    let stderr = '';
    const ackTimes: number[] = [];
    const exited = new Promise<number | null>((r) => child.on('exit', (code) => r(code)));
    const reachedAcks = (n: number) =>
      new Promise<void>((resolveAcks, reject) => {
        const check = () => (acked.length >= n ? resolveAcks() : undefined);
        child.stdout.on('data', check);
        void exited.then(() => (acked.length >= n ? resolveAcks() : reject(new Error(`child exited after ${acked.length} ACKs: ${stderr}`))));
        check();
      });
    let buf = '';
    child.stdout.on('data', (d: Buffer) => {
      buf += d.toString();
      let i: number;
      while ((i = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (line.startsWith('ACK ')) {
          const [uid, at] = line.slice(4).split(' ');
          acked.push(uid);
          ackTimes.push(Number(at));
        }
      }
    });
    child.stderr.on('data', (d: Buffer) => void (stderr += d.toString()));
    try {
      await reachedAcks(500);
      const before = new Set(acked); // every message ACKed before the backup started
      const t0 = Date.now();
      const o = io();
      const file = join(tmp.dir, 'cross.tgz');
      expect(await runBackupCommand([file, '--data-dir', src], o), o.text()).toBe(0);
      const t1 = Date.now();
      expect(await exited).toBe(0);
      // commits the other process made while the backup command ran (child clock = parent clock)
      const ackedDuring = ackTimes.filter((t) => t > t0 && t < t1).length;
      expect(acked).toHaveLength(3000);
      expect(before.size).toBeLessThan(3000); // taken in the middle

      const dst = join(tmp.dir, 'cross-restored');
      expect(await runRestoreCommand([file, '--data-dir', dst], io())).toBe(0);
      const db = new Database(join(dst, 'gateway.db'), { readonly: true });
      const uids = new Set((db.prepare('SELECT uid FROM messages').all() as Array<{ uid: string }>).map((x) => x.uid));
      expect(db.pragma('integrity_check', { simple: true })).toBe('ok');
      db.close();
      expect([...before].filter((u) => !uids.has(u))).toEqual([]);
      expect(uids.size).toBeGreaterThanOrEqual(before.size);
      expect(uids.size).toBeLessThan(3000 + 1);
      expect(ackedDuring, `ACKs during the backup; before ${before.size}, in copy ${uids.size}`).toBeGreaterThan(0); // the other process kept committing
      console.info(`backup across processes: ${before.size} ACKed before, ${ackedDuring} during, ${uids.size} in the copy`);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });

  it('restore refuses a non-empty data dir, a running gateway, and with --force moves the old content aside', async () => {
    store = GatewayStore.open({ dataDir: src });
    await store.submit(sampleMessage(1));
    writeFiles(src, SIDE_FILES);
    const b = await backup(src, join(tmp.dir, 'b.tgz'));
    const dst = join(tmp.dir, 'other');
    mkdirSync(dst);
    writeFileSync(join(dst, 'flows.json'), 'old flows');
    await expect(restore(b.file, dst)).rejects.toMatchObject({ code: 'GW_BACKUP_TARGET' });
    expect(readFileSync(join(dst, 'flows.json'), 'utf8')).toBe('old flows');

    // a running gateway on the target: refused even with --force
    expect(databaseInUse(join(src, 'gateway.db'))).toBe(true);
    await expect(restore(b.file, src, { force: true })).rejects.toMatchObject({ code: 'GW_BACKUP_IN_USE' });
    await store.close();
    store = undefined;
    expect(databaseInUse(join(src, 'gateway.db'))).toBe(false);

    const r = await restore(b.file, dst, { force: true });
    expect(r.movedAside).toBeDefined();
    expect(readFileSync(join(r.movedAside!, 'flows.json'), 'utf8')).toBe('old flows');
    expect(readFileSync(join(dst, 'flows.json'), 'utf8')).toBe(SIDE_FILES['flows.json']);
  });

  it.runIf(process.getuid?.() === 0)('restore run as root gives the files to the owner of the data dir', async () => {
    store = GatewayStore.open({ dataDir: src });
    await store.submit(sampleMessage(1));
    writeFiles(src, SIDE_FILES);
    const b = await backup(src, join(tmp.dir, 'own.tgz'));
    const dst = join(tmp.dir, 'owned');
    mkdirSync(dst);
    chownSync(dst, 4242, 4343);
    await restore(b.file, dst);
    for (const p of ['gateway.db', 'flows.json', 'dicom', 'dicom/1.2.840.1/1.2.840.1.1.dcm', 'node-red/.config.runtime.json']) {
      expect(statSync(join(dst, p))).toMatchObject({ uid: 4242, gid: 4343 });
    }
  });

  it('backup refuses an archive inside the data dir, a missing data dir, and an existing file without overwrite', async () => {
    store = GatewayStore.open({ dataDir: src });
    await expect(backup(src, join(src, 'x.tgz'))).rejects.toMatchObject({ code: 'GW_BACKUP_TARGET' });
    await expect(backup(join(tmp.dir, 'nope'), join(tmp.dir, 'x.tgz'))).rejects.toMatchObject({ code: 'GW_BACKUP_SOURCE' });
    writeFileSync(join(tmp.dir, 'exists.tgz'), 'x');
    await expect(backup(src, join(tmp.dir, 'exists.tgz'))).rejects.toMatchObject({ code: 'GW_BACKUP_TARGET' });
    await expect(backup(src, join(tmp.dir, 'exists.tgz'), { overwrite: true })).resolves.toMatchObject({ file: join(tmp.dir, 'exists.tgz') });
  });

  describe('restore verifies the archive', () => {
    let archive: string;
    beforeEach(async () => {
      store = GatewayStore.open({ dataDir: src });
      for (let i = 0; i < 20; i++) await store.submit(sampleMessage(i));
      writeFiles(src, SIDE_FILES);
      archive = (await backup(src, join(tmp.dir, 'good.tgz'))).file;
      await store.close();
      store = undefined;
    });

    const cases: Array<{ name: string; code: string; mutate: (data: string, m: BackupManifest) => void }> = [
      { name: 'a file altered after the backup', code: 'GW_BACKUP_VERIFY', mutate: (d) => writeFileSync(join(d, 'flows.json'), '[]') },
      { name: 'a file missing', code: 'GW_BACKUP_VERIFY', mutate: (d, m) => void m.files.push({ path: 'gone.json', bytes: 1, sha256: '0' }) },
      {
        name: 'a file the manifest does not list',
        code: 'GW_BACKUP_VERIFY',
        mutate: (d) => writeFileSync(join(d, 'intruder.json'), '{}'),
      },
      {
        name: 'a database schema newer than this gateway (manifest recomputed)',
        code: 'GW_BACKUP_SCHEMA',
        mutate: (d, m) => {
          const f = join(d, 'gateway.db');
          const db = new Database(f);
          db.pragma(`user_version = ${SCHEMA_VERSION + 1}`);
          db.pragma('journal_mode = DELETE');
          db.close();
          const e = m.files.find((x) => x.path === 'gateway.db')!;
          e.sha256 = sha(f);
          e.bytes = statSync(f).size;
          e.sqlite!.schemaVersion = SCHEMA_VERSION + 1;
        },
      },
      {
        name: 'a corrupt database (manifest recomputed)',
        code: 'GW_BACKUP_VERIFY',
        mutate: (d, m) => {
          const f = join(d, 'gateway.db');
          const buf = readFileSync(f);
          const pageSize = buf.readUInt16BE(16);
          buf.fill(0xa5, pageSize * 2, pageSize * 4); // pages 3-4: b-tree pages of the schema
          writeFileSync(f, buf);
          const e = m.files.find((x) => x.path === 'gateway.db')!;
          e.sha256 = sha(f);
          e.bytes = buf.length;
        },
      },
      { name: 'not a gateway backup', code: 'GW_BACKUP_ARCHIVE', mutate: (_d, m) => void ((m as { format: string }).format = 'something-else') },
    ];
    for (const c of cases) {
      it(`refuses ${c.name} (${c.code}) and leaves the data dir empty`, async () => {
        const bad = join(tmp.dir, 'bad.tgz');
        await repack(archive, join(tmp.dir, 'work'), c.mutate, bad);
        const dst = join(tmp.dir, 'dst');
        const err = await restore(bad, dst).then(
          () => undefined,
          (e: unknown) => e,
        );
        expect(err).toBeInstanceOf(BackupError);
        expect((err as BackupError).code).toBe(c.code);
        expect(readdirSync(dst)).toEqual([]);
      });
    }

    it('an unmodified repack restores (the cases above fail for their mutation only)', async () => {
      const same = join(tmp.dir, 'same.tgz');
      await repack(archive, join(tmp.dir, 'work'), () => undefined, same);
      const r = await restore(same, join(tmp.dir, 'dst'));
      expect(r.manifest.files.some((f) => f.path === 'gateway.db')).toBe(true);
    });

    it('refuses garbage that is not an archive', async () => {
      const junk = join(tmp.dir, 'junk.tgz');
      writeFileSync(junk, 'not a tar at all');
      await expect(restore(junk, join(tmp.dir, 'dst'))).rejects.toMatchObject({ code: 'GW_BACKUP_ARCHIVE' });
    });
  });

  describe('CLI', () => {
    it('--help prints the usage and exits 0; bad usage exits 2', async () => {
      for (const run of [runBackupCommand, runRestoreCommand]) {
        const o = io();
        expect(await run(['--help'], o)).toBe(0);
        expect(o.text()).toMatch(/--data-dir DIR/);
        const e = io();
        expect(await run([], e)).toBe(2);
        expect(e.text()).toMatch(/exactly one FILE/);
        expect(await run(['a', '--bogus'], io())).toBe(2);
      }
    });

    it('backup then restore through the commands', async () => {
      store = GatewayStore.open({ dataDir: src });
      const c = await store.submit(sampleMessage(7));
      await store.close();
      store = undefined;
      const file = join(tmp.dir, 'cli.tgz');
      const o = io();
      expect(await runBackupCommand([file, '--data-dir', src], o)).toBe(0);
      expect(o.text()).toMatch(/backup written/);
      const e = io();
      expect(await runBackupCommand([file, '--data-dir', src], e)).toBe(1); // exists, no --force
      expect(e.text()).toMatch(/GW_BACKUP_TARGET/);
      const dst = join(tmp.dir, 'cli-restored');
      const r = io();
      expect(await runRestoreCommand([file, '--data-dir', dst], r)).toBe(0);
      expect(r.text()).toMatch(/integrity ok/);
      const s = GatewayStore.open({ dataDir: dst });
      try {
        expect(s.getMessage(c.messageId)?.uid).toBe(c.messageUid);
      } finally {
        await s.close();
      }
      expect(await runRestoreCommand([file, '--data-dir', dst], io())).toBe(1); // not empty now
    });
  });
});
