/**
 * Observations → ORU^R01^ORU_R01 HL7 v2.5.1 (protocols.md §3.4, §3.6; HL7 v2.5.1 7.3.1).
 * Pure and deterministic for the same input and `now` (and process TZ, which gives MSH-7's offset).
 */
import { nmText } from '../../gateway/src/units/number-text';
import type { Observation, ObservationStatus, PatientIdentifier, QualityFlag, Subject } from '../../gateway/src/contracts/observation';
import { isValidUcum } from '../../gateway/src/units/ucum';
import { escapeControls, escapeHl7, formatHl7Timestamp } from './hl7-message';
import { LOINC, MDC, TABLE_0085 } from './oru-parser';
import { inTable0396 } from './table-0396';
import { table0203Type } from '../../gateway/src/identifiers/table-0203';

export interface OruBuildOptions {
  controlId: string; // MSH-10
  sendingApp: string; // MSH-3
  sendingFacility?: string; // MSH-4
  receivingApp?: string; // MSH-5
  receivingFacility?: string; // MSH-6
  now?: Date; // MSH-7
  /** MSH-11 when the observations carry none (ASTM H.12 empty). The source message's own id wins: P/T/D pass through. */
  processingId?: 'P' | 'T' | 'D';
  country?: 'VNM'; // MSH-17
  charset?: 'UNICODE UTF-8'; // MSH-18
  /** Is this unit valid UCUM? (OBX-6 is labelled UCUM only then). Default: gateway/src/units/ucum.ts. */
  isUcum?: (unit: string) => boolean;
}

const e = (s: string): string => escapeHl7(s);

const KNOWN_SYSTEMS: Record<string, string> = { 'http://snomed.info/sct': 'SCT', 'http://unitsofmeasure.org': 'UCUM' };

/**
 * Coding system → HL7 Table 0396 name (HL7 v2.5.1 2.A.13 CWE-3). HL7 names pass as they are; a URI
 * we know has its 0396 name; any other URI (a profile's own `urn:iomt:astm:<profile>` namespace) is a
 * local code: `L` (Table 0396 "local general code"), the sending application and OBX-18 say whose.
 */
function systemName(system: string | undefined): string {
  if (!system) return '';
  if (system === LOINC) return 'LN';
  if (system === MDC) return 'MDC';
  if (system === 'local') return 'L';
  if (KNOWN_SYSTEMS[system]) return KNOWN_SYSTEMS[system];
  if (/[:/]/.test(system)) return 'L';
  if (inTable0396(system)) return system;
  // a device's own name outside Table 0396 (e.g. `ERBA`) becomes the local form 99zzz: still recognisable
  const local = system.replace(/[^A-Za-z0-9]/g, '').slice(0, 8);
  return local ? `99${local}` : 'L';
}

/** HL7 v2.5.1 Table 0078 (abnormal flags). Other device flags go in an NTE, never lost, never in OBX-8. */
const TABLE_0078 = new Set(['<', '>', 'A', 'AA', 'B', 'D', 'H', 'HH', 'I', 'L', 'LL', 'MS', 'N', 'null', 'R', 'S', 'U', 'VS', 'W']);

/** FHIR status → Table 0085, for observations that carry no Table 0085 letter (HL7 v2.5.1 7.4.2.11). */
const STATUS_0085: Record<ObservationStatus, string> = {
  final: 'F',
  preliminary: 'P',
  corrected: 'C',
  amended: 'C',
  cancelled: 'X',
  registered: 'I',
  'entered-in-error': 'W',
  unknown: 'R',
};

