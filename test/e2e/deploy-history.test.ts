import net from 'node:net';
/**
 * Configuration history and undelivered results with the real gateway process (embedded Node-RED,
 * real SQLite, the shipped HL7 relay flow, a test HIS):
 *  - a Deploy through Node-RED's admin API (as the editor does it) is kept as a version with the
 *    user, address and a summary of changes, and audited; a rollback from /api/v1 restores the flows;
 *  - a committed result whose destination node is missing (deleted, wire left dangling) or failed
 *    to start is acknowledged (it is stored), counted in iomt_messages_undelivered_total, flagged
 *    no-destination (API search, status page warning), and never reaches the HIS;
 *  - a T (training) message held on purpose by the destination's processing ids is not counted so.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium, type Browser } from 'playwright-core';
import { requirePeer, tempDir, waitFor } from '../helpers/env';
import { startGatewayProcess, ADMIN_PASSWORD, ROOT, type GatewayProcess } from '../helpers/gateway-process';
import { TestHis } from '../helpers/test-his';
import { MllpClient } from '../../drivers/hl7-mllp/mllp-client';
import { parseAck } from '../../drivers/hl7-mllp/ack';

const DEVICE = 'hl7-analyzers';
const ARTIFACTS = join(ROOT, '.tmp', 'artifacts', 'deploy-history');
const oru = (ctl: string, specimen: string, pid = 'P') =>
  Buffer.from(['MSH|^~\\&|SIMLAB|LAB1|||20250301093100||ORU^R01|' + ctl + '|' + pid + '|2.3.1', 'PID|1||BN0012345^^^BV^MR', 'OBR|1||' + specimen + '|01001^CBC^99MRC', 'OBX|1|NM|6690-2^WBC^LN||7.85|10*3/uL|4.00-10.00|N|||F'].join('\r') + '\r');

function metricValue(text: string, name: string, labels: Record<string, string>): number {
  for (const line of text.split('\n')) {
    if (!line.startsWith(name + '{')) continue;
    if (Object.entries(labels).every(([k, v]) => line.includes(`${k}="${v}"`))) return Number(line.slice(line.lastIndexOf(' ') + 1));
  }
  return 0;
}

describe('deploy history, rollback and results with nowhere to go (real gateway)', () => {
  let gw: GatewayProcess;
  const tmp = tempDir();
  const his = new TestHis();
  let base: string;
  let token: string;
  let shipped: any[];
  let browser: Browser | undefined;

  beforeAll(async () => {
    const hisPort = await his.start();
    gw = await startGatewayProcess({ dataDir: tmp.dir, env: { HIS_HOST: '127.0.0.1', HIS_PORT: String(hisPort) } });
    base = `http://127.0.0.1:${gw.httpPort}`;
    const tok = await fetch(`${base}/editor/auth/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ client_id: 'node-red-admin', grant_type: 'password', scope: '*', username: 'admin', password: ADMIN_PASSWORD }) });
    expect(tok.status).toBe(200);
    token = ((await tok.json()) as { access_token: string }).access_token;
    shipped = (await editorFlows()).flows;
  }, 60_000);
  afterAll(async () => {
    await browser?.close();
    await gw?.kill();
    await his.stop();
    tmp.cleanup();
  });

  async function editorFlows(): Promise<{ rev: string; flows: any[] }> {
    const r = await fetch(`${base}/editor/flows`, { headers: { authorization: `Bearer ${token}`, 'node-red-api-version': 'v2' } });
    expect(r.status).toBe(200);
    return (await r.json()) as { rev: string; flows: any[] };
  }
  /** What the editor's Deploy button sends (full deploy). */
  async function deploy(flows: unknown[]): Promise<void> {
    const r = await fetch(`${base}/editor/flows`, {
      method: 'POST',
      headers: { authorization: `Bearer ${token}`, 'content-type': 'application/json', 'node-red-api-version': 'v2', 'node-red-deployment-type': 'full' },
      body: JSON.stringify({ flows }),
    });
    expect(r.status).toBe(200);
  }
  async function send(ctl: string, specimen: string, pid = 'P'): Promise<void> {
    // after a deploy or rollback the listener is re-bound: wait until it accepts connections again
    await waitFor(
      () =>
        new Promise<boolean>((resolve) => {
          const s = net.connect(gw.hl7Port, '127.0.0.1', () => (s.destroy(), resolve(true)));
          s.on('error', () => resolve(false));
        }),
      15_000,
    );
    const client = new MllpClient({ host: '127.0.0.1', port: gw.hl7Port, ackTimeoutMs: 10_000 });
    try {
      expect(parseAck(await client.send(oru(ctl, specimen, pid))).code).toBe('AA'); // committed before AA
    } finally {
      await client.close();
    }
  }
  const undelivered = async (reason: string) => metricValue(await gw.metrics(), 'iomt_messages_undelivered_total', { device: DEVICE, reason });

  it('keeps the flows found at start as version 1', async () => {
    const r = await gw.api('/deploys');
    expect(r.versions).toHaveLength(1);
    expect(r.versions[0]).toMatchObject({ id: 1, kind: 'start', nodeCount: 3 });
  });

  it('a deploy without the HIS node is kept with user, address and summary, and audited', async () => {
    // the destination node deleted; the device node's wire to it left as a hand-edited file would
    await deploy(shipped.filter((n) => n.type !== 'iomt-hl7-out'));
    const r = await gw.api('/deploys');
    expect(r.current).toBe(2);
    expect(r.versions[0]).toMatchObject({ id: 2, kind: 'deploy', user: 'admin', source: expect.stringMatching(/127\.0\.0\.1$/), nodeCount: 2 });
    expect(r.versions[0].summary).toEqual({ added: [], removed: [{ id: 'hl7-out-his', type: 'iomt-hl7-out' }], changed: [], counts: { added: 0, removed: 1, changed: 0 } });
    const audit = await gw.api('/audit?limit=50');
    const rows = audit.audit as any[];
    expect(rows.some((a) => a.action === 'deploy' && a.user === 'admin' && a.target === 'flows#2' && a.detail?.removed === 1)).toBe(true);
  });

  it('a result with its destination node missing is acknowledged, counted, flagged and shown; it never reaches the HIS', async () => {
    const before = await undelivered('no-destination');
    await send('NODEST-1', 'SPEC-NODEST-1');
    await waitFor(async () => (await undelivered('no-destination')) === before + 1, 15_000);
    // the flow finished with it (status routed is written by the store's writer, the flag beside it)
    const found = await waitFor(async () => {
      const f = await gw.api('/messages?flag=no-destination');
      return f.messages[0]?.status === 'routed' ? f : undefined;
    }, 10_000);
    expect(found.messages).toHaveLength(1);
    expect(found.messages[0]).toMatchObject({ deviceId: DEVICE, status: 'routed', flags: ['no-destination'] });
    const detail = await gw.api(`/messages/${found.messages[0].id}`);
    expect(detail.deliveries).toEqual([]);
    // the status page's device row carries the warning
    const auth = 'Basic ' + Buffer.from(`admin:${ADMIN_PASSWORD}`).toString('base64');
    const s = (await (await fetch(`${base}/status/api/summary`, { headers: { authorization: auth } })).json()) as any;
    const dev = s.devices.find((d: any) => d.deviceId === DEVICE);
    expect(dev).toMatchObject({ undeliveredToday: 1, undelivered: { count: 1, reason: 'no-destination' } });
    expect(his.received.some((m) => m.text.includes('SPEC-NODEST-1'))).toBe(false);
  });

  it('a destination node that failed to start: the result is counted as destination-broken (not left waiting)', async () => {
    const broken = shipped.map((n) => (n.type === 'iomt-hl7-out' ? { ...n, port: '99999' } : n));
    await deploy(broken);
    await waitFor(async () => (await fetch(`${base}/readyz`)).status === 503, 15_000); // degraded: the node is in error
    const before = await undelivered('destination-broken');
    await send('BROKEN-1', 'SPEC-BROKEN-1');
    await waitFor(async () => (await undelivered('destination-broken')) === before + 1, 15_000);
    // the flag is written by the store's writer just after the count (deferred bookkeeping)
    await waitFor(async () => (await gw.api('/messages?flag=no-destination')).messages.length === 2, 15_000);
    expect((await gw.api('/messages?flag=no-destination')).messages).toHaveLength(2);
  });

  it('the status page (Chromium): the device warning links to the flagged results; an admin rolls back from "Configuration history"', async () => {
    mkdirSync(ARTIFACTS, { recursive: true });
    browser = await chromium.launch({
      executablePath: requirePeer('chromium'),
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
    const ctx = await browser.newContext();
    await ctx.addInitScript(() => localStorage.setItem('iomt.lang', 'en'));
    const page = await ctx.newPage();
    page.on('dialog', (d) => void d.accept());
    await page.goto(`${base}/status/`);
    await page.locator('#login-form').waitFor({ timeout: 15_000 });
    await page.locator('#login-user').fill('admin');
    await page.locator('#login-password').fill(ADMIN_PASSWORD);
    await page.locator('#login-password').press('Enter');
    const warning = page.locator(`tr[data-device="${DEVICE}"] [data-undelivered]`);
    await warning.waitFor({ timeout: 15_000 });
    // the page's counts may be up to 2 s old (the summary cache): reload until the second one shows
    await waitFor(async () => {
      if ((await warning.getAttribute('data-undelivered')) === '2') return true;
      await new Promise((r) => setTimeout(r, 1000));
      await page.reload();
      await warning.waitFor({ timeout: 15_000 });
      return false;
    }, 20_000);
    expect(await warning.getAttribute('data-undelivered')).toBe('2');
    expect(await warning.textContent()).toBe('2 results reached no destination');
    await page.screenshot({ path: join(ARTIFACTS, '1-home-warning.png'), fullPage: true });
    await warning.locator('a').click();
    await page.locator('#results tr[data-message]').first().waitFor({ timeout: 10_000 });
    expect(await page.locator('#results tr[data-message]').count()).toBe(2);

    await page.locator('a[data-nav="history"]').click();
    await page.locator('#history tr[data-version]').first().waitFor({ timeout: 10_000 });
    expect(await page.locator('#history tr[data-version]').evaluateAll((rows) => rows.map((r) => r.getAttribute('data-version')))).toEqual(['3', '2', '1']);
    expect(await page.locator('#history tr[data-version="2"]').textContent()).toContain('1 removed: iomt-hl7-out');
    await page.screenshot({ path: join(ARTIFACTS, '2-history.png'), fullPage: true });
    // roll back to version 2 (no HIS node) from the page
    await page.locator('button[data-rollback="2"]').click();
    await page.locator('#history tr[data-version="4"]').waitFor({ timeout: 15_000 });
    expect(await page.locator('#history tr[data-version="4"]').textContent()).toContain('Rollback to version 2');
    await page.screenshot({ path: join(ARTIFACTS, '3-rolled-back.png'), fullPage: true });
    const v = (await gw.api('/deploys')).versions[0];
    expect(v).toMatchObject({ id: 4, kind: 'rollback', rollbackOf: 2, user: 'admin' });
    expect(v.summary.removed).toEqual([{ id: 'hl7-out-his', type: 'iomt-hl7-out' }]);
    await ctx.close();
  }, 60_000);

  it('rollback to version 1 from the API restores the shipped flows; results reach the HIS again; T held on purpose is not undelivered', async () => {
    const r = await gw.api('/deploys/1/rollback', { method: 'POST', body: '{}' });
    expect(r).toMatchObject({ rolledBackTo: 1, version: { id: 5, kind: 'rollback', rollbackOf: 1, user: 'admin' } });
    expect(r.version.summary.added).toEqual([{ id: 'hl7-out-his', type: 'iomt-hl7-out' }]);
    expect((await editorFlows()).flows).toEqual(shipped);
    await waitFor(async () => (await fetch(`${base}/readyz`)).status === 200, 15_000);

    const lostBefore = (await undelivered('no-destination')) + (await undelivered('destination-broken'));
    await send('BACK-1', 'SPEC-BACK-1');
    await waitFor(() => his.received.some((m) => m.text.includes('SPEC-BACK-1')), 20_000);
    const skippedBefore = metricValue(await gw.metrics(), 'iomt_outbox_processing_id_skipped_total', { destination: 'his', processingId: 'T' });
    await send('TRAIN-1', 'SPEC-TRAIN-1', 'T');
    await waitFor(async () => metricValue(await gw.metrics(), 'iomt_outbox_processing_id_skipped_total', { destination: 'his', processingId: 'T' }) === skippedBefore + 1, 15_000);
    await new Promise((res) => setTimeout(res, 300));
    expect((await undelivered('no-destination')) + (await undelivered('destination-broken'))).toBe(lostBefore);
    expect((await gw.api('/messages?flag=no-destination')).messages).toHaveLength(2);

    const audit = await gw.api('/audit?limit=50');
    const rows = audit.audit as any[];
    expect(rows.some((a) => a.action === 'config.change' && a.user === 'admin' && a.target === 'flows#5' && a.detail?.rollbackOf === 1)).toBe(true);
    expect((await gw.api('/audit/verify')).ok).toBe(true);
  });
});

