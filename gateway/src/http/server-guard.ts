/**
 * Admission control for the HTTP(S) port: status page, API, metrics and the Node-RED editor (issue 10
 * §2), with the device listeners' ListenerGuard (gateway/src/net/listener-guard.ts):
 * - a per-address connection limit (IOMT_HTTP_MAX_PER_ADDRESS, default 64: a browser opens ~6 per host, a reverse proxy or NAT many);
 * - a connection must send a complete request head within IOMT_HTTP_HEAD_TIMEOUT_MS (default 10000),
 *   else it is closed (the guard's first-frame timer: exact, where Node's own headersTimeout is only
 *   checked every 30 s); Node's headersTimeout/requestTimeout are lowered as a second line;
 * - a full server (IOMT_HTTP_MAX_CONNECTIONS, default 256) closes the connection idle longest to make
 *   room (never one whose request is being answered, nor an open editor WebSocket);
 * - refusals, evictions and failed TLS handshakes counted in the listener metrics (listener="http")
 *   and logged once per address per interval.
 *
 * With HTTPS the guard sees the TCP connection first ('connection'), before any TLS work; requests
 * arrive on the TLS socket, matched to it by remote address and port.
 */
import type { Server as HttpServer, IncomingMessage, ServerResponse } from 'node:http';
import type { Server as HttpsServer } from 'node:https';
import type net from 'node:net';
import type { Logger } from 'pino';
import { ListenerGuard, type GuardedConnection } from '../net/listener-guard';

export const DEFAULT_HTTP_MAX_CONNECTIONS = 256;
export const DEFAULT_HTTP_MAX_PER_ADDRESS = 64;
export const DEFAULT_HTTP_HEAD_TIMEOUT_MS = 10_000;
/** A whole request (head and body) must arrive within this (Node's requestTimeout; default 300 s). */
export const DEFAULT_HTTP_REQUEST_TIMEOUT_MS = 120_000;

export interface HttpGuardOptions {
  maxConnections?: number;
  maxPerAddress?: number;
  headTimeoutMs?: number;
  requestTimeoutMs?: number;
  logIntervalMs?: number;
  log: Logger;
}

/** The limits from IOMT_HTTP_MAX_CONNECTIONS, IOMT_HTTP_MAX_PER_ADDRESS, IOMT_HTTP_HEAD_TIMEOUT_MS (positive whole numbers; others ignored). */
export function httpGuardEnv(env: NodeJS.ProcessEnv = process.env): Pick<HttpGuardOptions, 'maxConnections' | 'maxPerAddress' | 'headTimeoutMs'> {
  const num = (v: string | undefined) => (v !== undefined && /^\d+$/.test(v.trim()) && Number(v) > 0 ? Number(v) : undefined);
  const out: Pick<HttpGuardOptions, 'maxConnections' | 'maxPerAddress' | 'headTimeoutMs'> = {};
  const c = num(env.IOMT_HTTP_MAX_CONNECTIONS);
  const a = num(env.IOMT_HTTP_MAX_PER_ADDRESS);
  const h = num(env.IOMT_HTTP_HEAD_TIMEOUT_MS);
  if (c) out.maxConnections = c;
  if (a) out.maxPerAddress = a;
  if (h) out.headTimeoutMs = h;
  return out;
}

const key = (s: { remoteAddress?: string; remotePort?: number }) => `${s.remoteAddress ?? '?'}|${s.remotePort ?? '?'}`;

/** Guard `server` (http or https) before it listens. Returns the guard (size, tests). */
export function guardHttpServer(server: HttpServer | HttpsServer, opts: HttpGuardOptions): ListenerGuard {
  const headTimeoutMs = opts.headTimeoutMs ?? DEFAULT_HTTP_HEAD_TIMEOUT_MS;
  const guard = new ListenerGuard({
    listener: 'http',
    maxConnections: opts.maxConnections ?? DEFAULT_HTTP_MAX_CONNECTIONS,
    maxPerAddress: opts.maxPerAddress ?? DEFAULT_HTTP_MAX_PER_ADDRESS,
    firstFrameTimeoutMs: headTimeoutMs,
    ...(opts.logIntervalMs ? { logIntervalMs: opts.logIntervalMs } : {}),
    log: opts.log,
  });
  // Node's own timers as a second line (checked every connectionsCheckingInterval)
  server.headersTimeout = headTimeoutMs;
  server.requestTimeout = Math.max(opts.requestTimeoutMs ?? DEFAULT_HTTP_REQUEST_TIMEOUT_MS, headTimeoutMs + 1);
  const open = new Map<string, { g: GuardedConnection; requests: number; upgraded: boolean }>();

  server.on('connection', (socket: net.Socket) => {
    const g = guard.admit(socket); // refused: destroyed, counted, logged once per address per interval
    if (!g) return;
    const k = key(socket);
    open.set(k, { g, requests: 0, upgraded: false });
    socket.once('close', () => {
      g.release();
      open.delete(k);
    });
  });
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const c = open.get(key(req.socket));
    if (!c) return;
    // a complete request head: first-frame timer off; busy (never evicted) until answered
    c.g.frame();
    c.requests++;
    c.g.busy = true;
    res.once('close', () => {
      c.requests--;
      if (c.requests <= 0 && !c.upgraded) {
        c.requests = 0;
        c.g.busy = false;
        c.g.frame(); // idle from now
      }
    });
  });
  server.on('upgrade', (req: IncomingMessage) => {
    const c = open.get(key(req.socket));
    if (!c) return;
    // an editor WebSocket: in use for as long as it is open (the per-address limit still counts it)
    c.g.frame();
    c.upgraded = true;
    c.g.busy = true;
  });
  server.on('tlsClientError', (e: Error, s: net.Socket) => guard.tlsFailure(s?.remoteAddress, e.message));
  server.once('close', () => guard.close());
  return guard;
}
