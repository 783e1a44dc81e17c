/**
 * Configuration history (issue 9 §2: "each deploy is kept as a version with time, user and a
 * summary of changes; roll back from the API or the page").
 *
 * Every successful save of the flows (an editor Deploy, a rollback, or the flows found at start when
 * they differ from the last kept version) is kept as one JSON file
 * `<dataDir>/flow-history/<id>.json` (mode 0600, written to a temporary file and renamed, so a crash
 * never leaves half a version): `{ version: FlowVersion, flows: [...] }`. Only the last `keep`
 * (default 50) versions stay. The flows are node configuration (ports, hosts, profiles), never
 * results; the summary names nodes by id and type only. Credentials (flows_cred.json) are not kept:
 * a rollback keeps the credentials of nodes that still exist.
 *
 * Deploys are caught in Node-RED's storage API: `historyStorageModule` wraps localfilesystem's
 * `saveFlows(flows, user)` (Node-RED passes the editor user who deployed, `req.user`), and
 * `deployContext` (AsyncLocalStorage) carries the client address of the admin request (set by
 * `httpAdminMiddleware`) and, for a rollback, which version it restores.
 */
import { AsyncLocalStorage } from 'node:async_hooks';
import { mkdirSync, readdirSync, readFileSync, renameSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { isDeepStrictEqual } from 'node:util';
import { componentLogger } from '../log/logger';

/** A node named by id and type only (no names, no field values: they may say more than needed). */
export interface NodeRef {
  id: string;
  type: string;
}

/** What a deploy changed against the version before it. Lists are capped at SUMMARY_LIST_CAP; counts are exact. */
export interface ChangeSummary {
  added: NodeRef[];
  removed: NodeRef[];
  /** `fields`: the names of the properties that differ (never their values); position-only moves are not changes. */
  changed: Array<NodeRef & { fields: string[] }>;
  counts: { added: number; removed: number; changed: number };
}

export type VersionKind = 'start' | 'deploy' | 'rollback';

export interface FlowVersion {
  /** Increasing from 1, never reused (kept across pruning). */
  id: number;
  /** ISO 8601 UTC time of the save. */
  at: string;
  kind: VersionKind;
  /** Editor/API user who deployed; absent for 'start' (found on disk at start). */
  user?: string;
  /** Client address of the request, 'start' for the flows found at start. */
  source?: string;
  /** For kind 'rollback': the version restored. */
  rollbackOf?: number;
  /** Nodes (and tabs, config nodes) in the flows. */
  nodeCount: number;
  summary: ChangeSummary;
}

export const SUMMARY_LIST_CAP = 200;
export const DEFAULT_KEEP = 50;
/** Properties that only place a node on the canvas: a move alone is not a configuration change. */
const LAYOUT_KEYS = new Set(['x', 'y', 'w', 'h']);

type FlowNode = { id?: unknown; type?: unknown; [k: string]: unknown };

function nodesById(flows: unknown[]): Map<string, FlowNode> {
  const m = new Map<string, FlowNode>();
  for (const n of flows) {
    if (n && typeof n === 'object' && typeof (n as FlowNode).id === 'string') m.set((n as FlowNode).id as string, n as FlowNode);
  }
  return m;
}

const ref = (n: FlowNode): NodeRef => ({ id: String(n.id), type: typeof n.type === 'string' ? n.type : '?' });

/** The change summary from `before` to `after` (Node-RED flow arrays). Pure; order of nodes does not matter. */
export function summarizeChanges(before: unknown[], after: unknown[]): ChangeSummary {
  const a = nodesById(before);
  const b = nodesById(after);
  const added: NodeRef[] = [];
  const removed: NodeRef[] = [];
  const changed: Array<NodeRef & { fields: string[] }> = [];
  for (const [id, n] of b) if (!a.has(id)) added.push(ref(n));
  for (const [id, n] of a) if (!b.has(id)) removed.push(ref(n));
  for (const [id, nb] of b) {
    const na = a.get(id);
    if (!na) continue;
    const fields = [...new Set([...Object.keys(na), ...Object.keys(nb)])]
      .filter((k) => !LAYOUT_KEYS.has(k) && !isDeepStrictEqual(na[k], nb[k]))
      .sort();
    if (fields.length) changed.push({ ...ref(nb), fields });
  }
  return {
    added: added.slice(0, SUMMARY_LIST_CAP),
    removed: removed.slice(0, SUMMARY_LIST_CAP),
    changed: changed.slice(0, SUMMARY_LIST_CAP),
    counts: { added: added.length, removed: removed.length, changed: changed.length },
  };
}

const FILE_RE = /^(\d{1,12})\.json$/;

/** The kept versions of the flows in one folder (see the module comment). Synchronous: versions are few and small. */
export class DeployHistory {
  private readonly log = componentLogger('deploy-history');
  /** How many versions are kept (the oldest beyond it are deleted). */
  readonly keep: number;

  constructor(readonly dir: string, opts: { keep?: number } = {}) {
    this.keep = Math.max(1, opts.keep ?? DEFAULT_KEEP);
    mkdirSync(dir, { recursive: true, mode: 0o700 });
  }

  private ids(): number[] {
    return readdirSync(this.dir)
      .map((f) => FILE_RE.exec(f))
      .filter((m): m is RegExpExecArray => !!m)
      .map((m) => Number(m[1]))
      .sort((x, y) => x - y);
  }

  private file(id: number): string {
    return join(this.dir, `${String(id).padStart(6, '0')}.json`);
  }

  /** Versions newest first, without their flows. A file that cannot be read is skipped (and logged). */
  list(): FlowVersion[] {
    const out: FlowVersion[] = [];
    for (const id of this.ids().reverse()) {
      const v = this.get(id);
      if (v) out.push(v.version);
    }
    return out;
  }

  get(id: number): { version: FlowVersion; flows: unknown[] } | undefined {
    if (!Number.isSafeInteger(id) || id < 1) return undefined;
    try {
      const parsed = JSON.parse(readFileSync(this.file(id), 'utf8')) as { version: FlowVersion; flows: unknown[] };
      if (!parsed?.version || !Array.isArray(parsed.flows)) throw new Error('not a flow version');
      return parsed;
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code !== 'ENOENT') this.log.warn({ id, err: String((e as Error).message) }, 'unreadable flow version skipped');
      return undefined;
    }
  }

  latest(): { version: FlowVersion; flows: unknown[] } | undefined {
    const ids = this.ids();
    for (let i = ids.length - 1; i >= 0; i--) {
      const v = this.get(ids[i]);
      if (v) return v;
    }
    return undefined;
  }

  /** Keep `flows` as a new version (summary against the latest kept one); prunes to the last `keep`. */
  record(flows: unknown[], meta: { kind: VersionKind; user?: string; source?: string; rollbackOf?: number; at?: Date }): FlowVersion {
    const ids = this.ids();
    const prev = this.latest();
    const version: FlowVersion = {
      id: (ids.length ? ids[ids.length - 1] : 0) + 1,
      at: (meta.at ?? new Date()).toISOString(),
      kind: meta.kind,
      ...(meta.user !== undefined ? { user: meta.user } : {}),
      ...(meta.source !== undefined ? { source: meta.source } : {}),
      ...(meta.rollbackOf !== undefined ? { rollbackOf: meta.rollbackOf } : {}),
      nodeCount: nodesById(flows).size,
      summary: summarizeChanges(prev?.flows ?? [], flows),
    };
    const target = this.file(version.id);
    const tmp = `${target}.tmp`;
    writeFileSync(tmp, JSON.stringify({ version, flows }), { mode: 0o600 });
    renameSync(tmp, target);
    const all = [...ids, version.id];
    for (const old of all.slice(0, Math.max(0, all.length - this.keep))) rmSync(this.file(old), { force: true });
    return version;
  }

  /** At start: keep the running flows as a version when none is kept yet or they differ from the latest (edited or restored by hand). */
  recordIfChanged(flows: unknown[]): FlowVersion | undefined {
    const prev = this.latest();
    if (prev && isDeepStrictEqual(prev.flows, flows)) return undefined;
    return this.record(flows, { kind: 'start', source: 'start' });
  }
}

