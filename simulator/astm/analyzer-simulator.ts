/**
 * ASTM analyzer simulator: plays the instrument side of E1381/E1394 over any TransportConnection,
 * reusing the driver's link state machine (role 'instrument') and frame codec. Fault injection
 * works on the bytes the simulator writes (corrupt checksum, wrong FN, split writes, silence,
 * disconnect) and on its replies when it is the receiver (NAK storm, receiver interrupt), plus
 * contention (bidding at the same moment as the gateway).
 */
import { EventEmitter } from 'node:events';
import { ACK, EOT, ENQ, NAK, STX, checksum } from '../../drivers/astm/frame';
import { AstmLink } from '../../drivers/astm/link';
import { realClock, type LinkClock } from '../../drivers/astm/link-clock';
import type { LinkOptions } from '../../drivers/astm/link-options';
import { defaultProfile, type AstmProfile } from '../../drivers/astm/profile';

export interface AstmFaults {
  /** Corrupt the checksum of the first transmission of every Nth frame (1 = every frame). */
  corruptChecksumEvery?: number;
  /** Send a wrong FN on the first transmission of every Nth frame. */
  wrongFrameNumberEvery?: number;
  /** Write in chunks of this many bytes (1 = byte by byte), yielding between chunks. */
  splitWrites?: number;
  /** As receiver: answer the first N frames with NAK instead of ACK. */
  nakStorm?: number;
  /** As receiver: answer the first frame with EOT (receiver interrupt). */
  receiverInterrupt?: boolean;
  /** Bid (ENQ) for pending results at the moment the gateway bids: contention. */
  contention?: boolean;
  /** Stop writing (silence) after this many frames of the session. */
  silenceAfterFrames?: number;
  /** Close the connection after this many frames of the session. */
  disconnectAfterFrames?: number;
}

/** The byte pipe the simulator talks over (a TransportConnection fits). */
export interface SimConnection extends EventEmitter {
  write(buf: Buffer): void;
  close(): void;
}

export interface AnalyzerSimulatorOptions {
  profile?: AstmProfile;
  faults?: AstmFaults;
  link?: Partial<LinkOptions>;
  clock?: LinkClock;
}

export class AstmAnalyzerSimulator extends EventEmitter {
  readonly link: AstmLink;
  /** Messages received from the gateway (records as strings). */
  readonly received: string[][] = [];
  /** Replies/bytes statistics for reports. */
  readonly stats = { framesSent: 0, naksReceived: 0, acksReceived: 0, corrupted: 0, wrongFn: 0 };
  private faults: AstmFaults;
  private readonly profile: AstmProfile;
  private lastFrame: Buffer | undefined;
  private frameNo = 0;
  private silent = false;
  private replies = 0;
  private heldForContention: Array<() => void> = [];
  private writeChain: Promise<void> = Promise.resolve();

  constructor(
    private readonly conn: SimConnection,
    opts: AnalyzerSimulatorOptions = {},
  ) {
    super();
    this.faults = { ...(opts.faults ?? {}) };
    const profile = opts.profile ?? defaultProfile();
    this.profile = profile;
    this.link = new AstmLink(
      {
        write: (b) => this.out(b),
        onMessage: async (records) => {
          const msg = records.map((r) => r.toString('latin1'));
          if (!msg.length || msg[msg.length - 1][0] !== 'L') {
            this.emit('partial', msg); // interrupted/incomplete session: not a message
            return;
          }
          this.received.push(msg);
          this.emit('message', msg);
        },
        onEvent: (e) => this.emit('link', e),
      },
      // the simulator sends strictly; the profile's lenient receive options do not apply to it
      { ...(opts.link ?? {}), role: 'instrument', noChecksum: profile.link.noChecksum ?? false },
      opts.clock ?? realClock,
    );
    conn.on('data', (b: Buffer) => this.in(b));
  }

  setFaults(f: AstmFaults): void {
    this.faults = { ...f };
    this.replies = 0;
  }

  /** Send one message (records without CR); resolves when the gateway ACKed every frame. */
  sendMessage(records: string[]): Promise<void> {
    this.frameNo = 0;
    if (this.faults.contention) {
      // hold the bid until the gateway bids, then ENQ at the same moment
      return new Promise<void>((resolve, reject) => {
        this.heldForContention.push(() => this.link.send(records).then(resolve, reject));
      });
    }
    return this.link.send(records);
  }

  /** Send a host query for these specimens and wait for the gateway's answer (a new session). */
  async query(specimenIds: string[], opts: { timeoutMs?: number; sender?: string } = {}): Promise<string[]> {
    const before = this.received.length;
    const ts = stamp(new Date());
    // Q.3 starting range: the specimen ID sits in the profile's component (`patientID^specimenID`, Sysmex `^^sample`)
    const ranges = specimenIds.map((s) => `${'^'.repeat(this.profile.query.specimenComponent - 1)}${s}`).join('\\');
    await this.sendMessage([`H|\\^&|||${opts.sender ?? 'SIM^1'}|||||LIS||P|1|${ts}`, `Q|1|${ranges}||ALL||||||||O`, 'L|1|N']);
    const timeoutMs = opts.timeoutMs ?? 30_000;
    return new Promise<string[]>((resolve, reject) => {
      const t = setTimeout(() => {
        this.off('message', onMsg);
        reject(new Error('no answer to host query'));
      }, timeoutMs);
      const onMsg = (): void => {
        if (this.received.length > before) {
          clearTimeout(t);
          this.off('message', onMsg);
          resolve(this.received[this.received.length - 1]);
        }
      };
      this.on('message', onMsg);
      onMsg();
    });
  }

