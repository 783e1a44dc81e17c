/**
 * A stored DICOM file is deleted only after store retention deleted its message (real store, real
 * files): referenced files stay, unreferenced ones go after the grace period, young ones stay.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { existsSync, mkdirSync, utimesSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../../../../test/helpers/env';
import { GatewayStore } from '../../store/gateway-store';
import { pruneDicomFiles } from './file-retention';

let tmp: { dir: string; cleanup(): void };
let store: GatewayStore;
const DAY = 24 * 3600_000;

async function stored(rel: string, receivedAt: string): Promise<number> {
  mkdirSync(join(tmp.dir, rel, '..'), { recursive: true });
  writeFileSync(join(tmp.dir, rel), Buffer.alloc(1000, 1));
  const old = Date.parse(receivedAt) / 1000; // seconds
  utimesSync(join(tmp.dir, rel), old, old);
  const r = await store.submit({
    deviceId: 'modalities',
    driver: 'dicom',
    raw: Buffer.from('{}'),
    receivedAt: new Date(receivedAt),
    messageType: 'C-STORE',
    meta: { relPath: rel, sopInstanceUid: rel },
    drafts: [{ code: { system: 'urn:ietf:rfc:3986', code: 'urn:oid:1.2' }, status: 'final', value: { kind: 'reference', pointer: rel } }],
  } as never);
  return r.messageId;
}

beforeEach(() => {
  tmp = tempDir('iomt-dicom-files-');
  store = GatewayStore.open({ dataDir: tmp.dir });
});
afterEach(async () => {
  await store.close();
  tmp.cleanup();
});

describe('pruneDicomFiles', () => {
  it('deletes a file only after retention deleted its message; pending deliveries keep message and file', async () => {
    const now = Date.now();
    const oldIso = new Date(now - 40 * DAY).toISOString();
    const a = await stored('dicom/s1/se1/a.11111111.dcm', oldIso); // finished, delivered: pruned
    const b = await stored('dicom/s1/se1/b.22222222.dcm', oldIso); // finished, still pending at the PACS: kept
    await stored('dicom/s2/se1/c.33333333.dcm', new Date(now - DAY).toISOString()); // recent: kept
    await store.markFinished([a, b], 'routed');
    await store.appendOutbox('pacs', [{ key: 'b', messageId: b, payload: Buffer.from('b') }]);
    // an orphan (a failed commit) old enough, and one just written by the SCP (its row not committed yet)
    writeFileSync(join(tmp.dir, 'dicom/s1/se1/orphan.44444444.dcm'), 'x');
    utimesSync(join(tmp.dir, 'dicom/s1/se1/orphan.44444444.dcm'), now / 1000 - 7200, now / 1000 - 7200);
    writeFileSync(join(tmp.dir, 'dicom/s1/se1/fresh.55555555.dcm'), 'x');
    mkdirSync(join(tmp.dir, 'dicom/tmp'), { recursive: true });
    writeFileSync(join(tmp.dir, 'dicom/tmp/part.dcm'), 'x');

    // before retention: only the old orphan goes
    expect(await pruneDicomFiles(tmp.dir, { now })).toMatchObject({ scanned: 5, deleted: 1, young: 1 });
    expect(existsSync(join(tmp.dir, 'dicom/s1/se1/a.11111111.dcm'))).toBe(true);

    const r = await store.applyRetention({ maxAgeDays: 30, maxBytes: 0, settledMaxAgeDays: 0, quarantineMaxAgeDays: 0 }, now);
    expect(r.messagesDeleted).toBe(1); // a; b has a pending outbox row
    expect(await pruneDicomFiles(tmp.dir, { now })).toMatchObject({ deleted: 1, bytesFreed: 1000 });
    expect(existsSync(join(tmp.dir, 'dicom/s1/se1/a.11111111.dcm'))).toBe(false);
    for (const f of ['dicom/s1/se1/b.22222222.dcm', 'dicom/s2/se1/c.33333333.dcm', 'dicom/s1/se1/fresh.55555555.dcm', 'dicom/tmp/part.dcm']) expect(existsSync(join(tmp.dir, f)), f).toBe(true);
  });

  it('removes directories left empty; no dicom dir is no error', async () => {
    expect(await pruneDicomFiles(tmp.dir)).toEqual({ scanned: 0, deleted: 0, bytesFreed: 0, young: 0 });
    const now = Date.now();
    mkdirSync(join(tmp.dir, 'dicom/s9/se9'), { recursive: true });
    writeFileSync(join(tmp.dir, 'dicom/s9/se9/x.dcm'), 'x');
    utimesSync(join(tmp.dir, 'dicom/s9/se9/x.dcm'), now / 1000 - 7200, now / 1000 - 7200);
    expect(await pruneDicomFiles(tmp.dir, { now })).toMatchObject({ deleted: 1 });
    expect(existsSync(join(tmp.dir, 'dicom/s9'))).toBe(false);
    expect(existsSync(join(tmp.dir, 'dicom'))).toBe(true);
  });
});
