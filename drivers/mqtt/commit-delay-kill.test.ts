/**
 * Group commit delay (broker commitDelayMs, store hold) under kill -9: every publish the broker PUBACKed
 * (QoS 1) is in the store after the gateway process is killed mid-traffic, while publishes wait in holds
 * of up to 100 ms. A separate process (broker + real store on disk) is killed with SIGKILL; this process
 * counts the PUBACKs (mqtt.js publishAsync resolves on PUBACK) and then reads the store file.
 */
import { afterAll, describe, expect, it } from 'vitest';
import { spawn, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import mqtt, { type MqttClient } from 'mqtt';
import { GatewayStore } from '../../gateway/src/store/gateway-store';
import { tempDir } from '../../test/helpers/env';

const ROOT = resolve(__dirname, '../..');
const CHILD = `
const { GatewayStore } = require(${JSON.stringify(join(ROOT, 'gateway/src/store/gateway-store.ts'))});
const { MqttBroker } = require(${JSON.stringify(join(ROOT, 'drivers/mqtt/broker.ts'))});
const dataDir = process.argv[2];
const store = GatewayStore.open({ dataDir });
const broker = new MqttBroker({ deviceId: 'icu-mqtt', dataDir, host: '127.0.0.1', port: 0, allowAnonymous: true, maxPerAddress: 64, commitDelayMs: 100 }, { submit: (m) => store.submit(m), quarantine: (q) => store.quarantine(q) });
broker.start().then(({ port }) => process.stdout.write('PORT ' + port + '\\n'));
`;

describe('commit delay: no PUBACKed publish lost on kill -9', () => {
  const t = tempDir('iomt-commit-kill-');
  let child: ChildProcess | undefined;
  const clients: MqttClient[] = [];
  afterAll(async () => {
    child?.kill('SIGKILL');
    for (const c of clients) c.end(true);
    t.cleanup();
  });

  it('publishes of 12 devices, gateway killed after ~1.5 s: every acknowledged one is stored', async () => {
    const script = join(t.dir, 'child.cjs');
    writeFileSync(script, CHILD);
    child = spawn(process.execPath, ['--require', require.resolve('tsx/cjs'), script, t.dir], { stdio: ['ignore', 'pipe', 'inherit'] });
    const port = await new Promise<number>((res, rej) => {
      let out = '';
      child!.stdout!.on('data', (b: Buffer) => {
        out += b.toString();
        const m = /PORT (\d+)/.exec(out);
        if (m) res(Number(m[1]));
      });
      child!.once('exit', (code) => rej(new Error(`child exited ${code}`)));
      setTimeout(() => rej(new Error('child did not start')), 30_000);
    });
    const acked = new Set<number>();
    let stop = false;
    const run = async (k: number) => {
      const c = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: `bed-${k}`, reconnectPeriod: 0, protocolVersion: 4 });
      clients.push(c);
      c.on('error', () => undefined);
      for (let seq = 0; !stop; seq++) {
        const v = seq * 100 + k; // unique per publish
        const body = `{"time":"${new Date().toISOString()}","observations":[{"code":"MDC_PULS_RATE","value":${v},"unit":"/min"}]}`;
        try {
          await c.publishAsync(`iomt/bed-${k}/vitals`, body, { qos: 1 });
          acked.add(v); // a PUBACK is a PUBACK, whenever it came
        } catch {
          return;
        }
      }
    };
    const runs = Array.from({ length: 12 }, (_, k) => run(k));
    await new Promise((r) => setTimeout(r, 1500));
    child.kill('SIGKILL');
    await new Promise((r) => child!.once('exit', r));
    stop = true;
    await Promise.race([Promise.all(runs), new Promise((r) => setTimeout(r, 5000))]);
    const ackedNow = [...acked];
    expect(ackedNow.length).toBeGreaterThan(12); // traffic really ran through holds

    const store = GatewayStore.open({ dataDir: t.dir });
    try {
      const stored = new Set<number>();
      // newest first, a page at a time
      for (let page = store.searchMessages({ deviceId: 'icu-mqtt', limit: 500 }); page.length; page = store.searchMessages({ deviceId: 'icu-mqtt', limit: 500, beforeId: page[page.length - 1].id })) {
        for (const m of page) for (const o of store.getMessage(m.id)!.observations) if (o.value?.kind === 'quantity') stored.add(o.value.value);
      }
      expect(ackedNow.filter((v) => !stored.has(v))).toEqual([]);
    } finally {
      await store.close();
    }
  }, 60_000);
});
