/**
 * Observations → IHE PCD messages (HL7 v2.6): PCD-01 DEC ORU^R01 (MSH-21 IHE_PCD_001) and PCD-04 ACM
 * ORU^R40 (MSH-21 IHE_PCD_ACM_001). IHE PCD TF-2 (Device Enterprise Communication, Alarm Communication
 * Management); protocols.md §4. Pure and deterministic for the same input and `now` (and process TZ).
 *
 * PCD-01 layout, per patient/bed group: PID, PV1, OBR (OBR-4 182777000^monitoring of patient^SCT), then per
 * device an MDS row (OBX-4 `m.0.0.0`, OBX-18 `<EUI-64>^^<EUI-64>^EUI-64`, IHE PCD TF-2 B.8.7) and its metrics
 * with their OBX-4 containment (MDS.VMD.CHAN.METRIC: the device's own when it sent one, else `m.1.1.n`).
 * OBX-6 is the MDC unit when the code map knows it (IHE PCD prefers MDC units), else UCUM.
 */
import { nmText } from '../../units/number-text';
import type { AlarmInfo, Observation, QualityFlag } from '../../contracts/observation';
import { escapeHl7, formatHl7Timestamp } from '../../../../drivers/hl7-mllp/hl7-message';
import { isValidUcum } from '../../units/ucum';
import { LOINC_SYSTEM, MDC_SYSTEM, lookupVital, normalizeUnit } from '../../vitals/code-map';

export interface PcdBuildOptions {
  controlId: string; // MSH-10
  /** MSH-3 namespace id (the gateway as the Device Observation Reporter). */
  sendingApp: string;
  /** MSH-3 universal id: the gateway's own EUI-64 (16 hex digits), when it has one. */
  sendingEui64?: string;
  sendingFacility?: string; // MSH-4
  receivingApp?: string; // MSH-5
  receivingFacility?: string; // MSH-6
  now: Date; // MSH-7
  processingId?: 'P' | 'T' | 'D';
}

export const PCD_001 = 'IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO';
export const PCD_ACM_001 = 'IHE_PCD_ACM_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.4.1^ISO';
const MDS_CODE = '69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC';
const e = (s: string | undefined): string => escapeHl7(s ?? '');

/** ISO 8601 → HL7 DTM `YYYYMMDDHHMMSS[.S+][+ZZZZ]` (HL7 v2.6 2.A.22); '' when unreadable. */
export function isoToHl7(iso: string | undefined): string {
  if (!iso) return '';
  const m = /^(\d{4})(?:-(\d{2})(?:-(\d{2})(?:T(\d{2}):(\d{2})(?::(\d{2})(\.\d{1,4})?\d*)?(Z|[+-]\d{2}:?\d{2})?)?)?)?$/.exec(iso);
  if (!m) return '';
  const [, y, mo = '', d = '', h = '', mi = '', s = '', frac = '', tz = ''] = m;
  const zone = tz === 'Z' ? '+0000' : tz.replace(':', '');
  return `${y}${mo}${d}${h}${mi}${s}${s ? frac : ''}${h ? zone : ''}`;
}

function msh(type: string, profile: string, o: PcdBuildOptions, processingId: string): string {
  const sender = o.sendingEui64 ? `${e(o.sendingApp)}^${o.sendingEui64.toUpperCase()}^EUI-64` : e(o.sendingApp);
  // MSH-15 NE / MSH-16 AL as IHE PCD TF-2 3.1 (original mode acknowledgement on the MLLP link)
  return ['MSH', '^~\\&', sender, e(o.sendingFacility), e(o.receivingApp), e(o.receivingFacility), formatHl7Timestamp(o.now), '', type, e(o.controlId), processingId, '2.6', '', '', 'NE', 'AL', '', 'UNICODE UTF-8', '', '', profile].join('|');
}

