/**
 * Definition of the FHIR R4 HTTP output (conventions §2: no side effects here).
 */
import { ConfigError } from '../../contracts/errors';
import { FHIR_HTTP_OUTPUT_FIELDS, resolveFhirHttpOutputConfig, type FhirHttpOutputOptions } from './config';
import { FhirHttpOutput } from './fhir-http-output';

export const fhirHttpOutputDefinition = {
  kind: 'fhir-http' as const,
  description: 'Sends observations as FHIR R4 resources (Observation, DiagnosticReport, Patient, Specimen, Device) in one transaction Bundle per inbound message, with conditional creates, over HTTPS with OAuth2.',
  fields: FHIR_HTTP_OUTPUT_FIELDS,
  /** Validate and allocate (no I/O). Throws ConfigError listing every problem. */
  create(opts: FhirHttpOutputOptions): FhirHttpOutput {
    const { problems } = resolveFhirHttpOutputConfig(opts);
    if (problems.length) throw new ConfigError(problems);
    return new FhirHttpOutput(opts);
  },
};

export { FhirHttpOutput } from './fhir-http-output';
export type { FhirHttpOutputOptions, FhirHttpOutputConfig } from './config';
