/**
 * The `iomt-hl7-in` node's configuration → Hl7Receiver options, and its order acceptor (kept out of
 * the thin node file, conventions §11). A bad setting throws NodeStartError (reason + short status
 * detail): the node reports it and stays listed in error.
 */
import { readFileSync } from 'node:fs';
import { readTemplateFile, resolveBool, resolveEnvTemplate, resolveNumber } from '../../gateway/src/config/env-template';
import { isSupportedCharset, type CharsetName } from '../../gateway/src/charset/charset';
import { NodeStartError, resolveBools } from '../../gateway/src/node-red/device-node';
import type { OrderCache } from '../../gateway/src/orders/order-cache';
import type { Hl7OrderAcceptor, Hl7ReceiverOptions } from './hl7-receiver';

export interface Hl7InConfig {
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

export interface Hl7InSettings {
  /** Receiver options without `orders` (they need the runtime's order cache: orderAcceptor). */
  options: Omit<Hl7ReceiverOptions, 'orders'>;
  acceptOrders: boolean;
  /** issue 10 §3: an orders listener without allowFrom takes only loopback; the node says so in its log. */
  loopbackNotice?: string;
  /** Set on every result (withDeviceSettings); undefined when empty. */
  machineCode: string | undefined;
}

export function deviceIdOf(config: Hl7InConfig): string {
  return resolveEnvTemplate(config.deviceId).trim() || config.name || config.id;
}

/**
 * Defaults: port 2575, host 0.0.0.0, maxBytes 8 MiB, idle 600 s, 64 connections, 8 per address,
 * first frame within 10 s, charset utf8, lenient, no orders, no TLS. Throws NodeStartError (checked
 * in this order): a bool that is not one ('invalid setting'), an unsupported charset ('charset'), a
 * port outside 0-65535 ('invalid port'), an unreadable TLS file ('TLS files').
 */
export function hl7InSettings(config: Hl7InConfig): Hl7InSettings {
  const port = resolveNumber(config.port, 2575);
  let allowFrom = resolveEnvTemplate(config.allowFrom).trim();
  const { tls: useTls, strict, acceptOrders } = resolveBools(config, { tls: false, strict: false, acceptOrders: false });
  // charset when MSH-18 is empty, and for bytes invalid in the declared one (gateway/src/charset)
  const cs = resolveEnvTemplate(config.charset).trim() || 'utf8';
  const fb = resolveEnvTemplate(config.fallbackCharset).trim();
  if (!isSupportedCharset(cs) || (fb && !isSupportedCharset(fb))) throw new NodeStartError(`unsupported charset '${isSupportedCharset(cs) ? fb : cs}'`, 'charset');
  const listenerCharset: CharsetName = cs;
  const fallbackCharset: CharsetName | undefined = fb && isSupportedCharset(fb) ? fb : undefined;
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    throw new NodeStartError(`invalid port '${config.port}' (resolves to '${resolveEnvTemplate(config.port)}')`, 'invalid port');
  }
  let tls: { key: Buffer; cert: Buffer; ca?: Buffer; requestCert?: boolean } | undefined;
  try {
    if (useTls) {
      tls = {
        cert: readFileSync(resolveEnvTemplate(config.tlsCert)),
        key: readFileSync(resolveEnvTemplate(config.tlsKey)),
        // an empty `${VAR}` template means no CA file (not readFileSync(''))
        ca: readTemplateFile(config.tlsCa),
        requestCert: resolveBool(config.requestCert, false),
      };
    }
  } catch (e) {
    throw new NodeStartError(`TLS files: ${(e as Error).message}`, 'TLS files');
  }
  let loopbackNotice: string | undefined;
  if (acceptOrders && !allowFrom) {
    // issue 10 §3: who may load orders (and so patient data for host queries) is never "anyone" by default
    allowFrom = '127.0.0.1, ::1';
    loopbackNotice = 'orders listener without allowFrom: only loopback (127.0.0.1, ::1) may connect; set allowFrom to the HIS/LIS addresses';
  }
  return {
    options: {
      deviceId: deviceIdOf(config),
      host: resolveEnvTemplate(config.host).trim() || '0.0.0.0',
      port,
      tls,
      maxBytes: resolveNumber(config.maxBytes, 8 * 1024 * 1024),
      idleTimeoutMs: resolveNumber(config.idleTimeoutS, 600) * 1000,
      maxConnections: resolveNumber(config.maxConnections, 64),
      maxPerAddress: resolveNumber(config.maxPerAddress, 8),
      firstFrameTimeoutMs: resolveNumber(config.firstFrameTimeoutS, 10) * 1000,
      ...(allowFrom ? { allowFrom } : {}),
      charset: listenerCharset,
      ...(fallbackCharset ? { fallbackCharset } : {}),
      strict,
    },
    acceptOrders,
    ...(loopbackNotice ? { loopbackNotice } : {}),
    machineCode: resolveEnvTemplate(config.machineCode).trim() || undefined,
  };
}

/** ORM^O01 / OML^O21 from the HIS/LIS go to the order cache (host queries, order download), keyed by (deviceId, MSH-10). */
export function orderAcceptor(orders: OrderCache, deviceId: string): Hl7OrderAcceptor {
  return {
    accept: (updates, header) => {
      orders.apply(updates, { deviceId, messageControlId: header.controlId });
    },
  };
}
