/**
 * Field spec of the `iomt-dicom-out` node (issue 11 §7): editor defaults, `check-config` and the docs
 * come from this one list (gateway/src/config/field-spec.ts).
 */
import type { NodeSpec } from '../../../config/field-spec';

/** PS3.5 6.2 AE: 1-16 characters, no backslash or control characters (a ${VAR} is checked resolved). */
const AE_PATTERN = '^[\\x20-\\x5b\\x5d-\\x7e]{1,16}$';

export const DICOM_OUT_SPEC: NodeSpec = {
  type: 'iomt-dicom-out',
  summary: 'Forwards each stored DICOM instance to a PACS with C-STORE (as stored, streamed from disk) through a durable outbox.',
  fields: [
    { name: 'name', type: 'string', default: '', description: 'label on the canvas' },
    { name: 'destination', type: 'string', default: '', unique: 'destination', pattern: '^[^/\\x00-\\x1f]{1,64}$', description: 'unique destination id, one per PACS (outbox, API, metrics); empty = the name, else the node id' },
    { name: 'host', type: 'host', default: '${PACS_HOST}', required: true, description: 'PACS host name or address' },
    { name: 'port', type: 'port', default: '${PACS_PORT}', required: true, description: 'PACS DICOM port (104, 11112; 2762 with TLS)' },
    { name: 'calledAet', type: 'string', default: '${PACS_AET}', required: true, pattern: AE_PATTERN, description: "the PACS's AE title (called AE)" },
    { name: 'callingAet', type: 'string', default: '${DICOM_AET:-IOMT_GW}', pattern: AE_PATTERN, runtimeDefault: 'IOMT_GW', description: 'our AE title as the PACS knows it (calling AE)' },
    { name: 'tls', type: 'bool', default: false, description: 'DICOM TLS (PS3.15 B.1)' },
    { name: 'tlsCa', type: 'file', default: '', when: { field: 'tls', equals: [true] }, description: 'CA file to verify the PACS (empty = system CAs)' },
    { name: 'tlsCert', type: 'file', default: '', when: { field: 'tls', equals: [true] }, description: 'client certificate file (PEM), when the PACS asks for one' },
    { name: 'tlsKey', type: 'file', default: '', when: { field: 'tls', equals: [true] }, description: 'client key file (PEM)' },
    { name: 'dimseTimeoutS', type: 'int', default: '60', min: 1, max: 3600, runtimeDefault: 60, description: 'wait this long for the association answer or a C-STORE response (seconds), then abort and retry' },
    { name: 'lingerS', type: 'int', default: '5', min: 0, max: 600, runtimeDefault: 5, description: 'keep the association open this long after a batch (the next instances of a study re-use it)' },
    { name: 'outOfResourcesRetryable', type: 'bool', default: false, description: 'retry instances answered 0xA7xx out of resources (default: dead letter with the status)' },
    { name: 'maxAttempts', type: 'int', default: '10', min: 1, max: 1000000, runtimeDefault: 10, description: 'dead letter after this many attempts' },
    { name: 'maxAgeHours', type: 'int', default: '168', min: 1, max: 87600, runtimeDefault: 168, description: '... or after this many hours' },
    { name: 'reconnectMaxS', type: 'int', default: '30', min: 1, max: 3600, runtimeDefault: 30, description: 'longest wait between reconnects while the PACS is unreachable (seconds)' },
  ],
};
