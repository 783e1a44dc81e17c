/**
 * Normalized observation: close to FHIR R4 Observation (protocols.md §6.1).
 * Drivers' parsers produce ObservationDraft[]; the store assigns ids and turns them into Observation.
 */
export interface Coding {
  system: string; // 'http://loinc.org' | 'urn:iso:std:iso:11073:10101' | 'local' | HL7 coding system name (e.g. '99MRC')
  code: string;
  display?: string;
}

export type Comparator = '<' | '>' | '<=' | '>=';

/**
 * The value as the device meant it. Every kind keeps what is needed to send it on unchanged in
 * meaning (HL7 v2.5.1 7.4.2.5 OBX-5; data types 2.A): an output never has to guess.
 */
export type ObservationValue =
  /** NM, or SN with only a comparator and one number (HL7 v2.5.1 2.A.47, 2.A.70; FHIR valueQuantity).
   * `decimal`: the number exactly as the device sent it ('4.20'). Trailing zeros state the precision of a
   * lab result, so outputs send `decimal` when present and `value` only for computed numbers. */
  | { kind: 'quantity'; value: number; unit: string; comparator?: Comparator; decimal?: string }
  /** ST, TX, FT, IS, ID, DT, TM, DTM/TS, and any value kept as text. `repetitions`: every repetition of
   * OBX-5 as sent, empty ones included (TX/FT blank lines, HL7 v2.5.1 2.A.79); `text` is them joined by LF. */
  | {
      kind: 'text';
      text: string;
      /** OBX-6 / R.5 unit sent with a value kept as text (e.g. an NM that was not a number): never dropped. */
      unit?: string;
      repetitions?: string[];
      /** FT/TX from HL7 as sent, per repetition, in escaped form with the standard delimiters (formatting
       * commands such as \.br\ \H\ \N\ \.sp\ kept, HL7 v2.5.1 2.7.6): an HL7 output re-sends these. */
      formatted?: string[];
    }
  /** CE/CWE/CNE (HL7 v2.5.1 2.A.8, 2.A.13): identifier, text, coding system, the alternate triplet, versions, original text. */
  | {
      kind: 'coded';
      system: string;
      code: string;
      display?: string;
      /** OBX-6 unit sent with a coded value: never dropped. */
      unit?: string;
      alternate?: Coding;
      systemVersion?: string;
      alternateSystemVersion?: string;
      originalText?: string;
    }
  /** SN that is not a plain (comparator) number: a range `^2^-^5`, a ratio `^1^:^40`, `^1^/^80`, `^2^+`
   * (HL7 v2.5.1 2.A.70 comparator^num1^separator/suffix^num2; FHIR valueRange / valueRatio). Numbers as sent. */
  | { kind: 'structured-numeric'; comparator?: string; num1?: string; separator?: string; num2?: string; unit: string }
  /** ED (HL7 v2.5.1 2.A.24): source application^type of data^subtype^encoding^data, data kept as sent (e.g. Base64). */
  | { kind: 'encapsulated'; sourceApplication?: string; typeOfData: string; dataSubtype?: string; encoding: string; data: string }
  /** RP (HL7 v2.5.1 2.A.65): pointer^application ID^type of data^subtype. */
  | { kind: 'reference'; pointer: string; application?: string; typeOfData?: string; subtype?: string };

/**
 * What the gateway could not take exactly as sent, and what it kept instead. Never PHI in `text`;
 * `original` is the device's own text (PHI possible: not logged above debug). docs/result-fidelity.md lists the codes.
 */
export interface QualityFlag {
  code:
    | 'invalid-number' // NM that is not a number: kept as text, forwarded as ST with the original text
    | 'invalid-value' // a value of another type that does not parse: kept as text
    | 'invalid-datetime' // a date/time that is not one: the original is kept here, the field left empty
    | 'segment-truncated' // the segment was cut off (a logger or device lost its end)
    | 'segment-terminator-missing' // two segments ran together; split where the second began
    | 'value-missing' // no value where one was expected (never sent as an empty final result)
    | 'code-missing' // no test code
    | 'unknown-status' // a result status outside its table: a safe status was used
    | 'validity-doubtful' // ASTM R.9 W: warning, validity doubtful (sent as not verified)
    | 'raw-signal' // an instrument's raw signal (RLU, OD, ...), forwarded only because the profile says so
    | 'charset-fallback' // bytes invalid in the declared charset: decoded with the profile's fallback charset
    | 'unmapped-code' // code or unit not in the profile's maps: sent as the device's local code
    | 'clock-skew' // the device's time is far from the gateway's receipt time: kept as sent, flagged so the EMR sees it
    | 'invalid-identifier'; // a patient identifier that fails its own rule (CCCD/BHXH/BHYT, protocols.md §7.1): kept as sent
  /** Where: HL7 `OBX^3^5` (segment^seq^field), ASTM `R^4^4` (record^position^field). */
  location?: string;
  /** The device's own text when it was not used as is. */
  original?: string;
  /** Short explanation, no PHI. */
  text?: string;
}

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
  /** Imaging orders (protocols.md §5.3; HL7 v2.5.1 OBR-19 placer field 2 = Requested Procedure ID, OBR-20 filler
   * field 1 = SPS ID, ZDS-1 / IPC-3 = Study Instance UID):
   * the Requested Procedure ID, the Scheduled Procedure Step ID and the Study Instance UID the RIS assigned. */
  requestedProcedureId?: string;
  scheduledStepId?: string;
  studyInstanceUid?: string;
  /** PV1-19 visit number (HL7 v2.5.1 3.4.3.19): the HIS's visit key, exported as MA_LK (QĐ 130 XML4). PHI-adjacent. */
  visitNumber?: string;
  /** Specimen type, HL7 Table 0487 (BLD, SER, PLAS, UR ...): SPM-4; from the order, the device or the profile. */
  specimenType?: Coding;
}

