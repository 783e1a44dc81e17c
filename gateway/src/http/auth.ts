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
  now?: () => number;
}

/**
 * Authentication for the API, /metrics and the status page: a login session (cookie
 * `iomt_session`: HttpOnly, SameSite=Strict, Secure on HTTPS) or HTTP Basic (for scripts). Every
 * login (session or the first Basic use per user and address in 5 minutes), ok or failed, goes to
 * the audit log. Failed attempts are throttled per client address.
 */
export class Authenticator {
  readonly sessions: SessionStore;
  private readonly failures = new Map<string, { n: number; until: number }>();
  private readonly basicSeen = new Map<string, number>();
  private readonly now: () => number;

  constructor(private readonly o: AuthenticatorOptions) {
    this.sessions = o.sessions ?? new SessionStore({ ...sessionOptionsFromEnv(), now: o.now });
    this.now = o.now ?? Date.now;
    o.users.onChange((name) => this.sessions.endUser(name));
  }

  private throttled(who: string): number {
    const f = this.failures.get(who);
    return f && f.until > this.now() ? Math.ceil((f.until - this.now()) / 1000) : 0;
  }

  private failed(who: string): void {
    const n = (this.failures.get(who)?.n ?? 0) + 1;
    const k = this.o.failuresBeforeDelay ?? 5;
    if (this.failures.size > 10_000) this.failures.clear();
    this.failures.set(who, { n, until: n >= k ? this.now() + Math.min(60_000, 1000 * 2 ** (n - k)) : 0 });
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
      this.failed(source);
      this.o.audit.record({ action: 'login.failed', user: typeof user === 'string' ? user.slice(0, 64) : undefined, source, outcome: 'failed', detail: { via } });
      return undefined;
    }
    this.failures.delete(source);
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
        const wait = this.throttled(source);
        if (wait) return this.sendThrottled(res, wait);
        const decoded = Buffer.from(h.slice(6), 'base64').toString('utf8');
        const i = decoded.indexOf(':');
        const user = i < 0 ? decoded : decoded.slice(0, i);
        const password = i < 0 ? '' : decoded.slice(i + 1);
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
      const wait = this.throttled(source);
      if (wait) return this.sendThrottled(res, wait);
      const b = req.body as { user?: unknown; password?: unknown } | undefined;
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
