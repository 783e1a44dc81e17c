/**
 * The built gateway process beside an independent HIS (test/helpers/independent-his.ts), for one
 * describe block: started before its tests, killed and cleaned up after. Used by the end-to-end
 * fidelity and metrics tests.
 */
import { join } from 'node:path';
import { afterAll, beforeAll } from 'vitest';
import { requirePeer } from './env';
import { ROOT, startGatewayProcess, type GatewayProcess } from './gateway-process';
import type { IndependentHis } from './independent-his';

/** Registers beforeAll/afterAll: `start` gets the HIS port and returns the gateway it started. */
export function gatewayWithHis(tmp: { cleanup(): void }, his: IndependentHis, start: (hisPort: number) => Promise<GatewayProcess>): void {
  let gw: GatewayProcess | undefined;
  beforeAll(async () => {
    gw = await start(await his.start());
  });
  afterAll(async () => {
    await gw?.kill('SIGKILL');
    await his.stop();
    tmp.cleanup();
  });
}

/** The shipped HL7 relay flow (flows/hl7-relay.json) sending to the HIS on `hisPort`; `env` adds or overrides variables. */
export function startRelay(dir: string, hisPort: number, env: Record<string, string> = {}): Promise<GatewayProcess> {
  requirePeer('mllp_send');
  return startGatewayProcess({
    dataDir: join(dir, 'gw'),
    flows: join(ROOT, 'flows', 'hl7-relay.json'),
    env: { HIS_HOST: '127.0.0.1', HIS_PORT: String(hisPort), HIS_ACK_TIMEOUT_S: '5', HIS_RECONNECT_MAX_S: '1', ...env },
  });
}
