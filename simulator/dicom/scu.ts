/**
 * A small DICOM upper-layer SCU for the modality simulator (PS3.8 9.3), written from the standard and
 * independent of the gateway's DICOM code: it streams a C-STORE dataset from a file or a generator in
 * P-DATA-TF PDUs with socket backpressure (a 1 GB object never sits in memory), and can misbehave on
 * purpose (abort mid-transfer, vanish, stop reading). dcmjs-dimse's Client cannot stream: it encodes a
 * whole object into one Buffer.
 *
 * PDUs (PS3.8 9.3.1): 01 A-ASSOCIATE-RQ, 02 AC, 03 RJ, 04 P-DATA-TF, 05 A-RELEASE-RQ, 06 RP, 07 A-ABORT.
 * PDV message control header (PS3.8 E.2): bit 0 command (1) / data (0), bit 1 last fragment.
 */
import net from 'node:net';
import tls from 'node:tls';

const APP_CONTEXT = '1.2.840.10008.3.1.1.1'; // PS3.7 A.2.1
export const IMPLICIT_LE = '1.2.840.10008.1.2';
export const EXPLICIT_LE = '1.2.840.10008.1.2.1';
const IMPL_CLASS_UID = '2.25.112233445566778899001122334455667788'; // the simulator's own implementation class
const IMPL_VERSION = 'IOMT_SIM_1';

export interface ContextProposal {
  abstractSyntax: string;
  transferSyntaxes: string[];
}

export interface AssociationResult {
  /** Accepted contexts: id → transfer syntax. */
  accepted: Map<number, { abstractSyntax: string; transferSyntax: string }>;
  /** Rejected contexts with their result (PS3.8 9.3.3.2: 1 user, 2 provider, 3 abstract syntax, 4 transfer syntaxes). */
  rejected: Map<number, { abstractSyntax: string; result: number }>;
  maxPdu: number;
}

/** A-ASSOCIATE-RJ (PS3.8 9.3.4): result 1 permanent / 2 transient, source, reason (3 calling AE, 7 called AE …). */
export class AssociationRejected extends Error {
  constructor(readonly result: number, readonly source: number, readonly reason: number) {
    super(`association rejected: result ${result}, source ${source}, reason ${reason}${source === 1 && reason === 7 ? ' (called AE title not recognized)' : source === 1 && reason === 3 ? ' (calling AE title not recognized)' : ''}`);
  }
}

export class AssociationAborted extends Error {}

function item(type: number, body: Buffer): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt8(type, 0);
  h.writeUInt16BE(body.length, 2);
  return Buffer.concat([h, body]);
}

function pdu(type: number, body: Buffer): Buffer {
  const h = Buffer.alloc(6);
  h.writeUInt8(type, 0);
  h.writeUInt32BE(body.length, 2);
  return Buffer.concat([h, body]);
}

const ae = (t: string) => Buffer.from(t.padEnd(16, ' ').slice(0, 16), 'latin1');
const asc = (s: string) => Buffer.from(s, 'latin1');

/** Implicit VR LE command element (PS3.7 6.3.1: command sets are always implicit VR little endian). */
function cel(group: number, elem: number, value: Buffer): Buffer {
  const h = Buffer.alloc(8);
  h.writeUInt16LE(group, 0);
  h.writeUInt16LE(elem, 2);
  h.writeUInt32LE(value.length, 4);
  return Buffer.concat([h, value]);
}
const us = (n: number) => {
  const b = Buffer.alloc(2);
  b.writeUInt16LE(n, 0);
  return b;
};
const ui = (s: string) => Buffer.from(s.length % 2 ? `${s}\0` : s, 'latin1');

/** C-STORE-RQ command set (PS3.7 9.3.1.1), group length first. */
export function cStoreRq(sopClass: string, sopInstance: string, messageId: number): Buffer {
  const body = Buffer.concat([cel(0, 0x0002, ui(sopClass)), cel(0, 0x0100, us(0x0001)), cel(0, 0x0110, us(messageId)), cel(0, 0x0700, us(0)), cel(0, 0x0800, us(0x0000)), cel(0, 0x1000, ui(sopInstance))]);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(body.length, 0);
  return Buffer.concat([cel(0, 0x0000, len), body]);
}

