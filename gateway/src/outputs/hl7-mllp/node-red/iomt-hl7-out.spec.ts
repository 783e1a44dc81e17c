/**
 * Field spec of the `iomt-hl7-out` node (issue 9 §2): editor defaults, `check-config` and the docs
 * come from this one list (gateway/src/config/field-spec.ts).
 */
import type { NodeSpec } from '../../../config/field-spec';

export const HL7_OUT_SPEC: NodeSpec = {
  type: 'iomt-hl7-out',
  summary: 'Sends each message as HL7 v2.5.1 ORU^R01 over MLLP to a HIS/LIS through a durable outbox.',
  fields: [
    { name: 'name', type: 'string', default: '', description: 'label on the canvas' },
    { name: 'destination', type: 'string', default: '', unique: 'destination', pattern: '^[^/\\x00-\\x1f]{1,64}$', description: 'unique destination id (outbox, API, metrics); empty = the name, else the node id' },
    { name: 'host', type: 'host', default: '${HIS_HOST}', required: true, description: 'HIS/LIS host name or address' },
    { name: 'port', type: 'port', default: '${HIS_PORT}', required: true, description: 'HIS/LIS MLLP port' },
    { name: 'tls', type: 'bool', default: false, description: 'MLLP over TLS' },
    { name: 'tlsCa', type: 'file', default: '', when: { field: 'tls', equals: [true] }, description: 'CA file to verify the HIS (empty = system CAs)' },
    { name: 'tlsCert', type: 'file', default: '', when: { field: 'tls', equals: [true] }, description: 'client certificate file (PEM), when the HIS asks for one' },
    { name: 'tlsKey', type: 'file', default: '', when: { field: 'tls', equals: [true] }, description: 'client key file (PEM)' },
    { name: 'ackTimeoutS', type: 'int', default: '30', min: 1, max: 3600, runtimeDefault: 30, description: 'wait this long for the ACK (seconds), then retry' },
    { name: 'aeRetryable', type: 'bool', default: false, description: 'retry on AE (default: AE/AR = dead letter with the reason)' },
    { name: 'strictOrder', type: 'bool', default: false, description: 'deliver strictly in order (a stuck message holds the queue)' },
    { name: 'maxAttempts', type: 'int', default: '10', min: 1, max: 1000000, runtimeDefault: 10, description: 'dead letter after this many attempts' },
    { name: 'maxAgeHours', type: 'int', default: '168', min: 1, max: 87600, runtimeDefault: 168, description: '... or after this many hours' },
    { name: 'reconnectMaxS', type: 'int', default: '30', min: 1, max: 3600, runtimeDefault: 30, description: 'longest wait between reconnects (seconds)' },
    { name: 'sendingApp', type: 'string', default: 'IOMT-GW', description: 'MSH-3' },
    { name: 'sendingFacility', type: 'string', default: '', description: 'MSH-4' },
    { name: 'receivingApp', type: 'string', default: 'HIS', description: 'MSH-5' },
    { name: 'receivingFacility', type: 'string', default: '', description: 'MSH-6' },
    { name: 'processingIds', type: 'string', default: 'P', pattern: '^\\s*[PTD](\\s*,\\s*[PTD])*\\s*$', description: 'MSH-11 processing ids this destination takes (comma list of P, T, D)' },
  ],
};
