import { describe, expect, it } from 'vitest';
import { Writable } from 'node:stream';
import { createRootLogger } from './logger';

function capture(level: Parameters<typeof createRootLogger>[0]) {
  const lines: string[] = [];
  const dest = new Writable({ write: (c, _e, cb) => (lines.push(String(c)), cb()) });
  return { log: createRootLogger(level, dest as never), lines };
}

describe('PHI redaction (one place: log/logger.ts)', () => {
  it('censors patient ids, names, subjects and raw payloads at info', () => {
    const { log, lines } = capture('info');
    log.child({ component: 't' }).info({ patientId: '079085001234', patientName: 'NGUYEN^VAN AN', raw: 'MSH|...PID|1||079085001234', subject: { specimenId: 'S1' }, deviceId: 'dev1' }, 'msg');
    const out = lines.join('');
    expect(out).not.toContain('079085001234');
    expect(out).not.toContain('NGUYEN');
    expect(out).not.toContain('S1');
    expect(out).toContain('[PHI]');
    expect(out).toContain('dev1'); // not PHI
  });

  it('keeps them at debug, for an engineer on a box they own', () => {
    const { log, lines } = capture('debug');
    log.debug({ patientId: '079085001234' }, 'msg');
    expect(lines.join('')).toContain('079085001234');
  });
});
