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

export function createRootLogger(level: LogLevel = 'info', destination?: pino.DestinationStream): Logger {
  const redactPhi = level !== 'debug' && level !== 'trace';
  const opts: LoggerOptions = {
    level,
    base: { pid: process.pid },
    timestamp: pino.stdTimeFunctions.isoTime,
    formatters: { level: (label) => ({ level: label }) },
    redact: redactPhi ? { paths: PHI_PATHS, censor: '[PHI]' } : undefined,
  };
  root = destination ? pino(opts, destination) : pino(opts);
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
