/**
 * DICOM instances the `dicom in` driver stored → FHIR R4 ImagingStudy (issue 13 §1 "ImagingStudy for
 * studies the DICOM driver received"; FHIR R4 ImagingStudy, DICOM PS3.3 C.7.2.1 / C.7.3.1 / C.12.1).
 *
 * What the output receives is the observation only (no DicomInstanceRecord). The driver's draft
 * (drivers/dicom/storage-scp.ts instanceInbound, drivers/dicom/contracts.ts) carries `imaging`: the
 * Study/Series/SOP Instance UIDs, SOP Class UID, Modality (0008,0060) and Study Date from the dataset;
 * code `urn:oid:<SOP Class UID>`; order.fillerOrderNumber / subject.accession = Accession Number
 * (0008,0050). Observations stored before `imaging` existed are read from the stored path
 * `dicom/<Study UID>/<Series UID>/<SOP UID>.<sha8>.dcm` (a UID written hashed, `x<hex>`, cannot be read
 * back: no ImagingStudy). Without a modality the series (whose modality FHIR R4 requires, 1..1) is not
 * listed and a note says why.
 *
 * Idempotency: POST with `ifNoneExist` on the Study Instance UID (identifier urn:dicom:uid|urn:oid:…).
 * One C-STORE is one message, so the study is created by the delivery of its FIRST instance and the
 * deliveries of its later instances find it and create nothing: the resource lists the instances of
 * that first delivery only. numberOfSeries/numberOfInstances are therefore NOT sent (they would claim a
 * total the gateway cannot know at that point); the PACS (or the gateway's DICOM index) holds the full list.
 */
import type { Observation } from '../contracts/observation';
import { fhirDateTime, identifierQuery, V2_0203, type Json } from './values';

/** FHIR R4 identifier system for DICOM UIDs (values `urn:oid:<uid>`). */
export const DICOM_UID = 'urn:dicom:uid';
/** DICOM Controlled Terminology (PS3.16): modality codes (CT, MR, US, CR, DX ...). */
export const DCM = 'http://dicom.nema.org/resources/ontology/DCM';
/** Default system for the Accession Number when the site file names none (the RIS/HIS's own). */
export const DEFAULT_ACCESSION_SYSTEM = 'urn:iomt-gateway:accession';

/** DICOM UID (PS3.5 9.1): digits and dots, no leading zero in a component (not checked), at most 64 characters. */
const UID = /^[0-9]+(\.[0-9]+)*$/;
const isUid = (s: string | undefined): s is string => !!s && s.length <= 64 && UID.test(s);

export interface ImagingRef {
  studyUid: string;
  seriesUid: string;
  sopUid: string;
  sopClassUid?: string;
  /** DICOM modality (0008,0060) when the observation carries it (method with system DCM). */
  modality?: string;
}

/** The DICOM UIDs of an imaging observation, or undefined when it is not one or they cannot be read. */
export function imagingRefOf(o: Observation): ImagingRef | undefined {
  const v = o.value;
  if (o.category !== 'imaging' || v?.kind !== 'reference') return undefined;
  const im = o.imaging;
  if (im && isUid(im.studyInstanceUid) && isUid(im.seriesInstanceUid) && isUid(im.sopInstanceUid)) {
    // the driver's own UIDs (drivers/dicom/storage-scp.ts instanceInbound)
    const r: ImagingRef = { studyUid: im.studyInstanceUid, seriesUid: im.seriesInstanceUid, sopUid: im.sopInstanceUid };
    if (isUid(im.sopClassUid)) r.sopClassUid = im.sopClassUid;
    if (im.modality && /^[A-Z0-9]{1,16}$/.test(im.modality)) r.modality = im.modality;
    return r;
  }
  // observations stored before `imaging` existed: the UIDs from the file path
  const parts = v.pointer.split(/[\\/]/);
  if (parts.length < 4 || parts[parts.length - 4] !== 'dicom') return undefined;
  const [studyUid, seriesUid, file] = parts.slice(-3);
  const sopFromPath = /^(.+)\.[0-9a-f]{8}\.dcm$/.exec(file)?.[1];
  const sopUid = o.sourceMessageId ?? sopFromPath;
  if (!isUid(studyUid) || !isUid(seriesUid) || !isUid(sopUid)) return undefined;
  const ref: ImagingRef = { studyUid, seriesUid, sopUid };
  const cls = /^urn:oid:(.+)$/.exec(o.code.code)?.[1];
  if (isUid(cls)) ref.sopClassUid = cls;
  if (o.method && (o.method.system === DCM || o.method.system === 'DCM') && /^[A-Z0-9]{1,16}$/.test(o.method.code)) ref.modality = o.method.code;
  return ref;
}

