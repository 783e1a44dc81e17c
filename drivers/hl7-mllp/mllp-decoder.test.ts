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
  });

  it('keeps CR, LF and CRLF segment ends inside the payload untouched', () => {
    const d = new MllpDecoder();
    expect(frames(d.push(b(`${VT}MSH|a\rPID|1\nOBX|1\r\nOBX|2${FS}\r`)))).toEqual(['MSH|a\rPID|1\nOBX|1\r\nOBX|2']);
  });

  it('reports garbage before VT and between blocks as junk, discarding it', () => {
    const d = new MllpDecoder();
    const evs = d.push(b(`GARBAGE${VT}ok${FS}\rxx`));
    expect(evs[0]).toEqual({ type: 'junk', bytes: 7 });
    expect(frames(evs)).toEqual(['ok']);
    expect(evs[2]).toEqual({ type: 'junk', bytes: 2 });
    // whitespace between blocks is not junk
    expect(d.push(b(`\r\n${VT}z${FS}\r`))).toEqual([{ type: 'frame', payload: b('z') }]);
  });

  it('restarts on a VT inside a frame (the partial frame is junk)', () => {
    const d = new MllpDecoder();
    const evs = d.push(b(`${VT}partial${VT}whole${FS}\r`));
    expect(evs).toEqual([{ type: 'junk', bytes: 7 }, { type: 'frame', payload: b('whole') }]);
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
});
