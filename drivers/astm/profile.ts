/**
 * ASTM device profiles: data in `firmware-config/profiles/astm/*.json` (architecture §4: a new
 * analyzer model is a new profile file, not new code). Vendor differences live here, never in
 * `if (vendor)` (conventions §12).
 */
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, type ConfigProblem } from '../../gateway/src/contracts/errors';
import { DEFAULT_LINK_OPTIONS, type LinkOptions } from './link-options';

export interface CodeMapEntry {
  system: string; // 'http://loinc.org' | HIS coding system
  code: string;
  display?: string;
  /** UCUM unit to report for this test (overrides unitMap). */
  ucum?: string;
}

export interface AstmSerialDefaults {
  baudRate: number;
  dataBits: 7 | 8;
  parity: 'none' | 'even' | 'odd';
  stopBits: 1 | 2;
  rtscts: boolean;
  xon: boolean;
}

export interface AstmProfile {
  id: string;
  name: string;
  /** Models covered (documentation). */
  models?: string[];
  /** Byte decoding of record text (LIS01-A2 §4.3 allows multi-byte by agreement). Default latin1. */
  encoding: 'latin1' | 'utf8' | 'ascii';
  serial: AstmSerialDefaults;
  /** Typical network role of the analyzer: 'server' (gateway dials) or 'client' (gateway listens). */
  tcpRole?: 'server' | 'client';
  link: Partial<LinkOptions>;
  records: {
    /** Component of the universal test ID holding the local code (Sysmex 5, generic/Roche 4, Mindray 1). */
    testIdComponent: number;
    /** Roche: the code ends at this separator (`^^^717/`). */
    testIdSeparator?: string;
    /** Component of R.4 holding the value (Mindray sends `2.83^^^^`). Default 1. */
    valueComponent: number;
    /** Component of O.4 holding the instrument's sample number (Sysmex `rack^tube^sample`). Default 1. */
    instrumentSpecimenIdComponent: number;
    /** Status when R.9 is empty (Maglumi leaves it blank). */
    defaultResultStatus?: 'final' | 'preliminary' | 'unknown';
    /** Offset appended to local timestamps, e.g. '+07:00'. Absent: local time without offset. */
    utcOffset?: string;
    /** Coding system for unmapped local codes. Default 'local'. */
    localCodeSystem: string;
  };
  query: {
    /** Component of each Q.3 repeat holding the specimen ID. Default 2 (`patientID^specimenID`). */
    specimenComponent: number;
    /** Component of Q.3 holding the patient ID. Default 1. */
    patientComponent: number;
    /** Test ID layout in order records we send; `{code}` is replaced. Default from testIdComponent. */
    orderTestIdTemplate?: string;
    /** No order on file: `L|1|I` ('terminator') or an O record with O.26 Y/Z ('order-record'). */
    noInfoStyle: 'terminator' | 'order-record';
    /** H.5 of our replies (the gateway's name). */
    senderName: string;
  };
  /** Device unit → UCUM. */
  unitMap: Record<string, string>;
  /** Local test code → LOINC/HIS code. */
  codeMap: Record<string, CodeMapEntry>;
}

export const DEFAULT_SERIAL: AstmSerialDefaults = { baudRate: 9600, dataBits: 8, parity: 'none', stopBits: 1, rtscts: false, xon: false };

/** Fill defaults; assumes `validateProfile` returned no problems. */
export function normalizeProfile(obj: unknown): AstmProfile {
  const o = (obj ?? {}) as Record<string, any>;
  return {
    id: o.id,
    name: o.name ?? o.id,
    models: o.models,
    encoding: o.encoding ?? 'latin1',
    serial: { ...DEFAULT_SERIAL, ...(o.serial ?? {}) },
    tcpRole: o.tcpRole,
    link: { ...(o.link ?? {}) },
    records: {
      testIdComponent: 4,
      valueComponent: 1,
      instrumentSpecimenIdComponent: 1,
      localCodeSystem: 'local',
      ...(o.records ?? {}),
    },
    query: { specimenComponent: 2, patientComponent: 1, noInfoStyle: 'terminator', senderName: 'IOMT-GW', ...(o.query ?? {}) },
    unitMap: { ...(o.unitMap ?? {}) },
    codeMap: { ...(o.codeMap ?? {}) },
  };
}

/** The generic LIS2-A2 profile used when none is given (strict link, `^^^CODE`). */
export function defaultProfile(): AstmProfile {
  return normalizeProfile({ id: 'generic' });
}

