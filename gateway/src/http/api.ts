import express, { type Router, type Request, type Response, type NextFunction } from 'express';
import type { GatewayRuntime } from '../runtime';
import type { MessageQuery } from '../contracts/store';
import type { AuditLog } from '../audit/audit-log';
import { AccountError, checkPassword, checkRole, checkUserName, generatePassword, type Role, type UserStore } from '../accounts/users';
import { componentLogger } from '../log/logger';
import { principalOf, type Authenticator, type RequestPrincipal } from './auth';
import { ApiError, apiErrorHandler, badRequest, forbidden, notFound } from './errors';
import { exportsRouter } from './exports';
import { mqttClientsRouter } from './mqtt-clients';
import { registerStudyRoutes } from './studies';

/** What the API needs besides the runtime: accounts, audit, authentication, message lookup by uid. */
export interface ApiSecurity {
  auth: Authenticator;
  users: UserStore;
  audit: AuditLog;
  /** Message id of a uid (18 Crockford base32 characters), or undefined. */
  messageIdByUid(uid: string): number | undefined;
}

const MAX_LIMIT = 1000;
const UID_RE = /^[0-9A-HJKMNP-TV-Z]{18}$/;

/** Only these query parameters; a single value each (unknown or repeated → 400). */
function queryOf(req: Request, allowed: readonly string[]): Record<string, string | undefined> {
  const out: Record<string, string | undefined> = {};
  for (const [k, v] of Object.entries(req.query)) {
    if (!allowed.includes(k)) throw badRequest(`unknown query parameter '${k}'${allowed.length ? ` (allowed: ${allowed.join(', ')})` : ''}`);
    if (typeof v !== 'string') throw badRequest(`query parameter '${k}' must be given once, as a plain value`);
    out[k] = v === '' ? undefined : v;
  }
  return out;
}

function intParam(v: string | undefined, name: string, min: number, max: number): number | undefined {
  if (v === undefined) return undefined;
  if (!/^\d{1,15}$/.test(v) || Number(v) < min || Number(v) > max) throw badRequest(`${name} must be a whole number from ${min} to ${max}`);
  return Number(v);
}

const limitOf = (q: Record<string, string | undefined>, dflt = 50) => intParam(q.limit, 'limit', 1, MAX_LIMIT) ?? dflt;
const beforeOf = (q: Record<string, string | undefined>) => intParam(q.beforeId, 'beforeId', 1, Number.MAX_SAFE_INTEGER);

function idParam(v: string, what: string): number {
  if (!/^\d{1,15}$/.test(v) || Number(v) < 1) throw badRequest(`${what} must be a positive whole number`);
  return Number(v);
}

function bodyOf(req: Request): Record<string, unknown> {
  const b: unknown = req.body;
  if (b === undefined || (typeof b === 'object' && b !== null && Object.keys(b).length === 0 && !req.is('application/json'))) return {};
  if (typeof b !== 'object' || b === null || Array.isArray(b)) throw badRequest('body must be a JSON object');
  return b as Record<string, unknown>;
}

function onlyKeys(b: Record<string, unknown>, allowed: readonly string[]): void {
  for (const k of Object.keys(b)) if (!allowed.includes(k)) throw badRequest(`unknown field '${k}' (allowed: ${allowed.join(', ')})`);
}

/** Raw device bytes as text when they decode cleanly as UTF-8, else base64. */
function rawView(raw: Buffer): { encoding: 'utf8' | 'base64'; data: string } {
  const s = raw.toString('utf8');
  return Buffer.from(s, 'utf8').equals(raw) ? { encoding: 'utf8', data: s } : { encoding: 'base64', data: raw.toString('base64') };
}

const mayPhi = (p: RequestPrincipal) => p.role === 'admin' || p.role === 'operator';

function requireRole(res: Response, roles: readonly Role[]): RequestPrincipal {
  const p = principalOf(res);
  if (!roles.includes(p.role)) throw forbidden();
  return p;
}

type Handler = (req: Request, res: Response) => unknown;
/** Express 4 does not catch async errors: hand them (and AccountError as 400/404/409) to the error handler. */
function h(fn: Handler) {
  return (req: Request, res: Response, next: NextFunction) => {
    try {
      Promise.resolve(fn(req, res)).catch((e: unknown) => next(mapError(e)));
    } catch (e) {
      next(mapError(e));
    }
  };
}

function mapError(e: unknown): unknown {
  if (e instanceof AccountError) {
    const status = e.code === 'GW_ERR_ACCOUNT_NOT_FOUND' ? 404 : e.code === 'GW_ERR_ACCOUNT_INVALID' ? 400 : 409;
    return new ApiError(status, status === 404 ? 'GW_API_NOT_FOUND' : status === 400 ? 'GW_API_BAD_REQUEST' : 'GW_API_CONFLICT', e.message, { reason: e.code });
  }
  return e;
}

