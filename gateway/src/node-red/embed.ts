import type { NodeRedAdminAuth } from '../accounts/node-red-auth';
import type { Server } from 'node:http';
import type { Express, RequestHandler } from 'express';
import { mkdirSync } from 'node:fs';
import { componentLogger } from '../log/logger';
import type { FlowTracker } from '../pipeline/flow-tracker';
import { DRIVERS } from '../../../drivers';
import { OUTPUTS } from '../outputs';
import { editorFieldsScript } from './editor-fields';
import { deployContext, deploySourceMiddleware, historyStorageModule, type DeployHistory, type FlowVersion, type DeployContext } from './deploy-history';
import type { UndeliveredSink } from '../pipeline/flow-tracker';

// node-red ships no type declarations
// eslint-disable-next-line @typescript-eslint/no-require-imports
const RED: any = require('node-red');

/** Directories holding our thin node wrappers (compiled .js beside their .html), from the registration arrays. */
export function nodeDirs(): string[] {
  return [...DRIVERS.map((d) => d.nodeRedDir), ...OUTPUTS.map((o) => o.nodeRedDir)];
}

export interface NodeRedOptions {
  server: Server;
  app: Express;
  userDir: string;
  flowFile: string;
  credentialSecret: string;
  admin: { user: string; passwordHash: string };
  /** Node-RED adminAuth from gateway/src/accounts/node-red-auth.ts (admins only); default: the single admin. */
  adminAuth?: NodeRedAdminAuth;
  editorEnabled: boolean;
  tracker: FlowTracker;
  logLevel: string;
  /** Keep every deploy as a version (deploy-history.ts); `onDeployed` audits it. */
  history?: DeployHistory;
  onDeployed?: (version: FlowVersion, ctx: DeployContext) => void;
  /** Flag and count finished messages that no destination node took (pipeline/undelivered.ts). */
  undelivered?: UndeliveredSink;
  /** Node-RED core nodes that run code or touch the host (HOST_NODE_FILES) are loaded only when true (IOMT_EDITOR_ALLOW_HOST_NODES). */
  allowHostNodes?: boolean;
  /** Mounted on POST <httpAdminRoot>/auth/token in front of Node-RED's login (accounts/node-red-auth.ts: throttle, token tags). */
  loginGate?: RequestHandler;
}

/**
 * Node-RED core node files not loaded by default (issue 10 §4: the editor is not a shell), by
 * Node-RED's `nodesExcludes` setting (file names in @node-red/nodes/core): exec (runs commands),
 * function (its vm is no sandbox: `node.constructor.constructor('return process')()` reaches the
 * host process), file / file in, watch (host files), tcp in/out/request, udp in/out, http request,
 * websocket and mqtt (arbitrary network peers, internal hosts included, from the gateway's address).
 * IOMT_EDITOR_ALLOW_HOST_NODES=true loads them (and
 * lets function nodes load modules: `functionExternalModules`).
 */
export const HOST_NODE_FILES = ['90-exec.js', '10-function.js', '10-file.js', '23-watch.js', '31-tcpin.js', '32-udp.js', '21-httprequest.js', '22-websocket.js', '10-mqtt.js'];

const NR_LEVELS: Record<number, string> = { 10: 'fatal', 20: 'error', 30: 'warn', 40: 'info', 50: 'debug', 60: 'trace', 98: 'info', 99: 'info' };

/**
 * Embed the Node-RED runtime and editor in the gateway's HTTP server (architecture §1: one port).
 * The editor sits under /editor and requires the admin login. Installing palette modules from the
 * network is off: a hospital box has no internet and must not change code at run time.
 */
