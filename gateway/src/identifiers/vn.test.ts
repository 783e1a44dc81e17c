import { describe, expect, it } from 'vitest';
import { checkBhxh, checkBhyt, checkCccd, classifyIdentifier, classifySubject, identifierQuality } from './vn';
import { table0203Type } from './table-0203';
import { applyDeviceSettings, checkMachineCode, withDeviceSettings } from './device-sink';
import { checkSiteConfig, loadSiteConfig } from './site-config';
import type { InboundMessage, ObservationSink } from '../contracts/driver';
import type { Observation, ObservationDraft } from '../contracts/observation';
import { buildOruR251 } from '../../../drivers/hl7-mllp/oru-builder';
import { parseHl7 } from '../../../drivers/hl7-mllp/hl7-message';
import { validateOruR01v251 } from '../../../test/helpers/hl7v251-validator';

describe('CCCD (NĐ 137/2015: PPP G YY RRRRRR)', () => {
  const NOW = Date.parse('2026-11-30T00:00:00Z');
  const cases: Array<[string, { birthDate?: string; sex?: string; now?: number }, RegExp[]]> = [
    ['079185000123', {}, []], // HCMC, G=1 female 19xx, 85
    ['079185000123', { birthDate: '19850312', sex: 'F' }, []],
    ['001200001234', { birthDate: '2000-01-01', sex: 'm' }, []], // Hà Nội, G=2 male 20xx, 00
    ['096305000001', { birthDate: '20050101', sex: 'F' }, []], // Cà Mau, G=3 female 20xx
    ['079185000123', { sex: 'M' }, [/sex digit/]],
    ['079185000123', { birthDate: '19860312' }, [/year digits/]],
    ['079285000123', { birthDate: '19850312', now: NOW }, [/future/, /year digits/]], // G=2 says 2085
    ['079485000123', { now: NOW }, [/future/]], // G=4: born 2185, no one's number yet
    ['079326000123', { now: NOW }, []], // G=3: born 2026
    ['079327000123', { now: NOW }, [/future/]], // 2027
    ['001984000001', { now: NOW }, [/future/]], // G=9: 2384
    ['003185000123', {}, [/province/]], // 003 is not a province code
    ['099185000123', {}, [/province/]],
    ['07918500012', {}, [/12 digits/]],
    ['07918500012A', {}, [/12 digits/]],
    [' 079185000123', {}, [/12 digits/]],
  ];
  it.each(cases)('%s %j', (v, ctx, expected) => {
    const p = checkCccd(v, ctx);
    expect(p).toHaveLength(expected.length);
    expected.forEach((re, i) => expect(p[i]).toMatch(re));
    for (const x of p) expect(x).not.toContain(v.trim()); // no PHI in the text
  });
});

describe('BHXH and BHYT', () => {
  it.each([
    ['7912345678', true],
    ['791234567', false],
    ['79123456789', false],
    ['79123456a8', false],
  ])('BHXH %s valid=%s', (v, ok) => expect(checkBhxh(v).length === 0).toBe(ok));
  it.each([
    ['DN4797912345678', true], // legacy 15: group DN, level 4, province 79, BHXH number
    ['HS1017912345678', true],
    ['7912345678', true], // QĐ 1666: the 10-digit BHXH number
    ['DN6797912345678', false], // benefit level 6
    ['DN4007912345678', false], // province 00
    ['dn4797912345678', false],
    ['DN479791234567', false],
    ['D14797912345678', false],
  ])('BHYT %s valid=%s', (v, ok) => expect(checkBhyt(v).length === 0).toBe(ok));
});

describe('classification and typing', () => {
  const cfg = loadSiteConfig();
  it('types by CX-5 (or CX-4) alias; unknown types keep theirs under their own system; bad ones are flagged, never dropped', () => {
    const s = { patientIds: [{ id: 'BN1', type: 'MR' }, { id: '079185000123', type: 'CCCD' }, { id: 'X1', authority: 'BHYT' }, { id: 'L9', type: 'PI' }, { id: 'Q' }], birthDate: '19850312', sex: 'M' };
    const c = classifySubject(s, cfg);
    expect(c.map((x) => [x.kind, x.system, x.hl7Type, x.fhirType, x.problems.length])).toEqual([
      ['mrn', 'urn:iomt-gateway:vn:mrn', 'MR', 'MR', 0],
      ['cccd', 'urn:iomt-gateway:vn:cccd', 'NNVNM', 'NI', 1],
      ['bhyt', 'urn:iomt-gateway:vn:bhyt', 'SB', 'SB', 1],
      [undefined, 'urn:iomt-gateway:patient-id:PI', 'PI', 'PI', 0],
      [undefined, 'urn:iomt-gateway:patient-id:U', 'U', undefined, 0],
    ]);
    const flags = identifierQuality(s, cfg);
    expect(flags.map((f) => [f.code, f.location, f.original])).toEqual([
      ['invalid-identifier', 'patientIds[1]', '079185000123'],
      ['invalid-identifier', 'patientIds[2]', 'X1'],
    ]);
    expect(flags[0].text).toMatch(/^invalid-identifier cccd: /);
    expect(classifyIdentifier({ id: '7912345678', type: 'bhxh' }, {}, cfg)).toMatchObject({ kind: 'bhxh', hl7Type: 'SS', problems: [] });
  });

  it('PID-3 CX-5 on HL7 output: Table 0203 codes as sent, VN aliases to their code, none → U', () => {
    expect(['MR', 'PI', 'NNVNM', 'NI', 'SB', '', undefined, 'CCCD', 'cccd', 'BHYT', 'BHXH', 'MA_BN', 'XYZ'].map((t) => table0203Type(t))).toEqual(['MR', 'PI', 'NNVNM', 'NI', 'SB', 'U', 'U', 'NNVNM', 'NNVNM', 'SB', 'SS', 'MR', 'XYZ']);
  });

  it('a site file with a bad system or a missing kind is refused with every problem', () => {
    const bad = JSON.parse(JSON.stringify(cfg));
    bad.identifiers.cccd.system = 'not a uri';
    delete bad.identifiers.bhxh;
    expect(() => checkSiteConfig(bad, 'site.json')).toThrow(/identifiers.bhxh: required; identifiers.cccd.system: must be a URI|identifiers.cccd.system: must be a URI; identifiers.bhxh: required/);
  });
});