/** Status (0000,0900) of a command set, undefined when absent. */
export function commandStatus(cmd: Buffer): number | undefined {
  let p = 0;
  while (p + 8 <= cmd.length) {
    const g = cmd.readUInt16LE(p);
    const e = cmd.readUInt16LE(p + 2);
    const l = cmd.readUInt32LE(p + 4);
    if (g === 0 && e === 0x0900 && l >= 2) return cmd.readUInt16LE(p + 8);
    p += 8 + l;
  }
  return undefined;
}

/** Where the dataset bytes come from: total length known up front (the last PDV is flagged). */
export interface DatasetSource {
  length: number;
  /** Chunks in order; the simulator awaits each write's drain. */
  chunks(chunkSize: number): AsyncIterable<Buffer>;
}

export interface StoreFaults {
  /** Send A-ABORT (PS3.8 9.3.8) after this many dataset bytes. */
  abortAfterBytes?: number;
  /** Destroy the TCP connection (no A-ABORT: the peer vanishes) after this many dataset bytes. */
  vanishAfterBytes?: number;
  /** Stop reading the socket for this long after the dataset is sent (a slow reader). */
  slowReadMs?: number;
  /** Pause between PDUs (a slow sender), ms. */
  pduDelayMs?: number;
}

/** One association: connect, negotiate, exchange commands, release. */
export class ScuAssociation {
  private sock!: net.Socket;
  private buf: Buffer = Buffer.alloc(0);
  private waiters: Array<{ resolve: (p: { type: number; body: Buffer }) => void; reject: (e: Error) => void }> = [];
  private queued: Array<{ type: number; body: Buffer }> = [];
  private closedErr: Error | undefined;
  result!: AssociationResult;

  constructor(private readonly o: { host: string; port: number; calling: string; called: string; tls?: tls.ConnectionOptions; timeoutMs?: number }) {}

  async open(contexts: ContextProposal[]): Promise<AssociationResult> {
    this.sock = await new Promise<net.Socket>((resolve, reject) => {
      const s = this.o.tls ? tls.connect({ host: this.o.host, port: this.o.port, ...this.o.tls }, () => resolve(s)) : net.connect({ host: this.o.host, port: this.o.port }, () => resolve(s));
      s.once('error', reject);
    });
    this.sock.on('data', (d: Buffer) => this.onData(d));
    this.sock.on('error', (e) => this.fail(e));
    this.sock.on('close', () => this.fail(new AssociationAborted('connection closed by the peer')));
    const head = Buffer.alloc(68);
    head.writeUInt16BE(1, 0); // protocol version (PS3.8 9.3.2)
    ae(this.o.called).copy(head, 4);
    ae(this.o.calling).copy(head, 20);
    const items = [item(0x10, asc(APP_CONTEXT))];
    contexts.forEach((c, i) => {
      const sub = [item(0x30, asc(c.abstractSyntax)), ...c.transferSyntaxes.map((t) => item(0x40, asc(t)))];
      items.push(item(0x20, Buffer.concat([Buffer.from([i * 2 + 1, 0, 0, 0]), ...sub]))); // odd ids (PS3.8 9.3.2.2)
    });
    const max = Buffer.alloc(4);
    max.writeUInt32BE(65536, 0);
    items.push(item(0x50, Buffer.concat([item(0x51, max), item(0x52, asc(IMPL_CLASS_UID)), item(0x55, asc(IMPL_VERSION))])));
    this.sock.write(pdu(0x01, Buffer.concat([head, ...items])));
    const r = await this.next();
    if (r.type === 0x03) {
      this.sock.destroy();
      throw new AssociationRejected(r.body[1], r.body[2], r.body[3]);
    }
    if (r.type !== 0x02) throw new AssociationAborted(`expected A-ASSOCIATE-AC, got PDU type ${r.type}`);
    const accepted = new Map<number, { abstractSyntax: string; transferSyntax: string }>();
    const rejected = new Map<number, { abstractSyntax: string; result: number }>();
    let maxPdu = 16384;
    let p = 68;
    while (p + 4 <= r.body.length) {
      const t = r.body[p];
      const len = r.body.readUInt16BE(p + 2);
      const b = r.body.subarray(p + 4, p + 4 + len);
      if (t === 0x21) {
        const id = b[0];
        const result = b[2];
        const ts = b.length > 8 ? b.subarray(8, 8 + b.readUInt16BE(6)).toString('latin1').replace(/\0+$/, '') : '';
        const abs = contexts[(id - 1) / 2]?.abstractSyntax ?? '';
        if (result === 0) accepted.set(id, { abstractSyntax: abs, transferSyntax: ts });
        else rejected.set(id, { abstractSyntax: abs, result });
      } else if (t === 0x50) {
        let q = 0;
        while (q + 4 <= b.length) {
          const st = b[q];
          const sl = b.readUInt16BE(q + 2);
          if (st === 0x51 && sl === 4) maxPdu = b.readUInt32BE(q + 4) || 0x7fffffff; // 0 = unlimited (PS3.8 D.1)
          q += 4 + sl;
        }
      }
      p += 4 + len;
    }
    this.result = { accepted, rejected, maxPdu };
    return this.result;
  }

