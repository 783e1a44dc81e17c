import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type Browser } from 'playwright-core';
import { existsSync, readFileSync } from 'node:fs';
import { request as httpRequest } from 'node:http';
import { join } from 'node:path';
import net from 'node:net';
import { tempDir, requirePeer, waitFor, freePort } from '../helpers/env';
import { AstmPeer, CODES, frame } from '../helpers/astm-peer';
import { startGatewayProcess, ADMIN_PASSWORD, ROOT, type GatewayProcess } from '../helpers/gateway-process';
import { TestHis } from '../helpers/test-his';
import { MllpClient } from '../../drivers/hl7-mllp/mllp-client';
import { parseAck } from '../../drivers/hl7-mllp/ack';

// A person logs in to the embedded Node-RED editor in a real browser (Debian chromium).
describe('Node-RED editor in a real browser', () => {
  let gw: GatewayProcess;
  let browser: Browser;
  const tmp = tempDir();
  const his = new TestHis();

  beforeAll(async () => {
    const exe = requirePeer('chromium');
    const hisPort = await his.start();
    gw = await startGatewayProcess({ dataDir: tmp.dir, env: { HIS_HOST: '127.0.0.1', HIS_PORT: String(hisPort) } });
    browser = await chromium.launch({
      executablePath: exe,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  });
  afterAll(async () => {
    await browser?.close();
    await gw?.kill();
    await his.stop();
    tmp.cleanup();
  });

  it('refuses the flows API without a login', async () => {
    const r = await fetch(`http://127.0.0.1:${gw.httpPort}/editor/flows`);
    expect(r.status).toBe(401);
  });

  it('rejects a wrong password and shows our nodes and the deployed relay flow after a correct login', async () => {
    const page = await browser.newPage();
    // the editor runs under its CSP (issue 10 §6): Chromium reports every violation on the console
    const cspViolations: string[] = [];
    page.on('console', (m) => {
      if (/Content Security Policy/i.test(m.text())) cspViolations.push(m.text());
    });
    await page.addInitScript(() => {
      (window as any).__csp = [];
      document.addEventListener('securitypolicyviolation', (e) => (window as any).__csp.push(`${e.violatedDirective} ${e.blockedURI}`));
    });
    await page.goto(`http://127.0.0.1:${gw.httpPort}/editor/`);
    const user = page.locator('#node-dialog-login-fields input[type=text], #node-dialog-login-fields input[name=username]').first();
    await user.waitFor({ timeout: 20_000 });
    await user.fill('admin');
    await page.locator('#node-dialog-login-fields input[type=password]').fill('wrong-password');
    await page.locator('.red-ui-login-form button, #node-dialog-login-submit, button.primary').first().click();
    // still on the login dialog
    await page.waitForTimeout(1500);
    expect(await page.locator('#red-ui-palette').isVisible().catch(() => false)).toBe(false);

    await page.locator('#node-dialog-login-fields input[type=password]').fill(ADMIN_PASSWORD);
    await page.locator('.red-ui-login-form button, #node-dialog-login-submit, button.primary').first().click();
    await page.locator('#red-ui-palette').waitFor({ state: 'visible', timeout: 30_000 });
    await page.locator('.red-ui-palette-node[data-palette-type="iomt-hl7-in"]').waitFor({ timeout: 20_000 });
    expect(await page.locator('.red-ui-palette-node[data-palette-type="iomt-hl7-out"]').count()).toBe(1);
    const types = await page.evaluate(() => {
      const RED = (window as any).RED;
      const out: string[] = [];
      RED.nodes.eachNode((n: any) => out.push(n.type));
      return out;
    });
    expect(types.sort()).toEqual(['iomt-hl7-in', 'iomt-hl7-out']);

    // the status under each node, as the person sees it on the canvas
    const statusOf = (type: string) =>
      page.evaluate((t) => {
        const RED = (window as any).RED;
        let text = '';
        RED.nodes.eachNode((n: any) => {
          if (n.type === t) text = document.querySelector(`[id="${n.id}"] .red-ui-flow-node-status-label`)?.textContent ?? '';
        });
        return text;
      }, type);
    await waitFor(async () => (await statusOf('iomt-hl7-in')).startsWith('listening'), 20_000);
    expect(await statusOf('iomt-hl7-out')).toMatch(/^idle/); // nothing sent to the HIS yet: not claimed as connected
    // one result through the relay: the HIS connection is now really open
    const client = new MllpClient({ host: '127.0.0.1', port: gw.hl7Port, ackTimeoutMs: 10_000 });
    const msg = ['MSH|^~\\&|SIMLAB|LAB1|||20250301093100||ORU^R01|EDITOR-1|P|2.3.1', 'PID|1||BN0012345^^^BV^MR', 'OBR|1||EDITOR-SPEC|01001^CBC^99MRC', 'OBX|1|NM|6690-2^WBC^LN||7.85|10*3/uL|4.00-10.00|N|||F'].join('\r') + '\r';
    expect(parseAck(await client.send(Buffer.from(msg))).code).toBe('AA');
    await client.close();
    await waitFor(() => his.received.some((r) => r.text.includes('EDITOR-SPEC')), 20_000);
    await waitFor(async () => (await statusOf('iomt-hl7-out')).startsWith('connected'), 20_000);
    expect(await statusOf('iomt-hl7-out')).toMatch(/^connected queue 0/);
    await page.screenshot({ path: `${ROOT}/.tmp/editor.png` });
    // open a node's edit dialog too (its HTML, the field helpers, the code editor)
    await page.evaluate(() => {
      const RED = (window as any).RED;
      RED.nodes.eachNode((n: any) => {
        if (n.type === 'iomt-hl7-in') RED.editor.edit(n);
      });
    });
    await page.locator('#node-dialog-ok').waitFor({ state: 'visible', timeout: 10_000 });
    await page.locator('#node-dialog-cancel').click();
    // the code editor (Monaco, with its web workers) in the JSON tray
    await page.evaluate(() => (window as any).RED.editor.editJSON({ value: '{"a": [1, 2]}', complete: () => undefined }));
    await page.locator('.monaco-editor').first().waitFor({ state: 'visible', timeout: 20_000 });
    await page.keyboard.type(' ');
    await page.waitForTimeout(1500); // the JSON worker validates
    expect(cspViolations).toEqual([]);
    expect(await page.evaluate(() => (window as any).__csp)).toEqual([]);
  });

  // ---------------------------------------------------------------- issue 10 §4–6
  const base = () => `http://127.0.0.1:${gw.httpPort}`;
  /** A request from another loopback address (127.0.0.x act as different clients). */
  const from = (localAddress: string, path: string, init: { method?: string; headers?: Record<string, string>; body?: string } = {}) =>
    new Promise<{ status: number; headers: Record<string, string | string[] | undefined>; body: string }>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port: gw.httpPort, path, method: init.method ?? 'GET', localAddress, headers: { ...(init.body ? { 'content-length': String(Buffer.byteLength(init.body)) } : {}), ...init.headers } }, (res) => {
        let b = '';
        res.on('data', (c) => (b += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: b }));
      });
      req.on('error', reject);
      req.end(init.body);
    });
  const tokenFrom = (addr: string, username: string, password: string) =>
    from(addr, '/editor/auth/token', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ client_id: 'node-red-admin', grant_type: 'password', scope: '*', username, password }) });

  it('editor and API answers: CSP with frame-ancestors none, X-Frame-Options DENY, nosniff, no-referrer, no wildcard CORS', async () => {
    for (const path of ['/editor/', '/editor/settings', '/api/v1/destinations', '/healthz']) {
      const r = await from('127.0.0.1', path, { headers: { origin: 'http://evil.example' } });
      expect(r.headers['content-security-policy'], path).toMatch(/frame-ancestors 'none'/);
      expect(r.headers['x-frame-options'], path).toBe('DENY');
      expect(r.headers['x-content-type-options'], path).toBe('nosniff');
      expect(r.headers['referrer-policy'], path).toBe('no-referrer');
      expect(r.headers['access-control-allow-origin'], path).toBeUndefined();
    }
    expect((await from('127.0.0.1', '/editor/')).headers['content-security-policy']).toMatch(/script-src 'self' 'unsafe-inline'; /); // no eval
    expect((await from('127.0.0.1', '/api/v1/destinations')).headers['content-security-policy']).toMatch(/^default-src 'none'/);
    // a cross-origin preflight gets no CORS grant: the browser refuses the real request
    const pre = await from('127.0.0.1', '/editor/flows', { method: 'OPTIONS', headers: { origin: 'http://evil.example', 'access-control-request-method': 'POST', 'access-control-request-headers': 'authorization,content-type' } });
    expect(pre.headers['access-control-allow-origin']).toBeUndefined();
    expect(pre.headers['access-control-allow-methods']).toBeUndefined();
  });

  it('brute force on the editor login from one address does not lock the admin out from another (Node-RED alone: 5 per name, from anywhere)', async () => {
    const attacker: number[] = [];
    for (let i = 0; i < 10; i++) attacker.push((await tokenFrom('127.0.0.66', 'admin', `wrong-${i}`)).status);
    expect(attacker.slice(0, 5).every((s) => s === 401 || s === 403)).toBe(true);
    expect(attacker).toContain(429);
    expect((await tokenFrom('127.0.0.66', 'admin', ADMIN_PASSWORD)).status).toBe(429); // that address waits
    const owner = await tokenFrom('127.0.0.1', 'admin', ADMIN_PASSWORD);
    expect(owner.status, owner.body).toBe(200);
    expect(JSON.parse(owner.body).access_token).toMatch(/\S{20,}/);
  });

  it('the editor is not a shell: exec, function, file, tcp and udp nodes are not loaded; a flow with an exec node is refused and does not run `id`', async () => {
    const tok = JSON.parse((await tokenFrom('127.0.0.1', 'admin', ADMIN_PASSWORD)).body).access_token as string;
    const auth = { authorization: `Bearer ${tok}` };
    const nodes = JSON.parse((await from('127.0.0.1', '/editor/nodes', { headers: { ...auth, accept: 'application/json' } })).body) as Array<{ types: string[] }>;
    const types = nodes.flatMap((n) => n.types);
    expect(types).toContain('iomt-hl7-in');
    expect(types).toContain('inject');
    for (const t of ['exec', 'function', 'file', 'file in', 'watch', 'tcp in', 'tcp out', 'tcp request', 'udp in', 'udp out']) expect(types, t).not.toContain(t);
    const marker = join(tmp.dir, 'pwned');
    const good = JSON.parse((await from('127.0.0.1', '/editor/flows', { headers: auth })).body) as unknown[];
    const evil = [
      ...good,
      { id: 'evil-tab', type: 'tab', label: 'evil' },
      { id: 'evil-inject', type: 'inject', z: 'evil-tab', once: true, onceDelay: 0.1, repeat: '', payload: '', payloadType: 'date', wires: [['evil-exec']] },
      { id: 'evil-exec', type: 'exec', z: 'evil-tab', command: `id > ${marker}`, addpay: '', append: '', useSpawn: 'false', timer: '', winHide: false, oldrc: false, wires: [[], [], []] },
    ];
    const post = (flows: unknown[]) => from('127.0.0.1', '/editor/flows', { method: 'POST', headers: { ...auth, 'content-type': 'application/json', 'Node-RED-Deployment-Type': 'full' }, body: JSON.stringify(flows) });
    const refused = await post(evil);
    expect(refused.status).toBe(400);
    expect(JSON.parse(refused.body).message).toMatch(/node types not available in this gateway: exec\b/);
    // the editor's own format ({ flows, rev }, API v2) too, and the single-flow API
    const v2 = await from('127.0.0.1', '/editor/flows', { method: 'POST', headers: { ...auth, 'content-type': 'application/json', 'Node-RED-API-Version': 'v2', 'Node-RED-Deployment-Type': 'full' }, body: JSON.stringify({ flows: evil }) });
    expect(v2.status).toBe(400);
    const one = await from('127.0.0.1', '/editor/flow', { method: 'POST', headers: { ...auth, 'content-type': 'application/json' }, body: JSON.stringify({ label: 'evil', nodes: evil.slice(-2).map((n) => ({ ...n, z: undefined })) }) });
    expect(one.status).toBe(400);
    await new Promise((r) => setTimeout(r, 2000));
    expect(existsSync(marker)).toBe(false);
    // nothing was stopped: the relay still answers
    const still = new MllpClient({ host: '127.0.0.1', port: gw.hl7Port, ackTimeoutMs: 10_000 });
    const m = ['MSH|^~\\&|SIMLAB|LAB1|||20250301093100||ORU^R01|EXEC-1|P|2.3.1', 'PID|1||BN0012345^^^BV^MR', 'OBR|1||EXEC-SPEC|01001^CBC^99MRC', 'OBX|1|NM|6690-2^WBC^LN||7.85|10*3/uL|4.00-10.00|N|||F'].join('\r') + '\r';
    expect(parseAck(await still.send(Buffer.from(m))).code).toBe('AA');
    await still.close();
    // put the relay back and check it runs again
    expect((await post(good)).status).toBeLessThan(300);
    await waitFor(async () => (await fetch(`${base()}/readyz`)).ok, 20_000);
    await waitFor(async () => {
      const s = net.connect(gw.hl7Port, '127.0.0.1');
      const ok = await new Promise<boolean>((r) => s.once('connect', () => r(true)).once('error', () => r(false)));
      s.destroy();
      return ok;
    }, 20_000);
    expect(existsSync(marker)).toBe(false);
  });

  it('five parallel wrong logins do not delay an analyzer\'s ACK (bcrypt off the main thread)', { retry: 1 }, async () => {
    const client = new MllpClient({ host: '127.0.0.1', port: gw.hl7Port, ackTimeoutMs: 10_000 });
    let n = 0;
    const ackMs = async () => {
      const msg = [`MSH|^~\\&|SIMLAB|LAB1|||20250301093100||ORU^R01|LAT-${++n}|P|2.3.1`, 'PID|1||BN0012345^^^BV^MR', `OBR|1||LAT-SPEC-${n}|01001^CBC^99MRC`, 'OBX|1|NM|6690-2^WBC^LN||7.85|10*3/uL|4.00-10.00|N|||F'].join('\r') + '\r';
      const t0 = performance.now();
      expect(parseAck(await client.send(Buffer.from(msg))).code).toBe('AA');
      return performance.now() - t0;
    };
    try {
      const quiet: number[] = [];
      for (let i = 0; i < 5; i++) quiet.push(await ackMs());
      const baseline = quiet.sort((a, b) => a - b)[2];
      const worst: number[] = [];
      for (let round = 0; round < 2; round++) {
        const logins = [1, 2, 3, 4, 5].map((i) =>
          from(`127.0.0.${80 + round * 10 + i}`, '/api/v1/account', { headers: { authorization: `Basic ${Buffer.from(`admin:wrong-${i}`).toString('base64')}` } }),
        );
        await new Promise((r) => setTimeout(r, 20)); // the checks are running
        const during: number[] = [];
        for (let i = 0; i < 3; i++) during.push(await ackMs());
        expect((await Promise.all(logins)).map((r) => r.status)).toEqual([401, 401, 401, 401, 401]);
        worst.push(Math.max(...during));
      }
      // bcryptjs on the main thread: 5 × ~70 ms delayed the ACK by ~600 ms (measured); with the worker pool it is
      // a few ms on a quiet machine and ~100 ms when the CI run loads both cores: the bound separates the two
      expect(Math.min(...worst), `baseline ${baseline.toFixed(1)} ms`).toBeLessThan(baseline + 250);
    } finally {
      await client.close();
    }
  });

  it('a password change revokes the editor tokens of that user at once', async () => {
    expect((await gw.api('/users', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ name: 'boss', role: 'admin', password: 'boss-password-1' }) })).user).toBeDefined();
    const tok = JSON.parse((await tokenFrom('127.0.0.1', 'boss', 'boss-password-1')).body).access_token as string;
    const flows = () => from('127.0.0.1', '/editor/flows', { headers: { authorization: `Bearer ${tok}` } });
    expect((await flows()).status).toBe(200);
    // an editor left open: its comms websocket (status, debug) is authenticated with the token
    // eslint-disable-next-line @typescript-eslint/no-require-imports
    const WebSocket = require('ws');
    const ws = new WebSocket(`ws://127.0.0.1:${gw.httpPort}/editor/comms`);
    const frames: string[] = [];
    const closed = new Promise<void>((r) => ws.once('close', () => r()));
    ws.on('message', (d: Buffer) => frames.push(String(d)));
    await new Promise<void>((r, j) => ws.once('open', () => r()).once('error', j));
    ws.send(JSON.stringify({ auth: tok }));
    await waitFor(() => frames.some((f) => f.includes('"auth":"ok"')), 10_000);
    await new Promise((r) => setTimeout(r, 5)); // a later millisecond than the token
    await gw.api('/account/password', { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ user: 'boss', newPassword: 'boss-password-2' }) });
    expect((await flows()).status).toBe(401);
    await Promise.race([closed, new Promise((_, j) => setTimeout(() => j(new Error(`comms still open: ${frames.join(' ')}`)), 10_000))]);
    expect(frames.some((f) => f.includes('"auth":"fail"'))).toBe(true);
    const fresh = JSON.parse((await tokenFrom('127.0.0.1', 'boss', 'boss-password-2')).body).access_token as string;
    expect((await from('127.0.0.1', '/editor/flows', { headers: { authorization: `Bearer ${fresh}` } })).status).toBe(200);
  });
});

