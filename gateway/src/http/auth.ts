import type { Request, Response, NextFunction, RequestHandler } from 'express';
import type { AuditLog } from '../audit/audit-log';
import type { Principal, Role, UserStore } from '../accounts/users';
import { ApiError, sendError } from './errors';
import { SessionStore, sessionOptionsFromEnv, type Session } from './sessions';

export const SESSION_COOKIE = 'iomt_session';

/** The authenticated caller of a request, set on `res.locals.principal` by Authenticator.middleware(). */
export interface RequestPrincipal extends Principal {
  via: 'session' | 'basic';
  session?: Session;
  source: string;
}

export function principalOf(res: Response): RequestPrincipal {
  const p = res.locals.principal as RequestPrincipal | undefined;
  if (!p) throw new ApiError(401, 'GW_API_UNAUTHENTICATED', 'authentication required');
  return p;
}

/** Client address as seen on the socket (no proxy headers are trusted). */
export function clientAddress(req: Request): string {
  return req.socket.remoteAddress ?? '?';
}

function cookie(req: Request, name: string): string | undefined {
  const h = req.headers.cookie;
  if (!h) return undefined;
  for (const part of h.split(';')) {
    const i = part.indexOf('=');
    if (i > 0 && part.slice(0, i).trim() === name) return part.slice(i + 1).trim();
  }
  return undefined;
}

export interface AuthenticatorOptions {
  users: UserStore;
  audit: AuditLog;
  sessions?: SessionStore;
  /** Failed attempts from one address before it must wait (default 5); the wait doubles up to 60 s. */
  failuresBeforeDelay?: number;
  /** Shared with the editor login (accounts/node-red-auth.ts), so both count the same failures. */
  throttle?: LoginThrottle;
  now?: () => number;
}

interface Failures {
  n: number;
  last: number;
  until: number;
}

/**
 * Login throttling per address and per user (issue 10 §5), shared by the API, the status page and
 * the editor. Failed attempts are counted per client address and per user name within a window
 * (default 15 min after the last failure):
 * - an address with `perAddress` failures (default 5, any user) must wait before its next
 *   attempt: 1 s, then doubling per failure up to `maxWaitMs` (60 s);
 * - a user with `perUser` failures (default 10) from anywhere is held the same way, but only
 *   towards addresses that have failed themselves in the window: the owner logging in from
 *   another (clean) address is never held back by an attacker's failures.
 * Nothing ever locks an account: a wait ends by itself, and a success from an address clears it.
 * Bounded memory (at most 10,000 tracked keys; stale ones dropped first).
 */
export class LoginThrottle {
  private readonly addr = new Map<string, Failures>();
  private readonly user = new Map<string, Failures>();
  private readonly now: () => number;
  private readonly perAddress: number;
  private readonly perUser: number;
  private readonly windowMs: number;
  private readonly maxWaitMs: number;

  constructor(o: { perAddress?: number; perUser?: number; windowMs?: number; maxWaitMs?: number; now?: () => number } = {}) {
    this.now = o.now ?? Date.now;
    this.perAddress = o.perAddress ?? 5;
    this.perUser = o.perUser ?? 10;
    this.windowMs = o.windowMs ?? 15 * 60_000;
    this.maxWaitMs = o.maxWaitMs ?? 60_000;
  }

  private live(m: Map<string, Failures>, k: string): Failures | undefined {
    const f = m.get(k);
    if (f && this.now() - f.last > this.windowMs) {
      m.delete(k);
      return undefined;
    }
    return f;
  }

  /** Seconds this attempt must wait (0: go ahead and check the password). */
  wait(address: string, user?: string): number {
    const t = this.now();
    const a = this.live(this.addr, address);
    let until = a?.until ?? 0;
    if (a && user !== undefined) until = Math.max(until, this.live(this.user, user)?.until ?? 0);
    return until > t ? Math.ceil((until - t) / 1000) : 0;
  }

