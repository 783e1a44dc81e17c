/**
 * Admission control for the device listeners (issue 10 §2, §3): MLLP (drivers/hl7-mllp/mllp-server.ts)
 * and ASTM over TCP (drivers/astm/transport/tcp-server-transport.ts).
 *
 * - allow-list of source addresses / networks (node:net BlockList; IPv4, IPv6, IPv4-mapped IPv6);
 * - a per-address connection limit (default 8);
 * - a first-frame timeout: a connection that has not completed its first protocol frame within
 *   `firstFrameTimeoutMs` (default 10 s) is closed (MLLP: first complete block; ASTM: first ENQ);
 * - a full listener closes the connection idle longest to make room (connections that never
 *   completed a frame go first; a connection whose frame is being handled is never chosen);
 * - refusals, evictions and TLS failures counted in metrics and logged once per address and
 *   reason per `logIntervalMs` (default 60 s) with the number of events since, never once per event.
 *
 * Addresses are not PHI; they are logged at warn.
 */
import net from 'node:net';
import type { Logger } from 'pino';
import { metrics } from '../metrics/registry';

export const DEFAULT_MAX_PER_ADDRESS = 8;
export const DEFAULT_FIRST_FRAME_TIMEOUT_MS = 10_000;
export const DEFAULT_GUARD_LOG_INTERVAL_MS = 60_000;
/**
 * A first frame still arriving at this rate or faster extends the first-frame deadline (bytes/s):
 * an 8 MB message over a slow link is not cut, a sender trickling bytes gains nothing.
 */
export const FIRST_FRAME_MIN_RATE = 64 * 1024;
/** Addresses remembered for log rate limiting; beyond this the oldest entry is forgotten. */
const MAX_LOG_KEYS = 1024;

export type RefusalReason = 'not-allowed' | 'per-address' | 'full';
export type EvictionReason = 'first-frame-timeout' | 'idle-longest';

export interface ListenerGuardOptions {
  /** Label in metrics and logs, e.g. the device id. */
  listener: string;
  /** Simultaneous connections on the listener. */
  maxConnections: number;
  /** Simultaneous connections from one source address (default 8). */
  maxPerAddress?: number;
  /** Close a connection that has not completed its first frame within this time (default 10000; 0 = never). */
  firstFrameTimeoutMs?: number;
  /** Allowed sources: addresses or CIDR networks, comma/space separated or a list; empty = everyone. */
  allowFrom?: string | string[];
  /** Log at most one line per address and reason per this interval (default 60000). */
  logIntervalMs?: number;
  log: Logger;
}

/** One admitted connection. */
export interface GuardedConnection {
  readonly address: string;
  /** A complete protocol frame arrived: ends the first-frame timer, marks the connection active now. */
  frame(): void;
  /** Bytes of the first frame arrived: extends its deadline by bytes / FIRST_FRAME_MIN_RATE. */
  progress(bytes: number): void;
  /** True while the connection's frame is being handled, or its reading is paused by the gateway: never evicted, no first-frame timeout then. */
  busy: boolean;
  /** The socket closed: frees its slot. Safe twice. */
  release(): void;
}

/**
 * Parse an allow-list ("10.0.0.0/8, 192.168.1.20 ::1 fd00::/8") into a BlockList (used as an allow
 * list). Throws RangeError naming the bad entry. Empty input → undefined (everyone allowed).
 */
export function parseAllowList(spec: string | string[] | undefined): net.BlockList | undefined {
  const entries = (Array.isArray(spec) ? spec : [spec ?? ''])
    .flatMap((s) => s.split(/[\s,;]+/))
    .map((s) => s.trim())
    .filter(Boolean);
  if (!entries.length) return undefined;
  const list = new net.BlockList();
  for (const e of entries) {
    const [addr, bits, extra] = e.split('/');
    const type = net.isIPv4(addr) ? 'ipv4' : net.isIPv6(addr) ? 'ipv6' : undefined;
    if (!type || extra !== undefined) throw new RangeError(`allow-list entry '${e}' is not an IPv4/IPv6 address or CIDR network`);
    if (bits === undefined) {
      list.addAddress(addr, type);
      continue;
    }
    const prefix = /^\d{1,3}$/.test(bits) ? Number(bits) : NaN;
    if (!(prefix >= 0 && prefix <= (type === 'ipv4' ? 32 : 128))) throw new RangeError(`allow-list entry '${e}': bad prefix length`);
    list.addSubnet(addr, prefix, type);
  }
  return list;
}

