/**
 * Options of the HL7 v2 / MLLP output (conventions §2: defaults and a description per field).
 */
import type { ConfigProblem } from '../../contracts/errors';

export interface Hl7MllpOutputConfig {
  destination: string;
  host: string;
  port: number;
  tls?: { ca?: Buffer | string; cert?: Buffer | string; key?: Buffer | string; servername?: string; rejectUnauthorized?: boolean };
  ackTimeoutMs: number;
  connectTimeoutMs: number;
  aeRetryable: boolean;
  arRetryable: boolean;
  sendingApp: string;
  sendingFacility: string;
  receivingApp: string;
  receivingFacility: string;
  processingId: 'P' | 'T' | 'D';
  country?: 'VNM';
}

export type Hl7MllpOutputOptions = Partial<Hl7MllpOutputConfig> & Pick<Hl7MllpOutputConfig, 'destination' | 'host' | 'port'>;

export interface ConfigFieldDoc {
  default?: unknown;
  description: string;
}

export const HL7_MLLP_OUTPUT_FIELDS: Record<keyof Hl7MllpOutputConfig, ConfigFieldDoc> = {
  destination: { description: 'Unique destination name; the outbox queue and dead letters are kept per destination.' },
  host: { description: 'Host name or IP of the HIS/LIS MLLP listener.' },
  port: { description: 'TCP port of the HIS/LIS MLLP listener.' },
  tls: { description: 'TLS to the peer: `ca` to trust a private CA, `cert`/`key` for mutual TLS. Omit for plain TCP.' },
  ackTimeoutMs: { default: 30_000, description: 'How long to wait for the ACK of one message; on timeout the connection is dropped and the entry retried with the same MSH-10.' },
  connectTimeoutMs: { default: 10_000, description: 'How long to wait for the TCP/TLS connection to open.' },
  aeRetryable: { default: false, description: 'Retry messages answered AE/CE (application error) instead of dead-lettering them. AE normally means "do not resend unchanged".' },
  arRetryable: { default: false, description: 'Retry messages answered AR/CR (rejected) instead of dead-lettering them. Some HIS use AR for transient faults.' },
  sendingApp: { default: 'IOMT-GW', description: 'MSH-3 sending application.' },
  sendingFacility: { default: '', description: 'MSH-4 sending facility (e.g. the hospital code).' },
  receivingApp: { default: '', description: 'MSH-5 receiving application (the HIS/LIS).' },
  receivingFacility: { default: '', description: 'MSH-6 receiving facility.' },
  processingId: { default: 'P', description: 'MSH-11 processing id: P production, T training, D debugging.' },
  country: { description: 'MSH-17 country code, e.g. VNM.' },
};

/** Fill defaults; returns the config and every problem found (empty when valid). */
export function resolveHl7MllpOutputConfig(o: Hl7MllpOutputOptions, file = '<hl7-mllp output>'): { config: Hl7MllpOutputConfig; problems: ConfigProblem[] } {
  const problems: ConfigProblem[] = [];
  const def = <T>(v: T | undefined, d: T): T => (v === undefined ? d : v);
  const config: Hl7MllpOutputConfig = {
    destination: o.destination,
    host: o.host,
    port: o.port,
    tls: o.tls,
    ackTimeoutMs: def(o.ackTimeoutMs, 30_000),
    connectTimeoutMs: def(o.connectTimeoutMs, 10_000),
    aeRetryable: def(o.aeRetryable, false),
    arRetryable: def(o.arRetryable, false),
    sendingApp: def(o.sendingApp, 'IOMT-GW'),
    sendingFacility: def(o.sendingFacility, ''),
    receivingApp: def(o.receivingApp, ''),
    receivingFacility: def(o.receivingFacility, ''),
    processingId: def(o.processingId, 'P'),
    country: o.country,
  };
  if (!config.destination) problems.push({ file, path: 'destination', reason: 'required' });
  if (!config.host) problems.push({ file, path: 'host', reason: 'required' });
  if (!Number.isInteger(config.port) || config.port <= 0 || config.port > 65535) problems.push({ file, path: 'port', reason: 'must be an integer 1..65535' });
  if (!(config.ackTimeoutMs > 0)) problems.push({ file, path: 'ackTimeoutMs', reason: 'must be > 0' });
  if (!(config.connectTimeoutMs > 0)) problems.push({ file, path: 'connectTimeoutMs', reason: 'must be > 0' });
  if (!['P', 'T', 'D'].includes(config.processingId)) problems.push({ file, path: 'processingId', reason: 'must be P, T or D' });
  return { config, problems };
}
