/**
 * Thin Node-RED wrapper (conventions §11): `iomt-mqtt-broker` runs the embedded MQTT broker for bedside
 * devices (drivers/mqtt/broker.ts), commits every publish before its PUBACK, then sends the normalized
 * observations into the flow. Status: the broker is one device; each client is listed as
 * `<deviceId>/<clientId>` (connected / offline with the reason, last message).
 */
import { getRuntime } from '../../../gateway/src/runtime';
import { DeviceEmitter, reportStartFailure, showStatus, specProblems, whenFlowsStarted, type RedNode } from '../../../gateway/src/node-red/device-node';
import { MqttBroker, DRIVER_NAME } from '../broker';
import { brokerOptions, deviceIdOf, type MqttBrokerConfig } from '../broker-node';
import { MQTT_BROKER_SPEC } from './iomt-mqtt-broker.spec';

export = function register(RED: any): void {
  function IomtMqttBroker(this: RedNode, config: MqttBrokerConfig) {
    RED.nodes.createNode(this, config);
    const node = this;
    const deviceId = deviceIdOf(config);
    const fail = (reason: string, detail: string) => reportStartFailure(node, 'device', deviceId, DRIVER_NAME, reason, detail);
    try {
      const invalid = specProblems(MQTT_BROKER_SPEC, config);
      if (invalid) return void fail(invalid, 'invalid configuration');
      const rt = getRuntime();
      const opts = brokerOptions(config, rt.settings.dataDir);
      const emitter = new DeviceEmitter(node, deviceId, DRIVER_NAME);
      const broker = new MqttBroker(opts, rt.store, (r, inbound) => {
        emitter.committed(r, inbound.messageType);
      });
      const unregister = [rt.registerDevice(deviceId, () => broker.status())];
      // one status entry per client; `/` cannot occur in a node's device id, so these never clash
      broker.onClientAdded = (clientId) => {
        try {
          unregister.push(rt.registerDevice(`${deviceId}/${clientId}`, () => broker.clientStatus(clientId)));
        } catch (e) {
          node.warn(`client ${clientId}: ${(e as Error).message}`);
        }
      };
      showStatus(node, { state: 'starting' });
      const cancelStart = whenFlowsStarted(RED, () => {
        emitter.start();
        broker.start().then(
          () => showStatus(node, broker.status()),
          (e: Error) => fail(`cannot listen: ${e.message}`, e.message),
        );
      });
      const timer = setInterval(() => showStatus(node, broker.status()), 5000);
      timer.unref();
      node.on('close', (_removed, done) => {
        cancelStart();
        clearInterval(timer);
        emitter.stop();
        for (const u of unregister) u();
        broker.close().then(() => done(), () => done());
      });
    } catch (e) {
      fail(`cannot start: ${(e as Error).message}`, 'cannot start');
    }
  }
  RED.nodes.registerType('iomt-mqtt-broker', IomtMqttBroker);
};