/** OBX-11 (Table 0085): the parser's mapped letter (by meaning, never the raw device letter of another table). */
function statusLetter(o: Observation): string {
  if (o.statusCode && /^[A-Z]$/.test(o.statusCode) && o.statusCode in TABLE_0085) return o.statusCode;
  return STATUS_0085[o.status] ?? 'R';
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

function trimComps(c: string[]): string {
  let n = c.length;
  while (n > 0 && c[n - 1] === '') n--;
  return c.slice(0, n).join('^');
}

function cwe(code: string | undefined, display: string | undefined, system: string | undefined): string {
  if (!code) return '';
  return trimComps([e(code), e(display ?? ''), e(systemName(system))]);
}

function patientKey(s: Subject | undefined): string {
  if (!s) return '';
  return JSON.stringify([s.patientId ?? '', s.patientIds ?? [], s.patientName ?? '', s.birthDate ?? '', s.sex ?? '']);
}

function orderKey(o: Observation): string {
  return JSON.stringify([o.order?.placerOrderNumber ?? '', o.order?.fillerOrderNumber ?? '', o.subject?.specimenId ?? '', o.order?.service?.code ?? '']);
}

function pid(s: Subject, setId: number): string {
  // (a PID is sent when the device named the patient at all: an id, a name or a birth date)
  // PID-3 CX id^^^authority^type (Table 0203), PID-5 XPN, PID-7 DOB, PID-8 sex (HL7 v2.5.1 3.4.2)
  const ids: PatientIdentifier[] = s.patientIds?.length ? s.patientIds : s.patientId ? [{ id: s.patientId }] : [];
  // CX-5 identifier type is a Table 0203 code; a device that did not say gets U (unspecified identifier);
  // a Vietnamese HIS's own type name (CCCD, BHYT, BHXH ...) becomes its Table 0203 code (NNVNM, SB, SS: issue 13)
  // PID-3 is required (3.4.2.3): a device that sent a name but no identifier gets the HL7 null "" (2.5.3), so
  // the name, birth date and sex still reach the HIS (to be matched by a person), never a made-up id
  const pid3 = ids.length ? ids.map((p) => trimComps([e(p.id), '', '', e(p.authority ?? ''), e(table0203Type(p.type))])).join('~') : '""';
  // PID-5 is required (3.4.2.5): a device that sent no name gets the HL7 null "" (2.5.3: present, no value)
  const pid5 = s.patientName ? s.patientName.split('^').map((x) => e(x)).join('^') : '""';
  return trimFields(['PID', String(setId), '', pid3, '', pid5, '', s.birthDate ? e(s.birthDate) : '', s.sex ? e(s.sex) : '']);
}

function obrStatus(obs: Observation[]): string {
  // OBR-25 result status (Table 0123)
  const letters = obs.map(statusLetter);
  if (letters.some((l) => l === 'C')) return 'C';
  if (letters.every((l) => l === 'X')) return 'X';
  if (letters.some((l) => l === 'P' || l === 'R' || l === 'I' || l === 'S')) return 'P';
  return 'F';
}

/** OBX-6 (HL7 v2.5.1 7.4.2.6 CE): `unit^^UCUM` only for valid UCUM; otherwise the device's unit as a local code. */
function unitField(unit: string | undefined, isUcum: (u: string) => boolean): string {
  if (!unit) return '';
  return isUcum(unit) ? `${e(unit)}^^UCUM` : `${e(unit)}^^L`; // Table 0396 L: local general code
}

const NM_FORM = /^[+-]?(?:\d+(?:\.\d*)?|\.\d+)$/; // one way per digit: linear (issue 10)
/**
 * Types a text value keeps as OBX-2 (HL7 v2.5.1 Table 0125); anything else goes as ST. IS and ID (v2.3.1
 * devices send them, Erba does) are not in the v2.5.1 table: they go as ST with the same text.
 */
const TEXT_TYPES = new Set(['ST', 'TX', 'FT', 'DT', 'TM', 'DTM', 'TS']);
const DTM_FORM = /^\d{4}(?:\d{2}(?:\d{2}(?:\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,4})?)?)?)?)?)?(?:[+-]\d{4})?$/;
/** HL7 v2.5.1 2.A.21 DT, 2.A.75 TM, 2.A.22 DTM (TS component 1). */
const DATE_FORMS: Record<string, RegExp> = {
  DT: /^\d{4}(?:\d{2}(?:\d{2})?)?$/,
  TM: /^\d{2}(?:\d{2}(?:\d{2}(?:\.\d{1,4})?)?)?(?:[+-]\d{4})?$/,
  DTM: DTM_FORM,
  TS: DTM_FORM,
};

