/**
 * Fuzz suite for the DICOM storage SCP's own parsers (issue 11): the PDU framer in front of
 * dcmjs-dimse (drivers/dicom/pdu-framer.ts) and the dataset header walker (drivers/dicom/part10.ts).
 * fast-check with the fixed seed of fuzz-config.ts; `FUZZ_RUNS=20000 npx vitest run test/fuzz/dicom.fuzz.test.ts` runs longer.
 *
 * Properties:
 * - framer: any bytes, any split → never throws; the same PDUs and the same verdict whole or chunked;
 *   well-formed PDU streams come out PDU for PDU, and a stream cut inside a PDU is reported truncated;
 * - walker: any bytes in any transfer syntax → a header, DatasetError or NeedMoreBytes, nothing else;
 *   a prefix of a real dataset gives exactly the full dataset's values or NeedMoreBytes (never a value
 *   cut short), and damaged real datasets never throw anything else.
 */
import { readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { deflateRawSync } from 'node:zlib';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { DatasetError, fileMetaLength, NeedMoreBytes, readHeader, TS } from '../../drivers/dicom/part10';
import { PduFramer } from '../../drivers/dicom/pdu-framer';
import { associateRq, cEchoCommand, cStoreCommand, pData, RawAssociation } from '../../drivers/dicom/raw-scu';
import { DicomStorageScp } from '../../drivers/dicom/storage-scp';
import type { CommitResult, InboundMessage, QuarantineInput } from '../../gateway/src/contracts/driver';
import { tempDir } from '../helpers/env';
import { FUZZ_RUNS, FUZZ_SEED, FUZZ_TIME_LIMIT_MS } from './fuzz-config';

const params = (runs = FUZZ_RUNS) => ({ seed: FUZZ_SEED, numRuns: runs, interruptAfterTimeLimit: FUZZ_TIME_LIMIT_MS, markInterruptAsFailure: false });
const LIMIT = 4096;

function frame(stream: Buffer, cuts: number[]): { pdus: string[]; ok: boolean; reason?: string; end: ReturnType<PduFramer['end']> } {
  const pdus: string[] = [];
  const f = new PduFramer({ maxPDataBytes: LIMIT, maxAssociateBytes: LIMIT }, (p) => pdus.push(p.toString('hex')));
  let ok = true;
  let reason: string | undefined;
  let from = 0;
  for (const c of [...cuts.filter((x) => x > 0 && x < stream.length).sort((a, b) => a - b), stream.length]) {
    const v = f.push(stream.subarray(from, c));
    from = c;
    if (!v.ok && ok) {
      ok = false;
      reason = v.reason;
    }
  }
  return { pdus, ok, reason, end: f.end() };
}

const pduArb = fc.record({ type: fc.integer({ min: 1, max: 7 }), body: fc.uint8Array({ maxLength: 300 }) }).map(({ type, body }) => {
  const h = Buffer.alloc(6);
  h[0] = type;
  h.writeUInt32BE(body.length, 2);
  return Buffer.concat([h, Buffer.from(body)]);
});

describe('DICOM PDU framer (fuzz)', () => {
  it('any bytes, any split: never throws, same PDUs and verdict whole or chunked', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 2000 }), fc.array(fc.nat(2000), { maxLength: 12 }), (bytes, cuts) => {
        const b = Buffer.from(bytes);
        const whole = frame(b, []);
        const chunked = frame(b, cuts);
        expect(chunked.pdus).toEqual(whole.pdus);
        expect(chunked.ok).toBe(whole.ok);
        expect(chunked.reason).toBe(whole.reason);
        // every PDU handed on is a prefix piece of the input, with a known type and its declared length
        let off = 0;
        for (const hex of whole.pdus) {
          const p = Buffer.from(hex, 'hex');
          expect(b.subarray(off, off + p.length).equals(p)).toBe(true);
          expect(p[0] >= 1 && p[0] <= 7).toBe(true);
          expect(p.readUInt32BE(2)).toBe(p.length - 6);
          off += p.length;
        }
      }),
      params(),
    );
  });

  it('well-formed PDU streams come out PDU for PDU; a cut inside a PDU is reported truncated', () => {
    fc.assert(
      fc.property(fc.array(pduArb, { maxLength: 8 }), fc.array(fc.nat(3000), { maxLength: 10 }), fc.nat(3000), (pdus, cuts, cutAt) => {
        const stream = Buffer.concat(pdus);
        const r = frame(stream, cuts);
        expect(r.ok).toBe(true);
        expect(r.pdus).toEqual(pdus.map((p) => p.toString('hex')));
        expect(r.end.truncated).toBe(false);
        // the connection closes at `cut`: truncated exactly when that is not a PDU boundary
        const cut = stream.length ? cutAt % stream.length : 0;
        const bounds = new Set<number>([0]);
        let acc = 0;
        for (const p of pdus) bounds.add((acc += p.length));
        const t = frame(stream.subarray(0, cut), cuts);
        expect(t.end.truncated).toBe(!bounds.has(cut));
      }),
      params(),
    );
  });

  it('unknown types and oversize lengths are refused at the header, with at most 64 KiB kept', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 255 }), fc.integer({ min: 0, max: 0xffffffff }), fc.uint8Array({ maxLength: 100 }), (type, length, rest) => {
        const h = Buffer.alloc(6);
        h[0] = type;
        h.writeUInt32BE(length >>> 0, 2);
        const body = Buffer.from(rest).subarray(0, Math.min(rest.length, length)); // within this PDU only
        const r = new PduFramer({ maxPDataBytes: LIMIT, maxAssociateBytes: LIMIT }).push(Buffer.concat([h, body]));
        const known = type >= 1 && type <= 7;
        const tooBig = (type === 1 || type === 4) ? length > LIMIT : length > 65536;
        expect(r.ok).toBe(known && !tooBig);
        if (!r.ok) expect(r.kept.length).toBeLessThanOrEqual(64 * 1024);
      }),
      params(),
    );
  });
});

