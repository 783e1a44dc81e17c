/**
 * MllpServer over real TCP sockets on 127.0.0.1: bytes that are not a complete MLLP block
 * (HL7 v2.5.1 Appendix C.2.1) are handed to onRefused in bounded runs (issue 8: nothing refused is
 * discarded unseen), with the ASTM driver's stray-bytes policy; good frames and their ACKs are unaffected.
 */
import net from 'node:net';
import { afterEach, beforeAll, describe, expect, it } from 'vitest';
import { createRootLogger } from '../../gateway/src/log/logger';
import { waitFor } from '../../test/helpers/env';
import { parseAck } from './ack';
import { encodeMllp, MllpDecoder } from './mllp-decoder';
import { MllpServer, REFUSED_MAX_BYTES, REFUSED_MAX_RUNS_PER_CONNECTION, type MllpConnectionInfo, type MllpRefusedRun, type MllpServerOptions } from './mllp-server';

const VT = '\x0b';
const FS = '\x1c';
const b = (s: string) => Buffer.from(s, 'latin1');
const MSG = (id: string) => `MSH|^~\\&|ERBA|LAB|||20240101120000||ORU^R01|${id}|P|2.5.1\rOBX|1|NM|704-7^BAS#^LN||0.06|10*3/uL|0.00-0.10|N|||F`;
/** The handler's answer: depends on the payload only, so an ACK can be checked against its frame. */
const ACK = (payload: Buffer) => Buffer.from(`ACK for ${payload.length} bytes: ${payload.toString('latin1').split('|')[9] ?? '?'}`, 'latin1');
// the Erba ELite 580 logger writes the tail of a message after the end block; 40 bytes with what follows
const ERBA_TAIL = '||0.06|10*3/uL|0.00-0.10|~N|||F\r' + 'OBX|18|N';

interface Refused {
  bytes: Buffer;
  reason: string;
  conn: MllpConnectionInfo;
  run: MllpRefusedRun;
  at: number;
}

let server: MllpServer | undefined;
afterEach(async () => {
  await server?.close();
  server = undefined;
});
beforeAll(() => {
  createRootLogger('silent');
});

async function start(opts: Partial<MllpServerOptions> = {}) {
  const handled: string[] = [];
  const refused: Refused[] = [];
  const junk: Array<{ bytes: number; reason: string }> = [];
  server = new MllpServer(
    {
      host: '127.0.0.1',
      port: 0,
      closeTimeoutMs: 200,
      onRefused: (bytes, reason, conn, run) => {
        refused.push({ bytes: Buffer.from(bytes), reason, conn, run, at: Date.now() });
      },
      ...opts,
    },
    async (payload) => {
      handled.push(payload.toString('latin1'));
      return ACK(payload);
    },
  );
  server.on('junk', (e: { bytes: number; reason: string }) => junk.push({ bytes: e.bytes, reason: e.reason }));
  const { port } = await server.start();
  return { port, handled, refused, junk };
}

/** A client: write bytes, read ACK frames one at a time. */
async function client(port: number) {
  const s = net.connect(port, '127.0.0.1');
  await new Promise<void>((r, j) => s.once('connect', () => r()).once('error', j));
  const dec = new MllpDecoder();
  const acks: Array<{ payload: string; at: number }> = [];
  let closed = false;
  s.on('data', (d) => {
    for (const ev of dec.push(d)) if (ev.type === 'frame') acks.push({ payload: ev.payload.toString('latin1'), at: Date.now() });
  });
  s.on('error', () => undefined);
  s.on('close', () => (closed = true));
  return {
    acks,
    get closed() {
      return closed;
    },
    write: (buf: Buffer) => new Promise<void>((r) => s.write(buf, () => r())),
    ack: (n: number) => waitFor(() => acks.length >= n && acks[n - 1].payload),
    end: () => new Promise<void>((r) => (closed ? r() : s.once('close', () => r()).end())),
  };
}

