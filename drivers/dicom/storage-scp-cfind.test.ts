/**
 * C-FIND answers built once per query (storage-scp.ts findPendingResponses) are byte for byte what
 * dcmjs-dimse 0.3.3 sends for one `new Dataset(match, ts)` per answer: the identifier bytes and the
 * command set, in the three uncompressed transfer syntaxes, for Vietnamese names, empty keys and
 * sequences. (findscu parsing them end to end: test/e2e/dicom-worklist.test.ts.)
 */
import dimse from 'dcmjs-dimse';
import { describe, expect, it } from 'vitest';
import { findPendingResponses, MWL_FIND_SOP_CLASS } from './storage-scp';
import { TS } from './part10';

const { Dataset, requests, responses, constants } = dimse;

const identifiers: Array<Record<string, unknown>> = [
  {
    SpecificCharacterSet: 'ISO_IR 192',
    AccessionNumber: 'ACC-1',
    PatientName: 'Nguyễn^Văn An',
    PatientID: 'BN0067890',
    PatientBirthDate: '19790130',
    PatientSex: 'M',
    StudyInstanceUID: '2.25.123456789012345678901234567890',
    RequestedProcedureID: 'RP-ORD-1',
    RequestedProcedureDescription: 'CT ngực không cản quang',
    ScheduledProcedureStepSequence: [
      { ScheduledStationAETitle: 'CT01', ScheduledProcedureStepStartDate: '20261130', ScheduledProcedureStepStartTime: '100000', Modality: 'CT', ScheduledProcedureStepID: 'SPS-ORD-1', ScheduledProcedureStepDescription: 'Chest w/o contrast', ScheduledProcedureStepStatus: 'SCHEDULED' },
    ],
  },
  // keys asked but unknown: empty values; an odd-length value (padded)
  { SpecificCharacterSet: 'ISO_IR 192', AccessionNumber: 'A', PatientName: '', PatientID: 'X1', PatientBirthDate: '', ScheduledProcedureStepSequence: [{ Modality: 'MR', ScheduledStationAETitle: '' }] },
  // ASCII folding for an old console, two sequence items, a code sequence inside
  {
    SpecificCharacterSet: 'ISO_IR 100',
    PatientName: 'NGUYEN^VAN AN',
    ScheduledProcedureStepSequence: [
      { Modality: 'US', ScheduledProtocolCodeSequence: [{ CodeValue: 'CT-PROTO-7', CodingSchemeDesignator: '99GW', CodeMeaning: 'Chest' }] },
      { Modality: 'US', ScheduledProcedureStepID: 'SPS-2' },
    ],
  },
  {},
];

function findRequest(): InstanceType<typeof requests.CFindRequest> {
  const r = new requests.CFindRequest(MWL_FIND_SOP_CLASS, constants.Priority.Medium);
  r.setDataset(new Dataset({ PatientName: '' }));
  r.setMessageId(7);
  return r;
}

describe('findPendingResponses: one encoding per query, the same bytes as the library per answer', () => {
  it.each([
    ['implicit VR little endian', TS.implicitLE],
    ['explicit VR little endian', TS.explicitLE],
    ['explicit VR big endian', TS.explicitBE],
  ])('%s', (_n, ts) => {
    const request = findRequest();
    const mine = findPendingResponses(request, identifiers.map((x) => structuredClone(x)), ts);
    expect(mine).toHaveLength(identifiers.length);
    identifiers.forEach((m, i) => {
      // the library's own path (as storage-scp.ts did before): one Dataset and one response per answer
      const ref = responses.CFindResponse.fromRequest(request);
      ref.setDataset(new Dataset(structuredClone(m), ts));
      ref.setStatus(constants.Status.Pending);
      const got = mine[i];
      expect(got.getStatus()).toBe(constants.Status.Pending);
      expect(got.getDataset()!.getTransferSyntaxUid()).toBe(ts);
      expect(Buffer.compare(got.getDataset()!.getDenaturalizedDataset(), ref.getDataset()!.getDenaturalizedDataset({}, {})), `identifier ${i}`).toBe(0);
      expect(Buffer.compare(got.getCommandDataset().getDenaturalizedCommandDataset(), ref.getCommandDataset().getDenaturalizedCommandDataset()), `command ${i}`).toBe(0);
      expect(got.getDataset()!.getElements()).toEqual(m);
    });
  });

  it('no match → no Pending response', () => {
    expect(findPendingResponses(findRequest(), [], TS.explicitLE)).toEqual([]);
  });
});
