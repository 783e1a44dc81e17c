import type { NodeRedAdminAuth } from '../accounts/node-red-auth';
import type { Server } from 'node:http';
import type { Express } from 'express';
import { mkdirSync } from 'node:fs';
import { componentLogger } from '../log/logger';
import type { FlowTracker } from '../pipeline/flow-tracker';
import { DRIVERS } from '../../../drivers';
import { OUTPUTS } from '../outputs';
import { editorFieldsScript } from './editor-fields';

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
}

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
    functionExternalModules: false,
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
  RED.hooks.add('preDeliver.iomt', (ev: { msg?: { _iomt?: { messageId?: number } } }) => {
    const id = ev.msg?._iomt?.messageId;
    if (id !== undefined) o.tracker.delivered(id);
  });
  RED.hooks.add('onComplete.iomt', (ev: { msg?: { _iomt?: { messageId?: number } }; error?: unknown }) => {
    const id = ev.msg?._iomt?.messageId;
    if (id !== undefined) o.tracker.completed(id, ev.error);
  });
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

/** Node-RED's own view of whether flows are running. */
export function flowsRunning(): boolean {
  try {
    return RED.runtime?.flows ? true : false;
  } catch {
    return false;
  }
}
