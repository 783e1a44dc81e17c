/**
 * The `iomt-mqtt-broker` node's configuration → MqttBrokerOptions (kept out of the thin node file).
 * Throws Error with a short reason on a bad setting (the node reports it and stays listed in error).
 */
import { readFileSync } from 'node:fs';
import { resolveBool, resolveEnvTemplate, resolveNumber } from '../../gateway/src/config/env-template';
import type { MqttBrokerOptions } from './broker';

export interface MqttBrokerConfig {
  id: string;
  name?: string;
  deviceId?: string;
  host?: string;
  port?: string;
  /** 'auto' | 'on' | 'off' (booleans accepted) */
  tls?: boolean | string;
  tlsPort?: string;
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
  requestCert?: boolean | string;
  allowAnonymous?: boolean | string;
  maxConnections?: string;
  allowFrom?: string;
  maxPerAddress?: string;
  maxPayloadBytes?: string;
  maxSkewS?: string;
  commitDelayMs?: string;
}

export function deviceIdOf(config: MqttBrokerConfig): string {
  return resolveEnvTemplate(config.deviceId).trim() || config.name || config.id;
}

function port(v: string | undefined, dflt: number, what: string): number {
  const p = resolveNumber(v, dflt);
  if (!Number.isInteger(p) || p < 0 || p > 65535) throw new Error(`invalid ${what} '${v}' (resolves to '${resolveEnvTemplate(v)}')`);
  return p;
}

/**
 * `tls`: 'on' (or true), 'off' (or false, empty), 'auto' (default): on when the certificate and the key
 * both resolve to a file name (the shipped flow: `${MQTT_TLS_CERT}` and `${MQTT_TLS_KEY}`). A certificate
 * without a key (or the reverse) in auto mode is an error, not a silent plain-only broker.
 */
export function tlsMode(config: MqttBrokerConfig): boolean {
  const raw = config.tls === undefined ? 'auto' : typeof config.tls === 'boolean' ? String(config.tls) : resolveEnvTemplate(config.tls).trim() || 'auto';
  if (raw === 'on' || raw === 'true') return true;
  if (raw === 'off' || raw === 'false') return false;
  if (raw !== 'auto') throw new Error(`tls must be auto, on or off (got '${raw}')`);
  const cert = resolveEnvTemplate(config.tlsCert).trim();
  const key = resolveEnvTemplate(config.tlsKey).trim();
  if (!!cert !== !!key) throw new Error('tls auto: a certificate file needs a key file and the reverse');
  return !!cert && !!key;
}

export function brokerOptions(config: MqttBrokerConfig, dataDir: string): MqttBrokerOptions {
  const useTls = tlsMode(config);
  const o: MqttBrokerOptions = {
    deviceId: deviceIdOf(config),
    dataDir,
    host: resolveEnvTemplate(config.host).trim() || '0.0.0.0',
    port: port(config.port, 1883, 'port'),
    allowAnonymous: resolveBool(config.allowAnonymous, false),
    maxConnections: resolveNumber(config.maxConnections, 1024),
    maxPerAddress: resolveNumber(config.maxPerAddress, 8),
    maxPayloadBytes: resolveNumber(config.maxPayloadBytes, 262_144),
    maxSkewMs: resolveNumber(config.maxSkewS, 300) * 1000,
    commitDelayMs: resolveNumber(config.commitDelayMs, 10),
  };
  const allowFrom = resolveEnvTemplate(config.allowFrom).trim();
  if (allowFrom) o.allowFrom = allowFrom;
  if (useTls) {
    const file = (f: string | undefined, what: string) => {
      try {
        return readFileSync(resolveEnvTemplate(f).trim());
      } catch (e) {
        throw new Error(`TLS ${what} file: ${(e as Error).message}`);
      }
    };
    const ca = resolveEnvTemplate(config.tlsCa).trim();
    o.tls = {
      port: port(config.tlsPort, 8883, 'TLS port'),
      cert: file(config.tlsCert, 'certificate'),
      key: file(config.tlsKey, 'key'),
      ...(ca ? { ca: file(ca, 'CA') } : {}),
      requestCert: resolveBool(config.requestCert, false),
    };
  }
  return o;
}
