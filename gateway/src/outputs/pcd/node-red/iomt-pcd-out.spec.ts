/**
 * Field spec of the `iomt-pcd-out` node (issue 12 §5): editor defaults, `check-config` and the docs.
 */
import type { NodeSpec } from '../../../config/field-spec';

export const PCD_OUT_SPEC: NodeSpec = {
  type: 'iomt-pcd-out',
  summary: 'Sends vitals as IHE PCD-01 (ORU^R01 v2.6) to an EMR, or alarms as IHE ACM PCD-04 (ORU^R40) to an alarm manager, over MLLP through a durable outbox, with per-destination downsampling.',
  fields: [
    { name: 'name', type: 'string', default: '', description: 'label on the canvas' },
    { name: 'destination', type: 'string', default: '', unique: 'destination', pattern: '^[^/\\x00-\\x1f]{1,64}$', description: 'unique destination id (outbox, API, metrics); empty = the name, else the node id' },
    { name: 'mode', type: 'enum', default: 'pcd-01', options: ['pcd-01', 'acm'], required: true, description: 'pcd-01: vitals as ORU^R01 (IHE_PCD_001); acm: alarms as ORU^R40 (IHE_PCD_ACM_001)' },
    { name: 'host', type: 'host', default: '${EMR_HOST}', required: true, description: 'EMR / alarm manager host' },
    { name: 'port', type: 'port', default: '${EMR_PORT}', required: true, description: 'EMR / alarm manager MLLP port' },
    { name: 'downsampleS', type: 'int', default: '60', min: 0, max: 86400, runtimeDefault: 60, description: 'one value per parameter (device, bed, code, containment) per this many seconds; 0 = every value. Alarms, abnormal and flagged values are never thinned; thinned values stay in the store and are counted in iomt_vitals_downsampled_total' },
    { name: 'sendingEui64', type: 'string', default: '', pattern: '^([0-9A-Fa-f]{16})?$', description: 'MSH-3 universal id: the gateway\'s EUI-64 (16 hex digits), optional' },
    { name: 'tls', type: 'bool', default: false, description: 'MLLP over TLS' },
    { name: 'tlsCa', type: 'file', default: '', when: { field: 'tls', equals: [true] }, description: 'CA file to verify the peer (empty = system CAs)' },
    { name: 'tlsCert', type: 'file', default: '', when: { field: 'tls', equals: [true] }, description: 'client certificate file (PEM)' },
    { name: 'tlsKey', type: 'file', default: '', when: { field: 'tls', equals: [true] }, description: 'client key file (PEM)' },
    { name: 'ackTimeoutS', type: 'int', default: '30', min: 1, max: 3600, runtimeDefault: 30, description: 'wait this long for the ACK (seconds), then retry' },
    { name: 'maxAttempts', type: 'int', default: '10', min: 1, max: 1000000, runtimeDefault: 10, description: 'dead letter after this many attempts' },
    { name: 'maxAgeHours', type: 'int', default: '168', min: 1, max: 87600, runtimeDefault: 168, description: '... or after this many hours' },
    { name: 'reconnectMaxS', type: 'int', default: '30', min: 1, max: 3600, runtimeDefault: 30, description: 'longest wait between reconnects (seconds)' },
    { name: 'sendingApp', type: 'string', default: 'IOMT-GW', description: 'MSH-3' },
    { name: 'sendingFacility', type: 'string', default: '', description: 'MSH-4' },
    { name: 'receivingApp', type: 'string', default: 'EMR', description: 'MSH-5' },
    { name: 'receivingFacility', type: 'string', default: '', description: 'MSH-6' },
    { name: 'processingIds', type: 'string', default: 'P', pattern: '^\\s*[PTD](\\s*,\\s*[PTD])*\\s*$', description: 'MSH-11 processing ids this destination takes (comma list of P, T, D)' },
  ],
};
