/**
 * Observations of one inbound message → one FHIR R4 transaction Bundle (protocols.md §6.1-6.3; issue 13 §1).
 * Pure and deterministic (no clock, no random): the same observations and key give the same bytes,
 * so a re-delivery after a crash sends exactly what was sent before.
 *
 * Idempotency (FHIR R4 3.1.0.8.1 conditional create; 3.1.0.4.3 conditional update):
 * - every resource carries a stable identifier and is POSTed with `request.ifNoneExist` on it:
 *   Observation ← the gateway's observation id (`${messageUid}-${seq}`), Patient ← the best patient
 *   identifier (MRN, CCCD, BHYT, BHXH, other; or the message's own when the device named none),
 *   Device ← MA_MAY (else EUI-64, else the gateway's device id), Specimen ← the specimen id per
 *   device, DiagnosticReport ← `${messageUid}-r${n}`. A second delivery of the same bundle creates nothing.
 * - a corrected, amended, deleted or wrong result (Table 0085 C, A, D, W) is a conditional update that replaces
 *   the LATEST earlier result of the same device, specimen and test (sub-id) the gateway stored (a rerun
 *   included): `PUT Observation?identifier=<observation system>|<that result's id>` (opts.correctionTarget,
 *   ./result-history.ts); with no earlier result known, `PUT Observation?identifier=<resultKey system>|<key>`,
 *   which replaces the one result of that key or creates it when the server never had it.
 * - DICOM instances (category 'imaging') also give an ImagingStudy (./imaging-study.ts), conditional create
 *   on the Study Instance UID (urn:dicom:uid), referenced from their DiagnosticReport (imagingStudy).
 * References between entries are urn:uuid fullUrls (deterministic, from the key) that the server rewrites.
 */
import { createHash } from 'node:crypto';
import type { Observation, Subject } from '../contracts/observation';
import { classifySubject, type ClassifiedIdentifier } from '../identifiers/vn';
import { imagingRefOf, imagingStudyEntry, imagingStudyResource, type ImagingRef } from './imaging-study';
import type { FhirSiteConfig, VnIdentifierKind } from '../identifiers/site-config';
import {
  coding,
  DATA_ABSENT,
  fhirDate,
  fhirDateTime,
  gender,
  identifierQuery,
  interpretation,
  LOINC,
  OBS_CATEGORY,
  observationStatus,
  referenceRange,
  V2_0074,
  V2_0203,
  V2_0487,
  valueX,
  type Json,
} from './values';

export interface BundleOptions {
  site: FhirSiteConfig;
  /** Profile set from site.profileSets ('none', 'base', 'vn-core'). */
  profileSet?: string;
  /**
   * For a correction (C, A, D, W): the observation id of the earlier result it replaces, the latest one of the
   * same device + specimen + test the gateway stored (./result-history.ts). Resolved once, before the bundle
   * is built, so the bundle stays deterministic. Without it (or no earlier result known) the conditional
   * update is on the result key.
   */
  correctionTarget?: (o: Observation) => string | undefined;
}

/** Deterministic urn:uuid (RFC 4122 layout, version 5 bits) from the outbox key and a resource's identity. */
export function stableUuid(key: string, what: string): string {
  const h = createHash('sha256').update(`${key}\u0000${what}`, 'utf8').digest();
  h[6] = (h[6] & 0x0f) | 0x50;
  h[8] = (h[8] & 0x3f) | 0x80;
  const x = h.subarray(0, 16).toString('hex');
  return `urn:uuid:${x.slice(0, 8)}-${x.slice(8, 12)}-${x.slice(12, 16)}-${x.slice(16, 20)}-${x.slice(20, 32)}`;
}

const KIND_PREFERENCE: Array<VnIdentifierKind | undefined> = ['mrn', 'cccd', 'bhyt', 'bhxh', undefined];

function profiles(opts: BundleOptions, key: string): string[] | undefined {
  const set = opts.site.profileSets[opts.profileSet ?? 'none'] ?? {};
  const p = set[key];
  return p && p.length ? [...p] : undefined;
}

/** XPN `family^given^middle^suffix^prefix` → HumanName with text in Vietnamese order (Họ, tên đệm, tên). */
export function humanName(xpn: string): Json {
  const [family = '', given = '', middle = '', suffix = '', prefix = ''] = xpn.split('^').map((s) => s.trim());
  const name: Json = {};
  const givens = [middle, given].filter((x) => x); // Vietnamese order: tên đệm then tên
  name.text = [prefix, family, ...givens, suffix].filter((x) => x).join(' ');
  // a single component holding spaces is a full name whose parts we cannot know: text only
  if (family && (givens.length || !/\s/.test(family))) name.family = family;
  if (givens.length) name.given = givens;
  if (prefix) name.prefix = [prefix];
  if (suffix) name.suffix = [suffix];
  return name;
}

