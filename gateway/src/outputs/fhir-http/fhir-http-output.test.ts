import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { validateResource } from '@medplum/core';
import { freePort, tempDir } from '../../../../test/helpers/env';
import { makeCerts } from '../../../../test/helpers/tls';
import { startFhirServer, type FhirTestServer } from '../../../../test/helpers/fhir-server';
import { ConfigError } from '../../contracts/errors';
import type { Observation } from '../../contracts/observation';
import type { OutboxEntry } from '../../contracts/output';
import { createRootLogger } from '../../log/logger';
import { fhirHttpOutputDefinition, FhirHttpOutput } from './index';
import { outcomeText, retryAfterMs } from './fhir-http-output';
import { fhirOutSettings } from './node-options';

const OBS = (over: Partial<Observation> = {}): Observation => ({
  id: 'U1-1', messageId: 1, messageUid: 'U1', seq: 1, deviceId: 'mon-5', driver: 'mqtt', receivedAt: '2025-03-01T03:10:05.000Z',
  code: { system: 'urn:iso:std:iso:11073:10101', code: '150456', display: 'MDC_PULS_OXIM_SAT_O2' },
  codings: [{ system: 'http://loinc.org', code: '2708-6' }],
  value: { kind: 'quantity', value: 97, unit: '%', decimal: '97' },
  status: 'final', statusCode: 'F', category: 'vital-signs', effectiveAt: '2025-03-01T10:10:00+07:00',
  subject: { patientIds: [{ id: 'BN7', type: 'MR' }], patientName: 'Lê^Bình^Thị', sex: 'F', birthDate: '1970' },
  equipment: { id: 'mon-5', eui64: '00a037009a0053de', machineCode: 'MON-05', model: 'MX450', manufacturer: 'Philips' },
  ...over,
});

