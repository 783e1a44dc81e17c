/**
 * End-to-end: the driver on a real transport (TCP, socat pty pair with serialport) against the
 * analyzer simulator, with a test sink that stores in a Map.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, readFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { CommitResult, InboundMessage, ObservationSink, QuarantineInput } from '../../gateway/src/contracts/driver';
import { StoreError } from '../../gateway/src/contracts/errors';
import { requirePeer, tempDir, waitFor } from '../../test/helpers/env';
import { AstmAnalyzerSimulator, buildResultSession } from '../../simulator/astm/analyzer-simulator';
import { AstmDriver } from './astm-driver';
import { isDeviceIoError } from '../../gateway/src/log/device-io-guard';

// The serialport library can leave an EIO write rejection unhandled when a pty (a USB adapter) vanishes
// mid-write (docs/failure-modes.md). The run command ignores exactly these (installDeviceIoGuard); the
// same policy here, so the unplug tests cannot fail the whole run on the library's leak. Any other
// unhandled rejection still reaches vitest.
const emit = process.emit.bind(process) as (ev: string | symbol, ...args: unknown[]) => boolean;
(process as unknown as { emit: typeof emit }).emit = (ev, ...args) => (ev === 'unhandledRejection' && isDeviceIoError(args[0]) ? true : emit(ev, ...args));
import { metrics } from '../../gateway/src/metrics/registry';
import { ACK, ENQ, EOT, NAK, encodeFrame } from './frame';
import { GatewayStore } from '../../gateway/src/store/gateway-store';
import { loadProfiles, type AstmProfile } from './profile';
import { field, parseRecords } from './records';
import { SerialTransport } from './transport/serial-transport';
import { TcpClientTransport } from './transport/tcp-client-transport';
import type { Transport, TransportConnection } from '../../gateway/src/contracts/transport';

const profiles = loadProfiles(join(__dirname, '../../firmware-config/profiles/astm'));

class MapSink implements ObservationSink {
  messages = new Map<string, InboundMessage>();
  quarantined: QuarantineInput[] = [];
  failNext = 0;
  private id = 0;
  async submit(msg: InboundMessage): Promise<CommitResult> {
    if (this.failNext > 0) {
      this.failNext--;
      throw new StoreError('simulated disk full');
    }
    const key = msg.dedupeKey ?? String(this.id + 1);
    if (this.messages.has(key)) return { messageId: 0, messageUid: key, duplicate: true, observations: [] };
    this.messages.set(key, msg);
    return { messageId: ++this.id, messageUid: key, duplicate: false, observations: [] };
  }
  async quarantine(q: QuarantineInput): Promise<number> {
    this.quarantined.push(q);
    return this.quarantined.length;
  }
  get drafts(): number {
    return [...this.messages.values()].reduce((n, m) => n + m.drafts.length, 0);
  }
}

const cleanups: Array<() => Promise<void> | void> = [];
afterEach(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

function firstConnection(t: Transport): Promise<TransportConnection> {
  return new Promise((r) => t.once('connection', r));
}

async function tcpPair(opts: { profile?: string; hooks?: ConstructorParameters<typeof AstmDriver>[2]; sink?: MapSink } = {}) {
  const sink = opts.sink ?? new MapSink();
  const profile = profiles.get(opts.profile ?? 'generic-lis2-a2')!;
  const driver = new AstmDriver({ deviceId: 'chem-1', profile, transport: { kind: 'tcp-server', port: 0, host: '127.0.0.1' }, storeBusyMs: 10_000 }, sink, opts.hooks);
  await driver.start();
  cleanups.push(() => driver.close());
  const client = new TcpClientTransport({ host: '127.0.0.1', port: driver.boundPort!, reconnectBaseMs: 100 });
  const connP = firstConnection(client);
  await client.start();
  cleanups.push(() => client.close());
  const sim = new AstmAnalyzerSimulator(await connP, { profile });
  cleanups.push(() => sim.close());
  return { sink, driver, sim, profile };
}

describe('AstmDriver over TCP (gateway listens)', () => {
  it('results arrive; corrupted and wrong-FN frames are NAKed and recovered; split writes; nothing duplicated', async () => {
    const { sink, sim, profile, driver } = await tcpPair();
    sim.setFaults({ corruptChecksumEvery: 3, wrongFrameNumberEvery: 4, splitWrites: 7 });
    for (let i = 1; i <= 5; i++) await sim.sendMessage(buildResultSession(profile, { seq: i, tests: 3 }));
    expect(sink.messages.size).toBe(5);
    expect(sink.drafts).toBe(15);
    expect(sim.stats.naksReceived).toBe(sim.stats.corrupted + sim.stats.wrongFn);
    expect(sim.stats.corrupted).toBeGreaterThan(0);
    const specimens = [...sink.messages.values()].map((m) => m.drafts[0].subject?.specimenId);
    expect(new Set(specimens).size).toBe(5);
    expect(driver.status()).toMatchObject({ driver: 'astm', state: 'connected', connections: 1 });
    expect(driver.status().lastMessageAt).toBeDefined();
  });

  it('analyzer falls silent mid-message: receive timer (30 s, shortened here) ends the session, the partial goes to quarantine, the re-sent session is stored once', async () => {
    const sink = new MapSink();
    const profile = profiles.get('generic-lis2-a2')!;
    const driver = new AstmDriver({ deviceId: 'chem-1', profile, transport: { kind: 'tcp-server', port: 0, host: '127.0.0.1' }, link: { frameReceiveTimeoutMs: 300 } }, sink);
    await driver.start();
    cleanups.push(() => driver.close());
    const connect = async (faults: ConstructorParameters<typeof AstmAnalyzerSimulator>[1]) => {
      const client = new TcpClientTransport({ host: '127.0.0.1', port: driver.boundPort!, reconnectBaseMs: 100 });
      const connP = firstConnection(client);
      await client.start();
      cleanups.push(() => client.close());
      const sim = new AstmAnalyzerSimulator(await connP, { profile, ...faults, link: { replyTimeoutMs: 1000 } });
      cleanups.push(() => sim.close());
      return { sim, client };
    };
    const session = buildResultSession(profile, { seq: 7, tests: 3 });
    const a = await connect({ faults: { silenceAfterFrames: 2 } });
    await expect(a.sim.sendMessage(session)).rejects.toThrow(); // no reply to the silent frame → the sender gives up
    await waitFor(() => sink.quarantined.length === 1, 5000);
    expect(sink.messages.size).toBe(0); // nothing half-stored
    expect(sink.quarantined[0].reason).toMatch(/timeout/i);
    expect(sink.quarantined[0].raw.toString('latin1')).toMatch(/^H\|/); // the records that did arrive, for audit
    await a.client.close();
    const b = await connect({});
    await b.sim.sendMessage(session);
    expect(sink.messages.size).toBe(1);
    expect(sink.drafts).toBe(3);
  });

  it('analyzer disconnects mid-message: the partial goes to quarantine, the analyzer reconnects and re-sends, stored once', async () => {
    const { sink, sim, profile, driver } = await tcpPair();
    sim.setFaults({ disconnectAfterFrames: 3 });
    const session = buildResultSession(profile, { seq: 8, tests: 4 });
    const first = sim.sendMessage(session).then(
      () => 'acked',
      () => 'failed',
    );
    await waitFor(() => sink.quarantined.length === 1, 5000);
    expect(sink.quarantined[0].reason).toMatch(/closed/i);
    expect(sink.messages.size).toBe(0);
    sim.close();
    expect(await first).toBe('failed'); // the final frame was never ACKed: the analyzer must re-send
    // the analyzer dials again
    const client = new TcpClientTransport({ host: '127.0.0.1', port: driver.boundPort!, reconnectBaseMs: 100 });
    const connP = firstConnection(client);
    await client.start();
    cleanups.push(() => client.close());
    const sim2 = new AstmAnalyzerSimulator(await connP, { profile });
    cleanups.push(() => sim2.close());
    await sim2.sendMessage(session);
    await sim2.sendMessage(session); // and once more: the duplicate is ACKed but not stored twice
    expect(sink.messages.size).toBe(1);
    expect(sink.drafts).toBe(4);
  });

  it('a device that speaks another protocol (bioMérieux mini VIDAS-style output): its bytes go to quarantine with a reason, nothing is stored, a real ASTM session still works', async () => {
    const { sink, sim, profile, driver } = await tcpPair();
    const raw = net.connect(driver.boundPort!, '127.0.0.1');
    await new Promise<void>((r) => raw.once('connect', () => r()));
    // the shape of mini VIDAS output (STX, RS-separated two-letter fields, GS, checksum, LF): not E1381 frames, no ENQ
    const RS = '\x1e';
    const vidas = Buffer.from(`\x02${RS}mtrsl|${RS}pi|${RS}pn|${RS}si|${RS}ciSPEC-V1|${RS}rtHBCT|${RS}rnAnti-HBc Total II|${RS}tt18:35|${RS}td10/25/24|${RS}qlPositif|${RS}qn0.05|\x1db0\n`, 'latin1');
    const got: number[] = [];
    raw.on('data', (d) => got.push(...d));
    raw.write(vidas);
    await waitFor(() => sink.quarantined.length === 1, 5000);
    const q = sink.quarantined[0];
    expect(q.reason).toMatch(/outside an ASTM session/);
    expect(q.raw.equals(vidas)).toBe(true); // exactly the bytes that arrived
    expect(got).toEqual([]); // LIS01 §1.3: outside a transfer phase nothing is answered
    expect(driver.status().lastError).toMatch(/outside an ASTM session/);
    expect(metrics.strayBytes.get({ device: 'chem-1' })).toBeGreaterThanOrEqual(vidas.length);
    raw.destroy();
    await sim.sendMessage(buildResultSession(profile, { seq: 11, tests: 2 }));
    expect(sink.messages.size).toBe(1);
    expect(sink.quarantined.length).toBe(1); // a normal session adds nothing to quarantine
    // a peer streaming garbage: quarantine is bounded per connection (64 KiB runs, at most 16 of them)
    const flood = net.connect(driver.boundPort!, '127.0.0.1');
    await new Promise<void>((r) => flood.once('connect', () => r()));
    flood.write(Buffer.alloc(2 * 1024 * 1024, 0x41));
    await waitFor(() => sink.quarantined.length === 17, 10_000);
    await new Promise((r) => setTimeout(r, 800)); // the last partial run would be flushed after 500 ms of quiet
    expect(sink.quarantined.length).toBe(17);
    expect(sink.quarantined.slice(1).every((q) => q.raw.length === 64 * 1024)).toBe(true);
    flood.destroy();
  });

  it('store failure → NAK; the analyzer retransmits and the message is stored once', async () => {
    const sink = new MapSink();
    sink.failNext = 1;
    const { sim, profile } = await tcpPair({ sink });
    await sim.sendMessage(buildResultSession(profile, { seq: 1 }));
    expect(sim.stats.naksReceived).toBe(1);
    expect(sink.messages.size).toBe(1);
  });

  it('host query answered from onQuery as a new session after the analyzer EOT', async () => {
    const queries: unknown[] = [];
    const { sim } = await tcpPair({
      profile: 'roche-cobas-c311',
      hooks: {
        onQuery: async (q) => {
          queries.push(q);
          return q.specimenIds[0] === '2503010057' ? [{ specimenId: '2503010057', patientId: 'BN0067890', tests: ['717', '690'] }] : 'unknown';
        },
      },
    });
    const answer = await sim.query(['2503010057'], { timeoutMs: 10_000 });
    expect(queries).toEqual([expect.objectContaining({ specimenIds: ['2503010057'], tests: ['ALL'], status: 'O' })]);
    const o = parseRecords(answer).records.find((r) => r.type === 'O')!;
    expect([field(o, 3), field(o, 5), field(o, 26)]).toEqual(['2503010057', '^^^717/\\^^^690/', 'Q']);
    expect(answer[answer.length - 1]).toBe('L|1|F');
    const none = await sim.query(['NOPE'], { timeoutMs: 10_000 });
    expect(none.slice(1)).toEqual(['L|1|I']);
  });

  it('contention and receiver interrupt while the gateway answers a query', async () => {
    const sink = new MapSink();
    const profile = profiles.get('generic-lis2-a2')!;
    const driver = new AstmDriver(
      { deviceId: 'd2', profile, transport: { kind: 'tcp-server', port: 0, host: '127.0.0.1' }, link: { contentionBackoffMs: 300, interruptHoldoffMs: 300 } },
      sink,
      { onQuery: async () => [{ specimenId: 'S1', tests: ['GLU'] }] },
    );
    await driver.start();
    cleanups.push(() => driver.close());
    const client = new TcpClientTransport({ host: '127.0.0.1', port: driver.boundPort! });
    const connP = firstConnection(client);
    await client.start();
    cleanups.push(() => client.close());
    const sim = new AstmAnalyzerSimulator(await connP, { profile, faults: { receiverInterrupt: true } });
    cleanups.push(() => sim.close());
    const events: string[] = [];
    sim.on('fault', (f: string) => events.push(f));
    // receiver interrupt: the first frame of the gateway's answer gets EOT; the gateway stops and re-sends later
    const answer = await sim.query(['S1'], { timeoutMs: 10_000 });
    expect(answer[answer.length - 1]).toBe('L|1|F');
    // contention: the analyzer bids at the moment the gateway bids for its next answer; the analyzer wins
    sim.setFaults({});
    const before = sim.received.length;
    let results: Promise<void> | undefined;
    const onLink = (e: { type: string }): void => {
      if (e.type !== 'sent' || results) return;
      // the query is out (EOT just written): hold results until the gateway bids, then bid at the same moment
      sim.setFaults({ contention: true });
      results = sim.sendMessage(buildResultSession(profile, { seq: 9 }));
    };
    sim.on('link', onLink);
    await sim.query(['S1'], { timeoutMs: 10_000 });
    await results;
    expect(sim.received.length).toBe(before + 1);
    expect(events).toEqual(['interrupt', 'contention']);
    expect([...sink.messages.values()].some((m) => m.drafts.length === 3)).toBe(true);
  });

  it('bad input: non-ASTM text, binary noise, a 70,000-byte frame → NAK/quarantine, no crash', async () => {
    const { sink, driver, sim, profile } = await tcpPair();
    const sock = net.connect(driver.boundPort!, '127.0.0.1');
    cleanups.push(() => void sock.destroy());
    const got: number[] = [];
    sock.on('data', (b) => got.push(...b));
    await new Promise((r) => sock.once('connect', r));
    sock.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    sock.write(Buffer.from(Array.from({ length: 4096 }, (_, i) => (i * 97 + 13) & 0xff).filter((b) => b !== 5)));
    sock.write(Buffer.from([5]));
    await waitFor(() => got.includes(6));
    sock.write(encodeFrame(1, Buffer.alloc(70_000, 'x'), true));
    await waitFor(() => got.includes(0x15));
    // a well-framed message that is not E1394 (no H record) is quarantined, then ACKed
    const n = got.length;
    sock.write(encodeFrame(1, Buffer.from('hello world\r'), true));
    await waitFor(() => got.length > n);
    sock.write(encodeFrame(2, Buffer.from('L|1|N\r'), true));
    await waitFor(() => sink.quarantined.length === 1);
    expect(sink.quarantined[0]).toMatchObject({ driver: 'astm', errorCode: 'GW_ERR_PARSE' });
    sock.write(Buffer.from([4]));
    // the other connection still works
    await sim.sendMessage(buildResultSession(profile, { seq: 1 }));
    expect(sink.messages.size).toBe(1);
    expect(driver.status().state).not.toBe('error');
  });
});

describe('AstmDriver over a serial pty pair (socat)', () => {
  it('results and a host query across real serial ports; corrupted frames recovered', async () => {
    requirePeer('socat');
    const t = tempDir('astm-pty-');
    cleanups.push(t.cleanup);
    const gw = join(t.dir, 'ttyGW');
    const dev = join(t.dir, 'ttyDEV');
    const socat: ChildProcess = spawn('socat', ['-d', '-d', `pty,raw,echo=0,link=${gw}`, `pty,raw,echo=0,link=${dev}`], { stdio: 'ignore' });
    cleanups.push(() => void socat.kill('SIGTERM'));
    await waitFor(() => existsSync(gw) && existsSync(dev));
    const profile = profiles.get('sysmex-xn')!;
    // open the device end first
    const devT = new SerialTransport({ path: dev, baudRate: 9600, reopenBaseMs: 100 });
    const devConnP = firstConnection(devT);
    await devT.start();
    cleanups.push(() => devT.close());
    const sim = new AstmAnalyzerSimulator(await devConnP, { profile, faults: { corruptChecksumEvery: 4 } });
    cleanups.push(() => sim.close());
    const sink = new MapSink();
    const driver = new AstmDriver({ deviceId: 'xn-1', profile, transport: { kind: 'serial', path: gw, reopenBaseMs: 100 } }, sink, {
      onQuery: async (q) => [{ specimenId: q.specimenIds[0], tests: ['WBC', 'HGB'], priority: 'S' }],
    });
    await driver.start();
    cleanups.push(() => driver.close());
    await waitFor(() => driver.status().state === 'connected');
    for (let i = 1; i <= 3; i++) await sim.sendMessage(buildResultSession(profile, { seq: i, tests: 4 }));
    expect(sink.messages.size).toBe(3);
    expect(sink.drafts).toBe(12);
    expect(sim.stats.naksReceived).toBe(sim.stats.corrupted);
    const d = [...sink.messages.values()][0].drafts[0];
    expect(d).toMatchObject({ code: { system: 'http://loinc.org', code: '6690-2' }, localCode: { code: 'WBC' }, status: 'final' });
    sim.setFaults({});
    const answer = await sim.query(['SPEC-9'], { timeoutMs: 10_000 });
    const o = parseRecords(answer).records.find((r) => r.type === 'O')!;
    expect([field(o, 3), field(o, 5), field(o, 6)]).toEqual(['SPEC-9', '^^^^WBC^1\\^^^^HGB^1', 'S']);
  });

  it('USB adapter unplugged and plugged back (socat pty pair killed and re-created on the same path): the port is reopened and results flow again', async () => {
    requirePeer('socat');
    const t = tempDir('astm-unplug-');
    cleanups.push(t.cleanup);
    const gw = join(t.dir, 'ttyGW');
    const dev = join(t.dir, 'ttyDEV');
    const plug = async () => {
      const socat: ChildProcess = spawn('socat', [`pty,raw,echo=0,link=${gw}`, `pty,raw,echo=0,link=${dev}`], { stdio: 'ignore' });
      cleanups.push(() => void socat.kill('SIGKILL'));
      await waitFor(() => existsSync(gw) && existsSync(dev));
      const devT = new SerialTransport({ path: dev, baudRate: 9600, reopenBaseMs: 100 });
      const devConnP = firstConnection(devT);
      await devT.start();
      cleanups.push(() => devT.close());
      const sim = new AstmAnalyzerSimulator(await devConnP, { profile });
      cleanups.push(() => sim.close());
      return { socat, devT, sim };
    };
    const profile = profiles.get('generic-lis2-a2')!;
    const first = await plug();
    const sink = new MapSink();
    const driver = new AstmDriver({ deviceId: 'usb-1', profile, transport: { kind: 'serial', path: gw, reopenBaseMs: 100, reopenMaxMs: 400, presenceCheckMs: 200 } }, sink);
    await driver.start();
    cleanups.push(() => driver.close());
    await waitFor(() => driver.status().state === 'connected');
    await first.sim.sendMessage(buildResultSession(profile, { seq: 1, tests: 2 }));
    expect(sink.messages.size).toBe(1);
    // unplug: the pty pair disappears under the open port (read → EIO, like a USB adapter pulled out)
    first.socat.kill('SIGKILL');
    await first.devT.close();
    await waitFor(() => driver.status().state === 'disconnected', 10_000);
    await new Promise((r) => setTimeout(r, 500)); // a few failed reopen attempts while it is gone
    expect(driver.status().state).toBe('disconnected');
    // plug back in: same path
    const second = await plug();
    await waitFor(() => driver.status().state === 'connected', 10_000);
    await second.sim.sendMessage(buildResultSession(profile, { seq: 2, tests: 2 }));
    expect(sink.messages.size).toBe(2);
    expect(sink.drafts).toBe(4);
  }, 40_000);

  it('serial path absent at start: keeps retrying, never throws', async () => {
    const sink = new MapSink();
    const driver = new AstmDriver({ deviceId: 'gone', transport: { kind: 'serial', path: '/dev/serial/by-id/does-not-exist', reopenBaseMs: 50, reopenMaxMs: 100 } }, sink);
    await driver.start();
    cleanups.push(() => driver.close());
    await waitFor(() => driver.status().lastError);
    expect(driver.status().state).toBe('disconnected');
    await driver.close();
    await driver.close(); // safe twice
    expect(driver.status().state).toBe('stopped');
  });
});

describe('AstmDriver with a real on-disk GatewayStore', () => {
  it('analyzer gives up after 6 NAKs (LIS01 §1.3.2): the quarantine row holds H, P, O, the rejected frame bytes and the reason; nothing is stored as a message', async () => {
    const t = tempDir('astm-giveup-');
    cleanups.push(t.cleanup);
    const store = GatewayStore.open({ dataDir: t.dir });
    cleanups.push(() => store.close());
    const profile = profiles.get('generic-lis2-a2')!;
    const driver = new AstmDriver({ deviceId: 'chem-q', profile, transport: { kind: 'tcp-server', port: 0, host: '127.0.0.1' } }, store);
    await driver.start();
    cleanups.push(() => driver.close());
    const { reply, got, sock } = await analyzer(driver.boundPort!);
    const records = ['H|\\^&|||CHEM-Q^1|||||LIS||P|LIS2-A2|20250301093015', 'P|1||12345', 'O|1|SPEC-Q1||^^^GLU|R'];
    expect(await reply(Buffer.from([ENQ]))).toBe(ACK);
    for (const [i, r] of records.entries()) expect(await reply(encodeFrame(i + 1, Buffer.from(r + '\r', 'latin1'), true))).toBe(ACK);
    const bad = encodeFrame(4, Buffer.from('R|1|^^^GLU|5.4|mmol/L||N||F\r', 'latin1'), true);
    bad[bad.length - 3] ^= 0x01; // damaged checksum (C2)
    for (let i = 0; i < 6; i++) expect(await reply(bad)).toBe(NAK);
    sock.write(Buffer.from([EOT])); // LIS01 §1.3.2: the analyzer gives up after 6 failed attempts
    await waitFor(() => store.listQuarantine().length === 1, 5000);
    const row = store.getQuarantine(store.listQuarantine()[0].id)!;
    expect(row).toMatchObject({ deviceId: 'chem-q', driver: 'astm', errorCode: 'GW_ERR_PARSE' });
    expect(row.reason).toContain('analyzer ended the transfer after 6 NAKs of frame 4 (bad checksum); 3 records received before it');
    expect(row.raw.subarray(0, records.join('\r').length + 1).toString('latin1')).toBe(records.join('\r') + '\r');
    expect(row.raw.includes(bad)).toBe(true); // the rejected frame, byte for byte
    expect(store.searchMessages({ deviceId: 'chem-q' })).toEqual([]); // the partial H, P, O was not committed as a message
    expect(got.filter((b) => b === ACK)).toHaveLength(4);
  });

  /**
   * An analyzer on TCP: `reply` writes bytes and waits for the gateway's answer; `send` plays one session
   * (ENQ, one record per frame, EOT; LIS01 §1.2).
   */
  async function analyzer(port: number) {
    const sock = net.connect(port, '127.0.0.1');
    cleanups.push(() => void sock.destroy());
    const got: number[] = [];
    sock.on('data', (b: Buffer) => got.push(...b));
    await new Promise<void>((r) => sock.once('connect', () => r()));
    const reply = async (b: Buffer): Promise<number> => {
      const n = got.length;
      sock.write(b);
      await waitFor(() => got.length > n, 5000);
      return got[got.length - 1];
    };
    const send = async (records: Array<string | Buffer>): Promise<void> => {
      expect(await reply(Buffer.from([ENQ]))).toBe(ACK);
      for (const [i, r] of records.entries()) {
        const text = Buffer.concat([typeof r === 'string' ? Buffer.from(r, 'utf8') : r, Buffer.from('\r')]);
        expect(await reply(encodeFrame((i + 1) % 8, text, true))).toBe(ACK);
      }
      sock.write(Buffer.from([EOT]));
    };
    return { reply, send, got, sock };
  }

  async function setup(profileId: string, over: Record<string, unknown> = {}) {
    const t = tempDir('astm-fid-');
    cleanups.push(t.cleanup);
    const store = GatewayStore.open({ dataDir: t.dir });
    cleanups.push(() => store.close());
    const profile = { ...profiles.get(profileId)!, ...over } as AstmProfile;
    const driver = new AstmDriver({ deviceId: 'lab-1', profile, transport: { kind: 'tcp-server', port: 0, host: '127.0.0.1' } }, store);
    await driver.start();
    cleanups.push(() => driver.close());
    return { store, driver, send: (await analyzer(driver.boundPort!)).send };
  }

  const session = (h3: string, pid: string, value: string) => [`H|\\^&|${h3}||CHEM-R^1|||||LIS||P|LIS2-A2|20250301093015`, `P|1|${pid}`, `O|1|S-${pid}||^^^GLU|R`, `R|1|^^^GLU|${value}|mmol/L|3.9 to 6.1|N||F||||20250301092900`, 'L|1|N'];

  it('the same rule as HL7: the same session again is a duplicate; another one reusing H.3 is stored and flagged control-id-reused', async () => {
    const { store, driver, send } = await setup('generic-lis2-a2');
    await send(session('MSG-1', '11111', '5.4'));
    await waitFor(() => store.searchMessages({ deviceId: 'lab-1' }).length === 1, 5000);
    await send(session('MSG-1', '11111', '5.4')); // a re-send after a lost final ACK
    await send(session('MSG-1', '22222', '2.1')); // another patient, the same H.3
    await waitFor(() => store.searchMessages({ deviceId: 'lab-1' }).length === 2, 5000);
    await new Promise((r) => setTimeout(r, 200));
    const msgs = store.searchMessages({ deviceId: 'lab-1' });
    expect(msgs).toHaveLength(2);
    expect(store.searchMessages({ flag: 'control-id-reused' }).map((m) => m.id)).toEqual([msgs[0].id]);
    expect(store.getMessage(msgs[0].id)!.observations[0].subject?.patientId).toBe('22222');
    expect(driver.status().controlIdReused).toBe(1);
  });

  it('a raw instrument signal is withheld (quarantined with the message id), the patient results are stored; strict profile quarantines the whole message', async () => {
    const records = readFileSync(join(__dirname, 'results-cases/fidelity-18-architect-aspects/input.astm'), 'utf8').split(/\r?\n/).filter((l) => l);
    const a = await setup('abbott-architect');
    await a.send(records);
    await waitFor(() => a.store.searchMessages({ deviceId: 'lab-1' }).length === 1 && a.store.listQuarantine().length === 1, 5000);
    const m = a.store.getMessage(a.store.searchMessages({ deviceId: 'lab-1' })[0].id)!;
    expect(m.observations.map((o) => o.code.code)).toEqual(['0021', '0021:I']);
    expect(m.flags).toContain('parts-withheld');
    const q = a.store.getQuarantine(a.store.listQuarantine()[0].id)!;
    expect(q).toMatchObject({ errorCode: 'GW_ERR_WITHHELD', meta: expect.objectContaining({ messageId: m.id }) });
    expect(q.reason).toContain('raw-signal');
    expect(q.raw.toString('utf8')).toMatch(/^R\|/);

    const s = await setup('abbott-architect', { strict: true });
    await s.send(records);
    await waitFor(() => s.store.listQuarantine().length === 1, 5000);
    expect(s.store.searchMessages({ deviceId: 'lab-1' })).toEqual([]);
    expect(s.store.listQuarantine()[0].reason).toMatch(/^strict profile: \d+ fault\(s\): /);
  });

  it('Vietnamese in UTF-8 arrives intact; bytes invalid in UTF-8 use the fallback encoding (flagged) or go to quarantine', async () => {
    const name = 'Nguyễn^Thị Ánh';
    const u = await setup('generic-lis2-a2');
    await u.send(['H|\\^&|||HEMA2^1|||||LIS||P|LIS2-A2|20250301093015', `P|1||12345||${name}||19800101|F`, 'O|1|S21||^^^HGB|R', 'R|1|^^^HGB|11.6|g/dL|12.0 to 16.0|L||F', 'C|1|I|Mẫu bị đông|G', 'L|1|N']);
    await waitFor(() => u.store.searchMessages({ deviceId: 'lab-1' }).length === 1, 5000);
    const o = u.store.getMessage(u.store.searchMessages({ deviceId: 'lab-1' })[0].id)!.observations[0];
    expect(o.subject?.patientName).toBe(name);
    expect(o.comments).toEqual(['Mẫu bị đông']);

    const cp1258 = Buffer.from('P|1||12345||Tr\xe2\xccn^V\xe3n||19790130|M', 'latin1'); // windows-1258 "Trần^Văn"
    const f = await setup('generic-lis2-a2', { fallbackEncoding: 'windows-1258' });
    await f.send(['H|\\^&|||CHEM2^1|||||LIS||P|LIS2-A2|20250301093015', cp1258, 'O|1|S22||^^^GLU|R', 'R|1|^^^GLU|5.4|mmol/L||N||F', 'L|1|N']);
    await waitFor(() => f.store.searchMessages({ deviceId: 'lab-1' }).length === 1, 5000);
    const fm = f.store.getMessage(f.store.searchMessages({ deviceId: 'lab-1' })[0].id)!;
    expect(fm.observations[0].subject?.patientName).toBe('Trần^Văn');
    expect(fm.flags).toContain('charset-fallback');

    const n = await setup('generic-lis2-a2');
    await n.send(['H|\\^&|||CHEM2^1|||||LIS||P|LIS2-A2|20250301093015', cp1258, 'O|1|S22||^^^GLU|R', 'R|1|^^^GLU|5.4|mmol/L||N||F', 'L|1|N']);
    await waitFor(() => n.store.listQuarantine().length === 1, 5000);
    expect(n.store.searchMessages({ deviceId: 'lab-1' })).toEqual([]);
    expect(n.store.listQuarantine()[0].errorCode).toBe('GW_ERR_CHARSET');
  });
});

