/**
 * Issue 13 review (session 8, brief B-fhir), as a new site would run it: the BUILT gateway with
 * flows/lab-fhir.json, OAuth2 client credentials from oidc-provider, Medplum as the EMR; the golden HL7
 * inputs over MLLP and an ASTM session from `iomt-gateway simulate astm`. Then: every resource valid R4,
 * nothing dead-lettered, times kept, MA_MAY on the Devices, no secret and no PHI in the info log, the
 * BHYT export as CSV/XML through the API. Needs `npm run build`.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import net from 'node:net';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { freePort, tempDir, waitFor } from '../helpers/env';
import { startFhirServer, type FhirTestServer } from '../helpers/fhir-server';
import { startOAuthServer, type OAuthTestServer } from '../helpers/oauth-server';
import { ADMIN_PASSWORD, CLI, ROOT, startGatewayProcess, type GatewayProcess } from '../helpers/gateway-process';

const run = promisify(execFile);
const CASES = join(ROOT, 'test/golden/cases');
const HL7_CASES = ['hl7-vietnamese-utf8', 'hl7-09-nm-comparator', 'hl7-result-statuses', 'hl7-data-types', 'hl7-no-patient-id-units'].filter((c) => existsSync(join(CASES, c, 'input.hl7')));

function mllpSend(port: number, msg: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1', () => s.write(Buffer.concat([Buffer.from([0x0b]), Buffer.from(msg, 'utf8'), Buffer.from([0x1c, 0x0d])])));
    let got = '';
    s.on('data', (d) => {
      got += d.toString('utf8');
      if (got.includes('\x1c\r')) {
        s.end();
        resolve(got);
      }
    });
    s.on('error', reject);
    s.setTimeout(15_000, () => s.destroy(new Error('no ACK')));
  });
}

describe.skipIf(!existsSync(CLI) && !process.env.CI)('built gateway + flows/lab-fhir.json → Medplum (review)', () => {
  let fhir: FhirTestServer;
  let oauth: OAuthTestServer;
  let gw: GatewayProcess;
  let astmPort: number;
  const tmp = tempDir('iomt-fhir-review-');
  beforeAll(async () => {
    fhir = await startFhirServer();
    oauth = await startOAuthServer();
    fhir.requireToken = (t) => oauth.check(t);
    astmPort = await freePort();
    gw = await startGatewayProcess({
      dataDir: tmp.dir,
      flows: join(ROOT, 'flows/lab-fhir.json'),
      env: {
        IOMT_LOG_LEVEL: 'info',
        FHIR_BASE_URL: fhir.url,
        FHIR_TOKEN_URL: oauth.tokenUrl,
        FHIR_CLIENT_ID: oauth.basic.clientId,
        FHIR_CLIENT_SECRET: oauth.basic.clientSecret,
        HL7_MACHINE_CODE: 'XN-HH-01',
        ASTM_MACHINE_CODE: 'SH-02',
        ASTM_TCP_HOST: '127.0.0.1',
        ASTM_TCP_PORT: String(astmPort),
      },
    });
  }, 60_000);
  afterAll(async () => {
    await gw?.kill();
    await fhir?.close();
    await oauth?.close();
    tmp.cleanup();
  });

  it('golden HL7 and a simulated ASTM session: valid resources, nothing dead, times and MA_MAY kept, no secret or PHI in the log', async () => {
    for (const c of HL7_CASES) {
      const ack = await mllpSend(gw.hl7Port, readFileSync(join(CASES, c, 'input.hl7'), 'utf8').replace(/\r?\n/g, '\r'));
      expect(ack, c).toMatch(/MSA\|A[AE]/);
    }
    await run(process.execPath, [CLI, 'simulate', 'astm', '--tcp', `127.0.0.1:${astmPort}`, '--tests', '3', '--timeout-ms', '15000'], { cwd: ROOT, timeout: 30_000 });
    const tx = () => fhir.received.filter((r) => r.method === 'POST' && r.body?.resourceType === 'Bundle' && r.status === 200);
    await waitFor(() => tx().length >= HL7_CASES.length + 1 || undefined, 30_000);
    expect(fhir.invalid).toEqual([]);
    expect((await gw.api('/dead-letters')).deadLetters).toEqual([]);
    const dest = (await gw.api('/destinations')) as any;
    expect(JSON.stringify(dest)).toContain('emr-fhir');
    expect(JSON.stringify(dest)).not.toContain(oauth.basic.clientSecret === 'secret' ? '"secret"' : oauth.basic.clientSecret);
    const obs = await fhir.search('Observation', { _count: '1000' });
    expect(obs.length).toBeGreaterThan(5);
    // every result has its time (lab analysers send OBX-14 without an offset)
    expect(obs.filter((o: any) => !o.effectiveDateTime).map((o: any) => o.code?.coding?.[0]?.code)).toEqual([]);
    const devices = await fhir.search('Device', {});
    const codes = devices.flatMap((d: any) => d.identifier.filter((i: any) => i.type?.text === 'MA_MAY').map((i: any) => i.value));
    expect(new Set(codes)).toEqual(new Set(['XN-HH-01', 'SH-02']));
    const names = (await fhir.search('Patient', {})).flatMap((p: any) => (p.name ?? []).map((n: any) => n.text));
    expect(names.some((n: string) => /[ăâđêôơưạảấầẩẫậắằẳẵặẹẻẽếềểễệỉịọỏốồổỗộớờởỡợụủứừửữựỳỵỷỹ]/i.test(n))).toBe(true);
    const log = gw.output();
    expect(log).not.toContain(oauth.basic.clientSecret === 'secret' ? '"secret"' : oauth.basic.clientSecret);
    for (const n of names) expect(log).not.toContain(n);
  }, 90_000);

  it('BHYT export through the API: CSV with BOM and Vietnamese, XML4 that parses, MA_MAY on every row', async () => {
    const auth = 'Basic ' + Buffer.from(`admin:${ADMIN_PASSWORD}`).toString('base64');
    const from = new Date(Date.now() - 3600_000).toISOString();
    const to = new Date(Date.now() + 3600_000).toISOString();
    const get = (fmt: string) => fetch(`http://127.0.0.1:${gw.httpPort}/api/v1/exports/bhyt?from=${from}&to=${to}&format=${fmt}`, { headers: { authorization: auth } });
    const j = await (await get('json')).json();
    expect(j.count).toBeGreaterThan(0);
    for (const r of j.rows) expect(['XN-HH-01', 'SH-02']).toContain(r.MA_MAY);
    for (const r of j.rows) expect(r.NGAY_KQ, JSON.stringify(r)).toMatch(/^\d{12}$/);
    const csv = Buffer.from(await (await get('csv')).arrayBuffer());
    expect([...csv.subarray(0, 3)]).toEqual([0xef, 0xbb, 0xbf]);
    const xml = await (await get('xml')).text();
    const py = 'import sys, xml.etree.ElementTree as ET\nr = ET.fromstring(sys.stdin.buffer.read())\nprint(r.tag, len(r.findall("./DSACH_CHI_TIET_CLS/CHI_TIET_CLS")))';
    const out = await new Promise<string>((resolve, reject) => {
      const p = execFile('python3', ['-c', py], (e, so) => (e ? reject(e) : resolve(so)));
      p.stdin!.end(xml);
    });
    expect(out.trim()).toBe(`CHITIEU_CHITIET_DICHVUCANLAMSANG ${j.count}`);
  }, 30_000);
});