type Check = (v: unknown) => string | undefined;
const isBool: Check = (v) => (typeof v === 'boolean' ? undefined : 'must be true or false');
const isPosInt: Check = (v) => (Number.isInteger(v) && (v as number) > 0 ? undefined : 'must be a positive integer');
const isStr: Check = (v) => (typeof v === 'string' && v.length > 0 ? undefined : 'must be a non-empty string');
const oneOf =
  (...vals: unknown[]): Check =>
  (v) =>
    vals.includes(v) ? undefined : `must be one of ${vals.map((x) => JSON.stringify(x)).join(', ')}`;

const LINK_CHECKS: Record<keyof LinkOptions, Check> = {
  role: oneOf('computer', 'instrument'),
  multipleRecordsPerFrame: isBool,
  oversizeSingleFrame: isBool,
  frameNumberStart: oneOf('one', 'zero-or-one', 'any'),
  missingLfTolerated: isBool,
  crlfRecordTerminator: isBool,
  noChecksum: isBool,
  rawRecords: isBool,
  maxFrameBytes: (v) => isPosInt(v) ?? ((v as number) < 16 || (v as number) > 1_000_000 ? 'must be between 16 and 1000000' : undefined),
  maxSendTextBytes: (v) => isPosInt(v) ?? ((v as number) > 63_993 ? 'must be at most 63993 (LIS01-A2)' : undefined),
  maxMessageBytes: isPosInt,
  replyTimeoutMs: isPosInt,
  establishTimeoutMs: isPosInt,
  frameReceiveTimeoutMs: isPosInt,
  busyRetryMs: (v) => isPosInt(v) ?? ((v as number) < 10_000 ? 'must be at least 10000 (LIS01 §1.3.1: wait ≥10 s)' : undefined),
  maxEnqAttempts: isPosInt,
  maxFrameRetries: isPosInt,
  contentionBackoffMs: isPosInt,
  interruptHoldoffMs: isPosInt,
  maxInterruptResends: (v) => (Number.isInteger(v) && (v as number) >= 0 ? undefined : 'must be an integer >= 0'),
};

