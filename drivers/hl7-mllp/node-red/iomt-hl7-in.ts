/**
 * Thin Node-RED wrapper (conventions §11): no protocol code here. `iomt-hl7-in` listens for HL7 v2
 * over MLLP, commits every message before it acknowledges, then sends the normalized observations
 * into the flow.
 */
import { withDeviceSettings } from '../../../gateway/src/identifiers/device-sink';
import { readFileSync } from 'node:fs';
import { Hl7Receiver } from '../hl7-receiver';
import { getRuntime } from '../../../gateway/src/runtime';
import { resolveBool, resolveEnvTemplate, resolveNumber } from '../../../gateway/src/config/env-template';
import { isSupportedCharset, type CharsetName } from '../../../gateway/src/charset/charset';
import { DeviceEmitter, reportStartFailure, showStatus, specProblems, whenFlowsStarted, type RedNode } from '../../../gateway/src/node-red/device-node';
import { HL7_IN_SPEC } from './iomt-hl7-in.spec';

interface Hl7InConfig {
  id: string;
  name?: string;
  deviceId?: string;
  /** MA_MAY (issue 13): set on every result by withDeviceSettings. */
  machineCode?: string;
  host?: string;
  port?: string;
  tls?: boolean | string;
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
  requestCert?: boolean | string;
  maxBytes?: string;
  idleTimeoutS?: string;
  maxConnections?: string;
  allowFrom?: string;
  maxPerAddress?: string;
  firstFrameTimeoutS?: string;
  charset?: string;
  fallbackCharset?: string;
  strict?: boolean | string;
  acceptOrders?: boolean | string;
}

