/**
 * flows/imaging.json passes check-config (issue 11 §7): the storage SCP on ${DICOM_PORT:-11112} as AE
 * ${DICOM_AET:-IOMT_GW} → forwarding to ${PACS_HOST}:${PACS_PORT} AE ${PACS_AET}; RIS orders in on
 * ${RIS_ORDERS_PORT:-2578} (acceptOrders); MPPS status out to ${RIS_HOST}:${RIS_PORT}. The dicom in
 * spec is passed explicitly when it is not yet listed in NODE_SPECS.
 */
import { join } from 'node:path';
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import { checkFlowFile } from '../../gateway/src/config/flow-check';
import { NODE_SPECS } from '../../gateway/src/config/node-specs';
import { DICOM_IN_SPEC } from '../../drivers/dicom/node-red/iomt-dicom-in.spec';
import { DICOM_OUT_SPEC } from '../../gateway/src/outputs/dicom-store/node-red/iomt-dicom-out.spec';
import { dicomOutSettings } from '../../gateway/src/outputs/dicom-store/node-red/dicom-out-settings';

const FILE = join(__dirname, '../../flows/imaging.json');
const specs = [...NODE_SPECS, ...[DICOM_IN_SPEC, DICOM_OUT_SPEC].filter((s) => !NODE_SPECS.some((n) => n.type === s.type))];
const SITE = { PACS_HOST: '10.20.0.5', PACS_PORT: '104', PACS_AET: 'PACS_BVT', RIS_HOST: '10.20.0.6', RIS_PORT: '2576' };

describe('flows/imaging.json', () => {
  const nodes = JSON.parse(readFileSync(FILE, 'utf8')) as Array<Record<string, any>>;
  const byId = new Map(nodes.map((n) => [n.id as string, n]));

  it('passes check-config with a typical site environment', () => {
    expect(checkFlowFile(FILE, { env: SITE, specs })).toEqual([]);
  });

  it.each([
    [{ ...SITE, PACS_HOST: '' }, /iomt-dicom-out.*host/],
    [{ ...SITE, PACS_AET: '' }, /iomt-dicom-out.*calledAet/],
    [{ ...SITE, PACS_AET: 'AN_AE_TITLE_TOO_LONG' }, /iomt-dicom-out.*calledAet/],
    [{ ...SITE, DICOM_AET: 'BAD\\AE' }, /iomt-dicom-in.*aeTitle/],
    [{ ...SITE, RIS_PORT: '' }, /iomt-hl7-out.*port/],
    [{ ...SITE, RIS_ORDERS_PORT: '11112' }, /already listened on/],
  ])('catches %j', (env, reason) => {
    expect(checkFlowFile(FILE, { env, specs }).map((p) => `${p.path}: ${p.reason}`).join('\n')).toMatch(reason);
  });

  it('wiring and defaults as issue 11 §7 says: instances to the PACS, MPPS to the RIS, orders into the cache', () => {
    expect(byId.get('dicom-in-modalities')).toMatchObject({ type: 'iomt-dicom-in', port: '${DICOM_PORT:-11112}', aeTitle: '${DICOM_AET:-IOMT_GW}', wires: [['route-imaging']] });
    expect(byId.get('route-imaging')).toMatchObject({ type: 'switch', property: '_iomt.messageType', wires: [['dicom-out-pacs'], ['hl7-out-ris-mpps']] });
    expect(byId.get('dicom-out-pacs')).toMatchObject({ type: 'iomt-dicom-out', host: '${PACS_HOST}', port: '${PACS_PORT}', calledAet: '${PACS_AET}' });
    expect(byId.get('hl7-out-ris-mpps')).toMatchObject({ type: 'iomt-hl7-out', host: '${RIS_HOST}', port: '${RIS_PORT}', strictOrder: true });
    expect(byId.get('hl7-in-ris-orders')).toMatchObject({ type: 'iomt-hl7-in', port: '${RIS_ORDERS_PORT:-2578}', acceptOrders: true });
    const s = dicomOutSettings(byId.get('dicom-out-pacs') as never, '/var/lib/iomt-gateway', SITE);
    expect(s).toMatchObject({ options: { destination: 'pacs', host: '10.20.0.5', port: 104, calledAeTitle: 'PACS_BVT', callingAeTitle: 'IOMT_GW' } });
  });

  it('every ${VAR} of the flow is documented in the README imaging section', () => {
    const readme = readFileSync(join(__dirname, '../../README.md'), 'utf8');
    const section = readme.slice(readme.indexOf('<!-- imaging-flow-vars -->'), readme.indexOf('<!-- /imaging-flow-vars -->'));
    expect(section.length).toBeGreaterThan(100);
    const vars = new Set([...readFileSync(FILE, 'utf8').matchAll(/\$\{([A-Z0-9_]+)/g)].map((m) => m[1]));
    for (const v of vars) expect(section, v).toContain(`\`${v}\``);
  });
});
