import { describe, expect, it } from 'vitest';
import { spawn, spawnSync } from 'node:child_process';
import { writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import { freePort, tempDir, waitFor } from '../helpers/env';
import { CLI, ROOT } from '../helpers/gateway-process';

const run = (args: string[], env: Record<string, string> = {}, input?: string) =>
  spawnSync(process.execPath, [CLI, ...args], { cwd: ROOT, env: { ...process.env, ...env }, input, encoding: 'utf8', timeout: 30_000 });

describe('iomt-gateway CLI', () => {
  it('check-config passes on the shipped flows and profiles', () => {
    const r = run(['check-config', '--flows', join(ROOT, 'flows', 'hl7-relay.json')]);
    expect(r.stderr).toBe('');
    expect(r.stdout).toContain('configuration OK');
    expect(r.status).toBe(0);
  });

  it('check-config reports every problem at once with file, path and reason, and fails', () => {
    const t = tempDir();
    try {
      const settings = join(t.dir, 'settings.json');
      writeFileSync(settings, JSON.stringify({ http: { port: -1 }, logLevel: 'chatty' }));
      const flows = join(t.dir, 'flows.json');
      writeFileSync(flows, JSON.stringify([{ id: 'x', type: 'iomt-hl7-in', port: 'eighty', wires: [['missing']] }]));
      const profiles = join(t.dir, 'profiles');
      require('node:fs').mkdirSync(join(profiles, 'astm'), { recursive: true });
      writeFileSync(join(profiles, 'astm', 'broken.json'), '{ not json');
      const r = run(['check-config', '--settings', settings, '--flows', flows, '--profiles', profiles]);
      expect(r.status).toBe(1);
      expect(r.stderr).toMatch(/settings\.json: http\.port: /);
      expect(r.stderr).toMatch(/settings\.json: logLevel: /);
      expect(r.stderr).toMatch(/flows\.json: .*port/);
      expect(r.stderr).toMatch(/wired to a node that does not exist/);
      expect(r.stderr).toMatch(/broken\.json/);
    } finally {
      t.cleanup();
    }
  });

  it('run refuses to start on bad settings and says why', () => {
    const r = run(['run'], { IOMT_HTTP_PORT: 'http', IOMT_DATA_DIR: '/tmp/never-created-iomt' });
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/IOMT_HTTP_PORT.*whole number/);
    expect(existsSync('/tmp/never-created-iomt')).toBe(false);
  });

  it('hash-password prints a bcrypt hash usable as IOMT_ADMIN_PASSWORD_HASH', () => {
    const r = run(['hash-password'], {}, 'a-long-secret\n');
    expect(r.status).toBe(0);
    expect(bcrypt.compareSync('a-long-secret', r.stdout.trim())).toBe(true);
  });

  it('demo: the gateway, a simulated analyzer and a simulated HIS, with data visibly flowing', async () => {
    const t = tempDir();
    const child = spawn(process.execPath, [CLI, 'demo'], {
      cwd: ROOT,
      env: { ...process.env, IOMT_DATA_DIR: t.dir, IOMT_HTTP_PORT: String(await freePort()), IOMT_HTTP_HOST: '127.0.0.1', HL7_IN_PORT: String(await freePort()), HIS_PORT: String(await freePort()), IOMT_LOG_LEVEL: 'warn' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let out = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (out += d));
    try {
      await waitFor(() => /HIS: [1-9]\d* received/.test(out), 30_000, 200);
      expect(out).toMatch(/editor:\s+http:\/\/127\.0\.0\.1:\d+\/editor\//);
      expect(out).toMatch(/admin password:\s+in .*admin-password\.txt/);
      expect(out).toMatch(/First start: generated admin password/);
    } finally {
      child.kill('SIGINT');
      await new Promise((r) => child.once('exit', r));
      t.cleanup();
    }
    expect(out).toMatch(/demo stopped: \d+ acknowledged, \d+ delivered/);
  });
});
