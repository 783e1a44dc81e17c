import { readFileSync, readdirSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { ACK, ENQ, EOT, NAK, encodeFrame } from './frame';
import { AstmLink, AstmSendError, type LinkEvent } from './link';
import { ManualClock } from './link-clock';
import type { LinkOptions } from './link-options';

const NAMES: Record<string, number> = { STX: 2, ETX: 3, EOT: 4, ENQ: 5, ACK: 6, LF: 10, CR: 13, NAK: 0x15, ETB: 0x17 };
const wire = (s: string): Buffer => Buffer.from(s.replace(/<([A-Z]{2,3})>/g, (_, n: string) => String.fromCharCode(NAMES[n])), 'latin1');
const notation = (b: Buffer): string => {
  const rev = Object.fromEntries(Object.entries(NAMES).map(([k, v]) => [v, k]));
  return [...b].map((x) => (rev[x] ? `<${rev[x]}>` : String.fromCharCode(x))).join('');
};
const fx = (f: string): Buffer => readFileSync(join(__dirname, 'fixtures', f));

function harness(options: Partial<LinkOptions> = {}, onMessage?: (r: Buffer[]) => Promise<void>) {
  const clock = new ManualClock();
  const written: Buffer[] = [];
  const messages: string[][] = [];
  const discarded: string[][] = [];
  const discards: Array<{ records: string[]; reason: string; rejectedFrame: Buffer | undefined }> = [];
  const events: LinkEvent[] = [];
  const link = new AstmLink(
    {
      write: (b) => written.push(b),
      onMessage: onMessage ?? (async (r) => void messages.push(r.map((x) => x.toString('latin1')))),
      onDiscard: (r, reason, rejectedFrame) => {
        discarded.push(r.map((x) => x.toString('latin1')));
        discards.push({ records: r.map((x) => x.toString('latin1')), reason, rejectedFrame });
      },
      onEvent: (e) => events.push(e),
    },
    options,
    clock,
  );
  const feed = async (b: Buffer | string): Promise<string> => {
    const from = written.length;
    link.onBytes(typeof b === 'string' ? wire(b) : b);
    await link.drain();
    return notation(Buffer.concat(written.slice(from)));
  };
  return { clock, written, messages, discarded, discards, events, link, feed, out: () => notation(Buffer.concat(written)) };
}

describe('receiver cases (drivers/astm/cases/*/case.json)', () => {
  const dir = join(__dirname, 'cases');
  for (const name of readdirSync(dir).sort()) {
    const c = JSON.parse(readFileSync(join(dir, name, 'case.json'), 'utf8'));
    it(`${name}: ${c.description}`, async () => {
      const h = harness(c.options ?? {});
      const fed: Buffer[] = []; // bytes fed at each step (a discard's rejected frame is compared with them)
      const feed = (i: number, b: Buffer): Promise<string> => {
        fed[i] = b;
        return h.feed(b);
      };
      for (const [i, s] of (c.steps as any[]).entries()) {
        let got: string | undefined;
        if (s.send !== undefined) got = await feed(i, wire(s.send));
        else if (s.fixture !== undefined) got = await feed(i, fx(s.fixture)); // exact bytes of fixtures/<path>
        else if (s.frame) {
          const [fn, text, end] = s.frame;
          let f = encodeFrame(fn, Buffer.from(text, 'latin1'), end !== 'ETB');
          if (s.corrupt === 'checksum') f[f.length - 3] = f[f.length - 3] === 0x30 ? 0x31 : 0x30;
          if (s.dropLf) f = f.subarray(0, f.length - 1);
          got = await feed(i, f);
        } else if (s.bigFrame) {
          got = await feed(i, encodeFrame(s.bigFrame[0], Buffer.alloc(s.bigFrame[1], 'x'), true));
        } else if (s.close) h.link.close();
        else if (s.advance !== undefined) h.clock.advance(s.advance);
        else if (s.busy !== undefined) h.link.setBusy(s.busy);
        else if (s.check) expect(h.link.linkState, `step ${i}`).toBe(s.check);
        await h.link.drain();
        if (s.expect !== undefined) expect(got, `step ${i}`).toBe(s.expect);
      }
      if (c.messages) expect(h.messages).toEqual(c.messages);
      if (c.messageCount !== undefined) expect(h.messages.length).toBe(c.messageCount);
      if (c.discarded !== undefined) expect(h.discarded.length).toBe(c.discarded);
      if (c.discards) {
        // each: the records handed to onDiscard, the exact reason, and the step whose bytes are the rejected frame (or none)
        expect(h.discards.map((d) => ({ records: d.records, reason: d.reason }))).toEqual((c.discards as any[]).map((d) => ({ records: d.records, reason: d.reason })));
        for (const [j, d] of (c.discards as any[]).entries()) {
          const want = d.rejectedFrameStep === undefined ? undefined : fed[d.rejectedFrameStep];
          if (d.rejectedFrameStep !== undefined) expect(want, `discard ${j}: step ${d.rejectedFrameStep} fed nothing`).toBeDefined();
          expect(h.discards[j].rejectedFrame && notation(h.discards[j].rejectedFrame!), `discard ${j} rejected frame`).toBe(want && notation(want));
        }
      }
      if (c.naks) expect(h.events.filter((e) => e.type === 'nak').map((e) => (e as { reason: string }).reason)).toEqual(c.naks);
      if (c.state) expect(h.link.linkState).toBe(c.state);
    });
  }
});

describe('the three .wire framings of sample_session', () => {
  const expected = fx('sample_session.astm').toString('latin1').split('\r\n').filter((l) => l);
  for (const [file, opts] of [
    ['sample_session.record.wire', {}],
    ['sample_session.record-etb.wire', {}],
    ['sample_session.message.wire', {}],
    ['sample_session.message.wire', { multipleRecordsPerFrame: true }], // deprecated option: accepted, no effect
  ] as const) {
    it(`${file} ${JSON.stringify(opts)} reassembles to the records of sample_session.astm`, async () => {
      const h = harness(opts);
      const reply = await h.feed(fx(file));
      expect(reply).not.toContain('<NAK>');
      expect(h.messages).toEqual([expected]);
      expect(h.link.linkState).toBe('neutral');
    });
    it(`${file} ${JSON.stringify(opts)} byte by byte gives the same`, async () => {
      const h = harness(opts);
      for (const b of fx(file)) h.link.onBytes(Buffer.from([b]));
      await h.link.drain();
      expect(h.messages).toEqual([expected]);
    });
  }
  it('message.wire (several records per frame) under the strict defaults: every frame ACKed, never NAKed for its layout (LIS01 §1.2)', async () => {
    const h = harness();
    const reply = await h.feed(fx('sample_session.message.wire'));
    expect(reply).toMatch(/^(<ACK>)+$/);
    expect(h.events.filter((e) => e.type === 'nak')).toEqual([]);
  });
});

describe('ack-after-commit', () => {
  const frames = ['H|\\^&\r', 'R|1|^^^GLU|5.4\r', 'L|1|N\r'].map((t, i) => encodeFrame(i + 1, Buffer.from(t), true));

  it('the ACK of the L frame is written only after the commit promise resolves', async () => {
    let release!: () => void;
    const commits: string[][] = [];
    const h = harness({}, (r) => {
      commits.push(r.map((x) => x.toString()));
      return new Promise<void>((res) => (release = res));
    });
    await h.feed('<ENQ>');
    await h.feed(frames[0]);
    await h.feed(frames[1]);
    const before = h.written.length;
    h.link.onBytes(frames[2]);
    await new Promise((r) => setImmediate(r));
    expect(commits).toHaveLength(1); // commit started ...
    expect(h.written.length).toBe(before); // ... but nothing written yet
    release();
    await h.link.drain();
    expect(h.written.slice(before)).toEqual([Buffer.from([ACK])]);
  });

  it('a rejected commit yields NAK; the retransmitted frame commits once, without duplicated records', async () => {
    let fail = true;
    const commits: string[][] = [];
    const h = harness({}, async (r) => {
      if (fail) throw new Error('disk full');
      commits.push(r.map((x) => x.toString()));
    });
    await h.feed('<ENQ>');
    await h.feed(frames[0]);
    await h.feed(frames[1]);
    expect(await h.feed(frames[2])).toBe('<NAK>');
    fail = false;
    expect(await h.feed(frames[2])).toBe('<ACK>');
    expect(await h.feed(frames[2])).toBe('<ACK>'); // lost ACK: repeated, not committed again
    await h.feed('<EOT>');
    expect(commits).toEqual([['H|\\^&', 'R|1|^^^GLU|5.4', 'L|1|N']]);
  });

  it('two messages in one frame: a failure after the first does not commit the first twice', async () => {
    let n = 0;
    const commits: string[] = [];
    const h = harness({ multipleRecordsPerFrame: true }, async (r) => {
      n++;
      if (n === 2) throw new Error('store error');
      commits.push(r[1].toString());
    });
    const f = encodeFrame(1, Buffer.from('H|\\^&\rR|1|^^^A|1\rL|1|N\rH|\\^&\rR|1|^^^B|2\rL|1|N\r'), true);
    await h.feed('<ENQ>');
    expect(await h.feed(f)).toBe('<NAK>');
    expect(await h.feed(f)).toBe('<ACK>');
    expect(commits).toEqual(['R|1|^^^A|1', 'R|1|^^^B|2']);
  });
});

describe('lenient modes with the astmio captures', () => {
  it('Mindray BS-240: whole session in one 340–2,500-byte frame', async () => {
    const h = harness({ oversizeSingleFrame: true });
    await h.feed(fx('astmio/bs240_logs.bin'));
    // some frames were damaged by the log conversion (checksum mismatch): those are NAKed, never crash
    const naks = h.events.filter((e) => e.type === 'nak');
    expect(naks.every((e) => (e as { reason: string }).reason === 'bad-checksum')).toBe(true);
    expect(naks.length).toBeLessThan(30);
    expect(h.messages.length).toBeGreaterThanOrEqual(120);
    expect(h.messages.length + naks.length).toBeGreaterThanOrEqual(145);
    for (const m of h.messages) {
      expect(m[0]).toMatch(/^H\|/);
      expect(m[m.length - 1]).toMatch(/^L\|/);
    }
  });
  it('Mindray BS-240 under the strict defaults: the same sessions as with oversizeSingleFrame (layout is never a NAK reason; only damaged frames are)', async () => {
    const lenient = harness({ oversizeSingleFrame: true });
    await lenient.feed(fx('astmio/bs240_logs.bin'));
    const h = harness();
    await h.feed(fx('astmio/bs240_logs.bin'));
    expect(h.messages.length).toBeGreaterThanOrEqual(120);
    expect(h.messages).toEqual(lenient.messages);
    expect(h.events.filter((e) => e.type === 'nak').every((e) => (e as { reason: string }).reason === 'bad-checksum')).toBe(true);
  });
  it('Snibe Maglumi: no FN, no checksum, stray ACK after ENQ', async () => {
    const h = harness({ noChecksum: true, multipleRecordsPerFrame: true, frameNumberStart: 'any' });
    await h.feed(fx('astmio/malglumi_logs.bin'));
    expect(h.messages.length).toBe(26);
    expect(h.messages[0].map((r) => r[0]).join('')).toBe('HPORRRL');
  });
  it('Beckman Access 2 (scrambled capture): bad frames NAKed, whole sessions kept, sessions the analyzer gave up on quarantined with their rejected frame, no crash', async () => {
    const h = harness();
    const reply = await h.feed(fx('astmio/access2_logs.bin'));
    expect(reply).toContain('<NAK>');
    expect(reply).toContain('<ACK>');
    expect(h.messages.length).toBeGreaterThanOrEqual(2);
    for (const m of h.messages) expect([m[0][0], m[m.length - 1][0]]).toEqual(['H', 'L']); // no session committed without its lost frame
    expect(h.discards.length).toBeGreaterThanOrEqual(5);
    for (const d of h.discards) {
      expect(d.rejectedFrame?.[0]).toBe(0x02); // the rejected frame's bytes, from STX
      expect(d.reason).toMatch(/^(analyzer ended the transfer|sender restarted with ENQ) after \d+ NAKs? of (frame \d|a frame) \(/);
    }
  });
});

describe('rejected frame kept until the transfer ends (LIS01 §1.3.2, §1.3.4)', () => {
  const H = 'H|\\^&|||T';
  it('6 NAKs then EOT: onDiscard gets H, P, O and the exact bad frame; onMessage never called; a discarded event', async () => {
    const h = harness();
    await h.feed('<ENQ>');
    for (const [i, t] of [H, 'P|1|X', 'O|1|S1||^^^GLU'].entries()) expect(await h.feed(encodeFrame(i + 1, Buffer.from(t + '\r'), true))).toBe('<ACK>');
    const bad = encodeFrame(4, Buffer.from('R|1|^^^GLU|5.4\r'), true);
    bad[bad.length - 4] ^= 0x01; // damage C1
    for (let i = 0; i < 6; i++) expect(await h.feed(bad)).toBe('<NAK>');
    expect(await h.feed('<EOT>')).toBe('');
    expect(h.messages).toEqual([]);
    expect(h.discards).toHaveLength(1);
    expect(h.discards[0].records).toEqual([H, 'P|1|X', 'O|1|S1||^^^GLU']);
    expect(h.discards[0].rejectedFrame).toEqual(bad);
    expect(h.discards[0].reason).toBe('analyzer ended the transfer after 6 NAKs of frame 4 (bad checksum); 3 records received before it');
    expect(h.events).toContainEqual({ type: 'discarded', reason: h.discards[0].reason, records: 3, rejectedFrameBytes: bad.length });
    expect(h.link.linkState).toBe('neutral');
  });

  it('a retransmission of the same frame replaces it; a sender that moves on to another frame after its NAKs keeps the earlier one too (nothing refused is lost); the NAK count covers all attempts', async () => {
    const h = harness();
    await h.feed('<ENQ>');
    await h.feed(encodeFrame(1, Buffer.from(H + '\r'), true));
    const bad1 = encodeFrame(2, Buffer.from('P|1|X\r'), true);
    bad1[bad1.length - 3] ^= 0x01;
    await h.feed(bad1);
    await h.feed(bad1); // the same frame again: replaces, not kept twice
    await h.feed(encodeFrame(3, Buffer.from('P|1|X\r'), true)); // wrong FN: the sender moved on without success
    await h.feed('<EOT>');
    expect(h.discards.map((d) => d.reason)).toEqual(['analyzer ended the transfer after 3 NAKs of frame 3 (wrong frame number) and 1 earlier rejected frame; 1 record received before it']);
    expect(h.discards[0].rejectedFrame).toEqual(Buffer.concat([bad1, encodeFrame(3, Buffer.from('P|1|X\r'), true)]));
  });

  it('an over-size frame is kept bounded (its first maxFrameBytes bytes) and goes to onDiscard when the sender gives up', async () => {
    const h = harness({ maxFrameBytes: 1000 });
    await h.feed('<ENQ>');
    await h.feed(encodeFrame(1, Buffer.from(H + '\r'), true));
    const big = encodeFrame(2, Buffer.alloc(5000, 'x'), true);
    expect(await h.feed(big)).toBe('<NAK>');
    await h.feed('<EOT>');
    expect(h.discards).toHaveLength(1);
    expect(h.discards[0].reason).toBe('analyzer ended the transfer after 1 NAK of frame 2 (over-size); 1 record received before it');
    expect(h.discards[0].rejectedFrame!.length).toBeLessThanOrEqual(1000 + 8);
    expect(h.discards[0].rejectedFrame).toEqual(big.subarray(0, h.discards[0].rejectedFrame!.length));
  });

  it('a frame NAKed because the store failed, then the sender gives up: its bytes go to onDiscard; the partial is not committed', async () => {
    let calls = 0;
    const h = harness({}, async () => {
      calls++;
      throw new Error('disk full');
    });
    await h.feed('<ENQ>');
    await h.feed(encodeFrame(1, Buffer.from(H + '\r'), true));
    await h.feed(encodeFrame(2, Buffer.from('R|1|^^^GLU|5.4\r'), true));
    const last = encodeFrame(3, Buffer.from('L|1|N\r'), true);
    for (let i = 0; i < 6; i++) expect(await h.feed(last)).toBe('<NAK>');
    await h.feed('<EOT>');
    expect(calls).toBe(6); // six commit attempts of H,R,L; none of H,R alone after EOT
    expect(h.discards).toHaveLength(1);
    expect(h.discards[0].records).toEqual([H, 'R|1|^^^GLU|5.4']);
    expect(h.discards[0].rejectedFrame).toEqual(last);
    expect(h.discards[0].reason).toBe('analyzer ended the transfer after 6 NAKs of frame 3 (store commit failed); 2 records received before it');
  });

  it('without a rejected frame a discard passes no frame (receive timeout of a partial message)', async () => {
    const h = harness();
    await h.feed('<ENQ>');
    await h.feed(encodeFrame(1, Buffer.from(H + '\r'), true));
    h.clock.advance(30_000);
    expect(h.discards).toEqual([{ records: [H], reason: 'receive timeout', rejectedFrame: undefined }]);
  });
});

describe('sender', () => {
  const recs = ['H|\\^&|||GW', 'P|1|X', 'L|1|F'];

  it('ENQ, frames one record each with FN from 1, EOT', async () => {
    const h = harness();
    const p = h.link.send(recs);
    expect(h.out()).toBe('<ENQ>');
    for (let i = 0; i < 4; i++) await h.feed('<ACK>');
    await p;
    const frames = h.written.filter((b) => b[0] === 2);
    expect(frames.map((f) => String.fromCharCode(f[1]))).toEqual(['1', '2', '3']);
    expect(h.written[h.written.length - 1]).toEqual(Buffer.from([EOT]));
  });

  it('ETB-splits long records at 240 text bytes', async () => {
    const h = harness();
    const p = h.link.send(['H|\\^&', 'R|1|^^^X|' + 'y'.repeat(600), 'L|1|F']);
    for (let i = 0; i < 6; i++) await h.feed('<ACK>');
    await p;
    const frames = h.written.filter((b) => b[0] === 2);
    expect(frames.length).toBe(5);
    expect(Math.max(...frames.map((f) => f.length))).toBe(247);
  });

  it('busy NAK to ENQ: re-bid after ≥10 s; gives up after maxEnqAttempts', async () => {
    const h = harness({ maxEnqAttempts: 2 });
    const p = h.link.send(recs);
    const caught = p.catch((e) => e);
    await h.feed('<NAK>');
    h.clock.advance(9_999);
    expect(h.written.filter((b) => b[0] === ENQ)).toHaveLength(1);
    h.clock.advance(1);
    expect(h.written.filter((b) => b[0] === ENQ)).toHaveLength(2);
    await h.feed('<NAK>');
    const e = await caught;
    expect(e).toBeInstanceOf(AstmSendError);
    expect((e as AstmSendError).reason).toBe('busy');
  });

  it('no reply to ENQ for 15 s → EOT, neutral', async () => {
    const h = harness();
    const caught = h.link.send(recs).catch((e) => e);
    h.clock.advance(15_000);
    expect(((await caught) as AstmSendError).reason).toBe('no-reply');
    expect(h.out()).toBe('<ENQ><EOT>');
    expect(h.link.linkState).toBe('neutral');
  });

  it('NAKed frame is resent with the same FN; 6 NAKs → EOT abort', async () => {
    const h = harness();
    const caught = h.link.send(recs).catch((e) => e);
    await h.feed('<ACK>');
    for (let i = 0; i < 6; i++) await h.feed('<NAK>');
    const frames = h.written.filter((b) => b[0] === 2);
    expect(frames).toHaveLength(6);
    expect(new Set(frames.map((f) => f.toString('latin1'))).size).toBe(1);
    expect(((await caught) as AstmSendError).reason).toBe('nak-limit');
    expect(h.written[h.written.length - 1]).toEqual(Buffer.from([EOT]));
  });

  it('no reply to a frame for 15 s → EOT, no retransmission', async () => {
    const h = harness();
    const caught = h.link.send(recs).catch((e) => e);
    await h.feed('<ACK>');
    h.clock.advance(15_000);
    expect(((await caught) as AstmSendError).reason).toBe('no-reply');
    expect(h.written.filter((b) => b[0] === 2)).toHaveLength(1);
  });

  it('receiver interrupt: EOT, no ENQ for 15 s, then the whole message again', async () => {
    const h = harness();
    const p = h.link.send(recs);
    await h.feed('<ACK>');
    await h.feed('<EOT>'); // interrupt instead of ACK
    expect(h.written[h.written.length - 1]).toEqual(Buffer.from([EOT]));
    const enqs = (): number => h.written.filter((b) => b.length === 1 && b[0] === ENQ).length;
    h.clock.advance(14_999);
    expect(enqs()).toBe(1);
    h.clock.advance(1);
    expect(enqs()).toBe(2);
    for (let i = 0; i < 4; i++) await h.feed('<ACK>');
    await p;
    expect(h.written.filter((b) => b[0] === 2).map((f) => String.fromCharCode(f[1]))).toEqual(['1', '1', '2', '3']);
  });

  it('receiver interrupt: the hold ends when the instrument has sent its own message', async () => {
    const h = harness();
    const p = h.link.send(recs);
    await h.feed('<ACK>');
    await h.feed('<EOT>');
    await h.feed('<ENQ>');
    await h.feed(encodeFrame(1, Buffer.from('H|\\^&\r'), true));
    await h.feed(encodeFrame(2, Buffer.from('L|1|N\r'), true));
    const before = h.written.length;
    await h.feed('<EOT>');
    expect(h.written.slice(before)).toEqual([Buffer.from([ENQ])]);
    for (let i = 0; i < 4; i++) await h.feed('<ACK>');
    await p;
    expect(h.messages).toHaveLength(1);
  });

  it('contention: the instrument wins; the gateway ACKs its ENQ and waits ≥20 s before bidding again', async () => {
    const h = harness();
    const p = h.link.send(recs);
    expect(await h.feed('<ENQ>')).toBe('<ACK>'); // both sent ENQ: we yield
    expect(h.events.some((e) => e.type === 'contention')).toBe(true);
    await h.feed(encodeFrame(1, Buffer.from('H|\\^&\r'), true));
    await h.feed(encodeFrame(2, Buffer.from('L|1|N\r'), true));
    expect(await h.feed('<EOT>')).toBe('');
    h.clock.advance(19_999);
    expect(h.written.filter((b) => b.length === 1 && b[0] === ENQ)).toHaveLength(1);
    h.clock.advance(1);
    expect(h.written.filter((b) => b.length === 1 && b[0] === ENQ)).toHaveLength(2);
    for (let i = 0; i < 4; i++) await h.feed('<ACK>');
    await p;
    expect(h.messages).toHaveLength(1);
  });

  it('instrument role: on contention it keeps its bid and re-sends ENQ after ≥1 s', async () => {
    const h = harness({ role: 'instrument' });
    void h.link.send(recs).catch(() => undefined);
    expect(await h.feed('<ENQ>')).toBe('');
    h.clock.advance(1_000);
    expect(h.out()).toBe('<ENQ><ENQ>');
    h.link.close();
  });

  it('a peer ENQ during busy-wait is accepted and our message is sent afterwards', async () => {
    const h = harness();
    const p = h.link.send(recs);
    await h.feed('<NAK>');
    expect(await h.feed('<ENQ>')).toBe('<ACK>');
    await h.feed(encodeFrame(1, Buffer.from('H|\\^&\r'), true));
    await h.feed(encodeFrame(2, Buffer.from('L|1|N\r'), true));
    expect(await h.feed('<EOT>')).toBe('<ENQ>');
    for (let i = 0; i < 4; i++) await h.feed('<ACK>');
    await p;
  });

  it('close rejects queued sends', async () => {
    const h = harness();
    const caught = h.link.send(recs).catch((e) => e);
    h.link.close();
    expect(((await caught) as AstmSendError).reason).toBe('closed');
    expect(NAK).toBe(0x15);
  });
});

describe('raw records (no ENQ/STX framing)', () => {
  it('records separated by CR, message ends with L', async () => {
    const h = harness({ rawRecords: true });
    await h.feed('H|\\^&|||RAW\rP|1\rR|1|^^^GLU|5.1\rL|1|N\rH|\\^&|||RAW\r');
    expect(h.messages).toEqual([['H|\\^&|||RAW', 'P|1', 'R|1|^^^GLU|5.1', 'L|1|N']]);
    expect(h.written).toHaveLength(0);
  });
});
