// Runs INSIDE the demo container (`podman exec -i NAME node - < check-demo.cjs`, argv: ready|flow).
// The gateway serves HTTPS with the certificate it generated in /data/tls (docs/operations.md).
//   ready: exit 0 when /readyz answers 200 (certificate not verified: it may not exist yet).
//   flow:  verifies the server with that certificate as the only CA, then requires /healthz 200,
//          /readyz 200, the API 200 with the first-start admin password from the data dir and 401
//          without it, and data that flowed: iomt_messages_committed_total > 0 and
//          iomt_outbox_delivered_total > 0 (from /metrics). Prints the numbers as JSON.
'use strict';
const https = require('node:https');
const fs = require('node:fs');
const port = Number(process.env.IOMT_HTTP_PORT || 1880);
const mode = process.argv[2] || 'flow';

function get(path, { auth, ca } = {}) {
  return new Promise((resolve, reject) => {
    const req = https.get(
      { host: '127.0.0.1', servername: 'localhost', port, path, timeout: 5000, headers: auth ? { authorization: auth } : {}, ...(ca ? { ca } : { rejectUnauthorized: false }) },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (c) => (body += c));
        res.on('end', () => resolve({ status: res.statusCode, body }));
      },
    );
    req.on('timeout', () => req.destroy(new Error(`timeout ${path}`)));
    req.on('error', reject);
  });
}

const sum = (text, name) =>
  text.split('\n').filter((l) => l.startsWith(name + '{') || l.startsWith(name + ' '))
    .reduce((s, l) => s + Number(l.trim().split(/\s+/).pop()), 0);

(async () => {
  if (mode === 'ready') {
    const r = await get('/readyz');
    process.exit(r.status === 200 ? 0 : 1);
  }
  const ca = fs.readFileSync('/data/tls/http-cert.pem');
  const pw = fs.readFileSync('/data/admin-password.txt', 'utf8').trim();
  const auth = 'Basic ' + Buffer.from('admin:' + pw).toString('base64');
  const h = await get('/healthz', { ca });
  const r = await get('/readyz', { ca });
  const d = await get('/api/v1/destinations', { ca, auth });
  const noAuth = await get('/api/v1/destinations', { ca });
  const m = await get('/metrics', { ca, auth });
  const out = {
    healthz: h.status, readyz: r.status, api: d.status, apiWithoutPassword: noAuth.status, metrics: m.status,
    committed: sum(m.body, 'iomt_messages_committed_total'), delivered: sum(m.body, 'iomt_outbox_delivered_total'),
  };
  console.log(JSON.stringify(out));
  const ok = out.healthz === 200 && out.readyz === 200 && out.api === 200 && out.apiWithoutPassword === 401
    && out.metrics === 200 && out.committed > 0 && out.delivered > 0;
  if (!ok) { console.error('check-demo: an endpoint failed or no data flowed'); process.exit(1); }
})().catch((e) => { console.error('check-demo:', String(e)); process.exit(1); });