// Issue 9 §2: opening every shipped node and pressing Done changes nothing; after a deploy data still
// flows (no TLS switched on by a checkbox reading '${HL7_IN_TLS:-false}' as true), and the checkout's
// flow file is never written. A node that fails to start is listed in error and /readyz is degraded.
describe('Editor: Done without edits changes nothing (every shipped node type)', () => {
  let gw: GatewayProcess;
  let browser: Browser;
  const tmp = tempDir();
  const his = new TestHis();
  const shippedFile = join(ROOT, 'flows', 'lab-astm-to-his.json');
  const shippedBefore = readFileSync(shippedFile, 'utf8');
  let astmTcpPort = 0;
  let ordersPort = 0;

  beforeAll(async () => {
    const exe = requirePeer('chromium');
    const hisPort = await his.start();
    astmTcpPort = await freePort();
    ordersPort = await freePort();
    gw = await startGatewayProcess({
      dataDir: join(tmp.dir, 'gw'),
      flows: shippedFile,
      env: {
        HIS_HOST: '127.0.0.1',
        HIS_PORT: String(hisPort),
        HIS_RECONNECT_MAX_S: '1',
        ASTM_SERIAL_PATH: join(tmp.dir, 'no-such-tty'), // absent adapter: retried, not an error
        ASTM_TCP_HOST: '127.0.0.1',
        ASTM_TCP_PORT: String(astmTcpPort),
        ORDERS_IN_HOST: '127.0.0.1',
        ORDERS_IN_PORT: String(ordersPort),
      },
    });
    browser = await chromium.launch({
      executablePath: exe,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  });
  afterAll(async () => {
    await browser?.close();
    await gw?.kill();
    await his.stop();
    tmp.cleanup();
  });

  const ours = (nodes: Array<Record<string, unknown>>) => nodes.filter((n) => String(n.type).startsWith('iomt-'));

  it('seeded the site flows into the data dir', () => {
    expect(gw.output()).not.toMatch(/only seeds/);
    expect(readFileSync(join(gw.dataDir, 'flows.json'), 'utf8')).toBe(shippedBefore);
  });

  it('opens each node, presses Done, deploys: flow unchanged, data still flows, checkout untouched', async () => {
    const page = await browser.newPage();
    const consoleErrors: string[] = [];
    page.on('pageerror', (e) => consoleErrors.push(String(e)));
    await page.goto(`http://127.0.0.1:${gw.httpPort}/editor/`);
    const user = page.locator('#node-dialog-login-fields input[type=text], #node-dialog-login-fields input[name=username]').first();
    await user.waitFor({ timeout: 20_000 });
    await user.fill('admin');
    await page.locator('#node-dialog-login-fields input[type=password]').fill(ADMIN_PASSWORD);
    await page.locator('.red-ui-login-form button, #node-dialog-login-submit, button.primary').first().click();
    await page.locator('.red-ui-palette-node[data-palette-type="iomt-astm-device"]').waitFor({ timeout: 30_000 });

    const shipped = JSON.parse(shippedBefore) as Array<Record<string, unknown>>;
    const ids = ours(shipped).map((n) => String(n.id));
    expect(new Set(ours(shipped).map((n) => n.type))).toEqual(new Set(['iomt-astm-device', 'iomt-hl7-in', 'iomt-hl7-out']));
    for (const id of ids) {
      await page.evaluate((nid) => (window as any).RED.editor.edit((window as any).RED.nodes.node(nid)), id);
      await page.locator('#node-dialog-ok').waitFor({ state: 'visible', timeout: 10_000 });
      // what the person sees: a template bool is shown as the template text, not as a ticked box
      const n = shipped.find((x) => x.id === id)!;
      if (typeof n.tls === 'string') {
        expect(await page.locator('#iomt-tmpl-tls').inputValue()).toBe(n.tls);
        expect(await page.locator('#iomt-bool-tls').isVisible()).toBe(false);
      }
      // async parts of the dialog: the ASTM profile list comes from the runtime ($.getJSON). Wait for it to be
      // filled (a fixed 300 ms could end before it on a loaded machine, and Done would then save an empty profile)
      if (await page.locator('#node-input-profile').count()) await page.locator('#node-input-profile option').first().waitFor({ state: 'attached', timeout: 15_000 });
      await page.locator('#node-dialog-ok').click();
      await page.locator('#node-dialog-ok').waitFor({ state: 'detached', timeout: 10_000 });
    }
    const state = await page.evaluate(() => {
      const RED = (window as any).RED;
      const changed: string[] = [];
      RED.nodes.eachNode((n: any) => n.changed && changed.push(n.id));
      return { dirty: RED.nodes.dirty(), changed, set: RED.nodes.createCompleteNodeSet() };
    });
    expect(state.changed).toEqual([]);
    expect(state.dirty).toBe(false);
    for (const orig of ours(shipped)) {
      const now = state.set.find((x: any) => x.id === orig.id);
      for (const [k, v] of Object.entries(orig)) if (k !== 'x' && k !== 'y') expect(now[k], `${String(orig.id)}.${k}`).toEqual(v);
    }

    // full deploy of exactly what the editor holds, through the editor's own session
    const deploy = await page.evaluate(
      (flows) =>
        new Promise<{ status: number; text: string }>((resolve) => {
          (window as any).$.ajax({ url: 'flows', type: 'POST', data: JSON.stringify({ flows }), contentType: 'application/json; charset=utf-8', headers: { 'Node-RED-Deployment-Type': 'full', 'Node-RED-API-Version': 'v2' } })
            .always((_a: unknown, _b: unknown, c: any) => {
              const xhr = c && typeof c.status === 'number' ? c : _a;
              resolve({ status: (xhr as any).status, text: String((xhr as any).responseText ?? '') });
            });
        }),
      state.set,
    );
    expect(deploy.status, deploy.text).toBeLessThan(300);
    await waitFor(async () => (await fetch(`http://127.0.0.1:${gw.httpPort}/readyz`)).ok, 20_000);
    const deployed = JSON.parse(readFileSync(join(gw.dataDir, 'flows.json'), 'utf8')) as Array<Record<string, unknown>>;
    for (const orig of ours(shipped)) {
      const now = deployed.find((x) => x.id === orig.id)!;
      for (const [k, v] of Object.entries(orig)) expect(now[k], `${String(orig.id)}.${k}`).toEqual(v);
    }
    expect(readFileSync(shippedFile, 'utf8')).toBe(shippedBefore); // Deploy wrote the data dir, not the checkout
    expect(consoleErrors).toEqual([]);

    // data still flows: an ASTM result over TCP reaches the HIS ...
    await waitFor(async () => {
      const s = net.connect(astmTcpPort, '127.0.0.1');
      const ok = await new Promise<boolean>((r) => s.once('connect', () => r(true)).once('error', () => r(false)));
      s.destroy();
      return ok;
    }, 20_000);
    const sock = net.connect(astmTcpPort, '127.0.0.1');
    await new Promise<void>((r) => sock.once('connect', () => r()));
    const peer = new AstmPeer(sock);
    const records = [
      'H|\\^&|||EDITOR-ANALYZER^1|||||LIS||P|LIS2-A2|20250301093015',
      'P|1|BN0099077',
      'O|1|EDITOR-DONE-1||^^^WBC|R||||||N||||WB',
      'R|1|^^^WBC|6.10|10*3/uL|4.00 to 10.00|N||F||TECH01||20250301092950|ED-1',
      'L|1|N',
    ];
    const answers = await peer.sendSession(records.map((r, i) => frame(i + 1, r)));
    expect(answers.every((a) => a === CODES.ACK)).toBe(true);
    sock.destroy();
    await waitFor(() => his.received.some((r) => r.text.includes('EDITOR-DONE-1')), 20_000);
    // ... and the orders listener still speaks plain MLLP (TLS not switched on)
    const client = new MllpClient({ host: '127.0.0.1', port: ordersPort, ackTimeoutMs: 10_000 });
    const orm = ['MSH|^~\\&|HIS|H|IOMT|LAB|20250301090000||ORM^O01|ED-ORM-1|P|2.5.1', 'PID|1||BN0099077^^^BV^MR', 'ORC|NW|ORD-ED-1', 'OBR|1|ORD-ED-1||WBC^WBC^L'].join('\r') + '\r';
    expect(parseAck(await client.send(Buffer.from(orm))).code).toBe('AA');
    await client.close();
    await page.screenshot({ path: `${ROOT}/.tmp/editor-done.png` });

    // a real edit is saved: template → checkbox ticked → a real boolean; back to a template → the string
    const openNode = async (nid: string) => {
      await page.evaluate((x) => (window as any).RED.editor.edit((window as any).RED.nodes.node(x)), nid);
      await page.locator('#node-dialog-ok').waitFor({ state: 'visible', timeout: 10_000 });
    };
    const done = async () => {
      await page.locator('#node-dialog-ok').click();
      await page.locator('#node-dialog-ok').waitFor({ state: 'detached', timeout: 10_000 });
    };
    const tlsOf = () => page.evaluate(() => (window as any).RED.nodes.node('hl7-out-his-lab').tls);
    await openNode('hl7-out-his-lab');
    await page.locator('#iomt-mode-tls').click();
    await page.locator('#iomt-bool-tls').check();
    await done();
    expect(await tlsOf()).toBe(true);
    expect(await page.evaluate(() => (window as any).RED.nodes.dirty())).toBe(true);
    await openNode('hl7-out-his-lab');
    expect(await page.locator('#iomt-bool-tls').isChecked()).toBe(true);
    await page.locator('#iomt-mode-tls').click();
    await page.locator('#iomt-tmpl-tls').fill('${HIS_TLS:-false}');
    await done();
    expect(await tlsOf()).toBe('${HIS_TLS:-false}');
  });

  it('a node that fails to start stays listed in error and /readyz is degraded, until it is fixed', async () => {
    const base = `http://127.0.0.1:${gw.httpPort}`;
    const tok = await fetch(`${base}/editor/auth/token`, { method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ client_id: 'node-red-admin', grant_type: 'password', scope: '*', username: 'admin', password: ADMIN_PASSWORD }) });
    expect(tok.status).toBe(200);
    const auth = { authorization: `Bearer ${(await tok.json()).access_token}`, 'content-type': 'application/json', 'Node-RED-Deployment-Type': 'full' };
    const good = JSON.parse(readFileSync(join(gw.dataDir, 'flows.json'), 'utf8')) as Array<Record<string, unknown>>;
    const broken = good.map((n) => (n.id === 'astm-tcp' ? { ...n, profile: 'no-such-profile' } : n));
    expect((await fetch(`${base}/editor/flows`, { method: 'POST', headers: auth, body: JSON.stringify(broken) })).status).toBe(204);
    await waitFor(async () => (await fetch(`${base}/readyz`)).status === 503, 20_000);
    const ready = await (await fetch(`${base}/readyz`)).json();
    expect(ready.status).toBe('degraded');
    expect(ready.failed).toEqual([expect.objectContaining({ kind: 'device', id: 'astm-tcp', state: 'error', reason: expect.stringMatching(/unknown profile 'no-such-profile'/) })]);
    const devices = (await gw.api('/devices')).devices as Array<{ deviceId: string; state: string; detail?: string }>;
    expect(devices.find((d) => d.deviceId === 'astm-tcp')).toMatchObject({ state: 'error', detail: expect.stringMatching(/unknown profile 'no-such-profile'/) });
    expect(devices.find((d) => d.deviceId === 'his-orders')?.state).not.toBe('error');
    // fixed by the next deploy
    expect((await fetch(`${base}/editor/flows`, { method: 'POST', headers: auth, body: JSON.stringify(good) })).status).toBe(204);
    await waitFor(async () => (await fetch(`${base}/readyz`)).ok, 20_000);
    expect(((await gw.api('/devices')).devices as Array<{ deviceId: string; state: string }>).find((d) => d.deviceId === 'astm-tcp')?.state).not.toBe('error');
  });
});
