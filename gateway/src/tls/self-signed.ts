import { execFileSync } from 'node:child_process';
import { X509Certificate, generateKeyPairSync } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { hostname, networkInterfaces } from 'node:os';
import { join } from 'node:path';

/** Where the gateway keeps its generated HTTPS certificate (inside the data dir, mode 0700). */
export const SELF_SIGNED_DIR = 'tls';

export interface SelfSignedCert {
  certFile: string;
  keyFile: string;
  /** SHA-256 fingerprint of the DER certificate, `AB:CD:...` (not secret: compare it with what the browser shows). */
  fingerprint256: string;
  /** True when it was made just now (first start). */
  generated: boolean;
  subjectAltName: string;
}

/** The certificate's SHA-256 fingerprint (`AB:CD:...`). */
export function certFingerprint(pem: string | Buffer): string {
  return new X509Certificate(pem).fingerprint256;
}

/** subjectAltName for the generated certificate: the host name, localhost, loopback and the box's current addresses. */
export function defaultSubjectAltNames(): string[] {
  const names = new Set<string>(['DNS:localhost', 'IP:127.0.0.1', 'IP:::1']);
  const h = hostname();
  if (/^[A-Za-z0-9.-]{1,253}$/.test(h)) names.add(`DNS:${h}`);
  for (const list of Object.values(networkInterfaces())) {
    for (const a of list ?? []) if (!a.internal && !a.address.includes('%')) names.add(`IP:${a.address}`);
  }
  return [...names];
}

/**
 * The gateway's own HTTPS certificate in `<dataDir>/tls/` (http-cert.pem, http-key.pem mode 0600),
 * made on the first start when the site gives none (IOMT_HTTP_TLS_CERT / IOMT_HTTP_TLS_KEY).
 * The key is an ECDSA P-256 key made with node:crypto and written 0600 before anything else; the
 * self-signed X.509 certificate (10 years, SAN = host name, localhost, the box's addresses) is
 * made by the `openssl` command (node:crypto cannot write X.509), so `openssl` must be installed
 * for this (Debian package `openssl`). Throws a message naming the alternatives when it is not.
 */
export function ensureSelfSignedCert(dataDir: string, opts: { subjectAltNames?: string[]; days?: number; openssl?: string } = {}): SelfSignedCert {
  const dir = join(dataDir, SELF_SIGNED_DIR);
  mkdirSync(dir, { recursive: true, mode: 0o700 });
  const certFile = join(dir, 'http-cert.pem');
  const keyFile = join(dir, 'http-key.pem');
  const san = (opts.subjectAltNames ?? defaultSubjectAltNames()).join(',');
  if (existsSync(certFile) && existsSync(keyFile)) {
    const pem = readFileSync(certFile);
    const x = new X509Certificate(pem);
    if (Date.parse(x.validTo) > Date.now()) return { certFile, keyFile, fingerprint256: x.fingerprint256, generated: false, subjectAltName: x.subjectAltName ?? '' };
  }
  const tmpKey = `${keyFile}.new`;
  const tmpCert = `${certFile}.new`;
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  writeFileSync(tmpKey, privateKey.export({ type: 'pkcs8', format: 'pem' }), { mode: 0o600 });
  chmodSync(tmpKey, 0o600);
  const cn = (/^[A-Za-z0-9.-]{1,64}$/.test(hostname()) ? hostname() : 'iomt-gateway').replace(/\//g, '');
  try {
    execFileSync(
      opts.openssl ?? 'openssl',
      ['req', '-new', '-x509', '-key', tmpKey, '-out', tmpCert, '-days', String(opts.days ?? 3650), '-sha256', '-subj', `/O=IoMT gateway (self-signed)/CN=${cn}`, '-addext', `subjectAltName=${san}`, '-addext', 'basicConstraints=critical,CA:FALSE', '-addext', 'keyUsage=critical,digitalSignature', '-addext', 'extendedKeyUsage=serverAuth'],
      { stdio: ['ignore', 'ignore', 'pipe'], timeout: 30_000 },
    );
  } catch (e) {
    rmSync(tmpKey, { force: true });
    rmSync(tmpCert, { force: true });
    const why = (e as NodeJS.ErrnoException).code === 'ENOENT' ? 'the openssl command is not installed' : String((e as { stderr?: Buffer }).stderr ?? (e as Error).message).trim();
    throw new Error(
      `cannot make the HTTPS certificate (${why}). Install openssl, or give the site's certificate (IOMT_HTTP_TLS_CERT, IOMT_HTTP_TLS_KEY), or listen on loopback only (IOMT_HTTP_HOST=127.0.0.1), or allow plain HTTP (IOMT_HTTP_INSECURE=true)`,
    );
  }
  renameSync(tmpKey, keyFile);
  renameSync(tmpCert, certFile);
  const x = new X509Certificate(readFileSync(certFile));
  return { certFile, keyFile, fingerprint256: x.fingerprint256, generated: true, subjectAltName: x.subjectAltName ?? '' };
}