  private bump(m: Map<string, Failures>, k: string, limit: number): void {
    const t = this.now();
    if (m.size >= 10_000) {
      for (const [key, f] of m) if (t - f.last > this.windowMs) m.delete(key);
      if (m.size >= 10_000) m.clear();
    }
    const n = (this.live(m, k)?.n ?? 0) + 1;
    m.set(k, { n, last: t, until: n >= limit ? t + Math.min(this.maxWaitMs, 1000 * 2 ** (n - limit)) : 0 });
  }

  failed(address: string, user?: string): void {
    this.bump(this.addr, address, this.perAddress);
    if (user !== undefined) this.bump(this.user, user, this.perUser);
  }

  succeeded(address: string, user?: string): void {
    this.addr.delete(address);
    if (user !== undefined) this.user.delete(user);
  }
}

/**
 * Authentication for the API, /metrics and the status page: a login session (cookie
 * `iomt_session`: HttpOnly, SameSite=Strict, Secure on HTTPS) or HTTP Basic (for scripts). Every
 * login (session or the first Basic use per user and address in 5 minutes), ok or failed, goes to
 * the audit log. Failed attempts are throttled per client address and per user (LoginThrottle).
 */
export class Authenticator {
  readonly sessions: SessionStore;
  readonly throttle: LoginThrottle;
  private readonly basicSeen = new Map<string, number>();
  private readonly now: () => number;

  constructor(private readonly o: AuthenticatorOptions) {
    this.sessions = o.sessions ?? new SessionStore({ ...sessionOptionsFromEnv(), now: o.now });
    this.now = o.now ?? Date.now;
    this.throttle = o.throttle ?? new LoginThrottle({ perAddress: o.failuresBeforeDelay, now: this.now });
    o.users.onChange((name) => this.sessions.endUser(name));
  }

  private sendThrottled(res: Response, wait: number): void {
    res.set('Retry-After', String(wait));
    sendError(res, new ApiError(429, 'GW_API_THROTTLED', 'too many failed logins; wait'));
  }

  /** The user still exists with that role and has not changed the password since login (also changes made by the CLI in another process). */
  private stillValid(s: Session): boolean {
    const u = this.o.users.get(s.user);
    return !!u && u.role === s.role && Date.parse(u.passwordChangedAt) <= s.createdAt;
  }

  /** Check credentials for a login form or Basic header; records the attempt in the audit log. */
  async login(user: string, password: string, source: string, via: 'session' | 'basic'): Promise<Principal | undefined> {
    const p = await this.o.users.verifyUser(user, password);
    if (!p) {
      this.throttle.failed(source, typeof user === 'string' ? user.slice(0, 64) : undefined);
      this.o.audit.record({ action: 'login.failed', user: typeof user === 'string' ? user.slice(0, 64) : undefined, source, outcome: 'failed', detail: { via } });
      return undefined;
    }
    this.throttle.succeeded(source, p.user);
    if (via === 'session') this.o.audit.record({ action: 'login.ok', user: p.user, role: p.role, source, detail: { via } });
    else {
      const key = `${p.user}\0${source}`;
      if ((this.basicSeen.get(key) ?? 0) < this.now()) {
        if (this.basicSeen.size > 10_000) this.basicSeen.clear();
        this.basicSeen.set(key, this.now() + 5 * 60_000);
        this.o.audit.record({ action: 'login.ok', user: p.user, role: p.role, source, detail: { via } });
      }
    }
    return p;
  }

