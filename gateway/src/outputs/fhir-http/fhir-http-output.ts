/**
 * FHIR R4 output (issue 13 §1): one transaction Bundle per inbound message (gateway/src/fhir/bundle.ts),
 * built once at append time and POSTed to the base URL by the outbox worker.
 *
 * Answers (FHIR R4 3.1.0.11 transaction; RFC 9110):
 * - 2xx transaction-response with a response per entry: delivered, unless an entry carries a 4xx/5xx status (a server that
 *   processes the Bundle like a batch): then as for that status.
 * - 401: the token is dropped and fetched again, and the Bundle re-sent once; a second 401 (or a 401 to a
 *   static bearer token) → 'unavailable' for the batch: a credentials problem never uses up attempts.
 * - 2xx with anything else (not a Bundle, no body, fewer responses than entries): retry, never delivered.
 * - 429 / 503: retry, not before Retry-After (RFC 9110 10.2.3: seconds or an HTTP-date) → retryAfterMs.
 * - 5xx, 408, 409, timeouts, connections lost: retry with the destination's backoff (safe: conditional creates).
 * - other 4xx: dead letter with the OperationOutcome's text (issue[].diagnostics / details.text).
 * - 3xx: not followed (a token is never sent elsewhere) → 'unavailable' for the batch: fix the base URL.
 * - connection refused / DNS / TLS verification failed: 'unavailable' (not attempted; the worker backs off).
 */
import type { Observation } from '../../contracts/observation';
import type { DeliveryOutcome, Output, OutboxEntry } from '../../contracts/output';
import { componentLogger, StateChangeLog } from '../../log/logger';
import { buildTransactionBundle, isCorrection } from '../../fhir/bundle';
import { correctionTargets } from '../../fhir/result-history';
import { fhirJson } from '../../fhir/values';
import { loadSiteConfig, type FhirSiteConfig } from '../../identifiers/site-config';
import { TokenSource } from './auth';
import { httpRequest, HttpNetworkError, type HttpResponse } from './http';
import { resolveFhirHttpOutputConfig, type FhirHttpOutputConfig, type FhirHttpOutputOptions } from './config';

export const FHIR_JSON = 'application/fhir+json';

/** Retry-After (RFC 9110 10.2.3): delay-seconds or an HTTP-date → ms from `now`; undefined when absent/unreadable. */
export function retryAfterMs(header: string | string[] | undefined, now = Date.now()): number | undefined {
  const v = (Array.isArray(header) ? header[0] : header)?.trim();
  if (!v) return undefined;
  if (/^\d+$/.test(v)) return Number(v) * 1000;
  const t = Date.parse(v);
  return Number.isNaN(t) ? undefined : Math.max(0, t - now);
}

/** The human text of an OperationOutcome (issue[].details.text / diagnostics), at most 500 characters. */
export function outcomeText(body: unknown): string | undefined {
  const oo = body as { resourceType?: string; issue?: Array<{ severity?: string; code?: string; diagnostics?: string; details?: { text?: string }; expression?: string[] }> };
  if (oo?.resourceType !== 'OperationOutcome' || !Array.isArray(oo.issue)) return undefined;
  const parts = oo.issue
    .filter((i) => i.severity !== 'information')
    .map((i) => [i.details?.text ?? i.diagnostics ?? i.code ?? '', i.expression?.length ? `(${i.expression.join(', ')})` : ''].filter(Boolean).join(' '));
  const t = parts.filter(Boolean).join('; ');
  return t ? t.slice(0, 500) : undefined;
}

function parseJson(b: Buffer): unknown {
  try {
    return JSON.parse(b.toString('utf8'));
  } catch {
    return undefined;
  }
}

export class FhirHttpOutput implements Output {
  readonly destination: string;
  readonly config: FhirHttpOutputConfig;
  readonly tokens: TokenSource;
  private readonly site: FhirSiteConfig;
  private readonly log;
  private readonly states = new StateChangeLog();
  /** The last exchange reached the server (for the node's status dot). */
  reachable: boolean | undefined;

  /** The store's SQLite file, read (read-only) at prepare time for what a correction replaces. */
  private readonly storeFile: string | undefined;

