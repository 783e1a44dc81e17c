import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { CR, ETB, ETX, LF, STX, checksum, encodeFrame, encodeFrames, parseFrame } from './frame';

const fx = (f: string): Buffer => readFileSync(join(__dirname, 'fixtures', f));
/** `<STX>1H|…<CR><ETX>96<CR><LF>` notation of protocols.md → bytes. */
export function wire(s: string): Buffer {
  const names: Record<string, number> = { STX: 2, ETX: 3, EOT: 4, ENQ: 5, ACK: 6, LF: 10, CR: 13, NAK: 0x15, ETB: 0x17 };
  return Buffer.from(s.replace(/<([A-Z]{2,3})>/g, (_, n: string) => String.fromCharCode(names[n])), 'latin1');
}

describe('checksum (protocols.md §1.2, §2.3)', () => {
  it('matches the verified examples', () => {
    const body = (s: string): Buffer => wire(s);
    expect(checksum(body('1H|\\^&|||Mini LIS||||||||LIS2-A|20210309142633<CR><ETX>'))).toBe('96');
    expect(checksum(body('1H|\\^&|||    XN-550^00-24^22723^^^^BD634545||||||||E1394-97<CR><ETX>'))).toBe('C1');
  });

  it('every composed frame of §2.3 A, B and C parses with its checksum', () => {
    const frames = [
      '<STX>1H|\\^&|||HEMA01^XN-1000^00-21|||||LIS||P|LIS2-A2|20250301093015<CR><ETX>22<CR><LF>',
      '<STX>2P|1|BN0012345||079085001234|NGUYEN^VAN AN||19850412|M<CR><ETX>AC<CR><LF>',
      '<STX>3O|1|2503010042|^12^3|^^^WBC\\^^^RBC\\^^^HGB\\^^^HCT\\^^^PLT|R|20250301081000|20250301080500|||||||20250301084000|WB|||||||20250301093010|||F<CR><ETX>7B<CR><LF>',
      '<STX>4R|1|^^^WBC|7.85|10*3/uL|4.00 to 10.00|N||F||TECH01|20250301092900|20250301092950|XN1000-1<CR><ETX>C2<CR><LF>',
      '<STX>0R|5|^^^PLT|512|10*3/uL|150 to 400|H||F||TECH01|20250301092900|20250301092950|XN1000-1<CR><ETX>0F<CR><LF>',
      '<STX>1C|1|I|Platelet clumps?|I<CR><ETX>65<CR><LF>',
      '<STX>2L|1|N<CR><ETX>05<CR><LF>',
      '<STX>1H|\\^&|||CHEM01^c311^1|||||LIS||P|1|20250301111500<CR><ETX>36<CR><LF>',
      '<STX>4R|1|^^^717/|9.85|mmol/l|3.9 to 6.4|H||F||SYSTEM||20250301111200|c311-1<CR><ETX>EF<CR><LF>',
      '<STX>2Q|1|^2503010057||ALL||||||||O<CR><ETX>11<CR><LF>',
      '<STX>3O|1|2503010057||^^^717/\\^^^690/\\^^^685/|R|20250301094500|20250301094000||||N||||SER||||||||||Q<CR><ETX>9E<CR><LF>',
      '<STX>4L|1|F<CR><ETX>FF<CR><LF>',
      '<STX>2L|1|I<CR><ETX>00<CR><LF>',
    ];
    for (const f of frames) {
      const p = parseFrame(wire(f));
      expect(p, f).toMatchObject({ ok: true, isLast: true });
      // and we encode the identical bytes
      if (p.ok) expect(encodeFrame(p.fn!, p.text, true).equals(wire(f))).toBe(true);
    }
  });

  it('sums encoded bytes unsigned (UTF-8)', () => {
    const text = Buffer.from('P|1||||Nguyễn\r', 'utf8');
    const f = encodeFrame(2, text, true);
    let sum = 0;
    for (let i = 1; i < f.length - 4; i++) sum += f[i];
    expect(f.subarray(f.length - 4, f.length - 2).toString()).toBe((sum % 256).toString(16).toUpperCase().padStart(2, '0'));
    expect(parseFrame(f)).toMatchObject({ ok: true, fn: 2 });
  });

  it('accepts lowercase hex on input', () => {
    expect(parseFrame(wire('<STX>1C|1|I|Platelet clumps?|I<CR><ETX>65<CR><LF>'))).toMatchObject({ ok: true });
    const f = wire('<STX>2L|1|N<CR><ETX>05<CR><LF>');
    const t = wire('<STX>1H|\\^&|||CHEM01^c311^1|||||LIS||P|1|20250301111500<CR><ETX>36<CR><LF>');
    expect(parseFrame(f).ok).toBe(true);
    const g = encodeFrame(3, Buffer.from('R|1|^^^X|1\r'), true);
    const lower = Buffer.from(g.toString('latin1').replace(/([0-9A-F]{2})\r\n$/, (m) => m.toLowerCase()), 'latin1');
    expect(parseFrame(lower).ok).toBe(true);
    expect(parseFrame(t).ok).toBe(true);
  });
});

