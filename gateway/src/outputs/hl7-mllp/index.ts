/**
 * Definition of the HL7 v2.5.1 / MLLP output (conventions §2: no side effects here).
 */
import { ConfigError } from '../../contracts/errors';
import { HL7_MLLP_OUTPUT_FIELDS, resolveHl7MllpOutputConfig, type Hl7MllpOutputOptions } from './config';
import { Hl7MllpOutput } from './hl7-mllp-output';

export const hl7MllpOutputDefinition = {
  kind: 'hl7-mllp' as const,
  description: 'Sends observations as HL7 v2.5.1 ORU^R01 over MLLP (optionally TLS), one message per inbound message, waiting for each ACK.',
  fields: HL7_MLLP_OUTPUT_FIELDS,
  /** Validate and allocate (no I/O). Throws ConfigError listing every problem. */
  create(opts: Hl7MllpOutputOptions): Hl7MllpOutput {
    const { problems } = resolveHl7MllpOutputConfig(opts);
    if (problems.length) throw new ConfigError(problems);
    return new Hl7MllpOutput(opts);
  },
};

export { Hl7MllpOutput } from './hl7-mllp-output';
export type { Hl7MllpOutputOptions, Hl7MllpOutputConfig } from './config';
