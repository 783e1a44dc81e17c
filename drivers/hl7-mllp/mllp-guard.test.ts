/**
 * Issue 10 §2/§3: admission control on the MLLP listener, with real sockets from several loopback
 * addresses (127.0.0.x: Linux routes the whole 127/8 to lo): allow-list, per-address limit,
 * first-frame timeout, eviction of the connection idle longest, and an analyzer that keeps getting
 * AA while 500 idle connections try to lock it out.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import net from 'node:net';
import tls from 'node:tls';
import { afterEach, describe, expect, it } from 'vitest';
import { metrics } from '../../gateway/src/metrics/registry';
import { requirePeer, tempDir, waitFor } from '../../test/helpers/env';
import { MllpDecoder, encodeMllp } from './mllp-decoder';
import { MllpServer, type MllpServerOptions } from './mllp-server';

const MSG = (id: string) => `MSH|^~\\&|ANALYZER|LAB|GW|HOSP|20250301120000||ORU^R01|${id}|P|2.5.1\rPID|1||P1\r`;
const AA = (id: string) => `MSA|AA|${id}`;

const servers: MllpServer[] = [];
const sockets: net.Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(servers.splice(0).map((s) => s.close()));
});

let listenerSeq = 0;
async function start(opts: Partial<MllpServerOptions> = {}, host = '127.0.0.1') {
  const listener = `guard-test-${++listenerSeq}`;
  const server = new MllpServer({ host, port: 0, closeTimeoutMs: 200, logBindings: { deviceId: listener }, ...opts }, async (payload) => {
    const id = payload.toString('latin1').split('\r')[0].split('|')[9];
    return Buffer.from(`MSH|^~\\&|GW|HOSP|ANALYZER|LAB|20250301120000||ACK^R01^ACK|A${id}|P|2.5.1\r${AA(id)}\r`, 'latin1');
  });
  servers.push(server);
  const { port } = await server.start();
  return { server, port, listener };
}

interface Client {
  socket: net.Socket;
  acks: string[];
  closed: boolean;
  closedAt: number;
}

/** Connect from `from` (a loopback address); resolves once connected (or closed). */
function connect(port: number, from: string, host = '127.0.0.1'): Promise<Client> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host, localAddress: from });
    sockets.push(socket);
    const c: Client = { socket, acks: [], closed: false, closedAt: 0 };
    const dec = new MllpDecoder();
    socket.on('data', (d) => {
      for (const ev of dec.push(d)) if (ev.type === 'frame') c.acks.push(ev.payload.toString('latin1'));
    });
    socket.on('error', () => undefined);
    socket.on('close', () => {
      c.closed = true;
      c.closedAt = Date.now();
      resolve(c);
    });
    socket.once('connect', () => resolve(c));
  });
}

/** Send one message on a new connection from `from`; resolves with the ACK text (or '' if closed first) and the time it took. */
async function exchange(port: number, from: string, id: string): Promise<{ ack: string; ms: number }> {
  const t0 = Date.now();
  const c = await connect(port, from);
  c.socket.write(encodeMllp(Buffer.from(MSG(id), 'latin1')));
  await waitFor(() => c.acks.length > 0 || c.closed, 15_000);
  c.socket.destroy();
  return { ack: c.acks[0] ?? '', ms: Date.now() - t0 };
}

