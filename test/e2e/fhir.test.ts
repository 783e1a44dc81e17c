/**
 * FHIR R4 output against real peers (issue 13 §5): Medplum's FHIR router (in memory, behind HTTP;
 * every resource also checked with validateResource) and oidc-provider (client credentials with
 * client_secret_basic and private_key_jwt). Results come from the real HL7 and ASTM parsers, are
 * committed through the device-settings sink (machine code, identifier checks) into a real SQLite
 * store, queued in the durable outbox and delivered by the outbox worker.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { decodeJwt } from 'jose';
import { tempDir, waitFor } from '../helpers/env';
import { startFhirServer, type FhirTestServer } from '../helpers/fhir-server';
import { startOAuthServer, type OAuthTestServer } from '../helpers/oauth-server';
import { join } from 'node:path';
import { DB_FILE, GatewayStore } from '../../gateway/src/store/gateway-store';
import { OutboxWorker } from '../../gateway/src/pipeline/outbox-worker';
import { FhirHttpOutput } from '../../gateway/src/outputs/fhir-http';
import type { FhirHttpOutputOptions } from '../../gateway/src/outputs/fhir-http';
import { withDeviceSettings } from '../../gateway/src/identifiers/device-sink';
import { parseHl7 } from '../../drivers/hl7-mllp/hl7-message';
import { parseOru } from '../../drivers/hl7-mllp/oru-parser';
import { parseRecords } from '../../drivers/astm/records';
import { parseAstmMessage } from '../../drivers/astm/results-parser';
import { defaultProfile } from '../../drivers/astm/profile';
import { createRootLogger } from '../../gateway/src/log/logger';
import type { CommitResult } from '../../gateway/src/contracts/driver';
import type { OutboxEntry } from '../../gateway/src/contracts/output';

const OBS_SYS = 'urn:iomt-gateway:observation';

// CCCD 079185000123: province 079, G=1 (female, 19xx), 85: the patient is male → flagged, kept
const ORU = [
  'MSH|^~\\&|XN1000|LAB|GW|BV|20250301093100+0700||ORU^R01|HL7-0001|P|2.5.1|||||VNM|UNICODE UTF-8',
  'PID|1||BN0001^^^BV^MR~079185000123^^^BCA^CCCD~DN4797912345678^^^BHXH^BHYT||Nguyễn^An^Văn||19850312|M',
  'OBR|1|ORD-77|S-1001|CBC^Công thức máu^L|||20250301080000+0700|||||||||||||||||HM|F',
  'OBX|1|NM|HGB^Huyết sắc tố^L||11.6|g/dL|13.0-17.0|L|||F|||20250301092900+0700||||XN1000^Sysmex',
  'OBX|2|NM|CRP^CRP^L||<0.5|mg/L|0-5|N|||F|||20250301092900+0700',
  'OBX|3|SN|WBCR^Bạch cầu niệu^L||^2^-^5|/[HPF]||A|||F|||20250301092900+0700',
  'OBX|4|SN|ANA^ANA titer^L||^1^:^40|||H|||F|||20250301092900+0700',
  'OBX|5|CWE|BLT^Nhóm máu^L||O^Nhóm O^L||||||F|||20250301092900+0700',
  'OBX|6|ST|CMT^Ghi chú^L||Mẫu bị đông, đề nghị lấy lại||||||F|||20250301092900+0700',
].join('\r');

const ASTM = [
  'H|\\^&|||HEMA2^1.0|||||||P|LIS2-A2|20250301093000',
  'P|1|BN0002|||Trần^Thị Ánh||19900101|F',
  'O|1|S21-001||^^^HGB|R|20250301080000',
  'R|1|^^^HGB|11.6|g/dL|12.0 to 16.0|L||F||||20250301092900',
  'R|2|^^^PLT|>1000|10*3/uL|150 to 400|H||F||||20250301092900',
  'L|1|N',
];

function oruDrafts(text: string) {
  return parseOru(parseHl7(text)).drafts;
}

describe('FHIR R4 output → Medplum FHIR router, OAuth2 from oidc-provider', () => {
  let fhir: FhirTestServer;
  let oauth: OAuthTestServer;
  let store: GatewayStore;
  const tmp = tempDir('iomt-fhir-');
  const workers: OutboxWorker[] = [];

  beforeAll(async () => {
    createRootLogger('silent');
    [fhir, oauth] = await Promise.all([startFhirServer(), startOAuthServer()]);
    fhir.requireToken = (t) => oauth.check(t);
    store = GatewayStore.open({ dataDir: tmp.dir });
  });
  afterEach(async () => {
    for (const w of workers.splice(0)) await w.stop();
    fhir.intercept = undefined;
    fhir.reject = undefined;
  });
  afterAll(async () => {
    await store?.close();
    await Promise.all([fhir?.close(), oauth?.close()]);
    tmp.cleanup();
  });

  const sinkFor = (deviceId: string, machineCode: string) => withDeviceSettings(store, deviceId, { machineCode, model: 'XN-1000', serial: 'SN-42' });

  function output(destination: string, auth: 'basic' | 'jwt', extra: Partial<FhirHttpOutputOptions> = {}) {
    const a: FhirHttpOutputOptions['auth'] =
      auth === 'basic'
        ? { type: 'client-credentials', tokenUrl: oauth.tokenUrl, clientId: oauth.basic.clientId, clientSecret: oauth.basic.clientSecret, scope: 'system/Observation.c system/Patient.c' }
        : { type: 'client-credentials', tokenUrl: oauth.tokenUrl, clientId: oauth.jwt.clientId, privateKeyPem: oauth.jwt.privateKeyPem, keyId: oauth.jwt.keyId, alg: 'RS384' };
    return new FhirHttpOutput({ destination, baseUrl: fhir.url, auth: a, profileSet: 'vn-core', requestTimeoutMs: 5000, ...extra }, { storeFile: join(tmp.dir, DB_FILE) });
  }

  async function queue(out: FhirHttpOutput, r: CommitResult) {
    const p = out.prepare(r.observations, r.messageUid);
    await store.appendOutbox(out.destination, [{ key: r.messageUid, messageId: r.messageId, payload: p.payload, contentType: p.contentType }]);
  }

  function run(out: FhirHttpOutput) {
    const w = new OutboxWorker(store, out, { idlePollMs: 50, unavailableBackoffMs: { base: 50, max: 200 } });
    workers.push(w);
    w.start();
    return w;
  }

  const delivered = (dest: string, n: number) =>
    waitFor(() => {
      const dead = store.deadLetters(dest);
      if (dead.length) throw new Error(`dead letter: ${dead[0].lastError}`);
      return (store.destinationStats(dest)[0]?.delivered ?? 0) >= n;
    }, 20_000);
  const byObsId = async (id: string) => (await fhir.search('Observation', { identifier: `${OBS_SYS}|${id}` }))[0];

  it('HL7 and ASTM lab results arrive as valid resources: identifiers, machine code, Vietnamese names, comparators, flags', async () => {
    const hl7 = await sinkFor('xn1000', 'XN-HH-01').submit({ deviceId: 'xn1000', driver: 'hl7-mllp', raw: Buffer.from(ORU), drafts: oruDrafts(ORU) });
    const astmMsg = parseRecords(ASTM);
    const astm = await sinkFor('hema2', 'HH-02').submit({ deviceId: 'hema2', driver: 'astm', raw: Buffer.from(ASTM.join('\r')), drafts: parseAstmMessage(astmMsg, defaultProfile()).drafts });
    const out = output('emr', 'basic');
    await queue(out, hl7);
    await queue(out, astm);
    run(out);
    await delivered('emr', 2);

    expect(fhir.invalid).toEqual([]);
    expect(oauth.requests.filter((r) => r.clientId === 'gw-basic' && r.ok).length).toBeGreaterThanOrEqual(1);
    expect(out.tokens.tokensFetched).toBe(1); // cached for the second Bundle
    // every result is there, once
    for (const o of [...hl7.observations, ...astm.observations]) expect(await byObsId(o.id), o.id).toBeDefined();
    expect((await fhir.search('Observation')).length).toBe(hl7.observations.length + astm.observations.length);

    // Patient: typed identifiers (MR, NI, SB), Vietnamese name intact, VN Core profile
    const [pat] = await fhir.search('Patient', { identifier: 'urn:iomt-gateway:vn:mrn|BN0001' });
    expect(pat.name[0]).toMatchObject({ text: 'Nguyễn Văn An', family: 'Nguyễn', given: ['Văn', 'An'] });
    expect(pat.identifier.map((i: any) => [i.system, i.value, i.type?.coding?.[0]?.code])).toEqual([
      ['urn:iomt-gateway:vn:mrn', 'BN0001', 'MR'],
      ['urn:iomt-gateway:vn:cccd', '079185000123', 'NI'],
      ['urn:iomt-gateway:vn:bhyt', 'DN4797912345678', 'SB'],
    ]);
    expect(pat.meta.profile).toEqual(['http://fhir.ehealth.gov.vn/core/StructureDefinition/vn-core-patient']);
    expect(pat).toMatchObject({ gender: 'male', birthDate: '1985-03-12' });
    const [pat2] = await fhir.search('Patient', { identifier: 'urn:iomt-gateway:vn:mrn|BN0002' });
    expect(pat2.name[0].text).toBe('Trần Thị Ánh');

    // Observations: values, comparators, ranges, ratios, codes, flags, status, references
    const [hgb, crp, wbc, ana, blt, cmt] = await Promise.all(hl7.observations.map((o) => byObsId(o.id)));
    expect(hgb).toMatchObject({ status: 'final', valueQuantity: { value: 11.6, unit: 'g/dL', system: 'http://unitsofmeasure.org', code: 'g/dL' }, interpretation: [{ coding: [{ code: 'L' }] }] });
    expect(hgb.category[0].coding[0].code).toBe('laboratory');
    expect(hgb.code).toMatchObject({ text: 'Huyết sắc tố' });
    expect(hgb.referenceRange[0]).toMatchObject({ low: { value: 13 }, high: { value: 17 } });
    expect(hgb.effectiveDateTime).toBe('2025-03-01T09:29:00+07:00');
    expect(hgb.subject.reference).toBe(`Patient/${pat.id}`);
    expect(crp.valueQuantity).toMatchObject({ comparator: '<', value: 0.5, code: 'mg/L' });
    expect(wbc.valueRange).toMatchObject({ low: { value: 2 }, high: { value: 5 } });
    expect(ana.valueRatio).toMatchObject({ numerator: { value: 1 }, denominator: { value: 40 } });
    expect(blt.valueCodeableConcept.coding[0]).toMatchObject({ code: 'O', display: 'Nhóm O' });
    expect(cmt.valueString).toBe('Mẫu bị đông, đề nghị lấy lại');
    // the bad CCCD is flagged on every observation of that patient, never dropped
    expect(hgb.note.map((n: any) => n.text).join('\n')).toMatch(/invalid-identifier cccd: CCCD century\/sex digit/);
    const [plt] = await Promise.all([byObsId(astm.observations[1].id)]);
    expect(plt.valueQuantity).toMatchObject({ comparator: '>', value: 1000 });
    expect(plt.interpretation[0].coding[0].code).toBe('H');

    // Device: MA_MAY identifier, model, serial
    const dev = await fhir.repo.readReference({ reference: hgb.device.reference } as any);
    expect((dev as any).identifier[0]).toMatchObject({ system: 'urn:iomt-gateway:vn:ma-may', value: 'XN-HH-01' });
    expect(dev).toMatchObject({ modelNumber: 'XN-1000', serialNumber: 'SN-42' });
    const spec = await fhir.repo.readReference({ reference: hgb.specimen.reference } as any);
    expect((spec as any).accessionIdentifier.value).toBe('S-1001');
    // DiagnosticReport per order, pointing at the stored Observations
    const reports = await fhir.search('DiagnosticReport');
    expect(reports).toHaveLength(2);
    const rep = reports.find((r: any) => r.result.length === 6);
    expect(rep.result.map((x: any) => x.reference).sort()).toEqual([hgb, crp, wbc, ana, blt, cmt].map((o: any) => `Observation/${o.id}`).sort());
    expect(rep).toMatchObject({ status: 'final', category: [{ coding: [{ code: 'HM' }] }], basedOn: [{ identifier: { value: 'ORD-77' } }] });
  });

  it('re-delivery of the same outbox entries (a crash before the outcome was recorded) creates nothing twice', async () => {
    const count = async () => Object.fromEntries(await Promise.all(['Observation', 'Patient', 'Device', 'Specimen', 'DiagnosticReport'].map(async (t) => [t, (await fhir.search(t)).length])));
    const before = await count();
    const out = output('emr', 'basic');
    const r = await sinkFor('xn1000', 'XN-HH-01').submit({ deviceId: 'xn1000', driver: 'hl7-mllp', raw: Buffer.from(ORU.replace('HL7-0001', 'HL7-0002')), drafts: oruDrafts(ORU) });
    const p = out.prepare(r.observations, r.messageUid);
    const entry: OutboxEntry = { id: 1, destination: 'emr', key: r.messageUid, payload: p.payload, attempts: 0, createdAt: 0 };
    expect((await out.write([entry], new AbortController().signal))[0].outcome).toBe('delivered');
    const once = await count();
    expect(once.Observation).toBe(before.Observation + 6);
    expect(once.Patient).toBe(before.Patient); // same patient (MRN) as before
    expect(once.Device).toBe(before.Device); // same machine (MA_MAY)
    // the same bytes again (prepare is deterministic) and the stored entry again: no new resource
    expect(out.prepare(JSON.parse(JSON.stringify(r.observations)), r.messageUid).payload.equals(p.payload)).toBe(true);
    const again = await out.write([entry, entry], new AbortController().signal);
    expect(again.map((x) => x.outcome)).toEqual(['delivered', 'delivered']);
    expect(again[0].outcome === 'delivered' && again[0].detail).toMatch(/ 0 created/);
    expect(await count()).toEqual(once);
    expect(fhir.invalid).toEqual([]);
  });

  it('a corrected result is a conditional update of the result it corrects', async () => {
    const fin = ORU.replace('HL7-0001', 'HL7-0100').replace(/S-1001/g, 'S-2001');
    const cor = fin.replace('HL7-0100', 'HL7-0101').replace('|11.6|g/dL|13.0-17.0|L|||F|', '|12.6|g/dL|13.0-17.0|L|||C|');
    const out = output('emr-c', 'basic');
    const sink = sinkFor('xn1000', 'XN-HH-01');
    const f = await sink.submit({ deviceId: 'xn1000', driver: 'hl7-mllp', raw: Buffer.from(fin), drafts: oruDrafts(fin) });
    const firstHgbId = f.observations[0].id;
    await queue(out, f);
    run(out);
    await delivered('emr-c', 1);
    const finalHgb = await byObsId(firstHgbId);
    expect(finalHgb).toMatchObject({ status: 'final', valueQuantity: { value: 11.6 } });
    const c = await sink.submit({ deviceId: 'xn1000', driver: 'hl7-mllp', raw: Buffer.from(cor), drafts: oruDrafts(cor) });
    await queue(out, c);
    workers[0].wake();
    await delivered('emr-c', 2);
    // the same resource, updated in place: status corrected, new value; no second HGB result for that specimen
    const corrected = await byObsId(c.observations[0].id);
    expect(corrected).toMatchObject({ id: finalHgb.id, status: 'corrected', valueQuantity: { value: 12.6 } });
    expect(corrected.meta.versionId).not.toBe(finalHgb.meta.versionId);
    expect(await byObsId(firstHgbId)).toBeUndefined();
    // the other five results of the corrected message were new finals of their own: conditional creates
    expect((await fhir.search('Observation', { specimen: `Specimen/${finalHgb.specimen.reference.split('/')[1]}` })).filter((o: any) => o.code.coding[0].code === 'HGB')).toHaveLength(1);
    expect(fhir.invalid).toEqual([]);
  });

  // issue 13 review: F, a rerun F (same device, specimen, test), then C was dead-lettered ("Conditional PUT
  // matched multiple resources"). A correction / withdrawal applies to the latest result only.
  it.each([
    { letter: 'C', status: 'corrected', value: 12.6 },
    { letter: 'W', status: 'entered-in-error', value: 12.6 },
  ])('F, rerun F, then $letter: the rerun becomes $status, the first final stays, nothing dead', async ({ letter, status, value }) => {
    const sp = `S-R${letter}`;
    const msg = (ctl: string, v: string, st: string) =>
      ORU.replace('HL7-0001', ctl).replace(/S-1001/g, sp).replace('|11.6|g/dL|13.0-17.0|L|||F|', `|${v}|g/dL|13.0-17.0|L|||${st}|`);
    const out = output(`emr-r${letter}`, 'basic', { requestTimeoutMs: 20_000 }); // the in-memory server slows as it fills
    const sink = sinkFor('xn1000', 'XN-HH-01');
    const submit = (t: string) => sink.submit({ deviceId: 'xn1000', driver: 'hl7-mllp', raw: Buffer.from(t), drafts: oruDrafts(t) });
    const f1 = await submit(msg(`R${letter}-1`, '11.6', 'F'));
    const f2 = await submit(msg(`R${letter}-2`, '11.9', 'F')); // the analyser re-ran the specimen
    const c = await submit(msg(`R${letter}-3`, String(value), letter));
    for (const r of [f1, f2, c]) await queue(out, r);
    run(out);
    await delivered(`emr-r${letter}`, 3);
    expect(store.deadLetters(`emr-r${letter}`)).toEqual([]);
    const first = await byObsId(f1.observations[0].id);
    expect(first).toMatchObject({ status: 'final', valueQuantity: { value: 11.6 } });
    expect(await byObsId(f2.observations[0].id)).toBeUndefined(); // replaced in place
    const latest = await byObsId(c.observations[0].id);
    expect(latest).toMatchObject({ status, valueQuantity: { value } });
    expect(latest.id).not.toBe(first.id);
    expect(latest.meta.versionId).not.toBe('1'); // an update of the rerun's resource, not a new one
    const hgbs = (await fhir.search('Observation', { specimen: `Specimen/${first.specimen.reference.split('/')[1]}` })).filter((o: any) => o.code.coding[0].code === 'HGB');
    expect(hgbs.map((o: any) => o.status).sort()).toEqual([status, 'final'].sort());
    // a second correction replaces that same resource again (it targets the correction now standing there)
    const c2 = await submit(msg(`R${letter}-4`, '13.1', 'C'));
    await queue(out, c2);
    workers[0].wake();
    await delivered(`emr-r${letter}`, 4);
    const again = await byObsId(c2.observations[0].id);
    expect(again).toMatchObject({ id: latest.id, status: 'corrected', valueQuantity: { value: 13.1 } });
    expect(await byObsId(f1.observations[0].id)).toMatchObject({ id: first.id, status: 'final' });
    expect(fhir.invalid).toEqual([]);
  });

  it('private_key_jwt (assertion aud = token URL); an expired token is refreshed once on 401', async () => {
    const assertions: string[] = [];
    const out = output('emr-jwt', 'jwt');
    const sink = sinkFor('hema2', 'HH-02');
    const send = async (n: number) => {
      const lines = ASTM.map((l) => l.replace('S21-001', `S21-J${n}`));
      await queue(out, await sink.submit({ deviceId: 'hema2', driver: 'astm', raw: Buffer.from(lines.join('\r')), drafts: parseAstmMessage(parseRecords(lines), defaultProfile()).drafts }));
    };
    oauth.onAssertion = (a) => assertions.push(a);
    await send(1);
    const w = run(out);
    await delivered('emr-jwt', 1);
    expect(out.tokens.tokensFetched).toBe(1);
    await oauth.revokeAll(); // the server now answers 401 to the cached token
    await send(2);
    w.wake();
    await delivered('emr-jwt', 2);
    expect(out.tokens.tokensFetched).toBe(2);
    expect(fhir.received.filter((r) => r.status === 401).length).toBeGreaterThanOrEqual(1);
    expect(assertions.length).toBe(2);
    for (const a of assertions) expect(decodeJwt(a)).toMatchObject({ iss: 'gw-jwt', sub: 'gw-jwt', aud: oauth.tokenUrl });
    expect(oauth.requests.filter((r) => r.clientId === 'gw-jwt').every((r) => r.ok)).toBe(true);
  });

  it('429 with Retry-After is honoured: not retried earlier than the server asked', async () => {
    store.setDestinationPolicy('emr-429', { backoffBaseMs: 50, jitter: 0 });
    const out = output('emr-429', 'basic');
    const times: number[] = [];
    let first = true;
    fhir.intercept = (req) => {
      if (req.method !== 'POST') return undefined;
      times.push(Date.now());
      if (first) {
        first = false;
        return { status: 429, headers: { 'retry-after': '2' }, body: { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'throttled', details: { text: 'slow down' } }] } };
      }
      return undefined;
    };
    const lines = ASTM.map((l) => l.replace('S21-001', 'S21-429'));
    await queue(out, await sinkFor('hema2', 'HH-02').submit({ deviceId: 'hema2', driver: 'astm', raw: Buffer.from(lines.join('\r')), drafts: parseAstmMessage(parseRecords(lines), defaultProfile()).drafts }));
    run(out);
    await delivered('emr-429', 1);
    expect(times.length).toBe(2);
    expect(times[1] - times[0]).toBeGreaterThanOrEqual(1900); // the backoff alone would have retried after 50 ms
  });

  it("a resource the server rejects is dead-lettered with the OperationOutcome's text", async () => {
    const out = output('emr-rej', 'basic');
    fhir.reject = (r) => (r.resourceType === 'Observation' && r.code?.coding?.[0]?.code === 'PLT' ? 'Observation.code PLT is not in this EMR catalogue' : undefined);
    const lines = ASTM.map((l) => l.replace('S21-001', 'S21-REJ'));
    await queue(out, await sinkFor('hema2', 'HH-02').submit({ deviceId: 'hema2', driver: 'astm', raw: Buffer.from(lines.join('\r')), drafts: parseAstmMessage(parseRecords(lines), defaultProfile()).drafts }));
    run(out);
    await waitFor(() => store.deadLetters('emr-rej').length === 1, 10_000);
    const [d] = store.deadLetters('emr-rej');
    expect(d.lastError).toMatch(/^HTTP 422: Observation.code PLT is not in this EMR catalogue/);
    expect(d.attempts).toBe(1);
  });
});
