/**
 * part10.ts: the File Meta group we write (read back by dcmtk), and the header walker's text decoding
 * per Specific Character Set (PS3.3 C.12.1.1.2; Vietnamese names in ISO_IR 192), data-driven.
 */
import { execFile } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import iconv from 'iconv-lite';
import { afterAll, describe, expect, it } from 'vitest';
import { requirePeer, tempDir } from '../../test/helpers/env';
import { buildFileMeta, DatasetError, fileMetaLength, readHeader, TS, uidPathPart } from './part10';

const run = promisify(execFile);

/** Explicit VR LE element with a 16-bit length. */
function el(group: number, elem: number, vr: string, value: Buffer): Buffer {
  const v = value.length % 2 ? Buffer.concat([value, Buffer.from(vr === 'UI' ? [0] : [0x20])]) : value;
  const h = Buffer.alloc(8);
  h.writeUInt16LE(group, 0);
  h.writeUInt16LE(elem, 2);
  h.write(vr, 4, 'latin1');
  h.writeUInt16LE(v.length, 6);
  return Buffer.concat([h, v]);
}

function dataset(charset: string | undefined, name: Buffer): Buffer {
  return Buffer.concat([
    ...(charset !== undefined ? [el(0x0008, 0x0005, 'CS', Buffer.from(charset, 'latin1'))] : []),
    el(0x0008, 0x0016, 'UI', Buffer.from('1.2.840.10008.5.1.4.1.1.7', 'latin1')),
    el(0x0008, 0x0018, 'UI', Buffer.from('2.25.1', 'latin1')),
    el(0x0008, 0x0050, 'SH', Buffer.from('ACC-1', 'latin1')),
    el(0x0010, 0x0010, 'PN', name),
    el(0x0020, 0x000d, 'UI', Buffer.from('2.25.2', 'latin1')),
    el(0x0020, 0x000e, 'UI', Buffer.from('2.25.3', 'latin1')),
    el(0x0028, 0x0010, 'US', Buffer.from([1, 0])),
  ]);
}

describe('header walker: names per Specific Character Set', () => {
  it.each([
    ['ISO_IR 192', 'utf8', 'Nguyễn^Văn An', false],
    ['ISO_IR 192', 'utf8', 'Trần^Thị Bích Đào', false],
    ['ISO_IR 100', 'latin1', 'Müller^Jürgen', false],
    [undefined, 'latin1', 'SMITH^JOHN', false],
    ['ISO_IR 144', 'iso-8859-5', 'Иванов^Иван', false],
    ['GB18030', 'gb18030', '王^小明', false],
    ['ISO 2022 IR 87', 'latin1', 'YAMADA^TARO', true],
    // outside the declared default repertoire (PS3.5 6.1.2.1): UTF-8 sent undeclared is read as UTF-8 and
    // flagged; other 8-bit bytes as ISO 8859-1, flagged (before: silently mojibake, unflagged)
    [undefined, 'utf8', 'Nguyễn^Văn An', true],
    ['ISO_IR 6', 'utf8', 'Trần^Thị Bích Đào', true],
    [undefined, 'latin1', 'Müller^Jürgen', true],
  ])('%s: %s name decoded (fallback flag %s)', (cs, enc, name, fallback) => {
    const h = readHeader(dataset(cs as string | undefined, iconv.encode(name as string, enc as string)), TS.explicitLE, true);
    expect(h.patientName).toBe(name);
    expect(h).toMatchObject({ sopInstanceUid: '2.25.1', studyInstanceUid: '2.25.2', seriesInstanceUid: '2.25.3', accessionNumber: 'ACC-1' });
    expect(!!h.charsetFallback).toBe(fallback);
  });

  it.each([
    ['an item tag at top level', Buffer.from([0xfe, 0xff, 0x00, 0xe0, 0, 0, 0, 0])],
    ['a lowercase VR', Buffer.from([0x08, 0x00, 0x18, 0x00, 0x75, 0x69, 0x02, 0x00, 0x31, 0x00])],
    ['attributes out of order', Buffer.concat([el(0x0010, 0x0010, 'PN', Buffer.from('A')), el(0x0008, 0x0018, 'UI', Buffer.from('1'))])],
    ['a value past the end', Buffer.from([0x08, 0x00, 0x18, 0x00, 0x55, 0x49, 0x40, 0x00, 0x31, 0x00])],
  ])('%s is a DatasetError (0xC000)', (_what, bytes) => {
    expect(() => readHeader(bytes, TS.explicitLE, true)).toThrow(DatasetError);
  });

  it('a UID that is not digits and dots never becomes a path component', () => {
    const h = (s: string) => require('node:crypto').createHash('sha256').update(s).digest('hex');
    expect(uidPathPart('1.2.840.113619.2.55', h)).toBe('1.2.840.113619.2.55');
    for (const bad of ['../../etc', '1..2', '1.2/3', '', '.1', 'x'.repeat(10)]) expect(uidPathPart(bad, h)).toMatch(/^x[0-9a-f]{32}$/);
  });
});

describe('File Meta Information (PS3.10 7.1)', () => {
  const tmp = tempDir('iomt-part10-');
  afterAll(() => tmp.cleanup());

  it('is read back by dcmtk with our class UID and the dataset behind it unchanged', async () => {
    requirePeer('dcmdump');
    const meta = buildFileMeta({ sopClassUid: '1.2.840.10008.5.1.4.1.1.7', sopInstanceUid: '2.25.1', transferSyntaxUid: TS.explicitLE });
    const ds = dataset('ISO_IR 192', Buffer.from('Nguyễn^Văn An', 'utf8'));
    const file = join(tmp.dir, 'x.dcm');
    writeFileSync(file, Buffer.concat([meta, ds]));
    expect(fileMetaLength(Buffer.concat([meta, ds]))).toBe(meta.length);
    const out = (await run('dcmdump', ['+U8', file], { encoding: 'utf8' })).stdout;
    expect(out).toContain('(0002,0010) UI =LittleEndianExplicit');
    expect(out).toContain('(0002,0003) UI [2.25.1]');
    expect(out).toContain('(0002,0012) UI [2.25.247619871120731092498219532860839417641]');
    expect(out).toContain('Nguyễn^Văn An');
    // the same input gives the same bytes (dedupe by sha256 of the file)
    expect(buildFileMeta({ sopClassUid: '1.2.840.10008.5.1.4.1.1.7', sopInstanceUid: '2.25.1', transferSyntaxUid: TS.explicitLE }).equals(meta)).toBe(true);
  });
});