function pid(o: Observation): string {
  // PID-3 empty when the monitor is not bound to a patient (IHE PCD: unassociated) — PID kept, id not invented
  const s = o.subject;
  const id = s?.patientIds?.[0];
  const cx = id ? `${e(id.id)}^^^${e(id.authority)}^${e(id.type)}`.replace(/\^+$/, '') : s?.patientId ? e(s.patientId) : '';
  return ['PID', '', '', cx, '', s?.patientName ? s.patientName.split('^').map(e).join('^') : '', '', s?.birthDate ?? '', s?.sex ?? ''].join('|').replace(/\|+$/, '');
}

function pv1(o: Observation): string {
  // PV1-3 PL point of care^room^bed^facility (HL7 v2.6 3.4.3.3)
  const l = o.location;
  const pl = l ? [l.pointOfCare, l.room, l.bed, l.facility].map(e).join('^').replace(/\^+$/, '') : '';
  return `PV1||I|${pl}`;
}

function codeField(c: { system: string; code: string; display?: string }): string {
  const sys = c.system === MDC_SYSTEM ? 'MDC' : c.system === LOINC_SYSTEM ? 'LN' : /^[A-Za-z0-9]{1,12}$/.test(c.system) && c.system !== 'local' ? c.system : 'L';
  return `${e(c.code)}^${e(c.display)}^${sys}`;
}

function unitField(unit: string | undefined, code?: { system: string; code: string }): string {
  if (!unit) return '';
  // the metric's own MDC unit first: /min is beats for a heart rate and breaths for a respiration rate
  const metric = code?.system === MDC_SYSTEM ? lookupVital(code.code) : undefined;
  if (metric?.mdcUnit && metric.ucum === unit) return `${metric.mdcUnit.code}^${metric.mdcUnit.refid}^MDC`;
  const u = normalizeUnit(unit);
  if (u?.mdcUnit && u.mdcUnitCode) return `${u.mdcUnitCode}^${u.mdcUnit}^MDC`;
  if (isValidUcum(unit)) return `${e(unit)}^${e(unit)}^UCUM`;
  return `${e(unit)}^^L`;
}

/** A number as HL7 NM text, never in exponent form (gateway/src/units/number-text.ts). */
export { nmText };

/** OBX-2 and OBX-5 for a value (HL7 v2.6 2.A NM / ST / CWE / SN). */
function valueFields(o: Observation): [string, string, string] {
  const v = o.value;
  if (!v) return ['', '', ''];
  // an alarm's value is its source metric's (OBX-3 is the event): /min of a heart-rate alarm is beats per minute
  if (o.alarm?.source && o.code.system === MDC_SYSTEM && !lookupVital(o.code.code)?.ucum && lookupVital(o.alarm.source)?.ucum) o = { ...o, code: { system: MDC_SYSTEM, code: o.alarm.source } };
  switch (v.kind) {
    case 'quantity':
      if (v.comparator) return ['SN', `${e(v.comparator)}^${v.decimal ?? nmText(v.value)}`, unitField(v.unit, o.code)];
      return ['NM', v.decimal ?? nmText(v.value), unitField(v.unit, o.code)];
    case 'text':
      return ['ST', e(v.text), unitField(v.unit, o.code)];
    case 'coded':
      return ['CWE', `${e(v.code)}^${e(v.display)}^${e(v.system === MDC_SYSTEM ? 'MDC' : v.system)}`, unitField(v.unit, o.code)];
    case 'structured-numeric':
      return ['SN', [v.comparator, v.num1, v.separator, v.num2].map(e).join('^'), unitField(v.unit, o.code)];
    default:
      return ['ST', '', ''];
  }
}

const TABLE_0078 = new Set(['<', '>', 'A', 'AA', 'B', 'D', 'H', 'HH', 'I', 'L', 'LL', 'MS', 'N', 'R', 'S', 'U', 'VS', 'W']);

