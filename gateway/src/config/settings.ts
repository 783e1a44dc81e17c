import { existsSync, readFileSync } from 'node:fs';
import { resolve, dirname } from 'node:path';
import { ConfigError, type ConfigProblem } from '../contracts/errors';
import type { LogLevel } from '../log/logger';
import type { RetentionPolicy } from '../contracts/store';
import { auditRetentionDays } from '../audit/audit-log';
import { sessionOptionsFromEnv } from '../http/sessions';
import { inflightBudgetBytes } from '../pipeline/memory-budget';

/**
 * Gateway settings: one JSON file plus IOMT_* environment overrides (balena device variables).
 * The environment variable names are a public interface: keep them.
 */
export interface GatewaySettings {
  dataDir: string;
  http: {
    host: string;
    port: number;
    /**
     * HTTPS (issue 10 §6). certFile/keyFile: the site's certificate (PEM); without them the
     * gateway makes a self-signed one in `<dataDir>/tls` (tls/self-signed.ts). caFile +
     * requireClientCert: mutual TLS, only clients with a certificate from that CA get in.
     */
    tls?: { certFile?: string; keyFile?: string; caFile?: string; requireClientCert?: boolean };
    /** Plain HTTP although the port listens beyond loopback (IOMT_HTTP_INSECURE=true); default false: HTTPS. */
    insecure?: boolean;
    /** Require the admin login on /metrics too (default false: Prometheus scrapes without it). */
    metricsAuth: boolean;
  };
  admin: { user: string; password?: string; passwordHash?: string };
  logLevel: LogLevel;
  store: { maxDbBytes: number; deferredHoldMs?: number };
  retention: RetentionPolicy & { intervalMinutes: number };
  /** HIS/LIS order cache (host queries): orders unchanged this long are dropped. */
  orders: { expiryDays: number };
  /** Editor on/off: headless boxes may switch the editor off (runtime still runs). allowHostNodes: load exec/function/file/tcp/udp (embed.ts HOST_NODE_FILES). */
  editor: { enabled: boolean; allowHostNodes?: boolean };
  /** Where the settings came from, for messages. */
  source: string;
}

export const DEFAULT_SETTINGS: Omit<GatewaySettings, 'source'> = {
  dataDir: './data',
  http: { host: '0.0.0.0', port: 1880, metricsAuth: false },
  admin: { user: 'admin' },
  logLevel: 'info',
  store: { maxDbBytes: 0 },
  retention: { maxAgeDays: 30, maxBytes: 2 * 1024 ** 3, settledMaxAgeDays: 7, quarantineMaxAgeDays: 90, intervalMinutes: 60 },
  editor: { enabled: true },
  orders: { expiryDays: 7 },
};

/** Environment overrides: name → settings path and type. */
export const ENV_OVERRIDES: Array<{ env: string; path: string; type: 'string' | 'int' | 'bool' | 'level' }> = [
  { env: 'IOMT_DATA_DIR', path: 'dataDir', type: 'string' },
  { env: 'IOMT_HTTP_HOST', path: 'http.host', type: 'string' },
  { env: 'IOMT_HTTP_PORT', path: 'http.port', type: 'int' },
  { env: 'IOMT_HTTP_TLS_CERT', path: 'http.tls.certFile', type: 'string' },
  { env: 'IOMT_HTTP_TLS_KEY', path: 'http.tls.keyFile', type: 'string' },
  { env: 'IOMT_HTTP_TLS_CA', path: 'http.tls.caFile', type: 'string' },
  { env: 'IOMT_HTTP_TLS_REQUIRE_CLIENT_CERT', path: 'http.tls.requireClientCert', type: 'bool' },
  { env: 'IOMT_HTTP_INSECURE', path: 'http.insecure', type: 'bool' },
  { env: 'IOMT_EDITOR_ALLOW_HOST_NODES', path: 'editor.allowHostNodes', type: 'bool' },
  { env: 'IOMT_METRICS_AUTH', path: 'http.metricsAuth', type: 'bool' },
  { env: 'IOMT_ADMIN_USER', path: 'admin.user', type: 'string' },
  { env: 'IOMT_ADMIN_PASSWORD', path: 'admin.password', type: 'string' },
  { env: 'IOMT_ADMIN_PASSWORD_HASH', path: 'admin.passwordHash', type: 'string' },
  { env: 'IOMT_LOG_LEVEL', path: 'logLevel', type: 'level' },
  { env: 'IOMT_STORE_MAX_BYTES', path: 'store.maxDbBytes', type: 'int' },
  { env: 'IOMT_STORE_DEFERRED_HOLD_MS', path: 'store.deferredHoldMs', type: 'int' },
  { env: 'IOMT_RETENTION_MAX_AGE_DAYS', path: 'retention.maxAgeDays', type: 'int' },
  { env: 'IOMT_RETENTION_MAX_BYTES', path: 'retention.maxBytes', type: 'int' },
  { env: 'IOMT_EDITOR', path: 'editor.enabled', type: 'bool' },
  { env: 'IOMT_ORDER_EXPIRY_DAYS', path: 'orders.expiryDays', type: 'int' },
];

