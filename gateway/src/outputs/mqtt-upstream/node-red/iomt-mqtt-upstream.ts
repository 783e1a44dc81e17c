/**
 * Thin Node-RED wrapper (conventions §11): `iomt-mqtt-upstream` queues each flow message for an upstream
 * MQTT broker (QoS 1, delivered on PUBACK); the logic is gateway/src/vitals/destination-node.ts.
 * An empty URL turns it off: messages pass through, nothing is queued.
 */
import { MqttUpstreamOutput } from '../mqtt-upstream-output';
import { readTemplateFile, resolveBool, resolveEnvTemplate, resolveNumber } from '../../../config/env-template';
import { reportStartFailure, showStatus, specProblems, type RedNode } from '../../../node-red/device-node';
import { processingIdSet, startVitalsDestination } from '../../../vitals/destination-node';
import { MQTT_UPSTREAM_SPEC } from './iomt-mqtt-upstream.spec';

type Cfg = Record<string, string | boolean | undefined> & { id: string; name?: string };
const s = (v: unknown): string => resolveEnvTemplate(v).trim();

export = function register(RED: any): void {
  function IomtMqttUpstream(this: RedNode, config: Cfg) {
    RED.nodes.createNode(this, config);
    const destination = s(config.destination) || config.name || config.id;
    const fail = (reason: string, detail: string) => reportStartFailure(this, 'destination', destination, 'mqtt-upstream', reason, detail);
    try {
      const invalid = specProblems(MQTT_UPSTREAM_SPEC, config);
      if (invalid) return void fail(invalid, 'invalid configuration');
      const url = s(config.url);
      if (!url) {
        showStatus(this, { state: 'stopped', detail: 'off (no URL)' });
        this.on('input', (_m, _send, done) => done());
        return;
      }
      const passwordEnv = s(config.passwordEnv);
      const output = new MqttUpstreamOutput({
        destination,
        url,
        username: s(config.username) || undefined,
        password: passwordEnv ? process.env[passwordEnv] || undefined : undefined,
        topicPrefix: s(config.topicPrefix) || 'iomt',
        gateway: s(config.gateway) || 'gateway',
        tls: { ca: readTemplateFile(config.tlsCa), cert: readTemplateFile(config.tlsCert), key: readTemplateFile(config.tlsKey) },
        allowPlaintext: resolveBool(config.allowPlaintext, false),
        pubackTimeoutMs: resolveNumber(config.pubackTimeoutS, 10) * 1000,
      });
      startVitalsDestination({
        node: this,
        output,
        downsampleS: resolveNumber(config.downsampleS, 0),
        processingIds: processingIdSet(s(config.processingIds)),
        strictOrder: false,
        maxAttempts: resolveNumber(config.maxAttempts, 1000),
        maxAgeHours: resolveNumber(config.maxAgeHours, 168),
        reconnectMaxS: resolveNumber(config.reconnectMaxS, 30),
        driverName: 'iomt-mqtt-upstream',
      });
    } catch (e) {
      fail(`cannot start: ${(e as Error).message}`, 'cannot start');
    }
  }
  RED.nodes.registerType('iomt-mqtt-upstream', IomtMqttUpstream);
};
