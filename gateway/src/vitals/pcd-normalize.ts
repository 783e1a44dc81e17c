/**
 * IHE PCD post-normalization of a parsed ORU (issue 12 §3, §4; protocols.md §4): the ORU parser
 * (drivers/hl7-mllp/oru-parser.ts) builds the drafts as for any ORU, then, for an IHE PCD message only,
 * calls this hook. The lab path is untouched: `pcdNormalizer()` returns undefined for anything else.
 *
 * What it does, per OBX:
 * - OBX-3 MDC (numeric^REFID^MDC) or a vendor system mapped to MDC by data (vendor-maps.ts) →
 *   `code` = the MDC coding (numeric code, REFID as display), `codings` += LOINC where one exists;
 *   a code in neither map is kept as sent and flagged `unmapped-code` (never dropped).
 * - OBX-6 MDC unit (266016^MDC_DIM_MMHG^MDC) or a device spelling → UCUM; unknown → kept + flagged.
 * - OBX-4 containment (MDS.VMD.CHAN.METRIC) stays in `subId` (the parser keeps it).
 * - IEEE 11073-20601 special values (NaN 8388607, NRes -8388608, ±INF ±8388606) are not numbers: kept
 *   as text with `value-missing`, never sent as a quantity.
 * - OBX-8 `DEMO` (Mindray demo mode, protocols.md §4.1) → `validity-doubtful`.
 * Per message:
 * - OBX-18 `<eui>^^<eui>^EUI-64` (IHE PCD TF-2 B.8.7) and MSH-3 `NAME^EUI^EUI-64` → `equipment.eui64`.
 * - The MDS/VMD/CHAN rows (`n.0.0.0`, no value: the device hierarchy, not results) become the
 *   equipment of the metrics under them and are not results themselves; the PCD-01 output rebuilds the MDS row.
 * - PV1-3 (PL: point of care^room^bed^facility, HL7 v2.6 3.4.3.3) → `location`.
 * - No PID-3: an unassociated patient (IHE PCD TF-2: a monitor not bound to a patient) → kept, and
 *   flagged at message level (`value-missing` at PID^1^3).
 * - `category` 'vital-signs'.
 * - ORU^R40 (PCD-04 ACM, protocols.md §4.4): each event row and the attribute rows after it (68480
 *   source, 68481 phase, 68482 state, 68483 inactivation state, 68484 priority, 68485 type) become one
 *   `alarm` (AlarmInfo) on the event's draft; attribute rows that AlarmInfo has no field for (or with a
 *   value it cannot take) stay as drafts carrying the same alarm.
 */
import type { AlarmInfo, Equipment, ObservationDraft, QualityFlag } from '../contracts/observation';
import type { Hl7Message, Hl7Segment } from '../../../drivers/hl7-mllp/hl7-message';
import { MDC_SYSTEM, mdcUnit, shippedCodeMap, unitFitsMetric, type CodeMap, type VitalLookup } from './code-map';
import { shippedVendorMaps, type VendorCodeMap } from './vendor-maps';

/** The parse result fields the hook rewrites (a subset of OruParseResult, to avoid an import cycle). */
export interface PcdParseResult {
  drafts: ObservationDraft[];
  messageFlags: QualityFlag[];
}

export interface PcdHook {
  /** Called by the parser for every OBX draft it made, with its segment. */
  obx(dr: ObservationDraft, seg: Hl7Segment): void;
  /** Called once at the end: equipment EUI-64, location, hierarchy rows, alarms, unassociated patient. */
  finish(result: PcdParseResult): void;
}

/** IHE PCD message profiles (MSH-21 EI-1): DEC PCD-01 and ACM PCD-04. */
const PCD_PROFILES = /^IHE_PCD_/;

/** IEEE 11073-20601 FLOAT-Type special values (mantissa, exponent 0): not numbers. */
const SPECIAL_VALUES: Record<string, string> = { '8388607': 'NaN', '-8388608': 'NRes', '8388606': '+INF', '-8388606': '-INF' };

const PHASES = new Set<NonNullable<AlarmInfo['phase']>>(['start', 'start-only', 'continue', 'end', 'present', 'update', 'escalate', 'inactivate', 'de-escalate', 'reset']);
const STATES = new Set<NonNullable<AlarmInfo['state']>>(['inactive', 'active', 'latched', 'acknowledged', 'silenced']);
const PRIORITIES = new Set(['PH', 'PM', 'PL', 'PN']);
// IHE PCD ACM alert type: SP physiological, ST technical, SA advisory (kept as technical: not a patient condition)
const TYPES: Record<string, NonNullable<AlarmInfo['kind']>> = { SP: 'physiological', ST: 'technical', SA: 'technical' };

/** Is this an IHE PCD message (MSH-21 IHE_PCD_*, or ORU^R40)? */
export function isPcdMessage(msg: Hl7Message): boolean {
  const msh = msg.segment('MSH');
  if (!msh) return false;
  if (msh.get(9, 2) === 'R40') return true;
  const reps = msh.repetitions(21).length;
  for (let r = 1; r <= reps; r++) if (PCD_PROFILES.test(msh.get(21, 1, r))) return true;
  return false;
}