  close(): void {
    this.link.close();
    this.conn.close();
  }

  // ------------------------------------------------------------------ fault injection

  private in(b: Buffer): void {
    if (this.faults.contention && this.heldForContention.length && b.includes(ENQ) && this.link.linkState === 'neutral') {
      // the gateway bids: bid too (its ENQ is swallowed — the instrument wins, LIS01 §1.3.5)
      const rest = Buffer.from([...b].filter((x) => x !== ENQ));
      this.emit('fault', 'contention');
      for (const go of this.heldForContention.splice(0)) go();
      if (rest.length) this.link.onBytes(rest);
      return;
    }
    for (const x of b) {
      if (x === ACK) this.stats.acksReceived++;
      if (x === NAK) this.stats.naksReceived++;
    }
    this.link.onBytes(b);
  }

  private out(b: Buffer): void {
    if (this.silent) return;
    let buf = b;
    const f = this.faults;
    // replies while receiving (the state is already 'receiving' for frame replies, 'neutral' for the ENQ reply)
    if (buf.length === 1 && buf[0] === ACK && this.link.linkState === 'receiving') {
      this.replies++;
      if (f.receiverInterrupt && this.replies === 1) {
        buf = Buffer.from([EOT]);
        this.emit('fault', 'interrupt');
      }
      else if (f.nakStorm && this.replies <= f.nakStorm) buf = Buffer.from([NAK]);
    }
    if (buf[0] === STX && buf.length > 7) {
      const retransmit = this.lastFrame && this.lastFrame.equals(b);
      this.lastFrame = Buffer.from(b);
      if (!retransmit) {
        this.frameNo++;
        if (f.disconnectAfterFrames !== undefined && this.frameNo > f.disconnectAfterFrames) {
          this.silent = true;
          this.conn.close();
          return;
        }
        if (f.silenceAfterFrames !== undefined && this.frameNo > f.silenceAfterFrames) {
          this.silent = true;
          return;
        }
        if (f.corruptChecksumEvery && this.frameNo % f.corruptChecksumEvery === 0) {
          buf = Buffer.from(buf);
          const i = buf.length - 4;
          buf[i] = buf[i] === 0x30 ? 0x31 : 0x30; // first checksum digit changed
          this.stats.corrupted++;
        } else if (f.wrongFrameNumberEvery && this.frameNo % f.wrongFrameNumberEvery === 0) {
          buf = Buffer.from(buf);
          buf[1] = 0x30 + ((buf[1] - 0x30 + 3) & 7);
          buf.write(checksum(buf, 1, buf.length - 4), buf.length - 4, 'latin1'); // only the FN is wrong
          this.stats.wrongFn++;
        }
      }
      this.stats.framesSent++;
    }
    const chunk = f.splitWrites;
    if (!chunk || chunk >= buf.length) {
      this.writeChain = this.writeChain.then(() => this.conn.write(buf));
      return;
    }
    for (let i = 0; i < buf.length; i += chunk) {
      const part = buf.subarray(i, i + chunk);
      this.writeChain = this.writeChain.then(() => new Promise<void>((r) => setImmediate(() => (this.conn.write(part), r()))));
    }
  }
}

function stamp(d: Date): string {
  const p = (n: number): string => String(n).padStart(2, '0');
  return `${d.getFullYear()}${p(d.getMonth() + 1)}${p(d.getDate())}${p(d.getHours())}${p(d.getMinutes())}${p(d.getSeconds())}`;
}

/**
 * A result session (H, P, O, R…, L) shaped by the profile: test ID layout from the profile's
 * component rule, codes from its code map. Deterministic for a given `seq`.
 */
export function buildResultSession(profile: AstmProfile, opts: { seq: number; specimenId?: string; patientId?: string; tests?: number; now?: Date }): string[] {
  const codes = Object.keys(profile.codeMap);
  const tests = (codes.length ? codes : ['GLU', 'NA', 'K']).slice(0, opts.tests ?? 3);
  const template = profile.query.orderTestIdTemplate ?? `${'^'.repeat(profile.records.testIdComponent - 1)}{code}${profile.records.testIdSeparator ?? ''}`;
  const tid = (c: string): string => template.replace('{code}', c);
  const ts = stamp(opts.now ?? new Date());
  const spec = opts.specimenId ?? `SIM${String(opts.seq).padStart(6, '0')}`;
  const recs = [
    `H|\\^&|||SIMULATOR^${profile.id}^1|||||LIS||P|LIS2-A2|${ts}`,
    `P|1|${opts.patientId ?? `PAT${String(opts.seq).padStart(5, '0')}`}`,
    `O|1|${spec}||${tests.map(tid).join('\\')}|R||||||N||||SER||||||||||F`,
  ];
  tests.forEach((c, i) => {
    const v = (((opts.seq * 7 + i * 13) % 90) / 10 + 1).toFixed(2);
    const unit = profile.codeMap[c]?.ucum ?? 'mmol/L';
    recs.push(`R|${i + 1}|${tid(c)}|${v}|${unit}|1.0 to 9.0|N||F||SIM||${ts}|SIM-1`);
  });
  recs.push('L|1|N');
  return recs;
}
