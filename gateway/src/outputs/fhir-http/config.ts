/**
 * Options of the FHIR R4 HTTP output (conventions §2: defaults and a description per field).
 */
import type { ConfigProblem } from '../../contracts/errors';
import type { FhirAuth } from './auth';
import type { TlsFiles } from './http';

export interface FhirHttpOutputConfig {
  destination: string;
  /** FHIR base URL, e.g. https://emr.example.vn/fhir (the transaction Bundle is POSTed here). */
  baseUrl: string;
  auth: FhirAuth;
  tls?: TlsFiles;
  requestTimeoutMs: number;
  /** Profile set of the site file (profileSets): none, base, vn-core. */
  profileSet: string;
  /** The site file (firmware-config/fhir/vn-core.json by default). */
  siteConfigFile?: string;
  /** Retry (instead of dead-letter) when the server answers 4xx other than 408/409/429. */
  clientErrorRetryable: boolean;
  /** Longest Retry-After honoured (ms); a longer one is capped here. */
  maxRetryAfterMs: number;
}

export type FhirHttpOutputOptions = Partial<FhirHttpOutputConfig> & Pick<FhirHttpOutputConfig, 'destination' | 'baseUrl'>;

export interface ConfigFieldDoc {
  default?: unknown;
  description: string;
}

export const FHIR_HTTP_OUTPUT_FIELDS: Record<keyof FhirHttpOutputConfig, ConfigFieldDoc> = {
  destination: { description: 'Unique destination name; the outbox queue and dead letters are kept per destination.' },
  baseUrl: { description: 'FHIR R4 base URL; one transaction Bundle per inbound message is POSTed to it.' },
  auth: { default: { type: 'none' }, description: "none | bearer (token) | client-credentials (tokenUrl, clientId, clientSecret for client_secret_basic or privateKeyPem + keyId for SMART private_key_jwt, scope). Secrets are resolved from environment variables or files by the caller, never written in the flow." },
  tls: { description: 'TLS: `ca` (site CA, PEM) to trust; `cert`/`key` for a client certificate. Applies to the FHIR server and the token endpoint.' },
  requestTimeoutMs: { default: 30_000, description: 'How long to wait for the answer to one Bundle; then retried (conditional creates make the retry safe).' },
  profileSet: { default: 'vn-core', description: "Which profile canonicals go in meta.profile: a set of the site file's profileSets (none, base, vn-core)." },
  siteConfigFile: { description: 'Profile canonicals and identifier systems (default firmware-config/fhir/vn-core.json).' },
  clientErrorRetryable: { default: false, description: 'Retry a Bundle the server rejected with 4xx (default: dead letter with the OperationOutcome text).' },
  maxRetryAfterMs: { default: 3_600_000, description: 'Longest Retry-After (429/503) honoured; a longer one is capped.' },
};

/** Fill defaults; returns the config and every problem found (empty when valid). */
export function resolveFhirHttpOutputConfig(o: FhirHttpOutputOptions, file = '<fhir-http output>'): { config: FhirHttpOutputConfig; problems: ConfigProblem[] } {
  const problems: ConfigProblem[] = [];
  const def = <T>(v: T | undefined, d: T): T => (v === undefined ? d : v);
  const config: FhirHttpOutputConfig = {
    destination: o.destination,
    baseUrl: (o.baseUrl ?? '').replace(/\/+$/, ''),
    auth: def(o.auth, { type: 'none' }),
    tls: o.tls,
    requestTimeoutMs: def(o.requestTimeoutMs, 30_000),
    profileSet: def(o.profileSet, 'vn-core'),
    siteConfigFile: o.siteConfigFile,
    clientErrorRetryable: def(o.clientErrorRetryable, false),
    maxRetryAfterMs: def(o.maxRetryAfterMs, 3_600_000),
  };
  if (!config.destination) problems.push({ file, path: 'destination', reason: 'required' });
  let url: URL | undefined;
  try {
    url = new URL(config.baseUrl);
  } catch {
    problems.push({ file, path: 'baseUrl', reason: 'must be an http(s) URL' });
  }
  if (url && url.protocol !== 'http:' && url.protocol !== 'https:') problems.push({ file, path: 'baseUrl', reason: 'must be an http(s) URL' });
  const a = config.auth;
  if (a.type === 'bearer' && !a.token) problems.push({ file, path: 'auth.token', reason: 'required for bearer' });
  if (a.type === 'client-credentials') {
    try {
      new URL(a.tokenUrl);
    } catch {
      problems.push({ file, path: 'auth.tokenUrl', reason: 'must be a URL' });
    }
    if (!a.clientId) problems.push({ file, path: 'auth.clientId', reason: 'required' });
    if (!a.clientSecret && !a.privateKeyPem) problems.push({ file, path: 'auth', reason: 'client credentials need clientSecret (client_secret_basic) or privateKeyPem (private_key_jwt)' });
  }
  if (!['none', 'bearer', 'client-credentials'].includes(a.type)) problems.push({ file, path: 'auth.type', reason: 'none, bearer or client-credentials' });
  if (!(config.requestTimeoutMs > 0)) problems.push({ file, path: 'requestTimeoutMs', reason: 'must be > 0' });
  if (!(config.maxRetryAfterMs >= 0)) problems.push({ file, path: 'maxRetryAfterMs', reason: 'must be >= 0' });
  return { config, problems };
}