export async function startNodeRed(o: NodeRedOptions): Promise<{ stop(): Promise<void>; editorPath: string }> {
  const log = componentLogger('node-red');
  mkdirSync(o.userDir, { recursive: true });
  const settings = {
    userDir: o.userDir,
    flowFile: o.flowFile,
    flowFilePretty: true,
    credentialSecret: o.credentialSecret,
    httpAdminRoot: '/editor',
    httpNodeRoot: false,
    disableEditor: !o.editorEnabled,
    // the editor takes admins only (issue 9 §3): the accounts module checks every login and re-checks the role
    adminAuth: o.adminAuth ?? { type: 'credentials', users: [{ username: o.admin.user, password: o.admin.passwordHash, permissions: '*' }] },
    nodesDir: nodeDirs(),
    externalModules: { autoInstall: false, palette: { allowInstall: false, allowUpload: false }, modules: { allowInstall: false } },
    editorTheme: { projects: { enabled: false }, tours: false, page: { title: 'IoMT gateway' }, header: { title: 'IoMT gateway' } },
    diagnostics: { enabled: false },
    telemetry: { enabled: false },
    runtimeState: { enabled: false },
    // configuration history: every saved deploy kept as a version, with the user and client address
    ...(o.history
      ? {
          // eslint-disable-next-line @typescript-eslint/no-require-imports
          storageModule: historyStorageModule(require('@node-red/runtime/lib/storage/localfilesystem'), o.history, (v, ctx) => o.onDeployed?.(v, ctx)),
          httpAdminMiddleware: deploySourceMiddleware,
        }
      : {}),
    functionExternalModules: !!o.allowHostNodes,
    nodesExcludes: o.allowHostNodes ? [] : HOST_NODE_FILES,
    logging: {
      iomt: {
        level: o.logLevel === 'trace' ? 'trace' : o.logLevel === 'debug' ? 'debug' : 'info',
        metrics: false,
        audit: false,
        handler: () => (m: { level: number; msg: unknown; type?: string; id?: string }) => {
          const lvl = NR_LEVELS[m.level] ?? 'info';
          const text = typeof m.msg === 'string' ? m.msg : m.msg instanceof Error ? m.msg.message : JSON.stringify(m.msg);
          (log as any)[lvl]({ nodeType: m.type, nodeId: m.id }, text);
        },
      },
    },
  };
  RED.init(o.server, settings);
  // The field specs and the editor's field helpers, loaded by each IoMT node's .html (no PHI, no secrets).
  const fieldsJs = editorFieldsScript();
  RED.httpAdmin.get('/iomt/fields.js', (_req: unknown, res: { type(t: string): { send(b: string): void } }) => {
    res.type('application/javascript').send(fieldsJs);
  });
  // Message tracking for the guarantee across the in-memory flow (architecture §3).
  if (o.undelivered) o.tracker.watchUndelivered(OUTPUTS.flatMap((x) => x.nodeTypes), o.undelivered);
  type HookNode = { type?: string; _inputCallback?: unknown; _inputCallbacks?: unknown };
  RED.hooks.add('preDeliver.iomt', (ev: { msg?: { _iomt?: { messageId?: number } }; destination?: { node?: HookNode } }) => {
    const id = ev.msg?._iomt?.messageId;
    if (id === undefined) return;
    const node = ev.destination?.node;
    // Node-RED 4 Node._emitInput: a node without an input handler (ours when it failed to start) never completes a message
    const accepts = !node || node._inputCallback != null || node._inputCallbacks != null;
    o.tracker.delivered(id, node?.type, accepts);
  });
  RED.hooks.add('onComplete.iomt', (ev: { msg?: { _iomt?: { messageId?: number } }; error?: unknown; node?: { node?: HookNode } }) => {
    const id = ev.msg?._iomt?.messageId;
    if (id !== undefined) o.tracker.completed(id, ev.error, ev.node?.node?.type);
  });
  if (o.loginGate) o.app.post(`${settings.httpAdminRoot}/auth/token`, o.loginGate);
  // A deploy naming a node type that is not loaded (an excluded host node) is refused (issue 10 §4)
  // instead of Node-RED stopping every flow while "waiting for missing types".
  const refuseMissing = refuseMissingTypes((t) => !!RED.nodes.getType(t));
  o.app.post(`${settings.httpAdminRoot}/flows`, refuseMissing);
  o.app.post(`${settings.httpAdminRoot}/flow`, refuseMissing);
  o.app.put(`${settings.httpAdminRoot}/flow/:id`, refuseMissing);
  o.app.use(settings.httpAdminRoot, RED.httpAdmin);
  const started = new Promise<void>((resolve) => RED.events.once('flows:started', () => resolve()));
  await RED.start();
  await started;
  return {
    editorPath: settings.httpAdminRoot + '/',
    stop: async () => {
      RED.hooks.remove('*.iomt');
      await RED.stop();
    },
  };
}

/**
 * Deploy `flows` (a kept version) as a full deploy through Node-RED's runtime API, as `user`: the
 * storage module keeps it as a new version of kind 'rollback' and `onDeployed` audits it.
 * Rejects when Node-RED is not running or refuses the flows.
 */