const LEVELS = ['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent'];

function setPath(obj: Record<string, unknown>, path: string, value: unknown): void {
  const parts = path.split('.');
  let cur = obj;
  for (const p of parts.slice(0, -1)) {
    if (typeof cur[p] !== 'object' || cur[p] === null) cur[p] = {};
    cur = cur[p] as Record<string, unknown>;
  }
  cur[parts[parts.length - 1]] = value;
}

function deepMerge<T>(base: T, over: unknown): T {
  if (typeof over !== 'object' || over === null || Array.isArray(over)) return base;
  const out: Record<string, unknown> = { ...(base as Record<string, unknown>) };
  for (const [k, v] of Object.entries(over)) {
    const b = out[k];
    out[k] = typeof b === 'object' && b !== null && !Array.isArray(b) && typeof v === 'object' && v !== null ? deepMerge(b, v) : v;
  }
  return out as T;
}

/**
 * Load settings: defaults ← settings file ← environment. Every problem is collected and thrown
 * at once as ConfigError (file, path, reason).
 */
export function loadSettings(opts: { file?: string; env?: NodeJS.ProcessEnv; cwd?: string } = {}): GatewaySettings {
  const env = opts.env ?? process.env;
  const cwd = opts.cwd ?? process.cwd();
  const problems: ConfigProblem[] = [];
  let fromFile: unknown = {};
  const source = opts.file ? resolve(cwd, opts.file) : '(defaults)';
  if (opts.file) {
    if (!existsSync(source)) problems.push({ file: source, path: '', reason: 'settings file not found' });
    else {
      try {
        fromFile = JSON.parse(readFileSync(source, 'utf8'));
      } catch (e) {
        problems.push({ file: source, path: '', reason: `not valid JSON: ${(e as Error).message}` });
      }
    }
  }
  const s = deepMerge(structuredClone(DEFAULT_SETTINGS), fromFile) as unknown as Record<string, unknown>;
  for (const o of ENV_OVERRIDES) {
    const raw = env[o.env];
    if (raw === undefined || raw === '') continue;
    if (o.type === 'int') {
      if (!/^\d+$/.test(raw.trim())) {
        problems.push({ file: `env ${o.env}`, path: o.path, reason: `must be a whole number, got '${raw}'` });
        continue;
      }
      setPath(s, o.path, Number(raw));
    } else if (o.type === 'bool') setPath(s, o.path, /^(1|true|yes|on)$/i.test(raw));
    else if (o.type === 'level') {
      if (!LEVELS.includes(raw)) problems.push({ file: `env ${o.env}`, path: o.path, reason: `must be one of ${LEVELS.join(', ')}` });
      else setPath(s, o.path, raw);
    } else setPath(s, o.path, raw);
  }
  // read where they are used (audit/audit-log.ts, http/sessions.ts); checked here too, with the same
  // parsers, so that check-config reports a bad value and run refuses it
  for (const [name, check] of [
    ['IOMT_AUDIT_RETENTION_DAYS', () => auditRetentionDays(env)],
    ['IOMT_SESSION_IDLE_MINUTES / IOMT_SESSION_MAX_HOURS', () => sessionOptionsFromEnv(env)],
    ['IOMT_INFLIGHT_MAX_BYTES', () => inflightBudgetBytes(env)],
  ] as const) {
    try {
      check();
    } catch (e) {
      problems.push({ file: `env ${name}`, path: '', reason: (e as Error).message });
    }
  }
  const settings = { ...(s as unknown as GatewaySettings), source };
  problems.push(...validateSettings(settings, source));
  if (problems.length) throw new ConfigError(problems);
  // Relative paths are relative to the settings file (or the cwd for env/defaults).
  const base = opts.file ? dirname(source) : cwd;
  settings.dataDir = resolve(env.IOMT_DATA_DIR ? cwd : base, settings.dataDir);
  if (settings.http.tls) {
    if (settings.http.tls.certFile) settings.http.tls.certFile = resolve(base, settings.http.tls.certFile);
    if (settings.http.tls.keyFile) settings.http.tls.keyFile = resolve(base, settings.http.tls.keyFile);
    if (settings.http.tls.caFile) settings.http.tls.caFile = resolve(base, settings.http.tls.caFile);
  }
  return settings;
}

