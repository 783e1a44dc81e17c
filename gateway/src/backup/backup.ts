import { createHash } from 'node:crypto';
import { createReadStream, closeSync, lchownSync, copyFileSync, existsSync, lstatSync, mkdirSync, mkdtempSync, openSync, readFileSync, readSync, readdirSync, renameSync, rmSync, statSync, writeFileSync, chmodSync } from 'node:fs';
import { basename, dirname, isAbsolute, join, relative, resolve, sep } from 'node:path';
import Database from 'better-sqlite3';
import * as tar from 'tar';
import { SCHEMA_VERSION } from '../store/migrations';
import { DB_FILE } from '../store/gateway-store';
import { packageRoot } from '../package-root';

/**
 * Online backup and restore of a gateway data dir (issue 9 §4).
 *
 * Archive: a gzip'd POSIX tar (node-tar, `portable`: no uid/gid/mtime noise) holding
 *   backup-manifest.json   what is inside (format below), written first
 *   data/<relative path>   every file of the data dir that matters
 * SQLite files (recognised by their 16-byte header, not their name) are copied through SQLite's
 * online backup API from their own connection (better-sqlite3 `db.backup()`), in ONE step: the step
 * holds a single read transaction, so the copy is one consistent snapshot and, in WAL mode, the
 * writer (the store's writer worker, another process or thread) is never blocked; it only keeps
 * appending to the WAL until the step ends (sqlite.org/backup.html, sqlite.org/wal.html §2.2).
 * Their `-wal`, `-shm` and `-journal` files are not copied: the snapshot already holds every
 * committed transaction. Other files are copied as they are (site flows, Node-RED state and
 * credential secret, admin.json, dicom/ ...), except:
 *   - admin-password.txt: the plaintext first-start password (the hash in admin.json is kept);
 *   - node-red/node_modules: installed palette code, architecture specific, reinstallable;
 *   - symlinks, sockets and other non-regular files (listed in `skipped`);
 *   - leftovers of this module (`.iomt-backup-*`, `.restore-*`, `.pre-restore-*`).
 * Every file is hashed (SHA-256) into the manifest; restore verifies each one, then runs
 * `PRAGMA integrity_check` and checks the schema version of every database.
 *
 * The archive holds PHI (results, raw messages) and secrets (password hashes, the Node-RED
 * credential key): it is written with mode 0600. Keep it like the data dir itself.
 */

export const MANIFEST_NAME = 'backup-manifest.json';
export const ARCHIVE_DATA_PREFIX = 'data';
export const BACKUP_FORMAT = 'iomt-gateway-backup';
export const BACKUP_FORMAT_VERSION = 1;

const SQLITE_HEADER = Buffer.from('SQLite format 3\0', 'latin1'); // sqlite.org/fileformat.html §1.3.1
const SQLITE_SIDE_FILES = ['-wal', '-shm', '-journal'];
const SKIP_NAMES = new Set(['admin-password.txt', 'lost+found']);
const SKIP_DIRS = [join('node-red', 'node_modules')];
const OWN_LEFTOVER = /^\.(iomt-backup-|restore-|pre-restore-)/;

export interface ManifestFile {
  /** relative to the data dir, '/' separated */
  path: string;
  bytes: number;
  sha256: string;
  /** present for SQLite databases */
  sqlite?: { schemaVersion: number; pages: number; integrity: 'ok' };
}

export interface BackupManifest {
  format: typeof BACKUP_FORMAT;
  formatVersion: number;
  createdAt: string;
  gatewayVersion: string;
  /** PRAGMA user_version of gateway.db at the snapshot */
  schemaVersion: number;
  files: ManifestFile[];
}

export interface BackupResult {
  file: string;
  manifest: BackupManifest;
  /** data-dir paths not copied, with the reason */
  skipped: Array<{ path: string; reason: string }>;
  /** time the database snapshot step held its read transaction, ms (the only part that touches the live db) */
  snapshotMs: number;
  archiveBytes: number;
}

export interface RestoreResult {
  dataDir: string;
  manifest: BackupManifest;
  /** where the previous content of the data dir was moved (only with `force`) */
  movedAside?: string;
}

export class BackupError extends Error {
  constructor(
    message: string,
    readonly code: 'GW_BACKUP_SOURCE' | 'GW_BACKUP_TARGET' | 'GW_BACKUP_ARCHIVE' | 'GW_BACKUP_VERIFY' | 'GW_BACKUP_SCHEMA' | 'GW_BACKUP_IN_USE',
  ) {
    super(message);
    this.name = 'BackupError';
  }
}