describe('MllpServer: refused bytes go to onRefused (HL7 v2.5.1 Appendix C.2.1)', () => {
  it('good frame, a 40-byte message tail after FS CR, good frame: onRefused gets exactly the tail; both frames handled and ACKed', async () => {
    expect(ERBA_TAIL.length).toBe(40);
    const { port, handled, refused, junk } = await start();
    const c = await client(port);
    await c.write(encodeMllp(b(MSG('M1'))));
    expect(await c.ack(1)).toBe(ACK(b(MSG('M1'))).toString('latin1'));
    await c.write(b(ERBA_TAIL));
    await c.write(encodeMllp(b(MSG('M2'))));
    expect(await c.ack(2)).toBe(ACK(b(MSG('M2'))).toString('latin1'));
    expect(handled).toEqual([MSG('M1'), MSG('M2')]);
    expect(refused).toHaveLength(1);
    expect(refused[0].bytes.toString('latin1')).toBe(ERBA_TAIL);
    expect(refused[0].run).toEqual({ kind: 'between-blocks', total: 40 });
    expect(refused[0].reason).toMatch(/^40 bytes between MLLP blocks/);
    expect(refused[0].reason).not.toContain('0.06'); // no payload in the reason
    expect(refused[0].conn.remoteAddress).toMatch(/^127\.0\.0\.1:\d+$/);
    expect(junk).toEqual([{ bytes: 40, reason: 'between-blocks' }]);
    await c.end();
    expect(refused).toHaveLength(1);
    expect(c.acks).toHaveLength(2);
  });

  it('the same in one write (frame, tail, frame): the same run, the same ACKs in order', async () => {
    const { port, handled, refused } = await start();
    const c = await client(port);
    await c.write(Buffer.concat([encodeMllp(b(MSG('A1'))), b(ERBA_TAIL), encodeMllp(b(MSG('A2')))]));
    await c.ack(2);
    expect(c.acks.map((a) => a.payload)).toEqual([ACK(b(MSG('A1'))), ACK(b(MSG('A2')))].map((x) => x.toString('latin1')));
    expect(handled).toEqual([MSG('A1'), MSG('A2')]);
    expect(refused.map((r) => [r.bytes.toString('latin1'), r.run.kind])).toEqual([[ERBA_TAIL, 'between-blocks']]);
    await c.end();
  });

  it('sender restart: VT + half a message + VT + the full message + FS CR → the half message, reason restart; the full one handled', async () => {
    const { port, handled, refused } = await start();
    const c = await client(port);
    const full = MSG('R1');
    const half = full.slice(0, 50);
    await c.write(b(`${VT}${half}`));
    await c.write(b(`${VT}${full}${FS}\r`));
    expect(await c.ack(1)).toBe(ACK(b(full)).toString('latin1'));
    expect(handled).toEqual([full]);
    await waitFor(() => refused.length === 1);
    expect(refused[0].bytes.toString('latin1')).toBe(half);
    expect(refused[0].run).toEqual({ kind: 'restart', total: 50 });
    expect(refused[0].reason).toContain('incomplete MLLP block of 50 bytes: the sender started a new block (VT)');
    await c.end();
  });

  it('garbage before the first VT with no frame after it: kept after 500 ms of quiet, reason before-vt', async () => {
    const { port, refused } = await start();
    const c = await client(port);
    const t0 = Date.now();
    await c.write(b('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    await waitFor(() => refused.length === 1, 3000);
    expect(refused[0].at - t0).toBeGreaterThanOrEqual(450);
    expect(refused[0].bytes.toString('latin1')).toBe('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    expect(refused[0].run.kind).toBe('before-vt');
    // the connection still works
    await c.write(encodeMllp(b(MSG('G1'))));
    expect(await c.ack(1)).toBe(ACK(b(MSG('G1'))).toString('latin1'));
    await c.end();
    expect(refused).toHaveLength(1);
  });

  it('runs shorter than 16 bytes and whitespace are only counted', async () => {
    const { port, refused, junk, handled } = await start();
    const c = await client(port);
    await c.write(Buffer.concat([encodeMllp(b(MSG('S1'))), b('xyz\r\n'), encodeMllp(b(MSG('S2'))), b('\r\n\r\n '), encodeMllp(b(MSG('S3'))), b('15 bytes junk..')]));
    await c.ack(3);
    await c.end();
    await waitFor(() => junk.length === 2);
    expect(junk).toEqual([
      { bytes: 5, reason: 'between-blocks' },
      { bytes: 15, reason: 'between-blocks' },
    ]);
    expect(refused).toEqual([]);
    expect(handled).toHaveLength(3);
  });

  it('connection closed inside a block: the partial block, reason truncated', async () => {
    const { port, refused, handled } = await start();
    const c = await client(port);
    await c.write(b(`${VT}${MSG('T1').slice(0, 30)}`));
    await c.end();
    await waitFor(() => refused.length === 1);
    expect(refused[0].bytes.toString('latin1')).toBe(MSG('T1').slice(0, 30));
    expect(refused[0].run).toEqual({ kind: 'truncated', total: 30 });
    expect(handled).toEqual([]);
  });

  it(`at most ${REFUSED_MAX_RUNS_PER_CONNECTION} runs per connection are handed over; all are counted`, async () => {
    const { port, refused, junk, handled } = await start();
    const c = await client(port);
    const parts: Buffer[] = [];
    for (let k = 0; k < 20; k++) parts.push(b(`junk run number ${String(k).padStart(2, '0')}`), encodeMllp(b(MSG(`C${k}`))));
    await c.write(Buffer.concat(parts));
    await c.ack(20);
    expect(handled).toHaveLength(20);
    expect(junk).toHaveLength(20);
    expect(junk.map((j) => j.bytes)).toEqual(Array(20).fill('junk run number 00'.length));
    expect(refused.map((r) => r.bytes.toString('latin1'))).toEqual(Array.from({ length: 16 }, (_, k) => `junk run number ${String(k).padStart(2, '0')}`));
    expect(refused[0].run.kind).toBe('before-vt');
    expect(refused.slice(1).every((r) => r.run.kind === 'between-blocks')).toBe(true);
    // a new connection has its own allowance
    const c2 = await client(port);
    await c2.write(b('x'.repeat(20)));
    await c2.end();
    await waitFor(() => refused.length === 17);
    expect(refused[16].run).toEqual({ kind: 'before-vt', total: 20 });
    await c.end();
  });

  it('a 1 MiB flood without a pause: runs end at 64 KiB, each kept run ≤ 64 KiB, every byte counted', async () => {
    const { port, refused, junk } = await start();
    const c = await client(port);
    const flood = Buffer.alloc(1024 * 1024, 0x41);
    await c.write(flood);
    await c.end();
    await waitFor(() => junk.reduce((n, j) => n + j.bytes, 0) === flood.length);
    expect(refused.length).toBeGreaterThan(0);
    expect(refused.length).toBeLessThanOrEqual(REFUSED_MAX_RUNS_PER_CONNECTION);
    for (const r of refused) {
      expect(r.bytes.length).toBeLessThanOrEqual(REFUSED_MAX_BYTES);
      expect(r.bytes.length).toBe(Math.min(r.run.total, REFUSED_MAX_BYTES));
      expect(r.bytes.equals(Buffer.alloc(r.bytes.length, 0x41))).toBe(true);
    }
    // runs ended at the size bound, not only at close
    expect(junk.length).toBeGreaterThan(1);
  });

  it('oversize: AE 104 and close as before; its head is handed over first, reason oversize', async () => {
    const { port, refused, handled } = await start({ maxBytes: 1000 });
    const c = await client(port);
    const big = b(MSG('BIG') + '\rNTE|1|L|' + 'A'.repeat(5000));
    await c.write(encodeMllp(big));
    const ack = parseAck(await c.ack(1));
    expect(ack).toMatchObject({ code: 'AE', controlId: '', hl7ErrorCode: 104 });
    await waitFor(() => c.closed);
    expect(handled).toEqual([]);
    expect(refused).toHaveLength(1);
    expect(refused[0].run.kind).toBe('oversize');
    expect(refused[0].run.total).toBeGreaterThan(1000);
    expect(refused[0].bytes.equals(big.subarray(0, refused[0].bytes.length))).toBe(true);
    expect(refused[0].bytes.length).toBe(refused[0].run.total);
    expect(refused[0].reason).toMatch(/^MLLP block larger than 1000 bytes refused: AE 104/);
    expect(refused[0].at).toBeLessThanOrEqual(c.acks[0].at);
  });

  it('an oversize AE waits for onRefused to finish; a throwing onRefused does not break the connection', async () => {
    const order: string[] = [];
    const { port } = await start({
      maxBytes: 100,
      onRefused: async (_bytes, _reason, _conn, run) => {
        if (run.kind !== 'oversize') throw new Error('store down');
        await new Promise((r) => setTimeout(r, 100));
        order.push('kept');
      },
    });
    const c = await client(port);
    await c.write(Buffer.concat([b('some junk before the first block'), encodeMllp(b('MSH|^~\\&|ok')), b(`${VT}${'x'.repeat(300)}${FS}\r`)]));
    await c.ack(2);
    order.push('ack');
    expect(c.acks[0].payload).toBe(ACK(b('MSH|^~\\&|ok')).toString('latin1'));
    expect(parseAck(c.acks[1].payload)).toMatchObject({ code: 'AE', hl7ErrorCode: 104 });
    expect(order).toEqual(['kept', 'ack']);
  });

  it('without onRefused nothing is kept, runs are still counted', async () => {
    server = new MllpServer({ host: '127.0.0.1', port: 0 }, async (p) => ACK(p));
    const junk: number[] = [];
    server.on('junk', (e: { bytes: number }) => junk.push(e.bytes));
    const { port } = await server.start();
    const c = await client(port);
    await c.write(Buffer.concat([b(ERBA_TAIL), encodeMllp(b(MSG('N1')))]));
    await c.ack(1);
    expect(junk).toEqual([40]);
    await c.end();
  });
});
