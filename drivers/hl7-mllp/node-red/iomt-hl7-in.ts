/**
 * Thin Node-RED wrapper (conventions §11): no protocol code here. `iomt-hl7-in` listens for HL7 v2
 * over MLLP, commits every message before it acknowledges, then sends the normalized observations
 * into the flow. Configuration → options: drivers/hl7-mllp/hl7-in-node.ts.
 */
import { withDeviceSettings } from '../../../gateway/src/identifiers/device-sink';
import { Hl7Receiver, DRIVER_NAME } from '../hl7-receiver';
import { getRuntime } from '../../../gateway/src/runtime';
import { DeviceEmitter, registerDeviceOrReport, reportStartFailure, reportThrown, runDeviceNode, showStatus, specProblems, type RedNode } from '../../../gateway/src/node-red/device-node';
import { deviceIdOf, hl7InSettings, orderAcceptor, type Hl7InConfig } from '../hl7-in-node';
import { HL7_IN_SPEC } from './iomt-hl7-in.spec';

export = function register(RED: any): void {
  function IomtHl7In(this: RedNode, config: Hl7InConfig) {
    const node = this;
    const deviceId = deviceIdOf(config);
    const fail = (reason: string, detail: string) => reportStartFailure(node, 'device', deviceId, DRIVER_NAME, reason, detail);
    // Anything a start throws (a bug, a resource) leaves the node listed in error, never silently gone.
    try {
      RED.nodes.createNode(this, config);
      const invalid = specProblems(HL7_IN_SPEC, config);
      if (invalid) return void fail(invalid, 'invalid configuration');
      const s = hl7InSettings(config);
      if (s.loopbackNotice) node.log(s.loopbackNotice);
      const rt = getRuntime();
      const emitter = new DeviceEmitter(node, deviceId, DRIVER_NAME);
      const receiver = new Hl7Receiver(
        { ...s.options, orders: s.acceptOrders && rt.orders ? orderAcceptor(rt.orders, deviceId) : undefined },
        withDeviceSettings(rt.store, deviceId, { machineCode: s.machineCode }),
        (r, inbound) => {
          emitter.committed(r, inbound.messageType);
          showStatus(node, receiver.status());
        },
      );
      const unregister = registerDeviceOrReport(node, deviceId, DRIVER_NAME, () => receiver.status());
      if (!unregister) return;
      const abort = new AbortController();
      runDeviceNode(RED, node, {
        emitter,
        status: () => receiver.status(),
        statusEveryMs: 5000,
        run: () => {
          receiver
            .run(abort.signal)
            .then(() => showStatus(node, receiver.status()))
            // e.g. EADDRINUSE: the device stays listed with state 'error' and /readyz is degraded
            .catch((e: Error) => fail(`cannot listen on ${s.options.host}:${s.options.port}: ${e.message}`, e.message));
          setTimeout(() => showStatus(node, receiver.status()), 200).unref();
        },
        stop: () => {
          abort.abort();
          unregister();
        },
        close: () => receiver.close(),
      });
    } catch (e) {
      reportThrown(fail, e);
    }
  }
  RED.nodes.registerType('iomt-hl7-in', IomtHl7In);
};
