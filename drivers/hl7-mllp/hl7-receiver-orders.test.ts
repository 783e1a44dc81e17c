/**
 * Orders over MLLP (issue 3 part 4): ORM^O01 / OML^O21 → message store (audit) → order cache → AA.
 * Peer: the real python-hl7 `mllp_send`; the order cache is a real SQLite file (WAL, synchronous=FULL).
 */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { CommitResult, InboundMessage, ObservationSink, QuarantineInput } from '../../gateway/src/contracts/driver';
import { StoreError } from '../../gateway/src/contracts/errors';
import { createRootLogger } from '../../gateway/src/log/logger';
import { OrderCache } from '../../gateway/src/orders/order-cache';
import type { OrderUpdate } from '../../gateway/src/orders/order-types';
import { freePort, requirePeer, tempDir } from '../../test/helpers/env';
import { parseAck } from './ack';
import type { Hl7Header } from './hl7-message';
import { Hl7Receiver, type Hl7OrderAcceptor } from './hl7-receiver';
import { encodeMllp, MllpDecoder } from './mllp-decoder';

const run = promisify(execFile);

class TestSink implements ObservationSink {
  readonly messages = new Map<string, InboundMessage>();
  readonly quarantined: QuarantineInput[] = [];
  failWith: Error | undefined;
  private nextId = 1;
  async submit(msg: InboundMessage): Promise<CommitResult> {
    if (this.failWith) throw this.failWith;
    const key = `${msg.deviceId}|${msg.dedupeKey}`;
    if (this.messages.has(key)) return { messageId: 0, messageUid: 'dup', duplicate: true, observations: [] };
    this.messages.set(key, msg);
    const id = this.nextId++;
    return { messageId: id, messageUid: `u${id}`, duplicate: false, observations: [] };
  }
  async quarantine(q: QuarantineInput): Promise<number> {
    this.quarantined.push(q);
    return this.quarantined.length;
  }
}

/** What the gateway wires in: the order cache, de-duplicated on sender|MSH-10. */
class CacheAcceptor implements Hl7OrderAcceptor {
  calls: Array<{ updates: OrderUpdate[]; duplicate: boolean; applied: ReturnType<OrderCache['apply']> }> = [];
  failWith: Error | undefined;
  constructor(private readonly cache: OrderCache) {}
  accept(updates: OrderUpdate[], header: Hl7Header, _raw: Buffer, info: { deviceId: string; duplicate: boolean }): void {
    if (this.failWith) throw this.failWith;
    const applied = this.cache.apply(updates, { deviceId: info.deviceId, messageControlId: `${header.sendingApp}^${header.sendingFacility}|${header.controlId}` });
    this.calls.push({ updates, duplicate: info.duplicate, applied });
  }
}

async function mllpSend(port: number, file: string): Promise<string> {
  const { stdout } = await run('timeout', ['10', 'mllp_send', '--loose', '-f', file, '-p', String(port), '127.0.0.1'], { encoding: 'utf8' });
  return stdout.replace(/[\x0b\x1c]/g, '');
}

function exchange(port: number, payload: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    const dec = new MllpDecoder();
    s.on('connect', () => s.write(encodeMllp(Buffer.from(payload, 'utf8'))));
    s.on('data', (d) => {
      for (const ev of dec.push(d)) if (ev.type === 'frame') {
        s.destroy();
        resolve(ev.payload.toString('utf8'));
      }
    });
    s.on('error', reject);
  });
}

// A fictional patient; ids in the style of a Vietnamese hospital (BN = bệnh nhân, 12-digit CCCD).
const ORM_NW = [
  'MSH|^~\\&|HIS|BV_DEMO|IOMT-GW|LAB|20250301094500+0700||ORM^O01|HIS-ORM-7001|P|2.3.1|||||VNM|UNICODE UTF-8',
  'PID|1||BN0067890^^^BV_DEMO^MR~079179001122^^^VNM^NNVNM||Trần^Thị Bình||19790130|F',
  'PV1|1|O|KHAMBENH',
  'ORC|NW|HIS-ORD-9001|2503010057||||^^^^^R||20250301094500',
  'OBR|1|HIS-ORD-9001|2503010057|2345-7^Glucose^LN^717/^GLU^99ROCHE|||20250301094000',
  'OBR|2|HIS-ORD-9001|2503010057|2160-0^Creatinine^LN^690/^CREA^99ROCHE|||20250301094000',
].join('\r');
const ORM_CA = [
  'MSH|^~\\&|HIS|BV_DEMO|IOMT-GW|LAB|20250301101500+0700||ORM^O01|HIS-ORM-7002|P|2.3.1',
  'PID|1||BN0067890^^^BV_DEMO^MR||Trần^Thị Bình||19790130|F',
  'ORC|CA|HIS-ORD-9001|2503010057',
].join('\r');
const OML = [
  'MSH|^~\\&|LIS|BV_DEMO|IOMT-GW|LAB|20250302080000+0700||OML^O21^OML_O21|LIS-OML-0001|P|2.5.1',
  'PID|1||BN0099999^^^BV_DEMO^MR||Phạm^Minh Đức||20010515|M',
  'PV1|1|U',
  'ORC|NW|PLC-5001|FIL-5001',
  'TQ1|1||||||20250302075500||S',
  'OBR|1|PLC-5001|FIL-5001|1920-8^AST^LN',
  'SPM|1|SP250302001&HIS||SER^Serum^HL70487',
].join('\r');

