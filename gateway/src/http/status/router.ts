import { existsSync } from 'node:fs';
import { join } from 'node:path';
import express, { type Request, type RequestHandler, type Response, type Router } from 'express';
import type { GatewayRuntime } from '../../runtime';
import type { DriverStatus } from '../../contracts/driver';
import type { DestinationStats } from '../../contracts/store';

/** Roles (issue 9 §3). A request without one is today's single admin login. */
export type StatusRole = 'admin' | 'operator' | 'viewer';

/**
 * The role of an authenticated request, as the auth middleware left it: `res.locals.principal.role`
 * (http/auth.ts Authenticator) or `req.user.role`. No principal at all → 'admin' (the single admin
 * login of older versions); an unknown value → 'viewer' (the least privilege).
 */
export function roleOf(req: Request, res: Response): StatusRole {
  const p = (res.locals as { principal?: { role?: unknown } }).principal ?? (req as Request & { user?: { role?: unknown } }).user;
  const role = p?.role;
  if (p === undefined || role === undefined || role === null) return 'admin';
  return role === 'admin' || role === 'operator' || role === 'viewer' ? role : 'viewer';
}

function userOf(res: Response): string | undefined {
  const p = (res.locals as { principal?: { user?: unknown; via?: unknown } }).principal;
  return typeof p?.user === 'string' ? p.user : undefined;
}

/**
 * The page asks for its data with `X-Requested-With: iomt-status`: a 401 to it carries no Basic
 * challenge, so the browser shows the page's own login form instead of its native dialog.
 */
const noBasicChallengeForPage: RequestHandler = (req, res, next) => {
  if (req.get('x-requested-with') === 'iomt-status') {
    const set = res.setHeader.bind(res);
    res.setHeader = ((name: string, value: number | string | readonly string[]) => (name.toLowerCase() === 'www-authenticate' ? res : set(name, value))) as typeof res.setHeader;
  }
  next();
};

/** One device on the home page: the driver's status plus today's counts. No PHI. */
export interface DeviceSummary extends DriverStatus {
  /** Messages stored since `since` (capped at COUNT_CAP; `todayCountCapped` then true). */
  todayCount: number;
  todayCountCapped: boolean;
  /** Quarantine entries received since `since` (capped like todayCount). */
  quarantineToday: number;
  /** Messages with results since `since` that reached no destination (flag `no-destination`, capped like todayCount). */
  undeliveredToday: number;
  /** Such messages since the gateway started, with the last reason (FlowTracker.undeliveredByDevice). */
  undelivered?: { count: number; lastAt: string; reason: string };
}

export interface DestinationSummary extends DestinationStats {
  configured: boolean;
  state: string;
  lastError?: string;
}

export interface StatusSummary {
  generatedAt: string;
  /** Start of "today" used for the counts (ISO 8601, UTC). */
  since: string;
  devices: DeviceSummary[];
  destinations: DestinationSummary[];
  quarantineToday: number;
  quarantineTodayCapped: boolean;
}

const PAGE = 1000;
/** Counting walks the store's search pages; beyond this many rows a count is shown as "at least". */
export const COUNT_CAP = 100_000;

function startOfServerDay(now = new Date()): Date {
  return new Date(now.getFullYear(), now.getMonth(), now.getDate());
}

/** Messages and quarantine entries per device since a time. */
export interface CountsSince {
  perDevice: Map<string, number>;
  capped: boolean;
  qPerDevice: Map<string, number>;
  qTotal: number;
  qCapped: boolean;
  /** Messages flagged no-destination per device (pipeline/undelivered.ts). */
  uPerDevice: Map<string, number>;
}

/**
 * Counts since a time, computed from the store's read API (searchMessages / listQuarantine, newest
 * first, paged by id). Bounded by COUNT_CAP rows each.
 */