export interface ImagingStudyEntry {
  fullUrl: string;
  resource: Json;
  request: Json;
}

/**
 * One ImagingStudy per Study Instance UID among `obs` (all must have an ImagingRef). `subject` is the
 * Patient reference, else the Device (R4 ImagingStudy.subject is 1..1: Patient | Device | Group).
 */
export function imagingStudyResource(study: Array<{ o: Observation; ref: ImagingRef }>, refs: { subject: string; device: string }, opts: { accessionSystem?: string; profile?: string[]; localTimeOffset?: string }): Json {
  const first = study[0];
  const r: Json = { resourceType: 'ImagingStudy' };
  if (opts.profile?.length) r.meta = { profile: opts.profile };
  const identifiers: Json[] = [{ system: DICOM_UID, value: `urn:oid:${first.ref.studyUid}` }];
  const accession = first.o.subject?.accession ?? first.o.order?.fillerOrderNumber;
  if (accession) identifiers.push({ type: { coding: [{ system: V2_0203, code: 'ACSN' }] }, system: opts.accessionSystem ?? DEFAULT_ACCESSION_SYSTEM, value: accession });
  r.identifier = identifiers;
  // R4 ImagingStudy.status: the instances are stored (available); a study the gateway saw is never 'registered' only
  r.status = 'available';
  const modalities = [...new Set(study.map((x) => x.ref.modality).filter((m): m is string => !!m))];
  if (modalities.length) r.modality = modalities.map((code) => ({ system: DCM, code }));
  r.subject = { reference: refs.subject };
  const started = study.map((x) => fhirDateTime(x.o.effectiveAt, opts.localTimeOffset)).filter((t): t is string => !!t).sort()[0];
  if (started) r.started = started;
  const series = new Map<string, Array<{ o: Observation; ref: ImagingRef }>>();
  for (const x of study) {
    const s = series.get(x.ref.seriesUid);
    if (s) s.push(x);
    else series.set(x.ref.seriesUid, [x]);
  }
  const out: Json[] = [];
  const unlisted: string[] = [];
  for (const [uid, items] of series) {
    const modality = items.find((x) => x.ref.modality)?.ref.modality;
    if (!modality) {
      unlisted.push(uid);
      continue;
    }
    const seen = new Set<string>();
    const instances: Json[] = [];
    for (const x of items) {
      if (seen.has(x.ref.sopUid)) continue;
      seen.add(x.ref.sopUid);
      // R4 ImagingStudy.series.instance.sopClass is 1..1 (Coding, system urn:ietf:rfc:3986)
      if (x.ref.sopClassUid) instances.push({ uid: x.ref.sopUid, sopClass: { system: 'urn:ietf:rfc:3986', code: `urn:oid:${x.ref.sopClassUid}` } });
      else unlisted.push(x.ref.sopUid);
    }
    // series.performer: the modality that sent it (its calling AE title is the Device)
    const s: Json = { uid, modality: { system: DCM, code: modality }, performer: [{ actor: { reference: refs.device } }] };
    if (instances.length) s.instance = instances;
    out.push(s);
  }
  if (out.length) r.series = out;
  if (unlisted.length) r.note = [{ text: `IOMT-GW: ${unlisted.length} series/instance(s) not listed: the observation carries no DICOM modality or SOP class (FHIR R4 requires them); the PACS and the gateway's DICOM index have them` }];
  return r;
}

/** The bundle entry: conditional create on the Study Instance UID (FHIR R4 3.1.0.8.1). */
export function imagingStudyEntry(fullUrl: string, resource: Json, studyUid: string): ImagingStudyEntry {
  return { fullUrl, resource, request: { method: 'POST', url: 'ImagingStudy', ifNoneExist: identifierQuery(DICOM_UID, `urn:oid:${studyUid}`) } };
}
