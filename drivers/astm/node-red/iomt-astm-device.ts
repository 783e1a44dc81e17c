/**
 * Thin Node-RED wrapper (conventions §11): `iomt-astm-device` connects one ASTM E1381/E1394 analyzer
 * over a serial port or TCP (either role), commits each result message before the final ACK, sends
 * the normalized observations into the flow, and answers host queries from the order cache.
 * Profiles, configuration, host query answer and order download: drivers/astm/astm-node.ts.
 */
import { withDeviceSettings } from '../../../gateway/src/identifiers/device-sink';
import { AstmDriver, DRIVER_NAME } from '../astm-driver';
import { getRuntime } from '../../../gateway/src/runtime';
import { componentLogger } from '../../../gateway/src/log/logger';
import { DeviceEmitter, registerDeviceOrReport, reportStartFailure, reportThrown, runDeviceNode, showStatus, specProblems, type RedNode } from '../../../gateway/src/node-red/device-node';
import { astmHostQueryAnswer, astmNodeSettings, deviceIdOf, loadAstmProfiles, registerAstmEditorRoutes, startOrderBroadcast, type AstmDeviceConfig } from '../astm-node';
import { ASTM_DEVICE_SPEC } from './iomt-astm-device.spec';

export = function register(RED: any): void {
  const log = componentLogger('astm-node');
  const { profiles, error: profileError } = loadAstmProfiles(log);
  registerAstmEditorRoutes(RED, profiles, log);

  function IomtAstmDevice(this: RedNode, config: AstmDeviceConfig) {
    const node = this;
    const deviceId = deviceIdOf(config);
    const fail = (reason: string, detail: string) => reportStartFailure(node, 'device', deviceId, DRIVER_NAME, reason, detail);
    // Anything a start throws (a bug, a resource) leaves the node listed in error, never silently gone.
    try {
      RED.nodes.createNode(this, config);
      if (profileError) return void fail(`profiles: ${profileError}`, 'invalid profiles');
      const invalid = specProblems(ASTM_DEVICE_SPEC, config);
      if (invalid) return void fail(invalid, 'invalid configuration');
      const s = astmNodeSettings(config, profiles);
      const rt = getRuntime();
      const emitter = new DeviceEmitter(node, deviceId, DRIVER_NAME);
      const sink = withDeviceSettings(rt.store, deviceId, { machineCode: s.machineCode });
      const driver = new AstmDriver({ deviceId, profile: s.profile, transport: s.transport }, sink, {
        onCommitted: (r, inbound) => {
          emitter.committed(r, inbound.messageType);
          showStatus(node, driver.status());
        },
        onQuery: s.answerQueries && rt.orders ? astmHostQueryAnswer(rt.orders, deviceId, s.queryFrom, s.queryNameDob, log) : undefined,
      });
      const unregister = registerDeviceOrReport(node, deviceId, DRIVER_NAME, () => driver.status());
      if (!unregister) return;
      const abort = new AbortController();
      const stopBroadcast = s.broadcastOrders && rt.orders ? startOrderBroadcast(driver, rt.orders, deviceId, (m) => node.warn(m)) : undefined;
      runDeviceNode(RED, node, {
        emitter,
        status: () => driver.status(),
        statusEveryMs: 3000,
        // A serial port absent at start is retried by the transport; it never stops the rest of the flow.
        // Stopped for good (e.g. TCP port in use): listed with state 'error', /readyz degraded.
        run: () => void driver.run(abort.signal).catch((e: Error) => fail(`ASTM ${s.transport.kind}: ${e.message}`, e.message)),
        stop: () => {
          stopBroadcast?.();
          abort.abort();
          unregister();
        },
        close: () => driver.close(),
      });
    } catch (e) {
      reportThrown(fail, e);
    }
  }
  RED.nodes.registerType('iomt-astm-device', IomtAstmDevice);
};
