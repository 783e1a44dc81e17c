/**
 * One small HTTP(S) client for the FHIR server and the token endpoint, on node:http/https so a site CA
 * and a client certificate apply to both (Node's global fetch takes no TLS options). Also exposed as a
 * fetch-compatible function for openid-client's `customFetch`.
 */
import http from 'node:http';
import https from 'node:https';

export interface TlsFiles {
  /** PEM: CA certificates to trust (a site CA). Absent = the system store. */
  ca?: Buffer | string;
  /** PEM: client certificate and key for mutual TLS. */
  cert?: Buffer | string;
  key?: Buffer | string;
  /** Default true. */
  rejectUnauthorized?: boolean;
}

export interface HttpResponse {
  status: number;
  headers: http.IncomingHttpHeaders;
  body: Buffer;
}

/** A connection-level failure: nothing (refused, DNS) or possibly something (reset, timeout) reached the server. */
export class HttpNetworkError extends Error {
  constructor(message: string, readonly code: string | undefined, readonly reachedServer: boolean) {
    super(message);
  }
}

const NOT_SENT = new Set(['ECONNREFUSED', 'ENOTFOUND', 'EAI_AGAIN', 'EHOSTUNREACH', 'ENETUNREACH', 'CERT_HAS_EXPIRED', 'DEPTH_ZERO_SELF_SIGNED_CERT', 'UNABLE_TO_VERIFY_LEAF_SIGNATURE', 'SELF_SIGNED_CERT_IN_CHAIN', 'ERR_TLS_CERT_ALTNAME_INVALID']);

export function httpRequest(
  url: string,
  opts: { method: string; headers?: Record<string, string>; body?: Buffer | string; tls?: TlsFiles; timeoutMs?: number; signal?: AbortSignal; maxBytes?: number },
): Promise<HttpResponse> {
  return new Promise((resolve, reject) => {
    const u = new URL(url);
    const lib = u.protocol === 'https:' ? https : http;
    const body = opts.body === undefined ? undefined : Buffer.isBuffer(opts.body) ? opts.body : Buffer.from(opts.body, 'utf8');
    const headers: Record<string, string> = { ...(opts.headers ?? {}) };
    if (body) headers['content-length'] = String(body.length);
    const req = lib.request(
      u,
      {
        method: opts.method,
        headers,
        ...(u.protocol === 'https:' ? { ca: opts.tls?.ca, cert: opts.tls?.cert, key: opts.tls?.key, rejectUnauthorized: opts.tls?.rejectUnauthorized ?? true } : {}),
        signal: opts.signal,
      },
      (res) => {
        const chunks: Buffer[] = [];
        let n = 0;
        res.on('data', (c: Buffer) => {
          n += c.length;
          if (n > (opts.maxBytes ?? 16 << 20)) {
            req.destroy(new Error('response too large'));
            return;
          }
          chunks.push(c);
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks) }));
        res.on('error', (e) => reject(new HttpNetworkError(e.message, (e as NodeJS.ErrnoException).code, true)));
      },
    );
    req.setTimeout(opts.timeoutMs ?? 30_000, () => req.destroy(Object.assign(new Error(`no answer within ${opts.timeoutMs ?? 30_000} ms`), { code: 'ETIMEDOUT' })));
    req.on('error', (e: NodeJS.ErrnoException) => {
      const code = e.code;
      reject(new HttpNetworkError(e.message, code, !(code && NOT_SENT.has(code))));
    });
    req.end(body);
  });
}

/** A fetch-compatible function over httpRequest (for openid-client's customFetch). */
export function fetchWithTls(tls: TlsFiles | undefined, timeoutMs = 30_000) {
  return async (input: string | URL | Request, init?: RequestInit): Promise<Response> => {
    const url = typeof input === 'string' ? input : input instanceof URL ? input.href : input.url;
    const headers: Record<string, string> = {};
    new Headers(init?.headers).forEach((v, k) => (headers[k] = v));
    let body: Buffer | undefined;
    if (init?.body !== undefined && init.body !== null) {
      if (typeof init.body === 'string') body = Buffer.from(init.body, 'utf8');
      else if (init.body instanceof URLSearchParams) body = Buffer.from(init.body.toString(), 'utf8');
      else if (init.body instanceof ArrayBuffer || ArrayBuffer.isView(init.body)) body = Buffer.from(init.body as ArrayBuffer);
      else throw new TypeError('fetchWithTls: unsupported body type');
    }
    const r = await httpRequest(url, { method: init?.method ?? 'GET', headers, body, tls, timeoutMs, signal: init?.signal ?? undefined });
    const h = new Headers();
    for (const [k, v] of Object.entries(r.headers)) if (v !== undefined) h.set(k, Array.isArray(v) ? v.join(', ') : v);
    return new Response(r.status === 204 || r.status === 304 ? null : new Uint8Array(r.body), { status: r.status, headers: h });
  };
}