function gatewayVersion(): string {
  try {
    return String((JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')) as { version?: string }).version ?? 'unknown');
  } catch {
    return 'unknown';
  }
}

function isSqliteFile(file: string): boolean {
  const fd = openSync(file, 'r');
  try {
    const b = Buffer.alloc(SQLITE_HEADER.length);
    return readSync(fd, b, 0, b.length, 0) === b.length && b.equals(SQLITE_HEADER);
  } finally {
    closeSync(fd);
  }
}

async function sha256(file: string): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of createReadStream(file)) h.update(chunk as Buffer);
  return h.digest('hex');
}

function toPosix(rel: string): string {
  return rel.split(sep).join('/');
}

function isInside(child: string, parent: string): boolean {
  const r = relative(parent, child);
  return r === '' || (r !== '..' && !r.startsWith(`..${sep}`) && !isAbsolute(r));
}

/** Regular files of `dir` (recursive), relative paths; non-regular entries and excluded paths go to `skipped`. */
function walk(dir: string, skipped: BackupResult['skipped']): string[] {
  const out: string[] = [];
  const visit = (rel: string) => {
    for (const name of readdirSync(join(dir, rel)).sort()) {
      const r = rel ? join(rel, name) : name;
      if (!rel && (SKIP_NAMES.has(name) || OWN_LEFTOVER.test(name))) {
        if (name !== 'lost+found') skipped.push({ path: toPosix(r), reason: name === 'admin-password.txt' ? 'plaintext first-start password (its hash is in admin.json)' : 'left by backup/restore' });
        continue;
      }
      if (SKIP_DIRS.includes(r)) {
        skipped.push({ path: toPosix(r), reason: 'installed packages (architecture specific, reinstall them)' });
        continue;
      }
      const st = lstatSync(join(dir, r));
      if (st.isDirectory()) visit(r);
      else if (st.isFile()) out.push(r);
      else skipped.push({ path: toPosix(r), reason: st.isSymbolicLink() ? 'symbolic link' : 'not a regular file' });
    }
  };
  visit('');
  return out;
}

/**
 * One consistent copy of a live SQLite database through the online backup API, on its own
 * connection. `db.backup()` first calls step(0) (opens the backup), then one step with every
 * remaining page: the copy is taken inside one read transaction (a change committed by another
 * connection between the two calls makes SQLite restart the copy inside that same step).
 */
async function snapshotDatabase(src: string, dest: string): Promise<{ pages: number; ms: number }> {
  let db: Database.Database;
  try {
    db = new Database(src, { fileMustExist: true });
  } catch (e) {
    throw new BackupError(`cannot open ${src}: ${(e as Error).message}`, 'GW_BACKUP_SOURCE');
  }
  try {
    db.pragma('busy_timeout = 10000');
    db.pragma('query_only = ON'); // this connection never writes the live database
    let ms = 0;
    let t0 = 0;
    const r = await db.backup(dest, {
      progress: () => {
        t0 = performance.now();
        return 0x7fffffff; // all remaining pages in the next step
      },
    });
    if (t0) ms = performance.now() - t0;
    return { pages: r.totalPages, ms };
  } finally {
    db.close();
  }
}

/** integrity_check + user_version of a database file; a file SQLite cannot read reports its error as `integrity`. */
export function checkDatabase(file: string): { integrity: string; schemaVersion: number; pages: number } {
  let db: Database.Database | undefined;
  try {
    db = new Database(file, { fileMustExist: true });
    db.pragma('busy_timeout = 10000');
    const rows = db.pragma('integrity_check') as Array<{ integrity_check: string }>;
    const integrity = rows.map((r) => r.integrity_check).join('; ');
    return { integrity, schemaVersion: Number(db.pragma('user_version', { simple: true })), pages: Number(db.pragma('page_count', { simple: true })) };
  } catch (e) {
    // a file damaged enough makes SQLite throw (SQLITE_CORRUPT, SQLITE_NOTADB) instead of listing problems
    return { integrity: `${(e as { code?: string }).code ?? 'error'}: ${(e as Error).message}`, schemaVersion: -1, pages: 0 };
  } finally {
    db?.close();
  }
}

