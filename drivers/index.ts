/**
 * Explicit registration of the device drivers (conventions §3). Each entry says where its thin
 * Node-RED node lives and how its device profiles (data in firmware-config/profiles/<name>/) are
 * validated; the gateway reads this list, it does not scan folders for code.
 */
import { join } from 'node:path';
import type { ConfigProblem } from '../gateway/src/contracts/errors';
import { checkProfileDir } from './astm/profile';

export interface DriverDefinition {
  name: string;
  description: string;
  /** Directory with the compiled node-red/*.js + *.html of this driver (relative to this file). */
  nodeRedDir: string;
  nodeTypes: string[];
  /** Validate this driver's profile directory (firmware-config/profiles/<name>). */
  checkProfiles?: (dir: string) => ConfigProblem[];
}

export const DRIVERS: DriverDefinition[] = [
  {
    name: 'hl7-mllp',
    description: 'HL7 v2.3.1–2.6 over MLLP (ORU^R01 results; ORM^O01/OML^O21 orders), TLS optional',
    nodeRedDir: join(__dirname, 'hl7-mllp', 'node-red'),
    nodeTypes: ['iomt-hl7-in'],
  },
  {
    name: 'astm',
    description: 'ASTM E1381/E1394 (LIS1-A/LIS2-A2) over serial or TCP, host queries and order download',
    nodeRedDir: join(__dirname, 'astm', 'node-red'),
    nodeTypes: ['iomt-astm-device'],
    checkProfiles: checkProfileDir,
  },
  {
    name: 'mqtt',
    description: 'Embedded MQTT 3.1.1 broker for bedside devices (iomt/<clientId>/vitals, /alarms), TLS optional, PUBACK after commit',
    nodeRedDir: join(__dirname, 'mqtt', 'node-red'),
    nodeTypes: ['iomt-mqtt-broker'],
  },
  {
    name: 'dicom',
    description: 'DICOM storage SCP for modalities (C-ECHO, C-STORE streamed to disk, success after commit), optional worklist C-FIND and MPPS, DICOM TLS',
    nodeRedDir: join(__dirname, 'dicom', 'node-red'),
    nodeTypes: ['iomt-dicom-in'],
  },
];
