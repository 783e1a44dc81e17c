import { randomBytes } from 'node:crypto';
import type { Principal } from '../accounts/users';

export interface Session extends Principal {
  id: string;
  createdAt: number; // epoch ms
  lastSeenAt: number; // epoch ms
  source: string;
}

export interface SessionOptions {
  /** A session unused this long ends (default 30 min). */
  idleMs?: number;
  /** A session ends this long after login whatever its use (default 12 h). */
  maxMs?: number;
  /** Upper bound of sessions kept (oldest dropped first; default 10 000). */
  maxSessions?: number;
  now?: () => number;
}

/**
 * In-memory login sessions (a restart logs everyone out). Ids are 256 random bits, base64url.
 * Idle and absolute expiry; sessions of a user end when the password, role or account changes.
 */
export class SessionStore {
  private readonly sessions = new Map<string, Session>();
  readonly idleMs: number;
  readonly maxMs: number;
  private readonly maxSessions: number;
  private readonly now: () => number;

  constructor(opts: SessionOptions = {}) {
    this.idleMs = opts.idleMs ?? 30 * 60_000;
    this.maxMs = opts.maxMs ?? 12 * 3600_000;
    this.maxSessions = opts.maxSessions ?? 10_000;
    this.now = opts.now ?? Date.now;
  }

  create(p: Principal, source: string): Session {
    const t = this.now();
    if (this.sessions.size >= this.maxSessions) {
      this.sweep();
      const oldest = this.sessions.keys().next();
      if (this.sessions.size >= this.maxSessions && !oldest.done) this.sessions.delete(oldest.value);
    }
    const s: Session = { id: randomBytes(32).toString('base64url'), user: p.user, role: p.role, createdAt: t, lastSeenAt: t, source };
    this.sessions.set(s.id, s);
    return s;
  }

  /** The live session with this id (its idle timer restarts), or undefined (unknown or expired: removed). */
  touch(id: string | undefined): Session | undefined {
    if (!id) return undefined;
    const s = this.sessions.get(id);
    if (!s) return undefined;
    const t = this.now();
    if (t - s.lastSeenAt > this.idleMs || t - s.createdAt > this.maxMs) {
      this.sessions.delete(id);
      return undefined;
    }
    s.lastSeenAt = t;
    return s;
  }

  /** When this session ends if unused (epoch ms). */
  expiresAt(s: Session): number {
    return Math.min(s.lastSeenAt + this.idleMs, s.createdAt + this.maxMs);
  }

  end(id: string | undefined): void {
    if (id) this.sessions.delete(id);
  }

  /** End every session of a user (password, role or account changed). */
  endUser(user: string): number {
    let n = 0;
    for (const [id, s] of this.sessions) if (s.user === user) (this.sessions.delete(id), n++);
    return n;
  }

  sweep(): void {
    const t = this.now();
    for (const [id, s] of this.sessions) if (t - s.lastSeenAt > this.idleMs || t - s.createdAt > this.maxMs) this.sessions.delete(id);
  }

  get size(): number {
    return this.sessions.size;
  }
}

/**
 * IOMT_SESSION_IDLE_MINUTES (default 30) and IOMT_SESSION_MAX_HOURS (default 12), whole numbers >= 1.
 * Throws RangeError on a bad value.
 */
export function sessionOptionsFromEnv(env: NodeJS.ProcessEnv = process.env): { idleMs: number; maxMs: number } {
  const num = (name: string, dflt: number): number => {
    const raw = env[name];
    if (raw === undefined || raw === '') return dflt;
    if (!/^\d{1,6}$/.test(raw) || Number(raw) < 1) throw new RangeError(`${name} must be a whole number >= 1, got '${raw}'`);
    return Number(raw);
  };
  return { idleMs: num('IOMT_SESSION_IDLE_MINUTES', 30) * 60_000, maxMs: num('IOMT_SESSION_MAX_HOURS', 12) * 3600_000 };
}