  /**
   * @param deps.storeFile the gateway store's database file (`<dataDir>/gateway.db`): a correction (Table 0085
   *   C, A, D, W) then replaces the latest earlier result of its device + specimen + test; without it, the one
   *   result of that key (a rerun makes that ambiguous: the server answers 412 → dead letter).
   */
  constructor(opts: FhirHttpOutputOptions, deps: { storeFile?: string } = {}) {
    this.storeFile = deps.storeFile;
    const { config, problems } = resolveFhirHttpOutputConfig(opts);
    if (problems.length) throw new TypeError(`fhir-http output: ${problems.map((p) => `${p.path}: ${p.reason}`).join('; ')}`);
    this.config = config;
    this.destination = config.destination;
    this.site = loadSiteConfig(config.siteConfigFile);
    if (!this.site.profileSets[config.profileSet]) throw new TypeError(`fhir-http output: profileSet '${config.profileSet}' is not in the site file (${Object.keys(this.site.profileSets).join(', ')})`);
    this.tokens = new TokenSource(config.auth, { tls: config.tls, timeoutMs: config.requestTimeoutMs });
    this.log = componentLogger('fhir-http-output', { destination: this.destination });
  }

  prepare(observations: Observation[], key: string): { payload: Buffer; contentType?: string } {
    // the store is read once here, when the outbox entry is built: a re-delivery sends these same bytes
    const correctionTarget = this.storeFile ? correctionTargets(this.storeFile, observations, isCorrection) : undefined;
    const bundle = buildTransactionBundle(observations, key, { site: this.site, profileSet: this.config.profileSet, correctionTarget });
    return { payload: Buffer.from(fhirJson(bundle), 'utf8'), contentType: FHIR_JSON };
  }

  async connect(signal: AbortSignal): Promise<void> {
    if (signal.aborted) return;
    // get a token early so a wrong secret shows at start (status), not only at the first result
    await this.tokens.header();
  }

  private async post(entry: OutboxEntry, signal: AbortSignal): Promise<HttpResponse> {
    const headers: Record<string, string> = { 'content-type': `${FHIR_JSON}; charset=utf-8`, accept: FHIR_JSON, prefer: 'return=minimal' };
    const auth = await this.tokens.header();
    if (auth) headers.authorization = auth;
    return httpRequest(`${this.config.baseUrl}/`, { method: 'POST', headers, body: entry.payload, tls: this.config.tls, timeoutMs: this.config.requestTimeoutMs, signal });
  }

  /** One outcome per entry, in order. Never throws. */
  async write(batch: OutboxEntry[], signal: AbortSignal): Promise<DeliveryOutcome[]> {
    const out: DeliveryOutcome[] = [];
    const rest = (from: number, error: string) => {
      for (let k = from; k < batch.length; k++) out.push({ id: batch[k].id, outcome: 'unavailable', error });
    };
    for (let i = 0; i < batch.length; i++) {
      const entry = batch[i];
      if (signal.aborted) {
        rest(i, 'aborted');
        break;
      }
      let res: HttpResponse;
      try {
        res = await this.post(entry, signal);
        if (res.status === 401 && this.tokens.canRefresh) {
          // RFC 6750 3.1 invalid_token: the token expired or was revoked; fetch a new one once
          this.tokens.invalidate();
          this.log.info('401 from the FHIR server: token fetched again');
          res = await this.post(entry, signal);
        }
      } catch (e) {
        if (e instanceof HttpNetworkError && !e.reachedServer) {
          this.reachable = false;
          if (this.states.changed('conn', 'unreachable')) this.log.warn({ reason: e.message }, 'FHIR server unreachable');
          rest(i, e.message);
          break;
        }
        const msg = (e as Error).message;
        if (e instanceof HttpNetworkError) {
          out.push({ id: entry.id, outcome: 'retry', error: `network: ${msg}` });
          rest(i + 1, 'not attempted after a network failure');
          break;
        }
        // token endpoint failure (wrong secret, auth server down): nothing was sent to the FHIR server
        if (this.states.changed('auth', 'failed')) this.log.warn({ reason: msg }, 'cannot get an access token');
        rest(i, msg);
        break;
      }
      this.reachable = true;
      if (res.status === 401) {
        // RFC 6750 3.1: the server refused our credentials (even a freshly fetched token): nothing was processed,
        // the Bundle is not at fault. Not attempted, so results are never dead-lettered for a wrong or expired secret.
        if (this.states.changed('auth', 'refused')) this.log.warn('the FHIR server refuses the access token (401): check the credentials');
        rest(i, `HTTP 401: the FHIR server refused the access token${this.tokens.canRefresh ? ' (a new one too)' : ''}`);
        break;
      }
      if (res.status >= 300 && res.status < 400) {
        // RFC 9110 15.4: not followed (the token must never go to another host); the base URL is wrong, the Bundle is not
        const loc = String(res.headers.location ?? '').slice(0, 200);
        if (this.states.changed('conn', 'redirect')) this.log.warn({ status: res.status, location: loc }, 'the FHIR server redirects: check the base URL');
        rest(i, `HTTP ${res.status}: redirect to ${loc || '(no Location)'} not followed; check the base URL`);
        break;
      }
      this.states.changed('auth', 'ok');
      if (this.states.changed('conn', 'reachable')) this.log.info({ baseUrl: this.config.baseUrl }, 'FHIR server reachable');
      const o = this.outcomeOf(entry, res);
      out.push(o);
      if (o.outcome === 'retry' && (res.status === 429 || res.status === 503)) {
        // the server asked us to slow down: the rest of the batch is not attempted now
        rest(i + 1, `not attempted: server answered ${res.status}`);
        break;
      }
    }
    return out;
  }

