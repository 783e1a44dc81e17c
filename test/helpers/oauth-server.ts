/**
 * A real OAuth2 authorization server for tests (peers.md "OAuth2 / SMART Backend Services"): the
 * `oidc-provider` package with the client credentials grant, one client per auth method:
 * - `gw-basic`: client_secret_basic with secret `secret`;
 * - `gw-jwt`: private_key_jwt (RS384, key id `gw-key-1`), the public key registered as its JWKS.
 * Access tokens are opaque; `check(token)` asks the provider whether one is (still) valid, and
 * `revokeAll()` destroys every token issued so far (an "expired" token for the FHIR server).
 */
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { generateKeyPairSync } from 'node:crypto';

export interface OAuthTestServer {
  issuer: string;
  tokenUrl: string;
  basic: { clientId: string; clientSecret: string };
  jwt: { clientId: string; keyId: string; privateKeyPem: string };
  /** Token requests the server answered, by client and outcome. */
  requests: Array<{ clientId?: string; ok: boolean }>;
  /** Called with each private_key_jwt client assertion the server accepted. */
  onAssertion?: (jwt: string) => void;
  check(token: string): Promise<boolean>;
  revokeAll(): Promise<void>;
  close(): Promise<void>;
}

export async function startOAuthServer(opts: { tokenTtlS?: number } = {}): Promise<OAuthTestServer> {
  // oidc-provider 9 is ESM only; it prints an "Unsupported runtime" notice on Node 20 and works
  const { default: Provider } = (await import('oidc-provider')) as any;
  const { privateKey, publicKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
  const jwk = { ...publicKey.export({ format: 'jwk' }), kid: 'gw-key-1', alg: 'RS384', use: 'sig' };
  const issued: string[] = [];
  const requests: OAuthTestServer['requests'] = [];

  let provider: any;
  const srv = http.createServer((req, res) => provider.callback()(req, res));
  await new Promise<void>((r) => srv.listen(0, '127.0.0.1', r));
  const port = (srv.address() as AddressInfo).port;
  const issuer = `http://127.0.0.1:${port}`;
  const scopes = ['system/Observation.c', 'system/Patient.c', 'system/Device.c', 'system/Specimen.c', 'system/DiagnosticReport.c', 'system/*.cruds'];
  provider = new Provider(issuer, {
    clients: [
      { client_id: 'gw-basic', client_secret: 'secret', grant_types: ['client_credentials'], redirect_uris: [], response_types: [], token_endpoint_auth_method: 'client_secret_basic', scope: scopes.join(' ') },
      { client_id: 'gw-jwt', grant_types: ['client_credentials'], redirect_uris: [], response_types: [], token_endpoint_auth_method: 'private_key_jwt', token_endpoint_auth_signing_alg: 'RS384', jwks: { keys: [jwk] }, scope: scopes.join(' ') },
    ],
    scopes,
    features: { clientCredentials: { enabled: true }, devInteractions: { enabled: false }, introspection: { enabled: true } },
    clientAuthMethods: ['client_secret_basic', 'private_key_jwt'],
    enabledJWA: { clientAuthSigningAlgValues: ['RS384', 'ES384', 'RS256'] },
    ttl: { ClientCredentials: opts.tokenTtlS ?? 600 },
  });
  provider.on('grant.success', (ctx: any) => {
    requests.push({ clientId: ctx.oidc?.client?.clientId, ok: true });
    const assertion = ctx.oidc?.params?.client_assertion ?? ctx.oidc?.body?.client_assertion;
    if (assertion) result.onAssertion?.(assertion);
    const t = ctx.body?.access_token;
    if (t) issued.push(t);
  });
  provider.on('grant.error', (ctx: any) => requests.push({ clientId: ctx.oidc?.client?.clientId, ok: false }));
  const tokenUrl = `${issuer}/token`;
  const result: OAuthTestServer = {
    issuer,
    tokenUrl,
    basic: { clientId: 'gw-basic', clientSecret: 'secret' },
    jwt: { clientId: 'gw-jwt', keyId: 'gw-key-1', privateKeyPem: privateKey.export({ format: 'pem', type: 'pkcs8' }) as string },
    requests,
    async check(token) {
      const t = await provider.ClientCredentials.find(token);
      return !!t && !t.isExpired;
    },
    async revokeAll() {
      for (const v of issued) {
        const t = await provider.ClientCredentials.find(v);
        if (t) await t.destroy();
      }
    },
    close: () =>
      new Promise<void>((r) => {
        srv.closeAllConnections?.();
        srv.close(() => r());
      }),
  };
  return result;
}
