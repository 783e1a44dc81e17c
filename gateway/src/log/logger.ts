import pino, { type Logger, type LoggerOptions } from 'pino';

/**
 * One place where PHI is redacted (conventions §6). Components log through child loggers
 * `{component, deviceId}`. Any field listed here is censored at every level above debug;
 * at debug/trace they are kept so an engineer can diagnose on a box they own.
 */
export const PHI_PATHS = [
  'raw',
  'payload',
  'patientId',
  'patientName',
  'patientIds',
  'specimenId',
  'subject',
  'name',
  'dob',
  'birthDate',
  'text',
  'record',
  'segment',
  '*.raw',
  '*.payload',
  '*.patientId',
  '*.patientName',
  '*.specimenId',
  '*.subject',
  'msg.payload',
];

export type LogLevel = 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';

let root: Logger | undefined;
/** The log file stream when IOMT_LOG_FILE is set (SonicBoom, async writes). */
let fileDest: (pino.DestinationStream & { reopen(file?: string): void; flushSync(): void }) | undefined;
let fileDestPath: string | undefined;
let hupRegistered = false;

/**
 * Reopen the log file at its configured path (what SIGHUP does). logrotate renames the file, then
 * sends HUP; the next lines go to a new file at the original path. No-op without IOMT_LOG_FILE.
 * Exported so tests can call it without signalling the process.
 */
export function reopenLogFile(): void {
  fileDest?.reopen();
}

/**
 * Destination of the root logger: `IOMT_LOG_FILE` (path; parent directories are created) when set,
 * else stdout. The file is reopened on SIGHUP (packaging/logrotate/iomt-gateway).
 */
function defaultDestination(env: NodeJS.ProcessEnv): pino.DestinationStream | undefined {
  const file = env.IOMT_LOG_FILE?.trim();
  if (!file) return undefined;
  // One stream per path: loggers made earlier (child loggers cached by modules) keep writing to it.
  if (fileDest && fileDestPath === file) return fileDest;
  fileDest = pino.destination({ dest: file, mkdir: true, sync: false }) as typeof fileDest;
  fileDestPath = file;
  if (!hupRegistered) {
    hupRegistered = true;
    process.on('SIGHUP', reopenLogFile);
  }
  return fileDest;
}

/**
 * Create the process-wide root logger: JSON lines, PHI redacted above debug. Writes to
 * `destination` when given (tests), else to the file named by IOMT_LOG_FILE, else stdout.
 */
export function createRootLogger(
  level: LogLevel = 'info',
  destination?: pino.DestinationStream,
  env: NodeJS.ProcessEnv = process.env,
): Logger {
  const redactPhi = level !== 'debug' && level !== 'trace';
  const opts: LoggerOptions = {
    level,
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    redact: redactPhi ? { paths: PHI_PATHS, censor: '[PHI]' } : undefined,
  };
  const dest = destination ?? defaultDestination(env);
  root = dest ? pino(opts, dest) : pino(opts);
  return root;
}

export function rootLogger(): Logger {
  if (!root) root = createRootLogger((process.env.IOMT_LOG_LEVEL as LogLevel) || 'info');
  return root;
}

export function componentLogger(component: string, bindings: Record<string, unknown> = {}): Logger {
  return rootLogger().child({ component, ...bindings });
}

/**
 * Log state changes once, not on every retry (conventions §6): `changed(key, state)` returns true
 * only when the state for that key differs from the last one seen.
 */
export class StateChangeLog {
  private last = new Map<string, string>();
  changed(key: string, state: string): boolean {
    if (this.last.get(key) === state) return false;
    this.last.set(key, state);
    return true;
  }
}
