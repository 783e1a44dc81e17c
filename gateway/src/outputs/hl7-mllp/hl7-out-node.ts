/**
 * The `iomt-hl7-out` node's configuration → Hl7MllpOutput options and outbox policy, and its input
 * handler (kept out of the thin node file, conventions §11). A bad setting throws NodeStartError
 * (reason + short status detail): the node reports it and stays listed in error.
 */
import { readFileSync } from 'node:fs';
import type { Observation } from '../../contracts/observation';
import type { Output } from '../../contracts/output';
import type { GatewayStoreApi } from '../../contracts/store';
import { readTemplateFile, resolveEnvTemplate, resolveNumber } from '../../config/env-template';
import { metrics } from '../../metrics/registry';
import { NodeStartError, queueForDelivery, resolveBools, type RedNode } from '../../node-red/device-node';
import type { Hl7MllpOutputOptions } from './config';

export interface Hl7OutConfig {
  id: string;
  name?: string;
  destination?: string;
  host?: string;
  port?: string;
  tls?: boolean | string;
  tlsCa?: string;
  tlsCert?: string;
  tlsKey?: string;
  ackTimeoutS?: string;
  aeRetryable?: boolean | string;
  strictOrder?: boolean | string;
  maxAttempts?: string;
  maxAgeHours?: string;
  reconnectMaxS?: string;
  sendingApp?: string;
  sendingFacility?: string;
  receivingApp?: string;
  receivingFacility?: string;
  /** MSH-11 processing ids this destination takes (comma list of P, T, D). Default 'P'. */
  processingIds?: string;
}

export interface Hl7OutSettings {
  output: Hl7MllpOutputOptions;
  /** HL7 v2.5.1 2.15.9.11 MSH-11 (Table 0103) ids this destination takes, upper case. */
  processingIds: Set<string>;
  policy: { strictOrder: boolean; maxAttempts: number; maxAgeMs: number };
  /** Outbox worker back-off while the peer is unreachable (ms). */
  unavailableBackoffMs: { base: number; max: number };
}

export function destinationOf(config: Hl7OutConfig): string {
  return resolveEnvTemplate(config.destination).trim() || config.name || config.id;
}

/**
 * Defaults: host 127.0.0.1, port 2576, ACK within 30 s, AE final, no strict order, 10 attempts, 168 h,
 * reconnect back-off 1-30 s, processing ids P, no TLS. Throws NodeStartError (checked in this order):
 * a port outside 1-65535 ('invalid port'), a bool that is not one ('invalid setting'), an unreadable
 * TLS file ('TLS files').
 */
export function hl7OutSettings(config: Hl7OutConfig): Hl7OutSettings {
  const port = resolveNumber(config.port, 2576);
  if (!Number.isInteger(port) || port <= 0 || port > 65535) {
    throw new NodeStartError(`invalid port '${config.port}' (resolves to '${resolveEnvTemplate(config.port)}')`, 'invalid port');
  }
  const { tls: useTls, aeRetryable, strictOrder } = resolveBools(config, { tls: false, aeRetryable: false, strictOrder: false });
  let tls: { ca?: Buffer; cert?: Buffer; key?: Buffer } | undefined;
  // a file field whose `${VAR}` template resolves to empty is no file (CA: the system CAs), not readFileSync('')
  try {
    if (useTls) tls = { ca: readTemplateFile(config.tlsCa), cert: readTemplateFile(config.tlsCert), key: readTemplateFile(config.tlsKey) };
  } catch (e) {
    throw new NodeStartError(`TLS files: ${(e as Error).message}`, 'TLS files');
  }
  const reconnectMaxMs = Math.max(1, resolveNumber(config.reconnectMaxS, 30)) * 1000;
  return {
    output: {
      destination: destinationOf(config),
      host: resolveEnvTemplate(config.host).trim() || '127.0.0.1',
      port,
      tls,
      ackTimeoutMs: resolveNumber(config.ackTimeoutS, 30) * 1000,
      aeRetryable,
      sendingApp: resolveEnvTemplate(config.sendingApp).trim() || undefined,
      sendingFacility: resolveEnvTemplate(config.sendingFacility).trim() || undefined,
      receivingApp: resolveEnvTemplate(config.receivingApp).trim() || undefined,
      receivingFacility: resolveEnvTemplate(config.receivingFacility).trim() || undefined,
    },
    // HL7 v2.5.1 2.15.9.11 MSH-11 (Table 0103): a T (training) or D (debugging) message reaches only a
    // destination configured to take it; it stays in the store and is counted, never sent on as P
    processingIds: new Set(
      (resolveEnvTemplate(config.processingIds).trim() || 'P')
        .split(',')
        .map((x) => x.trim().toUpperCase())
        .filter((x) => x),
    ),
    policy: { strictOrder, maxAttempts: resolveNumber(config.maxAttempts, 10), maxAgeMs: resolveNumber(config.maxAgeHours, 168) * 3600_000 },
    unavailableBackoffMs: { base: Math.min(1000, reconnectMaxMs), max: reconnectMaxMs },
  };
}

type InputMsg = { payload?: unknown; _iomt?: { messageUid?: string; messageId?: number } };

/**
 * The node's 'input' handler: the observations of one flow message → one ORU^R01 in this destination's
 * outbox (key = the inbound message uid, architecture §3.6), done() only after that append committed;
 * done(err) on a message that is not from a device node, a prepare failure or a failed append (the
 * flow retries it). An empty message, or a processing id this destination does not take, is done()
 * without queueing (the latter counted in iomt_outbox_processing_id_skipped_total and logged).
 */
export function hl7OutInput(o: {
  node: RedNode;
  store: GatewayStoreApi;
  destination: string;
  output: Pick<Output, 'prepare'>;
  processingIds: Set<string>;
  worker: { wake(): void };
}): (msg: InputMsg, send: unknown, done: (err?: unknown) => void) => void {
  const { node, store, destination, output, processingIds, worker } = o;
  return (msg, _send, done) => {
    const observations = Array.isArray(msg.payload) ? (msg.payload as Observation[]) : undefined;
    if (!observations || !msg._iomt?.messageUid) {
      done(new Error('iomt-hl7-out expects msg.payload = observations from an IoMT device node'));
      return;
    }
    if (observations.length === 0) {
      done();
      return;
    }
    const pid = observations[0].processingId || 'P';
    if (!processingIds.has(pid)) {
      metrics.processingIdSkipped.inc({ destination, processingId: pid });
      node.log(`processing id ${pid} not taken by destination ${destination}: message ${msg._iomt.messageUid} not queued`);
      done();
      return;
    }
    // Idempotency key: one outbound message per inbound message and destination (architecture §3.6).
    queueForDelivery(store, destination, { messageUid: msg._iomt.messageUid, messageId: msg._iomt.messageId }, (key) => output.prepare(observations, key), worker, done);
  };
}
