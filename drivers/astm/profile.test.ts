import { readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ConfigError } from '../../gateway/src/contracts/errors';
import { tempDir } from '../../test/helpers/env';
import { checkProfileDir, loadProfiles, normalizeProfile, validateProfile } from './profile';

const dir = join(__dirname, '../../firmware-config/profiles/astm');

describe('profiles', () => {
  it('every shipped profile is valid', () => {
    expect(checkProfileDir(dir)).toEqual([]);
    const p = loadProfiles(dir);
    expect([...p.keys()].sort()).toEqual([
      'abbott-afinion',
      'abbott-architect',
      'arkray-spotchem',
      'beckman-access',
      'cepheid-genexpert',
      'generic-lis2-a2',
      'horiba-pentra',
      'mindray-bs',
      'roche-cobas-c311',
      'siemens-dca',
      'snibe-maglumi',
      'sysmex-xn',
    ]);
    expect(p.get('snibe-maglumi')!.link.noChecksum).toBe(true);
    // testId layout normalized, legacy fields kept for order templates
    expect(p.get('sysmex-xn')!.records.testIdComponent).toBe(5);
    expect(p.get('roche-cobas-c311')!.records).toMatchObject({ testIdComponent: 4, testIdSeparator: '/', testId: { codeComponent: 4, separator: '/' } });
    // issue 8 §4: the shipped generic profile reads UTF-8 and does not fold names
    expect(p.get('generic-lis2-a2')).toMatchObject({ encoding: 'utf8', asciiFold: false });
  });
  it('the analyzer families of issue 8 §6 are found by file name', () => {
    const files = readdirSync(dir);
    for (const part of ['architect', 'genexpert', 'pentra']) expect(files.some((f) => f.includes(part) && f.endsWith('.json'))).toBe(true);
  });
  it('defaults: UTF-8, no folding, Table 0203 id types, raw signals withheld, legacy test ID fields', () => {
    const p = normalizeProfile({ id: 'x', records: { testIdComponent: 5, testIdSeparator: '/' } });
    expect(p.encoding).toBe('utf8');
    expect(p.asciiFold).toBe(false);
    expect(p.fallbackEncoding).toBeUndefined();
    expect(p.records.patientIdTypes).toEqual({ practice: 'MR', laboratory: 'PI', third: 'PT' });
    expect(p.records.rawSignal).toEqual({ aspectValues: [], units: [], forward: false });
    expect(p.records.testId).toMatchObject({ codeComponent: 5, separator: '/', nameComponent: 2, qualifierSeparator: ':' });
    expect(p.records.valueComponents).toEqual([1]);
    expect(normalizeProfile({ id: 'y', records: { valueComponent: [1, 2] } }).records).toMatchObject({ valueComponent: 1, valueComponents: [1, 2] });
  });
  it('validates the result-fidelity options', () => {
    const problems = validateProfile(
      {
        id: 'x',
        encoding: 'cp1258',
        fallbackEncoding: 'vni', // not in iconv-lite: refused
        asciiFold: 'yes',
        records: {
          testId: { codeComponent: 0, qualifierComponents: { aspect: 'F', bogus: 1 }, primaryAspects: 'F' },
          testIdComponent: 4,
          valueComponent: [],
          rawSignal: { units: 'RLU' },
          patientIdTypes: { practice: 'practice' },
          defaultSpecimenType: 'whole blood',
        },
        specimenTypeMap: { WB: 'bld' },
      },
      'x.json',
    );
    expect(problems.map((p) => p.path).sort()).toEqual([
      'asciiFold',
      'encoding',
      'fallbackEncoding',
      'records.defaultSpecimenType',
      'records.patientIdTypes.practice',
      'records.rawSignal.forward',
      'records.rawSignal.units',
      'records.testId',
      'records.testId.codeComponent',
      'records.testId.primaryAspects',
      'records.testId.qualifierComponents.aspect',
      'records.testId.qualifierComponents.bogus',
      'records.valueComponent',
      'specimenTypeMap.WB',
    ]);
    expect(validateProfile({ id: 'ok', fallbackEncoding: 'windows-1258', asciiFold: true, records: { testId: { codeComponent: 4, qualifierComponents: { aspect: 11 } }, rawSignal: { forward: false } } }, 'ok.json')).toEqual([]);
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
