/**
 * ASTM device profiles: data in `firmware-config/profiles/astm/*.json` (architecture §4: a new
 * analyzer model is a new profile file, not new code). Vendor differences live here, never in
 * `if (vendor)` (conventions §12).
 */
import { readFileSync, readdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, type ConfigProblem } from '../../gateway/src/contracts/errors';
import { CHARSET_NAMES, isSupportedCharset, type CharsetName } from '../../gateway/src/charset/charset';
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

/**
 * Where the parts of the universal test ID (R.3, O.5, Q.5; LIS02 §10.1.3 `^^^code`) sit for one device.
 * Components are 1-based. Results that differ in a qualifier stay distinct (issue 8 §6):
 * - `aspect` and `analyte` are part of the result's identity: appended to the local code with
 *   `qualifierSeparator` (ARCHITECT `0021` final, `0021:I` interpretation, `0021:P` raw signal;
 *   GeneXpert `HIVVL:HIV-1:Ct`). An HIS maps these codes like any other local code.
 * - `dilution` and `replicate` do not change what was measured: they go to the sub-ID (OBX-4,
 *   HL7 v2.5.1 7.4.2.4), e.g. `D1:10`, `R2`, `D1:10.R2`, so a diluted repeat keeps the test's code.
 */
export interface TestIdLayout {
  /** Component holding the local test code (generic/Roche/ARCHITECT 4, Sysmex 5, Mindray 1). */
  codeComponent: number;
  /** Component holding the test name (display). Default 2 (LIS02 `code^name^type^local`), none when the code is in 2. */
  nameComponent?: number;
  /** The code ends at this character; what follows is the dilution (Roche `^^^717/`, `^^^717/2`). */
  separator?: string;
  qualifierComponents?: {
    /** Result aspect (ARCHITECT 11: F final, I interpretation, P raw signal; GeneXpert 8: '', Ct, EndPt, LOG). */
    aspect?: number;
    /** Analyte / complementary result within a test (GeneXpert 7: SARS-CoV-2, SPC, HIV-1). */
    analyte?: number;
    /** Dilution (Sysmex 6, ARCHITECT 6). */
    dilution?: number;
    /** Replicate number. */
    replicate?: number;
  };
  /** Aspect values that are the result itself (no suffix on the code). Default ['', 'F']. */
  primaryAspects: string[];
  /** Dilution values that mean "not diluted" (no sub-ID). Default ['', '1', '0', 'UNDILUTED', 'NEAT', '1:1']. */
  neatDilutions: string[];
  /** When this component is non-empty the record is the test's main result: its analyte is not added to the code (GeneXpert 5, assay name). */
  mainResultComponent?: number;
  /** Between the code and its qualifiers. Default ':' (not an HL7 or ASTM delimiter). */
  qualifierSeparator: string;
}

/** Charsets a profile may name as fallback (gateway/src/charset CharsetName). */
/** Any charset of gateway/src/charset (utf8, latin1, windows-1252, windows-1258, viscii, tcvn3, tcvn5712, ascii, gb18030 …). */
export type FallbackEncoding = CharsetName;

