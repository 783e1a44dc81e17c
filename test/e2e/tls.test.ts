import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import https from 'node:https';
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { freePort, requirePeer, tempDir, waitFor } from '../helpers/env';
import { makeCerts } from '../helpers/tls';
import { startGatewayProcess, ADMIN_PASSWORD, type GatewayProcess } from '../helpers/gateway-process';
import { MllpClient } from '../../drivers/hl7-mllp/mllp-client';
import { MllpServer } from '../../drivers/hl7-mllp/mllp-server';
import { parseAck, buildAck } from '../../drivers/hl7-mllp/ack';
import { parseHl7, readHeader } from '../../drivers/hl7-mllp/hl7-message';

// TLS on every network interface: MLLP in, MLLP out to the HIS, and the operator HTTP port.
describe('TLS end to end', () => {
  const tmp = tempDir();
  let gw: GatewayProcess;
  let his: MllpServer;
  const received: string[] = [];
  let certs: ReturnType<typeof makeCerts>;

  beforeAll(async () => {
    requirePeer('openssl');
    certs = makeCerts(tmp.dir);
    his = new MllpServer({ host: '127.0.0.1', port: 0, tls: { key: certs.key, cert: certs.cert } }, async (payload) => {
      const text = payload.toString();
      received.push(text);
      return Buffer.from(buildAck({ request: readHeader(parseHl7(text)), code: 'AA', controlId: `H${received.length}` }));
    });
    const { port: hisPort } = await his.start();
    gw = await startGatewayProcess({
      dataDir: join(tmp.dir, 'gw'),
      httpPort: await freePort(),
      env: {
        IOMT_HTTP_TLS_CERT: certs.certFile,
        IOMT_HTTP_TLS_KEY: certs.keyFile,
        HL7_IN_TLS: 'true',
        HL7_IN_TLS_CERT: certs.certFile,
        HL7_IN_TLS_KEY: certs.keyFile,
        HIS_HOST: 'localhost',
        HIS_PORT: String(hisPort),
        HIS_TLS: 'true',
        HIS_TLS_CA: certs.caFile,
        HIS_RECONNECT_MAX_S: '1',
        NODE_EXTRA_CA_CERTS: certs.caFile,
      },
      https: true,
    });
  });
  afterAll(async () => {
    await gw?.kill();
    await his?.close();
    tmp.cleanup();
  });

  it('accepts MLLP over TLS, forwards over TLS to the HIS, and serves the API over HTTPS only', async () => {
    const client = new MllpClient({ host: '127.0.0.1', port: gw.hl7Port, tls: { ca: certs.ca, servername: 'localhost' }, ackTimeoutMs: 5000 });
    const msg = Buffer.from('MSH|^~\\&|TLSLAB|L1|||20250301||ORU^R01|TLS-1|P|2.5.1\rPID|1||P1\rOBR|1||TLS-SPEC-1|X^Y\rOBX|1|NM|718-7^HGB^LN||13.2|g/dL|||||F\r');
    expect(parseAck(await client.send(msg)).code).toBe('AA');
    await client.close();
    await waitFor(() => received.some((t) => t.includes('TLS-SPEC-1')), 15_000);
    // plain MLLP to the TLS listener gets nothing useful
    const plain = new MllpClient({ host: '127.0.0.1', port: gw.hl7Port, ackTimeoutMs: 1500, connectTimeoutMs: 1500 });
    await expect(plain.send(msg)).rejects.toBeDefined();
    await plain.close().catch(() => undefined);
    const body = await new Promise<string>((resolve, reject) => {
      https
        .get({ host: '127.0.0.1', port: gw.httpPort, path: '/api/v1/destinations', ca: certs.ca, servername: 'localhost', auth: `admin:${ADMIN_PASSWORD}` }, (res) => {
          let d = '';
          res.on('data', (c) => (d += c));
          res.on('end', () => resolve(d));
        })
        .on('error', reject);
    });
    expect(JSON.parse(body).destinations[0].destination).toBe('his');
  });

  /** `openssl s_client` offering one TLS 1.2 suite: 'accepted' when the handshake completes with it, else 'refused'. */
  const offer = (port: number, args: string[]): string => {
    const r = spawnSync('openssl', ['s_client', '-connect', `127.0.0.1:${port}`, '-servername', 'localhost', ...args], { input: '', encoding: 'utf8', timeout: 10_000 });
    const m = /Cipher is (\S+)/.exec(r.stdout);
    return m && m[1] !== '(NONE)' ? `accepted ${m[1]}` : 'refused';
  };
  // issue 10 §6: TLS 1.2+ with forward-secret AEAD suites only (gateway/src/tls/options.ts)
  it.each([
    [['-tls1_2', '-cipher', 'ECDHE-RSA-AES128-GCM-SHA256'], 'accepted ECDHE-RSA-AES128-GCM-SHA256'],
    [['-tls1_2', '-cipher', 'ECDHE-RSA-CHACHA20-POLY1305'], 'accepted ECDHE-RSA-CHACHA20-POLY1305'],
    [['-tls1_3'], /^accepted TLS_/],
    [['-tls1_2', '-cipher', 'AES128-SHA'], 'refused'],
    [['-tls1_2', '-cipher', 'ECDHE-RSA-AES256-SHA384'], 'refused'],
    [['-tls1_2', '-cipher', 'AES256-GCM-SHA384'], 'refused'],
    [['-tls1_1', '-cipher', 'DEFAULT@SECLEVEL=0'], 'refused'],
  ] as Array<[string[], string | RegExp]>)('HTTPS: openssl s_client %j → %s', (args, expected) => {
    const got = offer(gw.httpPort, args);
    if (expected instanceof RegExp) expect(got).toMatch(expected);
    else expect(got).toBe(expected);
  });
  it.each([
    [['-tls1_2', '-cipher', 'ECDHE-RSA-AES128-GCM-SHA256'], 'accepted ECDHE-RSA-AES128-GCM-SHA256'],
    [['-tls1_2', '-cipher', 'AES128-SHA'], 'refused'],
    [['-tls1_2', '-cipher', 'ECDHE-RSA-AES128-SHA'], 'refused'],
  ])('MLLP in: openssl s_client %j → %s', (args, expected) => {
    expect(offer(gw.hl7Port, args)).toBe(expected);
  });
});