/** The address as the allow-list compares it: IPv4-mapped IPv6 (::ffff:a.b.c.d) as IPv4. */
export function normalizeAddress(address: string | undefined): string {
  const a = (address ?? '').replace(/%.*$/, ''); // zone id (fe80::1%eth0)
  const m = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(a);
  return m ? m[1] : a;
}

/**
 * The address part of a connection's `remote` as the transports write it (`<address>:<port>`, e.g.
 * `10.0.0.5:40122`, `::ffff:10.0.0.5:40122`, `::1:40122`, `[::1]:40122`).
 */
export function addressOfRemote(remote: string): string {
  const bracket = /^\[([^\]]+)\](?::\d+)?$/.exec(remote);
  if (bracket) return bracket[1];
  return remote.replace(/:\d+$/, '');
}

/** True when `address` is on the list (undefined list: everyone). */
export function isAllowed(list: net.BlockList | undefined, address: string | undefined): boolean {
  if (!list) return true;
  const a = normalizeAddress(address);
  if (net.isIPv4(a)) return list.check(a, 'ipv4');
  if (net.isIPv6(a)) return list.check(a, 'ipv6');
  return false;
}

interface Entry {
  conn: GuardedConnection;
  socket: net.Socket;
  since: number; // connect time, then time of the last completed frame
  framed: boolean;
  timer: NodeJS.Timeout | undefined;
  /** ms added to the first-frame deadline (bytes arriving, time paused by the gateway) */
  credit: number;
  busySince: number | undefined;
}

export class ListenerGuard {
  readonly maxPerAddress: number;
  readonly firstFrameTimeoutMs: number;
  private readonly allow: net.BlockList | undefined;
  private readonly entries = new Set<Entry>();
  private readonly perAddress = new Map<string, number>();
  private readonly logged = new Map<string, { at: number; suppressed: number }>();
  private readonly logIntervalMs: number;

  constructor(private readonly opts: ListenerGuardOptions) {
    this.maxPerAddress = opts.maxPerAddress ?? DEFAULT_MAX_PER_ADDRESS;
    this.firstFrameTimeoutMs = opts.firstFrameTimeoutMs ?? DEFAULT_FIRST_FRAME_TIMEOUT_MS;
    this.logIntervalMs = opts.logIntervalMs ?? DEFAULT_GUARD_LOG_INTERVAL_MS;
    this.allow = parseAllowList(opts.allowFrom);
  }

  /** Connections currently admitted. */
  get size(): number {
    return this.entries.size;
  }

  /** True when an allow-list is configured. */
  get restricted(): boolean {
    return !!this.allow;
  }

  /** True when `address` may connect (allow-list only). */
  allows(address: string | undefined): boolean {
    return isAllowed(this.allow, address);
  }

  /**
   * Admit a new socket or refuse it (the socket is destroyed at once and the refusal counted).
   * A full listener first evicts the connection idle longest that is not busy.
   */
  admit(socket: net.Socket): GuardedConnection | undefined {
    const address = normalizeAddress(socket.remoteAddress);
    if (!isAllowed(this.allow, address)) return this.refuse(socket, address, 'not-allowed');
    if ((this.perAddress.get(address) ?? 0) >= this.maxPerAddress) return this.refuse(socket, address, 'per-address');
    if (this.entries.size >= this.opts.maxConnections && !this.evictIdlest()) return this.refuse(socket, address, 'full');
    const opened = Date.now();
    const entry: Entry = { conn: undefined as unknown as GuardedConnection, socket, since: opened, framed: false, timer: undefined, credit: 0, busySince: undefined };
    let released = false;
    entry.conn = {
      address,
      get busy() {
        return entry.busySince !== undefined;
      },
      set busy(v: boolean) {
        if (v && entry.busySince === undefined) entry.busySince = Date.now();
        else if (!v && entry.busySince !== undefined) {
          entry.credit += Date.now() - entry.busySince; // time the gateway held it does not count
          entry.busySince = undefined;
        }
      },
      progress: (bytes: number) => {
        if (!entry.framed) entry.credit += (bytes * 1000) / FIRST_FRAME_MIN_RATE;
      },
      frame: () => {
        entry.since = Date.now();
        if (!entry.framed) {
          entry.framed = true;
          if (entry.timer) clearTimeout(entry.timer);
          entry.timer = undefined;
        }
      },
      release: () => {
        if (released) return;
        released = true;
        if (entry.timer) clearTimeout(entry.timer);
        this.entries.delete(entry);
        const n = (this.perAddress.get(address) ?? 1) - 1;
        if (n > 0) this.perAddress.set(address, n);
        else this.perAddress.delete(address);
      },
    };
    if (this.firstFrameTimeoutMs > 0) {
      const arm = (ms: number): void => {
        entry.timer = setTimeout(() => {
          entry.timer = undefined;
          if (entry.framed || released) return;
          // busy (e.g. paused by the gateway's own memory budget) is not the sender's fault; bytes
          // arriving at FIRST_FRAME_MIN_RATE or faster extend the deadline
          if (entry.conn.busy) return arm(this.firstFrameTimeoutMs);
          const left = opened + this.firstFrameTimeoutMs + entry.credit - Date.now();
          if (left > 0) return arm(left);
          this.evicted(address, 'first-frame-timeout');
          entry.conn.release();
          socket.destroy();
        }, ms);
        entry.timer.unref();
      };
      arm(this.firstFrameTimeoutMs);
    }
    this.entries.add(entry);
    this.perAddress.set(address, (this.perAddress.get(address) ?? 0) + 1);
    return entry.conn;
  }

