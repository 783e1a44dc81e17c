/**
 * Normalized observation: close to FHIR R4 Observation (protocols.md §6.1).
 * Drivers' parsers produce ObservationDraft[]; the store assigns ids and turns them into Observation.
 */
export interface Coding {
  system: string; // 'http://loinc.org' | 'urn:iso:std:iso:11073:10101' | 'local' | HL7 coding system name (e.g. '99MRC')
  code: string;
  display?: string;
}

export type ObservationValue =
  /** `decimal`: the number exactly as the device sent it ('4.20'). Trailing zeros state the precision of a
   * lab result, so outputs send `decimal` when present and `value` only for computed numbers. */
  | { kind: 'quantity'; value: number; unit: string; comparator?: '<' | '>' | '<=' | '>='; decimal?: string }
  | { kind: 'text'; text: string }
  | { kind: 'coded'; system: string; code: string; display?: string };

/** FHIR Observation.status subset; mapped from OBX-11 / ASTM R.9 (protocols.md §6.1). */
export type ObservationStatus = 'registered' | 'preliminary' | 'final' | 'corrected' | 'cancelled' | 'amended' | 'entered-in-error' | 'unknown';

export interface PatientIdentifier {
  id: string;
  authority?: string; // CX-4
  type?: string; // CX-5, Table 0203: MR, NNVNM, SB ...
}

/** PHI. Never logged above debug. */
export interface Subject {
  patientId?: string; // primary id (first PID-3 repetition / ASTM P.3)
  patientIds?: PatientIdentifier[];
  patientName?: string; // 'family^given^middle' as received
  birthDate?: string; // YYYYMMDD
  sex?: string;
  specimenId?: string; // barcode / accession of the specimen (OBR-3, SPM-2, ASTM O.3)
  instrumentSpecimenId?: string; // ASTM O.4
  accession?: string;
}

export interface OrderInfo {
  placerOrderNumber?: string; // OBR-2 / ORC-2
  fillerOrderNumber?: string; // OBR-3 / ORC-3
  service?: Coding; // OBR-4
  collectedAt?: string; // OBR-7, ISO 8601
  section?: string; // OBR-24
}

export interface ObservationDraft {
  code: Coding; // mapped code (LOINC when known)
  localCode?: Coding; // the device's own code when `code` was mapped
  /** Original HL7 value type (OBX-2) when known: NM, ST, TX, CE, CWE, SN, IS, ... */
  valueType?: string;
  value?: ObservationValue; // absent for flag-only results
  referenceRange?: string; // e.g. '4.0-10.0'
  interpretation?: string[]; // Table 0078 flags: L, H, LL, HH, <, >, N, A ...
  status: ObservationStatus;
  /** Raw status letter as the device sent it (OBX-11 / R.9). */
  statusCode?: string;
  effectiveAt?: string; // ISO 8601 observation time (OBX-14, R.13)
  subject?: Subject;
  order?: OrderInfo;
  equipment?: { id: string; name?: string }; // OBX-18 / R.14 / MSH-3
  operator?: string; // OBX-16 / R.11
  comments?: string[]; // NTE / ASTM C records attached to this result
  subId?: string; // OBX-4
}

export interface Observation extends ObservationDraft {
  /** Stable, sortable, globally unique: `${messageUid}-${seq}`. Idempotency key downstream. */
  id: string;
  messageId: number;
  messageUid: string;
  seq: number; // 1-based position within the message
  deviceId: string;
  driver: string;
  sourceMessageId?: string; // MSH-10, ASTM H.3
  receivedAt: string; // ISO 8601
}
