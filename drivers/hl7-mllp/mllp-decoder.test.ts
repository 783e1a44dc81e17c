import { describe, expect, it } from 'vitest';
import { MllpDecoder, encodeMllp, type MllpEvent } from './mllp-decoder';

const VT = '\x0b';
const FS = '\x1c';
const b = (s: string) => Buffer.from(s, 'latin1');
const frames = (evs: MllpEvent[]) => evs.filter((e) => e.type === 'frame').map((e) => (e as { payload: Buffer }).payload.toString('latin1'));

describe('MllpDecoder', () => {
  it('decodes one frame and encodeMllp round-trips', () => {
    const d = new MllpDecoder();
    expect(frames(d.push(encodeMllp(b('MSH|x\rPID|1'))))).toEqual(['MSH|x\rPID|1']);
    expect(encodeMllp(b('A'))).toEqual(Buffer.from([0x0b, 0x41, 0x1c, 0x0d]));
  });

  it('handles partial reads (one byte at a time)', () => {
    const d = new MllpDecoder();
    const all: MllpEvent[] = [];
    for (const byte of encodeMllp(b('MSH|^~\\&|A\rOBX|1'))) all.push(...d.push(Buffer.from([byte])));
    expect(frames(all)).toEqual(['MSH|^~\\&|A\rOBX|1']);
    expect(all.filter((e) => e.type !== 'frame')).toEqual([]);
  });

  it('handles several frames in one read', () => {
    const d = new MllpDecoder();
    const evs = d.push(Buffer.concat([encodeMllp(b('one')), encodeMllp(b('two')), encodeMllp(b('three'))]));
    expect(frames(evs)).toEqual(['one', 'two', 'three']);
    expect(evs.length).toBe(3);
  });

  it('tolerates FS without trailing CR, and consumes the CR when it comes in the next chunk', () => {
    const d = new MllpDecoder();
    expect(frames(d.push(b(`${VT}a${FS}${VT}b${FS}`)))).toEqual(['a', 'b']);
    const evs = d.push(b(`\r${VT}c${FS}\r`));
    expect(frames(evs)).toEqual(['c']);
    expect(evs.some((e) => e.type === 'junk')).toBe(false);
    expect([...d.flush(), ...d.end()]).toEqual([]);
  });

  it('keeps CR, LF and CRLF segment ends inside the payload untouched', () => {
    const d = new MllpDecoder();
    expect(frames(d.push(b(`${VT}MSH|a\rPID|1\nOBX|1\r\nOBX|2${FS}\r`)))).toEqual(['MSH|a\rPID|1\nOBX|1\r\nOBX|2']);
  });

  it('oversize: one event, discards up to FS, buffer never exceeds maxBytes, next frame ok', () => {
    const d = new MllpDecoder({ maxBytes: 100 });
    const evs: MllpEvent[] = [];
    evs.push(...d.push(b(VT)));
    for (let i = 0; i < 50; i++) {
      evs.push(...d.push(Buffer.alloc(37, 0x41)));
      expect(d.bufferedBytes).toBeLessThanOrEqual(100);
    }
    evs.push(...d.push(b(`${FS}\r${VT}next${FS}\r`)));
    expect(evs.filter((e) => e.type === 'oversize').length).toBe(1);
    expect(frames(evs)).toEqual(['next']);
    expect(d.bufferedBytes).toBe(0);
    // count only by default: no bytes kept
    expect(evs.find((e) => e.type === 'oversize')).toEqual({ type: 'oversize', bytes: 111 }); // 3 chunks of 37 > 100
  });

  it('a frame of exactly maxBytes is accepted', () => {
    const d = new MllpDecoder({ maxBytes: 10 });
    expect(frames(d.push(encodeMllp(Buffer.alloc(10, 0x42))))).toEqual(['B'.repeat(10)]);
    expect(d.push(encodeMllp(Buffer.alloc(11, 0x42)))[0]).toMatchObject({ type: 'oversize' });
  });

  it('fuzz: random chunking gives the same frames, random bytes never throw', () => {
    let seed = 12345;
    const rnd = (n: number) => {
      seed = (seed * 1103515245 + 12345) & 0x7fffffff;
      return seed % n;
    };
    const msgs = Array.from({ length: 40 }, (_, i) => `MSH|^~\\&|X|${i}\r${'OBX|1|NM|x||1\r'.repeat(rnd(20))}`);
    const stream = Buffer.concat(msgs.map((m) => encodeMllp(b(m))));
    for (let round = 0; round < 50; round++) {
      const d = new MllpDecoder({ maxBytes: 4096 });
      const got: string[] = [];
      let i = 0;
      while (i < stream.length) {
        const n = 1 + rnd(300);
        got.push(...frames(d.push(stream.subarray(i, i + n))));
        i += n;
      }
      expect(got).toEqual(msgs);
    }
    for (let round = 0; round < 200; round++) {
      const d = new MllpDecoder({ maxBytes: 64 });
      const junk = Buffer.alloc(1 + rnd(2000));
      for (let k = 0; k < junk.length; k++) junk[k] = [0x0b, 0x1c, 0x0d, 0x41, rnd(256)][rnd(5)];
      expect(() => d.push(junk)).not.toThrow();
      expect(d.bufferedBytes).toBeLessThanOrEqual(64);
    }
  });

  describe('refused bytes (issue 8: nothing discarded unseen; HL7 v2.5.1 Appendix C.2.1)', () => {
    const KEEP = 64 * 1024;
    const junk = (evs: MllpEvent[]) => evs.filter((e) => e.type === 'junk').map((e) => ({ ...e, data: (e as { data?: Buffer }).data?.toString('latin1') }));
    const ERBA_TAIL = '||0.06|10*3/uL|0.00-0.10|~N|||F\r';

    // [name, chunks pushed, then flush()/end(), expected frames, expected junk events (data verbatim)]
    const cases: Array<[string, string[], 'flush' | 'end' | 'none', string[], Array<{ reason: string; bytes: number; data: string }>]> = [
      ['garbage before the first VT', [`GARBAGE${VT}ok${FS}\r`], 'none', ['ok'], [{ reason: 'before-vt', bytes: 7, data: 'GARBAGE' }]],
      ['garbage before the first VT, one byte per chunk', [...`GET / HTTP/1.1\r\n${VT}ok${FS}\r`], 'none', ['ok'], [{ reason: 'before-vt', bytes: 16, data: 'GET / HTTP/1.1\r\n' }]],
      ['a logger writing a message tail after FS CR', [`${VT}one${FS}\r${ERBA_TAIL}`, `more junk${VT}two${FS}\r`], 'none', ['one', 'two'], [{ reason: 'between-blocks', bytes: ERBA_TAIL.length + 9, data: `${ERBA_TAIL}more junk` }]],
      ['stray bytes between blocks, the block ending without CR', [`${VT}one${FS}xx${VT}two${FS}\r`], 'none', ['one', 'two'], [{ reason: 'between-blocks', bytes: 2, data: 'xx' }]],
      ['a run inside whitespace is kept verbatim', [`${VT}one${FS}\r\r\n  tail \r\n${VT}two${FS}\r`], 'none', ['one', 'two'], [{ reason: 'between-blocks', bytes: 11, data: '\r\n  tail \r\n' }]],
      ['whitespace only between blocks is not refused', [`${VT}one${FS}\r\r\n \n${VT}two${FS}\r\n`], 'end', ['one', 'two'], []],
      ['a trailing run ends only with flush()', [`${VT}one${FS}\rtail`, 'er'], 'flush', ['one'], [{ reason: 'between-blocks', bytes: 6, data: 'tailer' }]],
      ['sender restart: VT, half a message, VT, the full message (Appendix C.2.1)', [`${VT}MSH|^~\\&|A|B\rPID|1|`, `${VT}MSH|^~\\&|A|B\rPID|1||X${FS}\r`], 'none', ['MSH|^~\\&|A|B\rPID|1||X'], [{ reason: 'restart', bytes: 19, data: 'MSH|^~\\&|A|B\rPID|1|' }]],
      ['VT VT: an empty abandoned block is nothing', [`${VT}${VT}a${FS}\r`], 'none', ['a'], []],
      ['connection closed inside a block: truncated', [`${VT}one${FS}\r${VT}MSH|half`], 'end', ['one'], [{ reason: 'truncated', bytes: 8, data: 'MSH|half' }]],
      ['connection closed with a pending run', [`junk before any block`], 'end', [], [{ reason: 'before-vt', bytes: 21, data: 'junk before any block' }]],
    ];
    it.each(cases)('%s', (_name, chunks, finish, wantFrames, wantJunk) => {
      const d = new MllpDecoder({ keepRefusedBytes: KEEP });
      const evs: MllpEvent[] = [];
      for (const c of chunks) evs.push(...d.push(b(c)));
      if (finish === 'flush') evs.push(...d.flush());
      if (finish === 'end') evs.push(...d.end());
      expect(frames(evs)).toEqual(wantFrames);
      expect(junk(evs)).toEqual(wantJunk.map((j) => ({ type: 'junk', ...j })));
      expect(d.pendingRefusedBytes).toBe(0);
    });

    it('the run before a frame is reported before that frame, in stream order', () => {
      const d = new MllpDecoder({ keepRefusedBytes: KEEP });
      const evs = d.push(b(`${VT}one${FS}\rXYZ${VT}two${FS}\r`));
      expect(evs.map((e) => e.type)).toEqual(['frame', 'junk', 'frame']);
    });

    it('keepRefusedBytes 0 (default): counted, no bytes kept', () => {
      const d = new MllpDecoder();
      expect(d.push(b(`GARBAGE${VT}ok${FS}\rxx`))).toEqual([{ type: 'junk', bytes: 7, reason: 'before-vt' }, { type: 'frame', payload: b('ok') }]);
      expect(d.pendingRefusedBytes).toBe(2);
      expect(d.flush()).toEqual([{ type: 'junk', bytes: 2, reason: 'between-blocks' }]);
      expect(d.push(b(`${VT}abandoned${VT}x${FS}\r`))[0]).toEqual({ type: 'junk', bytes: 9, reason: 'restart' });
    });

    it('a 2 MiB junk flood: everything counted, at most keepRefusedBytes kept, the next frame decodes', () => {
      const d = new MllpDecoder({ keepRefusedBytes: 1000 });
      const chunk = Buffer.alloc(64 * 1024);
      let x = 7;
      const first = Buffer.alloc(1000);
      for (let k = 0; k < 32; k++) {
        for (let j = 0; j < chunk.length; j++) {
          x = (x * 1103515245 + 12345) & 0x7fffffff;
          const v = 0x21 + (x % 90); // printable, never VT/FS/CR
          chunk[j] = v;
          if (k === 0 && j < 1000) first[j] = v;
        }
        expect(d.push(chunk)).toEqual([]);
        expect(d.pendingRefusedBytes).toBe((k + 1) * chunk.length);
      }
      const evs = d.push(b(`${VT}ok${FS}\r`));
      expect(evs).toHaveLength(2);
      const j = evs[0] as Extract<MllpEvent, { type: 'junk' }>;
      expect(j).toMatchObject({ type: 'junk', reason: 'before-vt', bytes: 2 * 1024 * 1024 });
      expect(j.data?.length).toBe(1000);
      expect(j.data?.equals(first)).toBe(true);
      expect(frames(evs)).toEqual(['ok']);
    });

    it('a restart of a big partial frame keeps only its head, counts it all', () => {
      const d = new MllpDecoder({ keepRefusedBytes: 10 });
      const evs = d.push(Buffer.concat([b(VT), Buffer.from('0123456789ABCDEF'.repeat(1000)), b(`${VT}ok${FS}\r`)]));
      expect(junk(evs)).toEqual([{ type: 'junk', reason: 'restart', bytes: 16000, data: '0123456789' }]);
      expect(frames(evs)).toEqual(['ok']);
    });

    it('oversize: the first keepRefusedBytes of the frame (buffered part and the overflowing chunk)', () => {
      const d = new MllpDecoder({ maxBytes: 100, keepRefusedBytes: 64 });
      const evs: MllpEvent[] = [];
      evs.push(...d.push(b(`${VT}${'a'.repeat(40)}`)));
      evs.push(...d.push(b(`${'b'.repeat(70)}${FS}\r${VT}next${FS}\r`)));
      expect(evs.map((e) => e.type)).toEqual(['oversize', 'frame']);
      const o = evs[0] as Extract<MllpEvent, { type: 'oversize' }>;
      expect(o.bytes).toBe(110);
      expect(o.data?.toString('latin1')).toBe('a'.repeat(40) + 'b'.repeat(24));
      // keep above maxBytes: the whole refused part is kept
      const d2 = new MllpDecoder({ maxBytes: 5, keepRefusedBytes: 64 });
      expect(d2.push(b(`${VT}abcdefgh${FS}\r`))).toEqual([{ type: 'oversize', bytes: 8, data: b('abcdefgh') }]);
    });

    it('fuzz: with random chunking the refused runs are the same as in one push', () => {
      let seed = 99;
      const rnd = (n: number) => {
        seed = (seed * 1103515245 + 12345) & 0x7fffffff;
        return seed % n;
      };
      const parts: Buffer[] = [];
      for (let k = 0; k < 60; k++) {
        const r = rnd(5);
        if (r === 0) parts.push(b(`junk${k}|x\r`));
        else if (r === 1) parts.push(b(`${VT}half${k}`));
        else if (r === 2) parts.push(b('\r\n'));
        else parts.push(encodeMllp(b(`MSH|${k}`)));
      }
      const stream = Buffer.concat(parts);
      const whole = new MllpDecoder({ keepRefusedBytes: 16 });
      const want = [...whole.push(stream), ...whole.end()];
      expect(want.some((e) => e.type === 'junk')).toBe(true);
      for (let round = 0; round < 30; round++) {
        const d = new MllpDecoder({ keepRefusedBytes: 16 });
        const got: MllpEvent[] = [];
        for (let i = 0; i < stream.length; ) {
          const n = 1 + rnd(40);
          got.push(...d.push(stream.subarray(i, i + n)));
          i += n;
        }
        got.push(...d.end());
        expect(got).toEqual(want);
      }
    });
  });
});
