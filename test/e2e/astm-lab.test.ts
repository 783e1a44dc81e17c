import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { spawn, execFile, type ChildProcess } from 'node:child_process';
import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import net from 'node:net';
import { promisify } from 'node:util';
import { SerialPort } from 'serialport';
import { freePort, requirePeer, tempDir, waitFor } from '../helpers/env';
import { startGatewayProcess, ROOT, type GatewayProcess } from '../helpers/gateway-process';
import { TestHis } from '../helpers/test-his';
import { AstmPeer, CODES, frame, framesOf } from '../helpers/astm-peer';
import { parseHl7 } from '../../drivers/hl7-mllp/hl7-message';

const pexec = promisify(execFile);
const WIRE = join(ROOT, 'drivers', 'astm', 'fixtures', 'sample_session.record.wire');

describe('Lab flow: ASTM analyzers (serial pty + TCP) → gateway → HIS, with host query from HL7 orders', () => {
  const tmp = tempDir();
  const his = new TestHis();
  let gw: GatewayProcess;
  let socat: ChildProcess;
  let serial: SerialPort;
  let astmTcpPort: number;
  let ordersPort: number;
  const ptyGw = join(tmp.dir, 'ttyGW');
  const ptyDev = join(tmp.dir, 'ttyDEV');

  beforeAll(async () => {
    requirePeer('socat');
    requirePeer('mllp_send');
    // a null-modem cable in software (peers.md): open the device end first
    socat = spawn('socat', ['-d', '-d', `pty,raw,echo=0,link=${ptyGw}`, `pty,raw,echo=0,link=${ptyDev}`], { stdio: 'ignore' });
    await waitFor(() => existsSync(ptyGw) && existsSync(ptyDev), 10_000);
    serial = new SerialPort({ path: ptyDev, baudRate: 9600 });
    await new Promise<void>((r, j) => serial.once('open', () => r()).once('error', j));
    const hisPort = await his.start();
    astmTcpPort = await freePort();
    ordersPort = await freePort();
    gw = await startGatewayProcess({
      dataDir: join(tmp.dir, 'gw'),
      flows: join(ROOT, 'flows', 'lab-astm-to-his.json'),
      env: {
        ASTM_SERIAL_PATH: ptyGw,
        ASTM_BAUD: '9600',
        ASTM_TCP_HOST: '127.0.0.1',
        ASTM_TCP_PORT: String(astmTcpPort),
        ORDERS_IN_HOST: '127.0.0.1',
        ORDERS_IN_PORT: String(ordersPort),
        HIS_HOST: '127.0.0.1',
        HIS_PORT: String(hisPort),
        HIS_RECONNECT_MAX_S: '1',
      },
    });
  });
  afterAll(async () => {
    await gw?.kill('SIGKILL');
    await new Promise<void>((r) => (serial?.isOpen ? serial.close(() => r()) : r()));
    socat?.kill();
    await his.stop();
    tmp.cleanup();
  });

  it('a session over the serial port arrives at the HIS as v2.5.1 with the same values, units, flags and specimen', async () => {
    const peer = new AstmPeer(serial);
    const frames = framesOf(readFileSync(WIRE));
    expect(frames.length).toBeGreaterThan(4);
    // first frame with a corrupted checksum: NAKed (E1381 8.3.3), then the good one is ACKed
    const bad = Buffer.from(frames[0]);
    bad[bad.length - 3] = bad[bad.length - 3] === 0x30 ? 0x31 : 0x30;
    const answers = await peer.sendSession([bad, ...frames]);
    expect(answers[0]).toBe(CODES.NAK);
    expect(answers.slice(1).every((a) => a === CODES.ACK)).toBe(true);
    const got = await waitFor(() => his.received.find((r) => r.text.includes('SMP-0001')), 20_000);
    const m = parseHl7(got.text);
    expect(m.get('MSH', 12)).toBe('2.5.1');
    const obx = TestHis.obx(got.text).obx;
    const glu = obx.find((o) => o.value === '5.4');
    expect(glu).toBeDefined();
    expect(glu!.units).toBe('mmol/L');
    expect(glu!.range).toBe('3.9-6.1');
    expect(glu!.flags).toBe('N');
    expect(obx.find((o) => o.value === '141')).toBeDefined();
    expect(TestHis.obx(got.text).specimenIds).toContain('SMP-0001');
    const devices = await gw.api('/devices');
    expect(devices.devices.find((d: any) => d.deviceId === 'astm-serial').state).toBe('connected');
  });

  it('an analyzer on TCP: each result once, a re-sent session is not duplicated', async () => {
    const sock = net.connect(astmTcpPort, '127.0.0.1');
    await new Promise<void>((r) => sock.once('connect', () => r()));
    const peer = new AstmPeer(sock);
    const records = [
      'H|\\^&|||TCP-ANALYZER^1|||||LIS||P|LIS2-A2|20250301093015',
      'P|1|BN0099001',
      'O|1|TCP-SPEC-1||^^^WBC\\^^^HGB|R||||||N||||WB',
      'R|1|^^^WBC|7.85|10*3/uL|4.00 to 10.00|N||F||TECH01||20250301092950|TCP-1',
      'R|2|^^^HGB|11.60|g/dL|13.0 to 17.0|L||F||TECH01||20250301092950|TCP-1',
      'L|1|N',
    ];
    const frames = records.map((r, i) => frame(i + 1, r));
    expect((await peer.sendSession(frames)).every((a) => a === CODES.ACK)).toBe(true);
    // the same session again (the analyzer lost our last ACK): acknowledged, not stored twice
    expect((await peer.sendSession(frames)).every((a) => a === CODES.ACK)).toBe(true);
    await waitFor(() => his.received.some((r) => r.text.includes('TCP-SPEC-1')), 20_000);
    await new Promise((r) => setTimeout(r, 1500));
    const arrived = his.received.filter((r) => r.text.includes('TCP-SPEC-1'));
    expect(new Set(arrived.map((a) => a.controlId)).size).toBe(1);
    const obx = TestHis.obx(arrived[0].text).obx;
    // LOINC from the profile's code map; the value keeps the analyzer's precision
    const hgb = obx.find((o) => o.code === '718-7')!;
    expect(hgb.value).toBe('11.60');
    expect(hgb.flags).toBe('L');
    expect(obx.find((o) => o.code === '6690-2')!.value).toBe('7.85');
    const msgs = await gw.api('/messages?specimenId=TCP-SPEC-1');
    expect(msgs.messages.length).toBe(1);
    sock.destroy();
  });

  it("answers an analyzer's host query with the order an ORM^O01 delivered earlier", async () => {
    const orm = join(tmp.dir, 'orm.hl7');
    writeFileSync(
      orm,
      [
        'MSH|^~\\&|HIS|BV_DEMO|IOMT-GW|LAB|20250301094500||ORM^O01|ORD-0001|P|2.3.1',
        'PID|1||BN0067890^^^BV_DEMO^MR||TRAN^THI BINH||19790130|F',
        'ORC|NW|HIS-ORD-55|2503010057',
        'OBR|1|HIS-ORD-55|2503010057|GLU^Glucose^L|R||20250301094000|||||||||||||||||CH',
        'OBR|2|HIS-ORD-55|2503010057|NA^Sodium^L|R||20250301094000|||||||||||||||||CH',
      ].join('\r') + '\r',
    );
    const { stdout } = await pexec('timeout', ['10', 'mllp_send', '--loose', '-f', orm, '-p', String(ordersPort), '127.0.0.1']);
    expect(stdout).toContain('MSA|AA|ORD-0001');
    const sock = net.connect(astmTcpPort, '127.0.0.1');
    await new Promise<void>((r) => sock.once('connect', () => r()));
    const peer = new AstmPeer(sock);
    const q = ['H|\\^&|||TCP-ANALYZER^1|||||LIS||P|1|20250301100000', 'Q|1|^2503010057||ALL||||||||O', 'L|1|N'].map((r, i) => frame(i + 1, r));
    expect((await peer.sendSession(q)).every((a) => a === CODES.ACK)).toBe(true);
    // after our EOT the gateway bids for the line and sends its answer (a new session)
    const records = await peer.receiveSession(20_000);
    const o = records.find((r) => /^O\|/.test(r));
    expect(o, records.join('\n')).toBeDefined();
    expect(o).toContain('2503010057');
    expect(o).toMatch(/\^\^\^GLU/);
    expect(o).toMatch(/\^\^\^NA/);
    expect(records.find((r) => /^P\|/.test(r))).toContain('BN0067890');
    // a specimen nobody ordered: "no information" (L|1|I)
    const q2 = ['H|\\^&|||TCP-ANALYZER^1|||||LIS||P|1|20250301100100', 'Q|1|^UNKNOWN-99||ALL||||||||O', 'L|1|N'].map((r, i) => frame(i + 1, r));
    await peer.sendSession(q2);
    expect((await peer.receiveSession(20_000)).some((r) => r.startsWith('L|1|I'))).toBe(true);
    sock.destroy();
  });

  it('garbage, binary noise and a 70,000-byte frame get NAKs, and the analyzer still works after', async () => {
    const sock = net.connect(astmTcpPort, '127.0.0.1');
    await new Promise<void>((r) => sock.once('connect', () => r()));
    const got: number[] = [];
    sock.on('data', (d) => got.push(...d));
    sock.write(Buffer.from([0x05])); // ENQ
    await waitFor(() => got.includes(CODES.ACK), 5000);
    sock.write(Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'));
    sock.write(Buffer.from(Array.from({ length: 512 }, (_, i) => (i * 37) & 0xff)));
    sock.write(Buffer.concat([Buffer.from([0x02, 0x31]), Buffer.alloc(70_000, 0x41), Buffer.from([0x0d, 0x03, 0x30, 0x30, 0x0d, 0x0a])]));
    await waitFor(() => got.includes(CODES.NAK), 10_000);
    sock.write(Buffer.from([CODES.EOT]));
    sock.destroy();
    await new Promise((r) => setTimeout(r, 500));
    expect((await fetch(`http://127.0.0.1:${gw.httpPort}/healthz`)).ok).toBe(true);
    const sock2 = net.connect(astmTcpPort, '127.0.0.1');
    await new Promise<void>((r) => sock2.once('connect', () => r()));
    const peer = new AstmPeer(sock2);
    const recs = ['H|\\^&|||TCP-ANALYZER^1|||||LIS||P|1|20250301110000', 'P|1', 'O|1|AFTER-NOISE-1||^^^GLU|R', 'R|1|^^^GLU|6.2|mmol/L|3.9 to 6.4|N||F', 'L|1|N'];
    expect((await peer.sendSession(recs.map((r, i) => frame(i + 1, r)))).every((a) => a === CODES.ACK)).toBe(true);
    await waitFor(() => his.received.some((r) => r.text.includes('AFTER-NOISE-1')), 20_000);
    sock2.destroy();
  });
});

describe('ASTM: kill -9 of the gateway in the middle of sessions', () => {
  const tmp = tempDir();
  const his = new TestHis();
  afterAll(async () => {
    await his.stop();
    tmp.cleanup();
  });

  it('every session whose final frame got its ACK reaches the HIS after a restart, once', async () => {
    const hisPort = await his.start();
    const astmPort = await freePort();
    const dataDir = join(tmp.dir, 'gw');
    const env = {
      ASTM_SERIAL_PATH: join(tmp.dir, 'no-such-serial-port'), // retried in the background
      ASTM_BAUD: '9600',
      ASTM_TCP_HOST: '127.0.0.1',
      ASTM_TCP_PORT: String(astmPort),
      ORDERS_IN_HOST: '127.0.0.1',
      ORDERS_IN_PORT: String(await freePort()),
      HIS_HOST: '127.0.0.1',
      HIS_PORT: String(hisPort),
      HIS_RECONNECT_MAX_S: '1',
    };
    const flows = join(ROOT, 'flows', 'lab-astm-to-his.json');
    let gw = await startGatewayProcess({ dataDir, flows, env });
    const acked: string[] = []; // specimen ids whose L frame (the frame that completes the message) was ACKed
    let stop = false;
    // three analyzers on TCP, sessions back to back, each record in its own frame
    const analyzers = [0, 1, 2].map(async (a) => {
      const sock = net.connect(astmPort, '127.0.0.1');
      sock.on('error', () => undefined);
      await new Promise<void>((r) => sock.once('connect', () => r()));
      const peer = new AstmPeer(sock);
      for (let i = 0; !stop; i++) {
        const sp = `K9-${a}-${i}`;
        const recs = [
          `H|\\^&|||KILL-ANALYZER^${a}|||||LIS||P|1|20250301110000`,
          'P|1',
          `O|1|${sp}||^^^GLU\\^^^NA|R`,
          'R|1|^^^GLU|6.2|mmol/L|3.9 to 6.4|N||F',
          'R|2|^^^NA|141|mmol/L|135 to 145|N||F',
          'L|1|N',
        ];
        try {
          const answers = await peer.sendSession(recs.map((r, k) => frame(k + 1, r)), 3000);
          if (answers.length === recs.length && answers.every((x) => x === CODES.ACK)) acked.push(sp);
        } catch {
          break; // the gateway died under us
        }
      }
      sock.destroy();
    });
    await waitFor(() => acked.length >= 40, 60_000);
    await gw.kill('SIGKILL');
    stop = true;
    await Promise.all(analyzers);
    const ackedAtKill = [...acked];
    gw = await startGatewayProcess({ dataDir, flows, env });
    try {
      const specimens = () => his.received.flatMap((r) => TestHis.obx(r.text).specimenIds);
      await waitFor(() => {
        const got = new Set(specimens());
        return ackedAtKill.every((sp) => got.has(sp));
      }, 60_000, 250);
      // a message delivered twice across the crash carries the same MSH-10 both times
      const controlIds = new Map<string, Set<string>>();
      for (const r of his.received) {
        for (const sp of TestHis.obx(r.text).specimenIds) {
          if (!controlIds.has(sp)) controlIds.set(sp, new Set());
          controlIds.get(sp)!.add(r.controlId);
        }
      }
      for (const sp of ackedAtKill) expect(controlIds.get(sp)!.size).toBe(1);
      // and it is stored once
      const found = await gw.api(`/messages?specimenId=${ackedAtKill[ackedAtKill.length - 1]}`);
      expect(found.messages.length).toBe(1);
    } finally {
      await gw.kill();
    }
  }, 180_000);
});
