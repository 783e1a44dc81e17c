import { existsSync } from 'node:fs';
import { join } from 'node:path';
import express, { type Request, type Router } from 'express';
import type { GatewayRuntime } from '../../runtime';
import type { DriverStatus } from '../../contracts/driver';
import type { DestinationStats } from '../../contracts/store';

/** Roles (issue 9 §3). A request without one is today's single admin login. */
export type StatusRole = 'admin' | 'operator' | 'viewer';

/**
 * The role of an authenticated request: `req.user.role` when the auth middleware sets one; absent →
 * 'admin' (the single admin login of today); an unknown value → 'viewer' (the least privilege).
 */
export function roleOf(req: Request): StatusRole {
  const user = (req as Request & { user?: { role?: unknown } }).user;
  const role = user?.role;
  if (role === undefined || role === null) return 'admin';
  return role === 'admin' || role === 'operator' || role === 'viewer' ? role : 'viewer';
}

/** One device on the home page: the driver's status plus today's counts. No PHI. */
export interface DeviceSummary extends DriverStatus {
  /** Messages stored since `since` (capped at COUNT_CAP; `todayCountCapped` then true). */
  todayCount: number;
  todayCountCapped: boolean;
  /** Quarantine entries received since `since` (capped like todayCount). */
  quarantineToday: number;
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

/**
 * Counts since a time, computed from the store's read API (searchMessages / listQuarantine, newest
 * first, paged by id). Bounded by COUNT_CAP rows each.
 */
export function computeSummary(rt: GatewayRuntime, since: Date, now = new Date()): StatusSummary {
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

  const statuses = rt.deviceStatuses();
  const known = new Set(statuses.map((s) => s.deviceId));
  // A device that sent today but is no longer configured still shows, so its count is never hidden.
  const gone: DriverStatus[] = [...new Set([...perDevice.keys(), ...qPerDevice.keys()])]
    .filter((id) => !known.has(id))
    .map((deviceId) => ({ deviceId, driver: '', state: 'not-configured' as DriverStatus['state'] }));
  const devices = [...statuses, ...gone]
    .map((s) => ({ ...s, todayCount: perDevice.get(s.deviceId) ?? 0, todayCountCapped: capped, quarantineToday: qPerDevice.get(s.deviceId) ?? 0 }))
    .sort((a, b) => a.deviceId.localeCompare(b.deviceId));

  const stats = new Map(rt.store.destinationStats().map((s) => [s.destination, s]));
  const names = new Set([...rt.destinationNames(), ...stats.keys()]);
  const destinations = [...names].sort().map((name) => {
    const w = rt.destination(name);
    return {
      ...(stats.get(name) ?? { pending: 0, inFlight: 0, dead: 0, delivered: 0, oldestPendingAgeMs: 0 }),
      destination: name,
      configured: !!w,
      state: w?.state ?? 'not-configured',
      lastError: w?.lastError,
    };
  });
  return { generatedAt: now.toISOString(), since: sinceIso, devices, destinations, quarantineToday: qTotal, quarantineTodayCapped: qCapped };
}

/** The folder of the page's static files: beside this module (src, or dist after copy-assets). */
export function statusAssetsDir(): string {
  return join(__dirname, 'public');
}

/**
 * The status page for lab staff under /status (mounted behind the same auth middleware as /api/v1):
 * static HTML/JS/CSS from ./public (no CDN, no external fonts or scripts; a strict CSP says so), and
 * two small read-only JSON endpoints without PHI:
 *  - GET /status/api/me → { role, phi, replay }: what the page may show (PHI: admin and operator; replay too).
 *  - GET /status/api/summary[?since=ISO] → StatusSummary; `since` defaults to the gateway's local midnight;
 *    400 { error, code: 'bad-since' } when it is not a time.
 * Messages, quarantine and replay come from /api/v1, so their access rules and audit live in one place.
 */
export function statusRouter(rt: GatewayRuntime, opts: { assetsDir?: string; cacheMs?: number } = {}): Router {
  const r = express.Router();
  const dir = opts.assetsDir ?? statusAssetsDir();
  if (!existsSync(join(dir, 'index.html'))) throw new Error(`status page assets missing in ${dir} (run npm run build)`);
  const cacheMs = opts.cacheMs ?? 2000;
  let cached: { key: string; at: number; value: StatusSummary } | undefined;

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

  r.get('/api/me', (req, res) => {
    const role = roleOf(req);
    res.json({ role, phi: role !== 'viewer', replay: role !== 'viewer' });
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
    if (!cached || cached.key !== key || now - cached.at > cacheMs) cached = { key, at: now, value: computeSummary(rt, since) };
    res.json(cached.value);
  });

  r.use('/api', (_req, res) => res.status(404).json({ error: 'not found', code: 'not-found' }));
  r.use(express.static(dir, { index: 'index.html', fallthrough: true, dotfiles: 'deny', cacheControl: false }));
  r.use((_req, res) => res.status(404).json({ error: 'not found', code: 'not-found' }));
  return r;
}