// Link nodes hand a message on by a direct receive() (no preDeliver): the tracker must not think
// the flow finished before the destination got it (no false no-destination, no early 'routed').
describe('a flow through link nodes (real gateway)', () => {
  let gw: GatewayProcess;
  const tmp = tempDir();
  const his = new TestHis();

  beforeAll(async () => {
    const hisPort = await his.start();
    const relay = JSON.parse(readFileSync(join(ROOT, 'flows', 'hl7-relay.json'), 'utf8')) as any[];
    const flows = [
      ...relay.map((n) => (n.type === 'iomt-hl7-in' ? { ...n, wires: [['lo1']] } : n)),
      { id: 'lo1', type: 'link out', z: 'tab-hl7-relay', mode: 'link', links: ['li1'], x: 300, y: 200, wires: [] },
      { id: 'li1', type: 'link in', z: 'tab-hl7-relay', links: ['lo1'], x: 400, y: 200, wires: [['hl7-out-his']] },
    ];
    const file = join(tmp.dir, 'site-flows.json');
    writeFileSync(file, JSON.stringify(flows));
    gw = await startGatewayProcess({ dataDir: join(tmp.dir, 'data'), flows: file, env: { HIS_HOST: '127.0.0.1', HIS_PORT: String(hisPort) } });
  }, 60_000);
  afterAll(async () => {
    await gw?.kill();
    await his.stop();
    tmp.cleanup();
  });

  it('a result through link out → link in → HIS is delivered and not counted as undelivered', async () => {
    const client = new MllpClient({ host: '127.0.0.1', port: gw.hl7Port, ackTimeoutMs: 10_000 });
    for (let i = 0; i < 5; i++) expect(parseAck(await client.send(oru(`LINK-${i}`, `SPEC-LINK-${i}`))).code).toBe('AA');
    await client.close();
    await waitFor(() => his.received.filter((m) => m.text.includes('SPEC-LINK-')).length === 5, 20_000);
    await new Promise((res) => setTimeout(res, 300));
    const text = await gw.metrics();
    for (const reason of ['no-destination', 'destination-broken', 'destination-error', 'flow-error']) expect(metricValue(text, 'iomt_messages_undelivered_total', { device: DEVICE, reason })).toBe(0);
    expect((await gw.api('/messages?flag=no-destination')).messages).toEqual([]);
    const all = (await gw.api('/messages?limit=10')).messages as any[];
    expect(all.map((m) => m.status)).toEqual(Array(5).fill('routed'));
  });
});
