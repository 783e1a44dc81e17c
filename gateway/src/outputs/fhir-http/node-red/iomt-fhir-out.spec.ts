/**
 * Field spec of the `iomt-fhir-out` node (issue 13 §6): editor defaults, `check-config` and the docs
 * come from this one list (gateway/src/config/field-spec.ts). Secrets are never fields: the node holds
 * the NAME of the environment variable (or a file path) that holds them.
 */
import type { NodeSpec } from '../../../config/field-spec';

const CC = { field: 'authType', equals: ['client-credentials'] };
const ENV_NAME = '^[A-Za-z_][A-Za-z0-9_]*$';

export const FHIR_OUT_SPEC: NodeSpec = {
  type: 'iomt-fhir-out',
  summary: 'Sends the results of each message as one FHIR R4 transaction Bundle (Observation, DiagnosticReport, Patient, Specimen, Device) through a durable outbox.',
  fields: [
    { name: 'name', type: 'string', default: '', description: 'label on the canvas' },
    { name: 'destination', type: 'string', default: '', unique: 'destination', pattern: '^[^/\\x00-\\x1f]{1,64}$', description: 'unique destination id (outbox, API, metrics); empty = the name, else the node id' },
    { name: 'baseUrl', type: 'string', default: '${FHIR_BASE_URL}', required: true, pattern: '^https?://\\S+$', description: 'FHIR R4 base URL (https://...)' },
    { name: 'authType', type: 'enum', options: ['none', 'bearer', 'client-credentials'], default: 'client-credentials', runtimeDefault: 'none', description: 'none, a bearer token, or OAuth2 client credentials (client_secret_basic, or SMART private_key_jwt when a key file is set)' },
    { name: 'tokenUrl', type: 'string', default: '${FHIR_TOKEN_URL}', required: true, pattern: '^https?://\\S+$', when: CC, description: 'OAuth2 token endpoint URL (the private_key_jwt assertion audience)' },
    { name: 'clientId', type: 'string', default: '${FHIR_CLIENT_ID}', required: true, when: CC, description: 'OAuth2 client id' },
    { name: 'clientSecretEnv', type: 'string', default: 'FHIR_CLIENT_SECRET', pattern: ENV_NAME, when: CC, description: 'NAME of the environment variable holding the client secret (client_secret_basic; not used when a private key file is set)' },
    { name: 'privateKeyFile', type: 'file', default: '${FHIR_PRIVATE_KEY_FILE:-}', when: CC, description: 'PKCS#8 PEM private key file (RS384 or ES384) for SMART Backend Services private_key_jwt; empty = client secret' },
    { name: 'keyId', type: 'string', default: '${FHIR_KEY_ID:-}', when: CC, description: 'key id (kid) of that key in the JWKS registered with the authorization server' },
    { name: 'keyAlg', type: 'enum', options: ['RS384', 'ES384'], default: 'RS384', runtimeDefault: 'RS384', when: CC, description: 'signing algorithm of the private key' },
    { name: 'scope', type: 'string', default: 'system/Observation.c system/Patient.c system/Device.c system/Specimen.c system/DiagnosticReport.c', when: CC, description: 'scopes asked for (SMART v2 system scopes)' },
    { name: 'tokenEnv', type: 'string', default: 'FHIR_BEARER_TOKEN', pattern: ENV_NAME, when: { field: 'authType', equals: ['bearer'] }, description: 'NAME of the environment variable holding the bearer token' },
    { name: 'tlsCa', type: 'file', default: '', description: 'site CA file (PEM) to verify the FHIR server and token endpoint (empty = system CAs)' },
    { name: 'tlsCert', type: 'file', default: '', description: 'client certificate file (PEM), when the server asks for one' },
    { name: 'tlsKey', type: 'file', default: '', description: 'client key file (PEM)' },
    { name: 'profileSet', type: 'string', default: 'vn-core', pattern: '^[A-Za-z0-9._-]+$', description: 'meta.profile set from the site file: none, base (vital signs) or vn-core' },
    { name: 'siteFile', type: 'file', default: '', description: 'profile canonicals and identifier systems (empty = firmware-config/fhir/vn-core.json)' },
    { name: 'requestTimeoutS', type: 'int', default: '30', min: 1, max: 600, runtimeDefault: 30, description: 'wait this long for the answer to one Bundle (seconds), then retry' },
    { name: 'strictOrder', type: 'bool', default: false, description: 'deliver strictly in order (a stuck message holds the queue)' },
    { name: 'maxAttempts', type: 'int', default: '10', min: 1, max: 1000000, runtimeDefault: 10, description: 'dead letter after this many attempts' },
    { name: 'maxAgeHours', type: 'int', default: '168', min: 1, max: 87600, runtimeDefault: 168, description: '... or after this many hours' },
    { name: 'processingIds', type: 'string', default: 'P', pattern: '^\\s*[PTD](\\s*,\\s*[PTD])*\\s*$', description: 'MSH-11 processing ids this destination takes (comma list of P, T, D)' },
  ],
};
