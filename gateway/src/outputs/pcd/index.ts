/**
 * Definition of the IHE PCD outputs (PCD-01 to an EMR, ACM PCD-04 to an alarm manager) over MLLP
 * (conventions §2: no side effects here).
 */
import { ConfigError } from '../../contracts/errors';
import { HL7_MLLP_OUTPUT_FIELDS, resolveHl7MllpOutputConfig } from '../hl7-mllp/config';
import { PcdOutput, type PcdOutputOptions } from './pcd-output';

export const pcdOutputDefinition = {
  kind: 'pcd' as const,
  description: 'Sends vitals as IHE PCD-01 ORU^R01 v2.6, or alarms as IHE ACM PCD-04 ORU^R40, over MLLP (the HL7 output transport), with per-destination downsampling.',
  fields: {
    ...HL7_MLLP_OUTPUT_FIELDS,
    mode: { default: 'pcd-01', description: "'pcd-01' vitals to an EMR; 'acm' alarms to an alarm manager." },
    sendingEui64: { description: "MSH-3 universal id: the gateway's EUI-64 (16 hex digits)." },
  },
  /** Validate and allocate (no I/O). Throws ConfigError listing every problem. */
  create(opts: PcdOutputOptions): PcdOutput {
    const { problems } = resolveHl7MllpOutputConfig(opts);
    if (opts.mode !== 'pcd-01' && opts.mode !== 'acm') problems.push({ file: '<pcd output>', path: 'mode', reason: "must be 'pcd-01' or 'acm'" });
    if (problems.length) throw new ConfigError(problems);
    return new PcdOutput(opts);
  },
};

export { PcdOutput } from './pcd-output';
export type { PcdOutputOptions, PcdMode } from './pcd-output';
