import { createHash, timingSafeEqual } from 'node:crypto';
import bcrypt from 'bcryptjs';
import type { Request, Response, NextFunction } from 'express';

/**
 * HTTP Basic authentication against the admin bcrypt hash, for the JSON API (and /metrics when
 * configured). bcrypt is slow by design, so a verified credential is remembered (as a SHA-256 of
 * it, never in clear) for a few minutes. Failed attempts are throttled per client address.
 */
export class BasicAuth {
  private verified = new Map<string, number>();
  private failures = new Map<string, { n: number; until: number }>();
  constructor(private readonly user: string, private readonly passwordHash: string, private readonly cacheMs = 5 * 60_000) {}

  check(header: string | undefined): boolean {
    if (!header || !header.startsWith('Basic ')) return false;
    const digest = createHash('sha256').update(header).digest('hex');
    const exp = this.verified.get(digest);
    if (exp && exp > Date.now()) return true;
    const decoded = Buffer.from(header.slice(6), 'base64').toString('utf8');
    const i = decoded.indexOf(':');
    if (i < 0) return false;
    const u = Buffer.from(decoded.slice(0, i));
    const want = Buffer.from(this.user);
    const userOk = u.length === want.length && timingSafeEqual(u, want);
    const ok = bcrypt.compareSync(decoded.slice(i + 1), this.passwordHash) && userOk;
    if (ok) {
      if (this.verified.size > 1000) this.verified.clear();
      this.verified.set(digest, Date.now() + this.cacheMs);
    }
    return ok;
  }

  middleware() {
    return (req: Request, res: Response, next: NextFunction) => {
      const who = req.socket.remoteAddress ?? '?';
      const f = this.failures.get(who);
      if (f && f.until > Date.now()) {
        res.status(429).set('Retry-After', String(Math.ceil((f.until - Date.now()) / 1000))).json({ error: 'too many failed logins; wait' });
        return;
      }
      if (this.check(req.headers.authorization)) {
        this.failures.delete(who);
        next();
        return;
      }
      if (req.headers.authorization) {
        const n = (f?.n ?? 0) + 1;
        this.failures.set(who, { n, until: n >= 5 ? Date.now() + Math.min(60_000, 1000 * 2 ** (n - 5)) : 0 });
      }
      res.status(401).set('WWW-Authenticate', 'Basic realm="iomt-gateway", charset="UTF-8"').json({ error: 'authentication required' });
    };
  }
}
