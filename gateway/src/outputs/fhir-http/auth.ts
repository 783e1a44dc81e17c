/**
 * Authentication to the FHIR server (issue 13 §2): none, a bearer token, or OAuth2 client credentials
 * (RFC 6749 4.4) with `client_secret_basic` (RFC 6749 2.3.1) or SMART Backend Services `private_key_jwt`
 * (RFC 7523; SMART App Launch 2.x Backend Services: RS384/ES384, `aud` = the token URL, `jti`, exp ≤ 5 min),
 * through openid-client 6 and jose. Tokens are cached until shortly before `expires_in` and fetched again
 * (no refresh token in client credentials); `invalidate()` after a 401 forces a new one.
 * Secrets come in as values resolved by the caller from environment variables or files
 * (`readSecret`); they are never logged and never part of an error text.
 */
import { readFileSync } from 'node:fs';
import * as client from 'openid-client';
import * as jose from 'jose';
import { fetchWithTls, type TlsFiles } from './http';

export type FhirAuth =
  | { type: 'none' }
  | { type: 'bearer'; token: string }
  | {
      type: 'client-credentials';
      tokenUrl: string;
      clientId: string;
      /** client_secret_basic */
      clientSecret?: string;
      /** private_key_jwt: PKCS#8 PEM (RSA or EC P-384) and its key id (the `kid` registered in the JWKS). */
      privateKeyPem?: string;
      keyId?: string;
      /** RS384 (default) or ES384 (SMART Backend Services). */
      alg?: 'RS384' | 'ES384' | 'RS256' | 'ES256';
      /** e.g. `system/Observation.c system/Patient.c` (SMART v2 scopes). */
      scope?: string;
      /** Issuer, when it differs from the token URL's origin. */
      issuer?: string;
    };

/**
 * A secret from an environment variable NAME or a file path (the flow holds only those). Trailing
 * newlines of a file are dropped. Throws an Error naming the variable or file, never the value.
 */
export function readSecret(src: { env?: string; file?: string }, env: NodeJS.ProcessEnv = process.env): string | undefined {
  if (src.file) {
    try {
      return readFileSync(src.file, 'utf8').replace(/\r?\n$/, '');
    } catch (e) {
      throw new Error(`cannot read secret file ${src.file}: ${(e as NodeJS.ErrnoException).code ?? 'error'}`);
    }
  }
  if (src.env) {
    if (!/^[A-Za-z_][A-Za-z0-9_]*$/.test(src.env)) throw new Error(`'${src.env}' is not an environment variable name`);
    const v = env[src.env];
    if (v === undefined || v === '') throw new Error(`environment variable ${src.env} is not set`);
    return v;
  }
  return undefined;
}

export interface TokenSourceOptions {
  tls?: TlsFiles;
  timeoutMs?: number;
  /** Renew this long before expiry (default 30 s, at most half the lifetime). */
  skewMs?: number;
  now?: () => number;
}

/** Gives the Authorization header value for each request. */
export class TokenSource {
  private cached: { token: string; expiresAt: number } | undefined;
  private pending: Promise<string> | undefined;
  private config: client.Configuration | undefined;
  /** Tokens obtained from the authorization server (for status and tests). */
  tokensFetched = 0;

  constructor(readonly auth: FhirAuth, private readonly opts: TokenSourceOptions = {}) {}

  private now(): number {
    return (this.opts.now ?? Date.now)();
  }

  /** `Bearer <token>` or undefined (no auth). Throws Error (no secret in it) when no token can be had. */
  async header(): Promise<string | undefined> {
    const a = this.auth;
    if (a.type === 'none') return undefined;
    if (a.type === 'bearer') return `Bearer ${a.token}`;
    if (this.cached && this.now() < this.cached.expiresAt) return `Bearer ${this.cached.token}`;
    this.pending ??= this.fetchToken().finally(() => (this.pending = undefined));
    return `Bearer ${await this.pending}`;
  }

  /** Forget the cached token (after a 401): the next header() asks the authorization server again. */
  invalidate(): void {
    this.cached = undefined;
  }

  get canRefresh(): boolean {
    return this.auth.type === 'client-credentials';
  }

  private async configuration(): Promise<client.Configuration> {
    if (this.config) return this.config;
    const a = this.auth;
    if (a.type !== 'client-credentials') throw new Error('no token endpoint');
    const tokenUrl = new URL(a.tokenUrl);
    let clientAuth: client.ClientAuth;
    if (a.privateKeyPem) {
      const alg = a.alg ?? 'RS384';
      const key = await jose.importPKCS8(a.privateKeyPem, alg);
      // SMART Backend Services: the assertion's aud is the token URL (openid-client's default is the issuer)
      clientAuth = client.PrivateKeyJwt(
        { key, kid: a.keyId } as unknown as Parameters<typeof client.PrivateKeyJwt>[0], // jose gives a WebCrypto CryptoKey
        {
          [client.modifyAssertion]: (_header, payload) => {
            payload.aud = a.tokenUrl;
          },
        },
      );
    } else if (a.clientSecret !== undefined) {
      clientAuth = client.ClientSecretBasic(a.clientSecret);
    } else {
      throw new Error('client credentials need a client secret or a private key');
    }
    const cfg = new client.Configuration({ issuer: a.issuer ?? tokenUrl.origin, token_endpoint: a.tokenUrl }, a.clientId, {}, clientAuth);
    cfg[client.customFetch] = fetchWithTls(this.opts.tls, this.opts.timeoutMs) as unknown as client.CustomFetch;
    if (tokenUrl.protocol === 'http:') client.allowInsecureRequests(cfg); // a test or lab LAN; TLS is the default
    this.config = cfg;
    return cfg;
  }

  private async fetchToken(): Promise<string> {
    const a = this.auth;
    if (a.type !== 'client-credentials') throw new Error('no token endpoint');
    const cfg = await this.configuration();
    let res: client.TokenEndpointResponse;
    try {
      res = await client.clientCredentialsGrant(cfg, a.scope ? { scope: a.scope } : {});
    } catch (e) {
      // the library's message names the OAuth error (invalid_client ...), never the secret
      const err = e as { message?: string; error?: string; error_description?: string; code?: string };
      throw new Error(`token request failed: ${err.error ?? err.code ?? 'error'}${err.error_description ? ` (${err.error_description})` : err.message ? ` (${err.message})` : ''}`);
    }
    this.tokensFetched++;
    const lifeMs = (typeof res.expires_in === 'number' ? res.expires_in : 300) * 1000;
    const skew = Math.min(this.opts.skewMs ?? 30_000, lifeMs / 2);
    this.cached = { token: res.access_token, expiresAt: this.now() + lifeMs - skew };
    return res.access_token;
  }
}