function obx(set: number, o: Observation, subId: string, extraFlags: string[] = []): string[] {
  const [type, value, unit] = valueFields(o);
  const flags = [...(o.interpretation ?? []).filter((f) => TABLE_0078.has(f)), ...extraFlags].map(e).join('~');
  const status = o.statusCode ?? 'R';
  // OBX-17 observation method (HL7 v2.6 7.4.2.17, CWE; IHE PCD: AMEAS, MMEAS ...) as the device sent it
  const method = o.method ? (o.method.code ? codeField(o.method) : `^${e(o.method.display)}`) : '';
  const fields = ['OBX', String(set), type, codeField(o.code), subId, value, unit, e(o.referenceRange), flags, '', '', status, '', '', isoToHl7(o.effectiveAt), '', '', method];
  const out = [fields.join('|').replace(/\|+$/, '')];
  // what the device sent that OBX-8 cannot carry, and data-quality flags, go in NTE (never dropped)
  const notes = [
    ...(o.interpretation ?? []).filter((f) => !TABLE_0078.has(f) && !extraFlags.includes(f)).map((f) => `Device flag (not HL7 Table 0078): ${f}`),
    ...(o.quality ?? []).map((q: QualityFlag) => `IOMT-GW data quality: ${q.code}${q.text ? ` - ${q.text}` : ''}`),
  ];
  notes.forEach((t, i) => out.push(`NTE|${i + 1}|O|${e(t)}`));
  return out;
}

interface Group {
  key: string;
  first: Observation;
  items: Observation[];
}

function groupBy(observations: Observation[], keyOf: (o: Observation) => string): Group[] {
  const groups: Group[] = [];
  const byKey = new Map<string, Group>();
  for (const o of observations) {
    const k = keyOf(o);
    let g = byKey.get(k);
    if (!g) {
      g = { key: k, first: o, items: [] };
      byKey.set(k, g);
      groups.push(g);
    }
    g.items.push(o);
  }
  return groups;
}

const deviceOf = (o: Observation): string => o.equipment?.eui64 ?? o.equipment?.id ?? o.deviceId;
const patientOf = (o: Observation): string => `${o.subject?.patientId ?? ''}\u0000${o.location?.bed ?? ''}`;

function mdsRow(set: number, mds: number, o: Observation): string {
  const eui = o.equipment?.eui64;
  const ei = eui ? `${eui}^^${eui}^EUI-64` : o.equipment?.id ? e(o.equipment.id) : e(o.deviceId);
  return `OBX|${set}||${MDS_CODE}|${mds}.0.0.0|||||||X|||||||${ei}`;
}

/** PCD-01 ORU^R01 v2.6. @throws TypeError without observations. */
export function buildPcd01(observations: Observation[], o: PcdBuildOptions): string {
  if (!observations.length) throw new TypeError('PCD-01: no observations');
  const seg: string[] = [msh('ORU^R01^ORU_R01', PCD_001, o, observations[0].processingId || o.processingId || 'P')];
  let obr = 0;
  for (const pg of groupBy(observations, patientOf)) {
    seg.push(pid(pg.first), pv1(pg.first));
    const when = pg.items.map((x) => x.effectiveAt).filter(Boolean).sort()[0];
    const filler = `${e(pg.first.messageUid)}^${e(o.sendingApp)}`;
    seg.push(`OBR|${++obr}|${filler}|${filler}|182777000^monitoring of patient^SCT|||${isoToHl7(when)}`);
    let set = 0;
    let mdsIndex = 0;
    for (const dg of groupBy(pg.items, deviceOf)) {
      mdsIndex++;
      seg.push(mdsRow(++set, mdsIndex, dg.first));
      let metric = 0;
      for (const x of dg.items) {
        // the device's own containment when it sent one (first facet renumbered to this MDS), else m.1.1.n
        const sub = x.subId && /^\d+(\.\d+){3,4}$/.test(x.subId) ? `${mdsIndex}${x.subId.slice(x.subId.indexOf('.'))}` : `${mdsIndex}.1.1.${++metric}`;
        seg.push(...obx(++set, x, sub));
      }
    }
  }
  return seg.join('\r');
}

