import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { execFile } from 'node:child_process';
import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import net from 'node:net';
import { promisify } from 'node:util';
import { freePort, requirePeer, tempDir, waitFor } from '../helpers/env';
import { startGatewayProcess, ROOT, type GatewayProcess } from '../helpers/gateway-process';
import { TestHis } from '../helpers/test-his';
import { MllpClient } from '../../drivers/hl7-mllp/mllp-client';
import { parseAck } from '../../drivers/hl7-mllp/ack';
import { parseHl7 } from '../../drivers/hl7-mllp/hl7-message';

const pexec = promisify(execFile);
const FIX = join(ROOT, 'drivers', 'hl7-mllp', 'fixtures');

/** mllp_send (python-hl7), a peer nobody on this team wrote. */
async function mllpSend(file: string, port: number): Promise<string> {
  const { stdout } = await pexec('timeout', ['10', 'mllp_send', '--loose', '-f', file, '-p', String(port), '127.0.0.1']);
  return stdout;
}

let seq = 0;
function oru(specimen: string, opts: { value?: string; controlId?: string } = {}): Buffer {
  const id = opts.controlId ?? `E2E${process.pid}${++seq}`;
  return Buffer.from(
    [
      `MSH|^~\\&|SIMLAB|LAB1|||20250301093100||ORU^R01|${id}|P|2.3.1`,
      'PID|1||BN0012345^^^BV^MR||NGUYEN^VAN AN||19850412|M',
      `OBR|1||${specimen}|01001^CBC^99MRC|||20250301092950`,
      `OBX|1|NM|6690-2^WBC^LN||${opts.value ?? '7.85'}|10*3/uL|4.00-10.00|N|||F|||20250301092950`,
      'OBX|2|NM|718-7^HGB^LN||11.6|g/dL|13.0-17.0|L|||F|||20250301092950',
    ].join('\r') + '\r',
  );
}

function specimenOf(text: string): string {
  return TestHis.obx(text).specimenIds.find(Boolean) ?? '';
}

