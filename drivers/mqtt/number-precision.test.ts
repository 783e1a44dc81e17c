/**
 * Issue 12 §2 / result fidelity: a device's number keeps the text it was written with (`36.80` is not
 * `36.8`: the device states two decimals). Golden cases as data: JSON number as published → the value read
 * → OBX-5 of the PCD-01 message built from the stored observation. Through the real broker (mqtt.js client,
 * QoS 1) and a real store on disk, then the PCD-01 builder (gateway/src/outputs/pcd/pcd-builder.ts).
 */
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import fc from 'fast-check';
import mqtt, { type MqttClient } from 'mqtt';
import type { Observation } from '../../gateway/src/contracts/observation';
import { GatewayStore } from '../../gateway/src/store/gateway-store';
import { buildPcd01, buildPcd04 } from '../../gateway/src/outputs/pcd/pcd-builder';
import { splitHl7 } from '../../test/helpers/independent-his';
import { tempDir } from '../../test/helpers/env';
import { MqttBroker } from './broker';
import { jsonNumberToNm, keptNumberTexts } from './number-lexemes';
import { normalizeVitals } from './payload';

/** [JSON number as published, value read, OBX-5 text out, decimal kept on the observation (undefined: none needed)] */
const CASES: Array<[string, number, string, string | undefined]> = [
  ['36.80', 36.8, '36.80', '36.80'],
  ['120.0', 120, '120.0', '120.0'],
  ['120', 120, '120', undefined],
  ['36.8', 36.8, '36.8', undefined],
  ['97', 97, '97', undefined],
  ['-0.50', -0.5, '-0.50', '-0.50'],
  ['0.0', 0, '0.0', '0.0'],
  ['-0', -0, '-0', '-0'],
  ['1.50e2', 150, '150', '150'],
  ['1.500E+2', 150, '150.0', '150.0'],
  ['2.5e-3', 0.0025, '0.0025', '0.0025'],
  ['1.0e-3', 0.001, '0.0010', '0.0010'],
  ['1e21', 1e21, '1000000000000000000000', '1000000000000000000000'],
  ['12345678901234567890', 12345678901234567000, '12345678901234567890', '12345678901234567890'],
  ['0.10000000000000000001', 0.1, '0.10000000000000000001', '0.10000000000000000001'],
];

const RECEIVED = '2026-11-30T10:15:01.000Z';
const payload = (nums: string[]) =>
  `{"time":"2026-11-30T10:15:00.000Z","bed":"ICU1-03","observations":[${nums.map((n) => `{"code":"MDC_TEMP_BODY","value":${n},"unit":"Cel"}`).join(',')}]}`;

describe('number text kept (unit: the payload reader)', () => {
  it.each(CASES)('%s → value %s, decimal %s', (lexeme, value, _obx5, decimal) => {
    const [d] = normalizeVitals(Buffer.from(payload([lexeme])), { clientId: 'bed-03', receivedAt: new Date(RECEIVED) }).drafts;
    expect(d.value).toEqual({ kind: 'quantity', value, unit: 'Cel', ...(decimal !== undefined ? { decimal } : {}) });
  });

  it('the text follows its own observation (order, nesting, strings that look like numbers, escaped keys, duplicate keys)', () => {
    const text =
      '{"time":"2026-11-30T10:15:00.000Z","bed":"1.50 \\" 2.0","patient":{"id":"10.0"},"observations":[' +
      '{"code":150456,"value":97.0,"unit":"%"},{"unit":"/min","value":72,"code":"MDC_ECG_HEART_RATE"},' +
      '{"code":"MDC_TEMP_BODY","val\\u0075e":36.50,"unit":"Cel"},{"code":"MDC_TEMP_BODY","value":37.00,"value":37.1,"unit":"Cel"},' +
      '{"code":"MDC_TEMP_BODY","value":37.1,"value":37.10,"unit":"Cel","containment":"1.1.1.150364"}]}';
    const values = normalizeVitals(Buffer.from(text), { clientId: 'bed-03', receivedAt: new Date(RECEIVED) }).drafts.map((d) => d.value);
    expect(values.map((v) => (v?.kind === 'quantity' ? [v.value, v.decimal] : v))).toEqual([
      [97, '97.0'],
      [72, undefined],
      [36.5, '36.50'],
      [37.1, undefined], // JSON.parse keeps the last duplicate: 37.1, so its text is not 37.00
      [37.1, '37.10'],
    ]);
    expect([...keptNumberTexts(text).keys()]).toEqual(['observations/0/value', 'observations/2/value', 'observations/4/value']);
  });

  it('any JSON number: the kept NM text reads as the same double and keeps every digit written', () => {
    const digits = fc.stringMatching(/^[0-9]{1,20}$/);
    const lexeme = fc
      .tuple(fc.boolean(), fc.stringMatching(/^(0|[1-9][0-9]{0,20})$/), fc.option(digits, { nil: undefined }), fc.option(fc.tuple(fc.constantFrom('e', 'E'), fc.constantFrom('', '+', '-'), fc.integer({ min: 0, max: 300 })), { nil: undefined }))
      .map(([neg, int, frac, exp]) => `${neg ? '-' : ''}${int}${frac !== undefined ? `.${frac}` : ''}${exp ? `${exp[0]}${exp[1]}${exp[2]}` : ''}`);
    fc.assert(
      fc.property(lexeme, (t) => {
        const n = Number(t);
        const texts = (() => {
          try {
            // a number ends before whitespace too (RFC 8259 §2): each kind after some of them
            return keptNumberTexts(`{"v":${t}${['', ' ', '\n', '\t', '\r'][t.length % 5]}}`);
          } catch {
            return 'underflow';
          }
        })();
        if (texts === 'underflow') return n === 0 && /[1-9]/.test(t.split(/[eE]/)[0]);
        const kept = texts.get('v');
        if (String(n) === t) return kept === undefined; // the common case costs nothing
        if (!Number.isFinite(n)) return true; // refused by the validator (must be a finite number)
        expect(kept).toBe(t);
        const nm = jsonNumberToNm(t)!;
        expect(nm).toMatch(/^-?\d+(\.\d+)?$/); // HL7 v2.5.1 2.A.47 NM: no exponent
        expect(Number(nm)).toBe(n);
        // the significant digits written are all there, in order
        const sig = (s: string) => s.replace(/[eE].*$/, '').replace(/[-.]/g, '').replace(/^0+/, '');
        expect(sig(nm).startsWith(sig(t)) || sig(t) === '').toBe(true);
        return true;
      }),
      { numRuns: 2000 },
    );
  });
});

