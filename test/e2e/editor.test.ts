import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type Browser } from 'playwright-core';
import { tempDir, requirePeer, waitFor } from '../helpers/env';
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
  });
});
