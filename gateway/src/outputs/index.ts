/**
 * Explicit registration of the destination kinds (conventions §3).
 */
import { join } from 'node:path';
import { hl7MllpOutputDefinition } from './hl7-mllp';
import { pcdOutputDefinition } from './pcd';
import { mqttUpstreamOutputDefinition } from './mqtt-upstream';
import { fhirHttpOutputDefinition } from './fhir-http';
import { dicomStoreOutputDefinition } from './dicom-store';

export const OUTPUTS = [
  { ...hl7MllpOutputDefinition, nodeRedDir: join(__dirname, 'hl7-mllp', 'node-red'), nodeTypes: ['iomt-hl7-out'] },
  { ...pcdOutputDefinition, nodeRedDir: join(__dirname, 'pcd', 'node-red'), nodeTypes: ['iomt-pcd-out'] },
  { ...mqttUpstreamOutputDefinition, nodeRedDir: join(__dirname, 'mqtt-upstream', 'node-red'), nodeTypes: ['iomt-mqtt-upstream'] },
  { ...fhirHttpOutputDefinition, nodeRedDir: join(__dirname, 'fhir-http', 'node-red'), nodeTypes: ['iomt-fhir-out'] },
  { ...dicomStoreOutputDefinition, nodeRedDir: join(__dirname, 'dicom-store', 'node-red'), nodeTypes: ['iomt-dicom-out'] },
];
