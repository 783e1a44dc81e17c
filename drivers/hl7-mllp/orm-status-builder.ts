/**
 * Procedure status back to the RIS (issue 11 part 4): an MPPS state change (drivers/dicom/mpps.ts) →
 * ORM^O01 with ORC-1 `SC` (status changed, HL7 v2.5.1 Table 0119) and ORC-5 order status (Table 0038:
 * IP in process, CM completed, DC discontinued), as IHE RAD SWF / dcm4chee-arc send it to a RIS.
 * ORM^O01 is kept for RIS compatibility (legacy since v2.5, HL7 v2.5.1 4.4.1; its grammar:
 * MSH [PID] {ORC [OBR [{NTE}]]}). Pure and deterministic for the same input and `now`.
 *
 * The observation is the MPPS draft mpps.ts commits: `code` = the MPPS SOP class as an OID URN,
 * `value` = { kind: 'coded', system: 'HL70038', code: IP|CM|DC }, `order` = the worklist order's
 * placer/filler numbers, service (OBR-4) and modality (section → OBR-24), `subject.accession` (OBR-18),
 * `order.requestedProcedureId` (OBR-19), `order.scheduledStepId` (OBR-20), `order.studyInstanceUid` (ZDS-1),
 * `effectiveAt` (status time), `comments` (discontinue reason → NTE).
 */
import type { Observation } from '../../gateway/src/contracts/observation';
import { escapeHl7, formatHl7Timestamp } from './hl7-message';
import { isoToHl7Time } from './oru-builder';

/** MPPS SOP class (PS3.4 F.7; PS3.6 A.1) as the observation code the MPPS handler commits. */
export const MPPS_CODE = { system: 'urn:ietf:rfc:3986', code: 'urn:oid:1.2.840.10008.3.1.2.3.3', display: 'Modality Performed Procedure Step' } as const;

/** HL7 v2.5.1 Table 0038 order status for each MPPS Performed Procedure Step Status (PS3.3 C.4.14). */
export const ORDER_STATUS_0038: Readonly<Record<string, 'IP' | 'CM' | 'DC'>> = { 'IN PROGRESS': 'IP', COMPLETED: 'CM', DISCONTINUED: 'DC' };

/** true for an observation that is an MPPS status (goes out as ORM^O01 status, not ORU^R01). */
export function isMppsStatusObservation(o: Observation): boolean {
  return o.code.system === MPPS_CODE.system && o.code.code === MPPS_CODE.code && o.value?.kind === 'coded' && o.value.system === 'HL70038';
}

export interface OrmStatusBuildOptions {
  controlId: string; // MSH-10
  sendingApp: string; // MSH-3
  sendingFacility?: string;
  receivingApp?: string;
  receivingFacility?: string;
  now?: Date; // MSH-7
  processingId?: 'P' | 'T' | 'D';
  country?: 'VNM';
}

const e = (s: string | undefined): string => escapeHl7(s ?? '');

function trimFields(f: string[]): string {
  while (f.length > 2 && f[f.length - 1] === '') f.pop();
  return f.join('|');
}

function trimComps(c: string[]): string {
  let n = c.length;
  while (n > 0 && c[n - 1] === '') n--;
  return c.slice(0, n).join('^');
}

/**
 * One ORM^O01 (v2.5.1) with one ORC/OBR per MPPS observation. Throws TypeError for an observation that
 * is not an MPPS status (the output routes only those here).
 */
