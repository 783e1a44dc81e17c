/**
 * The `iomt-astm-device` node's plain parts (kept out of the thin node file, conventions §11): the
 * profile set and the editor's lookup routes, configuration → AstmDriver options, the host query
 * answer (E1394 Q record, from the order cache) and the optional order download. A bad setting
 * throws NodeStartError (reason + short status detail): the node reports it and stays listed in error.
 */
import { existsSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { resolveEnvTemplate, resolveNumber } from '../../gateway/src/config/env-template';
import type { Logger } from 'pino';
import { addressOfRemote, isAllowed, parseAllowList } from '../../gateway/src/net/listener-guard';
import { NodeStartError, resolveBools } from '../../gateway/src/node-red/device-node';
import { ordersForAstmQuery, toAstmOrder } from '../../gateway/src/orders/astm-order-answer';
import type { OrderCache } from '../../gateway/src/orders/order-cache';
import { packageRoot } from '../../gateway/src/package-root';
import type { AstmDriverHooks, AstmTransportOptions } from './astm-driver';
import { listSerialPorts } from './node-red/serial-ports';
import type { AstmOrder } from './order-response';
import { defaultProfile, loadProfiles, type AstmProfile } from './profile';

export interface AstmDeviceConfig {
  id: string;
  name?: string;
  deviceId?: string;
  /** MA_MAY (issue 13): set on every result by withDeviceSettings. */
  machineCode?: string;
  profile?: string;
  transport?: 'serial' | 'tcp-server' | 'tcp-client' | string;
  serialPath?: string;
  baudRate?: string;
  dataBits?: string;
  parity?: string;
  stopBits?: string;
  flowControl?: string;
  tcpHost?: string;
  tcpPort?: string;
  allowFrom?: string;
  maxPerAddress?: string;
  answerQueries?: boolean | string;
  queryNameDob?: boolean | string;
  broadcastOrders?: boolean | string;
}

export interface AstmNodeSettings {
  profile: AstmProfile;
  transport: AstmTransportOptions;
  /** Issue 10 §3: who may get a host query answer (tcp-server only; serial and tcp-client: undefined, the configured analyzer). */
  queryFrom: ReturnType<typeof parseAllowList>;
  answerQueries: boolean;
  queryNameDob: boolean;
  broadcastOrders: boolean;
  /** Set on every result (withDeviceSettings); undefined when empty. */
  machineCode: string | undefined;
}

export function deviceIdOf(config: AstmDeviceConfig): string {
  return resolveEnvTemplate(config.deviceId).trim() || config.name || config.id;
}

/** Profiles are data (firmware-config/profiles/astm); IOMT_PROFILES_DIR adds a site's own directory. */
function profileDirs(): string[] {
  const dirs = [join(packageRoot(), 'firmware-config', 'profiles', 'astm')];
  if (process.env.IOMT_PROFILES_DIR) dirs.push(join(process.env.IOMT_PROFILES_DIR, 'astm'));
  return dirs.filter((d) => existsSync(d) && readdirSync(d).some((f) => f.endsWith('.json')));
}

/**
 * Every ASTM profile by id (a site's directory overrides a shipped one of the same id). An invalid
 * profile file: no profiles and the error (logged here; each node then fails with 'invalid profiles').
 */
export function loadAstmProfiles(log: Logger): { profiles: Map<string, AstmProfile>; error?: string } {
  try {
    const profiles = new Map<string, AstmProfile>();
    for (const d of profileDirs()) for (const [k, v] of loadProfiles(d)) profiles.set(k, v);
    return { profiles };
  } catch (e) {
    const error = (e as Error).message;
    log.error({ err: error }, 'ASTM profiles are invalid; run iomt-gateway check-config');
    return { profiles: new Map(), error };
  }
}

/** Editor helpers: the profile dropdown and the serial port picker (admin login required). */
export function registerAstmEditorRoutes(RED: any, profiles: Map<string, AstmProfile>, log: Logger): void {
  RED.httpAdmin.get('/iomt/astm/profiles', RED.auth.needsPermission('flows.read'), (_req: any, res: any) => {
    res.json([...profiles.values()].map((p) => ({ id: p.id, name: p.name, serial: p.serial, tcpRole: p.tcpRole })));
  });
  RED.httpAdmin.get('/iomt/serial-ports', RED.auth.needsPermission('flows.read'), async (_req: any, res: any) => {
    try {
      const listing = await listSerialPorts();
      if (listing.warning) log.warn({ warning: listing.warning }, 'serial port listing fell back to /dev');
      res.json(listing);
    } catch (e) {
      log.error({ err: (e as Error).message }, 'serial port listing failed');
      res.status(500).json({ error: (e as Error).message });
    }
  });
}

/**
 * Defaults: profile generic-lis2-a2, transport serial (line settings from the profile unless set here),
 * tcp-server on 0.0.0.0 with 8 connections per address, tcp-client to 127.0.0.1, host queries answered
 * with name and birth date, no order download. Throws NodeStartError (checked in this order): a bool
 * that is not one ('invalid setting'), an unknown profile, a serial transport without a port path
 * ('no serial port'), a TCP port outside 1-65535 ('invalid port'), an unknown transport, a bad
 * tcp-server allowFrom ('invalid allowFrom').
 */
export function astmNodeSettings(config: AstmDeviceConfig, profiles: Map<string, AstmProfile>): AstmNodeSettings {
  const deviceId = deviceIdOf(config);
  const profileId = resolveEnvTemplate(config.profile).trim() || 'generic-lis2-a2';
  const { answerQueries, queryNameDob, broadcastOrders } = resolveBools(config, { answerQueries: true, queryNameDob: true, broadcastOrders: false });
  const profile = profiles.get(profileId) ?? (profileId === 'generic-lis2-a2' ? defaultProfile() : undefined);
  if (!profile) throw new NodeStartError(`unknown ASTM profile '${profileId}' (have: ${[...profiles.keys()].join(', ')})`, 'unknown profile');
  const kind = resolveEnvTemplate(config.transport).trim() || 'serial';
  let transport: AstmTransportOptions;
  if (kind === 'serial') {
    const path = resolveEnvTemplate(config.serialPath).trim();
    if (!path) throw new NodeStartError('serial transport needs a port path (prefer /dev/serial/by-id/...)', 'no serial port');
    const flow = resolveEnvTemplate(config.flowControl).trim();
    const parity = resolveEnvTemplate(config.parity).trim();
    transport = {
      kind: 'serial',
      path,
      baudRate: resolveNumber(config.baudRate, profile.serial.baudRate),
      dataBits: resolveNumber(config.dataBits, profile.serial.dataBits) as 7 | 8,
      parity: (parity || profile.serial.parity) as 'none' | 'even' | 'odd',
      stopBits: resolveNumber(config.stopBits, profile.serial.stopBits) as 1 | 2,
      rtscts: flow ? flow === 'rtscts' : profile.serial.rtscts,
      xon: flow ? flow === 'xon' : profile.serial.xon,
    } as AstmTransportOptions;
  } else if (kind === 'tcp-server' || kind === 'tcp-client') {
    const port = resolveNumber(config.tcpPort, 0);
    if (!Number.isInteger(port) || port <= 0 || port > 65535) {
      throw new NodeStartError(`invalid TCP port '${config.tcpPort}' (resolves to '${resolveEnvTemplate(config.tcpPort)}')`, 'invalid port');
    }
    const host = resolveEnvTemplate(config.tcpHost).trim();
    const allowFrom = resolveEnvTemplate(config.allowFrom).trim();
    transport =
      kind === 'tcp-server'
        ? { kind, port, host: host || '0.0.0.0', listener: deviceId, maxPerAddress: resolveNumber(config.maxPerAddress, 8), ...(allowFrom ? { allowFrom } : {}) }
        : { kind, port, host: host || '127.0.0.1' };
  } else {
    throw new NodeStartError(`unknown transport '${kind}'`, 'unknown transport');
  }
  // Issue 10 §3: a host query is answered only to the analyzer configured on this node: serial and
  // tcp-client reach it by construction; tcp-server: an address in allowFrom, or loopback when empty.
  let queryFrom: ReturnType<typeof parseAllowList>;
  try {
    queryFrom = kind === 'tcp-server' ? parseAllowList(resolveEnvTemplate(config.allowFrom).trim() || '127.0.0.1, ::1') : undefined;
  } catch (e) {
    throw new NodeStartError((e as Error).message, 'invalid allowFrom');
  }
  return { profile, transport, queryFrom, answerQueries, queryNameDob, broadcastOrders, machineCode: resolveEnvTemplate(config.machineCode).trim() || undefined };
}

/**
 * The driver's onQuery hook: a host query (E1394 Q record) answered from the order cache, never a
 * synchronous HIS call. A query on a connection from an address outside `queryFrom` gets "no
 * information" ('unknown' → L|1|I). Answered orders are marked downloaded to this device; without
 * `queryNameDob` the patient name and birth date are left out.
 */
export function astmHostQueryAnswer(
  orders: OrderCache,
  deviceId: string,
  queryFrom: AstmNodeSettings['queryFrom'],
  queryNameDob: boolean,
  log: Logger,
): NonNullable<AstmDriverHooks['onQuery']> {
  // `from`: the connection the query came on, when the driver passes it (astm-driver answerQuery)
  return async (q, from?: { remote?: string }) => {
    const remote = from?.remote === undefined ? undefined : addressOfRemote(from.remote);
    if (remote !== undefined && !isAllowed(queryFrom, remote)) {
      // "no information" (L|1|I): nothing about any patient goes to an address not configured here
      log.warn({ deviceId, remote }, 'host query from an address not in allowFrom: answered "no information"');
      return 'unknown';
    }
    const answer = ordersForAstmQuery(orders, { patientId: q.patientId, specimenIds: q.specimenIds, tests: q.tests });
    if (answer === 'unknown') return answer;
    for (const a of answer) orders.markDownloaded(a.orderId, deviceId);
    const out = (answer as AstmOrder[]).map((o) => (queryNameDob ? o : { ...o, patientName: undefined, birthDate: undefined }));
    // which patient fields go to the analyzer (names of fields only, never their values)
    const sent = ['specimenId', 'tests', ...(['patientId', 'patientName', 'birthDate', 'sex'] as const).filter((k) => out.some((o) => o[k]))];
    log.debug({ deviceId, orders: out.length, fields: sent }, 'host query answer: fields sent');
    return out;
  };
}

/**
 * Optional order download: every 2 s, while the analyzer is connected, pending orders (and changes
 * to orders already sent to this device) go to it from a cursor kept in the store (`astm:<deviceId>`);
 * orders the driver did not take are offered again next round from the same cursor. Returns the stop.
 */
export function startOrderBroadcast(
  driver: { status(): { connections?: number }; sendOrders(orders: AstmOrder[]): Promise<number> },
  cache: OrderCache,
  deviceId: string,
  warn: (message: string) => void,
): () => void {
  const cursorName = `astm:${deviceId}`;
  let busy = false;
  const timer = setInterval(() => {
    if (busy || driver.status().connections === 0) return;
    busy = true;
    (async () => {
      const { orders, cursor } = cache.pendingSince(cache.loadCursor(cursorName), 50);
      const send = orders.filter((o) => o.status === 'pending' || cache.downloadedTo(o.id).some((d) => d.deviceId === deviceId));
      if (send.length) {
        const n = await driver.sendOrders(send.map((o) => toAstmOrder(o) as AstmOrder));
        if (!n) return; // not taken: try again next round from the same cursor
        for (const o of send) cache.markDownloaded(o.id, deviceId);
      }
      cache.saveCursor(cursorName, cursor);
    })()
      .catch((e) => warn(`order download: ${(e as Error).message}`))
      .finally(() => (busy = false));
  }, 2000);
  timer.unref();
  return () => clearInterval(timer);
}