/**
 * JSON API under /api/v1. `POST /login` and `POST /logout` are open; every other route needs a
 * session or HTTP Basic, and its role:
 *
 * | route | viewer | operator | admin |
 * |---|---|---|---|
 * | GET /account, POST /account/password (own) | yes | yes | yes |
 * | GET /devices, /destinations, /dead-letters, /quarantine (list) | yes | yes | yes |
 * | GET /messages (search by patientId/specimenId: operator+) | no PHI terms | yes | yes |
 * | GET /messages/:id\|:uid, /quarantine/:id (raw, observations, meta) | PHI stripped | yes, audited | yes, audited |
 * | POST /dead-letters/:id/replay, /dead-letters/replay | 403 | yes, audited | yes, audited |
 * | /users..., /audit, /audit/verify, password reset of others | 403 | 403 | yes |
 * | GET /studies (DICOM stored and delivered; search by accession/patientId: operator+) | list without patient ids | yes, search audited | yes, search audited |
 * | GET /exports/bhyt (claims XML4 rows + MA_MAY, http/exports.ts) | 403 | yes, audited | yes, audited |
 * | GET/POST /mqtt-clients, DELETE /mqtt-clients/:clientId (MQTT device logins, http/mqtt-clients.ts) | 403 | 403 | yes, audited |
 *
 * Errors are JSON `{ error, code }` (http/errors.ts, docs/errors.md): 400 bad input (malformed
 * JSON, bad or unknown query parameters and fields), 401, 403, 404 unknown things, 409, 429.
 */