/**
 * `backup(dataDir, file)`: an online, consistent backup of a data dir into one archive (see the
 * module comment for the format). Safe while the gateway runs. The archive is written to
 * `<file>.partial` and renamed when complete; the staging dir (next to the archive) is removed.
 * Errors: BackupError GW_BACKUP_SOURCE (no data dir / no gateway.db / unreadable), GW_BACKUP_TARGET
 * (archive inside the data dir, or exists), GW_BACKUP_VERIFY (a snapshot fails integrity_check).
 */
export async function backup(dataDir: string, file: string, opts: { overwrite?: boolean } = {}): Promise<BackupResult> {
  const src = resolve(dataDir);
  const out = resolve(file);
  if (!existsSync(src) || !statSync(src).isDirectory()) throw new BackupError(`data dir not found: ${src}`, 'GW_BACKUP_SOURCE');
  if (!existsSync(join(src, DB_FILE))) throw new BackupError(`no ${DB_FILE} in ${src}: not a gateway data dir`, 'GW_BACKUP_SOURCE');
  if (isInside(out, src)) throw new BackupError(`the backup file must be outside the data dir (${src})`, 'GW_BACKUP_TARGET');
  if (existsSync(out) && !opts.overwrite) throw new BackupError(`${out} exists (use --force to overwrite)`, 'GW_BACKUP_TARGET');
  if (!existsSync(dirname(out))) throw new BackupError(`directory not found: ${dirname(out)}`, 'GW_BACKUP_TARGET');

  const skipped: BackupResult['skipped'] = [];
  const all = walk(src, skipped);
  const sqlite = new Set(all.filter((r) => isSqliteFile(join(src, r))));
  const sideOf = (r: string) => SQLITE_SIDE_FILES.some((s) => r.endsWith(s) && sqlite.has(r.slice(0, -s.length)));

  const staging = mkdtempSync(join(dirname(out), `.iomt-backup-${basename(out)}-`));
  const stageData = join(staging, ARCHIVE_DATA_PREFIX);
  let snapshotMs = 0;
  try {
    const files: ManifestFile[] = [];
    let schemaVersion = 0;
    // Databases first: the snapshot is the point in time of the backup.
    for (const r of [...sqlite].sort((a, b) => (a === DB_FILE ? -1 : b === DB_FILE ? 1 : a.localeCompare(b)))) {
      const dest = join(stageData, r);
      mkdirSync(dirname(dest), { recursive: true, mode: 0o700 });
      const s = await snapshotDatabase(join(src, r), dest);
      snapshotMs += s.ms;
      const c = checkDatabase(dest);
      if (c.integrity !== 'ok') throw new BackupError(`snapshot of ${r} fails integrity_check: ${c.integrity}`, 'GW_BACKUP_VERIFY');
      if (r === DB_FILE) schemaVersion = c.schemaVersion;
      files.push({ path: toPosix(r), bytes: statSync(dest).size, sha256: await sha256(dest), sqlite: { schemaVersion: c.schemaVersion, pages: c.pages, integrity: 'ok' } });
    }
    for (const r of all) {
      if (sqlite.has(r)) continue;
      if (sideOf(r)) {
        skipped.push({ path: toPosix(r), reason: 'SQLite journal/WAL (its committed content is in the snapshot)' });
        continue;
      }
      const dest = join(stageData, r);
      mkdirSync(dirname(dest), { recursive: true, mode: 0o700 });
      try {
        copyFileSync(join(src, r), dest); // a copy, so that the hash and the archived bytes are the same bytes
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') {
          skipped.push({ path: toPosix(r), reason: 'removed during the backup' });
          continue;
        }
        throw e;
      }
      files.push({ path: toPosix(r), bytes: statSync(dest).size, sha256: await sha256(dest) });
    }
    const manifest: BackupManifest = {
      format: BACKUP_FORMAT,
      formatVersion: BACKUP_FORMAT_VERSION,
      createdAt: new Date().toISOString(),
      gatewayVersion: gatewayVersion(),
      schemaVersion,
      files,
    };
    writeFileSync(join(staging, MANIFEST_NAME), JSON.stringify(manifest, null, 2) + '\n', { mode: 0o600 });
    const partial = `${out}.partial`;
    await tar.create({ gzip: true, file: partial, cwd: staging, portable: true, mode: 0o600 }, [
      MANIFEST_NAME,
      ...files.map((f) => `${ARCHIVE_DATA_PREFIX}/${f.path}`),
    ]);
    chmodSync(partial, 0o600);
    renameSync(partial, out);
    return { file: out, manifest, skipped, snapshotMs, archiveBytes: statSync(out).size };
  } finally {
    rmSync(staging, { recursive: true, force: true });
    rmSync(`${out}.partial`, { force: true });
  }
}