function identifierOf(c: ClassifiedIdentifier): Json {
  const id: Json = { system: c.system, value: c.value };
  if (c.fhirType) id.type = { coding: [{ system: V2_0203, code: c.fhirType }] };
  if (c.kind === 'mrn') id.use = 'usual';
  if (c.authority) id.assigner = { display: c.authority };
  return id;
}

interface Entry {
  fullUrl: string;
  resource: Json;
  request: Json;
}

function patientEntry(s: Subject, key: string, patientIndex: number, opts: BundleOptions): Entry | undefined {
  const ids = classifySubject(s, opts.site);
  if (!ids.length && !s.patientName && !s.birthDate) return undefined;
  const identifiers = ids.map(identifierOf);
  let match: Json | undefined;
  // a valid identifier of any kind before a flagged one (an invalid CCCD never outranks a valid BHYT card)
  const c = KIND_PREFERENCE.map((k) => ids.find((i) => i.kind === k && !i.problems.length)).find(Boolean) ?? KIND_PREFERENCE.map((k) => ids.find((i) => i.kind === k)).find(Boolean);
  if (c) match = { system: c.system, value: c.value };
  if (!match) {
    // the device named the patient but gave no identifier: one Patient per message, never guessed to be another
    match = { system: opts.site.systems.gatewayPatient, value: `${key}-p${patientIndex}` };
    identifiers.push({ ...match });
  }
  const r: Json = { resourceType: 'Patient' };
  const prof = profiles(opts, 'Patient');
  if (prof) r.meta = { profile: prof };
  r.identifier = identifiers;
  if (s.patientName) r.name = [humanName(s.patientName)];
  const g = gender(s.sex);
  if (g) r.gender = g;
  const bd = fhirDate(s.birthDate);
  if (bd) r.birthDate = bd;
  return {
    fullUrl: stableUuid(key, `Patient|${match.system}|${match.value}`),
    resource: r,
    request: { method: 'POST', url: 'Patient', ifNoneExist: identifierQuery(match.system as string, match.value as string) },
  };
}

function deviceEntry(o: Observation, key: string, opts: BundleOptions): Entry {
  const sys = opts.site.systems;
  const eq = o.equipment;
  const localId = eq?.id ? `${o.deviceId}/${encodeURIComponent(eq.id)}` : o.deviceId;
  const identifiers: Json[] = [];
  if (eq?.machineCode) identifiers.push({ system: sys.machineCode, value: eq.machineCode, type: { text: 'MA_MAY' } });
  if (eq?.eui64) identifiers.push({ system: sys.eui64, value: eq.eui64.toUpperCase(), type: { text: 'EUI-64' } });
  identifiers.push({ system: sys.device, value: localId });
  const match = identifiers[0];
  const r: Json = { resourceType: 'Device', identifier: identifiers, status: 'active' };
  const prof = profiles(opts, 'Device');
  if (prof) r.meta = { profile: prof };
  if (eq?.manufacturer) r.manufacturer = eq.manufacturer;
  if (eq?.serial) r.serialNumber = eq.serial;
  if (eq?.model) r.modelNumber = eq.model;
  r.deviceName = [{ name: eq?.name || eq?.id || o.deviceId, type: 'user-friendly-name' }];
  return {
    fullUrl: stableUuid(key, `Device|${match.system}|${match.value}`),
    resource: r,
    request: { method: 'POST', url: 'Device', ifNoneExist: identifierQuery(match.system as string, match.value as string) },
  };
}

