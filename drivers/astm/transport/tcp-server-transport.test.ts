/**
 * Issue 10 §2/§3: admission on the ASTM TCP listener with real sockets from several loopback
 * addresses: allow-list, per-address limit, first ENQ within firstFrameTimeoutMs (LIS01 §1.3.1),
 * a full listener closes the connection idle longest.
 */
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { metrics } from '../../../gateway/src/metrics/registry';
import { waitFor } from '../../../test/helpers/env';
import type { TransportConnection } from './transport';
import { TcpServerTransport, type TcpServerTransportOptions } from './tcp-server-transport';

const transports: TcpServerTransport[] = [];
const sockets: net.Socket[] = [];
afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(transports.splice(0).map((t) => t.close()));
});

let seq = 0;
async function start(opts: Partial<TcpServerTransportOptions> = {}) {
  const listener = `astm-guard-${++seq}`;
  const t = new TcpServerTransport({ port: 0, host: '127.0.0.1', listener, ...opts });
  transports.push(t);
  const conns: TransportConnection[] = [];
  const received: Buffer[] = [];
  t.on('connection', (c: TransportConnection) => {
    conns.push(c);
    c.on('data', (b: Buffer) => received.push(b));
  });
  await t.start();
  return { t, port: t.boundPort!, listener, conns, received };
}

function connect(port: number, from: string): Promise<{ socket: net.Socket; closed: () => boolean }> {
  return new Promise((resolve) => {
    let closed = false;
    const socket = net.connect({ port, host: '127.0.0.1', localAddress: from });
    sockets.push(socket);
    socket.on('error', () => undefined);
    const r = { socket, closed: () => closed };
    socket.on('close', () => {
      closed = true;
      resolve(r);
    });
    socket.once('connect', () => resolve(r));
  });
}

describe('TcpServerTransport admission (issue 10 §2, §3)', () => {
  it('allow-list: a listed address reaches the link; another is closed at once and counted', async () => {
    const { port, listener, conns, received } = await start({ allowFrom: '127.0.0.2/32' });
    const ok = await connect(port, '127.0.0.2');
    ok.socket.write(Buffer.from([0x05]));
    await waitFor(() => received.length === 1);
    const no = await connect(port, '127.0.0.3');
    await waitFor(() => no.closed(), 5000); // at once; 5 s leaves room for a loaded machine, below the 10 s first-frame default
    expect(conns).toHaveLength(1);
    expect(ok.closed()).toBe(false);
    expect(metrics.listenerRefused.get({ listener, reason: 'not-allowed' })).toBe(1);
  });

  it('a connection without ENQ is closed after firstFrameTimeoutMs; one that sent ENQ stays', async () => {
    // 1 s, not 300 ms: the timer races the read of the talker's ENQ in the same process; a loaded machine that
    // stalls the loop past the deadline would close the talker too
    const { port, listener } = await start({ firstFrameTimeoutMs: 1000 });
    const silent = await connect(port, '127.0.0.4');
    silent.socket.write('H|\\^&'); // bytes, but no ENQ
    const talker = await connect(port, '127.0.0.5');
    talker.socket.write(Buffer.from([0x05]));
    await waitFor(() => silent.closed(), 5000); // by the 1 s timeout, not the 10 s default
    await new Promise((r) => setTimeout(r, 1000)); // past the talker's own deadline too
    expect(talker.closed()).toBe(false);
    expect(metrics.listenerEvicted.get({ listener, reason: 'first-frame-timeout' })).toBe(1);
  });

  it('per-address limit and eviction: the 3rd from one address is refused; a full listener closes the idle-longest (never-ENQ first)', async () => {
    const { port, listener } = await start({ maxConnections: 3, maxPerAddress: 2 });
    const a = await connect(port, '127.0.0.6');
    a.socket.write(Buffer.from([0x05]));
    await new Promise((r) => setTimeout(r, 30));
    const b = await connect(port, '127.0.0.6');
    const refused = await connect(port, '127.0.0.6');
    await waitFor(() => refused.closed(), 2000);
    expect(metrics.listenerRefused.get({ listener, reason: 'per-address' })).toBe(1);
    const c = await connect(port, '127.0.0.7');
    c.socket.write(Buffer.from([0x05]));
    await new Promise((r) => setTimeout(r, 30));
    // full (a, b, c): the next one closes b (never sent ENQ), then a (oldest ENQ)
    const d = await connect(port, '127.0.0.8');
    d.socket.write(Buffer.from([0x05]));
    await waitFor(() => b.closed(), 2000);
    expect(a.closed()).toBe(false);
    await new Promise((r) => setTimeout(r, 30));
    await connect(port, '127.0.0.9');
    await waitFor(() => a.closed(), 2000);
    expect(c.closed()).toBe(false);
    expect(d.closed()).toBe(false);
    expect(metrics.listenerEvicted.get({ listener, reason: 'idle-longest' })).toBe(2);
  });

  it('a bad allow-list entry is an error naming it', () => {
    expect(() => new TcpServerTransport({ port: 0, allowFrom: 'analyzer-1' })).toThrow(/analyzer-1/);
  });
});
