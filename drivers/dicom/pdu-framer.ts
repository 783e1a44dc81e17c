/**
 * Checks the PDU framing of an upper-layer connection before dcmjs-dimse buffers anything (PS3.8 9.3:
 * every PDU is type (1 byte), reserved (1), length (4, big endian), then `length` bytes).
 *
 * Why: dcmjs-dimse 0.3.3's PduAccumulator buffers a PDU until its declared length arrived (up to 4 GiB)
 * and re-concatenates on every chunk; garbage on the port (e.g. "GET / HTTP/1.1" declares ~800 MB) would
 * grow the heap without bound. The framer rejects an unknown type or a length over the limit at the
 * header, so the connection is aborted before the library sees the bytes, and it reports a connection
 * that closes inside a PDU (a truncated PDU).
 *
 * It also assembles each PDU with one copy (`onPdu`), replacing the library's accumulator, which
 * re-concatenates the partial PDU on every chunk (quadratic in the PDU size: with 256 KiB PDUs it
 * halved the throughput and doubled the garbage).
 *
 * Pure and incremental (fuzzed in test/fuzz/dicom.fuzz.test.ts): `push(chunk)` never throws (unless
 * `onPdu` does).
 */

/** PDU types (PS3.8 9.3.1). */
export const PDU_TYPES: Record<number, string> = {
  0x01: 'A-ASSOCIATE-RQ',
  0x02: 'A-ASSOCIATE-AC',
  0x03: 'A-ASSOCIATE-RJ',
  0x04: 'P-DATA-TF',
  0x05: 'A-RELEASE-RQ',
  0x06: 'A-RELEASE-RP',
  0x07: 'A-ABORT',
};

/** Bytes kept of a refused or truncated PDU for quarantine (issue 11: at most the first 64 KiB). */
export const KEEP_BYTES = 64 * 1024;

export interface FramerLimits {
  /** Largest P-DATA-TF variable field accepted (the Maximum Length we advertise, PS3.8 D.1). */
  maxPDataBytes: number;
  /** Largest A-ASSOCIATE-RQ (presentation contexts + user information); default 1 MiB. */
  maxAssociateBytes?: number;
}

export type FramerVerdict = { ok: true } | { ok: false; reason: string; kept: Buffer };

export class PduFramer {
  private header = Buffer.alloc(6);
  private headerLen = 0;
  private remaining = 0; // bytes of the current PDU body still to come
  private type = 0;
  private parts: Buffer[] = [];
  private failed = false;
  /** PDUs whose header has been seen, per type name (diagnostics, tests). */
  readonly seen: Record<string, number> = {};

  constructor(
    private readonly limits: FramerLimits,
    private readonly onPdu?: (pdu: Buffer) => void,
  ) {}

  /** True between a PDU's first byte and its last. */
  get inPdu(): boolean {
    return this.headerLen > 0 || this.remaining > 0;
  }

  /** Type name of the PDU being received (or the last one). */
  get currentType(): string | undefined {
    return PDU_TYPES[this.type];
  }

  /**
   * Feed received bytes. `ok: false` (once, then always) when a header is not a PDU the SCP accepts;
   * `kept` holds up to 64 KiB from that header on.
   */
  push(chunk: Buffer): FramerVerdict {
    if (this.failed) return { ok: false, reason: 'connection already refused', kept: Buffer.alloc(0) };
    let i = 0;
    while (i < chunk.length) {
      if (this.remaining > 0) {
        const n = Math.min(this.remaining, chunk.length - i);
        this.parts.push(chunk.subarray(i, i + n));
        this.remaining -= n;
        i += n;
        if (this.remaining === 0) this.endPdu();
        continue;
      }
      const n = Math.min(6 - this.headerLen, chunk.length - i);
      chunk.copy(this.header, this.headerLen, i, i + n);
      this.headerLen += n;
      i += n;
      if (this.headerLen < 6) break;
      this.type = this.header[0];
      const length = this.header.readUInt32BE(2);
      const name = PDU_TYPES[this.type];
      const bad = !name
        ? `unknown PDU type 0x${this.type.toString(16).padStart(2, '0')} (PS3.8 9.3.1)`
        : this.type === 0x04 && length > this.limits.maxPDataBytes
          ? `P-DATA-TF of ${length} bytes exceeds the maximum length ${this.limits.maxPDataBytes} (PS3.8 D.1)`
          : this.type === 0x01 && length > (this.limits.maxAssociateBytes ?? 1024 * 1024)
            ? `A-ASSOCIATE-RQ of ${length} bytes is larger than accepted`
            : this.type !== 0x01 && this.type !== 0x04 && length > 64 * 1024
              ? `${name} of ${length} bytes is larger than the PDU can be`
              : undefined;
      if (bad) {
        this.failed = true;
        const kept = Buffer.concat([this.header, chunk.subarray(i, Math.min(chunk.length, i + KEEP_BYTES - 6))]);
        return { ok: false, reason: bad, kept };
      }
      this.seen[name] = (this.seen[name] ?? 0) + 1;
      this.parts = [Buffer.from(this.header)];
      this.remaining = length;
      if (length === 0) this.endPdu();
    }
    return { ok: true };
  }

  /**
   * The connection closed: a PDU cut short is reported with what was kept of it (a P-DATA-TF keeps its
   * header only: its bytes are the object's, handled by the C-STORE path).
   */
  end(): { truncated: false } | { truncated: true; type: string; kept: Buffer } {
    if (this.failed || !this.inPdu) return { truncated: false };
    const type = this.headerLen < 6 ? 'partial header' : (PDU_TYPES[this.type] ?? 'unknown');
    const kept = this.headerLen < 6 ? Buffer.from(this.header.subarray(0, this.headerLen)) : this.type === 0x04 ? Buffer.from(this.header) : Buffer.concat(this.parts).subarray(0, KEEP_BYTES);
    return { truncated: true, type, kept };
  }

  private endPdu(): void {
    this.headerLen = 0;
    const parts = this.parts;
    this.parts = [];
    if (this.onPdu) this.onPdu(parts.length === 1 ? parts[0] : Buffer.concat(parts));
  }
}