describe('FHIR output: answers, settings, TLS', () => {
  let fhir: FhirTestServer;
  const tmp = tempDir('iomt-fhir-unit-');
  beforeAll(async () => {
    createRootLogger('silent');
    fhir = await startFhirServer();
  });
  afterAll(async () => {
    await fhir.close();
    tmp.cleanup();
  });
  const entry = (o: FhirHttpOutput, key: string, obs = [OBS()]): OutboxEntry => ({ id: 1, destination: o.destination, key, payload: o.prepare(obs, key).payload, attempts: 0, createdAt: 0 });
  const sig = () => new AbortController().signal;

  it('Retry-After as seconds or an HTTP-date (RFC 9110 10.2.3); OperationOutcome text', () => {
    const now = Date.parse('2025-03-01T00:00:00Z');
    expect([retryAfterMs('120', now), retryAfterMs('Sat, 01 Mar 2025 00:00:30 GMT', now), retryAfterMs('Fri, 28 Feb 2025 00:00:00 GMT', now), retryAfterMs('soon', now), retryAfterMs(undefined, now)]).toEqual([120_000, 30_000, 0, undefined, undefined]);
    expect(outcomeText({ resourceType: 'OperationOutcome', issue: [{ severity: 'information', diagnostics: 'x' }, { severity: 'error', code: 'invalid', details: { text: 'bad code' }, expression: ['Observation.code'] }, { severity: 'error', code: 'required', diagnostics: 'subject missing' }] })).toBe('bad code (Observation.code); subject missing');
    expect(outcomeText({ resourceType: 'Patient' })).toBeUndefined();
  });

  it('vital sign Bundle: valid R4 resources, vitalsigns profile, LOINC + MDC codings, EUI-64 and MA_MAY on the Device, deterministic UTF-8 bytes', () => {
    const o = new FhirHttpOutput({ destination: 'd', baseUrl: fhir.url, profileSet: 'vn-core' });
    const a = o.prepare([OBS()], 'U1');
    expect(a.payload.equals(o.prepare([OBS()], 'U1').payload)).toBe(true);
    expect(a.payload.toString('utf8')).toContain('"text":"Lê Thị Bình"');
    const b = JSON.parse(a.payload.toString('utf8'));
    for (const e of b.entry) expect(() => validateResource(e.resource)).not.toThrow();
    const obs = b.entry.find((e: any) => e.resource.resourceType === 'Observation').resource;
    expect(obs.meta.profile).toEqual(['http://hl7.org/fhir/StructureDefinition/vitalsigns']);
    expect(obs.code.coding.map((c: any) => c.system)).toEqual(['urn:iso:std:iso:11073:10101', 'http://loinc.org']);
    expect(obs.valueQuantity).toEqual({ value: 97, unit: '%', system: 'http://unitsofmeasure.org', code: '%' });
    const dev = b.entry.find((e: any) => e.resource.resourceType === 'Device');
    expect(dev.resource.identifier.map((i: any) => i.value)).toEqual(['MON-05', '00A037009A0053DE', 'mon-5/mon-5']);
    expect(dev.request.ifNoneExist).toBe('identifier=urn%3Aiomt-gateway%3Avn%3Ama-may%7CMON-05');
    // OBX-17 method → Observation.method (coded, or text only as sent); still valid R4
    const withMethod = (method: Observation['method']) => JSON.parse(o.prepare([OBS({ method })], 'U3').payload.toString('utf8')).entry.find((e: any) => e.resource.resourceType === 'Observation').resource;
    const coded = withMethod({ system: 'urn:iso:std:iso:11073:10101', code: 'AMEAS', display: 'auto-measurement' });
    expect(coded.method).toEqual({ coding: [{ system: 'urn:iso:std:iso:11073:10101', code: 'AMEAS', display: 'auto-measurement' }], text: 'auto-measurement' });
    expect(() => validateResource(coded)).not.toThrow();
    expect(withMethod({ system: 'local', code: '', display: 'APERIODIC' }).method).toEqual({ text: 'APERIODIC' });
    expect(obs.method).toBeUndefined();
    // no subject → no vitalsigns profile claimed (it requires one)
    const anon = JSON.parse(o.prepare([OBS({ subject: undefined })], 'U2').payload.toString('utf8'));
    expect(anon.entry.find((e: any) => e.resource.resourceType === 'Observation').resource.meta).toBeUndefined();
  });

  it('5xx → retry; 503 Retry-After → retryAfterMs (capped); other 4xx → dead with the text; clientErrorRetryable → retry', async () => {
    const o = new FhirHttpOutput({ destination: 'd', baseUrl: fhir.url, maxRetryAfterMs: 60_000 });
    const answers = [
      { status: 500, body: { resourceType: 'OperationOutcome', issue: [{ severity: 'fatal', code: 'exception', diagnostics: 'db down' }] } },
      { status: 503, headers: { 'retry-after': '7200' } },
      { status: 400, body: { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'invalid', details: { text: 'unknown element' } }] } },
    ];
    let i = 0;
    fhir.intercept = () => answers[i++];
    expect(await o.write([entry(o, 'k1')], sig())).toEqual([{ id: 1, outcome: 'retry', error: 'HTTP 500: db down' }]);
    expect(await o.write([entry(o, 'k1')], sig())).toEqual([{ id: 1, outcome: 'retry', error: 'HTTP 503', retryAfterMs: 60_000 }]);
    expect(await o.write([entry(o, 'k1')], sig())).toEqual([{ id: 1, outcome: 'dead', error: 'HTTP 400: unknown element' }]);
    i = 2;
    const lenient = new FhirHttpOutput({ destination: 'd', baseUrl: fhir.url, clientErrorRetryable: true });
    expect((await lenient.write([entry(lenient, 'k1')], sig()))[0].outcome).toBe('retry');
    fhir.intercept = undefined;
  });

  it('connection refused → unavailable (not an attempt)', async () => {
    const o = new FhirHttpOutput({ destination: 'd', baseUrl: `http://127.0.0.1:${await freePort()}/fhir` });
    const e = entry(o, 'k1');
    expect((await o.write([e, { ...e, id: 2 }], sig())).map((x) => x.outcome)).toEqual(['unavailable', 'unavailable']);
  });

  it('TLS with a site CA and a client certificate; an untrusted server is unavailable (nothing sent)', async () => {
    const certs = makeCerts(tmp.dir);
    const secure = await startFhirServer({ tls: { key: certs.key, cert: certs.cert, ca: certs.ca, requestCert: true } });
    try {
      const ok = new FhirHttpOutput({ destination: 'd', baseUrl: secure.url, tls: { ca: certs.ca, cert: certs.cert, key: certs.key } });
      expect((await ok.write([entry(ok, 'k1')], sig()))[0]).toMatchObject({ outcome: 'delivered' });
      expect(secure.invalid).toEqual([]);
      const untrusted = new FhirHttpOutput({ destination: 'd', baseUrl: secure.url });
      expect((await untrusted.write([entry(untrusted, 'k2')], sig()))[0].outcome).toBe('unavailable');
      expect(secure.received).toHaveLength(1);
    } finally {
      await secure.close();
    }
  });

  it('config problems are listed; node settings take secrets from the NAMED environment variable or a key file, never the flow', () => {
    expect(() => fhirHttpOutputDefinition.create({ destination: '', baseUrl: 'ftp://x', auth: { type: 'client-credentials', tokenUrl: 'nope', clientId: '' } })).toThrow(ConfigError);
    try {
      fhirHttpOutputDefinition.create({ destination: '', baseUrl: 'ftp://x', auth: { type: 'client-credentials', tokenUrl: 'nope', clientId: '' } });
    } catch (e) {
      expect((e as ConfigError).problems.map((p) => p.path)).toEqual(['destination', 'baseUrl', 'auth.tokenUrl', 'auth.clientId', 'auth']);
    }
    const env = { FHIR_BASE_URL: 'https://emr.example/fhir', FHIR_TOKEN_URL: 'https://auth.example/token', FHIR_CLIENT_ID: 'gw', MY_SECRET: 's3cr3t-value' };
    const node = { id: 'n1', name: 'EMR', baseUrl: '${FHIR_BASE_URL}', authType: 'client-credentials', tokenUrl: '${FHIR_TOKEN_URL}', clientId: '${FHIR_CLIENT_ID}', clientSecretEnv: 'MY_SECRET', processingIds: 'P, T' };
    const s = fhirOutSettings(node, env);
    expect(s.options).toMatchObject({ destination: 'EMR', baseUrl: 'https://emr.example/fhir', auth: { type: 'client-credentials', tokenUrl: 'https://auth.example/token', clientId: 'gw', clientSecret: 's3cr3t-value', alg: 'RS384' } });
    expect([...s.processingIds]).toEqual(['P', 'T']);
    expect(() => fhirOutSettings({ ...node, clientSecretEnv: 'UNSET_VAR' }, env)).toThrow('environment variable UNSET_VAR is not set');
    const keyFile = join(tmp.dir, 'key.pem');
    writeFileSync(keyFile, '-----BEGIN PRIVATE KEY-----\n...\n');
    const k = fhirOutSettings({ ...node, privateKeyFile: keyFile, keyId: 'k1', clientSecretEnv: 'UNSET_VAR' }, env);
    expect(k.options.auth).toMatchObject({ privateKeyPem: '-----BEGIN PRIVATE KEY-----\n...\n', keyId: 'k1', clientSecret: undefined });
    let msg = '';
    try {
      fhirOutSettings({ ...node, authType: 'bearer', tokenEnv: 'NOPE' }, env);
    } catch (e) {
      msg = (e as Error).message;
    }
    expect(msg).toBe('environment variable NOPE is not set');
  });
});
