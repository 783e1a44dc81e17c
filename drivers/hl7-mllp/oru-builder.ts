/**
 * Observations → ORU^R01^ORU_R01 HL7 v2.5.1 (protocols.md §3.4, §3.6; HL7 v2.5.1 7.3.1).
 * Pure and deterministic for the same input and `now` (and process TZ, which gives MSH-7's offset).
 */
import type { Observation, ObservationStatus, PatientIdentifier, Subject } from '../../gateway/src/contracts/observation';
import { escapeHl7, formatHl7Timestamp } from './hl7-message';
import { LOINC, MDC } from './oru-parser';

export interface OruBuildOptions {
  controlId: string; // MSH-10
  sendingApp: string; // MSH-3
  sendingFacility?: string; // MSH-4
  receivingApp?: string; // MSH-5
  receivingFacility?: string; // MSH-6
  now?: Date; // MSH-7
  processingId?: 'P' | 'T' | 'D'; // MSH-11, default P
  country?: 'VNM'; // MSH-17
  charset?: 'UNICODE UTF-8'; // MSH-18
}

const e = escapeHl7;

/** Coding system URI → HL7 Table 0396 name. */
function systemName(system: string | undefined): string {
  if (!system) return '';
  if (system === LOINC) return 'LN';
  if (system === MDC) return 'MDC';
  if (system === 'local') return 'L';
  return system;
}

/** FHIR status → OBX-11 (Table 0085). */
function statusLetter(o: Observation): string {
  if (o.statusCode) return o.statusCode;
  const m: Record<ObservationStatus, string> = {
    final: 'F',
    preliminary: 'P',
    corrected: 'C',
    amended: 'C',
    cancelled: 'X',
    registered: 'I',
    'entered-in-error': 'W',
    unknown: 'R',
  };
  return m[o.status] ?? 'R';
}

/** ISO 8601 → HL7 DTM (offset kept when present; `Z` → +0000). */
export function isoToHl7Time(iso: string | undefined): string {
  if (!iso) return '';
  const m = /^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d+)?)?)?)?)?(Z|[+-]\d{2}:?\d{2})?$/.exec(iso.trim());
  if (!m) return '';
  const [, y, mo = '', d = '', h = '', mi = '', s = '', frac = '', tz = ''] = m;
  let out = `${y}${mo}${d}${h}${mi}${h ? s || '00' : ''}${h && frac ? frac.slice(0, 5) : ''}`;
  if (tz && h) out += tz === 'Z' ? '+0000' : tz.replace(':', '');
  return out;
}

function cwe(code: string | undefined, display: string | undefined, system: string | undefined): string {
  if (!code) return '';
  return [e(code), e(display ?? ''), e(systemName(system))].join('^').replace(/\^+$/, '');
}

function patientKey(s: Subject | undefined): string {
  if (!s) return '';
  return JSON.stringify([s.patientId ?? '', s.patientIds ?? [], s.patientName ?? '', s.birthDate ?? '', s.sex ?? '']);
}

function orderKey(o: Observation): string {
  return JSON.stringify([o.order?.placerOrderNumber ?? '', o.order?.fillerOrderNumber ?? '', o.subject?.specimenId ?? '', o.order?.service?.code ?? '']);
}

function pid(s: Subject | undefined, setId: number): string {
  // PID-3 CX id^^^authority^type, PID-5 XPN, PID-7 DOB, PID-8 sex (HL7 v2.5.1 3.4.2)
  const ids: PatientIdentifier[] = s?.patientIds?.length ? s.patientIds : s?.patientId ? [{ id: s.patientId }] : [];
  const pid3 = ids.map((p) => [e(p.id), '', '', e(p.authority ?? ''), e(p.type ?? '')].join('^').replace(/\^+$/, '')).join('~');
  const pid5 = s?.patientName ? s.patientName.split('^').map(e).join('^') : '';
  return trimFields(['PID', String(setId), '', pid3, '', pid5, '', s?.birthDate ? e(s.birthDate) : '', s?.sex ? e(s.sex) : '']);
}

function obrStatus(obs: Observation[]): string {
  // OBR-25 result status (Table 0123)
  if (obs.some((o) => o.status === 'corrected' || o.status === 'amended')) return 'C';
  if (obs.every((o) => o.status === 'cancelled')) return 'X';
  if (obs.some((o) => o.status === 'preliminary' || o.status === 'registered' || o.status === 'unknown')) return 'P';
  return 'F';
}

