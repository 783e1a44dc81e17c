import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import net from 'node:net';
import { chromium, type Browser, type BrowserContext, type Page } from 'playwright-core';
import { tempDir, requirePeer, waitFor } from '../helpers/env';
import { startGatewayProcess, ADMIN_PASSWORD, ROOT, type GatewayProcess } from '../helpers/gateway-process';
import { TestHis } from '../helpers/test-his';
import { MllpClient } from '../../drivers/hl7-mllp/mllp-client';
import { parseAck } from '../../drivers/hl7-mllp/ack';
import express from 'express';
import type { Server } from 'node:http';
import { GatewayStore } from '../../gateway/src/store/gateway-store';
import { GatewayRuntime } from '../../gateway/src/runtime';
import { DEFAULT_SETTINGS } from '../../gateway/src/config/settings';
import type { GatewaySettings } from '../../gateway/src/config/settings';
import { statusRouter } from '../../gateway/src/http/status/router';

// A lab technician uses the status page in a real browser (Debian chromium): "did the result of
// specimen X reach the HIS, and when?" in two clicks; the page is served offline, behind the login.
const ARTIFACTS = join(ROOT, '.tmp', 'artifacts', 'status-page');
const TZ = 'Asia/Ho_Chi_Minh'; // the lab's clock, not the server's

function clockIn(tz: string, iso: string): string {
  return new Intl.DateTimeFormat('en-GB', { timeZone: tz, hour: '2-digit', minute: '2-digit', second: '2-digit', hourCycle: 'h23' }).format(new Date(iso));
}

const SPECIMEN = `SP${process.pid}A`;
const DEAD_SPECIMEN = `SP${process.pid}DEAD`;
const INJECTED = '<b id="injected">bold</b>';

function oru(specimen: string, controlId: string): Buffer {
  return Buffer.from(
    [
      `MSH|^~\\&|SIMLAB|LAB1|||20250301093100||ORU^R01|${controlId}|P|2.3.1`,
      'PID|1||BN0012345^^^BV^MR||NGUYEN^VAN AN||19850412|M',
      `OBR|1||${specimen}|01001^CBC^99MRC|||20250301092950`,
      'OBX|1|NM|6690-2^WBC^LN||7.85|10*3/uL|4.00-10.00|N|||F|||20250301092950',
      'OBX|2|NM|718-7^HGB^LN||11,6|g/dL|13.0-17.0|L|||F|||20250301092950', // decimal comma: kept as text, flagged
      `OBX|3|ST|8251-1^Comment^LN||${INJECTED}||||||F`,
    ].join('\r') + '\r',
  );
}