export function buildOrmStatus(observations: Observation[], opts: OrmStatusBuildOptions): string {
  if (!observations.length) throw new TypeError('buildOrmStatus: no observations');
  const segs: string[] = [];
  // MSH (HL7 v2.5.1 2.14.9): 9 ORM^O01^ORM_O01, 11 processing id (Table 0103), 12 2.5.1, 18 UNICODE UTF-8
  const src = observations.find((o) => o.processingId)?.processingId;
  const processingId = !src ? opts.processingId ?? 'P' : /^[PTD]$/.test(src) ? src : 'T';
  segs.push(
    trimFields(['MSH', '^~\\&', e(opts.sendingApp), e(opts.sendingFacility), e(opts.receivingApp), e(opts.receivingFacility), formatHl7Timestamp(opts.now ?? new Date()), '', 'ORM^O01^ORM_O01', e(opts.controlId), processingId, '2.5.1', '', '', '', '', opts.country ?? '', 'UNICODE UTF-8']),
  );
  const s = observations[0].subject;
  if (s && (s.patientId || s.patientIds?.length || s.patientName)) {
    // PID-3 CX (HL7 v2.5.1 3.4.2.3), PID-5 XPN, PID-7, PID-8; "" (2.5.3 null) when only a name is known
    const ids = s.patientIds?.length ? s.patientIds : s.patientId ? [{ id: s.patientId }] : [];
    const pid3 = ids.length ? ids.map((p) => trimComps([e(p.id), '', '', e(p.authority), e(p.type)])).join('~') : '""';
    const pid5 = s.patientName ? s.patientName.split('^').map((x) => e(x)).join('^') : '""';
    segs.push(trimFields(['PID', '1', '', pid3, '', pid5, '', e(s.birthDate), e(s.sex)]));
  }
  for (const o of observations) {
    if (!isMppsStatusObservation(o) || o.value?.kind !== 'coded') throw new TypeError('buildOrmStatus: not an MPPS status observation');
    const status = o.value.code;
    if (status !== 'IP' && status !== 'CM' && status !== 'DC') throw new TypeError(`buildOrmStatus: order status '${status}' is not IP, CM or DC`);
    const ord = o.order ?? {};
    const when = isoToHl7Time(o.effectiveAt);
    // ORC (4.5.1): 1 SC status changed (Table 0119), 2 placer, 3 filler, 5 order status (Table 0038), 9 transaction time
    const orc = new Array<string>(10).fill('');
    orc[0] = 'ORC';
    orc[1] = 'SC';
    orc[2] = e(ord.placerOrderNumber);
    orc[3] = e(ord.fillerOrderNumber);
    orc[5] = status;
    orc[9] = when;
    segs.push(trimFields(orc));
    // OBR (4.5.3): 2/3 order numbers, 4 service (required), 18 accession (placer field 1, §5.3),
    // 22 results rpt/status change date/time, 24 modality (diagnostic service section)
    const obr = new Array<string>(25).fill('');
    obr[0] = 'OBR';
    obr[1] = '1';
    obr[2] = e(ord.placerOrderNumber);
    obr[3] = e(ord.fillerOrderNumber);
    const svc = ord.service;
    obr[4] = svc ? trimComps([e(svc.code), e(svc.display), e(svc.system)]) : '""';
    obr[18] = e(o.subject?.accession);
    obr[19] = e(ord.requestedProcedureId); // (0040,1001) Requested Procedure ID (protocols.md §5.3; IHE RAD TF-2 4.4.4.1.2.1)
    obr[20] = e(ord.scheduledStepId); // (0040,0009) Scheduled Procedure Step ID (§5.3)
    obr[22] = when;
    obr[24] = e(ord.section);
    segs.push(trimFields(obr));
    let nte = 0;
    for (const c of o.comments ?? []) segs.push(`NTE|${++nte}|L|${e(c)}`);
    // ZDS-1 Study Instance UID (protocols.md §5.3; IHE RAD TF-2 4.4.4.1.2.1.x): RP uid^application^Application^DICOM,
    // closing the order group as in IHE RAD ORM^O01 (ORC OBR [{NTE}] ZDS)
    if (ord.studyInstanceUid) segs.push(`ZDS|${trimComps([e(ord.studyInstanceUid), e(opts.sendingApp), 'Application', 'DICOM'])}`);
  }
  return segs.join('\r');
}
