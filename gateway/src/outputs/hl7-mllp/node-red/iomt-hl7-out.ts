/**
 * Thin Node-RED wrapper (conventions §11). `iomt-hl7-out` turns the observations of each incoming
 * flow message into one HL7 v2.5.1 ORU^R01, appends it to this destination's durable outbox (unique
 * key per inbound message, so a re-emitted message is not queued twice) and calls done() only after
 * that commit. A worker delivers the outbox over MLLP and waits for each ACK. Configuration and the
 * input handler: gateway/src/outputs/hl7-mllp/hl7-out-node.ts.
 */
import { Hl7MllpOutput } from '../hl7-mllp-output';
import { getRuntime } from '../../../runtime';
import { reportStartFailure, reportThrown, watchDestination, specProblems, type RedNode } from '../../../node-red/device-node';
import { destinationOf, hl7OutInput, hl7OutSettings, type Hl7OutConfig } from '../hl7-out-node';
import { HL7_OUT_SPEC } from './iomt-hl7-out.spec';

const DRIVER = 'hl7-mllp';

export = function register(RED: any): void {
  function IomtHl7Out(this: RedNode, config: Hl7OutConfig) {
    const node = this;
    const destination = destinationOf(config);
    const fail = (reason: string, detail: string) => reportStartFailure(node, 'destination', destination, DRIVER, reason, detail);
    // Anything a start throws (a bug, a resource) leaves the node listed in error, never silently gone.
    try {
      RED.nodes.createNode(this, config);
      const rt = getRuntime();
      const invalid = specProblems(HL7_OUT_SPEC, config);
      if (invalid) return void fail(invalid, 'invalid configuration');
      const s = hl7OutSettings(config);
      const output = new Hl7MllpOutput(s.output);
      rt.store.setDestinationPolicy(destination, s.policy);
      let worker: ReturnType<typeof rt.registerDestination>;
      try {
        worker = rt.registerDestination(output, { unavailableBackoffMs: s.unavailableBackoffMs });
      } catch (e) {
        return void reportStartFailure(node, 'destination', `${destination}#${node.id}`, DRIVER, (e as Error).message, 'duplicate destination');
      }
      // 'connected' only while the link to the peer is really open; 'idle' before the first delivery
      const stopStatus = watchDestination(node, rt.store, destination, worker, () => output.connected || undefined);
      node.on('input', hl7OutInput({ node, store: rt.store, destination, output, processingIds: s.processingIds, worker }));
      node.on('close', (_removed, done) => {
        stopStatus();
        rt.unregisterDestination(destination).then(() => done(), () => done());
      });
    } catch (e) {
      reportThrown(fail, e);
    }
  }
  RED.nodes.registerType('iomt-hl7-out', IomtHl7Out);
};
