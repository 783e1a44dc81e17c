/**
 * The site's FHIR profile canonicals and identifier systems (issue 13): one data file a site can
 * change, firmware-config/fhir/vn-core.json by default. Loaded once per path; a malformed file throws
 * a TypeError naming what is wrong (a node reports it as a start failure).
 */
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../package-root';

export type VnIdentifierKind = 'mrn' | 'cccd' | 'bhxh' | 'bhyt';
export const VN_IDENTIFIER_KINDS: readonly VnIdentifierKind[] = ['mrn', 'cccd', 'bhxh', 'bhyt'];

export interface IdentifierKindConfig {
  label: string;
  /** FHIR Identifier.system (a URI). */
  system: string;
  /** HL7 v2.5.1 Table 0203 code sent in PID-3 CX-5. */
  hl7Type: string;
  /** Code of http://terminology.hl7.org/CodeSystem/v2-0203 in FHIR Identifier.type. */
  fhirType: string;
  /** CX-5 type codes (upper case) a HIS or device uses for this kind; matched case-insensitively. */
  aliases: string[];
}

export interface FhirSiteConfig {
  version: number;
  /** profile set name → key ('Patient', 'Observation.laboratory', 'Observation.vital-signs', 'Device', ...) → canonicals. */
  profileSets: Record<string, Record<string, string[]>>;
  identifiers: Record<VnIdentifierKind, IdentifierKindConfig>;
  /** Optional UTC offset (`+07:00`) of device times sent without one (HL7 TS without +ZZZZ); absent: such times are cut to their date. */
  localTimeOffset?: string;
  systems: {
    observation: string;
    resultKey: string;
    report: string;
    specimen: string;
    device: string;
    machineCode: string;
    eui64: string;
    gatewayPatient: string;
    /** Prefix; the coding system name (or 'local') is appended: urn:iomt-gateway:code:99MRC. */
    localCode: string;
    /** Prefix; the CX-5 type (or U) is appended for identifiers of no known kind. */
    patientId: string;
    placerOrder: string;
    deviceFlag: string;
    /** Optional: the Accession Number's issuer (RIS/HIS) for ImagingStudy.identifier ACSN; default urn:iomt-gateway:accession. */
    accession?: string;
  };
}

export const DEFAULT_SITE_CONFIG_FILE = (): string => join(packageRoot(), 'firmware-config', 'fhir', 'vn-core.json');

const cache = new Map<string, FhirSiteConfig>();

/** Check the shape of a parsed site file; returns it typed or throws TypeError listing every problem. */
export function checkSiteConfig(raw: unknown, file = '<fhir site config>'): FhirSiteConfig {
  const problems: string[] = [];
  const o = raw as Partial<FhirSiteConfig> | null;
  if (!o || typeof o !== 'object') throw new TypeError(`${file}: not a JSON object`);
  if (!o.profileSets || typeof o.profileSets !== 'object') problems.push('profileSets: required object');
  for (const k of VN_IDENTIFIER_KINDS) {
    const c = o.identifiers?.[k];
    if (!c) problems.push(`identifiers.${k}: required`);
    else {
      if (!/^[a-z][a-z0-9+.-]*:\S+$/i.test(c.system ?? '')) problems.push(`identifiers.${k}.system: must be a URI`);
      if (!c.hl7Type) problems.push(`identifiers.${k}.hl7Type: required`);
      if (!c.fhirType) problems.push(`identifiers.${k}.fhirType: required`);
      if (!Array.isArray(c.aliases)) problems.push(`identifiers.${k}.aliases: must be a list`);
    }
  }
  const sys = o.systems as Record<string, unknown> | undefined;
  for (const k of ['observation', 'resultKey', 'report', 'specimen', 'device', 'machineCode', 'eui64', 'gatewayPatient', 'localCode', 'patientId', 'placerOrder', 'deviceFlag']) {
    if (typeof sys?.[k] !== 'string' || !/^[a-z][a-z0-9+.-]*:\S*$/i.test(sys[k] as string)) problems.push(`systems.${k}: must be a URI`);
  }
  if (sys?.accession !== undefined && (typeof sys.accession !== 'string' || !/^[a-z][a-z0-9+.-]*:\S*$/i.test(sys.accession))) problems.push('systems.accession: must be a URI');
  if (o.localTimeOffset !== undefined && !/^[+-](?:0\d|1[0-4]):[0-5]\d$/.test(o.localTimeOffset)) problems.push('localTimeOffset: must be +HH:MM or -HH:MM');
  if (problems.length) throw new TypeError(`${file}: ${problems.join('; ')}`);
  return o as FhirSiteConfig;
}

/** Load (and cache) the site file; default: the shipped firmware-config/fhir/vn-core.json. */
export function loadSiteConfig(file?: string): FhirSiteConfig {
  const path = file || DEFAULT_SITE_CONFIG_FILE();
  const hit = cache.get(path);
  if (hit) return hit;
  let raw: unknown;
  try {
    raw = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new TypeError(`${path}: ${(e as Error).message}`);
  }
  const cfg = checkSiteConfig(raw, path);
  cache.set(path, cfg);
  return cfg;
}