  /**
   * Authenticate every request: a live session cookie, else an Authorization: Basic header; 401 JSON
   * otherwise. With `roles`, other roles get 403. Sets res.locals.principal.
   */
  middleware(roles?: readonly Role[]): RequestHandler {
    return (req: Request, res: Response, next: NextFunction) => {
      const source = clientAddress(req);
      let s = this.sessions.touch(cookie(req, SESSION_COOKIE));
      if (s && !this.stillValid(s)) {
        this.sessions.end(s.id);
        s = undefined;
      }
      const done = (p: RequestPrincipal) => {
        if (roles && !roles.includes(p.role)) return sendError(res, new ApiError(403, 'GW_API_FORBIDDEN', 'your role may not do this'));
        res.locals.principal = p;
        next();
      };
      if (s) return done({ user: s.user, role: s.role, via: 'session', session: s, source });
      const h = req.headers.authorization;
      if (h && h.startsWith('Basic ')) {
        const decoded = Buffer.from(h.slice(6), 'base64').toString('utf8');
        const i = decoded.indexOf(':');
        const user = i < 0 ? decoded : decoded.slice(0, i);
        const password = i < 0 ? '' : decoded.slice(i + 1);
        const wait = this.throttle.wait(source, user.slice(0, 64));
        if (wait) return this.sendThrottled(res, wait);
        this.login(user, password, source, 'basic').then(
          (p) => {
            if (p) return done({ ...p, via: 'basic', source });
            res.set('WWW-Authenticate', 'Basic realm="iomt-gateway", charset="UTF-8"');
            sendError(res, new ApiError(401, 'GW_API_UNAUTHENTICATED', 'wrong user name or password'));
          },
          (e: unknown) => next(e),
        );
        return;
      }
      // No Basic challenge for browsers with a (stale) session cookie: the page shows its own login form.
      if (!cookie(req, SESSION_COOKIE)) res.set('WWW-Authenticate', 'Basic realm="iomt-gateway", charset="UTF-8"');
      sendError(res, new ApiError(401, 'GW_API_UNAUTHENTICATED', 'authentication required (log in, or HTTP Basic)'));
    };
  }

  /** POST /login `{ "user", "password" }` → 200 `{ user, role, expiresAt }` + session cookie; 401 / 429 JSON. */
  loginHandler(): RequestHandler {
    return (req, res, next) => {
      const source = clientAddress(req);
      const b = req.body as { user?: unknown; password?: unknown } | undefined;
      const wait = this.throttle.wait(source, typeof b?.user === 'string' ? b.user.slice(0, 64) : undefined);
      if (wait) return this.sendThrottled(res, wait);
      if (!b || typeof b !== 'object' || typeof b.user !== 'string' || typeof b.password !== 'string') {
        return sendError(res, new ApiError(400, 'GW_API_BAD_REQUEST', 'body must be JSON { "user": string, "password": string }'));
      }
      this.login(b.user, b.password, source, 'session').then((p) => {
        if (!p) return sendError(res, new ApiError(401, 'GW_API_UNAUTHENTICATED', 'wrong user name or password'));
        this.sessions.end(cookie(req, SESSION_COOKIE));
        const s = this.sessions.create(p, source);
        this.setCookie(req, res, s);
        res.json({ user: s.user, role: s.role, expiresAt: new Date(this.sessions.expiresAt(s)).toISOString() });
      }, next);
    };
  }

  /** POST /logout: ends the cookie's session (200 even when there was none). */
  logoutHandler(): RequestHandler {
    return (req, res) => {
      const id = cookie(req, SESSION_COOKIE);
      const s = this.sessions.touch(id);
      this.sessions.end(id);
      if (s) this.o.audit.record({ action: 'logout', user: s.user, role: s.role, source: clientAddress(req) });
      res.set('Set-Cookie', `${SESSION_COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0${req.secure ? '; Secure' : ''}`);
      res.json({ loggedOut: !!s });
    };
  }

  /** Issue the session cookie (no Max-Age: a browser session cookie; the server enforces expiry). */
  setCookie(req: Request, res: Response, s: Session): void {
    res.set('Set-Cookie', `${SESSION_COOKIE}=${s.id}; Path=/; HttpOnly; SameSite=Strict${req.secure ? '; Secure' : ''}`);
  }
}
