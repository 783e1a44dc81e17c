/**
 * MQTT device credentials (issue 12 §1): one password per client id, only its hash kept, in
 * `<dataDir>/mqtt-clients.json` (mode 0600, written atomically: temp file + rename, under a lock file).
 *
 * Hash: scrypt (RFC 7914) N=1024 r=8 p=1 (1 MiB), 16-byte salt, 32-byte key, as `scrypt$1024$8$1$<salt b64>$<key b64>`
 * (the parameters travel with each hash, so they can be raised later). Why not N=16384: one check took 170 ms of
 * CPU on the 2-core bench machine (N=1024: 10 ms), and 500 monitors reconnecting after a gateway restart would
 * queue 85 s of hashing, longer than their connect timeout, so they retry and the queue never drains. Device
 * passwords are generated (144 random bits) or at least 16 characters, so the work factor is not what protects
 * them. node:crypto runs scrypt in the libuv thread pool: a check never blocks the event loop. A verified
 * (client, password, hash) is remembered for 10 minutes as a SHA-256 (reconnects cost nothing; a revoke or a
 * new password changes the hash and so misses).
 *
 * The broker re-reads the file when its mtime changes (CLI and admin API write it while the gateway runs);
 * a revoked client is disconnected within the broker's poll interval.
 */
