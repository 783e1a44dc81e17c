import { readFileSync } from 'node:fs';
import type { ServerOptions } from 'node:https';
import { isIP } from 'node:net';
import type { GatewaySettings } from '../config/settings';
import { secureContextOptions } from './options';
import { certFingerprint, ensureSelfSignedCert } from './self-signed';

/** True for an address or name that only the box itself can reach (127.0.0.0/8, ::1, localhost). */
export function isLoopbackHost(host: string): boolean {
  const h = host.trim().toLowerCase().replace(/^\[|\]$/g, '');
  if (h === 'localhost' || h === '::1') return true;
  const v4 = h.startsWith('::ffff:') ? h.slice(7) : h;
  return isIP(v4) === 4 && v4.startsWith('127.');
}

export interface HttpTlsPlan {
  /** undefined: plain HTTP. */
  options?: ServerOptions;
  /** Where the certificate came from: the site's files or the generated one. */
  source?: 'site' | 'generated';
  certFile?: string;
  fingerprint256?: string;
  /** The generated certificate was made just now (first start). */
  generated?: boolean;
  mutual?: boolean;
  /** Why plain HTTP is used. */
  plainReason?: 'loopback' | 'insecure';
}

/**
 * Whether and how the operator port speaks TLS (issue 10 §6):
 * - the site's certificate (IOMT_HTTP_TLS_CERT / _KEY) when given;
 * - else HTTPS with a self-signed certificate made on the first start in `<dataDir>/tls`
 *   whenever the port listens beyond loopback (or client certificates are required);
 * - plain HTTP only on loopback, or with IOMT_HTTP_INSECURE=true.
 * Mutual TLS: IOMT_HTTP_TLS_CA (+ IOMT_HTTP_TLS_REQUIRE_CLIENT_CERT=true: a client without a
 * certificate signed by that CA fails the handshake). TLS 1.2+ with ECDHE AEAD suites only
 * (tls/options.ts).
 */
export function planHttpTls(settings: GatewaySettings): HttpTlsPlan {
  const t = settings.http.tls;
  const mutual = !!t?.requireClientCert;
  const ca = t?.caFile ? readFileSync(t.caFile) : undefined;
  const tlsOpts = (cert: Buffer, key: Buffer): ServerOptions => ({
    ...secureContextOptions(),
    cert,
    key,
    ca,
    requestCert: !!ca,
    rejectUnauthorized: mutual,
  });
  if (t?.certFile && t.keyFile) {
    const cert = readFileSync(t.certFile);
    return { options: tlsOpts(cert, readFileSync(t.keyFile)), source: 'site', certFile: t.certFile, fingerprint256: certFingerprint(cert), mutual };
  }
  if (!mutual && !ca) {
    if (settings.http.insecure) return { plainReason: 'insecure' };
    if (isLoopbackHost(settings.http.host)) return { plainReason: 'loopback' };
  }
  const g = ensureSelfSignedCert(settings.dataDir);
  return { options: tlsOpts(readFileSync(g.certFile), readFileSync(g.keyFile)), source: 'generated', certFile: g.certFile, fingerprint256: g.fingerprint256, generated: g.generated, mutual };
}
