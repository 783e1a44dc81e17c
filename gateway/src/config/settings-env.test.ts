import { describe, expect, it } from 'vitest';
import { ConfigError } from '../contracts/errors';
import { loadSettings } from './settings';

// The account and audit variables are checked when the settings load (check-config, run), with the
// parsers that use them (audit-log.ts auditRetentionDays, http/sessions.ts sessionOptionsFromEnv).
describe('IOMT_AUDIT_RETENTION_DAYS, IOMT_SESSION_IDLE_MINUTES, IOMT_SESSION_MAX_HOURS in loadSettings', () => {
  const cases: Array<{ env: Record<string, string>; bad?: RegExp }> = [
    { env: {} },
    { env: { IOMT_AUDIT_RETENTION_DAYS: '0', IOMT_SESSION_IDLE_MINUTES: '15', IOMT_SESSION_MAX_HOURS: '8' } },
    { env: { IOMT_AUDIT_RETENTION_DAYS: '-1' }, bad: /IOMT_AUDIT_RETENTION_DAYS must be a whole number/ },
    { env: { IOMT_AUDIT_RETENTION_DAYS: '1y' }, bad: /IOMT_AUDIT_RETENTION_DAYS/ },
    { env: { IOMT_SESSION_IDLE_MINUTES: '0' }, bad: /IOMT_SESSION_IDLE_MINUTES must be a whole number >= 1/ },
    { env: { IOMT_SESSION_MAX_HOURS: 'abc' }, bad: /IOMT_SESSION_MAX_HOURS must be a whole number >= 1/ },
  ];
  for (const c of cases) {
    it(`${JSON.stringify(c.env)} → ${c.bad ? 'refused' : 'accepted'}`, () => {
      const load = () => loadSettings({ env: { IOMT_DATA_DIR: '/tmp/x', ...c.env }, cwd: '/tmp' });
      if (!c.bad) {
        expect(load().dataDir).toBe('/tmp/x');
        return;
      }
      let err: unknown;
      try {
        load();
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).problems.map((p) => p.reason).join('\n')).toMatch(c.bad);
    });
  }
  it('reports both problems at once', () => {
    expect(() => loadSettings({ env: { IOMT_AUDIT_RETENTION_DAYS: 'x', IOMT_SESSION_MAX_HOURS: '0' }, cwd: '/tmp' })).toThrow(/IOMT_AUDIT_RETENTION_DAYS[\s\S]*IOMT_SESSION_MAX_HOURS/);
  });
});

describe('readTemplateFile (TLS file fields)', () => {
  it('an empty field, or a ${VAR} that resolves to empty, is no file; a named file is read; a missing one throws', async () => {
    const { readTemplateFile } = await import('./env-template');
    const { mkdtempSync, writeFileSync } = await import('node:fs');
    const { join } = await import('node:path');
    const { tmpdir } = await import('node:os');
    const dir = mkdtempSync(join(tmpdir(), 'iomt-tplfile-'));
    writeFileSync(join(dir, 'ca.pem'), 'PEM');
    expect(readTemplateFile('', {})).toBeUndefined();
    expect(readTemplateFile(undefined, {})).toBeUndefined();
    expect(readTemplateFile('${HIS_TLS_CA}', {})).toBeUndefined(); // the shipped flows' field, variable unset
    expect(readTemplateFile('${HIS_TLS_CA}', { HIS_TLS_CA: join(dir, 'ca.pem') })?.toString()).toBe('PEM');
    expect(() => readTemplateFile(join(dir, 'missing.pem'), {})).toThrow(/ENOENT/);
  });
});
