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
}

export function deviceIdOf(config: MqttBrokerConfig): string {
  return resolveEnvTemplate(config.deviceId).trim() || config.name || config.id;
}

function port(v: string | undefined, dflt: number, what: string): number {
  const p = resolveNumber(v, dflt);
  if (!Number.isInteger(p) || p < 0 || p > 65535) throw new Error(`invalid ${what} '${v}' (resolves to '${resolveEnvTemplate(v)}')`);
  return p;
}

export function brokerOptions(config: MqttBrokerConfig, dataDir: string): MqttBrokerOptions {
  const useTls = resolveBool(config.tls, false);
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
