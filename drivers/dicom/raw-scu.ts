/**
 * A minimal raw DICOM upper-layer client for tests and fault injection (PS3.8 9.3): it sends exactly
 * the bytes it is given (a dataset as-is, no File Meta, in any transfer syntax; garbage; a PDU cut
 * short), which dcmtk's storescu and dcmjs-dimse's Client cannot (they re-encode what they send).
 */
import net from 'node:net';

const APP_CONTEXT = '1.2.840.10008.3.1.1.1'; // PS3.7 A.2.1

function item(type: number, body: Buffer): Buffer {
  const h = Buffer.alloc(4);
  h.writeUInt8(type, 0);
  h.writeUInt16BE(body.length, 2);
  return Buffer.concat([h, body]);
}

function ae(title: string): Buffer {
  return Buffer.from(title.padEnd(16, ' ').slice(0, 16), 'latin1');
}

function pdu(type: number, body: Buffer): Buffer {
  const h = Buffer.alloc(6);
  h.writeUInt8(type, 0);
  h.writeUInt32BE(body.length, 2);
  return Buffer.concat([h, body]);
}

/** A-ASSOCIATE-RQ (PS3.8 9.3.2) with one presentation context per entry (ids 1, 3, 5 …). */
export function associateRq(opts: { calling: string; called: string; contexts: Array<{ abstractSyntax: string; transferSyntaxes: string[] }>; maxPdu?: number; asyncOps?: [number, number] }): Buffer {
  const head = Buffer.alloc(68);
  head.writeUInt16BE(1, 0); // protocol version
  ae(opts.called).copy(head, 4);
  ae(opts.calling).copy(head, 20);
  const items = [item(0x10, Buffer.from(APP_CONTEXT, 'latin1'))];
  opts.contexts.forEach((c, i) => {
    const sub = [item(0x30, Buffer.from(c.abstractSyntax, 'latin1')), ...c.transferSyntaxes.map((t) => item(0x40, Buffer.from(t, 'latin1')))];
    items.push(item(0x20, Buffer.concat([Buffer.from([i * 2 + 1, 0, 0, 0]), ...sub])));
  });
  const max = Buffer.alloc(4);
  max.writeUInt32BE(opts.maxPdu ?? 16384, 0);
  const user = [item(0x51, max), item(0x52, Buffer.from('1.2.3.4.5', 'latin1'))];
  if (opts.asyncOps) {
    const w = Buffer.alloc(4);
    w.writeUInt16BE(opts.asyncOps[0], 0);
    w.writeUInt16BE(opts.asyncOps[1], 2);
    user.push(item(0x53, w)); // PS3.7 D.3.3.3 Asynchronous Operations Window
  }
  items.push(item(0x50, Buffer.concat(user)));
  return pdu(0x01, Buffer.concat([head, ...items]));
}