describe('encodeFrames', () => {
  it('a 301-byte record becomes 240 + ETB then 61 + ETX', () => {
    const rec = Buffer.alloc(301, 'A');
    const { frames, nextFn } = encodeFrames(rec, 1);
    expect(frames).toHaveLength(2);
    expect(frames[0].length).toBe(247);
    expect(frames[0][242]).toBe(ETB);
    expect(frames[1][2 + 61]).toBe(ETX);
    expect(frames.map((f) => f[1] - 0x30)).toEqual([1, 2]);
    expect(nextFn).toBe(3);
  });

  it('FN wraps modulo 8: 7 → 0', () => {
    const { frames } = encodeFrames(Buffer.alloc(700, 'B'), 6);
    expect(frames.map((f) => String.fromCharCode(f[1]))).toEqual(['6', '7', '0']);
  });

  it('splits the long R record of long_record_session.astm with ETB frames and reassembles it', () => {
    const lines = fx('long_record_session.astm').toString('latin1').split(/\r\n/).filter((l) => l);
    const r = lines.find((l) => l.startsWith('R|'))!;
    expect(r.length).toBeGreaterThan(480); // three frames: 240 + 240 + rest
    const { frames } = encodeFrames(Buffer.from(r + '\r', 'latin1'), 4);
    expect(frames.length).toBe(Math.ceil((r.length + 1) / 240));
    const parsed = frames.map((f) => parseFrame(f));
    expect(parsed.every((p) => p.ok)).toBe(true);
    expect(parsed.map((p) => (p.ok ? p.isLast : null))).toEqual(frames.map((_, i) => i === frames.length - 1));
    const text = Buffer.concat(parsed.map((p) => (p.ok ? p.text : Buffer.alloc(0)))).toString('latin1');
    expect(text).toBe(r + '\r');
    for (const f of frames) expect(f.length).toBeLessThanOrEqual(247);
  });
});

describe('parseFrame NAK reasons (LIS01 §1.3.4)', () => {
  const good = encodeFrame(1, Buffer.from('H|\\^&\r'), true);
  it('bad checksum', () => {
    const b = Buffer.from(good);
    b[b.length - 3] ^= 1;
    expect(parseFrame(b)).toMatchObject({ ok: false, reason: 'bad-checksum' });
    const nonHex = Buffer.from(good);
    nonHex[nonHex.length - 4] = 0x5a; // 'Z'
    expect(parseFrame(nonHex)).toMatchObject({ ok: false, reason: 'bad-checksum' });
  });
  it('restricted character in text', () => {
    for (const c of [0x01, 0x05, 0x06, 0x10, 0x11, 0x14, 0x15, 0x16, LF]) {
      expect(parseFrame(encodeFrame(1, Buffer.from([0x48, c, CR]), true)), `byte ${c}`).toMatchObject({ ok: false, reason: 'restricted-char' });
    }
  });
  it('bad trailer (missing CR/LF)', () => {
    expect(parseFrame(good.subarray(0, good.length - 1))).toMatchObject({ ok: false, reason: 'bad-trailer' });
    expect(parseFrame(good.subarray(0, good.length - 1), { missingLfTolerated: true })).toMatchObject({ ok: true });
    const b = Buffer.from(good);
    b[b.length - 2] = 0x20;
    expect(parseFrame(b)).toMatchObject({ ok: false, reason: 'bad-trailer' });
    expect(parseFrame(Buffer.from([STX, 0x31, 0x48]))).toMatchObject({ ok: false, reason: 'bad-trailer' });
  });
  it('over 64,000 bytes', () => {
    const big = encodeFrame(1, Buffer.alloc(64_000, 'x'), true);
    expect(parseFrame(big)).toMatchObject({ ok: false, reason: 'too-long' });
    expect(parseFrame(encodeFrame(1, Buffer.alloc(63_993, 'x'), true))).toMatchObject({ ok: true });
  });
  it('bad FN and bad start byte', () => {
    const b = Buffer.from(good);
    b[1] = 0x38; // '8'
    expect(parseFrame(b)).toMatchObject({ ok: false, reason: 'bad-fn' });
    expect(parseFrame(good.subarray(1))).toMatchObject({ ok: false, reason: 'bad-start' });
  });
  it('noChecksum: STX text ETX with optional FN', () => {
    expect(parseFrame(Buffer.from('\x02H|\\^&\rL|1|N\r\x03', 'latin1'), { noChecksum: true })).toMatchObject({ ok: true, fn: undefined, isLast: true });
  });
  it('crlfRecordTerminator removes LF after CR', () => {
    const f = encodeFrame(1, Buffer.from('H|\\^&\r\nP|1\r\n'), true);
    expect(parseFrame(f)).toMatchObject({ ok: false, reason: 'restricted-char' });
    const p = parseFrame(f, { crlfRecordTerminator: true });
    expect(p.ok && p.text.toString()).toBe('H|\\^&\rP|1\r');
  });
});
