/**
 * Peer tests: the real python-hl7 `mllp_send` and `socat` against an Hl7Receiver on 127.0.0.1.
 */
import { execFile } from 'node:child_process';
import net from 'node:net';
import { join } from 'node:path';
import { readFileSync, writeFileSync } from 'node:fs';
import { promisify } from 'node:util';
import { afterAll, afterEach, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import type { CommitResult, InboundMessage, ObservationSink, QuarantineInput } from '../../gateway/src/contracts/driver';
import { StoreFullError } from '../../gateway/src/contracts/errors';
import { createRootLogger } from '../../gateway/src/log/logger';
import { freePort, requirePeer, tempDir, waitFor } from '../../test/helpers/env';
import { parseAck } from './ack';
import { contentHash, Hl7Receiver } from './hl7-receiver';
import { encodeMllp, MllpDecoder } from './mllp-decoder';

const run = promisify(execFile);
const FIX = join(__dirname, 'fixtures');

/** A simple sink: commits to a Map keyed by (deviceId, dedupeKey); can be switched to fail like a full disk. */
class TestSink implements ObservationSink {
  readonly messages = new Map<string, InboundMessage>();
  readonly quarantined: QuarantineInput[] = [];
  failWith: Error | undefined;
  delayMs = 0;
  active = 0;
  maxActive = 0;
  order: string[] = [];
  private nextId = 1;
  async submit(msg: InboundMessage): Promise<CommitResult> {
    this.active++;
    this.maxActive = Math.max(this.maxActive, this.active);
    try {
      if (this.delayMs) await new Promise((r) => setTimeout(r, this.delayMs));
      if (this.failWith) throw this.failWith;
      this.order.push(msg.sourceMessageId ?? '');
      const key = `${msg.deviceId}|${msg.dedupeKey}`;
      if (this.messages.has(key)) return { messageId: 0, messageUid: 'dup', duplicate: true, observations: [] };
      this.messages.set(key, msg);
      const id = this.nextId++;
      return { messageId: id, messageUid: `u${id}`, duplicate: false, observations: [] };
    } finally {
      this.active--;
    }
  }
  async quarantine(q: QuarantineInput): Promise<number> {
    if (this.failWith) throw this.failWith;
    this.quarantined.push(q);
    return this.quarantined.length;
  }
}

async function mllpSend(port: number, file: string, loose = true): Promise<string> {
  const args = ['10', 'mllp_send', ...(loose ? ['--loose'] : []), '-f', file, '-p', String(port), '127.0.0.1'];
  const { stdout } = await run('timeout', args, { encoding: 'latin1' });
  return stdout.replace(/[\x0b\x1c]/g, '');
}

/** Raw socket: write bytes, collect ACK frames until `n` frames arrived or the peer closed. */
function rawExchange(port: number, chunks: Buffer[], n: number): Promise<{ acks: string[]; closed: boolean }> {
  return new Promise((resolve) => {
    const s = net.connect(port, '127.0.0.1');
    const dec = new MllpDecoder();
    const acks: string[] = [];
    let done = false;
    const finish = (closed: boolean) => {
      if (done) return;
      done = true;
      s.destroy();
      resolve({ acks, closed });
    };
    s.on('connect', () => {
      for (const c of chunks) s.write(c);
      if (n === 0) s.end();
    });
    s.on('data', (d) => {
      for (const ev of dec.push(d)) if (ev.type === 'frame') acks.push(ev.payload.toString('utf8'));
      if (acks.length >= n && n > 0) finish(false);
    });
    s.on('error', () => finish(true));
    s.on('close', () => finish(true));
  });
}

const GOOD = (id: string) => Buffer.from(`MSH|^~\\&|ANALYZER|LAB|||20240101120000||ORU^R01|${id}|P|2.5.1\rOBR|1||S-${id}\rOBX|1|NM|2093-3^Chol^LN||5.2|mmol/L|<5.2|H|||F`);

describe('Hl7Receiver against real peers (mllp_send, socat)', () => {
  let sink: TestSink;
  let rx: Hl7Receiver;
  let port: number;
  let committed: Array<{ r: CommitResult; inbound: InboundMessage }>;
  let tmp: { dir: string; cleanup: () => void };

  beforeAll(() => {
    createRootLogger('silent');
    requirePeer('mllp_send');
    requirePeer('socat');
    tmp = tempDir('hl7rx-');
  });
  afterAll(() => tmp.cleanup());

  beforeEach(async () => {
    sink = new TestSink();
    committed = [];
    port = await freePort();
    rx = new Hl7Receiver({ deviceId: 'erba-1', host: '127.0.0.1', port, maxBytes: 1024 * 1024, idleTimeoutMs: 60_000, maxConnections: 16 }, sink, (r, inbound) => committed.push({ r, inbound }));
    await rx.start();
  });
  afterEach(async () => {
    await rx.close();
    await rx.close(); // safe twice
  });

  it('Erba ELite 580 messages → MSA|AA|<MSH-10>, committed with drafts and dedupe key', async () => {
    for (const f of ['erba_msg_002.hl7', 'erba_msg_003.hl7', 'erba_msg_010.hl7', 'erba_msg_050.hl7']) {
      const id = /\|ORU\^R01\|([^|]+)\|/.exec(readFileSync(join(FIX, f), 'latin1'))![1];
      const out = await mllpSend(port, join(FIX, f));
      expect(out).toContain(`MSA|AA|${id}`);
    }
    expect(sink.messages.size).toBe(4);
    expect(committed).toHaveLength(4);
    const m = committed[1].inbound;
    expect(m).toMatchObject({ deviceId: 'erba-1', driver: 'hl7-mllp', sourceMessageId: 'd7e83c08d8a949ea9edc7012412a741c', sender: 'ELite 580^Erba', controlKey: 'ELite 580^Erba|d7e83c08d8a949ea9edc7012412a741c', processingId: 'P', messageType: 'ORU^R01' });
    // a duplicate is the same sender, MSH-10 *and* content (hash without MSH-7)
    expect(m.dedupeKey).toBe(`ELite 580^Erba|d7e83c08d8a949ea9edc7012412a741c|${contentHash(readFileSync(join(FIX, 'erba_msg_003.hl7'), 'latin1'))}`);
    expect(m.drafts).toHaveLength(37);
    expect(m.meta).toMatchObject({ version: '2.3.1' });
    expect(rx.status()).toMatchObject({ state: 'listening', driver: 'hl7-mllp', deviceId: 'erba-1' });
  });

  it('a re-sent message (same MSH-10) → AA again, stored once, no onCommitted', async () => {
    const f = join(FIX, 'erba_msg_002.hl7');
    expect(await mllpSend(port, f)).toContain('MSA|AA|ac84fae48b0e475996af764673f793fb');
    expect(await mllpSend(port, f)).toContain('MSA|AA|ac84fae48b0e475996af764673f793fb');
    expect(sink.messages.size).toBe(1);
    expect(committed).toHaveLength(1);
  });

  it('PCD-01 (v2.6, MSH-15 NE / MSH-16 AL) and the LF sample → AA; a pre-framed file with two blocks → two AAs', async () => {
    expect(await mllpSend(port, join(FIX, 'pcd01_vitals_identified.hl7'))).toContain('MSA|AA|PCD01-0001');
    expect(await mllpSend(port, join(FIX, 'oru_r01_lf.hl7'))).toContain('MSA|AA|MSG00001');
    const out = await mllpSend(port, join(FIX, 'oru_r01.mllp'), false);
    expect(out).toContain('MSA|AA|MSG00001');
    expect(out).toContain('MSA|AA|MSG00002');
  });

  it('store failing (StoreFullError) → MSA|AE with ERR 207 "store unavailable", never AA', async () => {
    sink.failWith = new StoreFullError('quota reached');
    const out = await mllpSend(port, join(FIX, 'erba_msg_002.hl7'));
    expect(out).toContain('MSA|AE|ac84fae48b0e475996af764673f793fb');
    expect(out).toContain('207^Application internal error^HL70357');
    expect(out).toContain('store unavailable');
    expect(out).not.toContain('MSA|AA');
    expect(committed).toHaveLength(0);
  });

  it('non-ORU (ADT^A01) → AR with ERR 200, quarantined, not stored', async () => {
    const f = join(tmp.dir, 'adt.hl7');
    writeFileSync(f, 'MSH|^~\\&|HIS|H|||20240101||ADT^A01|ADT1|P|2.5\rPID|1||X1\r');
    const out = await mllpSend(port, f);
    expect(out).toContain('MSA|AR|ADT1');
    expect(out).toContain('ERR||MSH^1^9|200^Unsupported message type^HL70357|E');
    expect(sink.messages.size).toBe(0);
    expect(sink.quarantined[0]).toMatchObject({ errorCode: 'GW_ERR_UNSUPPORTED', deviceId: 'erba-1' });
  });

  it('Erba message cut short by its logger → AA: every readable OBX stored, the damaged one flagged', async () => {
    const out = await mllpSend(port, join(FIX, 'erba_msg_001.hl7'));
    expect(out).toContain('MSA|AA|031416ea601f4d8fa02c823f6fa42b8e');
    expect(sink.messages.size).toBe(1);
    expect(sink.quarantined).toHaveLength(0);
    const drafts = committed[0].inbound.drafts;
    expect(drafts).toHaveLength(19);
    expect(drafts.filter((d) => d.quality?.some((q) => q.code === 'segment-truncated')).map((d) => d.code.code)).toEqual(['704-7']);
    expect(rx.status().flaggedResults).toBe(2);
  });

  it('strict listener: the same damaged message → AE with location, quarantined, nothing stored', async () => {
    await rx.close();
    rx = new Hl7Receiver({ deviceId: 'erba-1', host: '127.0.0.1', port, maxBytes: 1024 * 1024, idleTimeoutMs: 60_000, maxConnections: 16, strict: true }, sink, (r, inbound) => committed.push({ r, inbound }));
    await rx.start();
    const out = await mllpSend(port, join(FIX, 'erba_msg_001.hl7'));
    expect(out).toContain('MSA|AE|031416ea601f4d8fa02c823f6fa42b8e');
    expect(out).toContain('ERR||OBX^17^5|102^Data type error^HL70357|E');
    expect(sink.messages.size).toBe(0);
    expect(sink.quarantined).toHaveLength(1);
    expect(sink.quarantined[0]).toMatchObject({ errorCode: 'GW_ERR_PARSE' });
    expect(sink.quarantined[0].raw.toString('latin1')).toContain('OBX|17|NM|704-7^BAS#^LNOBX|37');
  });

  it('garbage bytes via socat → ignored; the server stays alive and the next message gets AA', async () => {
    const g = join(tmp.dir, 'garbage.bin');
    writeFileSync(g, Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n\x00\xff\xfe'));
    let junk = 0;
    rx.server.on('junk', (e: { bytes: number }) => (junk += e.bytes));
    await run('sh', ['-c', `socat -t 1 - TCP:127.0.0.1:${port} < '${g}'`]).catch(() => undefined);
    await waitFor(() => junk > 0);
    const r = await rawExchange(port, [encodeMllp(GOOD('AFTER-GARBAGE'))], 1);
    expect(parseAck(r.acks[0])).toMatchObject({ code: 'AA', controlId: 'AFTER-GARBAGE' });
  });

  it('raw socat frame without segment CR before FS (as in peers.md) → AA', async () => {
    const f = join(tmp.dir, 'raw.mllp');
    writeFileSync(f, Buffer.from('\x0bMSH|^~\\&|A|B|C|D|20240101||ORU^R01|X9|P|2.3\rPID|1\x1c\r', 'latin1'));
    const { stdout } = await run('sh', ['-c', `socat -t 2 - TCP:127.0.0.1:${port} < '${f}'`], { encoding: 'latin1' });
    expect(stdout).toContain('MSA|AA|X9');
  });

  it('non-HL7 text inside a frame → AE (MSA-2 empty, 100), quarantined', async () => {
    const r = await rawExchange(port, [encodeMllp(Buffer.from('hello, this is not HL7'))], 1);
    expect(parseAck(r.acks[0])).toMatchObject({ code: 'AE', controlId: '', hl7ErrorCode: 100 });
    expect(sink.quarantined).toHaveLength(1);
  });

  it('truncated frame (connection closed before FS) → nothing stored, no crash; next message AA', async () => {
    const half = encodeMllp(GOOD('TRUNC')).subarray(0, 60);
    const r = await rawExchange(port, [half], 0);
    expect(r.acks).toEqual([]);
    expect(sink.messages.size).toBe(0);
    const ok = await rawExchange(port, [encodeMllp(GOOD('AFTER-TRUNC'))], 1);
    expect(parseAck(ok.acks[0]).code).toBe('AA');
  });

  it('10 MB message → AE 104 and the connection is closed; the server stays alive', async () => {
    const big = Buffer.concat([GOOD('BIG'), Buffer.from('\rNTE|1|L|'), Buffer.alloc(10 * 1024 * 1024, 0x41)]);
    const r = await rawExchange(port, [encodeMllp(big)], 2);
    expect(r.acks).toHaveLength(1);
    expect(parseAck(r.acks[0])).toMatchObject({ code: 'AE', controlId: '', hl7ErrorCode: 104 });
    expect(r.closed).toBe(true);
    expect(sink.messages.size).toBe(0);
    const ok = await rawExchange(port, [encodeMllp(GOOD('AFTER-BIG'))], 1);
    expect(parseAck(ok.acks[0]).code).toBe('AA');
  });

  it('frames on one connection are handled strictly one after the other, ACKs in arrival order', async () => {
    sink.delayMs = 20;
    const ids = ['S1', 'S2', 'S3', 'S4', 'S5'];
    const r = await rawExchange(port, [Buffer.concat(ids.map((id) => encodeMllp(GOOD(id))))], ids.length);
    expect(r.acks.map((a) => parseAck(a).controlId)).toEqual(ids);
    expect(sink.order).toEqual(ids);
    expect(sink.maxActive).toBe(1);
  });

  it('frames arriving in separate reads while one is being committed wait their turn; reading resumes after the backlog', async () => {
    sink.delayMs = 30;
    const s = net.connect(port, '127.0.0.1');
    const dec = new MllpDecoder();
    const acks: string[] = [];
    const got = (n: number) =>
      new Promise<void>((resolve, reject) => {
        // resolves at once when they are there; the failure guarded is a connection that never reads again (a hang)
        const end = Date.now() + 20_000;
        const check = () => (acks.length >= n ? resolve() : Date.now() > end ? reject(new Error(`${acks.length} of ${n} ACKs within 20 s`)) : setTimeout(check, 5));
        check();
      });
    s.on('data', (d) => {
      for (const ev of dec.push(d)) if (ev.type === 'frame') acks.push(parseAck(ev.payload.toString('utf8')).controlId);
    });
    await new Promise((r) => s.once('connect', r));
    s.write(encodeMllp(GOOD('P1')));
    await new Promise((r) => setTimeout(r, 10)); // P1 is in the sink now (busy): P2 and P3 queue behind it
    s.write(encodeMllp(GOOD('P2')));
    await new Promise((r) => setTimeout(r, 5));
    s.write(encodeMllp(GOOD('P3')));
    await got(3);
    s.write(encodeMllp(GOOD('P4'))); // after the backlog: the connection reads again
    await got(4);
    s.destroy();
    expect(acks).toEqual(['P1', 'P2', 'P3', 'P4']);
    expect(sink.order).toEqual(['P1', 'P2', 'P3', 'P4']);
    expect(sink.maxActive).toBe(1);
  });

  it('many connections are served concurrently', async () => {
    sink.delayMs = 50;
    const ids = Array.from({ length: 8 }, (_, i) => `C${i}`);
    const rs = await Promise.all(ids.map((id) => rawExchange(port, [encodeMllp(GOOD(id))], 1)));
    expect(rs.map((r) => parseAck(r.acks[0]).code)).toEqual(ids.map(() => 'AA'));
    expect(sink.maxActive).toBeGreaterThan(1);
  });
});

describe('Hl7Receiver connection limits', () => {
  beforeAll(() => createRootLogger('silent'));

  it('idle timeout closes the connection', async () => {
    const port = await freePort();
    const rx = new Hl7Receiver({ deviceId: 'd', host: '127.0.0.1', port, idleTimeoutMs: 100 }, new TestSink());
    const ac = new AbortController();
    const running = rx.run(ac.signal);
    await waitFor(() => rx.status().state === 'listening');
    const r = await rawExchange(port, [], -1);
    expect(r.closed).toBe(true);
    ac.abort();
    await running;
    expect(rx.status().state).toBe('stopped');
  });

  it('run() rejects when the port is taken', async () => {
    const port = await freePort();
    const a = new Hl7Receiver({ deviceId: 'a', host: '127.0.0.1', port }, new TestSink());
    const b = new Hl7Receiver({ deviceId: 'b', host: '127.0.0.1', port }, new TestSink());
    await a.start();
    await expect(b.run(new AbortController().signal)).rejects.toThrow(/EADDRINUSE/);
    expect(b.status().state).toBe('error');
    await a.close();
    await b.close();
  });
});