export async function deployFlows(flows: unknown[], ctx: { user: string; source: string; rollbackOf?: number }): Promise<void> {
  if (!(await RED.runtime?.isStarted?.())) throw new Error('Node-RED is not running');
  const user = { username: ctx.user, permissions: '*' };
  await deployContext.run({ kind: ctx.rollbackOf !== undefined ? 'rollback' : 'deploy', source: ctx.source, rollbackOf: ctx.rollbackOf, user: ctx.user }, () =>
    RED.runtime.flows.setFlows({ flows: { flows }, deploymentType: 'full', user }),
  );
}

/**
 * End the editor tokens whose user name matches (a password change, a role change or a removal:
 * issue 10 §5) in Node-RED's token store, as if they had expired: Node-RED's expiry path
 * (@node-red/editor-api lib/auth/tokens.js expireSessions) deletes them and closes the editor's
 * open comms websockets for them (comms.js handleSessionExpiry: `{auth:"fail"}`). HTTP requests
 * with such a token are refused anyway (accounts/node-red-auth.ts `users`); this also stops the
 * live status/debug stream of an editor that stays open. Resolves to the number ended.
 */
export async function revokeEditorTokens(match: (tokenUser: string) => boolean): Promise<number> {
  /* eslint-disable @typescript-eslint/no-require-imports */
  const storage = require('@node-red/runtime/lib/storage') as { getSessions(): Promise<Record<string, { user?: unknown }> | null> };
  const tokens = require('@node-red/editor-api/lib/auth/tokens') as { get(token: string): Promise<{ expires?: number } | null | undefined> };
  /* eslint-enable @typescript-eslint/no-require-imports */
  const sessions = (await storage.getSessions()) ?? {};
  let n = 0;
  for (const [token, s] of Object.entries(sessions)) {
    if (typeof s?.user !== 'string' || !match(s.user)) continue;
    const live = await tokens.get(token);
    if (!live) continue;
    live.expires = 0;
    await tokens.get(token); // sees it expired: deletes, saves, tells the comms connections
    n++;
  }
  return n;
}

const STRUCTURAL_TYPES = new Set(['tab', 'subflow', 'group']);

/**
 * The node types in a deploy body (POST /flows: an array or `{ flows, rev }`; POST/PUT /flow:
 * `{ nodes, configs, subflows }`) that Node-RED does not know, by its rule
 * (@node-red/runtime lib/flows/util.js parseConfig: tab, subflow and group are structure;
 * `subflow:<id>` instances are left to Node-RED).
 */
export function unknownNodeTypes(body: unknown, known: (type: string) => boolean): string[] {
  const b = body as { flows?: unknown; nodes?: unknown; configs?: unknown; subflows?: unknown } | undefined;
  const lists = Array.isArray(body) ? [body] : b && typeof b === 'object' ? [b.flows, b.nodes, b.configs, b.subflows] : [];
  const missing = new Set<string>();
  for (const list of lists) {
    if (!Array.isArray(list)) continue;
    for (const n of list as Array<{ type?: unknown }>) {
      const t = n && typeof n === 'object' ? n.type : undefined;
      if (typeof t !== 'string' || STRUCTURAL_TYPES.has(t) || t.startsWith('subflow:')) continue;
      if (!known(t)) missing.add(t);
    }
  }
  return [...missing].sort();
}

/** Express handlers: parse the JSON body (Node-RED's limit, 5 MB) and answer 400 when it names unknown node types. */
function refuseMissingTypes(known: (type: string) => boolean): RequestHandler[] {
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const json = (require('express') as typeof import('express')).json({ limit: '5mb' });
  return [
    json,
    (req, res, next) => {
      const missing = unknownNodeTypes(req.body, known);
      if (!missing.length) return next();
      res.status(400).json({
        code: 'unknown_node_types',
        message: `node types not available in this gateway: ${missing.join(', ')} (exec, function, file, watch, tcp and udp nodes need IOMT_EDITOR_ALLOW_HOST_NODES=true)`,
      });
    },
  ];
}

/** Node-RED's own view of whether flows are running. */
export function flowsRunning(): boolean {
  try {
    return RED.runtime?.flows ? true : false;
  } catch {
    return false;
  }
}