/** True when another connection (a running gateway) holds the database open. */
export function databaseInUse(file: string): boolean {
  if (!existsSync(file)) return false;
  const db = new Database(file, { fileMustExist: true });
  try {
    db.pragma('busy_timeout = 0');
    // WAL: exclusive locking mode takes the exclusive lock at the first read; it fails with
    // SQLITE_BUSY while any other connection has the file open (sqlite.org/wal.html §8).
    db.pragma('locking_mode = EXCLUSIVE');
    db.prepare('SELECT count(*) FROM sqlite_master').get();
    db.exec('BEGIN IMMEDIATE; COMMIT');
    return false;
  } catch (e) {
    if ((e as { code?: string }).code?.startsWith('SQLITE_BUSY') || (e as { code?: string }).code?.startsWith('SQLITE_LOCKED')) return true;
    throw e;
  } finally {
    db.close();
  }
}

function readManifest(dir: string): BackupManifest {
  const f = join(dir, MANIFEST_NAME);
  if (!existsSync(f)) throw new BackupError(`not a gateway backup: no ${MANIFEST_NAME}`, 'GW_BACKUP_ARCHIVE');
  let m: BackupManifest;
  try {
    m = JSON.parse(readFileSync(f, 'utf8')) as BackupManifest;
  } catch (e) {
    throw new BackupError(`unreadable ${MANIFEST_NAME}: ${(e as Error).message}`, 'GW_BACKUP_ARCHIVE');
  }
  if (m.format !== BACKUP_FORMAT || !Array.isArray(m.files)) throw new BackupError(`not a gateway backup (format ${String(m.format)})`, 'GW_BACKUP_ARCHIVE');
  if (m.formatVersion > BACKUP_FORMAT_VERSION) throw new BackupError(`backup format ${m.formatVersion} is newer than this gateway reads (${BACKUP_FORMAT_VERSION})`, 'GW_BACKUP_ARCHIVE');
  return m;
}

/**
 * `restore(file, dataDir)`: unpacks a backup into a stopped gateway's data dir.
 * The data dir must be missing or empty; with `force` a non-empty one is accepted and its current
 * content is moved (not deleted) to `<dataDir>/.pre-restore-<time>/`. Everything happens inside the
 * data dir (it may be a mount point, e.g. the Docker volume /data): the archive is extracted to
 * `<dataDir>/.restore-*`, every file's size and SHA-256 is checked against the manifest, every
 * database passes `PRAGMA integrity_check` and has a schema version this gateway can open
 * (equal or older: the store migrates it forward on the next start), and only then the files are
 * moved into place. Refuses while a gateway has `gateway.db` open (GW_BACKUP_IN_USE).
 * Errors: BackupError GW_BACKUP_ARCHIVE, GW_BACKUP_VERIFY, GW_BACKUP_SCHEMA, GW_BACKUP_TARGET, GW_BACKUP_IN_USE.
 */