export interface AstmProfile {
  id: string;
  name: string;
  /** Models covered (documentation). */
  models?: string[];
  /** Byte decoding of record text. Default 'utf8' (LIS01-A2 §4.3 allows multi-byte characters by agreement; issue 8 §4). */
  encoding: CharsetName;
  /** Charset for bytes invalid in `encoding` (decoded with it and flagged `charset-fallback`). Absent: such a message is quarantined. */
  fallbackEncoding?: FallbackEncoding;
  /** Fold names to ASCII in order answers sent to this analyzer (it cannot render diacritics). Default false. */
  asciiFold: boolean;
  /**
   * Strict (issue 8 part 2, for sites that want it): a message with any content fault (a flagged or
   * withheld result) goes to quarantine whole, with the reasons, instead of being stored with flags.
   * ASTM has no negative application ACK: the analyzer is ACKed after the quarantine commit. Default false.
   */
  strict: boolean;
  serial: AstmSerialDefaults;
  /** Typical network role of the analyzer: 'server' (gateway dials) or 'client' (gateway listens). */
  tcpRole?: 'server' | 'client';
  link: Partial<LinkOptions>;
  records: {
    /** Test ID layout (normalized from `testId` or the older `testIdComponent`/`testIdSeparator`). */
    testId: TestIdLayout;
    /** = testId.codeComponent (kept for order templates). */
    testIdComponent: number;
    /** = testId.separator. */
    testIdSeparator?: string;
    /** Component of R.4 holding the value (Mindray sends `2.83^^^^`). Default 1. */
    valueComponent: number;
    /** Components of R.4 tried in order, the first non-empty is the value (GeneXpert `POS^` / `^31.2`: [1, 2]). Default [valueComponent]. */
    valueComponents: number[];
    /** Component of O.4 holding the instrument's sample number (Sysmex `rack^tube^sample`). Default 1. */
    instrumentSpecimenIdComponent: number;
    /** Status when R.9 is empty (Maglumi leaves it blank). Absent: HL7 R + flag `unknown-status`. */
    defaultResultStatus?: 'final' | 'preliminary' | 'unknown';
    /** Offset appended to local timestamps, e.g. '+07:00'. Absent: local time without offset. */
    utcOffset?: string;
    /** Coding system for unmapped local codes. Default 'local'. */
    localCodeSystem: string;
    /** Raw instrument signals (RLU, OD, Ct ...): withheld from the drafts unless `forward` (then flagged `raw-signal`). */
    rawSignal: { aspectValues: string[]; units: string[]; forward: boolean };
    /** HL7 Table 0203 identifier type of P.3 (practice-assigned), P.4 (laboratory-assigned), P.5 (patient ID #3). Default MR, PI, PT. */
    patientIdTypes: { practice: string; laboratory: string; third: string };
    /** HL7 Table 0487 specimen type when O.16 is empty or not in `specimenTypeMap`. */
    defaultSpecimenType?: string;
    /** O field holding the specimen descriptor `type^source`. Default 16 (LIS02 O.16); a device that puts it in O.5 gets no service from O.5. */
    specimenDescriptorField: number;
    /**
     * R.5 values that are not units but a unit-system number (Horiba Pentra sends '1'): the result then
     * carries no unit (never a wrong one such as UCUM '1', "dimensionless"), and the R.5 text is kept as
     * a comment. Default none.
     */
    unitSystemValues?: string[];
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
  /** O.16 specimen descriptor component 1 (device value) → HL7 Table 0487 code (WB → BLD, SER → SER, URI → UR). */
  specimenTypeMap: Record<string, string>;
}

export const DEFAULT_SERIAL: AstmSerialDefaults = { baudRate: 9600, dataBits: 8, parity: 'none', stopBits: 1, rtscts: false, xon: false };

/** Fill defaults; assumes `validateProfile` returned no problems. */
export function normalizeProfile(obj: unknown): AstmProfile {
  const o = (obj ?? {}) as Record<string, any>;
  const r = (o.records ?? {}) as Record<string, any>;
  const t = (r.testId ?? {}) as Record<string, any>;
  const codeComponent: number = t.codeComponent ?? r.testIdComponent ?? 4;
  const separator: string | undefined = t.separator ?? r.testIdSeparator;
  const testId: TestIdLayout = {
    codeComponent,
    ...(t.nameComponent !== undefined ? { nameComponent: t.nameComponent } : codeComponent !== 2 ? { nameComponent: 2 } : {}),
    ...(separator !== undefined ? { separator } : {}),
    ...(t.qualifierComponents ? { qualifierComponents: { ...t.qualifierComponents } } : {}),
    primaryAspects: t.primaryAspects ?? ['', 'F'],
    neatDilutions: t.neatDilutions ?? ['', '1', '0', 'UNDILUTED', 'NEAT', '1:1'],
    ...(t.mainResultComponent !== undefined ? { mainResultComponent: t.mainResultComponent } : {}),
    qualifierSeparator: t.qualifierSeparator ?? ':',
  };
  const vc: number[] = Array.isArray(r.valueComponent) ? r.valueComponent : [r.valueComponent ?? 1];
  const { testId: _t, testIdComponent: _c, testIdSeparator: _s, valueComponent: _v, rawSignal, patientIdTypes, ...rest } = r;
  return {
    id: o.id,
    name: o.name ?? o.id,
    models: o.models,
    encoding: o.encoding ?? 'utf8',
    ...(o.fallbackEncoding !== undefined ? { fallbackEncoding: o.fallbackEncoding } : {}),
    asciiFold: o.asciiFold ?? false,
    strict: o.strict ?? false,
    serial: { ...DEFAULT_SERIAL, ...(o.serial ?? {}) },
    tcpRole: o.tcpRole,
    link: { ...(o.link ?? {}) },
    records: {
      instrumentSpecimenIdComponent: 1,
      localCodeSystem: 'local',
      specimenDescriptorField: 16,
      ...rest,
      testId,
      testIdComponent: codeComponent,
      ...(separator !== undefined ? { testIdSeparator: separator } : {}),
      valueComponent: vc[0],
      valueComponents: vc,
      rawSignal: { aspectValues: [], units: [], forward: false, ...(rawSignal ?? {}) },
      patientIdTypes: { practice: 'MR', laboratory: 'PI', third: 'PT', ...(patientIdTypes ?? {}) },
    },
    query: { specimenComponent: 2, patientComponent: 1, noInfoStyle: 'terminator', senderName: 'IOMT-GW', ...(o.query ?? {}) },
    unitMap: { ...(o.unitMap ?? {}) },
    codeMap: { ...(o.codeMap ?? {}) },
    specimenTypeMap: { ...(o.specimenTypeMap ?? {}) },
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
const isComponent: Check = (v) => isPosInt(v) ?? ((v as number) > 30 ? 'must be at most 30' : undefined);
const isOneChar: Check = (v) => (typeof v === 'string' && v.length === 1 ? undefined : 'must be one character');
const isStrList: Check = (v) => (Array.isArray(v) && v.every((x) => typeof x === 'string') ? undefined : 'must be an array of strings');
/** HL7 Table 0203 identifier type code (MR, PI, PT, NN<country> ...): upper-case letters and digits. */
const isTable0203: Check = (v) => (typeof v === 'string' && /^[A-Z][A-Z0-9]{0,9}$/.test(v) ? undefined : 'must be an HL7 Table 0203 code (e.g. MR, PI, PT)');
/** HL7 Table 0487 specimen type code (BLD, SER, PLAS, UR ...): upper-case letters and digits. */
const isTable0487: Check = (v) => (typeof v === 'string' && /^[A-Z][A-Z0-9]{0,9}$/.test(v) ? undefined : 'must be an HL7 Table 0487 code (e.g. BLD, SER, UR)');
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
  const known = new Set(['$comment', 'id', 'name', 'models', 'encoding', 'fallbackEncoding', 'asciiFold', 'strict', 'serial', 'tcpRole', 'link', 'records', 'query', 'unitMap', 'codeMap', 'specimenTypeMap']);
  for (const k of Object.keys(o)) if (!known.has(k)) add(k, 'unknown property');
  if (typeof o.id !== 'string' || !/^[a-z0-9][a-z0-9-]*$/.test(o.id)) add('id', 'must be a kebab-case string');
  if (o.name !== undefined && typeof o.name !== 'string') add('name', 'must be a string');
  if (o.models !== undefined && (!Array.isArray(o.models) || o.models.some((m: unknown) => typeof m !== 'string'))) add('models', 'must be an array of strings');
  // LIS01-A2 §4.3: the encoding is a bilateral agreement; the charset module decodes strictly (no silent U+FFFD)
  const charsetCheck: Check = (v) => (typeof v === 'string' && isSupportedCharset(v) ? undefined : `must be one of ${CHARSET_NAMES.join(', ')}`);
  if (o.encoding !== undefined && charsetCheck(o.encoding)) add('encoding', charsetCheck(o.encoding)!);
  if (o.fallbackEncoding !== undefined && charsetCheck(o.fallbackEncoding)) add('fallbackEncoding', charsetCheck(o.fallbackEncoding)!);
  if (o.asciiFold !== undefined && isBool(o.asciiFold)) add('asciiFold', isBool(o.asciiFold)!);
  if (o.strict !== undefined && isBool(o.strict)) add('strict', isBool(o.strict)!);
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
    testId: () => undefined, // checked below, property by property
    testIdComponent: isComponent,
    testIdSeparator: isOneChar,
    valueComponent: (v) => (Array.isArray(v) ? (v.length && v.every((x) => !isComponent(x)) ? undefined : 'must be a component number or a non-empty list of them') : isComponent(v)),
    instrumentSpecimenIdComponent: isPosInt,
    defaultResultStatus: oneOf('final', 'preliminary', 'unknown'),
    utcOffset: (v) => (typeof v === 'string' && /^[+-]\d{2}:\d{2}$/.test(v) ? undefined : "must look like '+07:00'"),
    localCodeSystem: isStr,
    rawSignal: () => undefined, // checked below
    patientIdTypes: () => undefined, // checked below
    defaultSpecimenType: isTable0487,
    specimenDescriptorField: isComponent,
    unitSystemValues: isStrList,
  });
  const sub = (path: string, v: unknown, checks: Record<string, Check>, required: string[] = []): void => {
    if (v === undefined) return;
    if (!v || typeof v !== 'object' || Array.isArray(v)) return add(path, 'must be an object');
    for (const [k, x] of Object.entries(v)) {
      if (k === '$comment') continue;
      const c = checks[k];
      if (!c) add(`${path}.${k}`, 'unknown property');
      else {
        const e = c(x);
        if (e) add(`${path}.${k}`, e);
      }
    }
    for (const k of required) if ((v as Record<string, unknown>)[k] === undefined) add(`${path}.${k}`, 'is required');
  };
  const rec = o.records && typeof o.records === 'object' ? (o.records as Record<string, unknown>) : {};
  if (rec.testId !== undefined && (rec.testIdComponent !== undefined || rec.testIdSeparator !== undefined)) add('records.testId', 'use either testId or testIdComponent/testIdSeparator, not both');
  sub('records.testId', rec.testId, {
    codeComponent: isComponent,
    nameComponent: isComponent,
    separator: isOneChar,
    qualifierComponents: () => undefined,
    primaryAspects: isStrList,
    neatDilutions: isStrList,
    mainResultComponent: isComponent,
    qualifierSeparator: isOneChar,
  }, ['codeComponent']);
  sub('records.testId.qualifierComponents', (rec.testId as Record<string, unknown> | undefined)?.qualifierComponents, { aspect: isComponent, analyte: isComponent, dilution: isComponent, replicate: isComponent });
  sub('records.rawSignal', rec.rawSignal, { aspectValues: isStrList, units: isStrList, forward: isBool }, ['forward']);
  sub('records.patientIdTypes', rec.patientIdTypes, { practice: isTable0203, laboratory: isTable0203, third: isTable0203 });
  const stm = o.specimenTypeMap;
  if (stm !== undefined) {
    if (!stm || typeof stm !== 'object' || Array.isArray(stm)) add('specimenTypeMap', 'must be an object');
    else for (const [k, v] of Object.entries(stm)) if (k !== '$comment' && isTable0487(v)) add(`specimenTypeMap.${k}`, isTable0487(v)!);
  }
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
