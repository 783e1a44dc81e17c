import { EventEmitter } from 'node:events';

const ENQ = 0x05, ACK = 0x06, NAK = 0x15, EOT = 0x04, STX = 0x02, LF = 0x0a;

/** Byte stream of an analyzer end (TCP socket or serial port) with a small read queue. */
export interface Duplex {
  write(b: Buffer): void;
  on(ev: 'data', cb: (b: Buffer) => void): unknown;
}

/**
 * A minimal analyzer side of E1381 for end-to-end tests: it replays frames exactly as given (bytes
 * from fixtures), one at a time, waiting for ACK/NAK, and can receive a session the gateway sends.
 */
export class AstmPeer extends EventEmitter {
  private buf = Buffer.alloc(0);
  private waiters: Array<() => void> = [];
  constructor(private readonly io: Duplex) {
    super();
    io.on('data', (b: Buffer) => {
      this.buf = Buffer.concat([this.buf, b]);
      for (const w of this.waiters.splice(0)) w();
    });
  }

  private async next(timeoutMs: number): Promise<number> {
    const end = Date.now() + timeoutMs;
    while (!this.buf.length) {
      const left = end - Date.now();
      if (left <= 0) throw new Error('timeout waiting for a byte from the gateway');
      await new Promise<void>((r) => {
        const t = setTimeout(r, left);
        this.waiters.push(() => (clearTimeout(t), r()));
      });
    }
    const b = this.buf[0];
    this.buf = this.buf.subarray(1);
    return b;
  }

  private async readFrame(first: number, timeoutMs: number): Promise<Buffer> {
    const bytes = [first];
    for (;;) {
      const b = await this.next(timeoutMs);
      bytes.push(b);
      if (b === LF) return Buffer.from(bytes);
    }
  }

  /** Send a whole session; returns the control byte answered to each frame (ACK/NAK/EOT). */
  async sendSession(frames: Buffer[], timeoutMs = 15_000): Promise<number[]> {
    this.io.write(Buffer.from([ENQ]));
    const a = await this.next(timeoutMs);
    if (a !== ACK) throw new Error(`gateway answered ENQ with 0x${a.toString(16)}`);
    const answers: number[] = [];
    for (const f of frames) {
      this.io.write(f);
      answers.push(await this.next(timeoutMs));
    }
    this.io.write(Buffer.from([EOT]));
    return answers;
  }

  /** Wait for the gateway to bid (ENQ), ACK every frame, return the record texts until EOT. */
  async receiveSession(timeoutMs = 15_000): Promise<string[]> {
    let b = await this.next(timeoutMs);
    while (b !== ENQ) b = await this.next(timeoutMs);
    this.io.write(Buffer.from([ACK]));
    const texts: string[] = [];
    for (;;) {
      b = await this.next(timeoutMs);
      if (b === EOT) return texts;
      if (b !== STX) continue;
      const f = await this.readFrame(b, timeoutMs);
      // STX FN text ETX|ETB C1 C2 CR LF
      texts.push(f.subarray(2, f.length - 5).toString('latin1'));
      this.io.write(Buffer.from([ACK]));
    }
  }
}

/** Split a `.wire` capture (ENQ, frames, EOT) into its frames. */
export function framesOf(wire: Buffer): Buffer[] {
  const frames: Buffer[] = [];
  let i = 0;
  while (i < wire.length) {
    if (wire[i] === STX) {
      const end = wire.indexOf(LF, i);
      frames.push(wire.subarray(i, end + 1));
      i = end + 1;
    } else i++;
  }
  return frames;
}

/** E1381 frame with checksum (sum FN..ETX mod 256, two uppercase hex). */
export function frame(fn: number, text: string, last = true): Buffer {
  const body = Buffer.from(`${fn % 8}${text}\r${last ? '\x03' : '\x17'}`, 'latin1');
  let sum = 0;
  for (const b of body) sum = (sum + b) & 0xff;
  return Buffer.concat([Buffer.from([STX]), body, Buffer.from(sum.toString(16).toUpperCase().padStart(2, '0') + '\r\n', 'latin1')]);
}

export const CODES = { ENQ, ACK, NAK, EOT };