export function validateSettings(s: GatewaySettings, file: string): ConfigProblem[] {
  const p: ConfigProblem[] = [];
  const bad = (path: string, reason: string) => p.push({ file, path, reason });
  if (typeof s.dataDir !== 'string' || !s.dataDir) bad('dataDir', 'must be a non-empty path');
  if (!Number.isInteger(s.http?.port) || s.http.port < 0 || s.http.port > 65535) bad('http.port', 'must be a port number 0..65535');
  if (typeof s.http?.host !== 'string') bad('http.host', 'must be a host name or address');
  if (s.http?.tls) {
    const own = s.http.tls.certFile !== undefined || s.http.tls.keyFile !== undefined; // else the generated certificate
    for (const k of own ? (['certFile', 'keyFile', 'caFile'] as const) : (['caFile'] as const)) {
      const f = s.http.tls[k];
      if (k === 'caFile' && f === undefined) continue;
      if (typeof f !== 'string' || !f) bad(`http.tls.${k}`, 'required with the other of http.tls.certFile / keyFile');
      else if (!existsSync(resolve(file === '(defaults)' ? process.cwd() : dirname(file), f))) bad(`http.tls.${k}`, `file not found: ${f}`);
    }
    if (s.http.tls.requireClientCert && !s.http.tls.caFile) bad('http.tls.requireClientCert', 'needs http.tls.caFile (IOMT_HTTP_TLS_CA): the CA of the client certificates');
  }
  if (typeof s.admin?.user !== 'string' || !/^[A-Za-z0-9._-]{1,64}$/.test(s.admin.user)) bad('admin.user', 'must be 1-64 letters, digits, . _ -');
  if (s.admin?.password !== undefined && String(s.admin.password).length < 8) bad('admin.password', 'must be at least 8 characters');
  if (s.admin?.passwordHash !== undefined && !/^\$2[aby]\$\d\d\$.{53}$/.test(s.admin.passwordHash)) bad('admin.passwordHash', 'must be a bcrypt hash ($2b$10$...)');
  if (!LEVELS.includes(s.logLevel)) bad('logLevel', `must be one of ${LEVELS.join(', ')}`);
  const r = s.retention;
  for (const k of ['maxAgeDays', 'maxBytes', 'settledMaxAgeDays', 'quarantineMaxAgeDays', 'intervalMinutes'] as const) {
    if (!Number.isFinite(r?.[k]) || r[k] < 0) bad(`retention.${k}`, 'must be a number >= 0');
  }
  if (!Number.isFinite(s.orders?.expiryDays) || s.orders.expiryDays < 1) bad('orders.expiryDays', 'must be a whole number of days >= 1');
  if (!Number.isFinite(s.store?.maxDbBytes) || s.store.maxDbBytes < 0) bad('store.maxDbBytes', 'must be a number >= 0 (0 = no quota)');
  if (s.store?.deferredHoldMs !== undefined && (!Number.isInteger(s.store.deferredHoldMs) || s.store.deferredHoldMs < 0 || s.store.deferredHoldMs > 100)) bad('store.deferredHoldMs', 'must be an integer 0-100 (ms)');
  return p;
}
