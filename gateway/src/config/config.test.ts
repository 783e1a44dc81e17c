import { describe, expect, it } from 'vitest';
import { writeFileSync, statSync, readFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import { loadSettings } from './settings';
import { resolveEnvTemplate, resolveNumber, resolveBool } from './env-template';
import { checkFlowFile } from './flow-check';
import { resolveAdminCredentials } from './admin-credentials';
import { ConfigError } from '../contracts/errors';
import { tempDir } from '../../../test/helpers/env';

describe('settings', () => {
  it('defaults, then file, then IOMT_* environment', () => {
    const t = tempDir();
    try {
      const f = join(t.dir, 'settings.json');
      writeFileSync(f, JSON.stringify({ http: { port: 1999 }, logLevel: 'warn', dataDir: 'state' }));
      const s = loadSettings({ file: f, env: { IOMT_HTTP_PORT: '2999', IOMT_ADMIN_USER: 'it-team' } });
      expect(s.http.port).toBe(2999);
      expect(s.logLevel).toBe('warn');
      expect(s.admin.user).toBe('it-team');
      expect(s.dataDir).toBe(join(t.dir, 'state')); // relative to the settings file
      expect(s.retention.maxAgeDays).toBe(30);
    } finally {
      t.cleanup();
    }
  });

  it('reports every problem at once with file, path and reason', () => {
    const t = tempDir();
    try {
      const f = join(t.dir, 'settings.json');
      writeFileSync(f, JSON.stringify({ http: { port: 99999 }, logLevel: 'loud', admin: { user: 'bad user!', password: 'short' } }));
      let err: unknown;
      try {
        loadSettings({ file: f, env: { IOMT_STORE_MAX_BYTES: 'lots' } });
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ConfigError);
      const paths = (err as ConfigError).problems.map((p) => p.path).sort();
      expect(paths).toEqual(['admin.password', 'admin.user', 'http.port', 'logLevel', 'store.maxDbBytes'].sort());
      expect((err as ConfigError).problems.find((p) => p.path === 'http.port')!.file).toBe(f);
      expect((err as ConfigError).problems.find((p) => p.path === 'store.maxDbBytes')!.file).toBe('env IOMT_STORE_MAX_BYTES');
    } finally {
      t.cleanup();
    }
  });
});

describe('${ENV} in node properties', () => {
  it('substitutes, applies defaults, and leaves unknown empty', () => {
    const env = { A: 'x', P: '2575' };
    expect(resolveEnvTemplate('${A}', env)).toBe('x');
    expect(resolveEnvTemplate('pre-${A}-post', env)).toBe('pre-x-post');
    expect(resolveEnvTemplate('${B:-dflt}', env)).toBe('dflt');
    expect(resolveEnvTemplate('${B}', env)).toBe('');
    expect(resolveNumber('${P}', 1, env)).toBe(2575);
    expect(resolveNumber('${Q}', 7, env)).toBe(7);
    expect(resolveNumber('abc', 7, env)).toBeNaN();
    expect(resolveBool('${T:-true}', false, env)).toBe(true);
  });
});

describe('flow check', () => {
  it('accepts the shipped relay flow and reports bad ports, dangling wires and duplicate ids', () => {
    const root = join(__dirname, '..', '..', '..');
    expect(checkFlowFile(join(root, 'flows', 'hl7-relay.json'), {})).toEqual([]);
    const t = tempDir();
    try {
      const f = join(t.dir, 'flows.json');
      writeFileSync(
        f,
        JSON.stringify([
          { id: 'a', type: 'iomt-hl7-in', port: '${IN}', deviceId: 'dev', wires: [['nope']] },
          { id: 'b', type: 'iomt-hl7-in', port: '2575', deviceId: 'dev', wires: [[]] },
          { id: 'c', type: 'iomt-hl7-out', port: '70000', wires: [] },
        ]),
      );
      const problems = checkFlowFile(f, { IN: 'not-a-port' });
      const reasons = problems.map((p) => `${p.path}: ${p.reason}`).join('\n');
      expect(reasons).toMatch(/port.*not-a-port/);
      expect(reasons).toMatch(/wired to a node that does not exist: 'nope'/);
      expect(reasons).toMatch(/same deviceId/);
      expect(reasons).toMatch(/iomt-hl7-out.*port/);
      expect(problems.every((p) => p.file === f)).toBe(true);
    } finally {
      t.cleanup();
    }
  });
});

describe('admin credentials', () => {
  it('generates a random password on first start, keeps only its bcrypt hash, writes the password 0600, and reuses the hash later', () => {
    const t = tempDir();
    try {
      const settings = loadSettings({ env: { IOMT_DATA_DIR: t.dir } });
      const first = resolveAdminCredentials(settings);
      expect(first.generatedPassword).toMatch(/^[A-Za-z0-9_-]{20,}$/);
      expect(bcrypt.compareSync(first.generatedPassword!, first.passwordHash)).toBe(true);
      const file = join(t.dir, 'admin-password.txt');
      expect(statSync(file).mode & 0o777).toBe(0o600);
      expect(readFileSync(join(t.dir, 'admin.json'), 'utf8')).not.toContain(first.generatedPassword!);
      const second = resolveAdminCredentials(settings);
      expect(second.generatedPassword).toBeUndefined();
      expect(second.passwordHash).toBe(first.passwordHash);
      // an explicit password wins and nothing is generated
      const t2 = tempDir();
      const s2 = loadSettings({ env: { IOMT_DATA_DIR: t2.dir, IOMT_ADMIN_PASSWORD: 'correct horse battery' } });
      const c = resolveAdminCredentials(s2);
      expect(c.generatedPassword).toBeUndefined();
      expect(bcrypt.compareSync('correct horse battery', c.passwordHash)).toBe(true);
      expect(existsSync(join(t2.dir, 'admin-password.txt'))).toBe(false);
      t2.cleanup();
    } finally {
      t.cleanup();
    }
  });
});
