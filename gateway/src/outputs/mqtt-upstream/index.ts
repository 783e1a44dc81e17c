/**
 * Definition of the MQTT upstream output (conventions §2: no side effects here).
 */
import { ConfigError } from '../../contracts/errors';
import { MqttUpstreamOutput, mqttUpstreamProblems, type MqttUpstreamOptions } from './mqtt-upstream-output';

export const mqttUpstreamOutputDefinition = {
  kind: 'mqtt-upstream' as const,
  description: 'Publishes vitals and alarms (JSON, QoS 1, optional TLS) to an upstream MQTT broker; delivered on PUBACK, the durable outbox holds the rest.',
  fields: {
    destination: { description: 'Unique destination name (outbox queue, dead letters).' },
    url: { description: 'mqtt://host:port or mqtts://host:port.' },
    username: { description: 'Broker user name.' },
    password: { description: 'Broker password (from the environment in the node).' },
    clientId: { description: 'MQTT client id (default iomt-gw- + 15 hex of a hash of the gateway name, host name and destination: unique per gateway on a shared broker).' },
    topicPrefix: { default: 'iomt', description: 'Topic prefix: <prefix>/<gateway>/<vitals|alarms>/<device>.' },
    gateway: { default: 'gateway', description: 'The gateway name in the topic.' },
    tls: { description: 'ca / cert / key for mqtts://.' },
    allowPlaintext: { default: false, description: 'Allow mqtt:// (no TLS) to a broker beyond loopback; default false: refused at start, patient data would cross the network unencrypted.' },
    pubackTimeoutMs: { default: 10_000, description: 'Wait this long for a PUBACK, then retry.' },
    connectTimeoutMs: { default: 10_000, description: 'Wait this long for CONNACK.' },
  },
  /** Validate and allocate (no I/O). Throws ConfigError listing every problem. */
  create(opts: MqttUpstreamOptions): MqttUpstreamOutput {
    const problems = mqttUpstreamProblems(opts);
    if (problems.length) throw new ConfigError(problems.map((p) => ({ file: '<mqtt-upstream output>', path: p.split(':')[0], reason: p.slice(p.indexOf(':') + 1).trim() })));
    return new MqttUpstreamOutput(opts);
  },
};

export { MqttUpstreamOutput } from './mqtt-upstream-output';
export type { MqttUpstreamOptions } from './mqtt-upstream-output';