describe('status page in a real browser', () => {
  let gw: GatewayProcess;
  let browser: Browser;
  let base: string;
  let deviceId: string;
  const tmp = tempDir();
  const his = new TestHis();
  const external: string[] = [];

  async function send(msg: Buffer): Promise<string> {
    const client = new MllpClient({ host: '127.0.0.1', port: gw.hl7Port, ackTimeoutMs: 10_000 });
    try {
      return parseAck(await client.send(msg)).code;
    } finally {
      await client.close();
    }
  }

  async function newPage(): Promise<{ ctx: BrowserContext; page: Page }> {
    const ctx = await browser.newContext({
      timezoneId: TZ,
      viewport: { width: 1280, height: 900 },
    });
    const page = await ctx.newPage();
    page.on('request', (r) => {
      if (!r.url().startsWith(base)) external.push(r.url());
    });
    return { ctx, page };
  }

  /** The page's own login form (POST /api/v1/login → session cookie). */
  async function logIn(page: Page, password = ADMIN_PASSWORD): Promise<void> {
    await page.locator('#login-form').waitFor({ timeout: 15_000 });
    await page.locator('#login-user').fill('admin');
    await page.locator('#login-password').fill(password);
    await page.locator('#login-password').press('Enter');
  }

  beforeAll(async () => {
    const exe = requirePeer('chromium');
    mkdirSync(ARTIFACTS, { recursive: true });
    const hisPort = await his.start();
    his.aePattern = new RegExp(DEAD_SPECIMEN);
    gw = await startGatewayProcess({ dataDir: tmp.dir, env: { HIS_HOST: '127.0.0.1', HIS_PORT: String(hisPort), HIS_ACK_TIMEOUT_S: '2', HIS_RECONNECT_MAX_S: '1' } });
    base = `http://127.0.0.1:${gw.httpPort}`;
    browser = await chromium.launch({
      executablePath: exe,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });

    // one result that reaches the HIS, one the HIS rejects (AE → dead letter), one frame that is not HL7 (quarantine)
    expect(await send(oru(SPECIMEN, `ST${process.pid}1`))).toBe('AA');
    expect(await send(oru(DEAD_SPECIMEN, `ST${process.pid}2`))).toBe('AA');
    await new Promise<void>((resolve) => {
      const s = net.connect(gw.hl7Port, '127.0.0.1', () => s.write(Buffer.concat([Buffer.from([0x0b]), Buffer.from('this is not HL7'), Buffer.from([0x1c, 0x0d])])));
      s.on('data', () => s.destroy());
      s.on('error', () => undefined);
      s.on('close', () => resolve());
      setTimeout(() => s.destroy(), 3000);
    });
    await waitFor(() => his.received.some((r) => r.text.includes(SPECIMEN + '|')), 20_000);
    await waitFor(async () => (await gw.api('/dead-letters')).deadLetters.length === 1, 20_000);
    deviceId = (await gw.api('/devices')).devices[0].deviceId;
  }, 90_000);

  afterAll(async () => {
    await browser?.close();
    await gw?.kill();
    await his.stop();
    tmp.cleanup();
  });

  it('keeps its data behind the login, and / leads to it', async () => {
    for (const path of ['/status/api/summary', '/status/api/me']) {
      const r = await fetch(`${base}${path}`);
      expect(r.status, path).toBe(401);
      expect(r.headers.get('www-authenticate'), path).toMatch(/^Basic/); // scripts may use HTTP Basic
      const fromPage = await fetch(`${base}${path}`, { headers: { 'x-requested-with': 'iomt-status' } });
      expect(fromPage.status).toBe(401);
      expect(fromPage.headers.get('www-authenticate')).toBeNull(); // the page shows its own form, not the browser's dialog
    }
    // the page itself holds no data
    const shell = await fetch(`${base}/status/`);
    expect(shell.status).toBe(200);
    expect(await shell.text()).not.toMatch(/SP\d+|NGUYEN|BN0012345/);
    const root = await fetch(`${base}/`, { redirect: 'manual' });
    expect(root.status).toBe(302);
    expect(root.headers.get('location')).toBe('/status/');
    // a wrong password keeps the login form with an error
    const { ctx, page } = await newPage();
    await page.goto(`${base}/`);
    await logIn(page, 'wrong-password');
    await page.locator('#login-error', { hasText: /.+/ }).waitFor({ timeout: 10_000 });
    expect(await page.locator('#devices').count()).toBe(0);
    await page.screenshot({ path: join(ARTIFACTS, '0-login-failed-vi.png'), fullPage: true });
    await ctx.close();
  });

  it('counts from the store: today, quarantine, queue and dead letters, without PHI', async () => {
    const auth = { authorization: 'Basic ' + Buffer.from(`admin:${ADMIN_PASSWORD}`).toString('base64') };
    const s = await (await fetch(`${base}/status/api/summary`, { headers: auth })).json();
    const dev = s.devices.find((d: any) => d.deviceId === deviceId);
    expect(dev.todayCount).toBe(2);
    expect(dev.quarantineToday).toBe((await gw.api('/quarantine')).quarantine.filter((q: any) => q.deviceId === deviceId).length);
    expect(dev.quarantineToday).toBeGreaterThanOrEqual(1);
    const dest = s.destinations.find((d: any) => d.destination === 'his');
    expect(dest).toMatchObject({ dead: 1, delivered: 1, pending: 0, configured: true });
    expect(JSON.stringify(s)).not.toMatch(/NGUYEN|BN0012345|SP\d+A/); // counts only
    // a message stored before today's start is not in today's count
    const future = await (await fetch(`${base}/status/api/summary?since=${encodeURIComponent(new Date(Date.now() + 3_600_000).toISOString())}`, { headers: auth })).json();
    expect(future.devices.find((d: any) => d.deviceId === deviceId).todayCount).toBe(0);
    const bad = await fetch(`${base}/status/api/summary?since=yesterday-ish`, { headers: auth });
    expect(bad.status).toBe(400);
    expect((await bad.json()).code).toBe('bad-since');
    const me = await (await fetch(`${base}/status/api/me`, { headers: auth })).json();
    expect(me).toEqual({ user: 'admin', role: 'admin', phi: true, replay: true });
    const page = await fetch(`${base}/status/`, { headers: auth });
    expect(page.headers.get('content-security-policy')).toContain("default-src 'self'");
  });

  it('answers "did specimen X reach the HIS, and when?" in two clicks, in English and Vietnamese', async () => {
    const found = (await gw.api(`/messages?specimenId=${SPECIMEN}`)).messages;
    expect(found).toHaveLength(1);
    const detail = await gw.api(`/messages/${found[0].id}`);
    const delivered = detail.deliveries.find((d: any) => d.destination === 'his' && d.state === 'delivered');
    expect(delivered?.deliveredAt).toBeTruthy();
    const flagged = detail.observations.find((o: any) => (o.quality ?? []).some((q: any) => q.code === 'invalid-number'));
    expect(flagged, 'the decimal comma is flagged by the driver').toBeDefined();

    const { ctx, page } = await newPage();
    await page.goto(`${base}/`);
    expect(page.url()).toBe(`${base}/status/`);
    await logIn(page);
    await page.locator('#devices tr[data-device]').first().waitFor({ timeout: 15_000 });
    // default language is Vietnamese
    expect(await page.locator('html').getAttribute('lang')).toBe('vi');
    await page.locator('#lang-switch').click();
    await page.locator('#devices h2', { hasText: 'Devices' }).waitFor();
    const row = page.locator(`#devices tr[data-device="${deviceId}"]`);
    expect(await row.locator('[data-col=today]').textContent()).toBe('2');
    expect(Number(await row.locator('[data-col=quarantine]').textContent())).toBeGreaterThanOrEqual(1);
    const his1 = page.locator('#destinations tr[data-destination="his"]');
    expect(await his1.locator('[data-col=dead]').textContent()).toContain('1');
    expect(await his1.locator('button[data-replay="his"]').isVisible()).toBe(true);
    await page.screenshot({ path: join(ARTIFACTS, '1-home-en.png'), fullPage: true });

    // click 1: type the barcode in the home search box + Enter
    await page.locator('#home-search').fill(SPECIMEN);
    await page.keyboard.press('Enter');
    const hit = page.locator('#results tr[data-message]');
    await hit.first().waitFor({ timeout: 10_000 });
    expect(await hit.count()).toBe(1);
    await page.screenshot({ path: join(ARTIFACTS, '2-search-en.png'), fullPage: true });
    // click 2: the message
    await hit.first().click();
    const banner = page.locator('#delivery-summary .delivery[data-destination="his"]');
    await banner.waitFor({ timeout: 10_000 });
    expect(await banner.getAttribute('data-state')).toBe('delivered');
    expect((await banner.textContent())?.trim()).toBe(`Delivered to his at ${clockIn(TZ, delivered.deliveredAt)}`);
    expect(await page.locator('#msg-specimen').textContent()).toBe(SPECIMEN);
    // the data-quality flag of the decimal comma, with its location and the device's text
    const q = page.locator(`#observations tr[data-obs="${flagged.seq}"] [data-quality="invalid-number"]`);
    expect(await q.isVisible()).toBe(true);
    expect(await page.locator(`#observations tr[data-obs="${flagged.seq}"]`).textContent()).toContain('11,6'); // kept as sent
    // the raw message is text: markup from the device is shown, never rendered
    expect(await page.locator('#raw pre').textContent()).toContain(INJECTED);
    expect(await page.locator('#observations').textContent()).toContain(INJECTED);
    expect(await page.locator('#injected').count()).toBe(0);
    await page.screenshot({ path: join(ARTIFACTS, '3-message-en.png'), fullPage: true });

    // Vietnamese
    await page.locator('#lang-switch').click();
    await page.locator('#delivery-summary .delivery', { hasText: 'Đã gửi tới his lúc' }).waitFor({ timeout: 10_000 });
    expect((await banner.textContent())?.trim()).toBe(`Đã gửi tới his lúc ${clockIn(TZ, delivered.deliveredAt)}`);
    expect(await page.locator('html').getAttribute('lang')).toBe('vi');
    expect(await page.locator('[data-nav=quarantine]').textContent()).toBe('Cách ly');
    await page.screenshot({ path: join(ARTIFACTS, '4-message-vi.png'), fullPage: true });

    // quarantine with its reason
    await page.locator('[data-nav=quarantine]').click();
    await page.locator('#quarantine tr[data-quarantine]').first().waitFor({ timeout: 10_000 });
    const reasons = await page.locator('#quarantine tr[data-quarantine] td:nth-child(3)').allTextContents();
    expect(reasons.every((r) => r.length > 0)).toBe(true);
    await page.screenshot({ path: join(ARTIFACTS, '5-quarantine-vi.png'), fullPage: true });
    await ctx.close();
    expect(external).toEqual([]); // offline: nothing but the gateway itself
  });

  it('searches by patient id, device and date', async () => {
    const { ctx, page } = await newPage();
    const today = new Intl.DateTimeFormat('en-CA', { timeZone: TZ }).format(new Date()); // YYYY-MM-DD
    await page.goto(`${base}/status/`);
    await logIn(page);
    await page.locator('#devices').waitFor({ timeout: 15_000 });
    await page.goto(`${base}/status/#/search?patientId=BN0012345&deviceId=${encodeURIComponent(deviceId)}&from=${today}&to=${today}`);
    await page.locator('#results tr[data-message]').first().waitFor({ timeout: 10_000 });
    expect(await page.locator('#results tr[data-message]').count()).toBe(2);
    await page.goto(`${base}/status/#/search?patientId=NOBODY-${process.pid}`);
    await page.locator('#results p').waitFor({ timeout: 10_000 });
    expect(await page.locator('#results tr[data-message]').count()).toBe(0);
    // a day before today finds nothing
    await page.goto(`${base}/status/#/search?deviceId=${encodeURIComponent(deviceId)}&to=2000-01-01`);
    await page.locator('#results p').waitFor({ timeout: 10_000 });
    expect(await page.locator('#results tr[data-message]').count()).toBe(0);
    // log out: back to the form, and the session no longer opens the data
    await page.locator('#logout').click();
    await page.locator('#login-form').waitFor({ timeout: 10_000 });
    expect(await page.evaluate(async () => (await fetch('api/summary', { headers: { 'x-requested-with': 'iomt-status' } })).status)).toBe(401);
    await page.goto(`${base}/status/#/search?specimenId=${SPECIMEN}`);
    await page.locator('#login-form').waitFor({ timeout: 10_000 });
    expect(await page.locator('#results').count()).toBe(0);
    await ctx.close();
  });

  it('lets a logged-in user change their own password (a dedicated user, so the admin login is untouched)', async () => {
    const user = `pwuser${process.pid}`;
    const oldPw = `old-pass-${process.pid}`;
    const newPw = `new-pass-${process.pid}-ỹ`; // non-ASCII: counted in UTF-8 bytes by the server
    await gw.api('/users', { method: 'POST', body: JSON.stringify({ name: user, role: 'viewer', password: oldPw }) });
    const loginAs = async (page: Page, pw: string) => {
      await page.locator('#login-form').waitFor({ timeout: 15_000 });
      await page.locator('#login-user').fill(user);
      await page.locator('#login-password').fill(pw);
      await page.locator('#login-password').press('Enter');
    };
    const { ctx, page } = await newPage();
    await page.goto(`${base}/status/`);
    await loginAs(page, oldPw);
    await page.locator('#nav-password').click();
    await page.locator('#password-form').waitFor({ timeout: 10_000 });
    expect(await page.locator('#password-form h1').textContent()).toBe('Đổi mật khẩu'); // Vietnamese by default
    const fill = async (cur: string, a: string, b: string) => {
      await page.locator('#pw-current').fill(cur);
      await page.locator('#pw-new').fill(a);
      await page.locator('#pw-new2').fill(b);
      await page.locator('#password-form button[type=submit]').click();
    };
    // client-side checks: no request is sent
    const posts: string[] = [];
    page.on('request', (r) => (r.method() === 'POST' && r.url().includes('/account/password') ? posts.push(r.url()) : undefined));
    await fill(oldPw, newPw, newPw + 'x');
    await expect.poll(() => page.locator('#pw-error').textContent()).toBe('Hai lần nhập mật khẩu mới không khớp.');
    await fill(oldPw, 'short', 'short');
    await expect.poll(() => page.locator('#pw-error').textContent()).toBe('Mật khẩu mới phải có ít nhất 8 ký tự.');
    expect(posts).toEqual([]);
    // the server's error text is shown (wrong current password), in English after switching
    await page.locator('#lang-switch').click();
    await page.goto(`${base}/status/#/password`);
    await page.locator('#password-form h1', { hasText: 'Change password' }).waitFor({ timeout: 10_000 });
    await fill('not-my-password', newPw, newPw);
    await expect.poll(() => page.locator('#pw-error').textContent()).toBe('The password was not changed: currentPassword is missing or wrong');
    expect(posts).toHaveLength(1);
    // the change itself
    await fill(oldPw, newPw, newPw);
    await page.locator('#pw-ok', { hasText: /.+/ }).waitFor({ timeout: 10_000 });
    expect(await page.locator('#pw-ok').textContent()).toBe('Password changed.'); // the session was renewed
    expect(await page.locator('#pw-error').textContent()).toBe('');
    await page.screenshot({ path: join(ARTIFACTS, '7-password-changed-en.png'), fullPage: true });
    // the old password no longer opens the page; the new one does
    await page.locator('#logout').click();
    await loginAs(page, oldPw);
    await page.locator('#login-error', { hasText: 'Wrong user name or password.' }).waitFor({ timeout: 10_000 });
    await loginAs(page, newPw);
    await page.locator('#who', { hasText: user }).waitFor({ timeout: 10_000 });
    await page.goto(`${base}/status/#/`);
    await page.locator('#devices').waitFor({ timeout: 10_000 });
    await ctx.close();
  });

  it('after a password change that ends the session, returns to the login form with a message', async () => {
    // Basic auth has no session to renew: the page's probe of /status/api/me answers 401 once the
    // password changed, so the page must show the login form with "password changed, log in again".
    const user = `pwbasic${process.pid}`;
    const oldPw = `basic-old-${process.pid}`;
    const newPw = `basic-new-${process.pid}`;
    await gw.api('/users', { method: 'POST', body: JSON.stringify({ name: user, role: 'viewer', password: oldPw }) });
    const ctx = await browser.newContext({ timezoneId: TZ, viewport: { width: 1280, height: 900 }, extraHTTPHeaders: { authorization: 'Basic ' + Buffer.from(`${user}:${oldPw}`).toString('base64') } }); // every request, as a script or proxy would
    const page = await ctx.newPage();
    await page.goto(`${base}/status/#/password`);
    await page.locator('#password-form').waitFor({ timeout: 15_000 });
    await page.locator('#pw-current').fill(oldPw);
    await page.locator('#pw-new').fill(newPw);
    await page.locator('#pw-new2').fill(newPw);
    await page.locator('#password-form button[type=submit]').click();
    await page.locator('#login-info').waitFor({ timeout: 10_000 });
    expect(await page.locator('#login-info').textContent()).toBe('Đã đổi mật khẩu: hãy đăng nhập lại bằng mật khẩu mới.');
    await page.screenshot({ path: join(ARTIFACTS, '8-password-changed-login-vi.png'), fullPage: true });
    await ctx.close();
    const r = await fetch(`${base}/status/api/me`, { headers: { authorization: 'Basic ' + Buffer.from(`${user}:${newPw}`).toString('base64') } });
    expect(r.status).toBe(200);
  });

  it('replays the dead letters of a destination from the home page', async () => {
    his.aePattern = undefined; // the HIS accepts it now
    const before = his.received.filter((r) => r.text.includes(DEAD_SPECIMEN)).length;
    const { ctx, page } = await newPage();
    page.on('dialog', (d) => void d.accept());
    await page.goto(`${base}/status/`);
    await logIn(page);
    const button = page.locator('#destinations button[data-replay="his"]');
    await button.waitFor({ timeout: 15_000 });
    await button.click();
    await page.locator('#notice:not([hidden])').waitFor({ timeout: 10_000 });
    // the page re-reads the destinations right after the replay (well before its 10 s refresh)
    await waitFor(async () => (await page.locator('#destinations tr[data-destination="his"] [data-col=dead]').textContent()) === '0', 5_000);
    expect(await button.count()).toBe(0);
    await waitFor(() => his.received.filter((r) => r.text.includes(DEAD_SPECIMEN)).length > before, 20_000);
    await waitFor(async () => (await gw.api('/dead-letters')).deadLetters.length === 0, 20_000);
    await page.reload();
    await waitFor(async () => (await page.locator('#destinations tr[data-destination="his"] td.num').nth(3).textContent()) === '2', 5_000); // delivered: both results
    await ctx.close();
  });
});