function specimenEntry(o: Observation, key: string, patientRef: string | undefined, opts: BundleOptions): Entry | undefined {
  const sid = o.subject?.specimenId;
  if (!sid) return undefined;
  const value = `${o.deviceId}/${encodeURIComponent(sid)}`; // device ids hold no '/'; no FHIR search escapes needed
  const r: Json = { resourceType: 'Specimen', identifier: [{ system: opts.site.systems.specimen, value }], accessionIdentifier: { value: sid } };
  const prof = profiles(opts, 'Specimen');
  if (prof) r.meta = { profile: prof };
  const t = o.order?.specimenType;
  if (t) r.type = { coding: [t.system === 'HL70487' || t.system === 'HL70070' ? { system: V2_0487, code: t.code, ...(t.display ? { display: t.display } : {}) } : coding(t, opts.site)] };
  if (patientRef) r.subject = { reference: patientRef };
  const collected = fhirDateTime(o.order?.collectedAt, opts.site.localTimeOffset);
  if (collected) r.collection = { collectedDateTime: collected };
  return { fullUrl: stableUuid(key, `Specimen|${value}`), resource: r, request: { method: 'POST', url: 'Specimen', ifNoneExist: identifierQuery(opts.site.systems.specimen, value) } };
}

// Table 0085 C (correction), A (amended, v2.6+, tolerated by the parser), D (delete the result) and W (post
// original as wrong): each replaces the result sent before (D/W as entered-in-error), never stands beside it
const REPLACES = new Set(['C', 'A', 'D', 'W']);
export const isCorrection = (o: Observation): boolean => (o.statusCode ? REPLACES.has(o.statusCode) : o.status === 'corrected' || o.status === 'amended' || o.status === 'entered-in-error');

/** Stable across messages: the same device, specimen, test (and sub-id) — what a correction replaces. */
export function resultKey(o: Observation): string | undefined {
  const sid = o.subject?.specimenId ?? o.order?.fillerOrderNumber ?? o.order?.placerOrderNumber;
  if (!sid) return undefined;
  // components URI-encoded: the value needs no FHIR search escaping (R4 3.1.1.4.10) in the conditional URL
  return [o.deviceId, sid, o.code.system, o.code.code, o.subId ?? ''].map((x) => encodeURIComponent(x)).join('/');
}

function qualityNote(f: NonNullable<Observation['quality']>[number]): string {
  const parts = [`IOMT-GW data quality: ${f.code}`];
  if (f.location) parts.push(`at ${f.location}`);
  if (f.text) parts.push(`- ${f.text}`);
  if (f.original !== undefined) {
    // a long original is cut, and the note says so (never a silent change of what the device sent)
    const chars = [...f.original];
    parts.push(chars.length <= 200 ? `(device sent: ${f.original})` : `(device sent: ${chars.slice(0, 200).join('')}… (cut at 200 of ${chars.length} characters))`);
  }
  return parts.join(' ');
}

function observationEntry(o: Observation, key: string, refs: { patient?: string; device: string; specimen?: string }, opts: BundleOptions): Entry {
  const sys = opts.site.systems;
  const category = o.category ?? 'laboratory';
  const r: Json = { resourceType: 'Observation' };
  const prof = profiles(opts, `Observation.${category}`);
  const identifiers: Json[] = [{ system: sys.observation, value: o.id }];
  const rk = resultKey(o);
  if (rk) identifiers.push({ system: sys.resultKey, value: rk });
  r.identifier = identifiers;
  r.status = observationStatus(o.statusCode, o.status);
  r.category = [{ coding: [{ system: OBS_CATEGORY, code: category }] }];
  const codings = [coding(o.code, opts.site)];
  for (const c of [o.localCode, ...(o.codings ?? [])]) if (c) codings.push(coding(c, opts.site));
  const code: Json = { coding: codings.filter((c, i) => codings.findIndex((d) => d.system === c.system && d.code === c.code) === i) };
  if (o.code.display) code.text = o.code.display;
  r.code = code;
  if (refs.patient) r.subject = { reference: refs.patient };
  const eff = fhirDateTime(o.effectiveAt, opts.site.localTimeOffset) ?? fhirDateTime(o.order?.collectedAt, opts.site.localTimeOffset);
  if (eff) r.effectiveDateTime = eff;
  r.issued = new Date(o.receivedAt).toISOString();
  if (o.operator) r.performer = [{ display: o.operator }];
  // OBX-17 observation method (IHE PCD AMEAS/MMEAS ...) → Observation.method; text only stays text
  if (o.method) r.method = o.method.code ? { coding: [coding(o.method, opts.site)], ...(o.method.display ? { text: o.method.display } : {}) } : { text: o.method.display };
  const v = valueX(o.value, opts.site);
  if (v.key) r[v.key] = v.value;
  else r.dataAbsentReason = { coding: [{ system: DATA_ABSENT, code: 'unknown' }] };
  const interp = interpretation(o.interpretation, opts.site);
  if (interp.length) r.interpretation = interp;
  const notes: Json[] = [...(o.comments ?? []).map((text) => ({ text })), ...v.notes.map((text) => ({ text })), ...(o.quality ?? []).map((f) => ({ text: qualityNote(f) }))];
  if (o.deviceStatus && o.deviceStatus !== o.statusCode) notes.push({ text: `device result status: ${o.deviceStatus}` });
  if (notes.length) r.note = notes;
  const rr = referenceRange(o.referenceRange, o.value?.kind === 'quantity' ? o.value.unit : undefined);
  if (rr.length) r.referenceRange = rr;
  if (refs.specimen) r.specimen = { reference: refs.specimen };
  r.device = { reference: refs.device };
  // vital-signs profile needs subject and effective[x] (protocols.md §6.1): declared only when they are there
  if (prof && (category !== 'vital-signs' || (refs.patient && eff))) r.meta = { profile: prof };
  const fullUrl = stableUuid(key, `Observation|${o.id}`);
  if (isCorrection(o) && rk) {
    // the latest earlier result of this device + specimen + test, by its own (per occurrence) observation id:
    // after a rerun the key matches several resources and a conditional update on it fails (R4 3.1.0.4.3: 412)
    const target = opts.correctionTarget?.(o);
    const on = target ? identifierQuery(sys.observation, target) : identifierQuery(sys.resultKey, rk);
    return { fullUrl, resource: r, request: { method: 'PUT', url: `Observation?${on}` } };
  }
  return { fullUrl, resource: r, request: { method: 'POST', url: 'Observation', ifNoneExist: identifierQuery(sys.observation, o.id) } };
}