  /**
   * C-STORE with the dataset streamed. Resolves with the response status (PS3.4 B.2.3), or rejects when
   * a fault ended the association.
   */
  async store(pcId: number, sopClass: string, sopInstance: string, src: DatasetSource, faults: StoreFaults = {}, messageId = 1): Promise<number> {
    const maxPdu = Math.min(this.result.maxPdu, 1 << 20);
    const pdvData = maxPdu - 6; // PDV item: 4 length + 1 context id + 1 header (PS3.8 9.3.5.1)
    await this.sendPdv(pcId, cStoreRq(sopClass, sopInstance, messageId), true, pdvData);
    let sent = 0;
    // PDV payload assembled from slices of the source chunks: no copy, no concatenation (bounded memory)
    let parts: Buffer[] = [];
    let partsLen = 0;
    const flush = async (last: boolean) => {
      const head = Buffer.alloc(12);
      head[0] = 0x04; // P-DATA-TF
      head.writeUInt32BE(partsLen + 6, 2);
      head.writeUInt32BE(partsLen + 2, 6); // PDV item length: context id + header + data
      head[10] = pcId;
      head[11] = last ? 0x02 : 0x00; // data, last fragment (PS3.8 E.2)
      await this.writeAll([head, ...parts]);
      sent += partsLen;
      parts = [];
      partsLen = 0;
      if (faults.pduDelayMs) await new Promise((r) => setTimeout(r, faults.pduDelayMs));
    };
    for await (const chunk of src.chunks(pdvData)) {
      let off = 0;
      while (off < chunk.length) {
        const take = Math.min(pdvData - partsLen, chunk.length - off);
        parts.push(chunk.subarray(off, off + take));
        partsLen += take;
        off += take;
        if (partsLen === pdvData && sent + partsLen < src.length) {
          await flush(false);
          if (faults.abortAfterBytes !== undefined && sent >= faults.abortAfterBytes) return this.abortNow();
          if (faults.vanishAfterBytes !== undefined && sent >= faults.vanishAfterBytes) return this.vanish();
        }
      }
    }
    await flush(true);
    if (faults.slowReadMs) {
      this.sock.pause();
      await new Promise((r) => setTimeout(r, faults.slowReadMs));
      this.sock.resume();
    }
    return this.readStatus();
  }

  /** Reads P-DATA until a complete command set arrives; returns its status. */
  async readStatus(): Promise<number> {
    let cmd = Buffer.alloc(0);
    for (;;) {
      const r = await this.next();
      if (r.type === 0x07) throw new AssociationAborted(`A-ABORT from the peer (source ${r.body[2]}, reason ${r.body[3]})`);
      if (r.type !== 0x04) continue;
      let p = 0;
      while (p + 6 <= r.body.length) {
        const len = r.body.readUInt32BE(p);
        const hdr = r.body[p + 5];
        const data = r.body.subarray(p + 6, p + 4 + len);
        if (hdr & 0x01) {
          cmd = Buffer.concat([cmd, data]);
          if (hdr & 0x02) {
            const s = commandStatus(cmd);
            if (s !== undefined) return s;
            cmd = Buffer.alloc(0);
          }
        }
        p += 4 + len;
      }
    }
  }