// Roles (issue 9 §3) as the auth middleware leaves them (res.locals.principal): a viewer sees status only,
// no PHI and no replay; an operator may replay; no principal = the single admin of older versions.
describe('status page by role (in process, real store on disk)', () => {
  const tmp = tempDir();
  let store: GatewayStore;
  let server: Server;
  let browser: Browser;
  let base: string;
  let messageId: number;

  beforeAll(async () => {
    store = GatewayStore.open({ dataDir: tmp.dir });
    const rt = new GatewayRuntime({ ...DEFAULT_SETTINGS, dataDir: tmp.dir } as unknown as GatewaySettings, store);
    const c = await store.submit({
      deviceId: 'analyzer-1',
      driver: 'hl7-mllp',
      raw: Buffer.from('MSH|^~\\&|X|Y|||20250301||ORU^R01|R1|P|2.5.1\rPID|1||PHI-PATIENT-77||SECRET^NAME\r'),
      messageType: 'ORU^R01',
      drafts: [{ code: { system: 'LN', code: '6690-2', display: 'WBC' }, status: 'final', value: { kind: 'quantity', value: 7.85, unit: '10*3/uL' }, subject: { patientId: 'PHI-PATIENT-77', patientName: 'SECRET^NAME', specimenId: 'ROLE-SPEC-1' } }],
    });
    messageId = (c as { messageId: number }).messageId;
    expect(messageId).toBeGreaterThan(0);
    await store.appendOutbox('his', [{ key: 'k1', messageId, payload: Buffer.from('x') }]);
    const leased = store.lease('his', 10, 60_000);
    expect(leased).toHaveLength(1);
    await store.settle('his', [{ id: leased[0].id, outcome: 'dead', error: 'AE from test' }]);
    const app = express();
    // what http/auth.ts Authenticator.middleware() leaves for an authenticated request
    const asRole: express.RequestHandler = (req, res, next) => {
      const role = req.headers['x-test-role'];
      if (typeof role === 'string') res.locals.principal = { user: `u-${role}`, role, via: 'session', source: '127.0.0.1' };
      next();
    };
    app.use('/status', statusRouter(rt, { auth: asRole }));
    server = await new Promise<Server>((r) => {
      const s = app.listen(0, '127.0.0.1', () => r(s));
    });
    const addr = server.address();
    base = `http://127.0.0.1:${typeof addr === 'object' && addr ? addr.port : 0}`;
    browser = await chromium.launch({ executablePath: requirePeer('chromium'), args: ['--headless', '--no-sandbox', '--disable-gpu', '--no-first-run', '--disable-background-networking'] });
  });
  afterAll(async () => {
    await browser?.close();
    await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
    await store?.close();
    tmp.cleanup();
  });

  const me = async (role?: string) => (await fetch(`${base}/status/api/me`, { headers: role ? { 'x-test-role': role } : {} })).json();

  it.each([
    [undefined, { role: 'admin', phi: true, replay: true }], // no principal: the single admin of older versions
    ['admin', { user: 'u-admin', role: 'admin', phi: true, replay: true }],
    ['operator', { user: 'u-operator', role: 'operator', phi: true, replay: true }],
    ['viewer', { user: 'u-viewer', role: 'viewer', phi: false, replay: false }],
    ['superuser', { user: 'u-superuser', role: 'viewer', phi: false, replay: false }], // unknown → least privilege
  ])('role %s may see %o', async (role, want) => {
    expect(await me(role)).toEqual(want);
  });

  async function pageAs(role: string) {
    const ctx = await browser.newContext({ extraHTTPHeaders: { 'x-test-role': role } });
    const page = await ctx.newPage();
    await page.goto(`${base}/status/`);
    await page.locator('#destinations tr[data-destination="his"]').waitFor({ timeout: 15_000 });
    return { ctx, page };
  }

  it('a viewer sees the status without PHI, search or replay', async () => {
    const { ctx, page } = await pageAs('viewer');
    expect(await page.locator('#devices tr[data-device="analyzer-1"] [data-col=today]').textContent()).toBe('1');
    expect(await page.locator('#destinations tr[data-destination="his"] [data-col=dead]').textContent()).toContain('1');
    expect(await page.locator('button[data-replay]').count()).toBe(0);
    expect(await page.locator('#home-search').count()).toBe(0);
    expect(await page.locator('[data-nav=search]').isVisible()).toBe(false);
    await page.screenshot({ path: join(ARTIFACTS, '6-home-viewer.png'), fullPage: true });
    await page.goto(`${base}/status/#/message/${messageId}`);
    await page.locator('#view .err').waitFor({ timeout: 10_000 });
    const body = (await page.locator('body').textContent()) ?? '';
    expect(body).not.toContain('PHI-PATIENT-77');
    expect(body).not.toContain('SECRET');
    expect(await page.locator('#raw').count()).toBe(0);
    await ctx.close();
  });

  it('an operator sees the replay button and the search', async () => {
    const { ctx, page } = await pageAs('operator');
    expect(await page.locator('button[data-replay="his"]').isVisible()).toBe(true);
    expect(await page.locator('#home-search').isVisible()).toBe(true);
    expect(await page.locator('#who').textContent()).toContain('u-operator');
    await ctx.close();
  });
});
