/**
 * Retention of the stored DICOM files (issue 11 §2): a file under `<dataDir>/dicom` is deleted only
 * when no message references it any more, i.e. after store retention deleted its message (which it
 * does only once the message's flow finished and no outbox row for it is pending: retention.ts
 * PRUNABLE). Run after each store retention pass.
 *
 * Safe against the storage SCP writing at the same time: the SCP renames a fresh temp file to its
 * path and then commits the row; a file is deleted only when it is older than `graceMs` (mtime) and
 * unreferenced, so a file whose row is being committed (or was just renamed over by an identical
 * re-send) is never taken. Files left by a failed commit (no row, no success sent) go after the grace.
 * `<dataDir>/dicom/tmp` is the SCP's own (it clears it at start).
 *
 * Storage commitment (PS3.4 J) is not built: with it, a file would also wait for the PACS's
 * confirmation. Without it, a file stays while any destination still has it pending.
 */
import { opendir, rmdir, stat, unlink } from 'node:fs/promises';
import { join, relative, sep } from 'node:path';
import Database from 'better-sqlite3';
import { DB_FILE } from '../../store/gateway-store';

export interface DicomFilePruneReport {
  scanned: number;
  deleted: number;
  bytesFreed: number;
  /** unreferenced but younger than the grace period */
  young: number;
}

/** relPath of every stored instance still indexed (messages of driver 'dicom'). */
function referencedPaths(dataDir: string): Set<string> {
  const db = new Database(join(dataDir, DB_FILE), { readonly: true, fileMustExist: true });
  try {
    const rows = db.prepare(`SELECT json_extract(meta, '$.relPath') AS p FROM messages WHERE driver = 'dicom' AND meta IS NOT NULL`).raw().all() as Array<[string | null]>;
    return new Set(rows.map((r) => r[0]).filter((p): p is string => typeof p === 'string'));
  } finally {
    db.close();
  }
}

export async function pruneDicomFiles(dataDir: string, o: { graceMs?: number; now?: number } = {}): Promise<DicomFilePruneReport> {
  const graceMs = o.graceMs ?? 3600_000;
  const now = o.now ?? Date.now();
  const report: DicomFilePruneReport = { scanned: 0, deleted: 0, bytesFreed: 0, young: 0 };
  const root = join(dataDir, 'dicom');
  let referenced: Set<string> | undefined;
  /** Prune below `dir`; true when it is left empty. */
  const walk = async (dir: string, depth: number): Promise<boolean> => {
    let left = 0; // entries kept in this directory
    let d;
    try {
      d = await opendir(dir);
    } catch {
      return false; // no dicom dir yet
    }
    for await (const e of d) {
      const p = join(dir, e.name);
      if (e.isDirectory()) {
        if (depth === 0 && e.name === 'tmp') left++;
        else if (await walk(p, depth + 1)) await rmdir(p).catch(() => left++);
        else left++;
        continue;
      }
      if (!e.isFile() || !e.name.endsWith('.dcm')) {
        left++;
        continue;
      }
      report.scanned++;
      referenced ??= referencedPaths(dataDir); // read after the listing began: a row committed since is seen
      const rel = relative(dataDir, p).split(sep).join('/');
      const st = referenced.has(rel) ? undefined : await stat(p).catch(() => undefined);
      if (!st) {
        left++;
        continue;
      }
      if (now - st.mtimeMs < graceMs) {
        report.young++;
        left++;
        continue;
      }
      await unlink(p);
      report.deleted++;
      report.bytesFreed += st.size;
    }
    return left === 0;
  };
  await walk(root, 0);
  return report;
}