describe('number text kept: MQTT publish → store → PCD-01 / PCD-04 OBX-5', () => {
  const t = tempDir('iomt-mqtt-precision-');
  let store: GatewayStore;
  let broker: MqttBroker;
  let client: MqttClient;

  beforeAll(async () => {
    store = GatewayStore.open({ dataDir: t.dir });
    broker = new MqttBroker({ deviceId: 'icu-mqtt', dataDir: t.dir, host: '127.0.0.1', port: 0, allowAnonymous: true }, { submit: (m) => store.submit(m), quarantine: (q) => store.quarantine(q) });
    const { port } = await broker.start();
    client = await mqtt.connectAsync(`mqtt://127.0.0.1:${port}`, { clientId: 'bed-03', reconnectPeriod: 0, protocolVersion: 4 });
  });

  afterAll(async () => {
    await client?.endAsync(true);
    await broker?.close();
    await store?.close();
    t.cleanup();
  });

  const stored = (): Observation[] => {
    const [m] = store.searchMessages({ deviceId: 'icu-mqtt', limit: 1 });
    return store.getMessage(m.id)!.observations;
  };
  const OPTS = { controlId: 'K1', sendingApp: 'IOMT-GW', now: new Date(RECEIVED) };
  const obx = (hl7: string, type: string) => splitHl7(hl7).filter((s) => s.id === 'OBX' && s.field(2) === type);

  it('vitals: every case, in one publish, reaches OBX-5 as written', async () => {
    await client.publishAsync('iomt/bed-03/vitals', payload(CASES.map((c) => c[0])), { qos: 1 });
    const obs = stored();
    // (+ 0: the store keeps JSON, where -0 is 0; its text '-0' is kept)
    expect(obs.map((o) => (o.value?.kind === 'quantity' ? o.value.value + 0 : undefined))).toEqual(CASES.map((c) => c[1] + 0));
    expect(obx(buildPcd01(obs, OPTS), 'NM').map((s) => s.field(5))).toEqual(CASES.map((c) => c[2]));
  });

  it('alarms: the alarming value keeps its text too', async () => {
    const alarm = (v: string) => `{"time":"2026-11-30T10:15:00.000Z","alarms":[{"id":"a1","source":"MDC_TEMP_BODY","event":"MDC_EVT_HI_VAL_GT_LIM","priority":"PM","state":"active","phase":"start","value":${v},"unit":"Cel"}]}`;
    await client.publishAsync('iomt/bed-03/alarms', alarm('39.50'), { qos: 1 });
    const [a] = stored();
    expect(a.value).toEqual({ kind: 'quantity', value: 39.5, unit: 'Cel', decimal: '39.50' });
    expect(obx(buildPcd04([a], OPTS), 'NM').map((s) => s.field(5))).toEqual(['39.50']);
  });
});