  async release(): Promise<void> {
    if (this.closedErr) return;
    this.sock.write(pdu(0x05, Buffer.alloc(4)));
    try {
      for (;;) {
        const r = await this.next(5000);
        if (r.type === 0x06) break;
      }
    } catch {
      /* peer closed first */
    }
    this.sock.end();
  }

  /** A-ABORT from the service user (PS3.8 9.3.8: source 0, reason 0). */
  abortNow(): never {
    this.sock.end(pdu(0x07, Buffer.from([0, 0, 0, 0])));
    throw new AssociationAborted('aborted by the simulator (fault)');
  }

  /** Close the TCP connection with a reset, no A-ABORT (the peer vanishes). */
  vanish(): never {
    this.sock.resetAndDestroy?.() ?? this.sock.destroy();
    throw new AssociationAborted('connection dropped by the simulator (fault: vanish)');
  }

  close(): void {
    this.sock?.destroy();
  }

  private async sendPdv(pcId: number, data: Buffer, command: boolean, max: number): Promise<void> {
    for (let off = 0; off < data.length || off === 0; off += max) {
      const part = data.subarray(off, off + max);
      const last = off + max >= data.length;
      const body = Buffer.alloc(6);
      body.writeUInt32BE(part.length + 2, 0);
      body[4] = pcId;
      body[5] = (command ? 0x01 : 0) | (last ? 0x02 : 0);
      await this.write(pdu(0x04, Buffer.concat([body.subarray(0, 6), part]).subarray(0)));
      if (last) break;
    }
  }

  /** Several buffers as one write burst; waits for 'drain' when the socket buffer is full (backpressure). */
  private writeAll(bufs: Buffer[]): Promise<void> {
    if (this.closedErr) return Promise.reject(this.closedErr);
    this.sock.cork();
    let ok = true;
    for (const b of bufs) ok = this.sock.write(b) && ok;
    this.sock.uncork();
    return ok ? Promise.resolve() : this.drained();
  }

  private drained(): Promise<void> {
    return new Promise((resolve, reject) => {
      const onDrain = () => {
        this.sock.off('close', onClose);
        resolve();
      };
      const onClose = () => {
        this.sock.off('drain', onDrain);
        reject(this.closedErr ?? new AssociationAborted('connection closed while sending'));
      };
      this.sock.once('drain', onDrain);
      this.sock.once('close', onClose);
    });
  }

  private write(b: Buffer): Promise<void> {
    if (this.closedErr) return Promise.reject(this.closedErr);
    return new Promise((resolve, reject) => {
      const ok = this.sock.write(b, (e) => (e ? reject(e) : undefined));
      if (ok) resolve();
      else {
        const onDrain = () => {
          this.sock.off('close', onClose);
          resolve();
        };
        const onClose = () => {
          this.sock.off('drain', onDrain);
          reject(this.closedErr ?? new AssociationAborted('connection closed while sending'));
        };
        this.sock.once('drain', onDrain);
        this.sock.once('close', onClose);
      }
    });
  }

  private onData(d: Buffer): void {
    this.buf = this.buf.length ? Buffer.concat([this.buf, d]) : d;
    while (this.buf.length >= 6) {
      const len = this.buf.readUInt32BE(2);
      if (this.buf.length < 6 + len) break;
      const p = { type: this.buf[0], body: Buffer.from(this.buf.subarray(6, 6 + len)) };
      this.buf = this.buf.subarray(6 + len);
      const w = this.waiters.shift();
      if (w) w.resolve(p);
      else this.queued.push(p);
    }
  }

  private fail(e: Error): void {
    if (this.closedErr) return;
    this.closedErr = e;
    for (const w of this.waiters.splice(0)) w.reject(e);
  }

  private next(timeoutMs = this.o.timeoutMs ?? 30_000): Promise<{ type: number; body: Buffer }> {
    const q = this.queued.shift();
    if (q) return Promise.resolve(q);
    if (this.closedErr) return Promise.reject(this.closedErr);
    return new Promise((resolve, reject) => {
      const t = setTimeout(() => reject(new Error(`no answer within ${timeoutMs} ms`)), timeoutMs);
      this.waiters.push({
        resolve: (p) => {
          clearTimeout(t);
          resolve(p);
        },
        reject: (e) => {
          clearTimeout(t);
          reject(e);
        },
      });
    });
  }
}