/** Who is saving, carried from the admin HTTP request (or the rollback API call) down to storage.saveFlows. */
export interface DeployContext {
  source?: string;
  kind?: 'deploy' | 'rollback';
  rollbackOf?: number;
  /** The API user of a rollback (Node-RED's `user` argument carries the same name). */
  user?: string;
}

export const deployContext = new AsyncLocalStorage<DeployContext>();

/** Node-RED `httpAdminMiddleware`: runs the rest of an admin request (the editor's POST /flows) with its client address known. */
export function deploySourceMiddleware(req: { socket?: { remoteAddress?: string } }, _res: unknown, next: () => void): void {
  deployContext.run({ source: req.socket?.remoteAddress ?? 'editor' }, next);
}

/** A Node-RED storage module: `base` (localfilesystem) whose saveFlows also keeps a version and calls `onSaved`. */
export function historyStorageModule(
  base: Record<string, unknown>,
  history: DeployHistory,
  onSaved: (version: FlowVersion, ctx: DeployContext) => void,
): Record<string, unknown> {
  const log = componentLogger('deploy-history');
  const b = base as { getFlows(): Promise<unknown[]>; saveFlows(flows: unknown[], user?: { username?: string }): Promise<void> };
  return {
    ...base,
    getFlows: async () => {
      const flows = await b.getFlows();
      try {
        if (Array.isArray(flows)) history.recordIfChanged(flows);
      } catch (e) {
        log.error({ err: String(e) }, 'could not keep the flows found at start in the history');
      }
      return flows;
    },
    saveFlows: async (flows: unknown[], user?: { username?: string }) => {
      await b.saveFlows(flows, user);
      // the deploy itself has succeeded; a failure to keep its version is logged, never undoes it
      const ctx = deployContext.getStore() ?? {};
      try {
        const version = history.record(flows, {
          kind: ctx.kind ?? 'deploy',
          user: user?.username ?? ctx.user,
          source: ctx.source,
          rollbackOf: ctx.rollbackOf,
        });
        onSaved(version, ctx);
      } catch (e) {
        log.error({ err: String(e) }, 'could not keep the deployed flows in the history');
      }
    },
  };
}
