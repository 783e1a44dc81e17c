/**
 * Issue 10 §2 on the HTTP(S) port (server-guard.ts), against real node:http / node:https servers on
 * loopback, clients from 127.0.0.x: per-address limit, a connection without a complete request head
 * closed after the head timeout, a full server closes the idle-longest (never one being answered),
 * refusals/evictions/TLS failures counted with listener="http".
 */
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import tls from 'node:tls';
import { afterEach, describe, expect, it } from 'vitest';
import { metrics } from '../metrics/registry';
import { createRootLogger } from '../log/logger';
import { tempDir, waitFor } from '../../../test/helpers/env';
import { makeCerts } from '../../../test/helpers/tls';
import { guardHttpServer, type HttpGuardOptions } from './server-guard';

const log = createRootLogger('silent');
let servers: Array<http.Server> = [];
let sockets: net.Socket[] = [];
afterEach(async () => {
  for (const s of sockets) s.destroy();
  sockets = [];
  for (const s of servers) {
    s.closeAllConnections();
    await new Promise((r) => s.close(r));
  }
  servers = [];
});

const listener = { listener: 'http' };
const snapshot = () => ({
  perAddress: metrics.listenerRefused.get({ ...listener, reason: 'per-address' }),
  full: metrics.listenerRefused.get({ ...listener, reason: 'full' }),
  idle: metrics.listenerEvicted.get({ ...listener, reason: 'idle-longest' }),
  head: metrics.listenerEvicted.get({ ...listener, reason: 'first-frame-timeout' }),
  tls: metrics.listenerTlsFailures.get(listener),
});

async function start(opts: Partial<HttpGuardOptions>, slowPath?: (res: http.ServerResponse) => void, server: http.Server = http.createServer()): Promise<{ port: number; guard: ReturnType<typeof guardHttpServer> }> {
  server.on('request', (req, res) => {
    if (req.url === '/slow' && slowPath) return slowPath(res);
    res.end('ok');
  });
  const guard = guardHttpServer(server, { log, ...opts });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  return { port: (server.address() as net.AddressInfo).port, guard };
}

/** A raw TCP client from `from`; resolves once connected, with a flag set when the server closed it. */
function raw(port: number, from: string): Promise<net.Socket & { closedByServer?: boolean }> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ port, host: '127.0.0.1', localAddress: from }) as net.Socket & { closedByServer?: boolean };
    sockets.push(s);
    s.on('close', () => (s.closedByServer = true));
    s.on('error', () => undefined);
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });
}

function get(port: number, from: string, path = '/'): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, localAddress: from, agent: false }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
    });
    req.on('error', reject);
  });
}

describe('HTTP server guard (issue 10 §2)', () => {
  it('per-address limit: the 5th connection from one address is closed at once and counted; another address still gets answers', async () => {
    const before = snapshot();
    const { port } = await start({ maxPerAddress: 4 });
    const held = await Promise.all(Array.from({ length: 4 }, () => raw(port, '127.0.0.2')));
    const fifth = await raw(port, '127.0.0.2');
    await waitFor(() => fifth.closedByServer, 3000);
    expect(held.every((s) => !s.closedByServer)).toBe(true);
    expect(snapshot().perAddress - before.perAddress).toBe(1);
    expect(await get(port, '127.0.0.3')).toBe(200);
  });

  it('a connection that sends no complete request head is closed after the head timeout; one that sent a request stays open (keep-alive)', async () => {
    const before = snapshot();
    // 1 s, not 300 ms: the timer races the read of `good`'s request in the same process; a loaded machine that
    // stalls the loop past the deadline would close `good` too
    const { port } = await start({ headTimeoutMs: 1000 });
    const slowloris = await raw(port, '127.0.0.4');
    slowloris.write('GET / HTTP/1.1\r\nHost: x\r\n'); // never the blank line
    const good = await raw(port, '127.0.0.5');
    good.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: keep-alive\r\n\r\n');
    await waitFor(() => slowloris.closedByServer, 5000); // by the 1 s timeout, not the 10 s default
    expect(good.closedByServer).toBeFalsy();
    expect(snapshot().head - before.head).toBe(1);
  });

  it('a full server closes the idle-longest connection to admit a new one; a connection whose request is being answered is never chosen', async () => {
    const before = snapshot();
    let release: () => void = () => undefined;
    const { port, guard } = await start({ maxConnections: 3, headTimeoutMs: 10_000 }, (res) => (release = () => res.end('late')));
    // busy: a request the server has not answered yet
    const busy = new Promise<number>((resolve) => {
      http.get({ host: '127.0.0.1', port, path: '/slow', localAddress: '127.0.0.6', agent: false }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
    });
    await waitFor(() => guard.size === 1, 3000);
    const idle1 = await raw(port, '127.0.0.7');
    const idle2 = await raw(port, '127.0.0.8');
    await waitFor(() => guard.size === 3, 3000);
    // full: the next one evicts the idle connection opened first (never-framed, oldest), not the busy one
    expect(await get(port, '127.0.0.9')).toBe(200);
    await waitFor(() => idle1.closedByServer, 3000);
    expect(idle2.closedByServer).toBeFalsy();
    release();
    expect(await busy).toBe(200);
    expect(snapshot().idle - before.idle).toBe(1);
    expect(snapshot().full - before.full).toBe(0);
  });

  it('HTTPS: failed TLS handshakes are counted (listener="http"); a good client is answered', async () => {
    const tmp = tempDir('iomt-http-guard-');
    try {
      const c = makeCerts(tmp.dir);
      const before = snapshot();
      const server = https.createServer({ key: c.key, cert: c.cert, minVersion: 'TLSv1.2' });
      const { port } = await start({}, undefined, server as unknown as http.Server);
      // not TLS at all, then a TLS 1.0-only client: both fail the handshake
      const junk = await raw(port, '127.0.0.10');
      junk.write('GET / HTTP/1.1\r\n\r\n');
      await waitFor(() => junk.closedByServer, 3000);
      await new Promise<void>((resolve) => {
        const s = tls.connect({ socket: net.connect({ host: '127.0.0.1', port, localAddress: '127.0.0.11' }), rejectUnauthorized: false, maxVersion: 'TLSv1', minVersion: 'TLSv1', ciphers: 'DEFAULT@SECLEVEL=0' });
        s.on('error', () => resolve());
        s.on('secureConnect', () => resolve());
      });
      await waitFor(() => snapshot().tls - before.tls >= 2, 3000);
      const status = await new Promise<number>((resolve, reject) => {
        https.get({ host: '127.0.0.1', port, ca: c.ca, localAddress: '127.0.0.12', agent: false }, (res) => {
          res.resume();
          res.on('end', () => resolve(res.statusCode ?? 0));
        }).on('error', reject);
      });
      expect(status).toBe(200);
    } finally {
      tmp.cleanup();
    }
  });
});