/**
 * The instrument that produced a result. `machineCode` is the MA_MAY the hospital registered with social
 * insurance (QĐ 130/QĐ-BYT XML4); set per device node, carried to HL7 OBX-18 and FHIR Device.identifier.
 */
export interface Equipment {
  id: string; // EI-1 entity identifier (OBX-18), ASTM R.14, DICOM calling AE, MQTT client id
  name?: string;
  /** IEEE EUI-64 as 16 hex digits (IHE PCD TF-2 B.8.7 OBX-18 universal id), monitors only. */
  eui64?: string;
  machineCode?: string;
  model?: string;
  serial?: string;
  manufacturer?: string;
}

/**
 * An alarm (IHE PCD TF-2 Appendix: ACM PCD-04 OBX-8 abnormal flags and the event phase/state/priority
 * OBX rows; protocols.md §4). `source` is the MDC containment (MDS.VMD.CHAN.METRIC) or metric code.
 */
export interface AlarmInfo {
  /** PH high, PM medium, PL low, PN none (IHE PCD ACM alarm priority). */
  priority: 'PH' | 'PM' | 'PL' | 'PN';
  /** IHE PCD ACM event phase. */
  phase?: 'start' | 'start-only' | 'continue' | 'end' | 'present' | 'update' | 'escalate' | 'inactivate' | 'de-escalate' | 'reset';
  /** IHE PCD ACM alarm state. */
  state?: 'inactive' | 'active' | 'latched' | 'acknowledged' | 'silenced';
  kind?: 'physiological' | 'technical';
  /** IHE PCD ACM alarm inactivation state (MDC attribute 68483: enabled, audio-paused, audio-off, alarm-paused, alarm-off, acknowledged), as sent. */
  inactivationState?: string;
  /** Alarm identifier from the source, stable across the phases of one alarm. */
  id?: string;
  source?: string;
  text?: string;
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
  /** Result status in HL7 Table 0085 (F P C X I R S D W U), mapped by meaning from the device's own
   * status (HL7 v2.5.1 7.4.2.11; ASTM R.9 through drivers/astm/result-status.ts). Outputs send this. */
  statusCode?: string;
  /** The status letter exactly as the device sent it (OBX-11 / ASTM R.9), when it differs in table or value. */
  deviceStatus?: string;
  /** Data-quality flags (docs/result-fidelity.md): what could not be taken as sent. */
  quality?: QualityFlag[];
  effectiveAt?: string; // ISO 8601 observation time (OBX-14, R.13)
  subject?: Subject;
  order?: OrderInfo;
  equipment?: Equipment; // OBX-18 / R.14 / MSH-3 / DICOM calling AE / MQTT client id
  /** Additional codes for the same concept, e.g. the LOINC vital-sign code beside an MDC `code`
   * (firmware-config/code-maps/). Never replaces `code`. */
  codings?: Coding[];
  /** FHIR Observation.category (http://terminology.hl7.org/CodeSystem/observation-category); absent = laboratory. */
  category?: 'laboratory' | 'vital-signs' | 'imaging';
  /** Where the patient was: PV1-3 point of care / the bed a monitor reports (PHI-adjacent: not logged above debug). */
  location?: { bed?: string; room?: string; pointOfCare?: string; facility?: string };
  /** Set on imaging results (one stored DICOM instance, drivers/dicom/contracts.ts): the UIDs and modality
   * from the dataset (PS3.3 C.7.2.1 / C.7.3.1 / C.12.1), so outputs never parse the file path. */
  imaging?: { studyInstanceUid: string; seriesInstanceUid: string; sopInstanceUid: string; sopClassUid: string; modality?: string; studyDate?: string; transferSyntaxUid?: string };
  /** Set on alarm results (IHE PCD-04 ACM, MQTT iomt/<clientId>/alarms). Alarms are never downsampled or dropped. */
  alarm?: AlarmInfo;
  operator?: string; // OBX-16 / R.11
  comments?: string[]; // NTE / ASTM C records attached to this result
  subId?: string; // OBX-4
  /** OBX-17 observation method (HL7 v2.5.1 7.4.2.17; IHE PCD: AMEAS, MMEAS, ...), as sent. */
  method?: Coding;
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
  /** MSH-11 / ASTM H.12 processing id of the source message (P production, T training, D debugging). */
  processingId?: string;
}
