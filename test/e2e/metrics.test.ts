/**
 * Issue 8 part 7: metrics count each event once. The BUILT gateway (`npm run build`) runs the shipped
 * flows/hl7-relay.json; python-hl7's `mllp_send` sends N good messages, k exact re-sends, r messages
 * that reuse a control id for other content and q messages the gateway must refuse; an independent
 * HIS (test/helpers/independent-his.ts, no project code) counts what arrives; every counter on
 * /metrics is checked against those numbers.
 */
import { describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { tempDir, waitFor } from '../helpers/env';
import type { GatewayProcess } from '../helpers/gateway-process';
import { gatewayWithHis, startRelay } from '../helpers/gateway-with-his';
import { IndependentHis, metricSum, mllpFrame, splitHl7 } from '../helpers/independent-his';
import { assertValidOruR01v251 } from '../helpers/hl7v251-validator';

const pexec = promisify(execFile);
const DEVICE = 'hl7-analyzers'; // HL7_DEVICE_ID default of flows/hl7-relay.json
const DEST = 'his'; // HIS_DESTINATION default

const N = 25; // distinct good ORU^R01
const K = 3; // exact re-sends of already acknowledged messages (duplicates)
const R = 2; // the same sender + MSH-10 as an earlier message, other content (control id reused)
const Q = 2; // refused: ADT^A01 (AR, unsupported) and an ORU without MSH-10 (AE, structural)

function oru(controlId: string, specimen: string, value: string, patient = 'BN0012345'): string {
  return (
    [
      `MSH|^~\\&|METRICS-LAB|LAB1|GW|HOSP|20250301093100||ORU^R01|${controlId}|P|2.5.1`,
      `PID|1||${patient}^^^HOSP^MR||DOE^JANE||19800101|F`,
      `OBR|1||${specimen}|CHEM^Chemistry^L|||20250301080000`,
      `OBX|1|NM|GLU^Glucose^L||${value}|mmol/L|3.9-6.1|N|||F`,
    ].join('\r') + '\r'
  );
}

/** Send messages in one mllp_send run (already framed, docs/peers.md); the MSA-1 code of each answer, in order. */
async function sendAll(dir: string, name: string, messages: string[], port: number): Promise<string[]> {
  const f = join(dir, name);
  writeFileSync(f, Buffer.concat(messages.map((m) => mllpFrame(m))));
  const { stdout } = await pexec('timeout', ['30', 'mllp_send', '-f', f, '-p', String(port), '127.0.0.1']);
  return [...stdout.matchAll(/MSA\|([A-Z]{2})\|/g)].map((m) => m[1]);
}

const specimenOf = (text: string): string => splitHl7(text).find((s) => s.id === 'OBR')?.c(3, 1) ?? '';

describe('metrics count each event once (issue 8 part 7): flows/hl7-relay.json', () => {
  const tmp = tempDir();
  const his = new IndependentHis();
  let gw: GatewayProcess;

  gatewayWithHis(tmp, his, async (hisPort) => (gw = await startRelay(tmp.dir, hisPort)));

  const good = Array.from({ length: N }, (_, i) => oru(`M${i + 1}`, `MET-${i + 1}`, (4 + i / 10).toFixed(1)));

  it(`N=${N} good, k=${K} duplicates, r=${R} reused control ids, q=${Q} refused: every counter matches`, async () => {
    const resend = good.slice(0, K); // byte-identical re-sends
    const reused = [oru('M5', 'MET-REUSE-1', '9.9', 'BN0099991'), oru('M6', 'MET-REUSE-2', '2.2', 'BN0099992')];
    expect(reused.length).toBe(R);
    const refused = [
      'MSH|^~\\&|METRICS-LAB|LAB1|GW|HOSP|20250301093100||ADT^A01|ADT1|P|2.5.1\rEVN|A01|20250301093100\rPID|1||BN0012345^^^HOSP^MR||DOE^JANE\rPV1|1|I\r',
      'MSH|^~\\&|METRICS-LAB|LAB1|GW|HOSP|20250301093100||ORU^R01||P|2.5.1\rPID|1||BN0012345^^^HOSP^MR||DOE^JANE\rOBR|1||MET-NOID|CHEM^Chemistry^L\rOBX|1|NM|GLU^Glucose^L||5.0|mmol/L|||||F\r',
    ];
    expect(refused.length).toBe(Q);

    const codes = await sendAll(tmp.dir, 'all.hl7', [...good, ...resend, ...reused, ...refused], gw.hl7Port);
    expect(codes).toEqual([...Array(N + K + R).fill('AA'), 'AR', 'AE']);

    // the HIS gets every stored message: N + r, each once
    await waitFor(() => his.received.length >= N + R, 30_000, 50);
    await new Promise((r) => setTimeout(r, 1500)); // nothing more may come
    expect(his.received.length).toBe(N + R);
    const specimens = his.received.map((m) => specimenOf(m.text));
    expect(new Set(specimens).size).toBe(N + R);
    expect(new Set(specimens)).toEqual(new Set([...good.map((g) => specimenOf(g)), 'MET-REUSE-1', 'MET-REUSE-2']));
    expect(new Set(his.received.map((m) => m.controlId)).size).toBe(N + R);
    for (const m of his.received) assertValidOruR01v251(m.text);

    const m = await gw.metrics();
    expect(metricSum(m, 'iomt_messages_received_total', { device: DEVICE })).toBe(N + K + R + Q);
    expect(metricSum(m, 'iomt_messages_committed_total', { device: DEVICE })).toBe(N + R);
    expect(metricSum(m, 'iomt_messages_duplicate_total', { device: DEVICE })).toBe(K);
    expect(metricSum(m, 'iomt_control_id_reused_total', { device: DEVICE })).toBe(R);
    expect(metricSum(m, 'iomt_messages_rejected_total', { device: DEVICE })).toBe(Q);
    expect(metricSum(m, 'iomt_messages_rejected_total', { device: DEVICE, reason: 'unsupported' })).toBe(1);
    expect(metricSum(m, 'iomt_messages_rejected_total', { device: DEVICE, reason: 'parse' })).toBe(1);
    expect(metricSum(m, 'iomt_messages_quarantined_total', { device: DEVICE })).toBe(Q);
    // each delivery counted once (it was counted twice before issue 8)
    expect(metricSum(m, 'iomt_outbox_delivered_total', { destination: DEST })).toBe(N + R);
    expect(metricSum(m, 'iomt_outbox_failed_attempts_total', { destination: DEST })).toBe(0);
    expect(metricSum(m, 'iomt_outbox_dead_lettered_total', { destination: DEST })).toBe(0);
    expect(metricSum(m, 'iomt_outbox_processing_id_skipped_total', { destination: DEST })).toBe(0);
    expect(metricSum(m, 'iomt_outbox_depth', { destination: DEST })).toBe(0);

    // the same numbers through the API
    const q = (await gw.api('/quarantine?limit=100')).quarantine.filter((e: any) => e.deviceId === DEVICE);
    expect(q.length).toBe(Q);
    const dev = (await gw.api('/devices')).devices.find((d: any) => d.deviceId === DEVICE);
    expect(dev.controlIdReused).toBe(R);
    const stored = (await gw.api(`/messages?deviceId=${DEVICE}&limit=1000`)).messages;
    expect(stored.length).toBe(N + R);
    expect(stored.filter((s: any) => (s.flags ?? []).includes('control-id-reused')).length).toBe(R);
  });

  it('a message the HIS answers AE: one failed attempt, one dead letter, the others still counted once', async () => {
    his.aePattern = /MET-REJECTME/;
    const before = his.received.length;
    const codes = await sendAll(tmp.dir, 'phase2.hl7', [oru('P2-1', 'MET-REJECTME', '5.5'), oru('P2-2', 'MET-AFTER', '5.6')], gw.hl7Port);
    expect(codes).toEqual(['AA', 'AA']);
    await waitFor(() => his.received.some((m) => specimenOf(m.text) === 'MET-AFTER'), 20_000);
    const dead = await waitFor(async () => (await gw.api('/dead-letters')).deadLetters.find((d: any) => d.destination === DEST), 20_000);
    expect(dead).toBeDefined();
    await new Promise((r) => setTimeout(r, 1000));
    // aeRetryable false in the shipped flow: the AE is final, the message is tried exactly once
    const arrived = his.received.slice(before);
    expect(arrived.filter((m) => specimenOf(m.text) === 'MET-REJECTME').length).toBe(1);
    expect(arrived.filter((m) => specimenOf(m.text) === 'MET-REJECTME')[0].answered).toBe('AE');
    expect(arrived.length).toBe(2);

    const m = await gw.metrics();
    expect(metricSum(m, 'iomt_messages_received_total', { device: DEVICE })).toBe(N + K + R + Q + 2);
    expect(metricSum(m, 'iomt_messages_committed_total', { device: DEVICE })).toBe(N + R + 2);
    expect(metricSum(m, 'iomt_outbox_delivered_total', { destination: DEST })).toBe(N + R + 1);
    expect(metricSum(m, 'iomt_outbox_failed_attempts_total', { destination: DEST })).toBe(1);
    expect(metricSum(m, 'iomt_outbox_dead_lettered_total', { destination: DEST })).toBe(1);
    expect(metricSum(m, 'iomt_outbox_depth', { destination: DEST })).toBe(0);
    expect(metricSum(m, 'iomt_messages_duplicate_total', { device: DEVICE })).toBe(K);
    expect(metricSum(m, 'iomt_control_id_reused_total', { device: DEVICE })).toBe(R);
    his.aePattern = undefined;
  });
});