function reportStatus(obs: Observation[]): string {
  const st = obs.map((o) => observationStatus(o.statusCode, o.status));
  if (st.some((s) => s === 'corrected' || s === 'amended')) return 'corrected';
  if (st.every((s) => s === 'cancelled')) return 'cancelled';
  if (st.every((s) => s === 'entered-in-error')) return 'entered-in-error';
  if (st.every((s) => s === 'final' || s === 'cancelled' || s === 'entered-in-error')) return 'final';
  if (st.some((s) => s === 'final')) return 'partial';
  if (st.some((s) => s === 'preliminary')) return 'preliminary';
  return 'registered';
}

const MIME: Record<string, string> = { PDF: 'application/pdf', JPEG: 'image/jpeg', JPG: 'image/jpeg', PNG: 'image/png', TIFF: 'image/tiff', GIF: 'image/gif', XML: 'application/xml', HTML: 'text/html', RTF: 'application/rtf', PLAIN: 'text/plain' };

function reportEntry(obs: Observation[], key: string, n: number, obsUrls: string[], refs: { patient?: string; specimen?: string; device: string }, opts: BundleOptions, studyUrls: string[] = []): Entry {
  const first = obs[0];
  const ord = first.order ?? {};
  const value = `${key}-r${n}`;
  const r: Json = { resourceType: 'DiagnosticReport' };
  const prof = profiles(opts, 'DiagnosticReport');
  if (prof) r.meta = { profile: prof };
  r.identifier = [{ system: opts.site.systems.report, value }];
  if (ord.placerOrderNumber) r.basedOn = [{ identifier: { system: opts.site.systems.placerOrder, value: ord.placerOrderNumber } }];
  r.status = reportStatus(obs);
  // HL7 v2.5.1 Table 0074 diagnostic service section (OBR-24), else RAD for DICOM instances, else LAB
  r.category = [{ coding: [{ system: V2_0074, code: ord.section || (first.category === 'imaging' ? 'RAD' : 'LAB') }] }];
  // OBR-4 / ASTM O.5 ordered service; else the one test of the group; a group of several tests without an
  // ordered service is not named after its first test (that would misname the report): LOINC 11502-2 for lab
  const oneTest = obs.every((o) => o.code.system === first.code.system && o.code.code === first.code.code);
  const svc = ord.service ?? (oneTest ? first.code : undefined);
  r.code = svc
    ? { coding: [coding(svc, opts.site)], ...(svc.display ? { text: svc.display } : {}) }
    : first.category === 'laboratory' || !first.category
      ? { coding: [{ system: LOINC, code: '11502-2', display: 'Laboratory report' }], text: 'Laboratory report' }
      : { text: `${first.category} results` };
  if (refs.patient) r.subject = { reference: refs.patient };
  const eff = fhirDateTime(ord.collectedAt, opts.site.localTimeOffset) ?? fhirDateTime(first.effectiveAt, opts.site.localTimeOffset);
  if (eff) r.effectiveDateTime = eff;
  r.issued = new Date(first.receivedAt).toISOString();
  if (refs.specimen) r.specimen = [{ reference: refs.specimen }];
  r.result = obsUrls.map((u) => ({ reference: u }));
  if (studyUrls.length) r.imagingStudy = studyUrls.map((u) => ({ reference: u }));
  // ED results (a PDF report) as presentedForm (R4 DiagnosticReport.presentedForm: Attachment, base64 data)
  const forms: Json[] = [];
  for (const o of obs) {
    const v = o.value;
    if (v?.kind === 'encapsulated' && /^base64$/i.test(v.encoding)) {
      const sub = (v.dataSubtype ?? '').toUpperCase();
      forms.push({ contentType: MIME[sub] ?? (v.typeOfData.includes('/') ? v.typeOfData.toLowerCase() : 'application/octet-stream'), data: v.data.replace(/\s+/g, ''), title: o.code.display ?? o.code.code });
    }
  }
  if (forms.length) r.presentedForm = forms;
  return { fullUrl: stableUuid(key, `DiagnosticReport|${value}`), resource: r, request: { method: 'POST', url: 'DiagnosticReport', ifNoneExist: identifierQuery(opts.site.systems.report, value) } };
}

