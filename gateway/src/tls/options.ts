import type { SecureContextOptions } from 'node:tls';

/**
 * The one TLS configuration of every TLS endpoint of the gateway (HTTPS, MLLP in, MLLP out):
 * TLS 1.2 or 1.3 only, and on TLS 1.2 only ECDHE key exchange (forward secrecy) with AEAD
 * ciphers (AES-GCM, ChaCha20-Poly1305), following the "intermediate" profile of the Mozilla
 * server-side TLS guidelines v5.7 and BSI TR-02102-2 §3.3.1. No CBC, no SHA-1 MAC, no static RSA
 * key exchange, no DHE (slow, and weak groups in old clients). TLS 1.3 suites are all AEAD with
 * forward secrecy (RFC 8446 §9.1); Node/OpenSSL's default TLS 1.3 list is kept.
 */
export const TLS_MIN_VERSION = 'TLSv1.2' as const;

/** OpenSSL cipher list for TLS 1.2 (TLS 1.3 suites are set separately by OpenSSL and listed first for clarity). */
export const TLS_CIPHERS = [
  'TLS_AES_128_GCM_SHA256',
  'TLS_AES_256_GCM_SHA384',
  'TLS_CHACHA20_POLY1305_SHA256',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
].join(':');

/**
 * Options to spread into `tls.createServer`, `https.createServer` or `tls.connect`:
 * `{ minVersion: 'TLSv1.2', ciphers, honorCipherOrder: true }` (honorCipherOrder only matters on a server).
 */
export function secureContextOptions(): Pick<SecureContextOptions, 'minVersion' | 'ciphers' | 'honorCipherOrder'> {
  return { minVersion: TLS_MIN_VERSION, ciphers: TLS_CIPHERS, honorCipherOrder: true };
}
