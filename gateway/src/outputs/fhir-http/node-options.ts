/**
 * The `iomt-fhir-out` node's fields → FhirHttpOutput options (kept out of the Node-RED wrapper so it
 * can be tested plainly). `${ENV}` templates are resolved; secrets are read from the environment
 * variable NAMED by the node, or from the key file; an error names the field, never a secret's value.
 */
import { readFileSync } from 'node:fs';
import { resolveBool, resolveEnvTemplate, resolveNumber } from '../../config/env-template';
import { readSecret, type FhirAuth } from './auth';
import type { FhirHttpOutputOptions } from './config';

export interface FhirOutNodeConfig {
  id: string;
  name?: string;
  destination?: string;
  baseUrl?: string;
  authType?: string;
  tokenUrl?: string;
  clientId?: string;
  clientSecretEnv?: string;
  privateKeyFile?: string;
  keyId?: string;
  keyAlg?: string;
  scope?: string;
  tokenEnv?: string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  profileSet?: string;
  siteFile?: string;
  requestTimeoutS?: string;
  strictOrder?: boolean | string;
  maxAttempts?: string;
  maxAgeHours?: string;
  processingIds?: string;
}

export interface FhirOutNodeSettings {
  options: FhirHttpOutputOptions;
  policy: { strictOrder: boolean; maxAttempts: number; maxAgeMs: number };
  processingIds: Set<string>;
}

const str = (v: unknown, env: NodeJS.ProcessEnv) => resolveEnvTemplate(v, env).trim();

/** Throws Error with a message naming the field (no secret value). */
export function fhirOutSettings(config: FhirOutNodeConfig, env: NodeJS.ProcessEnv = process.env): FhirOutNodeSettings {
  const destination = str(config.destination, env) || config.name || config.id;
  const authType = str(config.authType, env) || 'none';
  let auth: FhirAuth;
  if (authType === 'none') auth = { type: 'none' };
  else if (authType === 'bearer') auth = { type: 'bearer', token: readSecret({ env: str(config.tokenEnv, env) || 'FHIR_BEARER_TOKEN' }, env)! };
  else if (authType === 'client-credentials') {
    const keyFile = str(config.privateKeyFile, env);
    let privateKeyPem: string | undefined;
    let clientSecret: string | undefined;
    if (keyFile) {
      try {
        privateKeyPem = readFileSync(keyFile, 'utf8');
      } catch (e) {
        throw new Error(`privateKeyFile: cannot read ${keyFile} (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
      }
    } else clientSecret = readSecret({ env: str(config.clientSecretEnv, env) || 'FHIR_CLIENT_SECRET' }, env);
    const alg = str(config.keyAlg, env) || 'RS384';
    if (alg !== 'RS384' && alg !== 'ES384') throw new Error('keyAlg: RS384 or ES384');
    auth = {
      type: 'client-credentials',
      tokenUrl: str(config.tokenUrl, env),
      clientId: str(config.clientId, env),
      clientSecret,
      privateKeyPem,
      keyId: str(config.keyId, env) || undefined,
      alg,
      scope: str(config.scope, env) || undefined,
    };
  } else throw new Error(`authType: '${authType}' is not none, bearer or client-credentials`);
  const file = (f: string | undefined, what: string) => {
    const p = str(f, env);
    if (!p) return undefined;
    try {
      return readFileSync(p);
    } catch (e) {
      throw new Error(`${what}: cannot read ${p} (${(e as NodeJS.ErrnoException).code ?? 'error'})`);
    }
  };
  const ca = file(config.tlsCa, 'tlsCa');
  const cert = file(config.tlsCert, 'tlsCert');
  const key = file(config.tlsKey, 'tlsKey');
  const options: FhirHttpOutputOptions = {
    destination,
    baseUrl: str(config.baseUrl, env),
    auth,
    tls: ca || cert || key ? { ca, cert, key } : undefined,
    requestTimeoutMs: resolveNumber(config.requestTimeoutS, 30, env) * 1000,
    profileSet: str(config.profileSet, env) || 'vn-core',
    siteConfigFile: str(config.siteFile, env) || undefined,
  };
  const processingIds = new Set((str(config.processingIds, env) || 'P').split(',').map((x) => x.trim().toUpperCase()).filter((x) => x));
  return {
    options,
    policy: { strictOrder: resolveBool(config.strictOrder, false, env), maxAttempts: resolveNumber(config.maxAttempts, 10, env), maxAgeMs: resolveNumber(config.maxAgeHours, 168, env) * 3600_000 },
    processingIds,
  };
}