describe('HL7 relay end to end: analyzer → gateway (committed) → HIS (v2.5.1)', () => {
  const tmp = tempDir();
  const his = new TestHis();
  let gw: GatewayProcess;
  let hisPort: number;

  beforeAll(async () => {
    requirePeer('mllp_send');
    hisPort = await his.start();
    gw = await startGatewayProcess({
      dataDir: join(tmp.dir, 'gw'),
      env: { HIS_HOST: '127.0.0.1', HIS_PORT: String(hisPort), HIS_ACK_TIMEOUT_S: '2', HIS_RECONNECT_MAX_S: '1', HIS_MAX_ATTEMPTS: '3' },
    });
  });
  afterAll(async () => {
    await gw?.kill('SIGKILL');
    await his.stop();
    tmp.cleanup();
  });

  it('acknowledges real Erba ELite 580 messages from mllp_send with AA and forwards the same values as v2.5.1', async () => {
    const files = readdirSync(FIX).filter((f) => /^erba_msg_0(02|03|10|50)\.hl7$/.test(f));
    expect(files.length).toBe(4);
    for (const f of files) {
      const input = readFileSync(join(FIX, f), 'utf8');
      const controlId = parseHl7(input).get('MSH', 10);
      const out = await mllpSend(join(FIX, f), gw.hl7Port);
      expect(out).toContain(`MSA|AA|${controlId}`);
      const inObx = TestHis.obx(input);
      const specimen = inObx.specimenIds.find(Boolean)!;
      const got = await waitFor(() => his.received.find((r) => specimenOf(r.text) === specimen), 15_000);
      const msg = parseHl7(got.text);
      expect(msg.get('MSH', 12)).toBe('2.5.1');
      expect(msg.get('MSH', 9, 1) + '^' + msg.get('MSH', 9, 2)).toBe('ORU^R01');
      const outObx = TestHis.obx(got.text);
      expect(outObx.specimenIds).toContain(specimen);
      // every OBX with a value arrives with the same value, units, range and flags
      for (const o of inObx.obx.filter((x) => x.value !== '')) {
        const match = outObx.obx.find((x) => x.code === o.code);
        expect(match, `OBX ${o.code} in ${f}`).toBeDefined();
        expect(match!.value).toBe(o.value);
        expect(match!.units).toBe(o.units);
        expect(match!.range).toBe(o.range);
        expect(match!.flags).toBe(o.flags.split('~').filter(Boolean).join('~'));
        expect(match!.status).toBe(o.status);
      }
    }
  });

  it('answers garbage, a truncated frame, non-HL7 text, broken segments and a 10 MB message clearly, and keeps serving', async () => {
    const raw = async (bytes: Buffer, waitMs = 1500): Promise<string> =>
      new Promise((resolve) => {
        const s = net.connect(gw.hl7Port, '127.0.0.1');
        let got = '';
        s.on('data', (d) => (got += d.toString('latin1')));
        s.on('error', () => undefined);
        s.on('close', () => resolve(got));
        s.write(bytes);
        setTimeout(() => s.destroy(), waitMs);
      });
    const frame = (b: Buffer) => Buffer.concat([Buffer.from([0x0b]), b, Buffer.from([0x1c, 0x0d])]);
    // garbage bytes outside a frame: ignored, no answer, connection still usable
    expect(await raw(Buffer.from([0xff, 0x00, 0x13, 0x37, 0x42]))).toBe('');
    // non-HL7 text inside a frame: AE with ERR
    expect(await raw(frame(Buffer.from('hello, this is not HL7')))).toMatch(/MSA\|AE/);
    // a structural fault (no MSH-10): AE with ERR location
    const noId = Buffer.from('MSH|^~\\&|SIMLAB|LAB1|||20250301||ORU^R01||P|2.3.1\rPID|1\rOBR|1||S1|x^^LN\rOBX|1|NM|6690-2^WBC^LN||5|10*3/uL\r');
    const ae = await raw(frame(noId));
    expect(ae).toMatch(/MSA\|AE\|/);
    expect(ae).toMatch(/ERR\|\|MSH\^1\^10\|101/);
    // a bad value in a sound message (issue 8): AA, the value kept as text with a data-quality flag
    const odd = Buffer.from('MSH|^~\\&|SIMLAB|LAB1|||20250301||ORU^R01|BRK1|P|2.3.1\rPID|1\rOBR|1||BRK-S1|x^^LN\rOBX|1|NM|6690-2^WBC^LN||not-a-number|10*3/uL\r');
    expect(await raw(frame(odd))).toMatch(/MSA\|AA\|BRK1/);
    // truncated frame (no FS): no ACK, nothing stored
    expect(await raw(Buffer.concat([Buffer.from([0x0b]), oru('TRUNC1').subarray(0, 60)]), 800)).toBe('');
    // 10 MB message: AE (value too long) or a closed connection, never AA
    const big = frame(Buffer.concat([Buffer.from('MSH|^~\\&|SIMLAB|LAB1|||20250301||ORU^R01|BIG1|P|2.3.1\rNTE|1||'), Buffer.alloc(10 * 1024 * 1024, 0x41), Buffer.from('\r')]));
    const bigAnswer = await raw(big, 4000);
    expect(bigAnswer).not.toMatch(/MSA\|AA/);
    // the quarantine has the bad ones, with reasons
    const q = await gw.api('/quarantine?limit=20');
    expect(q.quarantine.length).toBeGreaterThanOrEqual(2);
    expect(q.quarantine.every((e: any) => typeof e.reason === 'string' && e.reason.length > 0)).toBe(true);
    // still alive and serving
    const client = new MllpClient({ host: '127.0.0.1', port: gw.hl7Port, ackTimeoutMs: 5000 });
    const ack = parseAck(await client.send(oru('AFTERBAD1', { controlId: 'AFTERBAD1' })));
    await client.close();
    expect(ack.code).toBe('AA');
    expect((await fetch(`http://127.0.0.1:${gw.httpPort}/healthz`)).ok).toBe(true);
  });

  it('dead-letters a message the HIS answers AE, keeps the others flowing, and replays it', async () => {
    his.aePattern = /REJECTME/;
    const client = new MllpClient({ host: '127.0.0.1', port: gw.hl7Port, ackTimeoutMs: 5000 });
    for (const sp of ['OKBEFORE1', 'REJECTME1', 'OKAFTER1']) expect(parseAck(await client.send(oru(sp))).code).toBe('AA');
    await client.close();
    await waitFor(() => his.received.some((r) => specimenOf(r.text) === 'OKAFTER1'), 15_000);
    const dead = await waitFor(async () => (await gw.api('/dead-letters')).deadLetters.find((d: any) => /AE/.test(d.lastError ?? '')), 15_000);
    expect(dead.destination).toBe('his');
    his.aePattern = undefined;
    const before = his.received.filter((r) => specimenOf(r.text) === 'REJECTME1').length;
    const rep = await gw.api(`/dead-letters/${dead.id}/replay`, { method: 'POST' });
    expect(rep.replayed).toBe(1);
    await waitFor(() => his.received.filter((r) => specimenOf(r.text) === 'REJECTME1').length > before, 15_000);
    const last = his.received.filter((r) => specimenOf(r.text) === 'REJECTME1');
    // the replay carries the same MSH-10, so the HIS can de-duplicate
    expect(new Set(last.map((r) => r.controlId)).size).toBe(1);
    expect((await gw.api('/dead-letters')).deadLetters.find((d: any) => d.id === dead.id)).toBeUndefined();
  });

  it('keeps everything through a HIS outage under load and delivers it all when the HIS is back', async () => {
    await his.stop();
    const client = new MllpClient({ host: '127.0.0.1', port: gw.hl7Port, ackTimeoutMs: 5000 });
    const specimens: string[] = [];
    for (let i = 0; i < 200; i++) {
      const sp = `OUTAGE${i}`;
      expect(parseAck(await client.send(oru(sp))).code).toBe('AA');
      specimens.push(sp);
    }
    await client.close();
    const dests = await gw.api('/destinations');
    const d = dests.destinations.find((x: any) => x.destination === 'his');
    expect(d.pending).toBeGreaterThan(0);
    await new Promise((r) => setTimeout(r, 3000)); // the outage goes on
    await his.start(); // same port
    await waitFor(() => specimens.every((sp) => his.received.some((r) => specimenOf(r.text) === sp)), 60_000, 200);
    const dl = await gw.api('/dead-letters');
    expect(dl.deadLetters.filter((x: any) => /OUTAGE/.test(JSON.stringify(x))).length).toBe(0);
    const m = await gw.metrics();
    expect(m).toMatch(/iomt_outbox_delivered_total\{destination="his"\} \d+/);
    expect(m).toMatch(/iomt_outbox_depth\{destination="his"\}/);
  });

  it('finds messages by specimen id through the API', async () => {
    const r = await gw.api('/messages?specimenId=OKBEFORE1');
    expect(r.messages.length).toBe(1);
    const detail = await gw.api(`/messages/${r.messages[0].id}`);
    expect(detail.raw.data).toContain('OKBEFORE1');
    expect(detail.observations.length).toBe(2);
    expect(detail.deliveries[0].state).toBe('delivered');
  });
});