describe('MllpServer admission (issue 10 §2, §3)', () => {
  it('500 idle one-byte connections from 63 addresses: an analyzer on another address keeps getting AA within 10 s', async () => {
    const { port, listener } = await start({ maxConnections: 64 });
    const idle: Client[] = [];
    const results: Array<{ ack: string; ms: number }> = [];
    let stop = false;
    // the analyzer: one message per new connection, every 200 ms, for as long as the flood lasts
    const analyzer = (async () => {
      for (let i = 0; !stop || i < 3; i++) {
        results.push(await exchange(port, '127.0.0.250', `M${i}`));
        await new Promise((r) => setTimeout(r, 200));
      }
    })();
    for (let k = 0; k < 500; k++) {
      const from = `127.0.0.${2 + (k % 63)}`;
      const c = await connect(port, from);
      if (!c.closed) c.socket.write(Buffer.from([0x0b])); // a block started, never finished
      idle.push(c);
    }
    stop = true;
    await analyzer;
    // a client's connect resolves at the handshake, before the server accepts: on a loaded machine the last few
    // may still be in the accept queue here (CI-like load counted 433 evictions of 436). Once the server has taken
    // all 500, at most 64 stay open: wait for the rest to be closed, then check why they were.
    await waitFor(() => idle.filter((c) => c.closed).length >= 500 - 64, 30_000);
    expect(results.length).toBeGreaterThanOrEqual(3);
    for (const [i, r] of results.entries()) {
      expect(r.ack).toContain(AA(`M${i}`));
      expect(r.ms).toBeLessThan(10_000);
    }
    // 504 slots were possible per address (63 × 8), but only 64 on the listener: the rest made room by
    // closing idle ones (eviction) — nobody was refused for 'full' while idle connections existed
    expect(metrics.listenerEvicted.get({ listener, reason: 'idle-longest' })).toBeGreaterThanOrEqual(500 - 64);
    expect(metrics.listenerRefused.get({ listener, reason: 'full' })).toBe(0);
  }, 60_000);

  it('per-address limit: the 9th connection from one address is closed at once and counted; another address still gets in', async () => {
    const { server, port, listener } = await start({ maxConnections: 64, maxPerAddress: 8 });
    const eight = await Promise.all(Array.from({ length: 8 }, () => connect(port, '127.0.0.5')));
    await new Promise((r) => setTimeout(r, 50));
    expect(eight.every((c) => !c.closed)).toBe(true);
    const ninth = await connect(port, '127.0.0.5');
    await waitFor(() => ninth.closed, 5000); // at once; 5 s leaves room for a loaded machine, below the 10 s first-frame default
    expect(metrics.listenerRefused.get({ listener, reason: 'per-address' })).toBe(1);
    expect((await exchange(port, '127.0.0.6', 'X1')).ack).toContain(AA('X1'));
    expect(eight.every((c) => !c.closed)).toBe(true);
    // a slot freed on that address is usable again
    eight[0].socket.destroy();
    // wait for the server to see the close (a fixed 20 ms sleep raced it on a loaded machine): 7 left
    await waitFor(() => server.connectionCount === 7, 30_000);
    expect((await exchange(port, '127.0.0.5', 'X2')).ack).toContain(AA('X2'));
  });

  it('eviction order on a full listener: never-framed connections first (oldest first), then the one whose last message is oldest', async () => {
    const { port, listener } = await start({ maxConnections: 4 });
    // A: a message at t0; B: nothing; C: a message later; D: nothing, newer than B
    const a = await connect(port, '127.0.0.11');
    a.socket.write(encodeMllp(Buffer.from(MSG('A'), 'latin1')));
    await waitFor(() => a.acks.length === 1);
    const b = await connect(port, '127.0.0.12');
    await new Promise((r) => setTimeout(r, 20));
    const c = await connect(port, '127.0.0.13');
    c.socket.write(encodeMllp(Buffer.from(MSG('C'), 'latin1')));
    await waitFor(() => c.acks.length === 1);
    const d = await connect(port, '127.0.0.14');
    await new Promise((r) => setTimeout(r, 20));
    const order: string[] = [];
    const watch = { a, b, c, d } as Record<string, Client>;
    for (const [name, cl] of Object.entries(watch)) cl.socket.on('close', () => order.push(name));
    for (let i = 0; i < 3; i++) {
      // each new one evicts one, gets its AA and stays (the listener stays full)
      const n = await connect(port, `127.0.0.${30 + i}`);
      n.socket.write(encodeMllp(Buffer.from(MSG(`N${i}`), 'latin1')));
      await waitFor(() => n.acks.length === 1);
      expect(n.acks[0]).toContain(AA(`N${i}`));
      await waitFor(() => order.length === i + 1);
    }
    expect(order).toEqual(['b', 'd', 'a']);
    expect(c.closed).toBe(false);
    expect(metrics.listenerEvicted.get({ listener, reason: 'idle-longest' })).toBe(3);
  });

  it('first-frame timeout: a connection without a complete block is closed; one that sent a block stays', async () => {
    // 1 s, not 300 ms: the timer races the socket read of `ok`'s block in the same process; a loaded machine that
    // stalls the loop past the deadline would close `ok` too. Still far below the default (10 s) it must differ from.
    const { port, listener } = await start({ firstFrameTimeoutMs: 1000 });
    const t0 = Date.now();
    const slow = await connect(port, '127.0.0.21');
    slow.socket.write(Buffer.from('\x0bMSH|^~\\&|', 'latin1')); // bytes, but no complete block
    const ok = await connect(port, '127.0.0.22');
    ok.socket.write(encodeMllp(Buffer.from(MSG('F1'), 'latin1')));
    await waitFor(() => slow.closed, 30_000);
    expect(slow.closedAt - t0).toBeGreaterThanOrEqual(950);
    expect(slow.closedAt - t0, 'closed by the 1 s timeout, not the 10 s default').toBeLessThan(6000);
    await new Promise((r) => setTimeout(r, 1000)); // past ok's own deadline too
    expect(ok.closed).toBe(false);
    expect(ok.acks[0]).toContain(AA('F1'));
    expect(metrics.listenerEvicted.get({ listener, reason: 'first-frame-timeout' })).toBe(1);
  });

  it.each([
    { allowFrom: '127.0.0.2', host: '127.0.0.1', ok: ['127.0.0.2'], refused: ['127.0.0.3', '127.0.0.1'] },
    { allowFrom: '127.0.0.0/30, 10.0.0.0/8', host: '127.0.0.1', ok: ['127.0.0.1', '127.0.0.3'], refused: ['127.0.0.4', '127.0.0.9'] },
    // dual-stack listener: IPv4 peers arrive as ::ffff:127.0.0.x and are compared as IPv4
    { allowFrom: ['127.0.0.7', 'fd00::/8'], host: '::', ok: ['127.0.0.7'], refused: ['127.0.0.8'] },
  ])('allow-list $allowFrom on $host: allowed get AA, others are closed at once and counted', async ({ allowFrom, host, ok, refused }) => {
    const { port, listener } = await start({ allowFrom }, host);
    for (const [i, from] of ok.entries()) expect((await exchange(port, from, `OK${i}`)).ack).toContain(AA(`OK${i}`));
    for (const [i, from] of refused.entries()) {
      const t0 = Date.now();
      const r = await exchange(port, from, `NO${i}`);
      expect(r.ack).toBe('');
      expect(Date.now() - t0, 'closed at once, not by the 10 s first-frame default').toBeLessThan(5000);
    }
    expect(metrics.listenerRefused.get({ listener, reason: 'not-allowed' })).toBe(refused.length);
  });

  it('a bad allow-list entry is a configuration error naming it', () => {
    expect(() => new MllpServer({ port: 0, allowFrom: '10.0.0.0/8, printer.local' }, async () => Buffer.alloc(0))).toThrow(/printer\.local/);
  });

  it('TLS: a source not on the allow-list is closed before the handshake; failed handshakes are counted; an allowed client gets AA', async () => {
    requirePeer('openssl');
    const t = tempDir('iomt-guard-tls-');
    try {
      execFileSync('openssl', ['req', '-x509', '-newkey', 'ec', '-pkeyopt', 'ec_paramgen_curve:prime256v1', '-nodes', '-days', '1', '-subj', '/CN=localhost', '-keyout', join(t.dir, 'k.pem'), '-out', join(t.dir, 'c.pem')], { stdio: 'ignore' });
      const { port, listener } = await start({ allowFrom: '127.0.0.2', tls: { key: readFileSync(join(t.dir, 'k.pem')), cert: readFileSync(join(t.dir, 'c.pem')) } });
      const refused = await connect(port, '127.0.0.3');
      await waitFor(() => refused.closed, 5000);
      expect(metrics.listenerRefused.get({ listener, reason: 'not-allowed' })).toBe(1);
      expect(metrics.listenerTlsFailures.get({ listener })).toBe(0);
      const plain = await connect(port, '127.0.0.2');
      plain.socket.write('not a TLS client hello\r\n');
      await waitFor(() => plain.closed, 5000);
      await waitFor(() => metrics.listenerTlsFailures.get({ listener }) === 1, 5000);
      const ack = await new Promise<string>((resolve) => {
        const s = tls.connect({ port, host: '127.0.0.1', localAddress: '127.0.0.2', rejectUnauthorized: false }, () => s.write(encodeMllp(Buffer.from(MSG('T1'), 'latin1'))));
        sockets.push(s);
        const dec = new MllpDecoder();
        s.on('data', (d) => {
          for (const ev of dec.push(d)) if (ev.type === 'frame') resolve(ev.payload.toString('latin1'));
        });
        s.on('error', () => resolve(''));
      });
      expect(ack).toContain(AA('T1'));
    } finally {
      t.cleanup();
    }
  });
});