/** Every problem with file, path and reason (architecture §4); empty when the profile is valid. */
export function validateProfile(obj: unknown, file: string): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const add = (path: string, reason: string): void => void problems.push({ file, path, reason });
  if (!obj || typeof obj !== 'object' || Array.isArray(obj)) {
    add('', 'profile must be a JSON object');
    return problems;
  }
  const o = obj as Record<string, any>;
  const known = new Set(['$comment', 'id', 'name', 'models', 'encoding', 'serial', 'tcpRole', 'link', 'records', 'query', 'unitMap', 'codeMap']);
  for (const k of Object.keys(o)) if (!known.has(k)) add(k, 'unknown property');
  if (typeof o.id !== 'string' || !/^[a-z0-9][a-z0-9-]*$/.test(o.id)) add('id', 'must be a kebab-case string');
  if (o.name !== undefined && typeof o.name !== 'string') add('name', 'must be a string');
  if (o.models !== undefined && (!Array.isArray(o.models) || o.models.some((m: unknown) => typeof m !== 'string'))) add('models', 'must be an array of strings');
  if (o.encoding !== undefined && oneOf('latin1', 'utf8', 'ascii')(o.encoding)) add('encoding', oneOf('latin1', 'utf8', 'ascii')(o.encoding)!);
  if (o.tcpRole !== undefined && oneOf('server', 'client')(o.tcpRole)) add('tcpRole', oneOf('server', 'client')(o.tcpRole)!);
  const section = (name: string, checks: Record<string, Check>): void => {
    const s = o[name];
    if (s === undefined) return;
    if (!s || typeof s !== 'object' || Array.isArray(s)) return add(name, 'must be an object');
    for (const [k, v] of Object.entries(s)) {
      if (k === '$comment') continue;
      const c = checks[k];
      if (!c) add(`${name}.${k}`, 'unknown property');
      else {
        const r = c(v);
        if (r) add(`${name}.${k}`, r);
      }
    }
  };
  section('serial', {
    baudRate: (v) => oneOf(300, 600, 1200, 2400, 4800, 9600, 19200, 38400, 57600, 115200)(v),
    dataBits: oneOf(7, 8),
    parity: oneOf('none', 'even', 'odd'),
    stopBits: oneOf(1, 2),
    rtscts: isBool,
    xon: isBool,
  });
  section('link', LINK_CHECKS as Record<string, Check>);
  if (o.link?.rawRecords === true && o.link?.noChecksum === true) add('link.rawRecords', 'rawRecords and noChecksum exclude each other');
  section('records', {
    testIdComponent: (v) => isPosInt(v) ?? ((v as number) > 10 ? 'must be at most 10' : undefined),
    testIdSeparator: (v) => (typeof v === 'string' && v.length === 1 ? undefined : 'must be one character'),
    valueComponent: isPosInt,
    instrumentSpecimenIdComponent: isPosInt,
    defaultResultStatus: oneOf('final', 'preliminary', 'unknown'),
    utcOffset: (v) => (typeof v === 'string' && /^[+-]\d{2}:\d{2}$/.test(v) ? undefined : "must look like '+07:00'"),
    localCodeSystem: isStr,
  });
  section('query', {
    specimenComponent: isPosInt,
    patientComponent: isPosInt,
    orderTestIdTemplate: (v) => (typeof v === 'string' && v.includes('{code}') ? undefined : "must contain '{code}'"),
    noInfoStyle: oneOf('terminator', 'order-record'),
    senderName: isStr,
  });
  for (const mapName of ['unitMap', 'codeMap'] as const) {
    const m = o[mapName];
    if (m === undefined) continue;
    if (!m || typeof m !== 'object' || Array.isArray(m)) {
      add(mapName, 'must be an object');
      continue;
    }
    for (const [k, v] of Object.entries(m)) {
      if (k === '$comment') continue;
      const p = `${mapName}.${k}`;
      if (mapName === 'unitMap') {
        if (typeof v !== 'string' || !v) add(p, 'must be a non-empty UCUM string');
        continue;
      }
      if (!v || typeof v !== 'object' || Array.isArray(v)) {
        add(p, 'must be an object {system, code, display?, ucum?}');
        continue;
      }
      const e = v as Record<string, unknown>;
      if (typeof e.system !== 'string' || !e.system) add(`${p}.system`, 'must be a non-empty string');
      if (typeof e.code !== 'string' || !e.code) add(`${p}.code`, 'must be a non-empty string');
      if (e.display !== undefined && typeof e.display !== 'string') add(`${p}.display`, 'must be a string');
      if (e.ucum !== undefined && (typeof e.ucum !== 'string' || !e.ucum)) add(`${p}.ucum`, 'must be a non-empty string');
      for (const x of Object.keys(e)) if (!['system', 'code', 'display', 'ucum'].includes(x)) add(`${p}.${x}`, 'unknown property');
    }
  }
  return problems;
}

/** Validate every `*.json` in `dir` (for `iomt-gateway check-config`). Also flags duplicate ids. */
export function checkProfileDir(dir: string): ConfigProblem[] {
  return readProfileDir(dir).problems;
}

function readProfileDir(dir: string): { profiles: Map<string, AstmProfile>; problems: ConfigProblem[] } {
  const profiles = new Map<string, AstmProfile>();
  const problems: ConfigProblem[] = [];
  if (!existsSync(dir)) return { profiles, problems: [{ file: dir, path: '', reason: 'profile directory does not exist' }] };
  const seen = new Map<string, string>();
  for (const name of readdirSync(dir).filter((f) => f.endsWith('.json')).sort()) {
    const file = join(dir, name);
    let obj: unknown;
    try {
      obj = JSON.parse(readFileSync(file, 'utf8'));
    } catch (e) {
      problems.push({ file, path: '', reason: `invalid JSON: ${(e as Error).message}` });
      continue;
    }
    const p = validateProfile(obj, file);
    problems.push(...p);
    if (p.length) continue;
    const prof = normalizeProfile(obj);
    if (seen.has(prof.id)) {
      problems.push({ file, path: 'id', reason: `duplicate profile id '${prof.id}' (also in ${seen.get(prof.id)})` });
      continue;
    }
    seen.set(prof.id, file);
    profiles.set(prof.id, prof);
  }
  return { profiles, problems };
}

/** Load and validate all profiles; throws ConfigError listing every problem at once. */
export function loadProfiles(dir: string): Map<string, AstmProfile> {
  const { profiles, problems } = readProfileDir(dir);
  if (problems.length) throw new ConfigError(problems);
  return profiles;
}

export { DEFAULT_LINK_OPTIONS };