describe('device settings on every draft (machine code, identifier flags)', () => {
  const draft = (over: Partial<ObservationDraft> = {}): ObservationDraft => ({
    code: { system: 'local', code: 'HGB' },
    status: 'final',
    value: { kind: 'quantity', value: 11.6, unit: 'g/dL' },
    subject: { patientIds: [{ id: 'BN1', type: 'MR' }, { id: '12345', type: 'CCCD' }], patientName: 'Nguyễn^An^Văn' },
    ...over,
  });

  it('sets machineCode (keeps the device equipment), adds model/serial only when missing, flags the bad CCCD once', () => {
    const d1 = draft({ equipment: { id: 'XN1', name: 'Sysmex', model: 'XN-1000' }, quality: [{ code: 'charset-fallback' }] });
    const [a, b] = applyDeviceSettings('dev', [d1, draft()], { machineCode: ' MM-01 ', model: 'other', serial: 'S1' });
    expect(a.equipment).toEqual({ id: 'XN1', name: 'Sysmex', model: 'XN-1000', serial: 'S1', machineCode: 'MM-01' });
    expect(b.equipment).toEqual({ id: 'dev', model: 'other', serial: 'S1', machineCode: 'MM-01' });
    expect(a.quality!.map((q) => q.code)).toEqual(['charset-fallback', 'invalid-identifier']);
    expect(d1.equipment).toEqual({ id: 'XN1', name: 'Sysmex', model: 'XN-1000' }); // input untouched
    expect(applyDeviceSettings('dev', [a], { machineCode: 'MM-01' })[0].quality).toHaveLength(2); // not flagged twice
    expect(a.value).toEqual(d1.value);
    expect(a.subject).toBe(d1.subject); // the identifier is kept as sent
  });

  it('the sink wrapper commits the enriched drafts; a bad machine code is refused at start', async () => {
    const seen: InboundMessage[] = [];
    const inner: ObservationSink = { submit: async (m) => (seen.push(m), { messageId: 1, messageUid: 'U', duplicate: false, observations: [] }), quarantine: async () => 7 };
    const sink = withDeviceSettings(inner, 'dev', { machineCode: 'MM-01' });
    const msg: InboundMessage = { deviceId: 'dev', driver: 'x', raw: Buffer.from('r'), dedupeKey: 'k', drafts: [draft()] };
    await sink.submit(msg);
    expect(seen[0]).toMatchObject({ dedupeKey: 'k', raw: Buffer.from('r') });
    expect(seen[0].drafts[0].equipment?.machineCode).toBe('MM-01');
    expect(msg.drafts[0].equipment).toBeUndefined();
    expect(await sink.quarantine({ deviceId: 'dev', driver: 'x', raw: Buffer.from(''), reason: 'r', errorCode: 'E' })).toBe(7);
    expect(() => withDeviceSettings(inner, 'dev', { machineCode: 'A|B' })).toThrow(/delimiters/);
    expect(checkMachineCode('x'.repeat(51))).toMatch(/50/);
  });

  it('HL7 output: OBX-18 carries MA_MAY as a second EI repetition, PID-3 types are Table 0203; the message stays valid v2.5.1', () => {
    const [d] = applyDeviceSettings('dev', [draft({ equipment: { id: 'XN1', name: 'Sysmex' } })], { machineCode: 'MM-01' });
    const o: Observation = { ...d, id: 'U-1', messageId: 1, messageUid: 'U', seq: 1, deviceId: 'dev', driver: 'hl7-mllp', receivedAt: '2025-03-01T02:31:00Z' };
    const text = buildOruR251([o], { controlId: 'C1', sendingApp: 'GW', now: new Date('2025-03-01T02:31:00Z') });
    const msg = parseHl7(text);
    expect(msg.segment('PID')!.get(3, 5, 2)).toBe('NNVNM');
    expect(text).toContain('PID|1||BN1^^^^MR~12345^^^^NNVNM||Nguyễn^An^Văn');
    expect(text).toMatch(/\|XN1\^Sysmex~MM-01\^MA_MAY(\r|$)/);
    expect(text).toContain('IOMT-GW data quality: invalid-identifier at patientIds[1] - invalid-identifier cccd: CCCD must be 12 digits');
    expect(validateOruR01v251(text)).toEqual([]);
  });
});
