/**
 * Field spec of the `iomt-astm-device` node (issue 9 §2): editor defaults, `check-config` and the
 * docs come from this one list (gateway/src/config/field-spec.ts).
 */
import type { NodeSpec } from '../../../gateway/src/config/field-spec';
import { ALLOW_LIST_PATTERN } from '../../hl7-mllp/node-red/iomt-hl7-in.spec';

export const ASTM_DEVICE_SPEC: NodeSpec = {
  type: 'iomt-astm-device',
  summary: 'One ASTM E1381/E1394 (LIS1-A/LIS2-A2) analyzer on a serial port or TCP; commits each result message before the final ACK.',
  listen: { port: 'tcpPort', host: 'tcpHost', when: { field: 'transport', equals: ['tcp-server'] } },
  fields: [
    { name: 'name', type: 'string', default: '', description: 'label on the canvas' },
    { name: 'deviceId', type: 'string', default: '', unique: 'device', pattern: '^[^/\\x00-\\x1f]{1,64}$', description: 'unique device id in the store and API; empty = the name, else the node id' },
    { name: 'machineCode', type: 'string', default: '', pattern: '^[^|^~\\\\&\\x00-\\x1f]{0,50}$', description: 'MA_MAY: the code of this instrument registered with social insurance (QĐ 130/QĐ-BYT XML3), put on every result (HL7 OBX-18, FHIR Device.identifier, claims export); empty = none' },
    { name: 'profile', type: 'profile', profileDriver: 'astm', default: 'generic-lis2-a2', required: true, description: 'analyzer profile (firmware-config/profiles/astm, or IOMT_PROFILES_DIR/astm)' },
    { name: 'transport', type: 'enum', default: 'serial', options: ['serial', 'tcp-server', 'tcp-client'], required: true, description: 'serial port, TCP with the analyzer connecting (tcp-server), or the gateway connecting (tcp-client)' },
    { name: 'serialPath', type: 'string', default: '', required: true, when: { field: 'transport', equals: ['serial'] }, description: 'serial device (prefer /dev/serial/by-id/...); a missing port is retried' },
    { name: 'baudRate', type: 'int', default: '', min: 50, max: 921600, when: { field: 'transport', equals: ['serial'] }, description: 'baud rate; empty = profile default' },
    { name: 'dataBits', type: 'enum', default: '', options: ['', '7', '8'], description: 'data bits; empty = profile default' },
    { name: 'parity', type: 'enum', default: '', options: ['', 'none', 'even', 'odd'], description: 'parity; empty = profile default' },
    { name: 'stopBits', type: 'enum', default: '', options: ['', '1', '2'], description: 'stop bits; empty = profile default' },
    { name: 'flowControl', type: 'enum', default: '', options: ['', 'none', 'rtscts', 'xon'], description: 'flow control; empty = profile default' },
    { name: 'tcpHost', type: 'host', default: '', required: false, when: { field: 'transport', equals: ['tcp-server', 'tcp-client'] }, description: 'tcp-server: address to listen on (default 0.0.0.0); tcp-client: the analyzer (default 127.0.0.1)' },
    { name: 'tcpPort', type: 'port', default: '', required: true, when: { field: 'transport', equals: ['tcp-server', 'tcp-client'] }, description: 'TCP port (listened on with tcp-server)' },
    { name: 'allowFrom', type: 'string', default: '', pattern: ALLOW_LIST_PATTERN, when: { field: 'transport', equals: ['tcp-server'] }, description: 'tcp-server: source addresses or CIDR networks allowed to connect, comma separated (IPv4, IPv6); empty = everyone. Others are closed at once and counted' },
    { name: 'maxPerAddress', type: 'int', default: '8', min: 1, max: 10000, runtimeDefault: 8, when: { field: 'transport', equals: ['tcp-server'] }, description: 'tcp-server: simultaneous connections from one source address' },
    { name: 'answerQueries', type: 'bool', default: true, description: 'answer host queries (Q records) from the order cache; on tcp-server only to addresses in allowFrom (empty: loopback only)' },
    { name: 'queryNameDob', type: 'bool', default: true, description: 'host query answers carry the patient name and birth date (P.6, P.8); off = patient id and sex only' },
    { name: 'broadcastOrders', type: 'bool', default: false, description: 'send new orders to the analyzer as they arrive' },
  ],
};
