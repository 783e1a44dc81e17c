/**
 * Where a received C-STORE dataset goes while it arrives: a temp file in `<dataDir>/dicom/tmp`, File
 * Meta Information first (PS3.10 7.1, part10.ts), then the dataset bytes exactly as received; sha256
 * of the whole file computed on the way; fsync before `finish`. Nothing of the object is kept in memory
 * beyond the stream's high-water mark (the SCP pauses the socket when `write` returns false).
 *
 * A write error (ENOSPC, EDQUOT, EIO) or the storage quota does not end the stream: the remaining
 * bytes of the object are read and dropped, so the association stays usable and the SCU gets a failure
 * status for this instance only (PS3.4 B.2.3: 0xA700 out of resources).
 */
import { createHash, randomBytes, type Hash } from 'node:crypto';
import { closeSync, fsync, openSync, unlinkSync, write } from 'node:fs';
import { join } from 'node:path';
import { Writable } from 'node:stream';

export const WRITER_HIGH_WATER_MARK = 1024 * 1024;

/** Counts the bytes the storage may still take (the SCP's quota). */
export interface StorageAllowance {
  /** Reserve `n` more bytes; false = over quota (nothing reserved). */
  reserve(n: number): boolean;
  /** Give back `n` reserved bytes (a failed or discarded object). */
  release(n: number): void;
}

export type WriterFailure = { kind: 'quota' | 'disk-full' | 'io'; message: string };

export class InstanceWriter extends Writable {
  readonly tmpPath: string;
  /** Bytes of the whole file (meta + dataset) reserved and written. */
  bytes = 0;
  /** Bytes of the dataset as received (what the SCU sent, counted even when dropped). */
  datasetBytes = 0;
  readonly metaBytes: number;
  failure: WriterFailure | undefined;
  private fd: number | undefined;
  private readonly hash: Hash = createHash('sha256');
  private discarded = false;
  private metaPending = true;
  private settled = false;

  constructor(tmpDir: string, meta: Buffer, private readonly allowance: StorageAllowance) {
    super({ highWaterMark: WRITER_HIGH_WATER_MARK, decodeStrings: false });
    this.tmpPath = join(tmpDir, `${Date.now()}-${randomBytes(6).toString('hex')}.part`);
    this.metaBytes = meta.length;
    try {
      this.fd = openSync(this.tmpPath, 'wx', 0o640);
    } catch (e) {
      this.fail(e as NodeJS.ErrnoException);
    }
    // the meta goes through the same path (hash, quota, errors)
    this.write(meta);
  }

  /** sha256 (hex) of the whole file; valid after 'finish'. */
  sha256 = '';

  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (e?: Error | null) => void): void {
    if (this.metaPending) this.metaPending = false; // the first write is the File Meta (constructor)
    else this.datasetBytes += chunk.length;
    if (this.failure || this.fd === undefined || this.discarded) return cb();
    if (!this.allowance.reserve(chunk.length)) {
      this.failure = { kind: 'quota', message: 'storage quota reached' };
      return cb();
    }
    this.bytes += chunk.length;
    this.hash.update(chunk);
    this.writeAll(chunk, 0, cb);
  }

  /** Chunks queued while a write was in flight go to disk as one write (fewer syscalls per object). */
  override _writev(chunks: Array<{ chunk: Buffer }>, cb: (e?: Error | null) => void): void {
    if (chunks.length === 1) return this._write(chunks[0].chunk, 'binary', cb);
    this._write(Buffer.concat(chunks.map((c) => c.chunk)), 'binary', cb);
  }

  private writeAll(chunk: Buffer, off: number, cb: (e?: Error | null) => void): void {
    write(this.fd as number, chunk, off, chunk.length - off, null, (err, n) => {
      if (err) {
        this.fail(err);
        return cb();
      }
      if (off + n < chunk.length) return this.writeAll(chunk, off + n, cb);
      cb();
    });
  }

  override _final(cb: (e?: Error | null) => void): void {
    if (this.failure || this.fd === undefined || this.discarded) return cb();
    // PS3.4 B.2.3 / issue 11: success only for a durable object: the data is on disk before 'finish'
    fsync(this.fd, (err) => {
      if (err) this.fail(err);
      else this.sha256 = this.hash.digest('hex');
      cb();
    });
  }

  /** Close the file (after 'finish'). The caller renames it, or calls discard(). */
  closeFile(): void {
    if (this.fd !== undefined) {
      try {
        closeSync(this.fd);
      } catch {
        /* already closed */
      }
      this.fd = undefined;
    }
  }

  /** Drop the temp file and give back what was reserved (failure, abort, or a refused object). Safe twice. */
  discard(): void {
    this.discarded = true;
    this.closeFile();
    if (!this.settled) {
      this.settled = true;
      this.allowance.release(this.bytes);
    }
    try {
      unlinkSync(this.tmpPath); // before the failure status goes out: nothing of a refused object remains
    } catch {
      /* renamed already, or never created */
    }
  }

  /** The object was kept: its reservation now counts as stored bytes. */
  keep(): void {
    this.settled = true;
  }

  private fail(err: NodeJS.ErrnoException): void {
    if (this.failure) return;
    const full = err.code === 'ENOSPC' || err.code === 'EDQUOT';
    this.failure = { kind: full ? 'disk-full' : 'io', message: `${err.code ?? 'error'}: ${err.message}` };
  }
}
