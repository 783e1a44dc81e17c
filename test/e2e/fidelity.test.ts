/**
 * Issue 8 "How it will be checked": the fidelity fixtures (../shared/fixtures/fidelity/, README there;
 * copied to test/e2e/fixtures/fidelity/)
 * and variants of each kind are replayed by independent senders (python-hl7's `mllp_send`, raw
 * E1381 over TCP) against the BUILT gateway (`npm run build`) running the SHIPPED flows; an
 * independent HIS (test/helpers/independent-his.ts: plain sockets and string splitting, nothing from
 * drivers/ or gateway/) checks what arrives, python-hl7 reads it a second time, every message must
 * pass the independent HL7 v2.5.1 ORU^R01 validator, and /metrics must match what arrived.
 */
import { describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import net from 'node:net';
import { promisify } from 'node:util';
import { freePort, tempDir, waitFor } from '../helpers/env';
import { startGatewayProcess, ROOT, type GatewayProcess } from '../helpers/gateway-process';
import { AstmPeer, CODES, framesOf } from '../helpers/astm-peer';
import { gatewayWithHis, startRelay } from '../helpers/gateway-with-his';
import { IndependentHis, metricSum, mllpFrame, obxRows, seg, splitHl7, type HisMessage } from '../helpers/independent-his';
import { pyHl7Parse } from '../helpers/python-hl7';
import { assertValidOruR01v251 } from '../helpers/hl7v251-validator';
import { UcumLhcUtils } from '@lhncbc/ucum-lhc';

/** The UCUM reference library itself, called directly (not through the gateway's units module). */
const ucum = UcumLhcUtils.getInstance();

const pexec = promisify(execFile);
const FIX = join(ROOT, 'test', 'e2e', 'fixtures', 'fidelity'); // byte-exact copies of ../shared/fixtures/fidelity/
const fixture = (name: string): Buffer => readFileSync(join(FIX, name));
const HL7_DEVICE = 'hl7-analyzers';
const ASTM_DEVICE = 'astm-tcp';

/** Send an MLLP-framed file with python-hl7's mllp_send (docs/peers.md: already framed, no --loose). */
async function mllpSendFile(file: string, port: number): Promise<string> {
  const { stdout } = await pexec('timeout', ['10', 'mllp_send', '-f', file, '-p', String(port), '127.0.0.1']);
  return stdout;
}

/** The payload of an MLLP-framed fixture, as latin1 text (byte-preserving) for making variants. */
function unframe(b: Buffer): Buffer {
  return b.subarray(1, b.lastIndexOf(0x1c));
}

/** Replace field n of the MSH (MSH-n) in a payload (bytes kept: latin1 round trip). */
function withMsh(payload: Buffer, n: number, value: string): Buffer {
  const t = payload.toString('latin1').split('\r');
  const f = t[0].split('|');
  f[n - 1] = value;
  t[0] = f.join('|');
  return Buffer.from(t.join('\r'), 'latin1');
}

/**
 * E1381 frame over raw bytes: STX FN text [CR] ETX|ETB C1 C2 CR LF; checksum = sum of FN..ETX/ETB
 * mod 256 as two hex digits (E1381 7.3). A final frame ends its record with CR before ETX; an
 * intermediate frame (ETB) carries a piece of a record as is (LIS01-A2 / E1381 7.3.1).
 */
function frameBytes(fn: number, text: Buffer, last = true): Buffer {
  const body = Buffer.concat([Buffer.from(String(fn % 8), 'latin1'), text, Buffer.from(last ? [0x0d, 0x03] : [0x17])]);
  let sum = 0;
  for (const b of body) sum = (sum + b) & 0xff;
  return Buffer.concat([Buffer.from([0x02]), body, Buffer.from(sum.toString(16).toUpperCase().padStart(2, '0') + '\r\n', 'latin1')]);
}

/** One record per frame, UTF-8 bytes, frame numbers from `firstFn`. */
function utf8Frames(records: string[], firstFn = 1): Buffer[] {
  return records.map((r, i) => frameBytes(firstFn + i, Buffer.from(r, 'utf8')));
}

/** A record split over an intermediate (ETB) and a final (ETX) frame (E1381 7.3.1), cut at byte `at`. */
function splitRecordFrames(firstFn: number, record: string, at: number): Buffer[] {
  const b = Buffer.from(record, 'utf8');
  return [frameBytes(firstFn, b.subarray(0, at), false), frameBytes(firstFn + 1, b.subarray(at))];
}

/** Specimen ids (OBR-3, SPM-2 first components) of a received message, by plain splitting. */
function specimensOf(text: string): string[] {
  return splitHl7(text)
    .filter((s) => s.id === 'OBR' || s.id === 'SPM')
    .map((s) => (s.id === 'OBR' ? s.c(3, 1) : s.c(2, 1)))
    .filter(Boolean);
}

function arrivedFor(his: IndependentHis, specimen: string): HisMessage[] {
  return his.received.filter((m) => specimensOf(m.text).includes(specimen));
}

/**
 * What every message that reaches the HIS must satisfy, whatever its input: valid UTF-8 with no
 * U+FFFD, MSH-18 UNICODE UTF-8, an HL7 v2.5.1 ORU^R01 by the independent validator, OBX-6 labelled
 * UCUM only for units the UCUM library accepts, and python-hl7 reads the same MSH-11 and OBX values.
 */
function checkArrived(m: HisMessage): void {
  const strictText = new TextDecoder('utf-8', { fatal: true }).decode(m.bytes);
  expect(strictText).toBe(m.text);
  expect(m.text).not.toContain('\uFFFD');
  expect(seg(m.text, 'MSH')!.field(18)).toBe('UNICODE UTF-8'); // HL7 v2.5.1 2.15.9.18, issue 8 part 4
  assertValidOruR01v251(m.text);
  for (const { obx } of obxRows(m.text)) {
    const units = obx.comps(6);
    if (units[2] === 'UCUM') expect(ucum.validateUnitString(units[0]).status, `OBX-6 ${units[0]} labelled UCUM`).toBe('valid');
    else if (units[0]) expect(units[2], `OBX-6 ${units[0]} needs a coding system`).toBe('L');
  }
  const [py] = pyHl7Parse([m.text]);
  const msh = seg(m.text, 'MSH')!;
  expect(py.msh.controlId).toBe(msh.field(10));
  expect(py.msh.processingId).toBe(msh.field(11));
  const rows = obxRows(m.text);
  expect(py.obx.length).toBe(rows.length);
  py.obx.forEach((o, i) => {
    expect(o.type).toBe(rows[i].obx.field(2));
    expect(o.value).toBe(rows[i].obx.field(5));
    expect(o.status).toBe(rows[i].obx.field(11));
  });
}

// ---------------------------------------------------------------------------------------------
// HL7 in → HIS (flows/hl7-relay.json)

describe('fidelity over MLLP: flows/hl7-relay.json, HIS takes P only (default HIS_PROCESSING_IDS)', () => {
  const tmp = tempDir();
  const his = new IndependentHis();
  let gw: GatewayProcess;
  let reusedExpected = 0;
  let duplicatesExpected = 0;
  let committedExpected = 0;

  const send = async (name: string, bytes: Buffer): Promise<string> => {
    const f = join(tmp.dir, name);
    writeFileSync(f, bytes);
    return mllpSendFile(f, gw.hl7Port);
  };
  const sendFixture = (name: string) => mllpSendFile(join(FIX, name), gw.hl7Port);

  gatewayWithHis(tmp, his, async (hisPort) => (gw = await startRelay(tmp.dir, hisPort)));

  it('10a/10b: a reused MSH-10 with another patient and a critical HGB is stored, delivered and flagged; an exact re-send is a duplicate', async () => {
    expect(await sendFixture('10a-dup-msh10-first.hl7')).toContain('MSA|AA|1');
    expect(await sendFixture('10b-dup-msh10-second-different.hl7')).toContain('MSA|AA|1');
    committedExpected += 2;
    reusedExpected += 1;
    const a = await waitFor(() => arrivedFor(his, 'S10-001')[0], 20_000);
    const b = await waitFor(() => arrivedFor(his, 'S10-002')[0], 20_000);
    for (const m of [a, b]) checkArrived(m);
    expect(seg(a.text, 'PID')!.c(3, 1)).toBe('11111');
    expect(seg(b.text, 'PID')!.c(3, 1)).toBe('22222');
    expect(seg(b.text, 'PID')!.text(5)).toBe('ROE^RICHARD');
    const hgb = obxRows(b.text).find((r) => r.obx.c(3, 1) === 'HGB')!;
    expect(hgb.obx.field(2)).toBe('NM');
    expect(hgb.obx.field(5)).toBe('7.1');
    expect(hgb.obx.reps(8)).toEqual(['LL']);
    expect(hgb.obx.field(7)).toBe('13.0-17.0');
    expect(hgb.obx.field(11)).toBe('F');
    // the gateway shows which one reused the id
    const second = (await gw.api('/messages?specimenId=S10-002')).messages;
    expect(second.length).toBe(1);
    expect(second[0].flags ?? []).toContain('control-id-reused');
    const first = (await gw.api('/messages?specimenId=S10-001')).messages;
    expect(first.length).toBe(1);
    expect(first[0].flags ?? []).not.toContain('control-id-reused');
    expect(metricSum(await gw.metrics(), 'iomt_control_id_reused_total', { device: HL7_DEVICE })).toBe(reusedExpected);

    // variant: the exact 10b again (the analyzer lost our ACK) → duplicate: AA, not stored or sent again
    expect(await sendFixture('10b-dup-msh10-second-different.hl7')).toContain('MSA|AA|1');
    duplicatesExpected += 1;
    // variant: the same message with only MSH-7 changed (a re-send stamped anew) → still a duplicate
    expect(await send('10a-new-msh7.hl7', mllpFrame(withMsh(unframe(fixture('10a-dup-msh10-first.hl7')), 7, '20250301099999')))).toContain('MSA|AA|1');
    duplicatesExpected += 1;
    // variant: the same sender, MSH-10 and patient, one value changed → a new message, flagged
    const changed = Buffer.from(unframe(fixture('10a-dup-msh10-first.hl7')).toString('latin1').replace('S10-001', 'S10-003').replace('|13.2|', '|12.9|'), 'latin1');
    expect(await send('10a-changed.hl7', mllpFrame(changed))).toContain('MSA|AA|1');
    committedExpected += 1;
    reusedExpected += 1;
    // variant: another sender with the same MSH-10 → its own message, not a reuse
    const other = Buffer.from(unframe(fixture('10a-dup-msh10-first.hl7')).toString('latin1').replace('|HEMA1|', '|HEMA9|').replace('S10-001', 'S10-004'), 'latin1');
    expect(await send('10a-other-sender.hl7', mllpFrame(other))).toContain('MSA|AA|1');
    committedExpected += 1;
    const c = await waitFor(() => arrivedFor(his, 'S10-003')[0], 20_000);
    const d = await waitFor(() => arrivedFor(his, 'S10-004')[0], 20_000);
    checkArrived(c);
    checkArrived(d);
    expect(obxRows(c.text)[0].obx.field(5)).toBe('12.9');
    expect((await gw.api('/messages?specimenId=S10-003')).messages[0].flags ?? []).toContain('control-id-reused');
    expect((await gw.api('/messages?specimenId=S10-004')).messages[0].flags ?? []).not.toContain('control-id-reused');
    await new Promise((r) => setTimeout(r, 1000));
    // nothing twice: one arrival per specimen
    for (const sp of ['S10-001', 'S10-002', 'S10-003', 'S10-004']) expect(arrivedFor(his, sp).length, sp).toBe(1);
    const m = await gw.metrics();
    expect(metricSum(m, 'iomt_control_id_reused_total', { device: HL7_DEVICE })).toBe(reusedExpected);
    expect(metricSum(m, 'iomt_messages_duplicate_total', { device: HL7_DEVICE })).toBe(duplicatesExpected);
  });

  it('09: the whole panel arrives; NM <0.5 and >1500 go out as SN <^0.5 and >^1500; the SN stays SN', async () => {
    expect(await sendFixture('09-nm-with-comparator.hl7')).toContain('MSA|AA|C09-0001');
    committedExpected += 1;
    const m = await waitFor(() => arrivedFor(his, 'S09-001')[0], 20_000);
    checkArrived(m);
    const rows = obxRows(m.text);
    const by = (code: string) => rows.find((r) => r.obx.c(3, 1) === code)!.obx;
    expect(rows.map((r) => r.obx.c(3, 1)).sort()).toEqual(['CRP', 'FER', 'HBA', 'TSH']);
    expect([by('TSH').field(2), by('TSH').field(5), by('TSH').field(7)]).toEqual(['NM', '2.10', '0.27-4.2']);
    expect([by('CRP').field(2), by('CRP').text(5), by('CRP').c(6, 1), by('CRP').field(7)]).toEqual(['SN', '<^0.5', 'mg/L', '0-5']);
    expect([by('FER').field(2), by('FER').text(5), by('FER').c(6, 1), by('FER').reps(8).join('~')]).toEqual(['SN', '>^1500', 'ug/L', 'H']);
    expect([by('HBA').field(2), by('HBA').text(5), by('HBA').c(6, 1)]).toEqual(['SN', '<^0.10', 'S/CO']);
    for (const r of rows) expect(r.obx.field(11)).toBe('F');
  });

  it('09 variants: <=, >= and a comparator with a space become SN; a malformed value is kept as ST with its text and flagged, and its neighbours arrive', async () => {
    const msg = [
      'MSH|^~\\&|IMMUNO2|LAB|GW|HOSP|20250301093100||ORU^R01|C09V-0001|P|2.5.1',
      'PID|1||12345^^^HOSP^MR||DOE^JANE||19800101|F',
      'OBR|1||S09V-001|IMM^Immunology^L|||20250301080000',
      'OBX|1|NM|PCT^Procalcitonin^L||<=0.05|ng/mL|0-0.5|N|||F',
      'OBX|2|NM|TRO^Troponin^L||>=50000|ng/L|0-14|HH|||F',
      'OBX|3|NM|DDI^D-dimer^L||< 0.27|mg/L|0-0.5|N|||F',
      'OBX|4|NM|ALB^Albumin^L||4..1|g/dL|3.5-5.0|N|||F',
      'OBX|5|NM|GLU^Glucose^L||5.4|mmol/L|3.9-6.1|N|||F',
    ].join('\r') + '\r';
    expect(await send('09-variants.hl7', mllpFrame(msg))).toContain('MSA|AA|C09V-0001');
    committedExpected += 1;
    const m = await waitFor(() => arrivedFor(his, 'S09V-001')[0], 20_000);
    checkArrived(m);
    const rows = obxRows(m.text);
    const by = (code: string) => rows.find((r) => r.obx.c(3, 1) === code)!;
    expect(rows.length).toBe(5);
    expect([by('PCT').obx.field(2), by('PCT').obx.text(5)]).toEqual(['SN', '<=^0.05']);
    expect([by('TRO').obx.field(2), by('TRO').obx.text(5)]).toEqual(['SN', '>=^50000']);
    expect([by('DDI').obx.field(2), by('DDI').obx.text(5)]).toEqual(['SN', '<^0.27']);
    // the bad value: ST with the original text, a data-quality NTE, never dropped or turned into a number
    expect([by('ALB').obx.field(2), by('ALB').obx.text(5)]).toEqual(['ST', '4..1']);
    expect(by('ALB').notes.some((n) => /IOMT-GW data quality/.test(n))).toBe(true);
    expect([by('GLU').obx.field(2), by('GLU').obx.field(5)]).toEqual(['NM', '5.4']);
    expect(by('GLU').notes).toEqual([]);
    const stored = (await gw.api('/messages?specimenId=S09V-001')).messages;
    expect(stored.length).toBe(1);
    const detail = await gw.api(`/messages/${stored[0].id}`);
    expect(JSON.stringify(detail.observations)).toMatch(/4\.\.1/);
  });

  it('08: ISO 8859-1 declared in MSH-18 arrives as UTF-8 with the accents intact; a Latin-1 variant too', async () => {
    expect(await sendFixture('08-latin1-msh18-8859-1.hl7')).toContain('MSA|AA|C08-0001');
    committedExpected += 1;
    const m = await waitFor(() => arrivedFor(his, 'S08-001')[0], 20_000);
    checkArrived(m);
    expect(seg(m.text, 'PID')!.text(5)).toBe('DOÉ^Gwénaëlle');
    const glu = obxRows(m.text).find((r) => r.obx.c(3, 1) === 'GLU')!;
    expect(glu.obx.c(3, 2)).toBe('Glucose sérique');
    expect(glu.obx.field(5)).toBe('5.4');
    expect(glu.notes).toContain('Prélèvement hémolysé');
    // variant: other Latin-1 letters in a name and a text result (ST), MSH-18 8859/1 again
    const v = Buffer.from(
      ['MSH|^~\\&|CHEM3|LAB|GW|HOSP|20250301093200||ORU^R01|C08V-0001|P|2.5|||||DEU|8859/1', 'PID|1||12346^^^HOSP^MR||MÜLLER^JÖRG||19700101|M', 'OBR|1||S08V-001|SER^Sérologie^L|||20250301080000', 'OBX|1|ST|HIV^Dépistage VIH^L||négatif, contrôlé à 5°C||||||F'].join('\r') + '\r',
      'latin1',
    );
    expect(await send('08-variant.hl7', mllpFrame(v))).toContain('MSA|AA|C08V-0001');
    committedExpected += 1;
    const mv = await waitFor(() => arrivedFor(his, 'S08V-001')[0], 20_000);
    checkArrived(mv);
    expect(seg(mv.text, 'PID')!.text(5)).toBe('MÜLLER^JÖRG');
    expect(obxRows(mv.text)[0].obx.text(5)).toBe('négatif, contrôlé à 5°C');
  });

  it('24: a 120 KB ED arrives as ED with its 5 components and the base64 data byte-identical', async () => {
    const input = unframe(fixture('24-ed-base64-histogram-120k.hl7')).toString('latin1');
    const inEd = input.split('\r').find((l) => l.startsWith('OBX|2|ED'))!.split('|')[5].split('^');
    expect(inEd.length).toBe(5);
    expect(await sendFixture('24-ed-base64-histogram-120k.hl7')).toContain('MSA|AA|C24-0001');
    committedExpected += 1;
    const m = await waitFor(() => arrivedFor(his, 'S24-001')[0], 20_000);
    checkArrived(m);
    const ed = obxRows(m.text).find((r) => r.obx.c(3, 1) === 'WBCHIST')!.obx;
    expect(ed.field(2)).toBe('ED');
    const comps = ed.comps(5);
    expect(comps.length).toBe(5);
    expect(comps.slice(0, 4)).toEqual(inEd.slice(0, 4));
    expect(comps[4].length).toBe(inEd[4].length);
    expect(comps[4] === inEd[4]).toBe(true); // base64 has no HL7 delimiters: identical text, no escapes
    expect(Buffer.from(comps[4], 'base64').equals(Buffer.from(inEd[4], 'base64'))).toBe(true);
    const wbc = obxRows(m.text).find((r) => r.obx.c(3, 1) === 'WBC')!.obx;
    expect([wbc.field(2), wbc.field(5), wbc.field(6)]).toEqual(['NM', '6.1', '10*3/uL^^UCUM']);
  });

  it('15: a T message is stored but never reaches a HIS that takes P only; a D message neither', async () => {
    expect(await sendFixture('15-processing-id-test-T.hl7')).toContain('MSA|AA|C15-0001');
    const d = withMsh(unframe(fixture('15-processing-id-test-T.hl7')), 11, 'D');
    expect(await send('15-D.hl7', mllpFrame(Buffer.from(d.toString('latin1').replace('S15-001', 'S15-002').replace('C15-0001', 'C15-0002'), 'latin1')))).toContain('MSA|AA|C15-0002');
    committedExpected += 2;
    // a P message sent after them arrives: the T/D ones had their chance
    const p = withMsh(unframe(fixture('15-processing-id-test-T.hl7')), 11, 'P');
    expect(await send('15-P.hl7', mllpFrame(Buffer.from(p.toString('latin1').replace('S15-001', 'S15-003').replace('C15-0001', 'C15-0003'), 'latin1')))).toContain('MSA|AA|C15-0003');
    committedExpected += 1;
    const pm = await waitFor(() => arrivedFor(his, 'S15-003')[0], 20_000);
    checkArrived(pm);
    expect(seg(pm.text, 'MSH')!.field(11)).toBe('P');
    // T and D were sent before P; the out node counts its skips in the flow: wait for both counts, then a grace period
    await waitFor(async () => {
      const m = await gw.metrics();
      return ['T', 'D'].every((pid) => metricSum(m, 'iomt_outbox_processing_id_skipped_total', { destination: 'his', processingId: pid }) >= 1);
    }, 20_000);
    await new Promise((r) => setTimeout(r, 1500));
    expect(arrivedFor(his, 'S15-001')).toEqual([]);
    expect(arrivedFor(his, 'S15-002')).toEqual([]);
    expect(his.received.every((m) => seg(m.text, 'MSH')!.field(11) === 'P')).toBe(true);
    const t = (await gw.api('/messages?specimenId=S15-001')).messages;
    expect(t.length).toBe(1);
    expect(t[0].processingId).toBe('T');
    expect((await gw.api('/messages?specimenId=S15-002')).messages[0].processingId).toBe('D');
    const metrics = await gw.metrics();
    expect(metricSum(metrics, 'iomt_outbox_processing_id_skipped_total', { destination: 'his', processingId: 'T' })).toBe(1);
    expect(metricSum(metrics, 'iomt_outbox_processing_id_skipped_total', { destination: 'his', processingId: 'D' })).toBe(1);
  });

  it('/metrics matches what arrived: nothing lost, nothing twice', async () => {
    await new Promise((r) => setTimeout(r, 500));
    const m = await gw.metrics();
    const arrived = his.received.length;
    const skipped = metricSum(m, 'iomt_outbox_processing_id_skipped_total', { destination: 'his' });
    expect(new Set(his.received.map((x) => x.controlId)).size).toBe(arrived);
    expect(metricSum(m, 'iomt_outbox_delivered_total', { destination: 'his' })).toBe(arrived);
    expect(metricSum(m, 'iomt_outbox_failed_attempts_total', { destination: 'his' })).toBe(0);
    expect(metricSum(m, 'iomt_messages_committed_total', { device: HL7_DEVICE })).toBe(committedExpected);
    expect(arrived + skipped).toBe(committedExpected);
    expect(metricSum(m, 'iomt_messages_duplicate_total', { device: HL7_DEVICE })).toBe(duplicatesExpected);
    expect(metricSum(m, 'iomt_control_id_reused_total', { device: HL7_DEVICE })).toBe(reusedExpected);
    expect(metricSum(m, 'iomt_messages_received_total', { device: HL7_DEVICE })).toBe(committedExpected + duplicatesExpected);
    expect(metricSum(m, 'iomt_messages_rejected_total', { device: HL7_DEVICE })).toBe(0);
    // python-hl7 reads every arrived message
    const py = pyHl7Parse(his.received.map((x) => x.text));
    expect(py.every((v) => v.msh.version === '2.5.1' && v.msh.type === 'ORU^R01^ORU_R01')).toBe(true);
  });
});

describe('fidelity over MLLP: a HIS that takes P and T (HIS_PROCESSING_IDS=P,T)', () => {
  const tmp = tempDir();
  const his = new IndependentHis();
  let gw: GatewayProcess;

  gatewayWithHis(tmp, his, async (hisPort) => (gw = await startRelay(tmp.dir, hisPort, { HIS_PROCESSING_IDS: 'P,T' })));

  it('15: the T message arrives with MSH-11 T (never as P); a D message still does not', async () => {
    expect((await mllpSendFile(join(FIX, '15-processing-id-test-T.hl7'), gw.hl7Port))).toContain('MSA|AA|C15-0001');
    const f = join(tmp.dir, '15-D.hl7');
    const d = withMsh(unframe(fixture('15-processing-id-test-T.hl7')), 11, 'D');
    writeFileSync(f, mllpFrame(Buffer.from(d.toString('latin1').replace('S15-001', 'S15-002').replace('C15-0001', 'C15-0002'), 'latin1')));
    expect(await mllpSendFile(f, gw.hl7Port)).toContain('MSA|AA|C15-0002');
    const t = await waitFor(() => arrivedFor(his, 'S15-001')[0], 20_000);
    checkArrived(t);
    expect(seg(t.text, 'MSH')!.field(11)).toBe('T');
    const glu = obxRows(t.text)[0].obx;
    expect([glu.field(5), glu.reps(8).join('~'), glu.field(11)]).toEqual(['22.4', 'HH', 'F']);
    await new Promise((r) => setTimeout(r, 1500));
    expect(arrivedFor(his, 'S15-002')).toEqual([]);
    expect(arrivedFor(his, 'S15-001').length).toBe(1);
    const m = await gw.metrics();
    expect(metricSum(m, 'iomt_outbox_delivered_total', { destination: 'his' })).toBe(1);
    expect(metricSum(m, 'iomt_outbox_processing_id_skipped_total', { destination: 'his', processingId: 'D' })).toBe(1);
    expect(metricSum(m, 'iomt_outbox_processing_id_skipped_total', { destination: 'his', processingId: 'T' })).toBe(0);
  });
});

// ---------------------------------------------------------------------------------------------
// ASTM over TCP → HIS (flows/lab-astm-to-his.json), one gateway per profile

async function startLab(tmpDir: string, profile: string, hisPort: number): Promise<{ gw: GatewayProcess; astmPort: number }> {
  const astmPort = await freePort();
  const gw = await startGatewayProcess({
    dataDir: join(tmpDir, `gw-${profile}`),
    flows: join(ROOT, 'flows', 'lab-astm-to-his.json'),
    env: {
      ASTM_SERIAL_PATH: join(tmpDir, 'no-such-serial-port'), // retried in the background
      ASTM_BAUD: '9600',
      ASTM_TCP_HOST: '127.0.0.1',
      ASTM_TCP_PORT: String(astmPort),
      ASTM_TCP_PROFILE: profile,
      ORDERS_IN_HOST: '127.0.0.1',
      ORDERS_IN_PORT: String(await freePort()),
      HIS_HOST: '127.0.0.1',
      HIS_PORT: String(hisPort),
      HIS_ACK_TIMEOUT_S: '5',
      HIS_RECONNECT_MAX_S: '1',
    },
  });
  return { gw, astmPort };
}

/** Play frames as an analyzer does (E1381 8.3: ENQ, ACK; each frame, ACK; EOT); the answers to each frame. */
async function playSession(port: number, frames: Buffer[]): Promise<number[]> {
  // the ASTM TCP listener may open a moment after /readyz (see the report): retry the connect
  const sock = await waitFor(
    () =>
      new Promise<net.Socket | undefined>((resolve) => {
        const s = net.connect(port, '127.0.0.1');
        s.once('connect', () => resolve(s));
        s.once('error', () => resolve(undefined));
      }),
    10_000,
    100,
  );
  sock.on('error', () => undefined);
  try {
    return await new AstmPeer(sock).sendSession(frames);
  } finally {
    await new Promise((r) => setTimeout(r, 100));
    sock.destroy();
  }
}

const playFixture = (port: number, name: string) => playSession(port, framesOf(fixture(name)));

describe('fidelity over ASTM/TCP: generic-lis2-a2 profile (16, 21)', () => {
  const tmp = tempDir();
  const his = new IndependentHis();
  let gw: GatewayProcess;
  let port: number;

  gatewayWithHis(tmp, his, async (hisPort) => {
    ({ gw, astmPort: port } = await startLab(tmp.dir, 'generic-lis2-a2', hisPort));
    return gw;
  });

  it('16: one intact frame holding the whole H…L session is ACKed and its result arrives', async () => {
    const frames = framesOf(fixture('16-astm-multi-records-one-frame.astm'));
    expect(frames.length).toBe(1);
    expect(await playFixture(port, '16-astm-multi-records-one-frame.astm')).toEqual([CODES.ACK]);
    const m = await waitFor(() => arrivedFor(his, 'S16-001')[0], 20_000);
    checkArrived(m);
    expect(seg(m.text, 'PID')!.c(3, 1)).toBe('12345');
    const rows = obxRows(m.text);
    expect(rows.length).toBe(1);
    expect([rows[0].obx.field(2), rows[0].obx.field(5), rows[0].obx.c(6, 1), rows[0].obx.field(7), rows[0].obx.reps(8).join('~'), rows[0].obx.field(11)]).toEqual(['NM', '5.4', 'mmol/L', '3.9-6.1', 'N', 'F']);
  });

  it('16 variant: a single frame with two results and a comment; all of it arrives', async () => {
    const text = ['H|\\^&|||CHEM2^2.1|||||||P|LIS2-A2|20250301094000', 'P|1||12345||DOE^JANE||19800101|F', 'O|1|S16V-001||^^^GLU\\^^^NA|R|20250301080000', 'R|1|^^^GLU|6.2|mmol/L|3.9 to 6.1|H||F||||20250301092900', 'C|1|I|Repeated, same result|G', 'R|2|^^^NA|141|mmol/L|135 to 145|N||F||||20250301092900', 'L|1|N'].join('\r');
    expect(await playSession(port, [frameBytes(1, Buffer.from(text, 'latin1'))])).toEqual([CODES.ACK]);
    const m = await waitFor(() => arrivedFor(his, 'S16V-001')[0], 20_000);
    checkArrived(m);
    const rows = obxRows(m.text);
    expect(rows.map((r) => r.obx.field(5)).sort()).toEqual(['141', '6.2']);
    expect(rows.find((r) => r.obx.field(5) === '6.2')!.notes).toContain('Repeated, same result');
  });

  it('21: a Vietnamese name and comment in UTF-8 arrive intact', async () => {
    const bytes = fixture('21-astm-vietnamese-utf8.astm');
    const p = framesOf(bytes).map((f) => f.subarray(2, f.length - 5).toString('utf8'));
    const name = p.find((r) => r.startsWith('P|'))!.split('|')[5];
    const comment = p.find((r) => r.startsWith('C|'))!.split('|')[3];
    expect(name).toBe('Nguyễn^Thị Ánh');
    expect((await playFixture(port, '21-astm-vietnamese-utf8.astm')).every((a) => a === CODES.ACK)).toBe(true);
    const m = await waitFor(() => arrivedFor(his, 'S21-001')[0], 20_000);
    checkArrived(m);
    expect(seg(m.text, 'PID')!.text(5)).toBe(name.normalize('NFC'));
    const hgb = obxRows(m.text)[0];
    expect([hgb.obx.field(5), hgb.obx.reps(8).join('~'), hgb.obx.field(11)]).toEqual(['11.6', 'L', 'F']);
    expect(hgb.notes).toContain(comment.normalize('NFC'));
  });

  it('21 variant: every Vietnamese tone mark, and a record split over ETB/ETX frames, in UTF-8', async () => {
    const name = 'Trần^Thị Hương Quỳnh';
    const comment = 'Bệnh phẩm đục, ước lượng lại; Đỗ Ứng Ỹ';
    const recs = ['H|\\^&|||HEMA2^1.0|||||||P|LIS2-A2|20250301094000', `P|1||12347||${name}||19810202|F`, 'O|1|S21V-001||^^^HGB|R|20250301080000'];
    // FN 1-3, the R record over FN 4 (ETB) and 5 (ETX) cut inside a field, then FN 6, 7
    const frames = [...utf8Frames(recs), ...splitRecordFrames(4, 'R|1|^^^HGB|13.1|g/dL|12.0 to 16.0|N||F||||20250301092900', 10), ...utf8Frames([`C|1|I|${comment}|G`, 'L|1|N'], 6)];
    expect((await playSession(port, frames)).every((a) => a === CODES.ACK)).toBe(true);
    const m = await waitFor(() => arrivedFor(his, 'S21V-001')[0], 20_000);
    checkArrived(m);
    expect(seg(m.text, 'PID')!.text(5)).toBe(name);
    const hgb = obxRows(m.text)[0];
    expect(hgb.obx.field(5)).toBe('13.1');
    expect(hgb.notes).toContain(comment);
  });

  it('ASTM sessions follow the HL7 rule: an exact re-send is a duplicate; a reused H.3 with other content is stored, delivered and flagged', async () => {
    // 16 again, byte for byte (the analyzer lost our last ACK)
    expect(await playFixture(port, '16-astm-multi-records-one-frame.astm')).toEqual([CODES.ACK]);
    const session = (sp: string, patient: string, value: string) =>
      utf8Frames(['H|\\^&|CTL7||CHEM4^1.0|||||||P|LIS2-A2|20250301094500', `P|1||${patient}||ROE^RICHARD||19700505|M`, `O|1|${sp}||^^^HGB|R|20250301080000`, `R|1|^^^HGB|${value}|g/dL|13.0 to 17.0|LL||F||||20250301092900`, 'L|1|N']);
    expect((await playSession(port, session('S10A-001', '11111', '13.2'))).every((a) => a === CODES.ACK)).toBe(true);
    expect((await playSession(port, session('S10A-002', '22222', '7.1'))).every((a) => a === CODES.ACK)).toBe(true);
    const a = await waitFor(() => arrivedFor(his, 'S10A-001')[0], 20_000);
    const b = await waitFor(() => arrivedFor(his, 'S10A-002')[0], 20_000);
    checkArrived(a);
    checkArrived(b);
    expect(obxRows(b.text)[0].obx.field(5)).toBe('7.1');
    expect(seg(b.text, 'PID')!.c(3, 1)).toBe('22222');
    expect((await gw.api('/messages?specimenId=S10A-002')).messages[0].flags ?? []).toContain('control-id-reused');
    expect((await gw.api('/messages?specimenId=S10A-001')).messages[0].flags ?? []).not.toContain('control-id-reused');
    await new Promise((r) => setTimeout(r, 1000));
    expect(arrivedFor(his, 'S16-001').length).toBe(1);
    const m = await gw.metrics();
    expect(metricSum(m, 'iomt_messages_duplicate_total', { device: ASTM_DEVICE })).toBe(1);
    expect(metricSum(m, 'iomt_control_id_reused_total', { device: ASTM_DEVICE })).toBe(1);
  });

  it('ASTM H.12 T (training) is stored but not sent to a HIS that takes P only', async () => {
    const recs = ['H|\\^&|||CHEM2^2.1|||||||T|LIS2-A2|20250301095000', 'P|1||12345||DOE^JANE||19800101|F', 'O|1|S16T-001||^^^GLU|R|20250301080000', 'R|1|^^^GLU|25.0|mmol/L|3.9 to 6.1|HH||F||||20250301092900', 'L|1|N'];
    expect((await playSession(port, utf8Frames(recs))).every((a) => a === CODES.ACK)).toBe(true);
    const stored = await waitFor(async () => (await gw.api('/messages?specimenId=S16T-001')).messages[0], 10_000);
    expect(stored.processingId).toBe('T');
    // the out node decides after the commit, in the flow: wait for its count (a fixed sleep raced it under load)
    await waitFor(async () => metricSum(await gw.metrics(), 'iomt_outbox_processing_id_skipped_total', { destination: 'his', processingId: 'T' }) === 1, 20_000);
    await new Promise((r) => setTimeout(r, 1500)); // nothing may arrive late either
    expect(arrivedFor(his, 'S16T-001')).toEqual([]);
    expect(metricSum(await gw.metrics(), 'iomt_outbox_processing_id_skipped_total', { destination: 'his', processingId: 'T' })).toBe(1);
  });

  it('/metrics matches what arrived', async () => {
    const m = await gw.metrics();
    expect(metricSum(m, 'iomt_outbox_delivered_total', { destination: 'his' })).toBe(his.received.length);
    expect(his.received.length).toBe(6);
    expect(new Set(his.received.map((x) => x.controlId)).size).toBe(6);
    expect(metricSum(m, 'iomt_messages_committed_total', { device: ASTM_DEVICE })).toBe(7); // 6 sent + 1 training
    expect(metricSum(m, 'iomt_messages_received_total', { device: ASTM_DEVICE })).toBe(8); // + 1 duplicate
    expect(metricSum(m, 'iomt_messages_quarantined_total', { device: ASTM_DEVICE })).toBe(0);
    expect(metricSum(m, 'iomt_outbox_failed_attempts_total', { destination: 'his' })).toBe(0);
  });
});

describe('fidelity over ASTM/TCP: abbott-architect profile (18)', () => {
  const tmp = tempDir();
  const his = new IndependentHis();
  let gw: GatewayProcess;
  let port: number;

  gatewayWithHis(tmp, his, async (hisPort) => {
    ({ gw, astmPort: port } = await startLab(tmp.dir, 'abbott-architect', hisPort));
    return gw;
  });

  const checkAspects = (m: HisMessage, final: { type: string; value: string }, interp: string, raw: string) => {
    checkArrived(m);
    const rows = obxRows(m.text);
    // final and interpretation arrive as two distinct results; the raw signal never arrives as a result
    expect(rows.length, m.text).toBe(2);
    const ids = rows.map((r) => `${r.obx.field(3)}|${r.obx.field(4)}`);
    expect(new Set(ids).size).toBe(2);
    const f = rows.find((r) => r.obx.field(2) === final.type && r.obx.text(5) === final.value);
    expect(f, m.text).toBeDefined();
    const i = rows.find((r) => r.obx.text(5) === interp);
    expect(i, m.text).toBeDefined();
    for (const r of rows) {
      expect(r.obx.text(5)).not.toContain(raw);
      expect(r.obx.field(6)).not.toMatch(/^RLU\^\^UCUM/);
      expect(r.obx.field(11)).toBe('F');
    }
    expect(m.text).not.toContain('RLU^^UCUM');
    return { f: f!, i: i! };
  };

  it('18: final and interpretation arrive distinct; the RLU raw signal is withheld (quarantined), never sent as the result', async () => {
    const qBefore = (await gw.api('/quarantine?limit=100')).quarantine.length;
    expect((await playFixture(port, '18-astm-architect-result-aspects.astm')).every((a) => a === CODES.ACK)).toBe(true);
    const m = await waitFor(() => arrivedFor(his, 'S18-001')[0], 20_000);
    const { f } = checkAspects(m, { type: 'SN', value: '<^1.20' }, 'NEGATIVE', '9245');
    // mIU/mL is not UCUM: sent as a local unit, or converted by the profile's unit map to m[IU]/mL
    expect(['mIU/mL^^L', 'm[IU]/mL^^UCUM']).toContain(f.obx.field(6));
    const q = await waitFor(async () => {
      const list = (await gw.api('/quarantine?limit=100')).quarantine;
      return list.length > qBefore ? list : undefined;
    }, 10_000);
    expect(q.some((e: any) => e.deviceId === ASTM_DEVICE && /withheld|raw/i.test(e.reason))).toBe(true);
  });

  it('18 variant: another assay with a dilution, F and P aspects only: the F value arrives, the RLU does not', async () => {
    const recs = [
      'H|\\^&|||ARCHITECT^1.00^123456789^H1P1O1R1C1Q1L1|||||||P|1|20250301094000',
      'P|1|||12348|ROE^ANN^B||19750303|F',
      'O|1|S18V-001|S18V-001^A124^6|^^^0123^TSH^1:2^P|R||20250301080000',
      'R|1|^^^0123^TSH^1:2^P^47331M100^00788^^F|2.456|uIU/mL|0.35 TO 4.94|N||F||||20250301092900|I20100',
      'R|2|^^^0123^TSH^1:2^P^47331M100^00788^^P|118731|RLU||||F||||20250301092900|I20100',
      'R|3|^^^0123^TSH^1:2^P^47331M100^00788^^I|NORMAL|||||F||||20250301092900|I20100',
      'L|1|N',
    ];
    expect((await playSession(port, utf8Frames(recs))).every((a) => a === CODES.ACK)).toBe(true);
    const m = await waitFor(() => arrivedFor(his, 'S18V-001')[0], 20_000);
    checkAspects(m, { type: 'NM', value: '2.456' }, 'NORMAL', '118731');
  });

  it('/metrics matches what arrived: 2 messages delivered, each withheld raw signal quarantined and counted once', async () => {
    const m = await gw.metrics();
    expect(his.received.length).toBe(2);
    expect(metricSum(m, 'iomt_outbox_delivered_total', { destination: 'his' })).toBe(2);
    expect(metricSum(m, 'iomt_messages_committed_total', { device: ASTM_DEVICE })).toBe(2);
    expect(metricSum(m, 'iomt_messages_received_total', { device: ASTM_DEVICE })).toBe(2);
    const q = (await gw.api('/quarantine?limit=100')).quarantine.filter((e: any) => e.deviceId === ASTM_DEVICE);
    expect(q.length).toBe(2);
    // each withheld part is counted once, as a withheld result of a stored message, not as a refused message
    expect(metricSum(m, 'iomt_results_withheld_total', { device: ASTM_DEVICE })).toBe(q.length);
    expect(metricSum(m, 'iomt_messages_quarantined_total', { device: ASTM_DEVICE })).toBe(0);
  });
});

describe('fidelity over ASTM/TCP: horiba-pentra profile (20)', () => {
  const tmp = tempDir();
  const his = new IndependentHis();
  let gw: GatewayProcess;
  let port: number;

  gatewayWithHis(tmp, his, async (hisPort) => {
    ({ gw, astmPort: port } = await startLab(tmp.dir, 'horiba-pentra', hisPort));
    return gw;
  });

  it('20: ASTM W (doubtful) arrives as HL7 R, never W; frame numbers wrap; comments stay with their result', async () => {
    expect((await playFixture(port, '20-astm-pentra-fn-wrap-comments.astm')).every((a) => a === CODES.ACK)).toBe(true);
    const m = await waitFor(() => arrivedFor(his, 'S20-001')[0], 20_000);
    checkArrived(m);
    const rows = obxRows(m.text);
    for (const r of rows) expect(r.obx.field(11), r.obx.field(3)).not.toBe('W'); // HL7 Table 0085 W = wrong patient
    const byValue = (v: string) => rows.find((r) => r.obx.field(5) === v);
    // W in ASTM R.9 → R (results stored, not verified), by meaning (HL7 v2.5.1 Table 0085)
    for (const v of ['8.5', '3.29', '38.6', '0.15']) expect(byValue(v)?.obx.field(11), `result ${v}`).toBe('R');
    for (const v of ['4.65', '14.0', '234', '10.2']) expect(byValue(v)?.obx.field(11), `result ${v}`).toBe('F');
    expect(byValue('0.15')!.obx.reps(8)).toEqual(['L']);
    expect(byValue('8.5')!.notes.some((n) => n.includes('Alarm_WBC'))).toBe(true);
    expect(byValue('234')!.notes).toContain('PLATELET AGGREGATES');
    // the BAS# with '-----' and ASTM X: never a final result; when sent, Table 0085 X (cannot be obtained)
    const bas = rows.find((r) => r.obx.field(5).includes('-----'));
    if (bas) expect(bas.obx.field(11)).toBe('X');
  });

  it('20 variant: W on a result split over ETB frames, an unknown status, frame numbers past 7', async () => {
    const head = ['H|\\^&|||ABX|||||||P|E1394-97|20250301094000', 'P|1||12349|||||M', 'O|1|S20V-001^00^00||^^^DIF|||||||||||Standard||||||||||F'];
    const more = ['R|2|^^^RBC^789-9^1|5.01|1||||F||TECH||20250301092900', 'R|3|^^^HGB^717-9^1|15.2|1||||Q||TECH||20250301092900', 'R|4|^^^PLT^777-3^1|310|1||||W||TECH||20250301092900', 'R|5|^^^MCV^787-2^1|88.1|1||||Z||TECH||20250301092900', 'L|1|N'];
    // FN 1-3, the W result over FN 4 (ETB) and 5 (ETX), then FN 6, 7, 0, 1, 2 (E1381: modulo 8)
    const frames = [...utf8Frames(head), ...splitRecordFrames(4, 'R|1|^^^WBC^804-5^1|12.7|1||H||W||TECH||20250301092900', 12), ...utf8Frames(more, 6)];
    expect((await playSession(port, frames)).every((a) => a === CODES.ACK)).toBe(true);
    const m = await waitFor(() => arrivedFor(his, 'S20V-001')[0], 20_000);
    checkArrived(m);
    const rows = obxRows(m.text);
    expect(rows.length).toBe(5);
    const byValue = (v: string) => rows.find((r) => r.obx.field(5) === v)!;
    expect(byValue('12.7').obx.field(11)).toBe('R');
    expect(byValue('310').obx.field(11)).toBe('R');
    expect(byValue('5.01').obx.field(11)).toBe('F');
    // Q (LIS02 R.9: response to query) is a final result
    expect(byValue('15.2').obx.field(11)).toBe('F');
    // a status outside LIS02 R.9: a safe mapping (not final, never W) and a data-quality flag
    expect(byValue('88.1').obx.field(11)).not.toBe('F');
    expect(byValue('88.1').obx.field(11)).not.toBe('W');
    expect(byValue('88.1').notes.some((n) => /IOMT-GW data quality/.test(n))).toBe(true);
    const met = await gw.metrics();
    expect(metricSum(met, 'iomt_outbox_delivered_total', { destination: 'his' })).toBe(his.received.length);
  });
});