  private outcomeOf(entry: OutboxEntry, res: HttpResponse): DeliveryOutcome {
    const s = res.status;
    const body = parseJson(res.body);
    const text = outcomeText(body);
    if (s >= 200 && s < 300) {
      const b = body as { resourceType?: string; type?: string; entry?: Array<{ response?: { status?: string; outcome?: unknown } }> } | undefined;
      // FHIR R4 3.1.0.11.2: the answer to a transaction is a transaction-response Bundle with one entry per
      // request entry, each with response.status. Anything else (a proxy page, an empty 200, a partial Bundle)
      // proves nothing was stored: retried, never counted as delivered.
      const sent = (entry.payload.length ? (parseJson(entry.payload) as { entry?: unknown[] } | undefined)?.entry?.length : undefined) ?? 0;
      const answered = Array.isArray(b?.entry) ? b!.entry.filter((e) => /^\d{3}/.test(e?.response?.status ?? '')).length : 0;
      if (b?.resourceType !== 'Bundle' || b.type !== 'transaction-response' || answered !== sent) {
        const what = b?.resourceType ? `${b.resourceType}${b.type ? ` ${b.type}` : ''} with ${answered} entry responses` : res.body.length ? 'a body that is not FHIR JSON' : 'no body';
        return { id: entry.id, outcome: 'retry', error: `HTTP ${s} without a transaction-response for the ${sent} entries (got ${what})` };
      }
      const statuses = (b?.entry ?? []).map((e) => Number(/^(\d{3})/.exec(e.response?.status ?? '')?.[1] ?? 0));
      const worst = statuses.reduce((a, x) => (x >= 400 && (a < 400 || x >= 500) ? x : a), 0);
      if (worst >= 400) {
        const bad = (b!.entry ?? []).find((e) => Number(/^(\d{3})/.exec(e.response?.status ?? '')?.[1] ?? 0) === worst);
        const why = `HTTP ${s}, entry ${worst}: ${outcomeText(bad?.response?.outcome) ?? 'no OperationOutcome'}`;
        return this.failure(entry, worst, why, undefined);
      }
      const created = statuses.filter((x) => x === 201).length;
      return { id: entry.id, outcome: 'delivered', detail: `${s}: ${created} created, ${statuses.length - created} existing or updated` };
    }
    const why = `HTTP ${s}${text ? `: ${text}` : res.body.length ? `: ${res.body.toString('utf8').slice(0, 200)}` : ''}`;
    return this.failure(entry, s, why, res.headers['retry-after']);
  }

  private failure(entry: OutboxEntry, s: number, why: string, retryAfter: string | string[] | undefined): DeliveryOutcome {
    if (s === 429 || s === 503) {
      const ms = retryAfterMs(retryAfter);
      return ms === undefined ? { id: entry.id, outcome: 'retry', error: why } : { id: entry.id, outcome: 'retry', error: why, retryAfterMs: Math.min(ms, this.config.maxRetryAfterMs) };
    }
    if (s >= 500 || s === 408 || s === 409) return { id: entry.id, outcome: 'retry', error: why };
    return { id: entry.id, outcome: this.config.clientErrorRetryable ? 'retry' : 'dead', error: why };
  }

  async close(): Promise<void> {
    /* no kept-open connection */
  }
}
