/**
 * An HL7 receiver (HIS) for end-to-end checks that shares no code with the gateway: MLLP framing,
 * ACKs and the reading of what arrived are written here from the standard, on plain sockets and
 * string splitting. It imports nothing from drivers/ or gateway/.
 *
 * - MLLP (HL7 v2.5.1 Appendix C.4.3 minimal lower layer protocol): <VT> payload <FS><CR>.
 * - ACK: original-mode general acknowledgement (HL7 v2.5.1 2.9.2), MSA-1 AA or AE (Table 0008),
 *   MSA-2 = the received MSH-10 (2.15.8.2).
 * - Reading: segments on CR (2.5.1), fields on MSH-1, components/repetitions/subcomponents/escape
 *   on MSH-2 (2.5.3-2.5.5); escape sequences decoded per 2.7 (\F\ \S\ \T\ \R\ \E\ \Xhh\).
 */
import net from 'node:net';

export interface HisMessage {
  /** MSH-10 as received (plain split, no unescape). */
  controlId: string;
  /** The payload bytes exactly as received (MLLP frame removed). */
  bytes: Buffer;
  /** The payload decoded as UTF-8 (the gateway's output charset, MSH-18 UNICODE UTF-8). */
  text: string;
  /** The answer this HIS gave. */
  answered: 'AA' | 'AE';
  at: number;
}

const VT = 0x0b;
const FS = 0x1c;
const CR = 0x0d;

export class IndependentHis {
  received: HisMessage[] = [];
  /** Messages whose text matches get AE (HL7 Table 0008 application error); all others AA. */
  aePattern: RegExp | undefined;
  private server: net.Server | undefined;
  private sockets = new Set<net.Socket>();
  private acks = 0;
  constructor(public port = 0) {}

  async start(): Promise<number> {
    const server = net.createServer((sock) => {
      this.sockets.add(sock);
      let buf = Buffer.alloc(0);
      sock.on('data', (d) => {
        buf = Buffer.concat([buf, d]);
        for (;;) {
          const start = buf.indexOf(VT);
          if (start < 0) {
            buf = Buffer.alloc(0);
            return;
          }
          const end = buf.indexOf(FS, start + 1);
          if (end < 0 || end + 1 >= buf.length) {
            buf = buf.subarray(start);
            return;
          }
          if (buf[end + 1] !== CR) {
            buf = buf.subarray(end + 1); // not a frame end: drop up to it (C.4.3)
            continue;
          }
          const payload = Buffer.from(buf.subarray(start + 1, end));
          buf = buf.subarray(end + 2);
          this.onMessage(sock, payload);
        }
      });
      sock.on('error', () => undefined);
      sock.on('close', () => this.sockets.delete(sock));
    });
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.port, '127.0.0.1', () => resolve());
    });
    const addr = server.address();
    this.port = typeof addr === 'object' && addr ? addr.port : this.port;
    this.server = server;
    return this.port;
  }

  async stop(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    this.sockets.clear();
    const s = this.server;
    this.server = undefined;
    if (s) await new Promise<void>((r) => s.close(() => r()));
  }

  private onMessage(sock: net.Socket, bytes: Buffer): void {
    const text = bytes.toString('utf8');
    const msh = text.split('\r')[0] ?? '';
    const fs = msh.charAt(3) || '|';
    const f = msh.split(fs);
    // split on MSH-1: f[0] 'MSH', f[1] encoding chars (MSH-2), f[n-1] = MSH-n
    const controlId = f[9] ?? '';
    const version = f[11] ?? '2.5.1';
    const code = this.aePattern?.test(text) ? 'AE' : 'AA';
    this.received.push({ controlId, bytes, text, answered: code, at: Date.now() });
    const ts = new Date().toISOString().replace(/[-:T]/g, '').slice(0, 14);
    const ack =
      `MSH|^~\\&|HIS||${f[2] ?? ''}|${f[3] ?? ''}|${ts}||ACK^${(f[8] ?? '').split('^')[1] ?? ''}^ACK|HISACK${++this.acks}|P|${version}\r` +
      `MSA|${code}|${controlId}\r` +
      (code === 'AE' ? 'ERR||||E|207^Application internal error^HL70357\r' : '');
    sock.write(Buffer.concat([Buffer.from([VT]), Buffer.from(ack, 'utf8'), Buffer.from([FS, CR])]));
  }
}