describe('Hl7Receiver with an order acceptor (ORM^O01 / OML^O21)', () => {
  let tmp: { dir: string; cleanup: () => void };
  let db: Database.Database;
  let cache: OrderCache;
  let acceptor: CacheAcceptor;
  let sink: TestSink;
  let rx: Hl7Receiver;
  let port: number;
  let committed: InboundMessage[];
  const file = (name: string, text: string) => {
    const f = join(tmp.dir, name);
    writeFileSync(f, text + '\r', 'utf8');
    return f;
  };

  beforeAll(() => {
    createRootLogger('silent');
    requirePeer('mllp_send');
  });
  beforeEach(async () => {
    tmp = tempDir('hl7rx-orders-');
    db = new Database(join(tmp.dir, 'gateway.db'));
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    cache = new OrderCache(db);
    acceptor = new CacheAcceptor(cache);
    sink = new TestSink();
    committed = [];
    port = await freePort();
    rx = new Hl7Receiver({ deviceId: 'his-orders', host: '127.0.0.1', port, orders: acceptor }, sink, (_r, inbound) => committed.push(inbound));
    await rx.start();
  });
  afterEach(async () => {
    await rx.close();
    db.close();
    tmp.cleanup();
  });

  it('mllp_send ORM^O01 NW → ACK^O01^ACK AA after the cache committed; then ORC-1 CA cancels it', async () => {
    const out = await mllpSend(port, file('orm-nw.hl7', ORM_NW));
    expect(out).toContain('MSA|AA|HIS-ORM-7001');
    expect(out).toContain('|ACK^O01^ACK|');
    const o = cache.findBySpecimen('2503010057');
    expect(o).toMatchObject({
      status: 'pending',
      placerOrderNumber: 'HIS-ORD-9001',
      priority: 'R',
      patient: { patientId: 'BN0067890', name: 'Trần^Thị Bình', birthDate: '19790130', sex: 'F' },
      tests: [
        { code: '2345-7', altCode: '717/' },
        { code: '2160-0', altCode: '690/' },
      ],
    });
    // audit trail: the raw message is in the message store, no observations, de-duplicated on sender|MSH-10
    const stored = [...sink.messages.values()][0];
    expect(stored).toMatchObject({ deviceId: 'his-orders', driver: 'hl7-mllp', messageType: 'ORM^O01', drafts: [], sourceMessageId: 'HIS-ORM-7001', controlKey: 'HIS^BV_DEMO|HIS-ORM-7001' });
    expect(stored.dedupeKey).toMatch(/^HIS\^BV_DEMO\|HIS-ORM-7001\|[0-9a-f]{64}$/);
    expect(stored.raw.toString('utf8')).toContain('Trần^Thị Bình');
    expect(committed).toHaveLength(1);

    const out2 = await mllpSend(port, file('orm-ca.hl7', ORM_CA));
    expect(out2).toContain('MSA|AA|HIS-ORM-7002');
    expect(cache.findBySpecimen('2503010057')).toMatchObject({ status: 'cancelled' });
    expect(cache.lookup({ specimenIds: ['2503010057'] })[0].status).toBe('cancelled');
  });

  it('the same ORM re-sent (same MSH-10) → AA again, stored once, not re-applied', async () => {
    const f = file('orm-nw.hl7', ORM_NW);
    expect(await mllpSend(port, f)).toContain('MSA|AA|HIS-ORM-7001');
    const seq = cache.findBySpecimen('2503010057')!.changeSeq;
    expect(await mllpSend(port, f)).toContain('MSA|AA|HIS-ORM-7001');
    expect(sink.messages.size).toBe(1);
    expect(committed).toHaveLength(1);
    expect(acceptor.calls.map((c) => [c.duplicate, c.applied.duplicate])).toEqual([
      [false, false],
      [true, true],
    ]);
    expect(cache.findBySpecimen('2503010057')!.changeSeq).toBe(seq);
  });

  it('OML^O21 → ACK^O21^ACK AA; specimen from SPM-2', async () => {
    const ack = await exchange(port, OML);
    expect(parseAck(ack)).toMatchObject({ code: 'AA', controlId: 'LIS-OML-0001' });
    expect(ack).toContain('|ACK^O21^ACK|');
    expect(cache.findBySpecimen('SP250302001')).toMatchObject({ priority: 'S', specimenType: 'SER', tests: [{ code: '1920-8' }] });
  });

  it('broken order (no specimen id anywhere) → AE with ERR location and 101, quarantined, nothing stored or cached', async () => {
    const bad = 'MSH|^~\\&|HIS|BV_DEMO|||20250301||ORM^O01|BAD-1|P|2.3.1\rORC|NW\rOBR|1|||2345-7^Glucose^LN';
    const ack = await exchange(port, bad);
    expect(parseAck(ack)).toMatchObject({ code: 'AE', controlId: 'BAD-1', hl7ErrorCode: 101, location: 'OBR^1^3' });
    expect(sink.quarantined).toHaveLength(1);
    expect(sink.quarantined[0]).toMatchObject({ errorCode: 'GW_ERR_PARSE' });
    expect(sink.messages.size).toBe(0);
    expect(cache.stats().orders).toBe(0);
  });

  it('ORM version outside 2.3–2.6 → AR 203', async () => {
    const ack = await exchange(port, 'MSH|^~\\&|HIS|BV|||20250301||ORM^O01|V22|P|2.2\rORC|NW|P|S\rOBR|1|P|S|T');
    expect(parseAck(ack)).toMatchObject({ code: 'AR', hl7ErrorCode: 203 });
  });

  it('order cache failing → AE 207 and never AA; the re-send after recovery is applied (audit copy is a duplicate)', async () => {
    acceptor.failWith = new StoreError('disk I/O error');
    const ack = await exchange(port, ORM_NW);
    expect(parseAck(ack)).toMatchObject({ code: 'AE', controlId: 'HIS-ORM-7001', hl7ErrorCode: 207 });
    expect(ack).toContain('order cache unavailable');
    expect(cache.findBySpecimen('2503010057')).toBeUndefined();
    expect(sink.messages.size).toBe(1); // the audit copy was committed first
    acceptor.failWith = undefined;
    const again = await exchange(port, ORM_NW);
    expect(parseAck(again)).toMatchObject({ code: 'AA', controlId: 'HIS-ORM-7001' });
    expect(cache.findBySpecimen('2503010057')).toMatchObject({ status: 'pending' });
    expect(sink.messages.size).toBe(1);
  });

  it('message store failing → AE 207 "store unavailable", the cache is not touched', async () => {
    sink.failWith = new StoreError('closed');
    const ack = await exchange(port, ORM_NW);
    expect(parseAck(ack)).toMatchObject({ code: 'AE', hl7ErrorCode: 207, errorText: 'store unavailable' });
    expect(acceptor.calls).toHaveLength(0);
    expect(cache.stats().orders).toBe(0);
  });

  it('ORU^R01 still goes the ORU way when orders are enabled', async () => {
    const ack = await exchange(port, 'MSH|^~\\&|A|B|||20240101||ORU^R01|ORU-1|P|2.5.1\rOBR|1||S1\rOBX|1|NM|2093-3^Chol^LN||5.2|mmol/L|||||F');
    expect(parseAck(ack)).toMatchObject({ code: 'AA', controlId: 'ORU-1' });
    expect([...sink.messages.values()][0].drafts).toHaveLength(1);
    expect(acceptor.calls).toHaveLength(0);
  });
});

describe('Hl7Receiver without an order acceptor', () => {
  beforeAll(() => createRootLogger('silent'));
  it('ORM^O01 stays AR 200 (unsupported), quarantined', async () => {
    const sink = new TestSink();
    const port = await freePort();
    const rx = new Hl7Receiver({ deviceId: 'd', host: '127.0.0.1', port }, sink);
    await rx.start();
    try {
      const ack = await exchange(port, ORM_NW);
      expect(parseAck(ack)).toMatchObject({ code: 'AR', controlId: 'HIS-ORM-7001', hl7ErrorCode: 200 });
      expect(sink.quarantined).toHaveLength(1);
      expect(sink.messages.size).toBe(0);
    } finally {
      await rx.close();
    }
  });
});