/** The hook for an IHE PCD message; undefined for any other message (the lab path does not change). */
export function pcdNormalizer(msg: Hl7Message, map: CodeMap = shippedCodeMap(), vendors: Map<string, VendorCodeMap> = shippedVendorMaps()): PcdHook | undefined {
  if (!isPcdMessage(msg)) return undefined;
  const eui = new Set<string>();
  const msh = msg.segment('MSH') as Hl7Segment;
  if (msh.get(3, 3) === 'EUI-64' && msh.get(3, 2)) eui.add(msh.get(3, 2));
  const hierarchy = new Set<ObservationDraft>();
  const lookups = new Map<ObservationDraft, VitalLookup | undefined>();
  const alarmMessage = msh.get(9, 2) === 'R40';

  return {
    obx(dr, seg) {
      const quality: QualityFlag[] = dr.quality ? [...dr.quality] : [];
      // OBX-18 EI entity^namespace^universal id^universal id type; EUI-64 as 16 hex digits
      if (seg.get(18, 4) === 'EUI-64') {
        const id = seg.get(18, 1) || seg.get(18, 3);
        if (id) eui.add(id);
      }
      // OBX-3: MDC, or a vendor coding system mapped to MDC by data
      let hit: VitalLookup | undefined;
      if (dr.code.system === MDC_SYSTEM) {
        hit = map.lookupVital(dr.code.code) ?? (dr.code.display ? map.lookupVital(dr.code.display) : undefined);
      } else {
        const vm = vendors.get(dr.code.system);
        const target = vm ? (vm.codes[dr.code.code] ?? (dr.code.display ? vm.codes[dr.code.display] : undefined)) : undefined;
        hit = target ? map.lookupVital(target) : undefined;
        if (hit) dr.localCode = dr.code;
      }
      lookups.set(dr, hit);
      if (hit) {
        dr.code = hit.mdc;
        const codings = [...(hit.loinc ? [hit.loinc] : []), ...(hit.loincAlso ?? [])];
        if (codings.length) dr.codings = codings;
      } else {
        quality.push({ code: 'unmapped-code', location: seg.location(3), text: 'OBX-3 is not in the MDC code map (firmware-config/code-maps): kept as sent' });
      }
      // containment rows (MDS/VMD/CHAN: `n.0.0.0`, `n.n.0.0`, `n.n.n.0`) without a value describe the device
      const sub = dr.subId ?? '';
      if (!dr.value && !seg.get(2) && (hit?.kind === 'object' || /^\d+(\.\d+)*\.0$/.test(sub))) hierarchy.add(dr);

      // OBX-6 unit → UCUM (IHE PCD TF-2: MDC units or UCUM)
      const v = dr.value;
      if (v && (v.kind === 'quantity' || v.kind === 'structured-numeric' || v.kind === 'text')) {
        const [id = '', text = '', system = ''] = seg.components(6);
        if (id || text) {
          // CWE unit^text^system: an MDC unit is looked up as MDC only (numeric code or its reference id)
          const u = system === 'MDC' ? (mdcUnit(id, map) ?? mdcUnit(text, map)) : (map.normalizeUnit(id) ?? (text ? map.normalizeUnit(text) : undefined));
          if (u) v.unit = u.ucum;
          else quality.push({ code: 'unmapped-code', location: seg.location(6), text: 'OBX-6 unit is neither an MDC unit nor UCUM: kept as sent' });
          // a metric in a unit that cannot be its unit (heart rate in mm[Hg]) changes its meaning: flagged
          if (u && hit?.ucum && !unitFitsMetric(u.ucum, hit.ucum)) quality.push({ code: 'unmapped-code', location: seg.location(6), original: [id, text, system].join('^').replace(/\^+$/, ''), text: `OBX-6 unit does not fit OBX-3 (expected ${hit.ucum} or a unit convertible to it): kept as sent` });
        }
      }
      // IEEE 11073-20601 special values are not measurements
      if (v && v.kind === 'quantity') {
        const raw = v.decimal ?? String(v.value);
        const special = SPECIAL_VALUES[raw];
        if (special) {
          dr.value = { kind: 'text', text: raw, unit: v.unit };
          quality.push({ code: 'value-missing', location: seg.location(5), original: raw, text: `IEEE 11073-20601 special value ${special}: no measurement (kept as text, never sent as a number)` });
        }
      }
      if (dr.interpretation?.includes('DEMO')) {
        quality.push({ code: 'validity-doubtful', location: seg.location(8), text: 'device in demo mode (OBX-8 DEMO): not a patient value' });
      }
      if (quality.length) dr.quality = quality;
      else delete dr.quality;
    },

    finish(result) {
      // PV1-3 PL: point of care^room^bed^facility (HL7 v2.6 3.4.3.3)
      const pv1 = msg.segment('PV1');
      let location: ObservationDraft['location'];
      if (pv1) {
        const [poc = '', room = '', bed = '', facility = ''] = pv1.components(3);
        const l: NonNullable<ObservationDraft['location']> = {};
        if (poc) l.pointOfCare = poc;
        if (room) l.room = room;
        if (bed) l.bed = bed;
        if (facility) l.facility = facility.split(msg.delimiters.subcomponent)[0];
        if (Object.keys(l).length) location = l;
      }
      const withEui = new Map<Equipment, Equipment>();
      const equipmentOf = (e: Equipment): Equipment => {
        if (!eui.has(e.id) || !/^[0-9A-Fa-f]{16}$/.test(e.id)) return e;
        let x = withEui.get(e);
        if (!x) withEui.set(e, (x = { ...e, eui64: e.id.toUpperCase() }));
        return x;
      };
      let drafts = result.drafts.filter((d) => !hierarchy.has(d));
      for (const d of drafts) {
        d.category = 'vital-signs';
        if (location) d.location = location;
        if (d.equipment) d.equipment = equipmentOf(d.equipment);
      }
      if (drafts.length && !drafts.some((d) => d.subject?.patientId)) {
        result.messageFlags.push({ code: 'value-missing', location: 'PID^1^3', text: 'unassociated patient: no patient identifier (IHE PCD monitor not bound to a patient); results kept' });
      }
      if (alarmMessage) drafts = groupAlarms(msg, drafts, lookups);
      result.drafts = drafts;
    },
  };
}