function numberText(v: { value: number; decimal?: string }): string {
  // the number as the device sent it keeps its precision ('4.20'); HL7 v2.5.1 2.A.47 NM allows it
  return v.decimal && NM_FORM.test(v.decimal) ? v.decimal : nmText(v.value);
}

function valueOf(o: Observation, isUcum: (u: string) => boolean): { type: string; value: string; unit: string } {
  const v = o.value;
  if (!v) return { type: '', value: '', unit: '' };
  switch (v.kind) {
    case 'quantity': {
      const unit = unitField(v.unit, isUcum);
      const num = numberText(v);
      // SN for comparators (HL7 v2.5.1 2.A.70 comparator^num1), NM otherwise (2.A.47)
      if (v.comparator) return { type: 'SN', value: `${e(v.comparator)}^${num}`, unit };
      return { type: 'NM', value: num, unit };
    }
    case 'structured-numeric':
      // HL7 v2.5.1 2.A.70 SN: comparator^num1^separator/suffix^num2, as sent
      return { type: 'SN', value: trimComps([e(v.comparator ?? ''), e(v.num1 ?? ''), e(v.separator ?? ''), e(v.num2 ?? '')]), unit: unitField(v.unit, isUcum) };
    case 'coded': {
      // HL7 v2.5.1 2.A.13 CWE: id^text^system^alt id^alt text^alt system^version^alt version^original text
      const a = v.alternate;
      const comps = [e(v.code), e(v.display ?? ''), e(systemName(v.system)), e(a?.code ?? ''), e(a?.display ?? ''), e(a ? systemName(a.system) : ''), e(v.systemVersion ?? ''), e(v.alternateSystemVersion ?? ''), e(v.originalText ?? '')];
      return { type: o.valueType === 'CE' ? 'CE' : 'CWE', value: trimComps(comps), unit: unitField(v.unit, isUcum) };
    }
    case 'encapsulated':
      // HL7 v2.5.1 2.A.24 ED: source application^type of data^data subtype^encoding^data (data kept as sent)
      return { type: 'ED', value: [e(v.sourceApplication ?? ''), e(v.typeOfData), e(v.dataSubtype ?? ''), e(v.encoding), e(v.data)].join('^'), unit: '' };
    case 'reference':
      // HL7 v2.5.1 2.A.65 RP: pointer^application ID^type of data^subtype
      return { type: 'RP', value: trimComps([e(v.pointer), e(v.application ?? ''), e(v.typeOfData ?? ''), e(v.subtype ?? '')]), unit: '' };
    case 'text': {
      // an NM that was not a number is sent as ST with the original text (issue 8); other types keep theirs,
      // but a DT/TM/DTM/TS whose text is not of that form goes as ST (never an invalid DT, 2.A.21/2.A.75/2.A.22)
      let t = o.valueType && TEXT_TYPES.has(o.valueType) ? o.valueType : 'ST';
      if ((t === 'DT' || t === 'TM' || t === 'DTM' || t === 'TS') && !(v.repetitions ?? [v.text]).every((x) => DATE_FORMS[t].test(x))) t = 'ST';
      if ((t === 'FT' || t === 'TX') && v.formatted) return { type: t, value: v.formatted.map(escapeControls).join('~'), unit: '' };
      const formatted = t === 'FT';
      const reps = v.repetitions ?? [v.text];
      // repetitions kept, empty ones included (TX/FT blank lines, HL7 v2.5.1 2.A.79 / 2.A.31); the unit stays
      return { type: t, value: reps.map((r) => escapeHl7(r, { formatted })).join('~'), unit: unitField(v.unit, isUcum) };
    }
  }
}

