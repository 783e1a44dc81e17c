/**
 * Thin Node-RED wrapper (conventions §11): `iomt-astm-device` connects one ASTM E1381/E1394 analyzer
 * over a serial port or TCP (either role), commits each result message before the final ACK, sends
 * the normalized observations into the flow, and answers host queries from the order cache.
 */
import { withDeviceSettings } from '../../../gateway/src/identifiers/device-sink';
import { join } from 'node:path';
import { existsSync, readdirSync } from 'node:fs';
import { AstmDriver, type AstmTransportOptions } from '../astm-driver';
import { loadProfiles, defaultProfile, type AstmProfile } from '../profile';
import type { AstmOrder } from '../order-response';
import { getRuntime } from '../../../gateway/src/runtime';
import { packageRoot } from '../../../gateway/src/package-root';
import { resolveBool, resolveEnvTemplate, resolveNumber } from '../../../gateway/src/config/env-template';
import { DeviceEmitter, reportStartFailure, showStatus, specProblems, whenFlowsStarted, type RedNode } from '../../../gateway/src/node-red/device-node';
import { ASTM_DEVICE_SPEC } from './iomt-astm-device.spec';
import { ordersForAstmQuery, toAstmOrder } from '../../../gateway/src/orders/astm-order-answer';
import { componentLogger } from '../../../gateway/src/log/logger';
import { listSerialPorts } from './serial-ports';
import { addressOfRemote, isAllowed, parseAllowList } from '../../../gateway/src/net/listener-guard';

