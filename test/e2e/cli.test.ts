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

  it.each([['run'], ['demo'], ['check-config'], ['fields'], ['hash-password'], ['user'], ['backup'], ['restore'], ['simulate']])('%s --help prints its help and exits 0', (cmd) => {
    const r = run([cmd, '--help']);
    expect(r.stderr).not.toMatch(/TypeError|at .*\.js:\d+/);
    expect(r.status).toBe(0);
    expect(r.stdout).toMatch(new RegExp(cmd === 'user' ? 'iomt-gateway user' : cmd === 'simulate' ? 'simulate' : `iomt-gateway ${cmd}`));
    expect(r.stdout).not.toMatch(/not available in this build/);
  });

  it('fields prints the reference of every node field from the spec', () => {
    const r = run(['fields']);
    expect(r.status).toBe(0);
    for (const t of ['iomt-hl7-in', 'iomt-hl7-out', 'iomt-astm-device']) expect(r.stdout).toContain(`### \`${t}\``);
    expect(r.stdout).toMatch(/\| `tcpPort` \| port \| {2}\| yes \| 1\.\.65535 \|/);
    expect(run(['fields', 'iomt-nope']).status).toBe(2);
  });

  it('--version prints the package version', () => {
    const pkg = JSON.parse(require('node:fs').readFileSync(join(ROOT, 'package.json'), 'utf8'));
    for (const flag of ['--version', '-V']) {
      const r = run([flag]);
      expect(r.status).toBe(0);
      expect(r.stdout.trim()).toBe(`iomt-gateway ${pkg.version}`);
    }
  });

  it('an unknown option is a usage error with the command help, not a crash', () => {
    const r = run(['check-config', '--flow', 'x.json']);
    expect(r.status).toBe(2);
    expect(r.stderr).toMatch(/Unknown option '--flow'/);
    expect(r.stderr).toMatch(/iomt-gateway check-config \[--flows FILE\]/);
  });

  it('check-config and run refuse a broken flow with every problem (file, path, reason); run starts nothing', () => {
    const t = tempDir();
    try {
      const flows = join(t.dir, 'bad-flows.json');
      writeFileSync(
        flows,
        JSON.stringify([
          { id: 'a1', type: 'iomt-astm-device', name: 'A1', deviceId: 'a1', profile: 'no-such-profile', transport: 'tcp-server', tcpPort: '99999', wires: [['o']] },
          { id: 'a2', type: 'iomt-astm-devise', wires: [] },
          { id: 'h1', type: 'iomt-hl7-in', deviceId: 'h1', port: '2575', wires: [['o']] },
          { id: 'h2', type: 'iomt-hl7-in', deviceId: 'h2', port: '${P:-2575}', tls: '${T:-true}', tlsCert: '/nonexistent/x.crt', tlsKey: '/nonexistent/x.key', wires: [['o']] },
          { id: 'o', type: 'iomt-hl7-out', host: '', port: '2576', wires: [] },
        ]),
      );
      const want = [
        /bad-flows\.json: \[0\] iomt-astm-device 'A1'\.profile: unknown profile 'no-such-profile'/,
        /\[0\] iomt-astm-device 'A1'\.tcpPort: '99999' is not a port number/,
        /\[1\] iomt-astm-devise\.type: unknown node type/,
        /\[3\] iomt-hl7-in\.port: port 2575 is already listened on by \[2\] iomt-hl7-in/,
        /\[3\] iomt-hl7-in\.tlsCert: file not found: \/nonexistent\/x\.crt/,
        /\[4\] iomt-hl7-out\.host: required, but empty/,
      ];
      const cc = run(['check-config', '--flows', flows]);
      expect(cc.status).toBe(1);
      for (const w of want) expect(cc.stderr).toMatch(w);
      const dataDir = join(t.dir, 'data');
      const r = run(['run', '--flows', flows], { IOMT_DATA_DIR: dataDir, IOMT_HTTP_PORT: '0' });
      expect(r.status).toBe(2);
      for (const w of want) expect(r.stderr).toMatch(w);
      expect(r.stderr).toMatch(/not started/);
      expect(existsSync(dataDir)).toBe(false);
    } finally {
      t.cleanup();
    }
  });

  it('user, backup and restore are wired (their own usage errors, not "unknown command")', () => {
    for (const cmd of ['user', 'backup', 'restore']) {
      const r = run([cmd]);
      expect(r.stderr + r.stdout).not.toMatch(/unknown command|not available in this build/);
      expect(r.status).not.toBe(0);
    }
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
