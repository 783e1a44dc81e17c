/**
 * flows/lab-fhir.json passes check-config (issue 13 §6): HL7 in on ${HL7_IN_PORT:-2575}, ASTM TCP on
 * ${ASTM_TCP_PORT:-5000}, both to one `iomt-fhir-out` with OAuth2 from the environment. No secret is in
 * the flow file: only the NAME of the variable that holds it. The fhir-out spec is passed explicitly
 * until it is listed in gateway/src/config/node-specs.ts (NODE_SPECS).
 */
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { checkFlowFile } from '../../gateway/src/config/flow-check';
import { NODE_SPECS } from '../../gateway/src/config/node-specs';
import { FHIR_OUT_SPEC } from '../../gateway/src/outputs/fhir-http/node-red/iomt-fhir-out.spec';
import { fhirOutSettings } from '../../gateway/src/outputs/fhir-http/node-options';

const FILE = join(__dirname, '../../flows/lab-fhir.json');
const specs = [...NODE_SPECS, ...[FHIR_OUT_SPEC].filter((s) => !NODE_SPECS.some((n) => n.type === s.type))];
const SITE = { FHIR_BASE_URL: 'https://emr.benhvien.vn/fhir', FHIR_TOKEN_URL: 'https://auth.benhvien.vn/oauth2/token', FHIR_CLIENT_ID: 'iomt-gw', FHIR_CLIENT_SECRET: 'not-in-the-flow-7f3a', HL7_MACHINE_CODE: 'XN-HH-01', ASTM_MACHINE_CODE: 'SH-02' };

describe('flows/lab-fhir.json', () => {
  const nodes = JSON.parse(readFileSync(FILE, 'utf8')) as Array<Record<string, any>>;

  it('passes with a typical site environment', () => {
    expect(checkFlowFile(FILE, { env: SITE, specs })).toEqual([]);
  });

  it.each([
    [{ ...SITE, FHIR_BASE_URL: '' }, /iomt-fhir-out.*baseUrl/],
    [{ ...SITE, FHIR_TOKEN_URL: 'not a url' }, /iomt-fhir-out.*tokenUrl/],
    [{ ...SITE, FHIR_AUTH_TYPE: 'password' }, /iomt-fhir-out.*authType/],
    [{ ...SITE, HL7_MACHINE_CODE: 'A|B' }, /iomt-hl7-in.*machineCode/],
    [{ ...SITE, ASTM_TCP_PORT: '2575' }, /already listened on/],
  ])('catches %j', (env, reason) => {
    expect(checkFlowFile(FILE, { env, specs }).map((p) => `${p.path}: ${p.reason}`).join('\n')).toMatch(reason);
  });

  it('HL7 and ASTM feed the FHIR node; defaults as the issue says; secrets only by variable name', () => {
    const byId = new Map(nodes.map((n) => [n.id as string, n]));
    expect(byId.get('hl7-in-lab-fhir')).toMatchObject({ port: '${HL7_IN_PORT:-2575}', wires: [['fhir-out-emr']] });
    expect(byId.get('astm-tcp-lab-fhir')).toMatchObject({ tcpPort: '${ASTM_TCP_PORT:-5000}', transport: 'tcp-server', wires: [['fhir-out-emr']] });
    const out = byId.get('fhir-out-emr')!;
    expect(out).toMatchObject({ baseUrl: '${FHIR_BASE_URL}', tokenUrl: '${FHIR_TOKEN_URL}', clientId: '${FHIR_CLIENT_ID}', clientSecretEnv: 'FHIR_CLIENT_SECRET', privateKeyFile: '${FHIR_PRIVATE_KEY_FILE:-}', keyId: '${FHIR_KEY_ID:-}' });
    const text = readFileSync(FILE, 'utf8');
    expect(text).not.toContain(SITE.FHIR_CLIENT_SECRET);
    expect(text).not.toMatch(/"clientSecret"\s*:/);
    // resolved with the site environment: client_secret_basic with the secret read from FHIR_CLIENT_SECRET
    const s = fhirOutSettings(out as never, SITE);
    expect(s.options).toMatchObject({ destination: 'emr-fhir', baseUrl: SITE.FHIR_BASE_URL, profileSet: 'vn-core', auth: { type: 'client-credentials', clientId: 'iomt-gw', clientSecret: SITE.FHIR_CLIENT_SECRET, alg: 'RS384' } });
  });
});
