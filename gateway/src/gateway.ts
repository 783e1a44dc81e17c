import { createServer as createHttpServer, type Server } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { existsSync, mkdirSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import express from 'express';
import type { GatewaySettings } from './config/settings';
import { dataDirSecret } from './config/admin-credentials';
import { componentLogger } from './log/logger';
import { GatewayStore } from './store/gateway-store';
import Database from 'better-sqlite3';
import { OrderCache } from './orders/order-cache';
import { GatewayRuntime, setRuntime } from './runtime';
import { Authenticator } from './http/auth';
import { openAccounts } from './accounts/accounts';
import { nodeRedAdminAuth } from './accounts/node-red-auth';
import { apiRouter } from './http/api';
import { statusRouter } from './http/status/router';
import { registry } from './metrics/registry';
import { revokeEditorTokens, startNodeRed } from './node-red/embed';
import { resolveSiteFlows } from './node-red/flow-files';
import { planHttpTls } from './tls/http-tls';
import { securityHeaders } from './http/security-headers';
import { guardHttpServer, httpGuardEnv } from './http/server-guard';
import { DeployHistory } from './node-red/deploy-history';
import { auditDeploy, deploysRouter } from './http/deploys';
import { undeliveredSink } from './pipeline/undelivered';
import { pruneDicomFiles } from './outputs/dicom-store/file-retention';

export interface RunningGateway {
  port: number;
  url: string;
  editorUrl: string;
  runtime: GatewayRuntime;
  flowFile: string;
  adminPasswordFile?: string;
  close(): Promise<void>;
}

/**
 * Composition root: settings → store → runtime → HTTP (health, metrics, API, editor) → Node-RED flows.
 */
export async function startGateway(settings: GatewaySettings, opts: { flowsFile?: string; defaultFlow?: string; print?: (s: string) => void } = {}): Promise<RunningGateway> {
  const log = componentLogger('gateway');
  const print = opts.print ?? ((s: string) => process.stdout.write(s + '\n'));
  mkdirSync(settings.dataDir, { recursive: true, mode: 0o700 });

  // users + audit log (migration 3); the single admin of older versions becomes the first admin user
  const accounts = openAccounts(settings);
  const admin = accounts.admin;
  if (admin.generatedPassword) {
    // Shown only on a terminal (issue 10 §5); under systemd/docker stdout is the log stream (journald,
    // docker logs): there only the 0600 file is named, never the password.
    const tty = opts.print ? false : process.stdout.isTTY === true;
    print(tty
      ? `\n  First start: generated admin password for user '${admin.user}': ${admin.generatedPassword}`
      : `\n  First start: generated admin password for user '${admin.user}' is in ${admin.passwordFile} (mode 0600, readable by the gateway's user only).`);
    if (tty) print(`  It is also in ${admin.passwordFile} (mode 0600). Only its bcrypt hash is kept by the gateway.`);
    print(`  Set IOMT_ADMIN_PASSWORD or IOMT_ADMIN_PASSWORD_HASH to choose your own.\n`);
  }

  // Site flows live in the data dir, seeded from the shipped flow on first start; Deploy never writes the checkout.
  const siteFlows = resolveSiteFlows(settings.dataDir, { flowsArg: opts.flowsFile, defaultFlow: opts.defaultFlow });
  const flowFile = siteFlows.flowFile;
  if (siteFlows.seededFrom) log.info({ from: siteFlows.seededFrom, flowFile }, 'site flows seeded from the shipped flow');
  if (siteFlows.note) print(`  ${siteFlows.note}`);

  const store = GatewayStore.open({ dataDir: settings.dataDir, maxDbBytes: settings.store.maxDbBytes, ...(settings.store.deferredHoldMs !== undefined ? { deferredHoldMs: settings.store.deferredHoldMs } : {}) });
  const runtime = new GatewayRuntime(settings, store);
  // The order cache writes rarely (orders from the HIS) on its own connection to the same file.
  const ordersDb = new Database(join(settings.dataDir, 'gateway.db'));
  ordersDb.pragma('journal_mode = WAL');
  ordersDb.pragma('synchronous = FULL');
  ordersDb.pragma('busy_timeout = 10000');
  runtime.orders = new OrderCache(ordersDb, { expiryDays: settings.orders.expiryDays });
  setRuntime(runtime);

  const app = express();
  app.disable('x-powered-by');
  app.use(securityHeaders({ editorRoot: '/editor', editorAllowEval: settings.editor.allowHostNodes === true })); // CSP, frame protection, nosniff, no editor CORS (issue 10 §6)
  let server: Server;
  // HTTPS by default beyond loopback, with the site's or a generated certificate (tls/http-tls.ts)
  const tlsPlan = planHttpTls(settings);
  if (tlsPlan.options) {
    server = createHttpsServer(tlsPlan.options, app);
    const fp = { source: tlsPlan.source, certFile: tlsPlan.certFile, fingerprint256: tlsPlan.fingerprint256, mutualTls: tlsPlan.mutual };
    log.info(fp, tlsPlan.generated ? 'HTTPS: self-signed certificate generated' : 'HTTPS certificate');
    if (tlsPlan.source === 'generated' && process.stdout.isTTY) print(`  HTTPS certificate (self-signed) SHA-256 fingerprint: ${tlsPlan.fingerprint256}`);
  } else {
    server = createHttpServer(app);
    if (tlsPlan.plainReason === 'insecure') log.warn({ host: settings.http.host }, 'plain HTTP beyond loopback (IOMT_HTTP_INSECURE=true): passwords and patient data cross the network unencrypted');
  }
  guardHttpServer(server, { ...httpGuardEnv(), log: componentLogger('http') }); // per-address limit, head timeout, idle-longest eviction, counted refusals and TLS failures (issue 10 §2)

  let ready = false;
  const auth = new Authenticator({ users: accounts.users, audit: accounts.audit });
  const editorAuth = nodeRedAdminAuth(accounts.users, { throttle: auth.throttle }); // one throttle for API and editor logins
  server.once('close', () => accounts.close());
  // issue 10: event-loop delay (a long synchronous task shows here first): p50/p99/max in ms since the
  // last reset (at most 60 s ago); the histogram samples every 10 ms
  const loopDelay = monitorEventLoopDelay({ resolution: 10 });
  loopDelay.enable();
  const loopDelayReset = setInterval(() => loopDelay.reset(), 60_000);
  loopDelayReset.unref();
  server.once('close', () => {
    clearInterval(loopDelayReset);
    loopDelay.disable();
  });
  app.get('/healthz', (_req, res) => {
    const ms = (ns: number) => Math.round(ns / 1e4) / 100;
    res.json({ status: 'ok', eventLoopDelayMs: { p50: ms(loopDelay.percentile(50)), p99: ms(loopDelay.percentile(99)), max: ms(loopDelay.max), windowSeconds: 60 } });
  });
  app.get('/readyz', (_req, res) => {
    if (!ready) return res.status(503).json({ status: 'starting' });
    try {
      store.fileBytes();
    } catch (e) {
      return res.status(503).json({ status: 'store unavailable', error: String((e as Error).message) });
    }
    const statuses = runtime.deviceStatuses();
    const devices = statuses.length;
    const destinations = runtime.destinationNames().length;
    // a listener still binding (right after start or a deploy) is not ready yet: senders would be refused
    const starting = statuses.filter((d) => d.state === 'starting').map((d) => d.deviceId);
    if (starting.length) return res.status(503).json({ status: 'starting', starting, devices, destinations });
    // A node that failed to start makes the gateway degraded (503), naming what is broken (no PHI).
    const failed = runtime.nodeFailures().map((f) => ({ kind: f.kind, id: f.id, driver: f.driver, nodeId: f.nodeId, state: 'error', reason: f.reason, since: f.at }));
    if (failed.length) return res.status(503).json({ status: 'degraded', failed, devices, destinations });
    res.json({ status: 'ready', devices, destinations });
  });
  const metricsHandler = (_req: express.Request, res: express.Response) => {
    res.type('text/plain; version=0.0.4').send(registry.render());
  };
  if (settings.http.metricsAuth) app.get('/metrics', auth.middleware(), metricsHandler);
  else app.get('/metrics', metricsHandler);
  // configuration history (issue 9 §2): every deploy kept under <dataDir>/flow-history, rollback by admins
  const deployHistory = new DeployHistory(join(settings.dataDir, 'flow-history'));
  app.use('/api/v1/deploys', deploysRouter({ auth, history: deployHistory }));
  app.use('/api/v1', apiRouter(runtime, { auth, users: accounts.users, audit: accounts.audit, messageIdByUid: accounts.messageIdByUid }));
  app.use('/status', statusRouter(runtime, { auth: auth.middleware() })); // status page (issue 9 §1): its data behind the API's login
  app.get('/', (_req, res) => res.redirect('/status/'));

  await new Promise<void>((resolveListen, reject) => {
    server.once('error', reject);
    server.listen(settings.http.port, settings.http.host, () => {
      server.off('error', reject);
      resolveListen();
    });
  });
  const addr = server.address();
  const port = typeof addr === 'object' && addr ? addr.port : settings.http.port;

  const nodeRed = await startNodeRed({
    server,
    app,
    userDir: join(settings.dataDir, 'node-red'),
    flowFile,
    credentialSecret: dataDirSecret(settings.dataDir, '.node-red-secret'),
    admin: { user: admin.user, passwordHash: admin.passwordHash },
    adminAuth: editorAuth,
    loginGate: editorAuth.loginGate,
    allowHostNodes: settings.editor.allowHostNodes === true,
    editorEnabled: settings.editor.enabled,
    tracker: runtime.tracker,
    logLevel: settings.logLevel,
    history: deployHistory,
    onDeployed: auditDeploy,
    undelivered: undeliveredSink(ordersDb, store), // committed results no destination took: flagged no-destination and counted
  });
  // a password/role change or removal also ends the user's editor tokens and open editor connections (issue 10 §5)
  accounts.users.onChange((name) => {
    revokeEditorTokens((tokenUser) => editorAuth.userOf(tokenUser) === name).catch((e: unknown) => log.warn({ err: String(e) }, 'editor token revocation failed'));
  });
  ready = true;

  const retentionTimer = settings.retention.intervalMinutes > 0
    ? setInterval(() => {
        try {
          const n = runtime.orders?.expire() ?? 0;
          if (n) log.info({ expired: n }, 'expired cached orders');
        } catch (e) {
          log.error({ err: String(e) }, 'order expiry failed');
        }
        store
          .applyRetention(settings.retention)
          // issue 11 §2: a stored DICOM file goes only when retention deleted its message (dicom-store/file-retention.ts)
          .then(async (r: unknown) => ({ ...(r as object), dicomFiles: await pruneDicomFiles(settings.dataDir).catch((e: unknown) => ({ error: String(e) })) }))
          .then((r: unknown) => log.info({ ...(r as object) }, 'retention applied'))
          .catch((e: unknown) => log.error({ err: String(e) }, 'retention failed'));
      }, settings.retention.intervalMinutes * 60_000)
    : undefined;
  retentionTimer?.unref();

  const scheme = tlsPlan.options ? 'https' : 'http';
  const host = settings.http.host === '0.0.0.0' || settings.http.host === '::' ? 'localhost' : settings.http.host;
  const url = `${scheme}://${host}:${port}`;
  log.info({ port, flowFile, dataDir: settings.dataDir }, 'gateway started');

  let closing: Promise<void> | undefined;
  return {
    port,
    url,
    editorUrl: `${url}${nodeRed.editorPath}`,
    runtime,
    flowFile,
    adminPasswordFile: admin.passwordFile ?? (existsSync(join(settings.dataDir, 'admin-password.txt')) ? join(settings.dataDir, 'admin-password.txt') : undefined),
    close: () => {
      closing ??= (async () => {
        ready = false;
        if (retentionTimer) clearInterval(retentionTimer);
        await nodeRed.stop().catch((e) => log.warn({ err: String(e) }, 'node-red stop failed'));
        await runtime.stopAll();
        server.closeAllConnections?.();
        await new Promise<void>((r) => server.close(() => r()));
        await store.close();
        ordersDb.close();
        setRuntime(undefined);
        log.info('gateway stopped');
      })();
      return closing;
    },
  };
}