export = function register(RED: any): void {
  // Anything a start throws (a bug, a resource) leaves the node listed in error, never silently gone.
  function IomtHl7In(this: RedNode, config: Hl7InConfig) {
    try {
      startIomtHl7In.call(this, config);
    } catch (e) {
      reportStartFailure(this, 'device', resolveEnvTemplate(config.deviceId).trim() || config.name || config.id, 'hl7-mllp', `cannot start: ${(e as Error).message}`, 'cannot start');
    }
  }
  function startIomtHl7In(this: RedNode, config: Hl7InConfig) {
    RED.nodes.createNode(this, config);
    const node = this;
    const deviceId = resolveEnvTemplate(config.deviceId).trim() || config.name || config.id;
    const port = resolveNumber(config.port, 2575);
    const host = resolveEnvTemplate(config.host).trim() || '0.0.0.0';
    const maxBytes = resolveNumber(config.maxBytes, 8 * 1024 * 1024);
    const idleTimeoutMs = resolveNumber(config.idleTimeoutS, 600) * 1000;
    const maxConnections = resolveNumber(config.maxConnections, 64);
    const maxPerAddress = resolveNumber(config.maxPerAddress, 8);
    const firstFrameTimeoutMs = resolveNumber(config.firstFrameTimeoutS, 10) * 1000;
    let allowFrom = resolveEnvTemplate(config.allowFrom).trim();
    const fail = (reason: string, detail: string) => reportStartFailure(node, 'device', deviceId, 'hl7-mllp', reason, detail);
    const invalid = specProblems(HL7_IN_SPEC, config);
    if (invalid) {
      fail(invalid, 'invalid configuration');
      return;
    }
    let useTls: boolean;
    let strict: boolean;
    let acceptOrders: boolean;
    try {
      useTls = resolveBool(config.tls, false);
      strict = resolveBool(config.strict, false);
      acceptOrders = resolveBool(config.acceptOrders, false);
    } catch (e) {
      fail((e as Error).message, 'invalid setting');
      return;
    }
    // charset when MSH-18 is empty, and for bytes invalid in the declared one (gateway/src/charset)
    const cs = resolveEnvTemplate(config.charset).trim() || 'utf8';
    const fb = resolveEnvTemplate(config.fallbackCharset).trim();
    if (!isSupportedCharset(cs) || (fb && !isSupportedCharset(fb))) {
      fail(`unsupported charset '${isSupportedCharset(cs) ? fb : cs}'`, 'charset');
      return;
    }
    const listenerCharset: CharsetName = cs;
    const fallbackCharset: CharsetName | undefined = fb && isSupportedCharset(fb) ? fb : undefined;
    if (!Number.isInteger(port) || port < 0 || port > 65535) {
      fail(`invalid port '${config.port}' (resolves to '${resolveEnvTemplate(config.port)}')`, 'invalid port');
      return;
    }
    let tls: { key: Buffer; cert: Buffer; ca?: Buffer; requestCert?: boolean } | undefined;
    try {
      if (useTls) {
        tls = {
          cert: readFileSync(resolveEnvTemplate(config.tlsCert)),
          key: readFileSync(resolveEnvTemplate(config.tlsKey)),
          // an empty `${VAR}` template means no CA file (not readFileSync(''))
          ca: resolveEnvTemplate(config.tlsCa).trim() ? readFileSync(resolveEnvTemplate(config.tlsCa).trim()) : undefined,
          requestCert: resolveBool(config.requestCert, false),
        };
      }
    } catch (e) {
      fail(`TLS files: ${(e as Error).message}`, 'TLS files');
      return;
    }
    if (acceptOrders && !allowFrom) {
      // issue 10 §3: who may load orders (and so patient data for host queries) is never "anyone" by default
      allowFrom = '127.0.0.1, ::1';
      node.log('orders listener without allowFrom: only loopback (127.0.0.1, ::1) may connect; set allowFrom to the HIS/LIS addresses');
    }
    const rt = getRuntime();
    // ORM^O01 / OML^O21 from the HIS/LIS go to the order cache (host queries, order download)
    const orders = acceptOrders && rt.orders
      ? { accept: (updates: Parameters<NonNullable<typeof rt.orders>['apply']>[0], header: { controlId: string }) => { rt.orders!.apply(updates, { deviceId, messageControlId: header.controlId }); } }
      : undefined;
    const emitter = new DeviceEmitter(node, deviceId, 'hl7-mllp');
    const receiver = new Hl7Receiver(
      {
        deviceId,
        host,
        port,
        tls,
        maxBytes,
        idleTimeoutMs,
        maxConnections,
        maxPerAddress,
        firstFrameTimeoutMs,
        ...(allowFrom ? { allowFrom } : {}),
        charset: listenerCharset,
        ...(fallbackCharset ? { fallbackCharset } : {}),
        strict,
        orders,
      },
      withDeviceSettings(rt.store, deviceId, { machineCode: resolveEnvTemplate(config.machineCode).trim() || undefined }),
      (r, inbound) => {
        emitter.committed(r, inbound.messageType);
        showStatus(node, receiver.status());
      },
    );
    let unregister: (() => void) | undefined;
    try {
      unregister = rt.registerDevice(deviceId, () => receiver.status());
    } catch (e) {
      // the other node keeps the device id: report under this node's id so both stay visible
      reportStartFailure(node, 'device', `${deviceId}#${node.id}`, 'hl7-mllp', (e as Error).message, 'duplicate device id');
      return;
    }
    const abort = new AbortController();
    showStatus(node, { state: 'starting' });
    const cancelStart = whenFlowsStarted(RED, () => {
      emitter.start();
      receiver
        .run(abort.signal)
        .then(() => showStatus(node, receiver.status()))
        .catch((e: Error) => {
          // e.g. EADDRINUSE: the device stays listed with state 'error' and /readyz is degraded
          fail(`cannot listen on ${host}:${port}: ${e.message}`, e.message);
        });
      setTimeout(() => showStatus(node, receiver.status()), 200).unref();
    });
    const statusTimer = setInterval(() => showStatus(node, receiver.status()), 5000);
    statusTimer.unref();
    node.on('close', (_removed, done) => {
      cancelStart();
      clearInterval(statusTimer);
      emitter.stop();
      abort.abort();
      unregister?.();
      receiver.close().then(() => done(), () => done());
    });
  }
  RED.nodes.registerType('iomt-hl7-in', IomtHl7In);
};
