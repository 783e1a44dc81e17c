import { afterEach, describe, expect, it } from 'vitest';
import { existsSync, mkdtempSync, readdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { fileURLToPath } from 'node:url';
import { join } from 'node:path';
import pino, { type Logger } from 'pino';
import { createRootLogger, reopenLogFile } from './logger';

/** Wait until pino's async file stream has written everything (SonicBoom flush). */
function flush(log: Logger): Promise<void> {
  return new Promise((resolve, reject) => log.flush((err) => (err ? reject(err) : resolve())));
}

async function waitFor(cond: () => boolean, ms = 3000): Promise<void> {
  const end = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > end) throw new Error('timed out');
    await new Promise((r) => setTimeout(r, 20));
  }
}

const dirs: string[] = [];
afterEach(() => {
  createRootLogger('silent', undefined, {});
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe('IOMT_LOG_FILE: JSON lines to a file, reopened on SIGHUP (logrotate)', () => {
  it('writes to the file, and after rename + reopen the next line goes to a new file at the same path', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'iomt-log-'));
    dirs.push(dir);
    const file = join(dir, 'sub', 'gateway.log'); // parent created (mkdir: true)
    const log = createRootLogger('info', undefined, { IOMT_LOG_FILE: file });
    log.child({ component: 't' }).info({ patientId: '079085001234' }, 'first line');
    await flush(log);
    await waitFor(() => existsSync(file) && readFileSync(file, 'utf8').includes('first line'));
    const first = JSON.parse(readFileSync(file, 'utf8').trim());
    expect(first).toMatchObject({ level: 'info', component: 't', msg: 'first line', patientId: '[PHI]' });

    renameSync(file, `${file}.1`); // what logrotate does before sending HUP
    reopenLogFile(); // the SIGHUP handler, called directly (no signal to the test worker)
    log.info('second line');
    await flush(log);
    await waitFor(() => existsSync(file) && readFileSync(file, 'utf8').includes('second line'));

    const rotated = readFileSync(`${file}.1`, 'utf8');
    const current = readFileSync(file, 'utf8');
    expect(rotated).toContain('first line');
    expect(rotated).not.toContain('second line');
    expect(current).toContain('second line');
    expect(current).not.toContain('first line');
    expect(current.trim().split('\n')).toHaveLength(1);
  });

  it('without IOMT_LOG_FILE writes to stdout and no file', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'iomt-log-'));
    dirs.push(dir);
    const file = join(dir, 'gateway.log');
    const withFile = createRootLogger('info', undefined, { IOMT_LOG_FILE: file });
    withFile.info('while set');
    await flush(withFile);
    await waitFor(() => existsSync(file) && readFileSync(file, 'utf8').includes('while set'));

    const log = createRootLogger('warn', undefined, {});
    const stream = (log as unknown as Record<symbol, { fd?: number }>)[pino.symbols.streamSym];
    expect(stream.fd).toBe(1); // stdout
    log.warn('after unset');
    await flush(log);
    expect(readFileSync(file, 'utf8')).not.toContain('after unset');
    expect(readdirSync(dir)).toEqual(['gateway.log']);
  });
});

describe('packaging/logrotate/iomt-gateway', () => {
  const conf = readFileSync(fileURLToPath(new URL('../../../packaging/logrotate/iomt-gateway', import.meta.url)), 'utf8');
  const lines = conf.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'));
  it.each(['daily', 'rotate 14', 'compress', 'missingok', 'nocreate', 'sharedscripts', 'postrotate', 'endscript'])('has %s', (directive) => {
    expect(lines).toContain(directive);
  });
  it('rotates the documented path and sends HUP to the service (which reopens IOMT_LOG_FILE)', () => {
    expect(lines[0]).toBe('/var/log/iomt-gateway/*.log {');
    expect(lines).toContain('systemctl kill -s HUP --kill-whom=main iomt-gateway.service >/dev/null 2>&1 || true');
    expect(lines.at(-1)).toBe('}');
  });
});