const FIX = join(__dirname, '..', '..', 'drivers', 'dicom', 'fixtures');
const TS_OF = (file: Buffer): string => {
  const i = file.indexOf(Buffer.from([0x02, 0x00, 0x10, 0x00, 0x55, 0x49]));
  return file.toString('latin1', i + 8, i + 8 + file.readUInt16LE(i + 6)).replace(/\0+$/, '');
};
const REAL = readdirSync(FIX)
  .filter((f) => f.endsWith('.dcm') && f !== 'no_meta.dcm')
  .map((f) => {
    const file = readFileSync(join(FIX, f));
    return { name: f, ts: TS_OF(file), dataset: file.subarray(fileMetaLength(file)) };
  });
// a deflated one too (PS3.5 A.5), made from an explicit LE dataset
{
  const ct = REAL.find((r) => r.name === 'CT_small.dcm')!;
  REAL.push({ name: 'CT_small deflated', ts: TS.deflatedLE, dataset: deflateRawSync(ct.dataset) });
}
const ALL_TS = [TS.implicitLE, TS.explicitLE, TS.explicitBE, TS.deflatedLE, '1.2.840.10008.1.2.4.50'];

function walk(b: Buffer, ts: string, complete: boolean): Record<string, unknown> | 'more' | 'bad' {
  try {
    return readHeader(b, ts, complete) as Record<string, unknown>;
  } catch (e) {
    if (e instanceof NeedMoreBytes) return 'more';
    if (e instanceof DatasetError) return 'bad';
    throw e;
  }
}

describe('DICOM dataset header walker (fuzz)', () => {
  it('reads every real dataset (the index UIDs present)', () => {
    for (const r of REAL) {
      const h = walk(r.dataset, r.ts, true);
      expect(h, r.name).not.toBe('bad');
      expect((h as Record<string, unknown>).studyInstanceUid, r.name).toBeTruthy();
    }
  });

  it('any bytes in any transfer syntax: a header, DatasetError or NeedMoreBytes only', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 1500 }), fc.constantFrom(...ALL_TS), fc.boolean(), (bytes, ts, complete) => {
        walk(Buffer.from(bytes), ts, complete);
      }),
      params(),
    );
  });

  it('a prefix of a real dataset gives the full values or NeedMoreBytes, never a value cut short', () => {
    fc.assert(
      fc.property(fc.constantFrom(...REAL), fc.nat(), (r, n) => {
        const full = walk(r.dataset, r.ts, true);
        const cut = n % (r.dataset.length + 1);
        const part = walk(r.dataset.subarray(0, cut), r.ts, false);
        if (part !== 'more') expect(part, `${r.name} cut at ${cut}`).toEqual(full);
      }),
      params(),
    );
  });

  it('damaged real datasets (bytes changed, inserted, cut) never throw anything else', () => {
    fc.assert(
      fc.property(fc.constantFrom(...REAL), fc.array(fc.record({ at: fc.nat(), byte: fc.integer({ min: 0, max: 255 }), op: fc.constantFrom('set', 'insert', 'cut') }), { minLength: 1, maxLength: 6 }), (r, edits) => {
        let b = Buffer.from(r.dataset.subarray(0, 8192));
        for (const e of edits) {
          const at = b.length ? e.at % b.length : 0;
          if (e.op === 'set' && b.length) b[at] = e.byte;
          else if (e.op === 'insert') b = Buffer.concat([b.subarray(0, at), Buffer.from([e.byte]), b.subarray(at)]);
          else b = b.subarray(0, at);
        }
        walk(b, r.ts, true);
        walk(b, r.ts, false);
      }),
      params(),
    );
  });
});