import { createHash, randomBytes, scrypt as scryptCb, timingSafeEqual } from 'node:crypto';
import { closeSync, existsSync, mkdirSync, openSync, readFileSync, renameSync, statSync, unlinkSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export const CLIENTS_FILE = 'mqtt-clients.json';
/** Client ids are topic levels (`iomt/<clientId>/...`): no `/ + #`, no control characters (MQTT 3.1.1 4.7.1). */
export const CLIENT_ID_RE = /^[A-Za-z0-9._-]{1,64}$/;
export const MIN_DEVICE_PASSWORD = 16;
const SCRYPT = { N: 1024, r: 8, p: 1, keylen: 32 };
const VERIFIED_TTL_MS = 10 * 60_000;
const VERIFIED_MAX = 10_000;

export type CredentialErrorCode = 'GW_ERR_MQTT_CLIENT_INVALID' | 'GW_ERR_MQTT_CLIENT_EXISTS' | 'GW_ERR_MQTT_CLIENT_NOT_FOUND';

export class CredentialError extends Error {
  constructor(readonly code: CredentialErrorCode, message: string) {
    super(message);
    this.name = 'CredentialError';
  }
}

export interface MqttClientRecord {
  clientId: string;
  createdAt: string;
  /** Set when revoked; the entry stays (audit), the client can no longer connect. */
  revokedAt?: string;
}

interface FileShape {
  version: 1;
  clients: Record<string, MqttClientRecord & { hash: string }>;
}

export function checkClientId(id: unknown): string {
  if (typeof id !== 'string' || !CLIENT_ID_RE.test(id)) throw new CredentialError('GW_ERR_MQTT_CLIENT_INVALID', 'client id must be 1-64 letters, digits, . _ -');
  return id;
}

/** Own entries only: a client id such as `constructor` must not reach Object.prototype. */
function entry(d: FileShape, id: string): (MqttClientRecord & { hash: string }) | undefined {
  return Object.hasOwn(d.clients, id) ? d.clients[id] : undefined;
}

function scrypt(password: string, salt: Buffer): Promise<Buffer> {
  return new Promise((resolve, reject) =>
    scryptCb(password, salt, SCRYPT.keylen, { N: SCRYPT.N, r: SCRYPT.r, p: SCRYPT.p, maxmem: 64 * 1024 * 1024 }, (e, k) => (e ? reject(e) : resolve(k))),
  );
}

export async function hashDevicePassword(password: string): Promise<string> {
  const salt = randomBytes(16);
  const key = await scrypt(password, salt);
  return `scrypt$${SCRYPT.N}$${SCRYPT.r}$${SCRYPT.p}$${salt.toString('base64')}$${key.toString('base64')}`;
}

/** true when `password` matches `hash`; false on a malformed hash. Never throws. */
export async function verifyDevicePassword(password: string, hash: string): Promise<boolean> {
  const m = /^scrypt\$(\d+)\$(\d+)\$(\d+)\$([A-Za-z0-9+/=]+)\$([A-Za-z0-9+/=]+)$/.exec(hash);
  if (!m) return false;
  const [N, r, p] = [Number(m[1]), Number(m[2]), Number(m[3])];
  const salt = Buffer.from(m[4], 'base64');
  const want = Buffer.from(m[5], 'base64');
  try {
    const key = await new Promise<Buffer>((resolve, reject) => scryptCb(password, salt, want.length, { N, r, p, maxmem: 64 * 1024 * 1024 }, (e, k) => (e ? reject(e) : resolve(k))));
    return key.length === want.length && timingSafeEqual(key, want);
  } catch {
    return false;
  }
}

/** A random device password (24 base64url characters, 144 bits). */
export function generateDevicePassword(): string {
  return randomBytes(18).toString('base64url');
}

/** The credentials file of one data dir. Cheap to construct; every method reads the file as it is now. */
export class MqttCredentials {
  readonly file: string;
  private cache: { mtimeMs: number; size: number; data: FileShape } | undefined;
  /** SHA-256(client id, password, stored hash) → expiry of a successful check. */
  private readonly verified = new Map<string, number>();

  constructor(readonly dataDir: string) {
    this.file = join(dataDir, CLIENTS_FILE);
  }

  private read(): FileShape {
    if (!existsSync(this.file)) return { version: 1, clients: {} };
    const st = statSync(this.file);
    if (this.cache && this.cache.mtimeMs === st.mtimeMs && this.cache.size === st.size) return this.cache.data;
    const data = JSON.parse(readFileSync(this.file, 'utf8')) as FileShape;
    if (data?.version !== 1 || typeof data.clients !== 'object') throw new Error(`${this.file}: not an MQTT credentials file (version 1)`);
    this.cache = { mtimeMs: st.mtimeMs, size: st.size, data };
    return data;
  }

  /** mtime + size of the file (0 when absent): the broker polls this to notice changes. */
  version(): string {
    // one stat (the broker calls this on every publish): absent = '0'
    const st = statSync(this.file, { throwIfNoEntry: false });
    return st ? `${st.mtimeMs}:${st.size}` : '0';
  }

  private async update<T>(fn: (d: FileShape) => Promise<T> | T): Promise<T> {
    mkdirSync(this.dataDir, { recursive: true, mode: 0o700 });
    const lock = `${this.file}.lock`;
    let fd: number | undefined;
    for (let i = 0; fd === undefined; i++) {
      try {
        fd = openSync(lock, 'wx', 0o600);
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code !== 'EEXIST' || i > 100) throw e;
        // a lock older than 30 s is from a crashed writer
        try {
          if (Date.now() - statSync(lock).mtimeMs > 30_000) unlinkSync(lock);
        } catch {
          /* gone meanwhile */
        }
        await new Promise((r) => setTimeout(r, 50));
      }
    }
    try {
      this.cache = undefined;
      const d = this.read();
      const r = await fn(d);
      const tmp = `${this.file}.${process.pid}.tmp`;
      writeFileSync(tmp, JSON.stringify(d, null, 2) + '\n', { mode: 0o600 });
      renameSync(tmp, this.file);
      this.cache = undefined;
      return r;
    } finally {
      closeSync(fd);
      unlinkSync(lock);
    }
  }

  /** Create a client; returns the password (generated unless given), to show once. */
  async add(clientId: string, password?: string): Promise<{ client: MqttClientRecord; password: string; generated: boolean }> {
    checkClientId(clientId);
    if (password !== undefined && (typeof password !== 'string' || password.length < MIN_DEVICE_PASSWORD || password.length > 256))
      throw new CredentialError('GW_ERR_MQTT_CLIENT_INVALID', `a device password must be ${MIN_DEVICE_PASSWORD}-256 characters`);
    const pw = password ?? generateDevicePassword();
    const hash = await hashDevicePassword(pw);
    return this.update((d) => {
      const old = entry(d, clientId);
      if (old && !old.revokedAt) throw new CredentialError('GW_ERR_MQTT_CLIENT_EXISTS', `MQTT client '${clientId}' exists (revoke it first to replace its password)`);
      const rec = { clientId, createdAt: new Date().toISOString(), hash };
      Object.defineProperty(d.clients, clientId, { value: rec, enumerable: true, writable: true, configurable: true });
      return { client: { clientId, createdAt: rec.createdAt }, password: pw, generated: password === undefined };
    });
  }

  async revoke(clientId: string): Promise<MqttClientRecord> {
    checkClientId(clientId);
    return this.update((d) => {
      const c = entry(d, clientId);
      if (!c || c.revokedAt) throw new CredentialError('GW_ERR_MQTT_CLIENT_NOT_FOUND', `no active MQTT client '${clientId}'`);
      c.revokedAt = new Date().toISOString();
      c.hash = ''; // nothing left to verify against
      return { clientId, createdAt: c.createdAt, revokedAt: c.revokedAt };
    });
  }

  list(): MqttClientRecord[] {
    return Object.values(this.read().clients)
      .map(({ hash: _h, ...r }) => r)
      .sort((a, b) => a.clientId.localeCompare(b.clientId));
  }

  isActive(clientId: string): boolean {
    const c = entry(this.read(), clientId);
    return !!c && !c.revokedAt;
  }

  /** true when the client exists, is not revoked and the password matches. */
  async verify(clientId: string, password: string): Promise<boolean> {
    let c;
    try {
      c = entry(this.read(), clientId);
    } catch {
      return false;
    }
    if (!c || c.revokedAt || !c.hash) return false;
    const key = createHash('sha256').update(clientId).update('\0').update(password).update('\0').update(c.hash).digest('base64');
    const until = this.verified.get(key);
    if (until !== undefined && until > Date.now()) return true;
    if (!(await verifyDevicePassword(password, c.hash))) return false;
    if (this.verified.size >= VERIFIED_MAX) this.verified.clear();
    this.verified.set(key, Date.now() + VERIFIED_TTL_MS);
    return true;
  }
}