export function countSince(rt: GatewayRuntime, since: Date): CountsSince {
  const sinceIso = since.toISOString();
  const perDevice = new Map<string, number>();
  let seen = 0;
  let capped = false;
  for (let beforeId: number | undefined; ; ) {
    const page = rt.store.searchMessages({ from: sinceIso, limit: PAGE, beforeId });
    for (const m of page) perDevice.set(m.deviceId, (perDevice.get(m.deviceId) ?? 0) + 1);
    seen += page.length;
    if (page.length < PAGE) break;
    if (seen >= COUNT_CAP) {
      capped = true;
      break;
    }
    beforeId = page[page.length - 1].id;
  }

  const qPerDevice = new Map<string, number>();
  let qTotal = 0;
  let qCapped = false;
  quarantine: for (let beforeId: number | undefined; ; ) {
    const page = rt.store.listQuarantine(PAGE, beforeId);
    for (const q of page) {
      if (Date.parse(q.receivedAt) < since.getTime()) break quarantine; // newest first
      qPerDevice.set(q.deviceId, (qPerDevice.get(q.deviceId) ?? 0) + 1);
      qTotal++;
    }
    if (page.length < PAGE) break;
    if (qTotal >= COUNT_CAP) {
      qCapped = true;
      break;
    }
    beforeId = page[page.length - 1].id;
  }
  // flagged messages are few (partial index messages_flagged)
  const uPerDevice = new Map<string, number>();
  let uSeen = 0;
  for (let beforeId: number | undefined; ; ) {
    const page = rt.store.searchMessages({ from: sinceIso, flag: 'no-destination', limit: PAGE, beforeId });
    for (const m of page) uPerDevice.set(m.deviceId, (uPerDevice.get(m.deviceId) ?? 0) + 1);
    uSeen += page.length;
    if (page.length < PAGE || uSeen >= COUNT_CAP) break;
    beforeId = page[page.length - 1].id;
  }
  return { perDevice, capped, qPerDevice, qTotal, qCapped, uPerDevice };
}

/** The home page's summary: live device and destination states, with `counts` (from countSince). */
export function computeSummary(rt: GatewayRuntime, since: Date, now = new Date(), counts = countSince(rt, since)): StatusSummary {
  const { perDevice, capped, qPerDevice, qTotal, qCapped } = counts;
  const uPerDevice = counts.uPerDevice ?? new Map<string, number>();
  const lost = new Map((rt.tracker?.undeliveredByDevice?.() ?? []).map((u) => [u.deviceId, { count: u.count, lastAt: u.lastAt, reason: u.reason }]));
  const statuses = rt.deviceStatuses();
  const known = new Set(statuses.map((s) => s.deviceId));
  // A device that sent today but is no longer configured still shows, so its count is never hidden.
  const gone: DriverStatus[] = [...new Set([...perDevice.keys(), ...qPerDevice.keys(), ...uPerDevice.keys()])]
    .filter((id) => !known.has(id))
    .map((deviceId) => ({ deviceId, driver: '', state: 'not-configured' as DriverStatus['state'] }));
  const devices = [...statuses, ...gone]
    .map((s) => ({ ...s, todayCount: perDevice.get(s.deviceId) ?? 0, todayCountCapped: capped, quarantineToday: qPerDevice.get(s.deviceId) ?? 0, undeliveredToday: uPerDevice.get(s.deviceId) ?? 0, undelivered: lost.get(s.deviceId) }))
    .sort((a, b) => a.deviceId.localeCompare(b.deviceId));

  // Nodes that failed to start (runtime.nodeFailures, when this runtime has it): shown as 'error' with the reason.
  const failures = (rt as { nodeFailures?: () => Array<{ kind: string; id: string; reason: string }> }).nodeFailures?.() ?? [];
  const destFailure = new Map(failures.filter((f) => f.kind === 'destination').map((f) => [f.id, f.reason]));
  const stats = new Map(rt.store.destinationStats().map((s) => [s.destination, s]));
  const names = new Set([...rt.destinationNames(), ...stats.keys(), ...destFailure.keys()]);
  const destinations = [...names].sort().map((name) => {
    const w = rt.destination(name);
    const failed = destFailure.get(name);
    return {
      ...(stats.get(name) ?? { pending: 0, inFlight: 0, dead: 0, delivered: 0, oldestPendingAgeMs: 0 }),
      destination: name,
      configured: !!w,
      state: failed ? 'error' : (w?.state ?? 'not-configured'),
      lastError: failed ?? w?.lastError,
    };
  });
  return { generatedAt: now.toISOString(), since: since.toISOString(), devices, destinations, quarantineToday: qTotal, quarantineTodayCapped: qCapped };
}

