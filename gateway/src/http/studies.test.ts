/**
 * GET /api/v1/studies over a real store: instances as the storage SCP commits them (driver dicom,
 * C-STORE, meta = DicomInstanceRecord), outbox rows per PACS in every state.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import express from 'express';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { tempDir } from '../../../test/helpers/env';
import { GatewayStore } from '../store/gateway-store';
import { DB_FILE } from '../store/gateway-store';
import type { GatewayRuntime } from '../runtime';
import type { AuditLog } from '../audit/audit-log';
import type { DicomInstanceRecord } from '../../../drivers/dicom/contracts';
import { apiErrorHandler } from './errors';
import { registerStudyRoutes, searchStudies } from './studies';

let tmp: { dir: string; cleanup(): void };
let store: GatewayStore;
const ids: Record<string, number> = {};

async function instance(sop: string, study: string, o: { acc?: string; pid?: string; modality?: string; at: string }): Promise<number> {
  const rec: DicomInstanceRecord = {
    sopClassUid: '1.2.840.10008.5.1.4.1.1.2',
    sopInstanceUid: sop,
    studyInstanceUid: study,
    seriesInstanceUid: `${study}.1`,
    modality: o.modality ?? 'CT',
    accessionNumber: o.acc,
    studyDate: '20261130',
    transferSyntaxUid: '1.2.840.10008.1.2.1',
    callingAeTitle: 'CT01',
    calledAeTitle: 'IOMT_GW',
    relPath: `dicom/${study}/${sop}.dcm`,
    bytes: 1000,
    sha256: 'ab'.repeat(32),
    receivedAt: o.at,
  };
  const r = await store.submit({
    deviceId: 'modality-1',
    driver: 'dicom',
    raw: Buffer.from(JSON.stringify(rec)),
    receivedAt: new Date(o.at),
    sourceMessageId: sop,
    messageType: 'C-STORE',
    dedupeKey: `${sop}|${rec.sha256}`,
    meta: rec as unknown as Record<string, unknown>,
    drafts: [{ code: { system: 'urn:ietf:rfc:3986', code: 'urn:oid:1.2.840.10008.5.1.4.1.1.2' }, status: 'final', category: 'imaging', subject: { patientId: o.pid }, value: { kind: 'reference', pointer: rec.relPath } }],
  } as never);
  ids[sop] = r.messageId;
  return r.messageId;
}

async function queue(dest: string, sops: string[], outcome?: 'delivered' | 'dead') {
  await store.appendOutbox(dest, sops.map((s) => ({ key: `${dest}-${s}`, messageId: ids[s], payload: Buffer.from(s) })));
  if (!outcome) return;
  const leased = store.lease(dest, 100, 60_000).filter((e) => sops.some((s) => e.key === `${dest}-${s}`));
  await store.settle(dest, leased.map((e) => (outcome === 'dead' ? { id: e.id, outcome: 'dead' as const, error: 'refused 0xA900' } : { id: e.id, outcome: 'delivered' as const })));
}

beforeAll(async () => {
  tmp = tempDir('iomt-studies-');
  store = GatewayStore.open({ dataDir: tmp.dir });
  // study A: 3 CT instances, accession ACC1, patient P1; PACS-1 took 2, one refused; PACS-2 has 1 pending, 2 not queued
  await instance('1.1', 'S.A', { acc: 'ACC1', pid: 'P1', at: '2026-11-30T08:00:00.000Z' });
  await instance('1.2', 'S.A', { acc: 'ACC1', pid: 'P1', at: '2026-11-30T08:00:01.000Z' });
  await instance('1.3', 'S.A', { acc: 'ACC1', pid: 'P1', at: '2026-11-30T08:00:02.000Z' });
  // study B: 1 MR instance, patient P2, everything delivered
  await instance('2.1', 'S.B', { acc: 'ACC2', pid: 'P2', modality: 'MR', at: '2026-11-30T09:00:00.000Z' });
  await queue('pacs-1', ['1.1', '1.2'], 'delivered');
  await queue('pacs-1', ['1.3'], 'dead');
  await queue('pacs-2', ['1.1']);
  await queue('pacs-1', ['2.1'], 'delivered');
  // not a stored instance: an HL7 message of the same patient is no study
  await store.submit({ deviceId: 'lab', driver: 'hl7-mllp', raw: Buffer.from('MSH|'), messageType: 'ORU^R01', drafts: [{ code: { system: 'L', code: 'X' }, status: 'final', subject: { patientId: 'P1' } }] } as never);
});

afterAll(async () => {
  await store.close();
  tmp.cleanup();
});

describe('searchStudies', () => {
  const file = () => join(tmp.dir, DB_FILE);

  it('per study: instances, and per PACS delivered / pending / dead / not queued; newest first', () => {
    const s = searchStudies(file(), { limit: 50 });
    expect(s.map((x) => x.studyInstanceUid)).toEqual(['S.B', 'S.A']);
    expect(s[1]).toMatchObject({
      accessionNumber: 'ACC1',
      patientId: 'P1',
      modalities: ['CT'],
      callingAeTitles: ['CT01'],
      instances: 3,
      bytes: 3000,
      firstReceivedAt: '2026-11-30T08:00:00.000Z',
      lastReceivedAt: '2026-11-30T08:00:02.000Z',
      destinations: { 'pacs-1': { delivered: 2, pending: 0, dead: 1, notQueued: 0 }, 'pacs-2': { delivered: 0, pending: 1, dead: 0, notQueued: 2 } },
      allDelivered: false,
    });
    expect(s[0]).toMatchObject({ modalities: ['MR'], instances: 1, destinations: { 'pacs-1': { delivered: 1, pending: 0, dead: 0, notQueued: 0 } }, allDelivered: true });
  });

  it.each([
    [{ accession: 'ACC1' }, ['S.A']],
    [{ accession: 'NOPE' }, []],
    [{ patientId: 'P2' }, ['S.B']],
    [{ from: '2026-11-30T08:30:00.000Z' }, ['S.B']],
    [{ to: '2026-11-30T08:00:01.000Z' }, ['S.A']], // one instance in range: the whole study is reported
    [{ limit: 1 }, ['S.B']],
  ])('filter %j', (q, want) => {
    const s = searchStudies(file(), { limit: 50, ...q });
    expect(s.map((x) => x.studyInstanceUid)).toEqual(want);
    if (want[0] === 'S.A') expect(s[0].instances).toBe(3);
  });
});

describe('GET /studies', () => {
  let base: string;
  let server: ReturnType<ReturnType<typeof express>['listen']>;
  const audited: unknown[] = [];
  beforeAll(async () => {
    const app = express();
    const r = express.Router();
    // the API router's authentication stands in here: the role comes from a header
    r.use((req, res, next) => {
      res.locals.principal = { user: 'u', role: req.header('x-role') ?? 'viewer', via: 'basic', source: '127.0.0.1' };
      next();
    });
    registerStudyRoutes(r, { settings: { dataDir: tmp.dir } } as unknown as GatewayRuntime, { record: (e: unknown) => (audited.push(e), 1) } as unknown as AuditLog);
    r.use(apiErrorHandler(() => undefined));
    app.use('/api/v1', r);
    server = app.listen(0, '127.0.0.1');
    await new Promise((ok) => server.once('listening', ok));
    base = `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/v1`;
  });
  afterAll(() => server.close());

  const get = async (path: string, role = 'operator') => {
    const r = await fetch(`${base}${path}`, { headers: { 'x-role': role } });
    return { status: r.status, body: (await r.json()) as { studies?: Array<Record<string, unknown>>; code?: string } };
  };

  it('operator: search by accession, audited, with the patient id', async () => {
    const r = await get('/studies?accession=ACC1');
    expect(r.status).toBe(200);
    expect(r.body.studies).toHaveLength(1);
    expect(r.body.studies![0]).toMatchObject({ studyInstanceUid: 'S.A', patientId: 'P1' });
    expect(audited.at(-1)).toMatchObject({ action: 'phi.search', detail: { route: 'studies', accession: 'ACC1' } });
  });

  it('viewer: lists by date without patient ids; may not search by accession or patient', async () => {
    const r = await get('/studies?from=2026-11-30', 'viewer');
    expect(r.status).toBe(200);
    expect(r.body.studies!.map((s) => s.studyInstanceUid)).toEqual(['S.B', 'S.A']);
    expect(r.body.studies!.every((s) => !('patientId' in s))).toBe(true);
    expect((await get('/studies?patientId=P1', 'viewer')).status).toBe(403);
    expect(audited.at(-1)).toMatchObject({ action: 'phi.search', outcome: 'denied' });
  });

  it.each(['/studies?bogus=1', '/studies?limit=0', '/studies?limit=501', '/studies?from=yesterday', '/studies?accession=a&accession=b'])('400 for %s', async (p) => {
    expect((await get(p)).status).toBe(400);
  });
});