// issue 10 §3: mTLS on the MLLP listener, set from the environment in the shipped flow
// (flows/hl7-relay.json: tlsCa ${HL7_IN_TLS_CA}, requestCert ${HL7_IN_TLS_REQUIRE_CLIENT_CERT:-false}).
describe('MLLP mutual TLS from the environment', () => {
  const tmp = tempDir();
  let gw: GatewayProcess;
  let certs: ReturnType<typeof makeCerts>;
  let client: { cert: Buffer; key: Buffer };
  beforeAll(async () => {
    requirePeer('openssl');
    certs = makeCerts(tmp.dir);
    const o = (args: string[]) => execFileSync('openssl', args, { cwd: tmp.dir, stdio: 'pipe' });
    o(['req', '-newkey', 'rsa:2048', '-nodes', '-keyout', 'analyzer.key', '-out', 'analyzer.csr', '-subj', '/CN=analyzer-1']);
    o(['x509', '-req', '-in', 'analyzer.csr', '-CA', 'ca.crt', '-CAkey', 'ca.key', '-CAcreateserial', '-out', 'analyzer.crt', '-days', '2']);
    client = { cert: readFileSync(join(tmp.dir, 'analyzer.crt')), key: readFileSync(join(tmp.dir, 'analyzer.key')) };
    gw = await startGatewayProcess({
      dataDir: join(tmp.dir, 'gw'),
      env: { HL7_IN_TLS: 'true', HL7_IN_TLS_CERT: certs.certFile, HL7_IN_TLS_KEY: certs.keyFile, HL7_IN_TLS_CA: certs.caFile, HL7_IN_TLS_REQUIRE_CLIENT_CERT: 'true', HIS_HOST: '127.0.0.1', HIS_PORT: '9' },
    });
  });
  afterAll(async () => {
    await gw?.kill();
    tmp.cleanup();
  });

  it('an analyzer with a certificate from the CA gets AA; one without a certificate is refused at the handshake', async () => {
    const msg = Buffer.from('MSH|^~\\&|TLSLAB|L1|||20250301||ORU^R01|MTLS-1|P|2.5.1\rPID|1||P1\rOBR|1||MTLS-SPEC-1|X^Y\rOBX|1|NM|718-7^HGB^LN||13.2|g/dL|||||F\r');
    const withCert = new MllpClient({ host: '127.0.0.1', port: gw.hl7Port, tls: { ca: certs.ca, servername: 'localhost', ...client }, ackTimeoutMs: 5000 });
    expect(parseAck(await withCert.send(msg)).code).toBe('AA');
    await withCert.close();
    const without = new MllpClient({ host: '127.0.0.1', port: gw.hl7Port, tls: { ca: certs.ca, servername: 'localhost' }, ackTimeoutMs: 3000, connectTimeoutMs: 3000 });
    await expect(without.send(msg)).rejects.toBeDefined();
    await without.close().catch(() => undefined);
  });
});

