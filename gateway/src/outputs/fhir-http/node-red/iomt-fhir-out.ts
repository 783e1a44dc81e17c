/**
 * Thin Node-RED wrapper (conventions §11). `iomt-fhir-out` turns the observations of each incoming
 * flow message into one FHIR R4 transaction Bundle, appends it to this destination's durable outbox
 * (key = the inbound message uid, so a re-emitted message is not queued twice) and calls done() only
 * after that commit. The outbox worker POSTs it (fhir-http-output.ts). Settings: node-options.ts.
 */
import { join } from 'node:path';
import { FhirHttpOutput } from '../fhir-http-output';
import { DB_FILE } from '../../../store/gateway-store';
import { fhirOutSettings, type FhirOutNodeConfig } from '../node-options';
import { getRuntime } from '../../../runtime';
import { resolveEnvTemplate } from '../../../config/env-template';
import { queueForDelivery, reportStartFailure, watchDestination, specProblems, type RedNode } from '../../../node-red/device-node';
import { FHIR_OUT_SPEC } from './iomt-fhir-out.spec';
import type { Observation } from '../../../contracts/observation';
import { metrics } from '../../../metrics/registry';

export = function register(RED: any): void {
  function IomtFhirOut(this: RedNode, config: FhirOutNodeConfig) {
    const destination = resolveEnvTemplate(config.destination).trim() || config.name || config.id;
    const fail = (reason: string, detail: string) => reportStartFailure(this, 'destination', destination, 'fhir-http', reason, detail);
    try {
      RED.nodes.createNode(this, config);
      const invalid = specProblems(FHIR_OUT_SPEC, config);
      if (invalid) return void fail(invalid, 'invalid configuration');
      const s = fhirOutSettings(config);
      const rt = getRuntime();
      const output = new FhirHttpOutput(s.options, { storeFile: join(rt.settings.dataDir, DB_FILE) });
      rt.store.setDestinationPolicy(destination, s.policy);
      let worker: ReturnType<typeof rt.registerDestination>;
      try {
        worker = rt.registerDestination(output);
      } catch (e) {
        return void reportStartFailure(this, 'destination', `${destination}#${this.id}`, 'fhir-http', (e as Error).message, 'duplicate destination');
      }
      // 'connected' only while the link to the peer is really open; 'idle' before the first delivery
      const stopStatus = watchDestination(this, rt.store, destination, worker, () => output.reachable);
      this.on('input', (msg: { payload?: unknown; _iomt?: { messageUid?: string; messageId?: number } }, _send, done) => {
        const observations = Array.isArray(msg.payload) ? (msg.payload as Observation[]) : undefined;
        if (!observations || !msg._iomt?.messageUid) return done(new Error('iomt-fhir-out expects msg.payload = observations from an IoMT device node'));
        if (!observations.length) return done();
        const pid = observations[0].processingId || 'P';
        if (!s.processingIds.has(pid)) {
          // HL7 v2.5.1 2.15.9.11 MSH-11: a T/D message reaches only a destination that takes it
          metrics.processingIdSkipped.inc({ destination, processingId: pid });
          return done();
        }
        queueForDelivery(rt.store, destination, { messageUid: msg._iomt.messageUid, messageId: msg._iomt.messageId }, (key) => output.prepare(observations, key), worker, done);
      });
      this.on('close', (_removed, done) => {
        stopStatus();
        rt.unregisterDestination(destination).then(() => done(), () => done());
      });
    } catch (e) {
      fail(`cannot start: ${(e as Error).message}`, 'cannot start');
    }
  }
  RED.nodes.registerType('iomt-fhir-out', IomtFhirOut);
};
