/**
 * Field spec of the `iomt-hl7-in` node (issue 9 §2): editor defaults, `check-config` and the docs
 * come from this one list (gateway/src/config/field-spec.ts).
 */
import type { NodeSpec } from '../../../gateway/src/config/field-spec';
import { CHARSET_NAMES } from '../../../gateway/src/charset/charset';

/** Addresses, CIDR networks and separators only (each entry is checked when the listener starts). */
export const ALLOW_LIST_PATTERN = '^[0-9A-Fa-f:.,/;\\s]*$';

export const HL7_IN_SPEC: NodeSpec = {
  type: 'iomt-hl7-in',
  summary: 'Receives HL7 v2 over MLLP (results from analyzers, or orders from the HIS); commits each message before the ACK.',
  listen: { port: 'port', host: 'host' },
  fields: [
    { name: 'name', type: 'string', default: '', description: 'label on the canvas' },
    { name: 'deviceId', type: 'string', default: '', unique: 'device', pattern: '^[^/\\x00-\\x1f]{1,64}$', description: 'unique device id in the store and API; empty = the name, else the node id' },
    { name: 'machineCode', type: 'string', default: '', pattern: '^[^|^~\\\\&\\x00-\\x1f]{0,50}$', description: 'MA_MAY: the code of this instrument registered with social insurance (QĐ 130/QĐ-BYT XML3), put on every result (HL7 OBX-18, FHIR Device.identifier, claims export); empty = none' },
    { name: 'host', type: 'host', default: '0.0.0.0', runtimeDefault: '0.0.0.0', description: 'address to listen on' },
    { name: 'port', type: 'port', default: '2575', required: true, description: 'TCP port to listen on (MLLP)' },
    { name: 'tls', type: 'bool', default: false, description: 'MLLP over TLS' },
    { name: 'tlsCert', type: 'file', default: '', required: true, when: { field: 'tls', equals: [true] }, description: 'server certificate file (PEM)' },
    { name: 'tlsKey', type: 'file', default: '', required: true, when: { field: 'tls', equals: [true] }, description: 'server key file (PEM)' },
    { name: 'tlsCa', type: 'file', default: '', when: { field: 'tls', equals: [true] }, description: 'CA file for client certificates' },
    { name: 'requestCert', type: 'bool', default: false, description: 'require a client certificate (with TLS)' },
    { name: 'maxBytes', type: 'int', default: '8388608', min: 1024, max: 1073741824, runtimeDefault: 8388608, description: 'largest message accepted (bytes); larger ones get AE and the connection closes' },
    { name: 'idleTimeoutS', type: 'int', default: '600', min: 1, max: 86400, runtimeDefault: 600, description: 'close a connection idle this long (seconds)' },
    { name: 'maxConnections', type: 'int', default: '64', min: 1, max: 10000, runtimeDefault: 64, description: 'simultaneous connections; when full, the connection idle longest is closed to make room' },
    { name: 'allowFrom', type: 'string', default: '', pattern: ALLOW_LIST_PATTERN, description: 'source addresses or CIDR networks allowed to connect, comma separated (IPv4, IPv6); empty = everyone, but an orders listener (acceptOrders) = loopback only. Others are closed at once and counted' },
    { name: 'maxPerAddress', type: 'int', default: '8', min: 1, max: 10000, runtimeDefault: 8, description: 'simultaneous connections from one source address' },
    { name: 'firstFrameTimeoutS', type: 'int', default: '10', min: 0, max: 3600, runtimeDefault: 10, description: 'close a connection without a complete MLLP block this long after it opened (seconds; extended while a large block keeps arriving; 0 = never)' },
    { name: 'charset', type: 'enum', default: 'utf8', options: ['', ...CHARSET_NAMES], runtimeDefault: 'utf8', description: 'charset when MSH-18 is empty (a valued MSH-18 wins)' },
    { name: 'fallbackCharset', type: 'enum', default: '', options: ['', ...CHARSET_NAMES], description: 'charset for bytes invalid in the declared one (message flagged); empty = quarantine and AE' },
    { name: 'strict', type: 'bool', default: false, description: 'answer AE for any malformed value (default: keep it as text and flag it)' },
    { name: 'acceptOrders', type: 'bool', default: false, description: 'ORM^O01 / OML^O21 from the HIS go to the order cache' },
  ],
};
