import { describe, expect, it } from 'vitest';
import { validateNode } from '../../../config/field-spec';
import { dicomOutSettings } from './dicom-out-settings';
import { DICOM_OUT_SPEC } from './iomt-dicom-out.spec';

const base = { id: 'n1', destination: '${PACS_DEST:-pacs}', host: '${PACS_HOST}', port: '${PACS_PORT}', calledAet: '${PACS_AET}', callingAet: '${DICOM_AET:-IOMT_GW}' };
const env = { PACS_HOST: '10.0.0.5', PACS_PORT: '11112', PACS_AET: 'PACS_MAIN' };

describe('iomt-dicom-out settings', () => {
  it('resolves the shipped templates with a site environment', () => {
    const s = dicomOutSettings(base, '/var/lib/iomt', env);
    expect(s).toMatchObject({ options: { destination: 'pacs', host: '10.0.0.5', port: 11112, calledAeTitle: 'PACS_MAIN', callingAeTitle: 'IOMT_GW', dataDir: '/var/lib/iomt', dimseTimeoutMs: 60_000, lingerMs: 5000 }, policy: { maxAttempts: 10, maxAgeMs: 168 * 3600_000 }, reconnectMaxMs: 30_000 });
  });

  it.each([
    [{ ...env, PACS_AET: '' }, /calledAeTitle/],
    [{ ...env, PACS_AET: 'THIS_AE_IS_TOO_LONG' }, /calledAeTitle/],
    [{ ...env, PACS_AET: 'BAD\\AE' }, /calledAeTitle/],
    [{ ...env, PACS_PORT: '70000' }, /port/],
    [{ ...env, DICOM_AET: 'CALLING_AE_TOO_LONG' }, /callingAeTitle/],
  ])('reports %j', (e, re) => {
    const s = dicomOutSettings(base, '/d', e);
    expect('problem' in s && s.problem).toMatch(re);
  });

  it('the field spec catches a bad AE title and a missing host before start', () => {
    const spec = DICOM_OUT_SPEC;
    const probs = (cfg: object, e: NodeJS.ProcessEnv) => validateNode(spec, cfg as Record<string, unknown>, 'flow.json', 'n1', { env: e }).map((p) => `${p.path}: ${p.reason}`).join('\n');
    expect(probs(base, env)).toBe('');
    expect(probs(base, { ...env, PACS_AET: 'A\\B' })).toMatch(/calledAet/);
    expect(probs(base, { ...env, PACS_HOST: '' })).toMatch(/host/);
  });
});
