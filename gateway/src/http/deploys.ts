import express, { type NextFunction, type Request, type Response, type Router } from 'express';
import { recordAudit } from '../audit/audit-log';
import { componentLogger } from '../log/logger';
import type { DeployContext, DeployHistory, FlowVersion } from '../node-red/deploy-history';
import { deployFlows } from '../node-red/embed';
import type { Authenticator, RequestPrincipal } from './auth';
import { principalOf } from './auth';
import { ApiError, apiErrorHandler, badRequest, forbidden, notFound } from './errors';

/** Deploys `flows` as a rollback to version `rollbackOf` (default: Node-RED's runtime API, embed.ts deployFlows). */
export type ApplyFlows = (flows: unknown[], ctx: { user: string; source: string; rollbackOf: number }) => Promise<void>;

export interface DeploysOptions {
  auth: Authenticator;
  history: DeployHistory;
  apply?: ApplyFlows;
}

/** Counts and node lists of a version's change summary, for the audit log (ids and types only, no PHI). */
function auditDetail(v: FlowVersion): Record<string, unknown> {
  return { version: v.id, kind: v.kind, ...(v.rollbackOf !== undefined ? { rollbackOf: v.rollbackOf } : {}), nodes: v.nodeCount, ...v.summary.counts };
}

/**
 * The audit record of a saved deploy (embed.ts `onDeployed`): an editor Deploy is `deploy`; a
 * rollback (POST /api/v1/deploys/:id/rollback) is `config.change` with `detail.rollbackOf`.
 */
export function auditDeploy(v: FlowVersion, ctx: DeployContext): void {
  if (v.kind === 'start') return;
  recordAudit({
    action: v.kind === 'rollback' ? 'config.change' : 'deploy',
    user: v.user,
    role: 'admin', // the editor and this API take admins only
    source: ctx.source ?? v.source ?? 'editor',
    target: `flows#${v.id}`,
    detail: auditDetail(v),
  });
}

function positiveId(s: string): number {
  if (!/^[1-9]\d{0,11}$/.test(s)) throw badRequest('a version id is a positive whole number');
  return Number(s);
}

/**
 * Configuration history under /api/v1/deploys (issue 9 §2), admins only (403 GW_API_FORBIDDEN
 * otherwise, 401 without a login), errors as JSON `{ error, code }`:
 *  - GET  /api/v1/deploys → `{ current?: number, keep: number, versions: FlowVersion[] }`, newest first
 *    (time, kind start|deploy|rollback, user, source address, node count, change summary by node id/type).
 *  - GET  /api/v1/deploys/:id → `{ version: FlowVersion }`; 404 when not kept (only the last 50 are).
 *  - POST /api/v1/deploys/:id/rollback → deploys that version's flows (full deploy) as the caller;
 *    `{ rolledBackTo, version }` with the new version it became. Audited as `config.change`
 *    (ok, denied, failed). A deploy Node-RED refuses answers 409 GW_API_CONFLICT with the reason.
 */
export function deploysRouter(o: DeploysOptions): Router {
  const log = componentLogger('api');
  const apply: ApplyFlows = o.apply ?? ((flows, ctx) => deployFlows(flows, ctx));
  const r = express.Router();
  r.use(express.json({ limit: '4kb' }));
  r.use(o.auth.middleware());
  const admin = (req: Request, res: Response): RequestPrincipal => {
    const p = principalOf(res);
    if (p.role !== 'admin') {
      if (req.method === 'POST') recordAudit({ action: 'config.change', user: p.user, role: p.role, source: p.source, target: `flows#${req.params.id ?? '?'}`, outcome: 'denied', detail: { rollback: true } });
      throw forbidden('configuration history is for admins only');
    }
    return p;
  };
  const h = (fn: (req: Request, res: Response) => unknown) => (req: Request, res: Response, next: NextFunction) => {
    Promise.resolve()
      .then(() => fn(req, res))
      .catch(next);
  };

  r.get('/', h((req, res) => {
    admin(req, res);
    if (Object.keys(req.query).length) throw badRequest('no query parameters are taken here');
    const versions = o.history.list();
    res.json({ current: versions[0]?.id, keep: o.history.keep, versions });
  }));

  r.get('/:id', h((req, res) => {
    admin(req, res);
    const id = positiveId(req.params.id);
    const v = o.history.get(id);
    if (!v) throw notFound(`no kept configuration version ${id}`);
    res.json({ version: v.version });
  }));

  r.post('/:id/rollback', h(async (req, res) => {
    const p = admin(req, res);
    const id = positiveId(req.params.id);
    const v = o.history.get(id);
    if (!v) throw notFound(`no kept configuration version ${id}`);
    const before = o.history.list()[0]?.id;
    try {
      await apply(v.flows, { user: p.user, source: p.source, rollbackOf: id });
    } catch (e) {
      const reason = e instanceof Error ? e.message : String(e);
      recordAudit({ action: 'config.change', user: p.user, role: p.role, source: p.source, target: `flows#${id}`, outcome: 'failed', detail: { rollbackOf: id, reason: reason.slice(0, 200) } });
      log.error({ version: id, err: reason }, 'rollback failed');
      throw new ApiError(409, 'GW_API_CONFLICT', `the rollback to version ${id} was not deployed: ${reason}`);
    }
    const now = o.history.list()[0];
    res.json({ rolledBackTo: id, version: now && now.id !== before ? now : undefined });
  }));

  r.use((_req, _res, next) => next(notFound('no such API route')));
  r.use(apiErrorHandler((err) => log.error({ err: err instanceof Error ? err.message : String(err) }, 'API request failed')));
  return r;
}
