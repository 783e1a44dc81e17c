/**
 * Field spec of the `iomt-dicom-in` node (issue 11 §7): editor defaults, `check-config` and the docs
 * come from this one list (gateway/src/config/field-spec.ts).
 */
import type { NodeSpec } from '../../../gateway/src/config/field-spec';
import { ALLOW_LIST_PATTERN } from '../../hl7-mllp/node-red/iomt-hl7-in.spec';

/** PS3.5 Table 6.2-1 AE: 1–16 characters, no backslash or control characters. */
export const AE_TITLE_PATTERN = '^[^\\\\\\x00-\\x1f]{1,16}$';
/** `AET@host-or-network` entries (or a bare AET), comma or semicolon separated. */
export const CALLERS_PATTERN = '^[^\\\\\\x00-\\x1f]*$';

const when = (field: string) => ({ field, equals: [true] });

export const DICOM_IN_SPEC: NodeSpec = {
  type: 'iomt-dicom-in',
  summary: 'DICOM storage SCP for modalities (C-ECHO, C-STORE streamed to disk; optional worklist C-FIND and MPPS); success only after the file and its index row are durable.',
  listen: { port: 'port', host: 'host' },
  fields: [
    { name: 'name', type: 'string', default: '', description: 'label on the canvas' },
    { name: 'deviceId', type: 'string', default: '', unique: 'device', pattern: '^[^/\\x00-\\x1f]{1,64}$', description: 'unique device id in the store and API; empty = the name, else the node id' },
    { name: 'host', type: 'host', default: '0.0.0.0', runtimeDefault: '0.0.0.0', description: 'address to listen on' },
    { name: 'port', type: 'port', default: '${DICOM_PORT:-11112}', required: true, description: 'TCP port (DICOM 104 or 11112; 2762 for DICOM TLS)' },
    { name: 'aeTitle', type: 'string', default: '${DICOM_AET:-IOMT_GW}', required: true, pattern: AE_TITLE_PATTERN, description: 'our AE title: associations calling another get A-ASSOCIATE-RJ "called AE title not recognized"' },
    { name: 'allowedCallers', type: 'string', default: '', pattern: CALLERS_PATTERN, description: 'calling AE titles allowed, each optionally with its host or network: "CT01@10.1.2.3, MR01@10.1.2.0/24, US01"; empty = any (others get "calling AE title not recognized")' },
    { name: 'allowFrom', type: 'string', default: '', pattern: ALLOW_LIST_PATTERN, description: 'source addresses or CIDR networks allowed to connect at all, comma separated; empty = everyone' },
    { name: 'maxAssociations', type: 'int', default: '16', min: 1, max: 1000, runtimeDefault: 16, description: 'simultaneous associations; more get A-ASSOCIATE-RJ transient "local limit exceeded"' },
    { name: 'maxPerAddress', type: 'int', default: '8', min: 1, max: 1000, runtimeDefault: 8, description: 'simultaneous connections from one source address' },
    { name: 'idleTimeoutS', type: 'int', default: '60', min: 1, max: 86400, runtimeDefault: 60, description: 'abort an association idle this long, and a connection without A-ASSOCIATE-RQ (seconds)' },
    { name: 'storage', type: 'bool', default: true, description: 'accept C-STORE (storage SOP classes)' },
    { name: 'maxStorageMb', type: 'int', default: '0', min: 0, max: 100000000, runtimeDefault: 0, description: 'quota of the stored DICOM files in MB (0 = none); over it C-STORE gets 0xA700 out of resources' },
    { name: 'worklist', type: 'bool', default: false, description: 'answer Modality Worklist C-FIND from the HIS/RIS orders (order cache)' },
    { name: 'asciiAeTitles', type: 'string', default: '', pattern: CALLERS_PATTERN, when: when('worklist'), description: 'calling AE titles that get worklist answers folded to ASCII (old consoles), comma separated' },
    { name: 'mpps', type: 'bool', default: false, description: 'accept MPPS N-CREATE / N-SET (procedure status back to the RIS)' },
    { name: 'tls', type: 'bool', default: false, description: 'DICOM TLS (PS3.15 B.1; TLS 1.2+)' },
    { name: 'tlsCert', type: 'file', default: '', required: true, when: when('tls'), description: 'server certificate file (PEM)' },
    { name: 'tlsKey', type: 'file', default: '', required: true, when: when('tls'), description: 'server key file (PEM)' },
    { name: 'tlsCa', type: 'file', default: '', when: when('tls'), description: 'CA file for client certificates' },
    { name: 'requestCert', type: 'bool', default: false, description: 'require a client certificate signed by the CA (with TLS)' },
  ],
};