/** PCD-04: event rows + their attribute rows → AlarmInfo (IHE PCD TF-2 ACM; protocols.md §4.4). */
function groupAlarms(msg: Hl7Message, drafts: ObservationDraft[], lookups: Map<ObservationDraft, VitalLookup | undefined>): ObservationDraft[] {
  // alarm identifier: OBR-3 filler EI (id^namespace), the same across the alarm's phases (IHE PCD ACM)
  const obrIds = msg.segments('OBR').map((s) => s.components(3).slice(0, 2).filter((c) => c).join('^'));
  const orders: unknown[] = [];
  const out: ObservationDraft[] = [];
  let current: { draft: ObservationDraft; alarm: AlarmInfo; priorityGiven: boolean } | undefined;
  const close = () => {
    if (current && !current.priorityGiven) {
      (current.draft.quality ??= []).push({ code: 'value-missing', text: 'alarm priority not sent (no MDC_ATTR_ALARM_PRIORITY, no OBX-8 PH/PM/PL/PN): PM assumed' });
    }
  };
  for (const d of drafts) {
    const refid = lookups.get(d)?.refid ?? d.code.display ?? '';
    const text = valueText(d);
    if (refid.startsWith('MDC_ATTR_') && current) {
      const a = current.alarm;
      let merged = true;
      if (refid === 'MDC_ATTR_EVENT_PHASE' && PHASES.has(text as never)) a.phase = text as AlarmInfo['phase'];
      else if (refid === 'MDC_ATTR_ALARM_STATE' && STATES.has(text as never)) a.state = text as AlarmInfo['state'];
      else if (refid === 'MDC_ATTR_ALARM_PRIORITY' && PRIORITIES.has(text)) {
        a.priority = text as AlarmInfo['priority'];
        current.priorityGiven = true;
      } else if (refid === 'MDC_ATTR_ALERT_TYPE' && TYPES[text]) a.kind = TYPES[text];
      else if (refid === 'MDC_ATTR_ALERT_SOURCE' && text) a.source = text;
      // 68483 MDC_ATTR_ALARM_INACTIVATION_STATE (IHE PCD ACM: enabled, audio-paused, audio-off, alarm-paused, alarm-off, acknowledged): as sent
      else if (refid === 'MDC_ATTR_ALARM_INACTIVATION_STATE' && text) a.inactivationState = text;
      else merged = false;
      if (!merged) {
        d.alarm = a; // kept as its own row (AlarmInfo has no field for it), never downsampled
        out.push(d);
      }
      continue;
    }
    close();
    let orderIdx = orders.indexOf(d.order);
    if (orderIdx === -1) orderIdx = orders.push(d.order) - 1;
    const alarm: AlarmInfo = { priority: 'PM' };
    const id = obrIds[orderIdx] || d.order?.fillerOrderNumber;
    if (id) alarm.id = id;
    alarm.source = d.subId;
    if (text && d.value?.kind === 'text') alarm.text = text; // an ST event row carries the alarm text; a metric row keeps its value
    let priorityGiven = false;
    // OBX-8 abnormal flags may carry the priority and type (IHE PCD ACM)
    for (const f of d.interpretation ?? []) {
      if (PRIORITIES.has(f)) {
        alarm.priority = f as AlarmInfo['priority'];
        priorityGiven = true;
      } else if (TYPES[f]) alarm.kind = TYPES[f];
    }
    if (!alarm.source) delete alarm.source;
    d.alarm = alarm;
    current = { draft: d, alarm, priorityGiven };
    out.push(d);
  }
  close();
  return out;
}

function valueText(d: ObservationDraft): string {
  const v = d.value;
  if (!v) return '';
  if (v.kind === 'text') return v.text.trim();
  if (v.kind === 'coded') return v.display ? `${v.code}^${v.display}` : v.code;
  if (v.kind === 'quantity') return v.decimal ?? String(v.value);
  return '';
}