export function apiRouter(rt: GatewayRuntime, sec: ApiSecurity): Router {
  const log = componentLogger('api');
  const r = express.Router();
  const { auth, users, audit } = sec;
  r.use(express.json({ limit: '64kb' }));

  r.post('/login', auth.loginHandler());
  r.post('/logout', auth.logoutHandler());
  r.use(auth.middleware());

  const who = (p: RequestPrincipal) => ({ user: p.user, role: p.role, source: p.source });

  // ------------------------------------------------------------------ own account

  r.get('/account', h((req, res) => {
    queryOf(req, []);
    const p = principalOf(res);
    res.json({ user: p.user, role: p.role, via: p.via, expiresAt: p.session ? new Date(auth.sessions.expiresAt(p.session)).toISOString() : undefined });
  }));

  /** `{ currentPassword, newPassword }` for oneself; an admin may give `{ user, newPassword }` for another user. */
  r.post('/account/password', h(async (req, res) => {
    queryOf(req, []);
    const p = principalOf(res);
    const b = bodyOf(req);
    onlyKeys(b, ['user', 'currentPassword', 'newPassword']);
    const target = b.user === undefined ? p.user : checkUserName(b.user);
    const newPassword = checkPassword(b.newPassword);
    if (target !== p.user) {
      if (p.role !== 'admin') throw forbidden('only an admin may set another user\'s password');
      if (!users.get(target)) throw notFound(`no user '${target}'`);
    } else if (typeof b.currentPassword !== 'string' || !(await users.verifyUser(p.user, b.currentPassword))) {
      audit.record({ ...who(p), action: 'user.passwd', target, outcome: 'denied', detail: { reason: 'current password wrong' } });
      throw badRequest('currentPassword is missing or wrong');
    }
    await users.setPassword(target, newPassword); // ends the target's sessions
    audit.record({ ...who(p), action: 'user.passwd', target, detail: target === p.user ? { self: true } : { reset: true } });
    if (target === p.user && p.via === 'session') auth.setCookie(req, res, auth.sessions.create({ user: p.user, role: p.role }, p.source));
    res.json({ changed: target });
  }));

  // ------------------------------------------------------------------ status (every role)

  r.get('/devices', h((req, res) => {
    queryOf(req, []);
    // results of a device that reached no destination (issue 9 §2) travel with its status
    const lost = new Map((rt.tracker?.undeliveredByDevice?.() ?? []).map((u) => [u.deviceId, { count: u.count, lastAt: u.lastAt, reason: u.reason }]));
    res.json({ devices: rt.deviceStatuses().map((d) => (lost.has(d.deviceId) ? { ...d, undelivered: lost.get(d.deviceId) } : d)) });
  }));

  const knownDestinations = () => new Set([...rt.destinationNames(), ...rt.store.destinationStats().map((s) => s.destination)]);

  r.get('/destinations', h((req, res) => {
    queryOf(req, []);
    const stats = new Map(rt.store.destinationStats().map((s) => [s.destination, s]));
    const names = new Set([...rt.destinationNames(), ...stats.keys()]);
    res.json({
      destinations: [...names].sort().map((name) => {
        const w = rt.destination(name);
        return {
          ...(stats.get(name) ?? { pending: 0, inFlight: 0, dead: 0, delivered: 0, oldestPendingAgeMs: 0 }),
          destination: name,
          configured: !!w,
          state: w?.state ?? 'not-configured',
          lastError: w?.lastError,
        };
      }),
    });
  }));

  // ------------------------------------------------------------------ messages (PHI)

  r.get('/messages', h((req, res) => {
    const p = principalOf(res);
    const qs = queryOf(req, ['deviceId', 'from', 'to', 'patientId', 'specimenId', 'status', 'limit', 'beforeId', 'flag']);
    const q: MessageQuery = {
      deviceId: qs.deviceId,
      from: qs.from,
      to: qs.to,
      patientId: qs.patientId,
      specimenId: qs.specimenId,
      status: qs.status as MessageQuery['status'],
      limit: limitOf(qs),
      beforeId: beforeOf(qs),
      flag: qs.flag, // e.g. control-id-reused, charset-fallback, parts-withheld (docs/result-fidelity.md)
    };
    if (q.status && !['committed', 'routed', 'flow-error'].includes(q.status)) throw badRequest('status must be committed, routed or flow-error');
    for (const k of ['from', 'to'] as const) if (q[k] && Number.isNaN(Date.parse(q[k]!))) throw badRequest(`${k} must be an ISO 8601 time`);
    const phiSearch = q.patientId !== undefined || q.specimenId !== undefined;
    if (phiSearch) {
      if (!mayPhi(p)) {
        audit.record({ ...who(p), action: 'phi.search', outcome: 'denied' });
        throw forbidden('searching by patient or specimen id needs the operator or admin role');
      }
      audit.record({ ...who(p), action: 'phi.search', detail: Object.fromEntries(Object.entries(qs).filter(([, v]) => v !== undefined)) });
    }
    const messages = rt.store.searchMessages(q);
    res.json({ messages, next: messages.length === q.limit ? messages[messages.length - 1].id : undefined });
  }));

  /** By numeric id or by uid (18 characters, Crockford base32). */
  r.get('/messages/:id', h((req, res) => {
    const p = principalOf(res);
    queryOf(req, []);
    const key = req.params.id;
    let id: number | undefined;
    if (/^\d{1,15}$/.test(key)) id = Number(key);
    else if (UID_RE.test(key.toUpperCase())) id = sec.messageIdByUid(key.toUpperCase());
    else throw badRequest('message id must be a number or an 18-character uid');
    const m = id === undefined ? undefined : rt.store.getMessage(id);
    if (!m) throw notFound('no such message');
    if (!mayPhi(p)) {
      const { raw: _raw, meta: _meta, observations, ...rest } = m;
      res.json({ ...rest, observationCount: observations.length, phi: 'withheld' });
      return;
    }
    audit.record({ ...who(p), action: 'phi.view', target: `message:${m.id}`, detail: { uid: m.uid, deviceId: m.deviceId } });
    res.json({ ...m, raw: rawView(m.raw) });
  }));

  r.get('/quarantine', h((req, res) => {
    const q = queryOf(req, ['limit', 'beforeId']);
    res.json({ quarantine: rt.store.listQuarantine(limitOf(q), beforeOf(q)) });
  }));

  r.get('/quarantine/:id', h((req, res) => {
    const p = principalOf(res);
    queryOf(req, []);
    const id = idParam(req.params.id, 'quarantine id');
    const q = rt.store.getQuarantine(id);
    if (!q) throw notFound('no such quarantine entry');
    if (!mayPhi(p)) {
      const { raw: _raw, meta: _meta, ...rest } = q as typeof q & { meta?: unknown };
      res.json({ ...rest, phi: 'withheld' });
      return;
    }
    audit.record({ ...who(p), action: 'phi.view', target: `quarantine:${id}`, detail: { deviceId: q.deviceId } });
    res.json({ ...q, raw: rawView(q.raw) });
  }));

  r.get('/dead-letters', h((req, res) => {
    const q = queryOf(req, ['destination', 'limit', 'beforeId']);
    if (q.destination !== undefined && !knownDestinations().has(q.destination)) throw notFound(`no destination '${q.destination}'`);
    res.json({ deadLetters: rt.store.deadLetters(q.destination, limitOf(q), beforeOf(q)) });
  }));

  const wakeAll = () => {
    for (const d of rt.destinationNames()) rt.destination(d)?.wake();
  };

  r.post('/dead-letters/:id/replay', h(async (req, res) => {
    const p = requireRole(res, ['admin', 'operator']);
    queryOf(req, []);
    onlyKeys(bodyOf(req), []);
    const id = idParam(req.params.id, 'dead letter id');
    const n = await rt.store.replay({ ids: [id] });
    audit.record({ ...who(p), action: 'replay', target: `dead-letter:${id}`, outcome: n ? 'ok' : 'failed', detail: { replayed: n } });
    if (!n) throw notFound('no such dead letter');
    wakeAll();
    res.json({ replayed: n });
  }));

  /** `{ "destination": "his" }` (or ?destination=): replay that destination's dead letters; none given = all. */
  r.post('/dead-letters/replay', h(async (req, res) => {
    const p = requireRole(res, ['admin', 'operator']);
    const qs = queryOf(req, ['destination']);
    const b = bodyOf(req);
    onlyKeys(b, ['destination']);
    if (b.destination !== undefined && (typeof b.destination !== 'string' || !b.destination)) throw badRequest('destination must be a non-empty string');
    const destination = (b.destination as string | undefined) ?? qs.destination;
    if (destination !== undefined && !knownDestinations().has(destination)) {
      audit.record({ ...who(p), action: 'replay', target: `destination:${destination}`, outcome: 'failed', detail: { reason: 'unknown destination' } });
      throw notFound(`no destination '${destination}'`);
    }
    const n = await rt.store.replay({ destination });
    audit.record({ ...who(p), action: 'replay', target: destination ? `destination:${destination}` : 'all', detail: { replayed: n } });
    wakeAll();
    res.json({ replayed: n });
  }));

  // ------------------------------------------------------------------ accounts (admin)

  r.get('/users', h((req, res) => {
    requireRole(res, ['admin']);
    queryOf(req, []);
    res.json({ users: users.list() });
  }));

  /** `{ name, role, password? }` → 201 `{ user, generatedPassword? }` (a generated password is shown once). */
  r.post('/users', h(async (req, res) => {
    const p = requireRole(res, ['admin']);
    queryOf(req, []);
    const b = bodyOf(req);
    onlyKeys(b, ['name', 'role', 'password']);
    const name = checkUserName(b.name);
    const role = checkRole(b.role);
    const generated = b.password === undefined ? generatePassword() : undefined;
    const u = await users.add(name, role, generated ?? checkPassword(b.password));
    audit.record({ ...who(p), action: 'user.add', target: name, detail: { role } });
    res.status(201).json({ user: u, generatedPassword: generated });
  }));

  /** `{ role }` */
  r.patch('/users/:name', h((req, res) => {
    const p = requireRole(res, ['admin']);
    queryOf(req, []);
    const b = bodyOf(req);
    onlyKeys(b, ['role']);
    const name = checkUserName(req.params.name);
    const role = checkRole(b.role);
    users.setRole(name, role);
    audit.record({ ...who(p), action: 'user.role', target: name, detail: { role } });
    res.json({ user: users.get(name) });
  }));

  r.delete('/users/:name', h((req, res) => {
    const p = requireRole(res, ['admin']);
    queryOf(req, []);
    const name = checkUserName(req.params.name);
    users.remove(name);
    audit.record({ ...who(p), action: 'user.remove', target: name });
    res.json({ removed: name });
  }));

  // ------------------------------------------------------------------ audit (admin)

  r.get('/audit', h((req, res) => {
    requireRole(res, ['admin']);
    const q = queryOf(req, ['limit', 'beforeId']);
    const limit = limitOf(q, 100);
    const rows = audit.list(limit, beforeOf(q));
    res.json({ audit: rows, next: rows.length === limit ? rows[rows.length - 1].id : undefined });
  }));

  r.get('/audit/verify', h((req, res) => {
    requireRole(res, ['admin']);
    queryOf(req, []);
    res.json(audit.verify());
  }));

  r.use('/mqtt-clients', mqttClientsRouter(rt.settings.dataDir, audit)); // MQTT device logins (admin), gateway/src/http/mqtt-clients.ts
  r.use('/exports', exportsRouter(rt, { audit })); // GET /exports/bhyt: claims XML4 rows + MA_MAY (issue 13)
  registerStudyRoutes(r, rt, audit); // GET /studies: did the images arrive, did each PACS take them (issue 11 §5)

  r.use((_req, _res, next) => next(notFound('no such API route')));
  r.use(apiErrorHandler((err) => log.error({ err: err instanceof Error ? err.message : String(err) }, 'API request failed')));
  return r;
}
