/**
 * Definition of the DICOM C-STORE output to a PACS (conventions §2: no side effects here).
 */
import { ConfigError } from '../../contracts/errors';
import { DICOM_STORE_OUTPUT_FIELDS, resolveDicomStoreOutputConfig, type DicomStoreOutputOptions } from './config';
import { DicomStoreOutput } from './dicom-store-output';

export const dicomStoreOutputDefinition = {
  kind: 'dicom-store' as const,
  description: 'Forwards stored DICOM instances to a PACS with C-STORE (streamed from disk, stored transfer syntax), one outbox entry per instance.',
  fields: DICOM_STORE_OUTPUT_FIELDS,
  /** Validate and allocate (no I/O). Throws ConfigError listing every problem. */
  create(opts: DicomStoreOutputOptions): DicomStoreOutput {
    const { problems } = resolveDicomStoreOutputConfig(opts);
    if (problems.length) throw new ConfigError(problems);
    return new DicomStoreOutput(opts);
  },
};

export { DicomStoreOutput, classifyStoreStatus, contextsFor, DICOM_STORE_CONTENT_TYPE, type DicomStoreDescriptor } from './dicom-store-output';
export type { DicomStoreOutputOptions, DicomStoreOutputConfig } from './config';
