/**
 * The correction rule (issue 13 review): a correction (Table 0085 C, A) or withdrawal (D, W) applies to the
 * LATEST earlier result of the same device + specimen + test, found in the real SQLite store at prepare time;
 * the claims export follows the same rule. Quality notes say when the device's text was cut.
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import { tempDir } from '../../../test/helpers/env';
import { DB_FILE, GatewayStore } from '../store/gateway-store';
import { withDeviceSettings } from '../identifiers/device-sink';
import { parseHl7 } from '../../../drivers/hl7-mllp/hl7-message';
import { parseOru } from '../../../drivers/hl7-mllp/oru-parser';
import { createRootLogger } from '../log/logger';
import { loadSiteConfig } from '../identifiers/site-config';
import type { Observation } from '../contracts/observation';
import { buildTransactionBundle, isCorrection } from './bundle';
import { correctionTargets } from './result-history';
import { xml4Rows, type BhytCodeMap } from '../exports/bhyt';

const site = loadSiteConfig();
const OBS_SYS = site.systems.observation;
const oru = (ctl: string, specimen: string, value: string, status: string) =>
  [
    `MSH|^~\\&|XN1000|LAB|GW|BV|20250301093100+0700||ORU^R01|${ctl}|P|2.5.1|||||VNM|UNICODE UTF-8`,
    'PID|1||BN0001^^^BV^MR||Nguyễn^An^Văn||19850312|M',
    `OBR|1|ORD-1|${specimen}|CBC^CBC^L|||20250301080000+0700`,
    `OBX|1|NM|HGB^Huyết sắc tố^L||${value}|g/dL|13.0-17.0|L|||${status}|||20250301092900+0700`,
  ].join('\r');

describe('a correction replaces the latest earlier result of its device + specimen + test', () => {
  const tmp = tempDir('iomt-fhir-corr-');
  let store: GatewayStore;
  let n = 0;
  const send = async (deviceId: string, specimen: string, value: string, status: string) => {
    const t = oru(`C-${++n}`, specimen, value, status);
    const r = await withDeviceSettings(store, deviceId, { machineCode: 'XN-01' }).submit({ deviceId, driver: 'hl7-mllp', raw: Buffer.from(t), drafts: parseOru(parseHl7(t)).drafts });
    return r.observations;
  };
  const requestOf = (obs: Observation[]) => {
    const targets = correctionTargets(join(tmp.dir, DB_FILE), obs, isCorrection);
    const b = buildTransactionBundle(obs, obs[0].messageUid, { site, correctionTarget: targets }) as any;
    return b.entry.find((e: any) => e.resource.resourceType === 'Observation').request;
  };
  beforeAll(() => {
    createRootLogger('silent');
    store = GatewayStore.open({ dataDir: tmp.dir });
  });
  afterAll(async () => {
    await store.close();
    tmp.cleanup();
  });

  it.each(['C', 'A', 'D', 'W'])('F, rerun F, %s → conditional update on the rerun’s own id', async (letter) => {
    const sp = `SP-${letter}`;
    await send('xn1', sp, '11.6', 'F');
    const [rerun] = await send('xn1', sp, '11.9', 'F');
    await send('xn2', sp, '10.0', 'F'); // another analyser, same specimen id: not the same result
    const c = await send('xn1', sp, '12.6', letter);
    expect(requestOf(c)).toEqual({ method: 'PUT', url: `Observation?identifier=${encodeURIComponent(`${OBS_SYS}|${rerun.id}`)}` });
  });

  it('F, C → the final; F, C, C → the first correction; no earlier result → the result key; a final is a conditional create', async () => {
    const [f] = await send('xn1', 'SP-1', '11.6', 'F');
    expect(requestOf([f])).toMatchObject({ method: 'POST', ifNoneExist: `identifier=${encodeURIComponent(`${OBS_SYS}|${f.id}`)}` });
    const c1 = await send('xn1', 'SP-1', '12.6', 'C');
    expect(requestOf(c1).url).toBe(`Observation?identifier=${encodeURIComponent(`${OBS_SYS}|${f.id}`)}`);
    const c2 = await send('xn1', 'SP-1', '12.7', 'C');
    expect(requestOf(c2).url).toBe(`Observation?identifier=${encodeURIComponent(`${OBS_SYS}|${c1[0].id}`)}`);
    const lone = await send('xn1', 'SP-NEVER-SEEN', '12.6', 'C');
    expect(requestOf(lone).url).toBe(`Observation?identifier=${encodeURIComponent(`${site.systems.resultKey}|xn1/SP-NEVER-SEEN/local/HGB/`)}`.replace('local', encodeURIComponent(lone[0].code.system)));
    // deterministic: prepared again later (more results stored since), the same bytes for the same message
    await send('xn1', 'SP-1', '13.0', 'F');
    expect(requestOf(c1).url).toBe(`Observation?identifier=${encodeURIComponent(`${OBS_SYS}|${f.id}`)}`);
  });

  it('a missing store file gives no target (the result-key fallback), never an error', () => {
    const o = { id: 'U-1', messageUid: 'U', deviceId: 'd', statusCode: 'C', status: 'corrected', code: { system: 'L', code: 'X' }, subject: { specimenId: 'S' } } as unknown as Observation;
    expect(correctionTargets(join(tmp.dir, 'nope.db'), [o], isCorrection)(o)).toBeUndefined();
  });
});

describe('claims export rows follow the same rule', () => {
  const MAP: BhytCodeMap = { version: 1, rows: [] };
  const o = (seq: number, letter: string, value: number): Observation =>
    ({
      id: `U${seq}-1`, messageId: seq, messageUid: `U${seq}`, seq: 1, deviceId: 'xn1', driver: 'hl7-mllp', receivedAt: '2025-03-01T03:10:05.000Z',
      code: { system: 'local', code: 'HGB' }, value: { kind: 'quantity', value, unit: 'g/dL' }, status: 'final', statusCode: letter,
      subject: { specimenId: 'S1' }, equipment: { id: 'xn1', machineCode: 'XN-01' },
    }) as Observation;
  it.each([
    [['F'], ['1']],
    [['F', 'F'], ['2']],
    [['F', 'F', 'C'], ['3']],
    [['F', 'F', 'W'], ['1']],
    [['F', 'F', 'D', 'D'], []],
    [['F', 'C', 'W'], []],
    [['F', 'F', 'C', 'W'], ['1']],
  ])('%j → rows %j', (letters, want) => {
    const rows = xml4Rows(letters.map((l, i) => o(i + 1, l, i + 1)), MAP);
    expect(rows.map((r) => r.GIA_TRI)).toEqual(want);
  });
});

describe('quality notes', () => {
  it.each([
    [200, false],
    [201, true],
    [450, true],
  ])('a device text of %i characters is cut: %s, and the note says so', (len, cut) => {
    const original = 'ạ'.repeat(len);
    const obs = { id: 'Q-1', messageUid: 'Q', seq: 1, deviceId: 'd', driver: 'x', receivedAt: '2025-03-01T00:00:00Z', status: 'final', code: { system: 'L', code: 'X' }, quality: [{ code: 'unit-unknown', original }] } as unknown as Observation;
    const b = buildTransactionBundle([obs], 'Q', { site }) as any;
    const note: string = b.entry.find((e: any) => e.resource.resourceType === 'Observation').resource.note[0].text;
    if (cut) expect(note).toContain(`${'ạ'.repeat(200)}… (cut at 200 of ${len} characters))`);
    else expect(note).toContain(`(device sent: ${original})`);
    expect(note).not.toContain('ạ'.repeat(201));
  });
});
