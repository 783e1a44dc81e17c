/**
 * /api/v1/deploys over real HTTP with real accounts, sessions-or-Basic auth and the hash-chained
 * audit log in SQLite. The rollback's deploy goes through the same storage wrapper Node-RED uses
 * (historyStorageModule), here over a plain in-memory base instead of Node-RED (the full path with
 * the embedded Node-RED is in test/e2e/deploy-history.test.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createServer, type Server } from 'node:http';
import { join } from 'node:path';
import express from 'express';
import { tempDir } from '../../../test/helpers/env';
import { loadSettings } from '../config/settings';
import { openAccounts, type Accounts } from '../accounts/accounts';
import { Authenticator } from './auth';
import { auditDeploy, deploysRouter, type ApplyFlows } from './deploys';
import { DeployHistory, deployContext, historyStorageModule } from '../node-red/deploy-history';

const PW = { admin: 'admin password 1', operator: 'operator password', viewer: 'viewer password' } as const;
const USER = { admin: 'admin', operator: 'tech', viewer: 'guest' } as const;
type Who = keyof typeof PW;

describe('/api/v1/deploys: configuration history and rollback', () => {
  const t = tempDir();
  let accounts: Accounts;
  let server: Server;
  let base: string;
  let history: DeployHistory;
  let running: unknown[] = [];
  let refuse: string | undefined;
  let storage: any;

  beforeAll(async () => {
    const settings = loadSettings({ env: { IOMT_DATA_DIR: t.dir, IOMT_ADMIN_PASSWORD: PW.admin }, cwd: t.dir });
    accounts = openAccounts(settings, { pruneIntervalMs: 0 });
    await accounts.users.add(USER.operator, 'operator', PW.operator);
    await accounts.users.add(USER.viewer, 'viewer', PW.viewer);
    history = new DeployHistory(join(t.dir, 'flow-history'));
    storage = historyStorageModule(
      {
        getFlows: async () => running,
        saveFlows: async (f: unknown[]) => {
          if (refuse) throw new Error(refuse);
          running = f;
        },
      },
      history,
      auditDeploy,
    );
    // what embed.ts deployFlows does, minus Node-RED: save as the API user within the rollback context
    const apply: ApplyFlows = (flows, ctx) => deployContext.run({ kind: 'rollback', ...ctx }, () => storage.saveFlows(flows, { username: ctx.user }));
    const app = express();
    app.use('/api/v1/deploys', deploysRouter({ auth: new Authenticator({ users: accounts.users, audit: accounts.audit }), history, apply }));
    server = createServer(app);
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    const a = server.address();
    base = `http://127.0.0.1:${typeof a === 'object' && a ? a.port : 0}/api/v1/deploys`;

    // start, then two editor deploys by the admin from 10.1.2.3
    const v1 = [{ id: 't1', type: 'tab' }, { id: 'in1', type: 'iomt-hl7-in', port: '2575', wires: [['out1']] }, { id: 'out1', type: 'iomt-hl7-out', host: 'his' }];
    running = v1;
    await storage.getFlows();
    // v2: the destination deleted (and its wire); v3: it is back, with another listener port
    await deployContext.run({ source: '10.1.2.3' }, () => storage.saveFlows([v1[0], { ...v1[1], wires: [[]] }], { username: 'admin' }));
    await deployContext.run({ source: '10.1.2.3' }, () => storage.saveFlows([v1[0], { ...v1[1], port: '3000' }, v1[2]], { username: 'admin' }));
  });
  afterAll(async () => {
    await new Promise<void>((r) => server.close(() => r()));
    accounts.close();
    t.cleanup();
  });

  const call = (who: Who | 'nobody', method: string, path: string) =>
    fetch(base + path, { method, headers: who === 'nobody' ? {} : { authorization: `Basic ${Buffer.from(`${USER[who]}:${PW[who]}`).toString('base64')}` } }).then(async (r) => ({ status: r.status, body: (await r.json()) as any }));

  it('lists versions newest first with time, user, source and a summary by node id and type', async () => {
    const r = await call('admin', 'GET', '/');
    expect(r.status).toBe(200);
    expect(r.body.current).toBe(3);
    expect(r.body.keep).toBe(50);
    expect(r.body.versions.map((v: any) => [v.id, v.kind, v.user, v.source])).toEqual([
      [3, 'deploy', 'admin', '10.1.2.3'],
      [2, 'deploy', 'admin', '10.1.2.3'],
      [1, 'start', undefined, 'start'],
    ]);
    expect(r.body.versions[1].summary.removed).toEqual([{ id: 'out1', type: 'iomt-hl7-out' }]);
    expect(r.body.versions[1].summary.changed).toEqual([{ id: 'in1', type: 'iomt-hl7-in', fields: ['wires'] }]);
    expect(r.body.versions[0].at).toMatch(/^\d{4}-\d\d-\d\dT.*Z$/);
    expect(JSON.stringify(r.body)).not.toContain('flows"'); // the list carries no flows
    const one = await call('admin', 'GET', '/2');
    expect(one.body.version.id).toBe(2);
  });

  it('admins only; JSON errors for bad and unknown ids', async () => {
    for (const who of ['operator', 'viewer'] as const) {
      expect((await call(who, 'GET', '/')).status).toBe(403);
      const denied = await call(who, 'POST', '/1/rollback');
      expect(denied).toEqual({ status: 403, body: { error: expect.any(String), code: 'GW_API_FORBIDDEN' } });
    }
    expect((await call('nobody', 'GET', '/')).status).toBe(401);
    expect((await call('admin', 'GET', '/abc')).body.code).toBe('GW_API_BAD_REQUEST');
    expect((await call('admin', 'POST', '/0/rollback')).status).toBe(400);
    expect(await call('admin', 'POST', '/99/rollback')).toEqual({ status: 404, body: { error: 'no kept configuration version 99', code: 'GW_API_NOT_FOUND' } });
    expect((await call('admin', 'GET', '/?x=1')).status).toBe(400);
  });

  it('rolls back: the old flows run again, kept as a new version, audited as config.change; deploys audited as deploy', async () => {
    const r = await call('admin', 'POST', '/1/rollback');
    expect(r.status).toBe(200);
    expect(r.body).toMatchObject({ rolledBackTo: 1, version: { id: 4, kind: 'rollback', rollbackOf: 1, user: 'admin', source: '127.0.0.1' } });
    expect(running).toEqual(history.get(1)!.flows);
    expect(r.body.version.summary.changed).toEqual([{ id: 'in1', type: 'iomt-hl7-in', fields: ['port'] }]);

    const rows = accounts.audit.list(50).filter((a) => a.action === 'deploy' || a.action === 'config.change');
    const mine = rows.map((a) => [a.action, a.user, a.outcome, a.target, a.source]);
    expect(mine).toEqual(
      expect.arrayContaining([
        ['deploy', 'admin', 'ok', 'flows#2', '10.1.2.3'],
        ['deploy', 'admin', 'ok', 'flows#3', '10.1.2.3'],
        ['config.change', 'admin', 'ok', 'flows#4', '127.0.0.1'],
        ['config.change', 'tech', 'denied', 'flows#1', '127.0.0.1'],
        ['config.change', 'guest', 'denied', 'flows#1', '127.0.0.1'],
      ]),
    );
    const rb = rows.find((a) => a.target === 'flows#4')!;
    expect(rb.detail).toMatchObject({ version: 4, kind: 'rollback', rollbackOf: 1, changed: 1, added: 0, removed: 0 });
    expect(accounts.audit.verify().ok).toBe(true);
  });

  it('a rollback Node-RED refuses answers 409, keeps no version and is audited as failed', async () => {
    refuse = 'node type missing';
    try {
      const before = history.list().length;
      const r = await call('admin', 'POST', '/2/rollback');
      expect(r).toEqual({ status: 409, body: { error: 'the rollback to version 2 was not deployed: node type missing', code: 'GW_API_CONFLICT' } });
      expect(history.list().length).toBe(before);
      const last = accounts.audit.list(5).find((a) => a.action === 'config.change')!;
      expect(last).toMatchObject({ outcome: 'failed', target: 'flows#2', user: 'admin' });
    } finally {
      refuse = undefined;
    }
  });
});
