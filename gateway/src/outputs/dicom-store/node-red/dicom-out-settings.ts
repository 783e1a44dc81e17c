/**
 * The `iomt-dicom-out` node's stored config (strings, `${VAR}` templates) → output options and
 * outbox policy. Plain module (no Node-RED), so that it is testable and the node file stays short.
 */
import { readFileSync } from 'node:fs';
import { resolveBool, resolveEnvTemplate, resolveNumber } from '../../../config/env-template';
import type { DestinationPolicy } from '../../../contracts/store';
import { resolveDicomStoreOutputConfig, type DicomStoreOutputOptions } from '../config';

export interface DicomOutConfig {
  id: string;
  name?: string;
  destination?: string;
  host?: string;
  port?: string;
  calledAet?: string;
  callingAet?: string;
  tls?: boolean | string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  dimseTimeoutS?: string;
  lingerS?: string;
  outOfResourcesRetryable?: boolean | string;
  maxAttempts?: string;
  maxAgeHours?: string;
  reconnectMaxS?: string;
}

export type DicomOutSettings = { options: DicomStoreOutputOptions; policy: Partial<DestinationPolicy>; reconnectMaxMs: number } | { problem: string };

export function dicomOutSettings(c: DicomOutConfig, dataDir: string, env: NodeJS.ProcessEnv = process.env): DicomOutSettings {
  const r = (v: unknown) => resolveEnvTemplate(v, env).trim();
  try {
    const useTls = resolveBool(c.tls, false, env);
    const file = (p: string | undefined) => (p && r(p) ? readFileSync(r(p)) : undefined);
    const options: DicomStoreOutputOptions = {
      destination: r(c.destination) || c.name || c.id,
      host: r(c.host) || '127.0.0.1',
      port: resolveNumber(c.port, 104, env),
      calledAeTitle: r(c.calledAet),
      callingAeTitle: r(c.callingAet) || 'IOMT_GW',
      dataDir,
      tls: useTls ? { ca: file(c.tlsCa), cert: file(c.tlsCert), key: file(c.tlsKey) } : undefined,
      dimseTimeoutMs: resolveNumber(c.dimseTimeoutS, 60, env) * 1000,
      lingerMs: resolveNumber(c.lingerS, 5, env) * 1000,
      outOfResourcesRetryable: resolveBool(c.outOfResourcesRetryable, false, env),
    };
    const { problems } = resolveDicomStoreOutputConfig(options);
    if (problems.length) return { problem: problems.map((p) => `${p.path}: ${p.reason}`).join('; ') };
    return {
      options,
      policy: { strictOrder: false, maxAttempts: resolveNumber(c.maxAttempts, 10, env), maxAgeMs: resolveNumber(c.maxAgeHours, 168, env) * 3600_000 },
      reconnectMaxMs: Math.max(1, resolveNumber(c.reconnectMaxS, 30, env)) * 1000,
    };
  } catch (e) {
    return { problem: (e as Error).message };
  }
}