describe('DICOM storage SCP under random input after an association (fuzz)', () => {
  const tmp = tempDir('iomt-dicom-fuzz-');
  afterAll(() => tmp.cleanup());

  it('random PDUs, PDVs and datasets never crash it; it answers C-ECHO after each', async () => {
    const stored: InboundMessage[] = [];
    const quarantined: QuarantineInput[] = [];
    const sink = {
      submit: async (m: InboundMessage): Promise<CommitResult> => (stored.push(m), { messageId: stored.length, messageUid: `u${stored.length}`, duplicate: false, observations: [] }),
      quarantine: async (q: QuarantineInput) => quarantined.push(q),
    };
    const scp = new DicomStorageScp({ deviceId: 'fuzz', aeTitle: 'IOMT_GW', host: '127.0.0.1', port: 0, dataDir: tmp.dir, idleTimeoutMs: 2000 }, sink);
    const { port } = await scp.start();
    const contexts = [
      { abstractSyntax: '1.2.840.10008.1.1', transferSyntaxes: [TS.implicitLE] },
      { abstractSyntax: '1.2.840.10008.5.1.4.1.1.2', transferSyntaxes: [TS.explicitLE, TS.implicitLE] },
      { abstractSyntax: '1.2.840.10008.5.1.4.1.1.7', transferSyntaxes: [TS.deflatedLE] },
    ];
    const echo = async (): Promise<number | undefined> => {
      const a = await RawAssociation.connect(port);
      try {
        a.write(associateRq({ calling: 'FUZZ', called: 'IOMT_GW', contexts }));
        if ((await a.read(5000))?.type !== 0x02) return undefined;
        for (const p of pData(1, cEchoCommand(), true)) a.write(p);
        return await a.readStatus(5000);
      } finally {
        a.close();
      }
    };
    // after a valid association: one of random bytes, a random PDU, a C-STORE with a random dataset
    // (any context id), or a C-STORE whose command is random bytes
    const action = fc.oneof(
      fc.uint8Array({ minLength: 1, maxLength: 600 }).map((b) => ({ kind: 'bytes', parts: [Buffer.from(b)] })),
      pduArb.map((p) => ({ kind: 'pdu', parts: [p] })),
      fc.record({ pc: fc.constantFrom(1, 3, 5, 9), ds: fc.uint8Array({ maxLength: 3000 }) }).map(({ pc, ds }) => ({ kind: 'store', parts: [...pData(pc, cStoreCommand('1.2.840.10008.5.1.4.1.1.2', '2.25.77'), true), ...pData(pc, Buffer.from(ds), false, 700)] })),
      fc.record({ pc: fc.constantFrom(1, 3), cmd: fc.uint8Array({ maxLength: 200 }) }).map(({ pc, cmd }) => ({ kind: 'command', parts: pData(pc, Buffer.from(cmd), true) })),
    );
    try {
      await fc.assert(
        fc.asyncProperty(action, async (act) => {
          const a = await RawAssociation.connect(port);
          try {
            a.write(associateRq({ calling: 'FUZZ', called: 'IOMT_GW', contexts }));
            await a.read(5000);
            for (const p of act.parts) a.write(p);
            await a.read(300); // an answer, an A-ABORT, or nothing
          } finally {
            a.close();
          }
          expect(await echo()).toBe(0);
        }),
        { ...params(Math.min(FUZZ_RUNS, 60)) },
      );
    } finally {
      await scp.close();
    }
  }, 120_000);
});