export async function restore(file: string, dataDir: string, opts: { force?: boolean } = {}): Promise<RestoreResult> {
  const archive = resolve(file);
  const dst = resolve(dataDir);
  if (!existsSync(archive)) throw new BackupError(`backup file not found: ${archive}`, 'GW_BACKUP_ARCHIVE');
  mkdirSync(dst, { recursive: true, mode: 0o700 });
  const present = readdirSync(dst).filter((n) => n !== 'lost+found' && !OWN_LEFTOVER.test(n));
  if (present.length && !opts.force) throw new BackupError(`data dir ${dst} is not empty (${present.length} entries); stop the gateway and use --force to move its content aside`, 'GW_BACKUP_TARGET');
  if (databaseInUse(join(dst, DB_FILE))) throw new BackupError(`${join(dst, DB_FILE)} is open by a running gateway: stop it first`, 'GW_BACKUP_IN_USE');

  const staging = mkdtempSync(join(dst, '.restore-'));
  try {
    try {
      await tar.extract({
        file: archive,
        cwd: staging,
        strict: true,
        preservePaths: false, // node-tar strips absolute paths and refuses '..'
        filter: (p, entry) => {
          const type = (entry as { type?: string }).type;
          if (type !== 'File' && type !== 'Directory') throw new BackupError(`unexpected ${type} entry in archive: ${p}`, 'GW_BACKUP_ARCHIVE');
          return true;
        },
      });
    } catch (e) {
      if (e instanceof BackupError) throw e;
      throw new BackupError(`cannot read the archive: ${(e as Error).message}`, 'GW_BACKUP_ARCHIVE');
    }
    const manifest = readManifest(staging);
    const data = join(staging, ARCHIVE_DATA_PREFIX);
    const listed = new Set<string>();
    let sawMainDb = false;
    for (const f of manifest.files) {
      if (typeof f.path !== 'string' || f.path.split('/').some((s) => s === '..' || s === '') || f.path.startsWith('/')) throw new BackupError(`bad path in manifest: ${String(f.path)}`, 'GW_BACKUP_ARCHIVE');
      const p = join(data, ...f.path.split('/'));
      if (!existsSync(p)) throw new BackupError(`${f.path} is listed in the manifest but missing from the archive`, 'GW_BACKUP_VERIFY');
      const size = statSync(p).size;
      if (size !== f.bytes || (await sha256(p)) !== f.sha256) throw new BackupError(`${f.path} does not match its checksum in the manifest (damaged or altered archive)`, 'GW_BACKUP_VERIFY');
      listed.add(f.path);
      if (f.sqlite) {
        const c = checkDatabase(p);
        if (c.integrity !== 'ok') throw new BackupError(`${f.path} fails integrity_check: ${c.integrity}`, 'GW_BACKUP_VERIFY');
        if (c.schemaVersion !== f.sqlite.schemaVersion) throw new BackupError(`${f.path} has schema version ${c.schemaVersion}, the manifest says ${f.sqlite.schemaVersion}`, 'GW_BACKUP_VERIFY');
        if (f.path === DB_FILE) {
          sawMainDb = true;
          if (c.schemaVersion > SCHEMA_VERSION) throw new BackupError(`the backup's database schema (version ${c.schemaVersion}) is newer than this gateway (${SCHEMA_VERSION}): restore with the gateway version that took it (${manifest.gatewayVersion}) or newer`, 'GW_BACKUP_SCHEMA');
          if (c.schemaVersion < 1) throw new BackupError(`${f.path} has no gateway schema (user_version ${c.schemaVersion})`, 'GW_BACKUP_SCHEMA');
        }
      }
    }
    if (!sawMainDb) throw new BackupError(`the backup has no ${DB_FILE}`, 'GW_BACKUP_VERIFY');
    const extra = existsSync(data) ? walkAll(data).filter((r) => !listed.has(r)) : [];
    if (extra.length) throw new BackupError(`files in the archive that the manifest does not list: ${extra.slice(0, 5).join(', ')}`, 'GW_BACKUP_VERIFY');

    let movedAside: string | undefined;
    if (present.length) {
      movedAside = join(dst, `.pre-restore-${new Date().toISOString().replace(/[:.]/g, '-')}`);
      mkdirSync(movedAside, { mode: 0o700 });
      for (const n of present) renameSync(join(dst, n), join(movedAside, n));
    }
    const restored = existsSync(data) ? readdirSync(data) : [];
    for (const n of restored) renameSync(join(data, n), join(dst, n));
    chmodSync(dst, 0o700);
    // Run as root (e.g. without `sudo -u iomt-gateway`): hand the files to the data dir's owner, or
    // the gateway, running as its own user, could not open them.
    const owner = statSync(dst);
    if (process.getuid?.() === 0 && owner.uid !== 0) for (const n of restored) chownTree(join(dst, n), owner.uid, owner.gid);
    return { dataDir: dst, manifest, ...(movedAside ? { movedAside } : {}) };
  } finally {
    rmSync(staging, { recursive: true, force: true });
  }
}

function chownTree(p: string, uid: number, gid: number): void {
  lchownSync(p, uid, gid);
  if (lstatSync(p).isDirectory()) for (const n of readdirSync(p)) chownTree(join(p, n), uid, gid);
}

function walkAll(dir: string, rel = ''): string[] {
  const out: string[] = [];
  for (const name of readdirSync(join(dir, rel))) {
    const r = rel ? `${rel}/${name}` : name;
    if (lstatSync(join(dir, r)).isDirectory()) out.push(...walkAll(dir, r));
    else out.push(r);
  }
  return out;
}