/** NTE text for the data-quality flags of one result (NTE-2 source O: other system; NTE-4 RE remark, Table 0364). */
function qualityNote(f: QualityFlag): string {
  const parts = [`IOMT-GW data quality: ${f.code}`];
  if (f.location) parts.push(`at ${f.location.replace(/^([A-Z][A-Z0-9]{0,2})\^(\d+)(?:\^(\d+))?$/, (_m, seg: string, n: string, fld?: string) => `${seg}[${n}]${fld ? `-${fld}` : ''}`)}`);
  if (f.text) parts.push(`- ${f.text}`);
  if (f.original !== undefined && f.original.length <= 200) parts.push(`(device sent: ${f.original})`);
  return parts.join(' ');
}

/**
 * OBX-18 equipment instance identifier (HL7 v2.5.1 7.4.2.18, EI, repeating): the device's id^name; then
 * the machine code the hospital registered with social insurance (MA_MAY, QĐ 130/QĐ-BYT) as a second
 * repetition <code>^MA_MAY (EI-2 namespace id).
 */
/** NTE text for an alarm's attributes (IHE PCD TF-2 ACM): what the PCD-04 output sends as OBX rows. No PHI. */
function alarmNote(a: NonNullable<Observation['alarm']>): string {
  const parts = [`priority ${a.priority}`];
  if (a.kind) parts.push(`kind ${a.kind}`);
  if (a.phase) parts.push(`phase ${a.phase}`);
  if (a.state) parts.push(`state ${a.state}`);
  if (a.inactivationState) parts.push(`inactivation ${a.inactivationState}`);
  if (a.id) parts.push(`id ${a.id}`);
  if (a.source) parts.push(`source ${a.source}`);
  if (a.text) parts.push(`text ${a.text}`);
  return `IOMT-GW alarm: ${parts.join('; ')}`;
}

function equipmentField(o: Observation): string {
  const eq = o.equipment;
  if (!eq) return '';
  const reps = [trimComps([e(eq.id), e(eq.name ?? '')])];
  if (eq.machineCode) reps.push(`${e(eq.machineCode)}^MA_MAY`);
  return reps.join('~');
}

function trimFields(f: string[]): string {
  while (f.length > 2 && f[f.length - 1] === '') f.pop();
  return f.join('|');
}

/**
 * Build one ORU^R01 v2.5.1 for a list of observations (grouped by patient, then order/specimen).
 * Rules (issue 8 part 5; HL7 v2.5.1 7.3.1 ORU^R01 is the contract):
 * - MSH-11 passes through the source message's processing id (2.15.9.11, Table 0103); MSH-18 `UNICODE UTF-8`.
 * - PID when the device named the patient (the PATIENT group is optional in 7.3.1): PID-3 types are Table
 *   0203 codes (the parsers map them; untyped → U); PID-3 "" when it sent a name but no id; PID-5 "" when no name.
 * - OBR-4 (required, 7.4.1.4): the order's service, else the first result's code.
 * - OBX-2/5 by value kind: NM, SN (comparators, ranges, ratios), CWE, ED, RP, TX/FT/ST … with their
 *   components; control characters as \Xhh\ (2.7.4), never raw.
 * - OBX-6 `unit^^UCUM` only for valid UCUM, else `unit^^L`.
 * - OBX-11 Table 0085 letter mapped by meaning by the parser (never the raw ASTM letter).
 * - Data-quality flags → NTE after the OBX (source O, type RE).
 * - SPM (SPM-2 id, SPM-4 Table 0487 type) only when the specimen type is known: SPM-4 is required.
 */
