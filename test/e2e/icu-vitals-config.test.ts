/**
 * flows/icu-vitals.json passes check-config (issue 12 §6): every node type known, every field valid
 * after ${ENV} substitution, with an empty environment (the defaults) and with a typical one; a
 * wrong value is caught. The node specs of this flow are passed explicitly until they are listed in
 * gateway/src/config/node-specs.ts (NODE_SPECS).
 */
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { checkFlowFile, checkFlowNodes } from '../../gateway/src/config/flow-check';
import { NODE_SPECS } from '../../gateway/src/config/node-specs';
import { MQTT_BROKER_SPEC } from '../../drivers/mqtt/node-red/iomt-mqtt-broker.spec';
import { PCD_OUT_SPEC } from '../../gateway/src/outputs/pcd/node-red/iomt-pcd-out.spec';
import { MQTT_UPSTREAM_SPEC } from '../../gateway/src/outputs/mqtt-upstream/node-red/iomt-mqtt-upstream.spec';

const FILE = join(__dirname, '../../flows/icu-vitals.json');
const specs = [...NODE_SPECS, ...[MQTT_BROKER_SPEC, PCD_OUT_SPEC, MQTT_UPSTREAM_SPEC].filter((s) => !NODE_SPECS.some((n) => n.type === s.type))];

describe('flows/icu-vitals.json', () => {
  it('passes with the defaults (empty environment)', () => {
    expect(checkFlowFile(FILE, { env: {}, specs })).toEqual([]);
  });

  it('passes with a typical site environment (TLS broker, EMR, upstream over TLS)', () => {
    const env = { MQTT_PORT: '11883', MQTTS_PORT: '18883', PCD_IN_PORT: '12579', EMR_HOST: 'emr.hospital.local', EMR_PORT: '6661', UPSTREAM_MQTT_URL: 'mqtts://bus.province.vn:8883', ACM_HOST: 'acm.local', ACM_PORT: '6662' };
    expect(checkFlowFile(FILE, { env, specs })).toEqual([]);
  });

  it.each([
    [{ PCD_IN_PORT: '70000' }, /iomt-hl7-in.*port/],
    [{ EMR_PORT: 'x' }, /iomt-pcd-out.*port/],
    [{ UPSTREAM_MQTT_URL: 'http://bus' }, /iomt-mqtt-upstream.*url/],
    [{ MQTT_PORT: '2579' }, /already listened on/], // broker and PCD-in on one port
  ])('catches %j', (env, reason) => {
    const problems = checkFlowFile(FILE, { env, specs });
    expect(problems.map((p) => `${p.path}: ${p.reason}`).join('\n')).toMatch(reason);
  });

  it('the PCD-in listener and the broker feed all three destinations; the EMR is downsampled, the alarm manager and the bus are not', () => {
    const nodes = JSON.parse(readFileSync(FILE, 'utf8')) as Array<Record<string, unknown>>;
    const byId = new Map(nodes.map((n) => [n.id as string, n]));
    for (const src of ['mqtt-broker-beds', 'pcd-in-central']) expect((byId.get(src)!.wires as string[][])[0].sort()).toEqual(['mqtt-upstream-bus', 'pcd-out-acm', 'pcd-out-emr']);
    expect(byId.get('pcd-out-emr')).toMatchObject({ mode: 'pcd-01', downsampleS: '${EMR_DOWNSAMPLE_S:-60}' });
    expect(byId.get('pcd-out-acm')).toMatchObject({ mode: 'acm', downsampleS: '0' });
    expect(byId.get('mqtt-upstream-bus')).toMatchObject({ downsampleS: '0', url: '${UPSTREAM_MQTT_URL:-}' });
    expect(checkFlowNodes(nodes, FILE, { env: {}, specs })).toEqual([]);
  });
});