interface AstmDeviceConfig {
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

/** Profiles are data (firmware-config/profiles/astm); IOMT_PROFILES_DIR adds a site's own directory. */
function profileDirs(): string[] {
  const dirs = [join(packageRoot(), 'firmware-config', 'profiles', 'astm')];
  if (process.env.IOMT_PROFILES_DIR) dirs.push(join(process.env.IOMT_PROFILES_DIR, 'astm'));
  return dirs.filter((d) => existsSync(d) && readdirSync(d).some((f) => f.endsWith('.json')));
}

function allProfiles(): Map<string, AstmProfile> {
  const out = new Map<string, AstmProfile>();
  for (const d of profileDirs()) for (const [k, v] of loadProfiles(d)) out.set(k, v);
  return out;
}

export = function register(RED: any): void {
  const log = componentLogger('astm-node');
  let profiles: Map<string, AstmProfile>;
  let profileError: string | undefined;
  try {
    profiles = allProfiles();
  } catch (e) {
    profiles = new Map();
    profileError = (e as Error).message;
    log.error({ err: profileError }, 'ASTM profiles are invalid; run iomt-gateway check-config');
  }

  // Editor helpers: the profile dropdown and the serial port picker (admin login required).
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

  // Anything a start throws (a bug, a resource) leaves the node listed in error, never silently gone.
  function IomtAstmDevice(this: RedNode, config: AstmDeviceConfig) {
    try {
      startIomtAstmDevice.call(this, config);
    } catch (e) {
      reportStartFailure(this, 'device', resolveEnvTemplate(config.deviceId).trim() || config.name || config.id, 'astm', `cannot start: ${(e as Error).message}`, 'cannot start');
    }
  }
  function startIomtAstmDevice(this: RedNode, config: AstmDeviceConfig) {
    RED.nodes.createNode(this, config);
    const node = this;
    const deviceId = resolveEnvTemplate(config.deviceId).trim() || config.name || config.id;
    const profileId = resolveEnvTemplate(config.profile).trim() || 'generic-lis2-a2';
    const fail = (reason: string, detail: string) => reportStartFailure(node, 'device', deviceId, 'astm', reason, detail);
    if (profileError) {
      fail(`profiles: ${profileError}`, 'invalid profiles');
      return;
    }
    const invalid = specProblems(ASTM_DEVICE_SPEC, config);
    if (invalid) {
      fail(invalid, 'invalid configuration');
      return;
    }
    let answerQueries: boolean;
    let queryNameDob: boolean;
    let broadcastOrders: boolean;
    try {
      answerQueries = resolveBool(config.answerQueries, true);
      queryNameDob = resolveBool(config.queryNameDob, true);
      broadcastOrders = resolveBool(config.broadcastOrders, false);
    } catch (e) {
      fail((e as Error).message, 'invalid setting');
      return;
    }
    const profile = profiles.get(profileId) ?? (profileId === 'generic-lis2-a2' ? defaultProfile() : undefined);
    if (!profile) {
      fail(`unknown ASTM profile '${profileId}' (have: ${[...profiles.keys()].join(', ')})`, 'unknown profile');
      return;
    }
    const kind = resolveEnvTemplate(config.transport).trim() || 'serial';
    let transport: AstmTransportOptions;
    if (kind === 'serial') {
      const path = resolveEnvTemplate(config.serialPath).trim();
      if (!path) {
        fail('serial transport needs a port path (prefer /dev/serial/by-id/...)', 'no serial port');
        return;
      }
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
        fail(`invalid TCP port '${config.tcpPort}' (resolves to '${resolveEnvTemplate(config.tcpPort)}')`, 'invalid port');
        return;
      }
      const host = resolveEnvTemplate(config.tcpHost).trim();
      const allowFrom = resolveEnvTemplate(config.allowFrom).trim();
      transport =
        kind === 'tcp-server'
          ? { kind, port, host: host || '0.0.0.0', listener: deviceId, maxPerAddress: resolveNumber(config.maxPerAddress, 8), ...(allowFrom ? { allowFrom } : {}) }
          : { kind, port, host: host || '127.0.0.1' };
    } else {
      fail(`unknown transport '${kind}'`, 'unknown transport');
      return;
    }
    // Issue 10 §3: a host query is answered only to the analyzer configured on this node: serial and
    // tcp-client reach it by construction; tcp-server: an address in allowFrom, or loopback when empty.
    let queryFrom: ReturnType<typeof parseAllowList>;
    try {
      queryFrom = kind === 'tcp-server' ? parseAllowList(resolveEnvTemplate(config.allowFrom).trim() || '127.0.0.1, ::1') : undefined;
    } catch (e) {
      fail((e as Error).message, 'invalid allowFrom');
      return;
    }
    const rt = getRuntime();
    const emitter = new DeviceEmitter(node, deviceId, 'astm');
    const sink = withDeviceSettings(rt.store, deviceId, { machineCode: resolveEnvTemplate(config.machineCode).trim() || undefined });
    const driver = new AstmDriver({ deviceId, profile, transport }, sink, {
      onCommitted: (r, inbound) => {
        emitter.committed(r, inbound.messageType);
        showStatus(node, driver.status());
      },
      // Host query (E1394 Q record): answered from the order cache, never a synchronous HIS call.
      // `from`: the connection the query came on, when the driver passes it (astm-driver answerQuery)
      onQuery: answerQueries && rt.orders
        ? async (q, from?: { remote?: string }) => {
            const remote = from?.remote === undefined ? undefined : addressOfRemote(from.remote);
            if (remote !== undefined && !isAllowed(queryFrom, remote)) {
              // "no information" (L|1|I): nothing about any patient goes to an address not configured here
              log.warn({ deviceId, remote }, 'host query from an address not in allowFrom: answered "no information"');
              return 'unknown';
            }
            const answer = ordersForAstmQuery(rt.orders!, { patientId: q.patientId, specimenIds: q.specimenIds, tests: q.tests });
            if (answer === 'unknown') return answer;
            for (const a of answer) rt.orders!.markDownloaded(a.orderId, deviceId);
            const orders = (answer as AstmOrder[]).map((o) => (queryNameDob ? o : { ...o, patientName: undefined, birthDate: undefined }));
            // which patient fields go to the analyzer (names of fields only, never their values)
            const sent = ['specimenId', 'tests', ...(['patientId', 'patientName', 'birthDate', 'sex'] as const).filter((k) => orders.some((o) => o[k]))];
            log.debug({ deviceId, orders: orders.length, fields: sent }, 'host query answer: fields sent');
            return orders;
          }
        : undefined,
    });
    let unregister: (() => void) | undefined;
    try {
      unregister = rt.registerDevice(deviceId, () => driver.status());
    } catch (e) {
      reportStartFailure(node, 'device', `${deviceId}#${node.id}`, 'astm', (e as Error).message, 'duplicate device id');
      return;
    }
    const abort = new AbortController();
    // Optional order download: pending orders go to the analyzer as they arrive (cursor kept in the store).
    let broadcastTimer: NodeJS.Timeout | undefined;
    if (broadcastOrders && rt.orders) {
      const cursorName = `astm:${deviceId}`;
      let busy = false;
      broadcastTimer = setInterval(() => {
        if (busy || driver.status().connections === 0) return;
        busy = true;
        (async () => {
          const cache = rt.orders!;
          const { orders, cursor } = cache.pendingSince(cache.loadCursor(cursorName), 50);
          const send = orders.filter((o) => o.status === 'pending' || cache.downloadedTo(o.id).some((d) => d.deviceId === deviceId));
          if (send.length) {
            const n = await driver.sendOrders(send.map((o) => toAstmOrder(o) as AstmOrder));
            if (!n) return; // not taken: try again next round from the same cursor
            for (const o of send) cache.markDownloaded(o.id, deviceId);
          }
          cache.saveCursor(cursorName, cursor);
        })()
          .catch((e) => node.warn(`order download: ${(e as Error).message}`))
          .finally(() => (busy = false));
      }, 2000);
      broadcastTimer.unref();
    }
    showStatus(node, { state: 'starting' });
    const cancelStart = whenFlowsStarted(RED, () => {
      emitter.start();
      // A serial port absent at start is retried by the transport; it never stops the rest of the flow.
      driver.run(abort.signal).catch((e: Error) => {
        // stopped for good (e.g. TCP port in use): listed with state 'error', /readyz degraded
        fail(`ASTM ${kind}: ${e.message}`, e.message);
      });
    });
    const statusTimer = setInterval(() => showStatus(node, driver.status()), 3000);
    statusTimer.unref();
    node.on('close', (_removed, done) => {
      cancelStart();
      clearInterval(statusTimer);
      if (broadcastTimer) clearInterval(broadcastTimer);
      emitter.stop();
      abort.abort();
      unregister?.();
      driver.close().then(() => done(), () => done());
    });
  }
  RED.nodes.registerType('iomt-astm-device', IomtAstmDevice);
};