/** The folder of the page's static files: beside this module (src, or dist after copy-assets). */
export function statusAssetsDir(): string {
  return join(__dirname, 'public');
}

/**
 * The status page for lab staff under /status: static HTML/JS/CSS from ./public (no CDN, no external
 * fonts or scripts; a strict CSP says so), and small read-only JSON endpoints without PHI, behind
 * `opts.auth` (the API's auth middleware; without it, mount the router behind that middleware):
 *  - GET /status/api/me → { user?, role, phi, replay }: what the page may show (PHI and replay: admin, operator).
 *    The page logs in with POST /api/v1/login (session cookie) when this answers 401.
 *  - GET /status/api/summary[?since=ISO] → StatusSummary; `since` defaults to the gateway's local midnight;
 *    400 { error, code: 'bad-since' } when it is not a time.
 * Messages, quarantine and replay come from /api/v1, so their access rules and audit live in one place.
 */
export function statusRouter(rt: GatewayRuntime, opts: { auth?: RequestHandler; assetsDir?: string; cacheMs?: number } = {}): Router {
  const r = express.Router();
  const dir = opts.assetsDir ?? statusAssetsDir();
  if (!existsSync(join(dir, 'index.html'))) throw new Error(`status page assets missing in ${dir} (run npm run build)`);
  const cacheMs = opts.cacheMs ?? 2000;
  // only the counts (which walk today's rows) are cached; states, queues and dead letters are always live
  let cached: { key: string; at: number; value: CountsSince } | undefined;

  r.use((_req, res, next) => {
    res.set({
      'Content-Security-Policy': "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; connect-src 'self'; font-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'",
      'X-Content-Type-Options': 'nosniff',
      'Referrer-Policy': 'no-referrer',
      'Cache-Control': 'no-store',
    });
    next();
  });

  // /status → /status/ so that the page's relative URLs (api/…, ../api/v1/…) resolve
  r.get('/', (req, res, next) => {
    if (!req.originalUrl.split('?')[0].endsWith('/')) res.redirect(301, req.baseUrl + '/');
    else next();
  });

  // the static page holds no data: only /api needs the login (when the router is not mounted behind it)
  if (opts.auth) r.use('/api', noBasicChallengeForPage, opts.auth);

  r.get('/api/me', (req, res) => {
    const role = roleOf(req, res);
    res.json({ user: userOf(res), role, phi: role !== 'viewer', replay: role !== 'viewer' });
  });

  r.get('/api/summary', (req, res) => {
    let since = startOfServerDay();
    const q = req.query.since;
    if (q !== undefined) {
      const t = typeof q === 'string' ? Date.parse(q) : NaN;
      if (Number.isNaN(t)) {
        res.status(400).json({ error: 'since must be an ISO 8601 time', code: 'bad-since' });
        return;
      }
      since = new Date(t);
    }
    const key = since.toISOString();
    const now = Date.now();
    if (!cached || cached.key !== key || now - cached.at > cacheMs) cached = { key, at: now, value: countSince(rt, since) };
    res.json(computeSummary(rt, since, new Date(now), cached.value));
  });

  r.use('/api', (_req, res) => res.status(404).json({ error: 'not found', code: 'not-found' }));
  r.use(express.static(dir, { index: 'index.html', fallthrough: true, dotfiles: 'deny', cacheControl: false }));
  r.use((_req, res) => res.status(404).json({ error: 'not found', code: 'not-found' }));
  return r;
}