describe('kill -9 in the middle of a stream', () => {
  const tmp = tempDir();
  const his = new TestHis();

  afterAll(async () => {
    await his.stop();
    tmp.cleanup();
  });

  it('delivers every message that got AA after a restart', async () => {
    const hisPort = await his.start();
    const hl7Port = await freePort();
    const env = { HIS_HOST: '127.0.0.1', HIS_PORT: String(hisPort), HIS_ACK_TIMEOUT_S: '2', HIS_RECONNECT_MAX_S: '1' };
    const dataDir = join(tmp.dir, 'gw');
    let gw = await startGatewayProcess({ dataDir, hl7Port, env });
    const acked: string[] = [];
    const senders = [0, 1, 2, 3].map(async (c) => {
      const client = new MllpClient({ host: '127.0.0.1', port: hl7Port, ackTimeoutMs: 5000, connectTimeoutMs: 2000 });
      for (let i = 0; ; i++) {
        const sp = `KILL${c}X${i}`;
        try {
          const ack = parseAck(await client.send(oru(sp)));
          if (ack.code === 'AA') acked.push(sp);
        } catch {
          break; // the gateway died under us
        }
      }
      await client.close().catch(() => undefined);
    });
    await waitFor(() => acked.length >= 300, 30_000);
    await gw.kill('SIGKILL');
    await Promise.all(senders);
    const ackedAtKill = [...acked];
    expect(ackedAtKill.length).toBeGreaterThanOrEqual(300);
    gw = await startGatewayProcess({ dataDir, hl7Port, env });
    try {
      await waitFor(() => {
        const got = new Set(his.received.map((r) => specimenOf(r.text)));
        return ackedAtKill.every((sp) => got.has(sp));
      }, 60_000, 250);
      // a duplicate after the crash carries the same MSH-10 as the first delivery
      const bySpecimen = new Map<string, Set<string>>();
      for (const r of his.received) {
        const sp = specimenOf(r.text);
        if (!bySpecimen.has(sp)) bySpecimen.set(sp, new Set());
        bySpecimen.get(sp)!.add(r.controlId);
      }
      for (const sp of ackedAtKill) expect(bySpecimen.get(sp)!.size).toBe(1);
    } finally {
      await gw.kill();
    }
  });
});

