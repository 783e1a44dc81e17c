import { randomBytes } from 'node:crypto';
import express, { type Request, type Response, type NextFunction, type RequestHandler } from 'express';
import { recordAudit } from '../audit/audit-log';
import { clientAddress, LoginThrottle } from '../http/auth';
import type { UserStore } from './users';

export interface NodeRedUser {
  username: string;
  permissions: '*';
}

/** Node-RED's `adminAuth` setting with custom user functions (Node-RED docs: "Securing Node-RED", custom user authentication). */
export interface NodeRedAdminAuth {
  type: 'credentials';
  users(username: string): Promise<NodeRedUser | null>;
  authenticate(username: string, password: string): Promise<NodeRedUser | null>;
}

export interface EditorAuth extends NodeRedAdminAuth {
  /**
   * Express handler for `POST <httpAdminRoot>/auth/token`, mounted in front of Node-RED's own
   * (gateway/src/node-red/embed.ts). It applies the gateway's LoginThrottle (per address and per
   * user) and tags the login so that `authenticate` knows the client address and `users` knows
   * when the token was issued. Node-RED sees a user name that is unique per login.
   */
  loginGate: RequestHandler;
  /** The tagged name the gate hands to Node-RED for a login by `user` from `address` (exported for tests). */
  begin(user: string, address: string): string;
  /** The gateway user of a Node-RED token's user name (undefined when it is not one of ours). */
  userOf(tokenUser: string): string | undefined;
}

const SEP = '\u0001';
const PENDING_MS = 60_000;

/**
 * The editor login (issue 9 §3, issue 10 §5) against the users table.
 *
 * Node-RED's own login limiter (@node-red/editor-api lib/auth/strategies.js) counts attempts per
 * user name across all addresses: five wrong passwords from anywhere lock the admin out for 10
 * minutes, the right password included. It cannot be switched off, so the gate gives Node-RED a
 * user name that is unique per login (`<user>\x01<issued ms>\x01<nonce>`): its counter never
 * passes 1, and the gateway's LoginThrottle (the same one the API uses) decides instead, by
 * address and by user, without locking the owner out from another address.
 *
 * - `authenticate` accepts only logins that came through the gate (tag known, < 60 s old) by
 *   users with role admin (UserStore.verifyUser: equally slow for unknown users), records the
 *   result in the throttle and the audit log (with the client address).
 * - `users`, which Node-RED calls with the token's user name for every editor request, answers
 *   only while the user is still an admin AND has not changed the password since the token was
 *   issued: a password change (also by the CLI in another process) revokes every editor token,
 *   as it ends every API session (http/auth.ts).
 */
export function nodeRedAdminAuth(users: UserStore, opts: { throttle?: LoginThrottle; now?: () => number } = {}): EditorAuth {
  const throttle = opts.throttle ?? new LoginThrottle();
  const now = opts.now ?? Date.now;
  const pending = new Map<string, { user: string; address: string; at: number }>();

  const decode = (tagged: unknown): { user: string; issuedAt: number; nonce: string } | undefined => {
    if (typeof tagged !== 'string') return undefined;
    const j = tagged.lastIndexOf(SEP);
    const i = j > 0 ? tagged.lastIndexOf(SEP, j - 1) : -1;
    if (i <= 0) return undefined;
    const issuedAt = Number(tagged.slice(i + 1, j));
    return Number.isFinite(issuedAt) ? { user: tagged.slice(0, i), issuedAt, nonce: tagged.slice(j + 1) } : undefined;
  };

  const begin = (user: string, address: string): string => {
    const t = now();
    for (const [k, v] of pending) if (t - v.at > PENDING_MS || pending.size > 1000) pending.delete(k);
    const nonce = randomBytes(12).toString('base64url');
    pending.set(nonce, { user, address, at: t });
    return `${user}${SEP}${t}${SEP}${nonce}`;
  };

  const parse: RequestHandler[] = [express.urlencoded({ extended: false, limit: '16kb' }), express.json({ limit: '16kb' })];
  const gate: RequestHandler = (req: Request, res: Response, next: NextFunction) => {
    const b = req.body as { username?: unknown } | undefined;
    if (!b || typeof b !== 'object' || typeof b.username !== 'string') return next();
    const user = b.username.slice(0, 64);
    const address = clientAddress(req);
    const wait = throttle.wait(address, user);
    if (wait) {
      res.set('Retry-After', String(wait));
      res.status(429).json({ message: 'too many failed logins; wait', code: 'GW_API_THROTTLED' });
      return;
    }
    b.username = begin(user, address);
    next();
  };
  const loginGate: RequestHandler = (req, res, next) => {
    parse[0](req, res, (e?: unknown) => (e ? next(e) : parse[1](req, res, (e2?: unknown) => (e2 ? next(e2) : gate(req, res, next)))));
  };

  return {
    type: 'credentials',
    loginGate,
    begin,
    userOf: (tokenUser) => decode(tokenUser)?.user,
    users: async (tagged) => {
      const d = decode(tagged);
      if (!d) return null;
      const u = users.get(d.user);
      if (!u || u.role !== 'admin') return null;
      // a token from before the last password change is dead (issue 10 §5)
      if (Date.parse(u.passwordChangedAt) > d.issuedAt) return null;
      return { username: u.name, permissions: '*' };
    },
    authenticate: async (tagged, password) => {
      const d = decode(tagged);
      const p0 = d ? pending.get(d.nonce) : undefined;
      if (d && p0) pending.delete(d.nonce);
      if (!d || !p0 || p0.user !== d.user || now() - p0.at > PENDING_MS) return null; // not through the gate
      const p = await users.verifyUser(d.user, password);
      const ok = p?.role === 'admin';
      if (p) throttle.succeeded(p0.address, d.user);
      else throttle.failed(p0.address, d.user);
      recordAudit({
        action: ok ? 'login.ok' : 'login.failed',
        user: d.user.slice(0, 64),
        role: p?.role,
        source: p0.address,
        outcome: ok ? 'ok' : p ? 'denied' : 'failed',
        detail: { via: 'editor', ...(p && !ok ? { reason: 'the editor is for admins only' } : {}) },
      });
      return ok ? { username: p.user, permissions: '*' } : null;
    },
  };
}
