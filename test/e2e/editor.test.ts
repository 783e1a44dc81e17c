import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { chromium, type Browser } from 'playwright-core';
import { tempDir, requirePeer } from '../helpers/env';
import { startGatewayProcess, ADMIN_PASSWORD, ROOT, type GatewayProcess } from '../helpers/gateway-process';

// A person logs in to the embedded Node-RED editor in a real browser (Debian chromium).
describe('Node-RED editor in a real browser', () => {
  let gw: GatewayProcess;
  let browser: Browser;
  const tmp = tempDir();

  beforeAll(async () => {
    const exe = requirePeer('chromium');
    gw = await startGatewayProcess({ dataDir: tmp.dir });
    browser = await chromium.launch({
      executablePath: exe,
      args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
    });
  });
  afterAll(async () => {
    await browser?.close();
    await gw?.kill();
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
    await page.screenshot({ path: `${ROOT}/.tmp/editor.png` });
  });
});