  /** A TLS handshake failed (counted, logged once per address per interval). */
  tlsFailure(address: string | undefined, err: string): void {
    const a = normalizeAddress(address);
    metrics.listenerTlsFailures.inc({ listener: this.opts.listener });
    this.logOnce(`tls|${a}`, { remote: a, err }, 'TLS handshake failed');
  }

  /** Stop all timers (listener closing). */
  close(): void {
    for (const e of this.entries) if (e.timer) clearTimeout(e.timer);
  }

  private refuse(socket: net.Socket, address: string, reason: RefusalReason): undefined {
    socket.destroy();
    metrics.listenerRefused.inc({ listener: this.opts.listener, reason });
    const what: Record<RefusalReason, string> = {
      'not-allowed': 'connection refused: source address not on the allow-list',
      'per-address': `connection refused: ${this.maxPerAddress} connections from this address already open`,
      full: `connection refused: all ${this.opts.maxConnections} connections busy`,
    };
    this.logOnce(`${reason}|${address}`, { remote: address, reason }, what[reason]);
    return undefined;
  }

  private evictIdlest(): boolean {
    let victim: Entry | undefined;
    for (const e of this.entries) {
      if (e.conn.busy) continue;
      // never-framed connections first, then the one whose last frame is oldest
      if (!victim || (victim.framed && !e.framed) || (victim.framed === e.framed && e.since < victim.since)) victim = e;
    }
    if (!victim) return false;
    this.evicted(victim.conn.address, 'idle-longest');
    victim.conn.release();
    victim.socket.destroy();
    return true;
  }

  private evicted(address: string, reason: EvictionReason): void {
    metrics.listenerEvicted.inc({ listener: this.opts.listener, reason });
    const what = reason === 'idle-longest' ? 'listener full: connection idle longest closed to make room' : `connection closed: no complete frame within ${this.firstFrameTimeoutMs} ms`;
    this.logOnce(`${reason}|${address}`, { remote: address, reason }, what);
  }

  /** One warn line per key per interval; the next one carries how many were not logged meanwhile. */
  private logOnce(key: string, fields: Record<string, unknown>, msg: string): void {
    const now = Date.now();
    const prev = this.logged.get(key);
    if (prev && now - prev.at < this.logIntervalMs) {
      prev.suppressed++;
      return;
    }
    if (prev) this.logged.delete(key);
    if (this.logged.size >= MAX_LOG_KEYS) {
      // forget entries whose interval is over; if none, the oldest
      for (const [k, v] of this.logged) if (now - v.at >= this.logIntervalMs) this.logged.delete(k);
      if (this.logged.size >= MAX_LOG_KEYS) this.logged.delete(this.logged.keys().next().value as string);
    }
    this.logged.set(key, { at: now, suppressed: 0 });
    this.opts.log.warn({ listener: this.opts.listener, ...fields, ...(prev?.suppressed ? { sinceLastLog: prev.suppressed } : {}), intervalMs: this.logIntervalMs }, `${msg} (logged once per address per interval)`);
  }
}
