import { MllpServer } from '../../drivers/hl7-mllp/mllp-server';
import { buildAck } from '../../drivers/hl7-mllp/ack';
import { parseHl7, readHeader } from '../../drivers/hl7-mllp/hl7-message';

export interface ReceivedMessage {
  controlId: string;
  text: string;
  at: number;
}

/**
 * A HIS for end-to-end tests, built on the driver's own MLLP server: answers AA, or AE for messages
 * matching a pattern, or stays silent; it can be stopped and started on the same port (outage).
 */
export class TestHis {
  received: ReceivedMessage[] = [];
  mode: 'aa' | 'silent' = 'aa';
  aePattern: RegExp | undefined;
  private server: MllpServer | undefined;
  constructor(public port = 0) {}

  async start(): Promise<number> {
    this.server = new MllpServer({ host: '127.0.0.1', port: this.port }, async (payload) => {
      const text = payload.toString('utf8');
      const header = readHeader(parseHl7(text));
      this.received.push({ controlId: header.controlId, text, at: Date.now() });
      if (this.mode === 'silent') return new Promise<Buffer>(() => undefined);
      const ae = this.aePattern?.test(text);
      return Buffer.from(
        buildAck({ request: header, code: ae ? 'AE' : 'AA', controlId: `HIS${this.received.length}`, sendingApp: 'HIS', error: ae ? { hl7Code: 207, text: 'rejected by test HIS' } : undefined }),
      );
    });
    const { port } = await this.server.start();
    this.port = port;
    return port;
  }

  async stop(): Promise<void> {
    await this.server?.close();
    this.server = undefined;
  }

  uniqueControlIds(): Set<string> {
    return new Set(this.received.map((r) => r.controlId));
  }

  /** OBX rows of every received message: code → {value, units, range, flags, status}; plus specimen ids. */
  static obx(text: string): { specimenIds: string[]; obx: Array<{ code: string; value: string; units: string; range: string; flags: string; status: string; equipment: string }> } {
    const m = parseHl7(text);
    return {
      specimenIds: [...m.segments('SPM').map((s) => m.get(s, 2)), ...m.segments('OBR').map((s) => m.get(s, 3))],
      obx: m.segments('OBX').map((s) => ({
        code: m.get(s, 3, 1),
        value: m.get(s, 5),
        units: m.get(s, 6, 1),
        range: m.get(s, 7),
        flags: s.repetitions(8).filter(Boolean).join('~'),
        status: m.get(s, 11),
        equipment: m.get(s, 18),
      })),
    };
  }
}
