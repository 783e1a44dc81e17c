import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { prepareDatabase } from '../store/migrations';
import { AuditLog, auditRetentionDays, chainHash, recordAudit, setSharedAuditLog } from './audit-log';

const DAY = 24 * 3600_000;

describe('AuditLog (real SQLite file)', () => {
  let dir: string;
  let db: Database.Database;
  let now: number;
  let audit: AuditLog;

  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'audit-'));
    db = new Database(join(dir, 'gateway.db'));
    prepareDatabase(db);
    now = Date.UTC(2026, 0, 1);
    audit = new AuditLog(db, () => now);
  });
  afterEach(() => {
    db.close();
    rmSync(dir, { recursive: true, force: true });
  });

  function fill(n: number, stepMs = 0): void {
    for (let i = 0; i < n; i++) {
      audit.record({ action: 'phi.view', user: `u${i % 3}`, role: 'operator', source: '10.0.0.9', target: `message:${i}`, detail: { i } });
      now += stepMs;
    }
  }

  it('chains each row to the previous one from the genesis anchor', () => {
    fill(5);
    const rows = db.prepare('SELECT * FROM audit_log ORDER BY id').all() as Array<Record<string, unknown> & { hash: string; id: number }>;
    expect(rows.map((r) => r.id)).toEqual([1, 2, 3, 4, 5]);
    let prev = '0'.repeat(64);
    for (const r of rows) {
      const { hash, ...content } = r;
      expect(hash).toBe(chainHash(prev, content as never));
      prev = hash;
    }
    expect(audit.verify()).toEqual({ ok: true, checked: 5, anchorId: 0, pruned: 0 });
    const page = audit.list(2);
    expect(page.map((r) => r.id)).toEqual([5, 4]);
    expect(page[0]).toMatchObject({ user: 'u1', role: 'operator', action: 'phi.view', target: 'message:4', source: '10.0.0.9', outcome: 'ok', detail: { i: 4 } });
    expect(audit.list(10, 3).map((r) => r.id)).toEqual([2, 1]);
  });

  // Each kind of tampering, done directly on the file as an attacker with write access would.
  const tamper: Array<[string, string, number]> = [
    ['a changed actor', `UPDATE audit_log SET actor = 'someone-else' WHERE id = 3`, 3],
    ['a changed time', `UPDATE audit_log SET at = '2020-01-01T00:00:00.000Z' WHERE id = 2`, 2],
    ['a changed detail', `UPDATE audit_log SET detail = '{"i":99}' WHERE id = 4`, 4],
    ['a changed outcome', `UPDATE audit_log SET outcome = 'ok', action = 'login.ok' WHERE id = 1`, 1],
    ['a deleted middle row', `DELETE FROM audit_log WHERE id = 3`, 4],
    ['a replaced hash', `UPDATE audit_log SET actor = 'x', hash = '${'a'.repeat(64)}' WHERE id = 2`, 2],
  ];
  it.each(tamper)('verify reports %s', (_name, sql, brokenId) => {
    fill(6);
    expect(audit.verify().ok).toBe(true);
    db.exec(sql);
    const r = audit.verify();
    expect(r.ok).toBe(false);
    expect(r.firstBroken?.id).toBe(brokenId);
  });

  it('a row altered with its own hash recomputed breaks the next row', () => {
    fill(4);
    const r1 = db.prepare('SELECT hash FROM audit_log WHERE id = 1').get() as { hash: string };
    const r2 = db.prepare('SELECT * FROM audit_log WHERE id = 2').get() as Record<string, unknown>;
    const forged = { ...r2, actor: 'forger' };
    delete forged.hash;
    db.prepare('UPDATE audit_log SET actor = ?, hash = ? WHERE id = 2').run('forger', chainHash(r1.hash, forged as never));
    expect(audit.verify().firstBroken?.id).toBe(3);
  });

  it('prunes by age only, oldest first, and the chain still verifies from the moved anchor', () => {
    fill(10, DAY * 50); // rows 1..10 at day 0, 50, ..., 450
    now = Date.UTC(2026, 0, 1) + 500 * DAY;
    // retention 365 days: rows older than day 135 go (days 0, 50, 100 = ids 1..3)
    expect(audit.prune(365, 2)).toBe(3);
    const v = audit.verify();
    expect(v).toMatchObject({ ok: true, anchorId: 3, pruned: 3 });
    expect(v.checked).toBe(8); // 7 kept + the audit.prune record
    const kept = db.prepare('SELECT min(at) AS oldest FROM audit_log').get() as { oldest: string };
    expect(Date.parse(kept.oldest)).toBeGreaterThanOrEqual(now - 365 * DAY);
    expect(audit.list(1)[0]).toMatchObject({ action: 'audit.prune', detail: { deleted: 3, maxAgeDays: 365 } });
    // tampering after a prune still shows
    db.exec(`UPDATE audit_log SET target = 'x' WHERE id = 5`);
    expect(audit.verify().firstBroken?.id).toBe(5);
  });

  it('never prunes rows younger than the retention, and 0 keeps everything', () => {
    fill(4, DAY);
    now += 10 * DAY;
    expect(audit.prune(0)).toBe(0);
    expect(audit.prune(30)).toBe(0);
    expect((db.prepare('SELECT count(*) AS n FROM audit_log').get() as { n: number }).n).toBe(4);
    expect(audit.verify()).toMatchObject({ ok: true, checked: 4, anchorId: 0 });
  });

  it('two connections appending at once keep one chain (BEGIN IMMEDIATE)', () => {
    const db2 = new Database(join(dir, 'gateway.db'));
    db2.pragma('busy_timeout = 5000');
    const other = new AuditLog(db2);
    for (let i = 0; i < 20; i++) (i % 2 ? audit : other).record({ action: 'user.add', target: `n${i}` });
    db2.close();
    expect(audit.verify()).toMatchObject({ ok: true, checked: 20 });
  });

  it('recordAudit() writes into the shared log (deploys from other modules) and never throws', () => {
    expect(recordAudit({ action: 'deploy' })).toBe(false); // none open
    setSharedAuditLog(audit);
    try {
      expect(recordAudit({ action: 'deploy', user: 'boss', role: 'admin', source: '10.0.0.2', detail: { version: 7, summary: '2 nodes changed' } })).toBe(true);
      expect(audit.list(1)[0]).toMatchObject({ action: 'deploy', user: 'boss', detail: { version: 7 } });
      expect(recordAudit({ action: '' })).toBe(false); // refused, logged, not thrown
    } finally {
      setSharedAuditLog(undefined);
    }
  });

  it('refuses an empty action', () => {
    expect(() => audit.record({ action: '' })).toThrow(TypeError);
  });

  it.each([
    [undefined, 365],
    ['', 365],
    ['0', 0],
    ['730', 730],
  ])('IOMT_AUDIT_RETENTION_DAYS=%s → %d', (v, days) => {
    expect(auditRetentionDays({ IOMT_AUDIT_RETENTION_DAYS: v })).toBe(days);
  });
  it.each(['-1', 'abc', '1.5'])('IOMT_AUDIT_RETENTION_DAYS=%s is refused', (v) => {
    expect(() => auditRetentionDays({ IOMT_AUDIT_RETENTION_DAYS: v })).toThrow(RangeError);
  });
});
