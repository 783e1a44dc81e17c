/**
 * The SCU's receive side is framed (dimse-scu.ts, drivers/dicom/pdu-framer.ts): a fake PACS (a raw TCP
 * server) that announces a huge PDU or sends a non-PDU is refused at the header with an A-ABORT
 * (PS3.8 9.3.8), the association fails with AssociationError 'aborted', and this process does not
 * buffer what the PACS keeps sending (without the framer, dcmjs-dimse's accumulator holds it all).
 */
import * as net from 'node:net';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { tempDir } from '../../../../test/helpers/env';
import { writeSyntheticDicom } from '../../../../bench/dicom-synth';
import type { Observation } from '../../contracts/observation';
import { AssociationError, StoreAssociation } from './dimse-scu';
import { DicomStoreOutput } from './dicom-store-output';

const SC = '1.2.840.10008.5.1.4.1.1.7';
const ELE = '1.2.840.10008.1.2.1';

/** An A-ASSOCIATE-AC accepting presentation context 1 in explicit VR little endian (PS3.8 9.3.3). */
function associateAc(): Buffer {
  const item = (type: number, body: Buffer) => {
    const h = Buffer.alloc(4);
    h[0] = type;
    h.writeUInt16BE(body.length, 2);
    return Buffer.concat([h, body]);
  };
  const ae = (s: string) => Buffer.from(s.padEnd(16, ' '), 'ascii');
  const appCtx = item(0x10, Buffer.from('1.2.840.10008.3.1.1.1', 'ascii'));
  const ts = item(0x40, Buffer.from(ELE, 'ascii'));
  const pc = item(0x21, Buffer.concat([Buffer.from([1, 0, 0, 0]), ts])); // id 1, result 0 acceptance
  const maxLen = Buffer.alloc(4);
  maxLen.writeUInt32BE(65536);
  const user = item(0x50, item(0x51, maxLen));
  const body = Buffer.concat([Buffer.from([0, 1, 0, 0]), ae('PACS'), ae('IOMT_GW'), Buffer.alloc(32), appCtx, pc, user]);
  const h = Buffer.alloc(6);
  h[0] = 0x02;
  h.writeUInt32BE(body.length, 2);
  return Buffer.concat([h, body]);
}

function header(type: number, length: number): Buffer {
  const h = Buffer.alloc(6);
  h[0] = type;
  h.writeUInt32BE(length >>> 0, 2);
  return h;
}

interface Fake {
  port: number;
  received: Buffer[];
  sent: number;
  close(): Promise<void>;
}

/**
 * A raw "PACS": answers the A-ASSOCIATE-RQ with `onAssociate` (or an AC, then on the first P-DATA-TF
 * with `onData`), then keeps writing `floodMiB` of filler while the client reads.
 */
