/**
 * Every IoMT node type's field spec (one per node, beside its wrapper). `check-config`, the editor
 * (GET /editor/iomt/fields.js) and the docs read this list; a node type not here is unknown.
 */
import { join } from 'node:path';
import { existsSync, readdirSync } from 'node:fs';
import type { NodeSpec } from './field-spec';
import { HL7_IN_SPEC } from '../../../drivers/hl7-mllp/node-red/iomt-hl7-in.spec';
import { ASTM_DEVICE_SPEC } from '../../../drivers/astm/node-red/iomt-astm-device.spec';
import { HL7_OUT_SPEC } from '../outputs/hl7-mllp/node-red/iomt-hl7-out.spec';
import { MQTT_BROKER_SPEC } from '../../../drivers/mqtt/node-red/iomt-mqtt-broker.spec';
import { DICOM_IN_SPEC } from '../../../drivers/dicom/node-red/iomt-dicom-in.spec';
import { DICOM_OUT_SPEC } from '../outputs/dicom-store/node-red/iomt-dicom-out.spec';
import { FHIR_OUT_SPEC } from '../outputs/fhir-http/node-red/iomt-fhir-out.spec';
import { PCD_OUT_SPEC } from '../outputs/pcd/node-red/iomt-pcd-out.spec';
import { MQTT_UPSTREAM_SPEC } from '../outputs/mqtt-upstream/node-red/iomt-mqtt-upstream.spec';
import { loadProfiles } from '../../../drivers/astm/profile';
import { packageRoot } from '../package-root';

export const NODE_SPECS: readonly NodeSpec[] = [
  HL7_IN_SPEC,
  HL7_OUT_SPEC,
  ASTM_DEVICE_SPEC,
  MQTT_BROKER_SPEC,
  PCD_OUT_SPEC,
  MQTT_UPSTREAM_SPEC,
  FHIR_OUT_SPEC,
  DICOM_IN_SPEC,
  DICOM_OUT_SPEC,
];

export function nodeSpec(type: string): NodeSpec | undefined {
  return NODE_SPECS.find((s) => s.type === type);
}

/**
 * Known profile ids per driver, as the nodes load them at run time: the shipped directory plus
 * IOMT_PROFILES_DIR (ASTM's built-in generic profile always exists). A directory whose profiles do
 * not load is reported by the profile check, and its ids are left out here.
 */
export function knownProfileIds(env: NodeJS.ProcessEnv = process.env, shippedDir = join(packageRoot(), 'firmware-config', 'profiles')): Record<string, Set<string>> {
  const astm = new Set<string>(['generic-lis2-a2']);
  const dirs = [join(shippedDir, 'astm')];
  if (env.IOMT_PROFILES_DIR) dirs.push(join(env.IOMT_PROFILES_DIR, 'astm'));
  for (const d of dirs) {
    if (!existsSync(d) || !readdirSync(d).some((f) => f.endsWith('.json'))) continue;
    try {
      for (const id of loadProfiles(d).keys()) astm.add(id);
    } catch {
      // reported by checkProfiles (cli check-config)
    }
  }
  return { astm };
}
