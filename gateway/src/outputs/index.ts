/**
 * Explicit registration of the destination kinds (conventions §3).
 */
import { join } from 'node:path';
import { hl7MllpOutputDefinition } from './hl7-mllp';

export const OUTPUTS = [{ ...hl7MllpOutputDefinition, nodeRedDir: join(__dirname, 'hl7-mllp', 'node-red'), nodeTypes: ['iomt-hl7-out'] }];