const subjectKey = (s: Subject | undefined) => JSON.stringify([s?.patientId ?? '', s?.patientIds ?? [], s?.patientName ?? '', s?.birthDate ?? '', s?.sex ?? '']);
const orderKey = (o: Observation) => JSON.stringify([o.order?.placerOrderNumber ?? '', o.order?.fillerOrderNumber ?? '', o.subject?.specimenId ?? '', o.order?.service?.code ?? '']);

/** The transaction Bundle for the observations of one inbound message. Throws TypeError on an empty list. */
export function buildTransactionBundle(observations: Observation[], key: string, opts: BundleOptions): Json {
  if (!observations.length) throw new TypeError('fhir bundle: needs at least one observation');
  const entries: Entry[] = [];
  const byUrl = new Set<string>();
  const add = (e: Entry | undefined): string | undefined => {
    if (!e) return undefined;
    if (!byUrl.has(e.fullUrl)) {
      byUrl.add(e.fullUrl);
      entries.push(e);
    }
    return e.fullUrl;
  };
  const patients = new Map<string, string | undefined>();
  const groups = new Map<string, Observation[]>();
  const refsOf = new Map<Observation, { patient?: string; device: string; specimen?: string }>();
  const studies = new Map<string, Array<{ o: Observation; ref: ImagingRef }>>();
  for (const o of observations) {
    const sk = subjectKey(o.subject);
    if (!patients.has(sk)) patients.set(sk, o.subject ? add(patientEntry(o.subject, key, patients.size + 1, opts)) : undefined);
    const patient = patients.get(sk);
    const device = add(deviceEntry(o, key, opts))!;
    const specimen = add(specimenEntry(o, key, patient, opts));
    refsOf.set(o, { patient, device, specimen });
    const ref = imagingRefOf(o);
    if (ref) {
      const st = studies.get(ref.studyUid);
      if (st) st.push({ o, ref });
      else studies.set(ref.studyUid, [{ o, ref }]);
    }
    const gk = `${sk}\u0000${orderKey(o)}`;
    const g = groups.get(gk);
    if (g) g.push(o);
    else groups.set(gk, [o]);
  }
  const studyUrl = new Map<string, string>();
  for (const [uid, items] of studies) {
    const refs = refsOf.get(items[0].o)!;
    const resource = imagingStudyResource(items, { subject: refs.patient ?? refs.device, device: refs.device }, { accessionSystem: opts.site.systems.accession, profile: profiles(opts, 'ImagingStudy'), localTimeOffset: opts.site.localTimeOffset });
    studyUrl.set(uid, add(imagingStudyEntry(stableUuid(key, `ImagingStudy|${uid}`), resource, uid))!);
  }
  let n = 0;
  for (const obs of groups.values()) {
    const urls = obs.map((o) => add(observationEntry(o, key, refsOf.get(o)!, opts))!);
    const studyUrls = [...new Set(obs.map((o) => imagingRefOf(o)?.studyUid).filter((u): u is string => !!u).map((u) => studyUrl.get(u)!))];
    add(reportEntry(obs, key, ++n, urls, refsOf.get(obs[0])!, opts, studyUrls));
  }
  return { resourceType: 'Bundle', type: 'transaction', entry: entries };
}
