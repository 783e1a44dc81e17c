/**
 * Field spec of the `iomt-mqtt-broker` node (issue 12 §1, §6): editor defaults, `check-config` and the
 * docs come from this one list (gateway/src/config/field-spec.ts).
 */
import type { NodeSpec } from '../../../gateway/src/config/field-spec';
import { ALLOW_LIST_PATTERN } from '../../hl7-mllp/node-red/iomt-hl7-in.spec';

export const MQTT_BROKER_SPEC: NodeSpec = {
  type: 'iomt-mqtt-broker',
  summary: 'Embedded MQTT 3.1.1 broker for bedside devices (iomt/<clientId>/vitals, /alarms): per-device passwords, topic ACL, PUBACK only after the commit.',
  listen: { port: 'port', host: 'host' },
  fields: [
    { name: 'name', type: 'string', default: '', description: 'label on the canvas' },
    { name: 'deviceId', type: 'string', default: '', unique: 'device', pattern: '^[^/\\x00-\\x1f]{1,64}$', description: 'device id of the broker in the store and API (each client is listed as <deviceId>/<clientId>); empty = the name, else the node id' },
    { name: 'host', type: 'host', default: '0.0.0.0', runtimeDefault: '0.0.0.0', description: 'address to listen on' },
    { name: 'port', type: 'port', default: '${MQTT_PORT:-1883}', required: true, description: 'plain MQTT port' },
    { name: 'tls', type: 'enum', default: 'auto', options: ['auto', 'on', 'off', 'true', 'false'], runtimeDefault: 'auto', description: 'also listen with TLS (MQTT over TLS): auto = when the certificate and key fields resolve to file names (e.g. ${MQTT_TLS_CERT} and ${MQTT_TLS_KEY} set), on/true = always (both required), off/false = never' },
    { name: 'tlsPort', type: 'port', default: '${MQTTS_PORT:-8883}', runtimeDefault: 8883, when: { field: 'tls', equals: ['on', 'true', 'auto'] }, description: 'MQTT over TLS port (empty = 8883)' },
    { name: 'tlsCert', type: 'file', default: '${MQTT_TLS_CERT}', required: true, when: { field: 'tls', equals: ['on', 'true'] }, description: 'server certificate file (PEM)' },
    { name: 'tlsKey', type: 'file', default: '${MQTT_TLS_KEY}', required: true, when: { field: 'tls', equals: ['on', 'true'] }, description: 'server key file (PEM)' },
    { name: 'tlsCa', type: 'file', default: '', when: { field: 'tls', equals: ['on', 'true'] }, description: 'CA file for client certificates' },
    { name: 'requestCert', type: 'bool', default: false, description: 'require a client certificate on the TLS port (its CN, when set, must equal the client id)' },
    { name: 'allowAnonymous', type: 'bool', default: false, description: 'accept clients without a password (closed test networks only; the topic ACL still applies)' },
    { name: 'maxConnections', type: 'int', default: '1024', min: 1, max: 100000, runtimeDefault: 1024, description: 'simultaneous connections; when full, the connection idle longest is closed to make room' },
    { name: 'allowFrom', type: 'string', default: '', pattern: ALLOW_LIST_PATTERN, description: 'source addresses or CIDR networks allowed to connect, comma separated; empty = everyone' },
    { name: 'maxPerAddress', type: 'int', default: '8', min: 1, max: 10000, runtimeDefault: 8, description: 'simultaneous connections from one source address (a bedside bridge with many devices needs more)' },
    { name: 'maxPayloadBytes', type: 'int', default: '262144', min: 1024, max: 16777216, runtimeDefault: 262144, description: 'largest payload stored; larger ones go to quarantine (first 4 KB kept)' },
    { name: 'maxSkewS', type: 'int', default: '300', min: 1, max: 86400, runtimeDefault: 300, description: 'flag messages whose device time differs from the gateway clock by more than this (seconds); the device time is kept' },
    { name: 'commitDelayMs', type: 'int', default: '10', min: 0, max: 100, runtimeDefault: 10, description: 'group commit: a publish waits up to this long (ms) so that publishes of other devices share its commit (one fsync); its PUBACK still follows the commit. 0 = commit each at once' },
  ],
};
