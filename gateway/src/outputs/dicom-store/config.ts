/**
 * Options of the DICOM C-STORE output (conventions §2: defaults and a description per field).
 */
import type { ConfigProblem } from '../../contracts/errors';

export interface DicomStoreOutputConfig {
  destination: string;
  host: string;
  port: number;
  /** DICOM TLS (PS3.15 B.1): `ca` to trust a private CA, `cert`/`key` when the PACS asks for a client certificate. */
  tls?: { ca?: Buffer | string; cert?: Buffer | string; key?: Buffer | string; servername?: string; rejectUnauthorized?: boolean };
  callingAeTitle: string;
  calledAeTitle: string;
  /** The gateway's data dir: DicomInstanceRecord.relPath is relative to it. */
  dataDir: string;
  connectTimeoutMs: number;
  dimseTimeoutMs: number;
  maxPduLength: number;
  lingerMs: number;
  outOfResourcesRetryable: boolean;
}

export type DicomStoreOutputOptions = Partial<DicomStoreOutputConfig> & Pick<DicomStoreOutputConfig, 'destination' | 'host' | 'port' | 'calledAeTitle' | 'dataDir'>;

export interface ConfigFieldDoc {
  default?: unknown;
  description: string;
}

export const DICOM_STORE_OUTPUT_FIELDS: Record<keyof DicomStoreOutputConfig, ConfigFieldDoc> = {
  destination: { description: 'Unique destination name (one per PACS); the outbox queue and dead letters are kept per destination.' },
  host: { description: 'Host name or IP of the PACS.' },
  port: { description: 'DICOM port of the PACS (104, 11112; 2762 for TLS).' },
  tls: { description: 'DICOM TLS to the PACS (PS3.15 B.1): `ca` to trust a private CA, `cert`/`key` for a client certificate. Omit for plain TCP.' },
  callingAeTitle: { default: 'IOMT_GW', description: 'Our AE title (calling AE), as configured in the PACS. 1-16 characters, no backslash (PS3.5 6.2 AE).' },
  calledAeTitle: { description: "The PACS's AE title (called AE)." },
  dataDir: { description: 'The gateway data dir; stored instance paths are relative to it.' },
  connectTimeoutMs: { default: 10_000, description: 'How long to wait for the TCP/TLS connection.' },
  dimseTimeoutMs: { default: 60_000, description: 'How long to wait for the association answer or a C-STORE response after the last byte sent; then A-ABORT and retry.' },
  maxPduLength: { default: 65_536, description: 'Our Maximum Length Received (PS3.8 D.1). What we send is bounded by the PACS\'s value (and 256 KiB).' },
  lingerMs: { default: 5000, description: 'Keep the association open this long after a batch, so the next instances of a study re-use it.' },
  outOfResourcesRetryable: { default: false, description: 'Retry instances answered 0xA7xx (out of resources) instead of dead-lettering them.' },
};

/** PS3.5 6.2 AE: 1-16 characters of the default repertoire, no backslash or control characters, not all spaces. */
export function validAeTitle(s: string): boolean {
  return typeof s === 'string' && s.trim().length > 0 && s.length <= 16 && /^[\x20-\x5b\x5d-\x7e]+$/.test(s) && s === s.trim();
}

/** Fill defaults; returns the config and every problem found (empty when valid). */
export function resolveDicomStoreOutputConfig(o: DicomStoreOutputOptions, file = '<dicom-store output>'): { config: DicomStoreOutputConfig; problems: ConfigProblem[] } {
  const problems: ConfigProblem[] = [];
  const def = <T>(v: T | undefined, d: T): T => (v === undefined ? d : v);
  const config: DicomStoreOutputConfig = {
    destination: o.destination,
    host: o.host,
    port: o.port,
    tls: o.tls,
    callingAeTitle: def(o.callingAeTitle, 'IOMT_GW'),
    calledAeTitle: o.calledAeTitle,
    dataDir: o.dataDir,
    connectTimeoutMs: def(o.connectTimeoutMs, 10_000),
    dimseTimeoutMs: def(o.dimseTimeoutMs, 60_000),
    maxPduLength: def(o.maxPduLength, 65_536),
    lingerMs: def(o.lingerMs, 5000),
    outOfResourcesRetryable: def(o.outOfResourcesRetryable, false),
  };
  if (!config.destination) problems.push({ file, path: 'destination', reason: 'required' });
  if (!config.host) problems.push({ file, path: 'host', reason: 'required' });
  if (!config.dataDir) problems.push({ file, path: 'dataDir', reason: 'required' });
  if (!Number.isInteger(config.port) || config.port <= 0 || config.port > 65535) problems.push({ file, path: 'port', reason: 'must be an integer 1..65535' });
  if (!validAeTitle(config.callingAeTitle)) problems.push({ file, path: 'callingAeTitle', reason: 'must be 1-16 characters, no backslash, no leading/trailing spaces (PS3.5 6.2 AE)' });
  if (!validAeTitle(config.calledAeTitle)) problems.push({ file, path: 'calledAeTitle', reason: 'must be 1-16 characters, no backslash, no leading/trailing spaces (PS3.5 6.2 AE)' });
  for (const k of ['connectTimeoutMs', 'dimseTimeoutMs', 'lingerMs'] as const) if (!(config[k] >= 0) || (k !== 'lingerMs' && config[k] === 0)) problems.push({ file, path: k, reason: 'must be > 0' });
  // PS3.8 D.1: 0 = unlimited; we ask for a bounded one
  if (!Number.isInteger(config.maxPduLength) || config.maxPduLength < 4096 || config.maxPduLength > 4 * 1024 * 1024) problems.push({ file, path: 'maxPduLength', reason: 'must be an integer 4096..4194304' });
  return { config, problems };
}