/** One segment read by plain splitting: `field(n)` is the raw text of field n (MSH: n as in MSH-n). */
export class Seg {
  constructor(readonly id: string, private readonly raw: string[], private readonly enc: Enc) {}
  /** Raw (still escaped) text of field n. */
  field(n: number): string {
    return this.raw[n] ?? '';
  }
  /** Repetitions of field n, raw. */
  reps(n: number): string[] {
    return this.field(n).split(this.enc.rep);
  }
  /** Components of field n (first repetition), raw. */
  comps(n: number): string[] {
    return (this.reps(n)[0] ?? '').split(this.enc.comp);
  }
  /** Component c (1-based) of field n, unescaped. */
  c(n: number, c = 1): string {
    return unescape(this.comps(n)[c - 1] ?? '', this.enc);
  }
  /** Whole field n, each component unescaped, joined with '^' (for values like SN `<^0.5`). */
  text(n: number): string {
    return this.comps(n).map((x) => unescape(x, this.enc)).join('^');
  }
}

interface Enc {
  field: string;
  comp: string;
  rep: string;
  esc: string;
  sub: string;
}

/** Segments of an HL7 v2 message, split by hand (CR-terminated, HL7 v2.5.1 2.5.1). */
export function splitHl7(text: string): Seg[] {
  const lines = text.split('\r').filter((l) => l.length > 0);
  const msh = lines[0] ?? '';
  if (!msh.startsWith('MSH')) throw new Error('message does not start with MSH');
  const field = msh.charAt(3);
  const ec = msh.slice(4).split(field)[0] ?? '';
  const enc: Enc = { field, comp: ec[0] ?? '^', rep: ec[1] ?? '~', esc: ec[2] ?? '\\', sub: ec[3] ?? '&' };
  return lines.map((l) => {
    const parts = l.split(field);
    const id = parts[0];
    // MSH: MSH-1 is the field separator itself, so MSH-n sits at parts[n-1]
    const raw = id === 'MSH' ? [id, field, ...parts.slice(1)] : parts;
    return new Seg(id, raw, enc);
  });
}

/** HL7 v2.5.1 2.7 escape sequences back to text (formatting commands like \.br\ kept as written). */
export function unescape(s: string, enc: Pick<Enc, 'field' | 'comp' | 'rep' | 'esc' | 'sub'>): string {
  const e = enc.esc;
  if (!s.includes(e)) return s;
  let out = '';
  for (let i = 0; i < s.length; ) {
    if (s[i] !== e) {
      out += s[i++];
      continue;
    }
    const j = s.indexOf(e, i + 1);
    if (j < 0) {
      out += s.slice(i);
      break;
    }
    const seq = s.slice(i + 1, j);
    if (seq === 'F') out += enc.field;
    else if (seq === 'S') out += enc.comp;
    else if (seq === 'T') out += enc.sub;
    else if (seq === 'R') out += enc.rep;
    else if (seq === 'E') out += enc.esc;
    else if (/^X([0-9A-Fa-f]{2})+$/.test(seq)) out += Buffer.from(seq.slice(1), 'hex').toString('latin1');
    else out += `${e}${seq}${e}`;
    i = j + 1;
  }
  return out;
}

/** The OBX rows of a message, each with the NTEs that follow it (HL7 v2.5.1 7.3.1 ORU_R01 grammar). */
export function obxRows(text: string): Array<{ obx: Seg; notes: string[]; pid: Seg | undefined; obr: Seg | undefined }> {
  const rows: Array<{ obx: Seg; notes: string[]; pid: Seg | undefined; obr: Seg | undefined }> = [];
  let pid: Seg | undefined;
  let obr: Seg | undefined;
  for (const s of splitHl7(text)) {
    if (s.id === 'PID') pid = s;
    else if (s.id === 'OBR') obr = s;
    else if (s.id === 'OBX') rows.push({ obx: s, notes: [], pid, obr });
    else if (s.id === 'NTE' && rows.length) rows[rows.length - 1].notes.push(s.text(3));
  }
  return rows;
}

/** First segment with this id. */
export function seg(text: string, id: string): Seg | undefined {
  return splitHl7(text).find((s) => s.id === id);
}

/**
 * Prometheus text exposition, read by hand: the sum of every sample of `name` whose labels include
 * all of `labels` (0 when there is none).
 */
export function metricSum(exposition: string, name: string, labels: Record<string, string> = {}): number {
  let sum = 0;
  for (const line of exposition.split('\n')) {
    if (line.startsWith('#')) continue;
    const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$/.exec(line.trim());
    if (!m || m[1] !== name) continue;
    const got: Record<string, string> = {};
    for (const lm of (m[2] ?? '').matchAll(/([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"/g)) got[lm[1]] = lm[2];
    if (Object.entries(labels).every(([k, v]) => got[k] === v)) sum += Number(m[3]);
  }
  return sum;
}

/** MLLP-frame one message (HL7 v2.5.1 C.4.3). */
export function mllpFrame(message: string | Buffer): Buffer {
  return Buffer.concat([Buffer.from([VT]), Buffer.isBuffer(message) ? message : Buffer.from(message, 'utf8'), Buffer.from([FS, CR])]);
}