async function fakePacs(opts: { phase: 'associate' | 'store'; attack: Buffer; floodMiB: number }): Promise<Fake> {
  const received: Buffer[] = [];
  const socks = new Set<net.Socket>();
  const fake: Fake = { port: 0, received, sent: 0, close: async () => {} };
  const filler = Buffer.alloc(1024 * 1024, 0x41);
  const server = net.createServer((s) => {
    socks.add(s);
    s.on('error', () => {});
    let acked = false;
    let attacked = false;
    const flood = async () => {
      s.write(opts.attack);
      for (let i = 0; i < opts.floodMiB && !s.destroyed && s.writable; i++) {
        fake.sent += filler.length;
        if (!s.write(filler)) await new Promise<void>((r) => { s.once('drain', r); s.once('close', r); });
      }
    };
    s.on('data', (d: Buffer) => {
      received.push(d);
      if (attacked) return;
      if (opts.phase === 'associate' && d[0] === 0x01) {
        attacked = true;
        void flood();
      } else if (opts.phase === 'store' && !acked && d[0] === 0x01) {
        acked = true;
        s.write(associateAc());
      } else if (opts.phase === 'store' && acked) {
        attacked = true;
        void flood();
      }
    });
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  fake.port = (server.address() as net.AddressInfo).port;
  fake.close = () => {
    for (const s of socks) s.destroy();
    return new Promise<void>((r) => server.close(() => r()));
  };
  return fake;
}

let fake: Fake | undefined;
afterEach(async () => {
  await fake?.close();
  fake = undefined;
});

const open = (port: number) =>
  StoreAssociation.open({ host: '127.0.0.1', port, callingAeTitle: 'IOMT_GW', calledAeTitle: 'PACS', contexts: [{ sopClassUid: SC, transferSyntaxUid: ELE }], connectTimeoutMs: 5000, dimseTimeoutMs: 20_000, maxPduLength: 65536 });

/** The A-ABORT the client sent (PS3.8 9.3.8: 07 00 00000004 00 00 source reason), if any. */
const abortOf = (f: Fake) => {
  const all = Buffer.concat(f.received);
  const i = all.indexOf(Buffer.from([0x07, 0, 0, 0, 0, 4]));
  return i < 0 ? undefined : { source: all[i + 8], reason: all[i + 9] };
};

const rssMiB = () => process.memoryUsage().rss / 1048576;
const extMiB = () => (process.memoryUsage().external + process.memoryUsage().arrayBuffers) / 1048576;

describe('SCU receive framing against a hostile PACS', () => {
  it.each([
    { name: 'P-DATA-TF announcing 4 GiB during association', phase: 'associate' as const, attack: header(0x04, 0xfffffff0), reason: 6 },
    { name: 'A-ASSOCIATE-AC announcing 1 GiB', phase: 'associate' as const, attack: header(0x02, 1 << 30), reason: 6 },
    { name: 'not a PDU (an HTTP answer)', phase: 'associate' as const, attack: Buffer.from('HTTP/1.1 200 OK\r\n\r\n'), reason: 1 },
  ])('open(): $name → AssociationError, A-ABORT reason $reason, nothing buffered', async ({ phase, attack, reason }) => {
    fake = await fakePacs({ phase, attack, floodMiB: 64 });
    const ext0 = extMiB();
    const rss0 = rssMiB();
    const err = await open(fake.port).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(AssociationError);
    expect((err as AssociationError).message).toMatch(/refused/);
    await new Promise((r) => setTimeout(r, 300));
    expect(abortOf(fake)).toEqual({ source: 2, reason });
    // the client stopped reading at the refused header: far less than the 64 MiB flood was taken in
    expect(extMiB() - ext0).toBeLessThan(16);
    expect(rssMiB() - rss0).toBeLessThan(48);
  }, 20_000);

  it('store(): the PACS answers the C-STORE with a 4 GiB P-DATA-TF and floods → rejected as aborted, memory flat', async () => {
    fake = await fakePacs({ phase: 'store', attack: header(0x04, 0xfffffff0), floodMiB: 128 });
    const a = await open(fake.port);
    expect(a.accepts(SC, ELE)).toBe(true);
    const rss0 = rssMiB();
    const ext0 = extMiB();
    // any readable file: the fake PACS attacks at the first P-DATA-TF (the command)
    const err = await a.store(SC, '1.2.3.4', ELE, { kind: 'file', path: __filename, datasetOffset: 0 }).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(err).toBeInstanceOf(AssociationError);
    expect((err as AssociationError).kind).toBe('aborted');
    expect((err as AssociationError).message).toMatch(/P-DATA-TF of 4294967280 bytes exceeds the maximum length 65536/);
    expect(a.alive).toBe(false);
    await new Promise((r) => setTimeout(r, 300));
    expect(abortOf(fake)).toEqual({ source: 2, reason: 6 });
    expect(fake.sent).toBeLessThan(128 * 1024 * 1024); // the flood stalled: nobody reads it
    expect(extMiB() - ext0).toBeLessThan(16);
    expect(rssMiB() - rss0).toBeLessThan(48);
  }, 20_000);
});

describe('dicom-store output against a hostile PACS: the outbox entries stay (retry / unavailable), never delivered', () => {
  it.each([
    { phase: 'associate' as const, want: ['unavailable', 'unavailable'] },
    { phase: 'store' as const, want: ['retry', 'unavailable'] },
  ])('a 4 GiB PDU announced during $phase → $want', async ({ phase, want }) => {
    fake = await fakePacs({ phase, attack: header(0x04, 0xfffffff0), floodMiB: 64 });
    const tmp = tempDir('iomt-scu-framer-');
    try {
      mkdirSync(join(tmp.dir, 'dicom/test'), { recursive: true });
      const out = new DicomStoreOutput({ destination: 'pacs', host: '127.0.0.1', port: fake.port, calledAeTitle: 'PACS', callingAeTitle: 'IOMT_GW', dataDir: tmp.dir, lingerMs: 0, dimseTimeoutMs: 10_000 });
      const entries = [1, 2].map((i) => {
        const obj = writeSyntheticDicom(join(tmp.dir, `dicom/test/${i}.dcm`), 64 * 1024, { sopClassUid: SC });
        const obs = { id: `M${i}-1`, messageId: i, messageUid: `M${i}`, seq: 1, deviceId: 'ct', driver: 'dicom', sourceMessageId: obj.sopInstanceUid, receivedAt: '2026-11-30T10:00:00.000Z', code: { system: 'urn:ietf:rfc:3986', code: `urn:oid:${SC}` }, category: 'imaging', status: 'final', value: { kind: 'reference', pointer: `dicom/test/${i}.dcm`, application: 'iomt-gateway', typeOfData: 'application', subtype: 'dicom' } } as Observation;
        return { id: i, destination: 'pacs', key: `k${i}`, payload: out.prepare([obs], `k${i}`).payload, attempts: 0, createdAt: Date.now() };
      });
      const ext0 = extMiB();
      const outcomes = await out.write(entries, new AbortController().signal);
      expect(outcomes.map((o) => o.outcome)).toEqual(want);
      expect(outcomes[0].error).toMatch(/refused|closed|aborted/);
      await out.close();
      expect(extMiB() - ext0).toBeLessThan(16);
    } finally {
      tmp.cleanup();
    }
  }, 30_000);
});
