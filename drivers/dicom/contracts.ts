/**
 * Contracts between the parts of the DICOM driver (issue 11), fixed first so that the storage SCP,
 * the PACS output and the worklist/MPPS services can be built side by side. Change them only together.
 *
 * Sources: DICOM PS3.4 (service classes: B storage, K worklist, F MPPS, J storage commitment),
 * PS3.7 (DIMSE statuses, 9.1.1 C-STORE, 9.1.2 C-FIND, 10.1 N-CREATE/N-SET), PS3.8 (association).
 */

/**
 * One stored SOP instance: the index row (issue 11 §1). The file holds exactly the bytes received
 * (File Meta Information + dataset as sent, PS3.10 7.1; never transcoded).
 *
 * It reaches the store as an InboundMessage (gateway/src/contracts/driver.ts) so that the whole
 * pipeline (ack after commit, flow re-emission, outbox, retention, API) applies unchanged:
 * - driver 'dicom'; deviceId: the `dicom in` node's device id;
 * - raw: UTF-8 JSON of this record (never the pixel data);
 * - sourceMessageId: sopInstanceUid; messageType: 'C-STORE';
 * - controlKey: `${sopInstanceUid}` and dedupeKey: `${sopInstanceUid}|${sha256}`: a re-sent identical
 *   instance is a duplicate (success, stored once); the same SOP Instance UID with other content is
 *   stored, flagged `control-id-reused` and counted (issue 11 §1);
 * - meta: this record;
 * - drafts: one ObservationDraft per instance with category 'imaging', status 'final',
 *   code { system: 'urn:ietf:rfc:3986', code: 'urn:oid:' + sopClassUid }, subject (PatientID 0010,0020,
 *   PatientName 0010,0010, PatientBirthDate, PatientSex, AccessionNumber 0008,0050), order
 *   { fillerOrderNumber: accession }, equipment { id: callingAeTitle, name: StationName },
 *   value { kind: 'reference', pointer: relPath, application: 'iomt-gateway', typeOfData: 'application',
 *   subtype: 'dicom' } (HL7 RP-like pointer to the file, relative to the data dir).
 */
export interface DicomInstanceRecord {
  sopClassUid: string; // (0008,0016) / (0002,0002)
  sopInstanceUid: string; // (0008,0018) / (0002,0003)
  studyInstanceUid: string; // (0020,000D)
  seriesInstanceUid: string; // (0020,000E)
  modality?: string; // (0008,0060)
  accessionNumber?: string; // (0008,0050)
  studyDate?: string; // (0008,0020) YYYYMMDD
  transferSyntaxUid: string; // (0002,0010) as received (the accepted presentation context)
  callingAeTitle: string;
  calledAeTitle: string;
  /** File path relative to the gateway's data dir (e.g. `dicom/<study>/<series>/<sop>.<sha8>.dcm`). */
  relPath: string;
  bytes: number; // file size, File Meta included
  sha256: string; // hex, of the whole file
  receivedAt: string; // ISO 8601
}

/** A C-FIND identifier as received: the keys asked (PS3.4 C.2.2.1), as a dcmjs naturalized dataset. */
export type DicomDataset = Record<string, unknown>;

/**
 * Modality Worklist provider (PS3.4 K.6.1, SOP class 1.2.840.10008.5.1.4.31). The SCP calls it for
 * each C-FIND on the worklist model and sends one Pending (0xFF00) per match, then Success (0x0000)
 * (PS3.7 9.1.2.1.6). Return only the keys present in `query` (PS3.4 C.2.2.1.3, K.6.1.2.2).
 * Errors: throw; the SCP answers 0xC000-range failure "Unable to process" (PS3.4 K.4.1.1.4 / C.4.1.1.4).
 */
export interface WorklistProvider {
  find(query: DicomDataset, ctx: { callingAeTitle: string; calledAeTitle: string; remoteAddress?: string }): Promise<DicomDataset[]>;
}

/**
 * MPPS SCP (PS3.4 F.7, SOP class 1.2.840.10008.3.1.2.3.3). N-CREATE with status IN PROGRESS, then
 * N-SET to COMPLETED or DISCONTINUED (PS3.4 F.7.2). Resolve with the DIMSE status to answer
 * (0x0000 success; 0x0110 processing failure; 0x0111 duplicate SOP instance on N-CREATE;
 * 0x0112 no such object on N-SET; PS3.7 10.1.5.1.6 / 10.1.1.1.8). Resolve only after the state change
 * is durably committed (the same rule as C-STORE).
 */
export interface MppsHandler {
  nCreate(sopInstanceUid: string, dataset: DicomDataset, ctx: { callingAeTitle: string; calledAeTitle: string }): Promise<number>;
  nSet(sopInstanceUid: string, dataset: DicomDataset, ctx: { callingAeTitle: string; calledAeTitle: string }): Promise<number>;
}

/** Optional services the storage SCP offers beside C-ECHO and C-STORE (the `dicom in` node's options). */
export interface DicomScpServices {
  worklist?: WorklistProvider;
  mpps?: MppsHandler;
}