export function buildOruR251(observations: Observation[], opts: OruBuildOptions): string {
  const isUcum = opts.isUcum ?? isValidUcum;
  const segs: string[] = [];
  const pidSrc = observations.find((o) => o.processingId)?.processingId;
  // Table 0103 has P, T, D only: another source id (ASTM H.12 'Q', quality control) is not production: T
  const processingId = !pidSrc ? opts.processingId ?? 'P' : /^[PTD]$/.test(pidSrc) ? pidSrc : 'T';
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
      processingId,
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
  let obrSet = 0;
  for (const p of patients.values()) {
    const s = p.subject;
    // OBR-1 counts within a PATIENT_RESULT group: it restarts only after a PID is written (4.5.3.1)
    if (s && (s.patientId || s.patientIds?.length || s.patientName || s.birthDate)) {
      segs.push(pid(s, ++pidSet));
      obrSet = 0;
    }
    for (const obs of p.orders.values()) {
      const first = obs[0];
      const ord = first.order ?? {};
      const specimenId = first.subject?.specimenId;
      // OBR-2 placer, 3 filler (else specimen id), 4 service (required), 7 observation time, 24 section, 25 status (7.4.1)
      const obr = new Array<string>(26).fill('');
      obr[0] = 'OBR';
      obr[1] = String(++obrSet);
      obr[2] = e(ord.placerOrderNumber ?? '');
      obr[3] = e(ord.fillerOrderNumber ?? specimenId ?? '');
      const svc = ord.service ?? first.code;
      obr[4] = cwe(svc.code, svc.display, svc.system);
      obr[7] = isoToHl7Time(ord.collectedAt ?? first.effectiveAt);
      obr[24] = e(ord.section ?? '');
      obr[25] = obrStatus(obs);
      segs.push(obr.join('|'));
      let obxSet = 0;
      for (const o of obs) {
        const v = valueOf(o, isUcum);
        const obx = new Array<string>(19).fill('');
        obx[0] = 'OBX';
        obx[1] = String(++obxSet);
        obx[2] = v.type;
        obx[3] = cwe(o.code.code, o.code.display, o.code.system);
        obx[4] = e(o.subId ?? '');
        obx[5] = v.value;
        obx[6] = v.unit;
        obx[7] = e(o.referenceRange ?? '');
        const flags = o.interpretation ?? [];
        obx[8] = flags.filter((x) => TABLE_0078.has(x)).map((x) => e(x)).join('~');
        const deviceFlags = flags.filter((x) => !TABLE_0078.has(x));
        obx[11] = statusLetter(o);
        obx[14] = isoToHl7Time(o.effectiveAt);
        obx[16] = e(o.operator ?? '');
        // OBX-17 observation method, CWE (HL7 v2.5.1 7.4.2.17): as the device sent it
        if (o.method) obx[17] = cwe(o.method.code, o.method.display, o.method.system);
        obx[18] = equipmentField(o);
        segs.push(trimFields(obx));
        let nte = 0;
        for (const c of o.comments ?? []) segs.push(`NTE|${++nte}|L|${e(c)}`);
        // device flags outside Table 0078 (ARCHITECT `EXP`, Sysmex `*`): kept as a remark beside the result
        if (deviceFlags.length) segs.push(`NTE|${++nte}|O|${e(`Device flags (not HL7 Table 0078): ${deviceFlags.join(', ')}`)}|RE^Remark^HL70364`);
        for (const f of o.quality ?? []) segs.push(`NTE|${++nte}|O|${e(qualityNote(f))}|RE^Remark^HL70364`);
        // an alarm (IHE PCD ACM) has no place in a v2.5.1 lab ORU: its attributes go in a remark, never dropped
        if (o.alarm) segs.push(`NTE|${++nte}|O|${e(alarmNote(o.alarm))}|RE^Remark^HL70364`);
      }
      // SPECIMEN group (7.4.3): SPM-2 specimen id, SPM-4 type (required, Table 0487)
      const type = ord.specimenType;
      if (type) {
        const sys = type.system === 'HL70070' || type.system === 'HL70487' ? 'HL70487' : systemName(type.system);
        segs.push(trimFields(['SPM', '1', e(specimenId ?? ''), '', trimComps([e(type.code), e(type.display ?? ''), e(sys)])]));
      }
    }
  }
  return segs.join('\r');
}
