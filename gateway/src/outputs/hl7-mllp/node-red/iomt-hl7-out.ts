/**
 * Thin Node-RED wrapper (conventions §11). `iomt-hl7-out` turns the observations of each incoming
 * flow message into one HL7 v2.5.1 ORU^R01, appends it to this destination's durable outbox (unique
 * key per inbound message, so a re-emitted message is not queued twice) and calls done() only after
 * that commit. A worker delivers the outbox over MLLP and waits for each ACK.
 */
import { readFileSync } from 'node:fs';
import { Hl7MllpOutput } from '../hl7-mllp-output';
import { getRuntime } from '../../../runtime';
import { resolveBool, resolveEnvTemplate, resolveNumber } from '../../../config/env-template';
import { reportStartFailure, watchDestination, specProblems, type RedNode } from '../../../node-red/device-node';
import { HL7_OUT_SPEC } from './iomt-hl7-out.spec';
import type { Observation } from '../../../contracts/observation';
import { metrics } from '../../../metrics/registry';

interface Hl7OutConfig {
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

export = function register(RED: any): void {
  // Anything a start throws (a bug, a resource) leaves the node listed in error, never silently gone.
  function IomtHl7Out(this: RedNode, config: Hl7OutConfig) {
    try {
      startIomtHl7Out.call(this, config);
    } catch (e) {
      reportStartFailure(this, 'destination', resolveEnvTemplate(config.destination).trim() || config.name || config.id, 'hl7-mllp', `cannot start: ${(e as Error).message}`, 'cannot start');
    }
  }
  function startIomtHl7Out(this: RedNode, config: Hl7OutConfig) {
    RED.nodes.createNode(this, config);
    const node = this;
    const rt = getRuntime();
    const destination = resolveEnvTemplate(config.destination).trim() || config.name || config.id;
    const host = resolveEnvTemplate(config.host).trim() || '127.0.0.1';
    const fail = (reason: string, detail: string) => reportStartFailure(node, 'destination', destination, 'hl7-mllp', reason, detail);
    const invalid = specProblems(HL7_OUT_SPEC, config);
    if (invalid) {
      fail(invalid, 'invalid configuration');
      return;
    }
    const port = resolveNumber(config.port, 2576);
    if (!Number.isInteger(port) || port <= 0 || port > 65535) {
      fail(`invalid port '${config.port}' (resolves to '${resolveEnvTemplate(config.port)}')`, 'invalid port');
      return;
    }
    let useTls: boolean;
    let aeRetryable: boolean;
    let strictOrder: boolean;
    try {
      useTls = resolveBool(config.tls, false);
      aeRetryable = resolveBool(config.aeRetryable, false);
      strictOrder = resolveBool(config.strictOrder, false);
    } catch (e) {
      fail((e as Error).message, 'invalid setting');
      return;
    }
    let tls: { ca?: Buffer; cert?: Buffer; key?: Buffer } | undefined;
    try {
      if (useTls) {
        tls = {
          ca: config.tlsCa ? readFileSync(resolveEnvTemplate(config.tlsCa)) : undefined,
          cert: config.tlsCert ? readFileSync(resolveEnvTemplate(config.tlsCert)) : undefined,
          key: config.tlsKey ? readFileSync(resolveEnvTemplate(config.tlsKey)) : undefined,
        };
      }
    } catch (e) {
      fail(`TLS files: ${(e as Error).message}`, 'TLS files');
      return;
    }
    const output = new Hl7MllpOutput({
      destination,
      host,
      port,
      tls,
      ackTimeoutMs: resolveNumber(config.ackTimeoutS, 30) * 1000,
      aeRetryable,
      sendingApp: resolveEnvTemplate(config.sendingApp).trim() || undefined,
      sendingFacility: resolveEnvTemplate(config.sendingFacility).trim() || undefined,
      receivingApp: resolveEnvTemplate(config.receivingApp).trim() || undefined,
      receivingFacility: resolveEnvTemplate(config.receivingFacility).trim() || undefined,
    });
    // HL7 v2.5.1 2.15.9.11 MSH-11 (Table 0103): a T (training) or D (debugging) message reaches only a
    // destination configured to take it; it stays in the store and is counted, never sent on as P
    const processingIds = new Set(
      (resolveEnvTemplate(config.processingIds).trim() || 'P')
        .split(',')
        .map((x) => x.trim().toUpperCase())
        .filter((x) => x),
    );
    rt.store.setDestinationPolicy(destination, {
      strictOrder,
      maxAttempts: resolveNumber(config.maxAttempts, 10),
      maxAgeMs: resolveNumber(config.maxAgeHours, 168) * 3600_000,
    });
    let worker;
    try {
      const reconnectMaxMs = Math.max(1, resolveNumber(config.reconnectMaxS, 30)) * 1000;
      worker = rt.registerDestination(output, { unavailableBackoffMs: { base: Math.min(1000, reconnectMaxMs), max: reconnectMaxMs } });
    } catch (e) {
      reportStartFailure(node, 'destination', `${destination}#${node.id}`, 'hl7-mllp', (e as Error).message, 'duplicate destination');
      return;
    }
    // 'connected' only while the link to the peer is really open; 'idle' before the first delivery
    const stopStatus = watchDestination(node, rt.store, destination, worker, () => output.connected || undefined);

    node.on('input', (msg: { payload?: unknown; _iomt?: { messageUid?: string; messageId?: number } }, _send, done) => {
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
      const key = msg._iomt.messageUid;
      let prepared;
      try {
        prepared = output.prepare(observations, key);
      } catch (e) {
        done(e);
        return;
      }
      rt.store
        .appendOutbox(destination, [{ key, messageId: msg._iomt.messageId, payload: prepared.payload, contentType: prepared.contentType }])
        .then(() => {
          worker.wake();
          done();
        })
        .catch((e: unknown) => done(e));
    });
    node.on('close', (_removed, done) => {
      stopStatus();
      rt.unregisterDestination(destination).then(() => done(), () => done());
    });
  }
  RED.nodes.registerType('iomt-hl7-out', IomtHl7Out);
};
