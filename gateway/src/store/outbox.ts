import type { DestinationPolicy } from '../contracts/store';

export const DEFAULT_DESTINATION_POLICY: Readonly<DestinationPolicy> = Object.freeze({
  maxAttempts: 10,
  maxAgeMs: 7 * 24 * 3600_000,
  backoffBaseMs: 1000,
  backoffMaxMs: 300_000,
  jitter: 0.2,
  strictOrder: false,
});

/** Merge a partial policy over the defaults and validate it. */
export function resolvePolicy(p: Partial<DestinationPolicy> = {}, base: DestinationPolicy = DEFAULT_DESTINATION_POLICY): DestinationPolicy {
  const out: DestinationPolicy = { ...base };
  for (const [k, v] of Object.entries(p) as Array<[keyof DestinationPolicy, unknown]>) if (v !== undefined) (out as unknown as Record<string, unknown>)[k] = v;
  const bad: string[] = [];
  if (!Number.isInteger(out.maxAttempts) || out.maxAttempts < 1) bad.push('maxAttempts must be an integer >= 1');
  if (!(out.maxAgeMs > 0)) bad.push('maxAgeMs must be > 0');
  if (!(out.backoffBaseMs >= 0)) bad.push('backoffBaseMs must be >= 0');
  if (!(out.backoffMaxMs >= out.backoffBaseMs)) bad.push('backoffMaxMs must be >= backoffBaseMs');
  if (!(out.jitter >= 0 && out.jitter <= 1)) bad.push('jitter must be within 0..1');
  if (typeof out.strictOrder !== 'boolean') bad.push('strictOrder must be a boolean');
  if (bad.length) throw new RangeError(`invalid destination policy: ${bad.join('; ')}`);
  return out;
}

/**
 * Delay before the next attempt after `attempts` failed attempts (1-based):
 * min(backoffMaxMs, backoffBaseMs * 2^(attempts-1)) ± jitter (a fraction of the delay).
 */
export function backoffMs(policy: DestinationPolicy, attempts: number, random: () => number = Math.random): number {
  const exp = Math.min(Math.max(attempts - 1, 0), 52);
  const delay = Math.min(policy.backoffMaxMs, policy.backoffBaseMs * 2 ** exp);
  const factor = 1 + policy.jitter * (2 * random() - 1);
  return Math.max(0, Math.round(delay * factor));
}

/** Does an entry with this many failed attempts, created at `createdAt`, go to dead letters? */
export function isExhausted(policy: DestinationPolicy, attempts: number, createdAt: number, now: number): boolean {
  return attempts >= policy.maxAttempts || now - createdAt > policy.maxAgeMs;
}

/** In-memory leases: the single process that owns the file is the only one delivering. */
export class LeaseTable {
  private leases = new Map<number, { destination: string; expiresAt: number }>();

  /** expiry time if `id` is leased and the lease has not expired */
  activeUntil(id: number, now: number): number | undefined {
    const l = this.leases.get(id);
    if (!l) return undefined;
    if (l.expiresAt <= now) {
      this.leases.delete(id);
      return undefined;
    }
    return l.expiresAt;
  }

  take(id: number, destination: string, expiresAt: number): void {
    this.leases.set(id, { destination, expiresAt });
  }

  release(destination: string, ids: Iterable<number>): void {
    for (const id of ids) {
      const l = this.leases.get(id);
      if (l && l.destination === destination) this.leases.delete(id);
    }
  }

  inFlight(now: number): Map<string, number> {
    const per = new Map<string, number>();
    for (const [id, l] of this.leases) {
      if (l.expiresAt <= now) this.leases.delete(id);
      else per.set(l.destination, (per.get(l.destination) ?? 0) + 1);
    }
    return per;
  }
}
