import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable } from 'node:stream';
import { loadSettings } from '../config/settings';
import { openAccounts } from './accounts';
import { runUserCommand } from './cli-commands';

describe('iomt-gateway user ... (runUserCommand on a real data dir)', () => {
  let dir: string;
  let out: string;
  let err: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'user-cli-'));
    out = '';
    err = '';
  });
  afterEach(() => rmSync(dir, { recursive: true, force: true }));

  const env = () => ({ IOMT_DATA_DIR: dir, IOMT_ADMIN_PASSWORD: 'the admin password' });
  const run = (argv: string[], stdin?: string) =>
    runUserCommand(argv, { env: env(), stdin: stdin === undefined ? undefined : Readable.from([stdin]), out: (s) => (out += s), err: (s) => (err += s) });
  const verify = async (user: string, pw: string) => {
    const a = openAccounts(loadSettings({ env: env(), cwd: dir }), { pruneIntervalMs: 0 });
    try {
      return await a.users.verifyUser(user, pw);
    } finally {
      a.close();
    }
  };

  it('add with a password from stdin, passwd with a generated one, role, list, remove; all audited', async () => {
    expect(await run(['add', 'tech1', '--role', 'operator', '--password-stdin'], 'lab password 1\nignored\n')).toBe(0);
    expect(out).toContain("user 'tech1' added with role operator");
    expect(out).not.toContain('lab password 1');
    expect(await verify('tech1', 'lab password 1')).toEqual({ user: 'tech1', role: 'operator' });

    out = '';
    expect(await run(['passwd', 'tech1'])).toBe(0);
    const generated = /password \(shown once\): (\S+)/.exec(out)?.[1];
    expect(generated).toHaveLength(24);
    expect(await verify('tech1', generated!)).toBeDefined();
    expect(await verify('tech1', 'lab password 1')).toBeUndefined();

    expect(await run(['role', 'tech1', 'viewer'])).toBe(0);
    out = '';
    expect(await run(['list'])).toBe(0);
    expect(out).toMatch(/^admin\s+admin\s/m);
    expect(out).toMatch(/^tech1\s+viewer\s/m);

    expect(await run(['remove', 'tech1'])).toBe(0);
    expect(await verify('tech1', generated!)).toBeUndefined();

    const a = openAccounts(loadSettings({ env: env(), cwd: dir }), { pruneIntervalMs: 0 });
    try {
      const actions = a.audit.list(20).reverse().map((r) => `${r.action}:${r.target ?? ''}:${r.source}`);
      expect(actions).toEqual(['user.add:admin:startup', 'user.add:tech1:cli', 'user.passwd:tech1:cli', 'user.role:tech1:cli', 'user.remove:tech1:cli']);
      expect(a.audit.verify().ok).toBe(true);
    } finally {
      a.close();
    }
  });

  const refused: Array<[string, string[], string | undefined, number, RegExp]> = [
    ['a password on the command line', ['add', 'tech2', 'secret-on-argv'], undefined, 2, /never from the command line/],
    ['an unknown command', ['frobnicate'], undefined, 2, /unknown user command/],
    ['an unknown option', ['add', 'x', '--password', 'p'], undefined, 2, /Unknown option/],
    ['a short password on stdin', ['add', 'tech2', '--password-stdin'], 'short\n', 1, /at least 8/],
    ['an unknown role', ['add', 'tech2', '--role', 'root'], undefined, 1, /role must be one of/],
    ['removing the last admin', ['remove', 'admin'], undefined, 1, /last admin/],
    ['passwd of an unknown user', ['passwd', 'ghost'], undefined, 1, /no user 'ghost'/],
  ];
  it.each(refused)('refuses %s', async (_n, argv, stdin, code, msg) => {
    expect(await run(argv, stdin)).toBe(code);
    expect(err).toMatch(msg);
  });

  it('--help prints the usage and exits 0', async () => {
    expect(await run(['--help'])).toBe(0);
    expect(out).toContain('Usage: iomt-gateway user');
  });
});