const PHASE_CODE = '68481^MDC_ATTR_EVENT_PHASE^MDC';
const STATE_CODE = '68482^MDC_ATTR_ALARM_STATE^MDC';
const INACTIVATION_CODE = '68483^MDC_ATTR_ALARM_INACTIVATION_STATE^MDC';
const PRIORITY_CODE = '68484^MDC_ATTR_ALARM_PRIORITY^MDC';
const TYPE_CODE = '68485^MDC_ATTR_ALERT_TYPE^MDC';
const SOURCE_CODE = '68480^MDC_ATTR_ALERT_SOURCE^MDC';

/** ACM alert type (IHE PCD ACM): SP physiological, ST technical. */
const typeOf = (a: AlarmInfo): string => (a.kind === 'physiological' ? 'SP' : a.kind === 'technical' ? 'ST' : '');

/**
 * PCD-04 ORU^R40 v2.6: one OBR (OBR-4 196616^MDC_EVT_ALARM^MDC, OBR-3 the alarm id) per alarm, the MDS
 * row, the event row (OBX-8 priority~type), then the attribute rows (source, phase, state, inactivation
 * state, priority, type) under the event's containment (five facets). Rows that came in as their own alarm
 * attribute (one AlarmInfo has no field for) follow their alarm. OBX-17 carries the method as received.
 * @throws TypeError when no observation is an alarm.
 */
export function buildPcd04(observations: Observation[], o: PcdBuildOptions): string {
  const alarms = observations.filter((x) => x.alarm);
  if (!alarms.length) throw new TypeError('PCD-04: no alarm observations');
  const seg: string[] = [msh('ORU^R40^ORU_R40', PCD_ACM_001, o, alarms[0].processingId || o.processingId || 'P')];
  let obr = 0;
  let lastPatient = '';
  let group: { base: string; next: number; set: number } | undefined;
  for (const a of alarms) {
    const info = a.alarm as AlarmInfo;
    const isAttr = (a.code.display ?? '').startsWith('MDC_ATTR_');
    if (isAttr && group) {
      seg.push(...obx(++group.set, a, `${group.base}.${group.next++}`));
      continue;
    }
    const pk = patientOf(a);
    if (pk !== lastPatient || obr === 0) {
      seg.push(pid(a), pv1(a));
      lastPatient = pk;
    }
    const id = info.id ? info.id.split('^').map(e).join('^') : `${e(a.id)}^${e(o.sendingApp)}`;
    seg.push(`OBR|${++obr}||${id}|196616^MDC_EVT_ALARM^MDC|||${isoToHl7(a.effectiveAt ?? a.receivedAt)}`);
    let set = 0;
    seg.push(mdsRow(++set, 1, a));
    // five facets MDS.VMD.CHAN.METRIC.FACET for alarm rows (protocols.md §4.1)
    const parts = (a.subId ?? '').split('.').filter((p) => /^\d+$/.test(p));
    const base = parts.length >= 5 ? `1.${parts.slice(1, 4).join('.')}` : parts.length === 4 ? `1.${parts.slice(1).join('.')}` : '1.1.1.1';
    const eventFlags = [info.priority, typeOf(info)].filter((f) => f);
    seg.push(...obx(++set, a, `${base}.1`, eventFlags));
    let facet = 2;
    const attr = (code: string, value: string) => seg.push(`OBX|${++set}|ST|${code}|${base}.${facet++}|${e(value)}||||||${a.statusCode ?? 'F'}`);
    if (info.source) attr(SOURCE_CODE, info.source);
    if (info.phase) attr(PHASE_CODE, info.phase);
    if (info.state) attr(STATE_CODE, info.state);
    if (info.inactivationState) attr(INACTIVATION_CODE, info.inactivationState);
    attr(PRIORITY_CODE, info.priority);
    if (typeOf(info)) attr(TYPE_CODE, typeOf(info));
    group = { base, next: facet, set };
  }
  return seg.join('\r');
}