/** Implicit VR LE element (command sets are always implicit LE, PS3.7 6.3.1). */
function el(group: number, elem: number, value: Buffer): Buffer {
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

/** C-STORE-RQ command set (PS3.7 9.3.1.1). */
export function cStoreCommand(sopClass: string, sopInstance: string, messageId = 1): Buffer {
  const body = Buffer.concat([
    el(0x0000, 0x0002, ui(sopClass)),
    el(0x0000, 0x0100, us(0x0001)),
    el(0x0000, 0x0110, us(messageId)),
    el(0x0000, 0x0700, us(0)),
    el(0x0000, 0x0800, us(0x0000)),
    el(0x0000, 0x1000, ui(sopInstance)),
  ]);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(body.length, 0);
  return Buffer.concat([el(0x0000, 0x0000, len), body]);
}

/** C-ECHO-RQ command set (PS3.7 9.3.5.1): no dataset. */
export function cEchoCommand(messageId = 1): Buffer {
  const body = Buffer.concat([el(0x0000, 0x0002, ui('1.2.840.10008.1.1')), el(0x0000, 0x0100, us(0x0030)), el(0x0000, 0x0110, us(messageId)), el(0x0000, 0x0800, us(0x0101))]);
  const len = Buffer.alloc(4);
  len.writeUInt32LE(body.length, 0);
  return Buffer.concat([el(0x0000, 0x0000, len), body]);
}

/** P-DATA-TF PDUs carrying `data` as PDVs of at most `maxPdv` bytes (PS3.8 9.3.5, E.2). */
export function pData(pcId: number, data: Buffer, command: boolean, maxPdv = 16000): Buffer[] {
  const out: Buffer[] = [];
  for (let off = 0; off < data.length || off === 0; off += maxPdv) {
    const part = data.subarray(off, off + maxPdv);
    const last = off + maxPdv >= data.length;
    const h = Buffer.alloc(6);
    h.writeUInt32BE(part.length + 2, 0);
    h.writeUInt8(pcId, 4);
    h.writeUInt8((command ? 1 : 0) | (last ? 2 : 0), 5);
    out.push(pdu(0x04, Buffer.concat([h, part])));
    if (!data.length) break;
  }
  return out;
}

export const RELEASE_RQ = pdu(0x05, Buffer.alloc(4));

export interface PduRead {
  type: number;
  body: Buffer;
}

/** A socket that reads whole PDUs. */
export class RawAssociation {
  private buf = Buffer.alloc(0);
  private waiters: Array<() => void> = [];
  closed = false;
  constructor(readonly socket: net.Socket) {
    socket.on('data', (d) => {
      this.buf = Buffer.concat([this.buf, d]);
      this.wake();
    });
    socket.on('close', () => {
      this.closed = true;
      this.wake();
    });
    socket.on('error', () => undefined);
  }

  static connect(port: number, host = '127.0.0.1', localAddress?: string): Promise<RawAssociation> {
    return new Promise((resolve, reject) => {
      const s = net.connect({ port, host, ...(localAddress ? { localAddress } : {}) }, () => resolve(new RawAssociation(s)));
      s.once('error', reject);
    });
  }

  private wake(): void {
    const w = this.waiters;
    this.waiters = [];
    for (const f of w) f();
  }

  write(b: Buffer): void {
    this.socket.write(b);
  }

  /** Next PDU, or undefined when the peer closed first (or after `timeoutMs`). */
  async read(timeoutMs = 10_000): Promise<PduRead | undefined> {
    const end = Date.now() + timeoutMs;
    for (;;) {
      if (this.buf.length >= 6) {
        const len = this.buf.readUInt32BE(2);
        if (this.buf.length >= 6 + len) {
          const p = { type: this.buf[0], body: this.buf.subarray(6, 6 + len) };
          this.buf = this.buf.subarray(6 + len);
          return p;
        }
      }
      if (this.closed || Date.now() > end) return undefined;
      await new Promise<void>((r) => {
        const t = setTimeout(r, Math.max(1, end - Date.now()));
        this.waiters.push(() => {
          clearTimeout(t);
          r();
        });
      });
    }
  }

  /** Wait for the command of the next DIMSE response and return its Status (0000,0900). */
  async readStatus(timeoutMs = 10_000): Promise<number | undefined> {
    let cmd = Buffer.alloc(0);
    for (;;) {
      const p = await this.read(timeoutMs);
      if (!p) return undefined;
      if (p.type !== 0x04) return undefined;
      for (let off = 0; off + 6 <= p.body.length; ) {
        const len = p.body.readUInt32BE(off);
        const mch = p.body[off + 5];
        if (mch & 1) cmd = Buffer.concat([cmd, p.body.subarray(off + 6, off + 4 + len)]);
        off += 4 + len;
        if (mch & 1 && mch & 2) return commandStatus(cmd);
      }
    }
  }

  close(): void {
    this.socket.destroy();
  }
}

/** (0000,0900) Status from an implicit LE command set. */
export function commandStatus(cmd: Buffer): number | undefined {
  for (let off = 0; off + 8 <= cmd.length; ) {
    const g = cmd.readUInt16LE(off);
    const e = cmd.readUInt16LE(off + 2);
    const len = cmd.readUInt32LE(off + 4);
    if (g === 0 && e === 0x0900 && len === 2) return cmd.readUInt16LE(off + 8);
    off += 8 + len;
  }
  return undefined;
}

/** User-information sub-item types present in an A-ASSOCIATE-AC (0x51 max length, 0x53 async window …). */
export function userInfoItems(ac: Buffer): number[] {
  for (let off = 68; off + 4 <= ac.length; ) {
    const len = ac.readUInt16BE(off + 2);
    if (ac[off] === 0x50) {
      const out: number[] = [];
      for (let s = off + 4; s + 4 <= off + 4 + len; s += 4 + ac.readUInt16BE(s + 2)) out.push(ac[s]);
      return out;
    }
    off += 4 + len;
  }
  return [];
}

/** A-ASSOCIATE-AC: result per presentation context id (0 accepted) (PS3.8 9.3.3.2). */
export function contextResults(ac: Buffer): Map<number, { result: number; transferSyntax?: string }> {
  const out = new Map<number, { result: number; transferSyntax?: string }>();
  for (let off = 68; off + 4 <= ac.length; ) {
    const type = ac[off];
    const len = ac.readUInt16BE(off + 2);
    if (type === 0x21) {
      const id = ac[off + 4];
      const result = ac[off + 6];
      let ts: string | undefined;
      if (off + 8 + 4 <= off + 4 + len && ac[off + 8] === 0x40) ts = ac.toString('latin1', off + 12, off + 12 + ac.readUInt16BE(off + 10)).replace(/\0+$/, '');
      out.set(id, { result, ...(ts ? { transferSyntax: ts } : {}) });
    }
    off += 4 + len;
  }
  return out;
}
