/**
 * Field spec of the `iomt-mqtt-upstream` node (issue 12 §5): editor defaults, `check-config` and the docs.
 */
import type { NodeSpec } from '../../../config/field-spec';

export const MQTT_UPSTREAM_SPEC: NodeSpec = {
  type: 'iomt-mqtt-upstream',
  summary: 'Publishes vitals and alarms (QoS 1, JSON) to an upstream MQTT broker or cluster through a durable outbox; an entry is delivered on its PUBACK.',
  fields: [
    { name: 'name', type: 'string', default: '', description: 'label on the canvas' },
    { name: 'destination', type: 'string', default: '', unique: 'destination', pattern: '^[^/\\x00-\\x1f]{1,64}$', description: 'unique destination id (outbox, API, metrics); empty = the name, else the node id' },
    { name: 'url', type: 'string', default: '${UPSTREAM_MQTT_URL}', pattern: '^(mqtts?://[^\\s]+)?$', description: 'mqtt://host:port or mqtts://host:port (TLS); empty = off (messages pass, nothing is queued)' },
    { name: 'username', type: 'string', default: '${UPSTREAM_MQTT_USER:-}', description: 'broker user name' },
    { name: 'passwordEnv', type: 'string', default: 'UPSTREAM_MQTT_PASSWORD', pattern: '^([A-Za-z_][A-Za-z0-9_]*)?$', description: 'name of the environment variable that holds the password (never stored in the flow)' },
    { name: 'topicPrefix', type: 'string', default: 'iomt', pattern: '^[^#+/\\x00][^#+\\x00]{0,62}[^#+/\\x00]?$', description: 'topic prefix: <prefix>/<gateway>/<vitals|alarms>/<device>' },
    { name: 'gateway', type: 'string', default: '${FACILITY_ID:-gateway}', description: 'this gateway\'s name in the topic' },
    { name: 'downsampleS', type: 'int', default: '0', min: 0, max: 86400, runtimeDefault: 0, description: 'one value per parameter per this many seconds; 0 = every value (the bus gets everything). Alarms are never thinned' },
    { name: 'allowPlaintext', type: 'bool', default: '${UPSTREAM_MQTT_ALLOW_PLAINTEXT:-false}', description: 'allow mqtt:// (no TLS) to a broker beyond this machine; default false: the node stops in error, patient data would cross the network unencrypted' },
    { name: 'tlsCa', type: 'file', default: '', description: 'CA file to verify the broker (mqtts://; empty = system CAs)' },
    { name: 'tlsCert', type: 'file', default: '', description: 'client certificate file (PEM), when the broker asks for one' },
    { name: 'tlsKey', type: 'file', default: '', description: 'client key file (PEM)' },
    { name: 'pubackTimeoutS', type: 'int', default: '10', min: 1, max: 600, runtimeDefault: 10, description: 'wait this long for a PUBACK (seconds), then retry' },
    { name: 'maxAttempts', type: 'int', default: '1000', min: 1, max: 1000000, runtimeDefault: 1000, description: 'dead letter after this many attempts' },
    { name: 'maxAgeHours', type: 'int', default: '168', min: 1, max: 87600, runtimeDefault: 168, description: '... or after this many hours' },
    { name: 'reconnectMaxS', type: 'int', default: '30', min: 1, max: 3600, runtimeDefault: 30, description: 'longest wait between reconnects (seconds)' },
    { name: 'processingIds', type: 'string', default: 'P', pattern: '^\\s*[PTD](\\s*,\\s*[PTD])*\\s*$', description: 'processing ids this destination takes (comma list of P, T, D)' },
  ],
};
