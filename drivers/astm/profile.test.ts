import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../gateway/src/contracts/errors';
import { tempDir } from '../../test/helpers/env';
import { checkProfileDir, loadProfiles, validateProfile } from './profile';

const dir = join(__dirname, '../../firmware-config/profiles/astm');

describe('profiles', () => {
  it('every shipped profile is valid', () => {
    expect(checkProfileDir(dir)).toEqual([]);
    const p = loadProfiles(dir);
    expect([...p.keys()].sort()).toEqual(['beckman-access', 'generic-lis2-a2', 'mindray-bs', 'roche-cobas-c311', 'snibe-maglumi', 'sysmex-xn']);
    expect(p.get('snibe-maglumi')!.link.noChecksum).toBe(true);
    expect(p.get('sysmex-xn')!.records.testIdComponent).toBe(5);
  });
  it('reports every problem with file, path and reason', () => {
    const problems = validateProfile({ id: 'Bad Id', link: { noChecksum: 'yes', busyRetryMs: 500, bogus: 1 }, serial: { parity: 'mark' }, codeMap: { GLU: { system: 'http://loinc.org' } }, extra: 1 }, 'x.json');
    const paths = problems.map((p) => p.path).sort();
    expect(paths).toEqual(['codeMap.GLU.code', 'extra', 'id', 'link.bogus', 'link.busyRetryMs', 'link.noChecksum', 'serial.parity']);
    expect(problems.every((p) => p.file === 'x.json' && p.reason)).toBe(true);
  });
  it('loadProfiles throws one ConfigError listing all problems (invalid JSON, duplicates)', () => {
    const t = tempDir();
    try {
      writeFileSync(join(t.dir, 'a.json'), JSON.stringify({ id: 'same' }));
      writeFileSync(join(t.dir, 'b.json'), JSON.stringify({ id: 'same' }));
      writeFileSync(join(t.dir, 'c.json'), '{ nope');
      let err: unknown;
      try {
        loadProfiles(t.dir);
      } catch (e) {
        err = e;
      }
      expect(err).toBeInstanceOf(ConfigError);
      expect((err as ConfigError).problems.map((p) => p.reason)).toEqual([expect.stringContaining('duplicate profile id'), expect.stringContaining('invalid JSON')]);
    } finally {
      t.cleanup();
    }
  });
});
