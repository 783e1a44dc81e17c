import { parseArgs } from 'node:util';
import { loadSettings } from '../config/settings';
import { ConfigError } from '../contracts/errors';
import { backup, restore, BackupError } from './backup';

/** Output sinks (tests pass their own). */
export interface CliIo {
  out: (s: string) => void;
  err: (s: string) => void;
}

const defaultIo: CliIo = {
  out: (s) => process.stdout.write(s),
  err: (s) => process.stderr.write(s),
};

export const BACKUP_USAGE = `iomt-gateway backup FILE [--data-dir DIR] [--settings FILE] [--force]

Online, consistent backup of the gateway's data dir into one archive (gzip'd tar), safe while the
gateway runs: the SQLite database is copied through SQLite's backup API in one read transaction
(ingest is not blocked), with site flows, Node-RED state, accounts and DICOM files.
Not copied: admin-password.txt (plaintext first-start password), node-red/node_modules.
The archive holds patient data and secrets: it is written with mode 0600.
Run it as the gateway's user (e.g. sudo -u iomt-gateway iomt-gateway backup ...).

Options:
  --data-dir DIR     data dir to back up (default: IOMT_DATA_DIR / settings dataDir)
  --settings FILE    settings file (to find the data dir)
  --force            overwrite FILE if it exists
  -h, --help         this help

Exit status: 0 done, 1 failed, 2 bad usage.`;

export const RESTORE_USAGE = `iomt-gateway restore FILE [--data-dir DIR] [--settings FILE] [--force]

Restore a backup made by 'iomt-gateway backup' into the data dir of a STOPPED gateway.
Checks every file against the archive's manifest (SHA-256), runs PRAGMA integrity_check on every
database and refuses a database schema newer than this gateway (an older one is migrated forward
on the next start). Refuses while a gateway has the database open.

Options:
  --data-dir DIR     data dir to restore into (default: IOMT_DATA_DIR / settings dataDir)
  --settings FILE    settings file (to find the data dir)
  --force            accept a non-empty data dir: its content is moved to DIR/.pre-restore-<time>/
  -h, --help         this help

Exit status: 0 done, 1 failed, 2 bad usage.`;

type Parsed = { file: string; dataDir: string; force: boolean } | { exit: number };

function parse(argv: string[], usage: string, io: CliIo): Parsed {
  let values: { 'data-dir'?: string; settings?: string; force?: boolean; help?: boolean };
  let positionals: string[];
  try {
    ({ values, positionals } = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: { 'data-dir': { type: 'string' }, settings: { type: 'string' }, force: { type: 'boolean' }, help: { type: 'boolean', short: 'h' } },
    }));
  } catch (e) {
    io.err(`${(e as Error).message}\n\n${usage}\n`);
    return { exit: 2 };
  }
  if (values.help) {
    io.out(usage + '\n');
    return { exit: 0 };
  }
  if (positionals.length !== 1) {
    io.err(`expected exactly one FILE\n\n${usage}\n`);
    return { exit: 2 };
  }
  let dataDir = values['data-dir'];
  if (!dataDir) {
    try {
      dataDir = loadSettings({ file: values.settings }).dataDir;
    } catch (e) {
      if (e instanceof ConfigError) {
        io.err(`settings: ${e.problems.map((p) => `${p.path || p.file}: ${p.reason}`).join('; ')}\n`);
        return { exit: 2 };
      }
      throw e;
    }
  }
  return { file: positionals[0], dataDir, force: values.force === true };
}

function fail(e: unknown, io: CliIo): number {
  if (e instanceof BackupError) io.err(`${e.code}: ${e.message}\n`);
  else io.err(`failed: ${(e as Error)?.message ?? String(e)}\n`);
  return 1;
}

/** `iomt-gateway backup FILE ...` → exit status. */
export async function runBackupCommand(argv: string[], io: CliIo = defaultIo): Promise<number> {
  const a = parse(argv, BACKUP_USAGE, io);
  if ('exit' in a) return a.exit;
  try {
    const r = await backup(a.dataDir, a.file, { overwrite: a.force });
    const dbs = r.manifest.files.filter((f) => f.sqlite).length;
    io.out(
      `backup written: ${r.file} (${r.archiveBytes} bytes; ${r.manifest.files.length} files, ${dbs} database(s), schema version ${r.manifest.schemaVersion}; snapshot held ${Math.round(r.snapshotMs)} ms)\n`,
    );
    for (const s of r.skipped) io.out(`  not copied: ${s.path} (${s.reason})\n`);
    return 0;
  } catch (e) {
    return fail(e, io);
  }
}

/** `iomt-gateway restore FILE ...` → exit status. */
export async function runRestoreCommand(argv: string[], io: CliIo = defaultIo): Promise<number> {
  const a = parse(argv, RESTORE_USAGE, io);
  if ('exit' in a) return a.exit;
  try {
    const r = await restore(a.file, a.dataDir, { force: a.force });
    io.out(`restored ${r.manifest.files.length} files into ${r.dataDir} (backup of ${r.manifest.createdAt}, gateway ${r.manifest.gatewayVersion}, schema version ${r.manifest.schemaVersion}; integrity ok)\n`);
    if (r.movedAside) io.out(`  the previous content is in ${r.movedAside}\n`);
    io.out(`start the gateway to use it (an older schema is migrated forward on start)\n`);
    return 0;
  } catch (e) {
    return fail(e, io);
  }
}
