import { afterAll, describe, expect, it } from 'vitest';
import { execFileSync } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { createServer, type Server } from 'node:https';
import { request } from 'node:https';
import tls from 'node:tls';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { DEFAULT_SETTINGS, type GatewaySettings } from '../config/settings';
import { isLoopbackHost, planHttpTls } from './http-tls';
import { makeCerts } from '../../../test/helpers/tls';

const settings = (dataDir: string, http: Partial<GatewaySettings['http']>): GatewaySettings => ({ ...structuredClone(DEFAULT_SETTINGS), dataDir, http: { ...DEFAULT_SETTINGS.http, ...http }, source: '(test)' });

describe('HTTPS of the operator port (issue 10 §6)', () => {
  const dir = mkdtempSync(join(tmpdir(), 'http-tls-'));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it.each([
    ['127.0.0.1', true],
    ['127.1.2.3', true],
    ['::1', true],
    ['[::1]', true],
    ['localhost', true],
    ['::ffff:127.0.0.1', true],
    ['0.0.0.0', false],
    ['::', false],
    ['192.168.1.20', false],
    ['gateway.lab.local', false],
  ])('isLoopbackHost(%s) = %s', (host, loop) => expect(isLoopbackHost(host)).toBe(loop));

  it.each([
    ['127.0.0.1', {}, 'loopback'],
    ['0.0.0.0', { insecure: true }, 'insecure'],
  ] as const)('plain HTTP on %s %j: %s', (host, extra, reason) => {
    const p = planHttpTls(settings(join(dir, `plain-${reason}`), { host, ...extra }));
    expect(p.options).toBeUndefined();
    expect(p.plainReason).toBe(reason);
  });

  it('beyond loopback without a certificate: a self-signed one is made once (key 0600) and its SHA-256 fingerprint reported', () => {
    const data = join(dir, 'gen');
    const p = planHttpTls(settings(data, { host: '0.0.0.0' }));
    expect(p.source).toBe('generated');
    expect(p.generated).toBe(true);
    const fromOpenssl = execFileSync('openssl', ['x509', '-in', p.certFile!, '-noout', '-fingerprint', '-sha256']).toString().trim().split('=')[1];
    expect(p.fingerprint256).toBe(fromOpenssl);
    expect(statSync(join(data, 'tls', 'http-key.pem')).mode & 0o777).toBe(0o600);
    expect(execFileSync('openssl', ['x509', '-in', p.certFile!, '-noout', '-ext', 'subjectAltName']).toString()).toMatch(/DNS:localhost.*IP Address:127\.0\.0\.1/s);
    const again = planHttpTls(settings(data, { host: '0.0.0.0' }));
    expect(again.generated).toBe(false);
    expect(again.fingerprint256).toBe(p.fingerprint256);
  });

  describe('the TLS it speaks', () => {
    const certDir = join(dir, 'site');
    require('node:fs').mkdirSync(certDir);
    const certs = makeCerts(certDir);
    // a client certificate from the same CA, and one from a stranger CA
    const o = (args: string[]) => execFileSync('openssl', args, { cwd: certDir, stdio: 'pipe' });
    o(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'client.key', '-out', 'client.csr', '-subj', '/CN=lis-client']);
    o(['x509', '-req', '-in', 'client.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'client.crt', '-days', '2']);
    o(['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'other.key', '-out', 'other.crt', '-days', '2', '-subj', '/CN=stranger']);
    const client = { cert: readFileSync(join(certDir, 'client.crt')), key: readFileSync(join(certDir, 'client.key')) };
    const stranger = { cert: readFileSync(join(certDir, 'other.crt')), key: readFileSync(join(certDir, 'other.key')) };
    let server: Server | undefined;
    afterAll(() => new Promise<void>((r) => (server ? server.close(() => r()) : r())));

    const start = async (http: Partial<GatewaySettings['http']>) => {
      if (server) await new Promise<void>((r) => server!.close(() => r()));
      const plan = planHttpTls(settings(join(dir, 'site-data'), { host: '127.0.0.1', ...http }));
      expect(plan.source).toBe('site');
      server = createServer(plan.options!, (_req, res) => res.end('ok'));
      await new Promise<void>((r) => server!.listen(0, '127.0.0.1', r));
      return (server.address() as { port: number }).port;
    };
    const get = (port: number, extra: object = {}) =>
      new Promise<string>((resolve, reject) => {
        request({ host: '127.0.0.1', port, path: '/', ca: certs.ca, servername: 'localhost', ...extra }, (res) => {
          let d = '';
          res.on('data', (c) => (d += c));
          res.on('end', () => resolve(d));
        })
          .on('error', reject)
          .end();
      });
    const handshake = (port: number, o: tls.ConnectionOptions) =>
      new Promise<string>((resolve, reject) => {
        const s = tls.connect({ host: '127.0.0.1', port, ca: certs.ca, servername: 'localhost', ...o }, () => {
          const got = `${s.getProtocol()} ${s.getCipher().standardName}`;
          s.destroy();
          resolve(got);
        });
        s.on('error', reject);
      });

    it.each([
      [{ maxVersion: 'TLSv1.2', ciphers: 'ECDHE-RSA-AES128-GCM-SHA256' }, 'TLSv1.2 TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256'],
      [{ maxVersion: 'TLSv1.2', ciphers: 'ECDHE-RSA-CHACHA20-POLY1305' }, 'TLSv1.2 TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256'],
      [{ minVersion: 'TLSv1.3' }, /^TLSv1\.3 TLS_/],
      [{ maxVersion: 'TLSv1.2', ciphers: 'AES128-SHA' }, 'refused'], // static RSA, CBC, SHA-1
      [{ maxVersion: 'TLSv1.2', ciphers: 'ECDHE-RSA-AES128-SHA' }, 'refused'], // CBC
      [{ maxVersion: 'TLSv1.2', ciphers: 'AES128-GCM-SHA256' }, 'refused'], // no forward secrecy
      [{ maxVersion: 'TLSv1.2', ciphers: 'DHE-RSA-AES128-GCM-SHA256' }, 'refused'],
      [{ minVersion: 'TLSv1', maxVersion: 'TLSv1.1', ciphers: 'DEFAULT@SECLEVEL=0' }, 'refused'],
    ] as Array<[tls.ConnectionOptions, string | RegExp]>)('client offering %j → %s', async (offer, expected) => {
      const port = await start({ tls: { certFile: certs.certFile, keyFile: certs.keyFile } });
      const got = await handshake(port, offer).catch(() => 'refused');
      if (expected instanceof RegExp) expect(got).toMatch(expected);
      else expect(got).toBe(expected);
    });

    it('mutual TLS from the settings (IOMT_HTTP_TLS_CA + IOMT_HTTP_TLS_REQUIRE_CLIENT_CERT): no or a foreign client certificate is refused', async () => {
      const caFile = join(certDir, 'ca.crt');
      const port = await start({ tls: { certFile: certs.certFile, keyFile: certs.keyFile, caFile, requireClientCert: true } });
      expect(await get(port, client)).toBe('ok');
      await expect(get(port)).rejects.toBeDefined();
      await expect(get(port, stranger)).rejects.toBeDefined();
      // without "require", the CA alone only asks: a client without a certificate still gets in
      const port2 = await start({ tls: { certFile: certs.certFile, keyFile: certs.keyFile, caFile } });
      expect(await get(port2)).toBe('ok');
    });
  });
});
