/**
 * GET /api/v1/studies when a SOP Instance UID was received with different contents (issue 11 §1: kept,
 * flagged, counted). Each content is its own message and its own outbox row; "did PACS take them" must
 * not answer yes while one content is dead or was never queued. Real store on disk (no peers needed).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { tempDir } from '../helpers/env';
import { DB_FILE, GatewayStore } from '../../gateway/src/store/gateway-store';
import { searchStudies } from '../../gateway/src/http/studies';
import type { DicomInstanceRecord } from '../../drivers/dicom/contracts';

let tmp: { dir: string; cleanup(): void };
let store: GatewayStore;

/** One stored content of an instance, as the storage SCP commits it (dedupe on SOP UID + sha256). */
async function content(study: string, sop: string, sha: string): Promise<number> {
  const rec: DicomInstanceRecord = {
    sopClassUid: '1.2.840.10008.5.1.4.1.1.2',
    sopInstanceUid: sop,
    studyInstanceUid: study,
    seriesInstanceUid: `${study}.1`,
    modality: 'CT',
    transferSyntaxUid: '1.2.840.10008.1.2.1',
    callingAeTitle: 'CT01',
    calledAeTitle: 'IOMT_GW',
    relPath: `dicom/${study}/${study}.1/${sop}.${sha.slice(0, 8)}.dcm`,
    bytes: 100,
    sha256: sha,
    receivedAt: new Date().toISOString(),
  };
  const r = await store.submit({
    deviceId: 'modalities',
    driver: 'dicom',
    raw: Buffer.from(JSON.stringify(rec)),
    receivedAt: new Date(),
    sourceMessageId: sop,
    sender: 'CT01',
    messageType: 'C-STORE',
    dedupeKey: `${sop}|${sha}`,
    controlKey: sop,
    meta: rec as unknown as Record<string, unknown>,
    drafts: [{ code: { system: 'urn:ietf:rfc:3986', code: 'urn:oid:1.2.840.10008.5.1.4.1.1.2' }, status: 'final', category: 'imaging', value: { kind: 'reference', pointer: rec.relPath } }],
  } as never);
  expect(r.duplicate).toBe(false);
  return r.messageId;
}

async function send(messageId: number, outcome: 'delivered' | 'dead' | 'pending'): Promise<void> {
  const key = `pacs-${messageId}`;
  await store.appendOutbox('pacs', [{ key, messageId, payload: Buffer.from(String(messageId)) }]);
  if (outcome === 'pending') return;
  const leased = store.lease('pacs', 100, 60_000).filter((e) => e.key === key);
  await store.settle('pacs', leased.map((e) => (outcome === 'dead' ? { id: e.id, outcome: 'dead' as const, error: 'refused 0xA900' } : { id: e.id, outcome: 'delivered' as const })));
}

beforeAll(async () => {
  tmp = tempDir('iomt-dicom-studies-');
  store = GatewayStore.open({ dataDir: tmp.dir });
  const a = (c: string) => c.repeat(64);
  // S.DEAD: 2.1 first content delivered, second content (a correction re-sent with the same UID) refused by the PACS
  await send(await content('S.DEAD', '2.1', a('a')), 'delivered');
  await send(await content('S.DEAD', '2.1', a('b')), 'dead');
  // S.UNSENT: first content delivered, second content stored but not (yet) queued for the PACS
  await send(await content('S.UNSENT', '3.1', a('c')), 'delivered');
  await content('S.UNSENT', '3.1', a('d'));
  // S.PEND: first delivered, second pending
  await send(await content('S.PEND', '4.1', a('e')), 'delivered');
  await send(await content('S.PEND', '4.1', a('f')), 'pending');
  // S.OK: both contents delivered, plus an ordinary instance
  await send(await content('S.OK', '5.1', a('1')), 'delivered');
  await send(await content('S.OK', '5.1', a('2')), 'delivered');
  await send(await content('S.OK', '5.2', a('3')), 'delivered');
});

afterAll(async () => {
  await store.close();
  tmp.cleanup();
});

describe('/studies with one SOP Instance UID in several contents', () => {
  it.each([
    ['S.DEAD', { delivered: 0, pending: 0, dead: 1, notQueued: 0 }, 1, 1],
    ['S.UNSENT', { delivered: 0, pending: 0, dead: 0, notQueued: 1 }, 1, 1],
    ['S.PEND', { delivered: 0, pending: 1, dead: 0, notQueued: 0 }, 1, 1],
    ['S.OK', { delivered: 2, pending: 0, dead: 0, notQueued: 0 }, 2, 1],
  ])('%s: pacs %j, %i instance(s), %i conflict(s)', (study, pacs, instances, conflicts) => {
    const s = searchStudies(join(tmp.dir, DB_FILE), { limit: 50 }).find((x) => x.studyInstanceUid === study);
    expect(s).toBeDefined();
    expect(s!.destinations.pacs).toEqual(pacs);
    expect(s!.instances).toBe(instances);
    expect(s!.conflicts).toBe(conflicts);
    expect(s!.allDelivered).toBe(pacs.delivered === instances);
  });
});