function valueOf(o: Observation): { type: string; value: string; unit: string } {
  const v = o.value;
  if (!v) return { type: '', value: '', unit: '' };
  switch (v.kind) {
    case 'quantity': {
      const unit = v.unit ? `${e(v.unit)}^^UCUM` : '';
      // the number as the device sent it keeps its precision ('4.20'); HL7 v2.5.1 2.A.47 NM allows it
      const num = v.decimal && /^[+-]?(\d+\.?\d*|\.\d+)$/.test(v.decimal) ? v.decimal : String(v.value);
      // SN for comparators (HL7 v2.5.1 2.A.70), NM otherwise (2.A.47)
      if (v.comparator) return { type: 'SN', value: `${e(v.comparator)}^${num}`, unit };
      return { type: 'NM', value: num, unit };
    }
    case 'coded':
      return { type: 'CWE', value: cwe(v.code, v.display, v.system), unit: '' };
    case 'text': {
      const t = o.valueType === 'TX' || o.valueType === 'FT' ? o.valueType : 'ST';
      return { type: t, value: e(v.text), unit: '' };
    }
  }
}

function trimFields(f: string[]): string {
  while (f.length > 2 && f[f.length - 1] === '') f.pop();
  return f.join('|');
}

/** Build one ORU^R01 v2.5.1 for a list of observations (grouped by patient, then order/specimen). */
export function buildOruR251(observations: Observation[], opts: OruBuildOptions): string {
  const segs: string[] = [];
  // MSH (HL7 v2.5.1 2.14.9): 7 time with offset, 9 ORU^R01^ORU_R01, 10 control id, 11, 12 2.5.1, 17, 18
  segs.push(
    trimFields([
      'MSH',
      '^~\\&',
      e(opts.sendingApp),
      e(opts.sendingFacility ?? ''),
      e(opts.receivingApp ?? ''),
      e(opts.receivingFacility ?? ''),
      formatHl7Timestamp(opts.now ?? new Date()),
      '',
      'ORU^R01^ORU_R01',
      e(opts.controlId),
      opts.processingId ?? 'P',
      '2.5.1',
      '',
      '',
      '',
      '',
      opts.country ?? '',
      opts.charset ?? 'UNICODE UTF-8',
    ]),
  );

  // group: patient → order (first appearance order, stable)
  const patients = new Map<string, { subject: Subject | undefined; orders: Map<string, Observation[]> }>();
  for (const o of observations) {
    const pk = patientKey(o.subject);
    let p = patients.get(pk);
    if (!p) patients.set(pk, (p = { subject: o.subject, orders: new Map() }));
    const ok = orderKey(o);
    let list = p.orders.get(ok);
    if (!list) p.orders.set(ok, (list = []));
    list.push(o);
  }

  let pidSet = 0;
  for (const p of patients.values()) {
    // PATIENT_RESULT group; PID optional in 7.3.1 but HIS/LIS expect it: emitted when there is a patient
    if (p.subject && (p.subject.patientId || p.subject.patientIds?.length || p.subject.patientName)) segs.push(pid(p.subject, ++pidSet));
    let obrSet = 0;
    for (const obs of p.orders.values()) {
      const first = obs[0];
      const ord = first.order ?? {};
      const specimenId = first.subject?.specimenId;
      // OBR-2 placer, 3 filler (else specimen id), 4 service, 7 observation time, 24 section, 25 status (7.4.1)
      const obr = new Array<string>(26).fill('');
      obr[0] = 'OBR';
      obr[1] = String(++obrSet);
      obr[2] = e(ord.placerOrderNumber ?? '');
      obr[3] = e(ord.fillerOrderNumber ?? specimenId ?? '');
      obr[4] = ord.service ? cwe(ord.service.code, ord.service.display, ord.service.system) : '';
      obr[7] = isoToHl7Time(ord.collectedAt ?? first.effectiveAt);
      obr[24] = e(ord.section ?? '');
      obr[25] = obrStatus(obs);
      segs.push(obr.join('|'));
      let obxSet = 0;
      for (const o of obs) {
        const v = valueOf(o);
        const obx = new Array<string>(19).fill('');
        obx[0] = 'OBX';
        obx[1] = String(++obxSet);
        obx[2] = v.type;
        obx[3] = cwe(o.code.code, o.code.display, o.code.system);
        obx[4] = e(o.subId ?? '');
        obx[5] = v.value;
        obx[6] = v.unit;
        obx[7] = e(o.referenceRange ?? '');
        obx[8] = (o.interpretation ?? []).map(e).join('~');
        obx[11] = e(statusLetter(o));
        obx[14] = isoToHl7Time(o.effectiveAt);
        obx[16] = e(o.operator ?? '');
        obx[18] = o.equipment ? [e(o.equipment.id), e(o.equipment.name ?? '')].join('^').replace(/\^+$/, '') : '';
        segs.push(trimFields(obx));
        let nte = 0;
        for (const c of o.comments ?? []) segs.push(`NTE|${++nte}|L|${e(c)}`);
      }
      // SPECIMEN group: SPM-2 specimen id (7.4.3)
      if (specimenId) segs.push(`SPM|1|${e(specimenId)}`);
    }
  }
  return segs.join('\r');
}
