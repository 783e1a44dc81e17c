/**
 * DICOM instances → FHIR R4 ImagingStudy. The observations are made by the DICOM driver's own
 * instanceInbound (what the store gets for a C-STORE), so a change of the driver's draft shows here.
 * Resources are checked with @medplum/core validateResource (R4 definitions) and delivered to a real
 * FHIR peer (Medplum's router, test/helpers/fhir-server.ts) to prove the conditional create.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { validateResource } from '@medplum/core';
import { startFhirServer, type FhirTestServer } from '../../../test/helpers/fhir-server';
import { instanceInbound } from '../../../drivers/dicom/storage-scp';
import type { DicomInstanceRecord } from '../../../drivers/dicom/contracts';
import type { Observation } from '../contracts/observation';
import { createRootLogger } from '../log/logger';
import { loadSiteConfig } from '../identifiers/site-config';
import { FhirHttpOutput } from '../outputs/fhir-http';
import { buildTransactionBundle } from './bundle';
import { DCM, DICOM_UID, imagingRefOf } from './imaging-study';

const STUDY = '1.2.826.0.1.3680043.8.498.1';
const CT_IMAGE = '1.2.840.10008.5.1.4.1.1.2';

function instance(n: number, over: Partial<DicomInstanceRecord> = {}, modality?: string): Observation {
  const record: DicomInstanceRecord = {
    sopClassUid: CT_IMAGE,
    sopInstanceUid: `${STUDY}.2.${n}`,
    studyInstanceUid: STUDY,
    seriesInstanceUid: `${STUDY}.2`,
    ...(modality ? { modality } : {}),
    accessionNumber: 'ACC-2025-77',
    studyDate: '20250301',
    transferSyntaxUid: '1.2.840.10008.1.2.1',
    callingAeTitle: 'CT_SCANNER_1',
    calledAeTitle: 'IOMT_GW',
    relPath: `dicom/${over.studyInstanceUid ?? STUDY}/${over.seriesInstanceUid ?? `${STUDY}.2`}/${over.sopInstanceUid ?? `${STUDY}.2.${n}`}.0a1b2c3d.dcm`,
    bytes: 1000,
    sha256: '0a1b2c3d'.padEnd(64, '0'),
    receivedAt: '2025-03-01T03:00:00.000Z',
    ...over,
  };
  const m = instanceInbound('ct-room', record, { patientId: 'BN0042', patientName: 'Trần^Minh^Văn', patientSex: 'M', patientBirthDate: '19800101', stationName: 'CT ROOM 1' }, '127.0.0.1');
  const d = m.drafts[0];
  return { ...d, id: `U${n}-1`, messageId: n, messageUid: `U${n}`, seq: 1, deviceId: 'ct-room', driver: 'dicom', sourceMessageId: m.sourceMessageId, receivedAt: record.receivedAt };
}

const site = loadSiteConfig();
// the FHIR peer also indexes the R4 definitions validateResource needs
let fhir: FhirTestServer;
beforeAll(async () => {
  createRootLogger('silent');
  fhir = await startFhirServer();
});
afterAll(async () => {
  await fhir.close();
});
const resources = (b: any, type: string) => b.entry.filter((e: any) => e.resource.resourceType === type);

describe('ImagingStudy from DICOM instances', () => {
  it("UIDs and modality come from the driver's `imaging` (not the path); older observations without it: from the stored path, a hashed (non-UID) path part gives none", () => {
    expect(imagingRefOf(instance(1, {}, 'CT'))).toEqual({ studyUid: STUDY, seriesUid: `${STUDY}.2`, sopUid: `${STUDY}.2.1`, sopClassUid: CT_IMAGE, modality: 'CT' });
    // the path does not decide when `imaging` is there
    expect(imagingRefOf(instance(1, { relPath: `dicom/x${'ab'.repeat(16)}/x/y.0a1b2c3d.dcm` }, 'MR'))).toMatchObject({ studyUid: STUDY, modality: 'MR' });
    const old = (o: Observation): Observation => ({ ...o, imaging: undefined });
    expect(imagingRefOf(old(instance(1, {}, 'CT')))).toEqual({ studyUid: STUDY, seriesUid: `${STUDY}.2`, sopUid: `${STUDY}.2.1`, sopClassUid: CT_IMAGE });
    expect(imagingRefOf(old(instance(1, { relPath: `dicom/x${'ab'.repeat(16)}/${STUDY}.2/${STUDY}.2.1.0a1b2c3d.dcm` })))).toBeUndefined();
    const lab = { ...instance(1), category: 'laboratory' as const };
    expect(imagingRefOf(lab)).toBeUndefined();
  });

  it('two series of one study in one Bundle: identifier urn:dicom:uid, accession ACSN, modality, series, instances, subject; valid R4; the report points at it', () => {
    const obs = [instance(1, {}, 'CT'), instance(2, {}, 'CT'), instance(3, { seriesInstanceUid: `${STUDY}.3` }, 'SR')];
    const b = buildTransactionBundle(obs, 'K1', { site }) as any;
    for (const e of b.entry) expect(() => validateResource(e.resource), e.resource.resourceType).not.toThrow();
    const [st] = resources(b, 'ImagingStudy');
    expect(resources(b, 'ImagingStudy')).toHaveLength(1);
    expect(st.request).toEqual({ method: 'POST', url: 'ImagingStudy', ifNoneExist: `identifier=${encodeURIComponent(`${DICOM_UID}|urn:oid:${STUDY}`)}` });
    const r = st.resource;
    expect(r.identifier).toEqual([
      { system: 'urn:dicom:uid', value: `urn:oid:${STUDY}` },
      { type: { coding: [{ system: 'http://terminology.hl7.org/CodeSystem/v2-0203', code: 'ACSN' }] }, system: 'urn:iomt-gateway:accession', value: 'ACC-2025-77' },
    ]);
    expect(r.status).toBe('available');
    expect(r.modality).toEqual([{ system: DCM, code: 'CT' }, { system: DCM, code: 'SR' }]);
    expect(r.series.map((s: any) => [s.uid, s.modality.code, s.instance.map((i: any) => i.uid)])).toEqual([
      [`${STUDY}.2`, 'CT', [`${STUDY}.2.1`, `${STUDY}.2.2`]],
      [`${STUDY}.3`, 'SR', [`${STUDY}.2.3`]],
    ]);
    expect(r.series[0].instance[0].sopClass).toEqual({ system: 'urn:ietf:rfc:3986', code: `urn:oid:${CT_IMAGE}` });
    expect(r.numberOfInstances).toBeUndefined(); // one C-STORE per message: a total is not known (see imaging-study.ts)
    const patient = resources(b, 'Patient')[0];
    expect(r.subject).toEqual({ reference: patient.fullUrl });
    expect(patient.resource.name[0].text).toBe('Trần Văn Minh');
    expect(r.series[0].performer[0].actor.reference).toBe(resources(b, 'Device')[0].fullUrl);
    const report = resources(b, 'DiagnosticReport')[0].resource;
    expect(report.imagingStudy).toEqual([{ reference: st.fullUrl }]);
    expect(report.category[0].coding[0].code).toBe('RAD');
  });

  it('an instance without (0008,0060) Modality: the study without series, and a note saying why; still valid R4', () => {
    const b = buildTransactionBundle([instance(1)], 'K2', { site }) as any;
    const r = resources(b, 'ImagingStudy')[0].resource;
    expect(() => validateResource(r)).not.toThrow();
    expect(r.series).toBeUndefined();
    expect(r.modality).toBeUndefined();
    expect(r.note[0].text).toMatch(/not listed: the observation carries no DICOM modality/);
  });

  it('no patient in the dataset → the Device is the subject (R4 ImagingStudy.subject 1..1)', () => {
    const o = { ...instance(1, {}, 'CT'), subject: undefined };
    const b = buildTransactionBundle([o], 'K3', { site }) as any;
    const r = resources(b, 'ImagingStudy')[0].resource;
    expect(r.subject).toEqual({ reference: resources(b, 'Device')[0].fullUrl });
    expect(() => validateResource(r)).not.toThrow();
  });
});

describe('ImagingStudy delivered to a FHIR server', () => {
  it('two instances of one study in two messages, the first delivered twice: one ImagingStudy on the server', async () => {
    const out = new FhirHttpOutput({ destination: 'fhir', baseUrl: fhir.url });
    const send = async (o: Observation, id: number) => {
      const key = o.messageUid;
      return out.write([{ id, destination: 'fhir', key, payload: out.prepare([o], key).payload, attempts: 0, createdAt: 0 }], new AbortController().signal);
    };
    expect((await send(instance(1, {}, 'CT'), 1))[0].outcome).toBe('delivered');
    expect((await send(instance(1, {}, 'CT'), 2))[0].outcome).toBe('delivered');
    expect((await send(instance(2, {}, 'CT'), 3))[0].outcome).toBe('delivered');
    const found = await fhir.search('ImagingStudy', { identifier: `${DICOM_UID}|urn:oid:${STUDY}` });
    expect(found).toHaveLength(1);
    expect(found[0].series[0].instance.map((i: any) => i.uid)).toEqual([`${STUDY}.2.1`]); // created by the first instance's delivery
    expect(await fhir.search('Observation')).toHaveLength(2);
    expect(fhir.invalid).toEqual([]);
  });
});
