/**
 * Reference MLLP server for the HL7 ingest benchmark: the physical limit of "durable before ACK" on
 * this machine. It does nothing but append each message to one file, make it durable with
 * fdatasync, and answer AA (MSA-2 = MSH-10). No parsing beyond MSH-10, no database, no routing.
 *
 * Modes:
 * - 'fsync-each' (A): one fdatasync per message; a message is acked after its own fdatasync.
 *   Appends are serialized over all connections (write → fdatasync → ACK, then the next message).
 * - 'group' (B): group commit. Messages that arrive while an fdatasync is running wait in a queue;
 *   when it finishes, all of them are written with one writev and made durable with one fdatasync,
 *   then all are acked. A message arriving when nothing is in flight starts a commit at once.
 *
 * I/O is done with fs.promises (FileHandle.write/writev/datasync), i.e. on the libuv thread pool:
 * the event loop stays free to read sockets and queue messages while a sync is in progress.
 *
 * File format: per message a 4-byte little-endian length, then the payload.
 * Framing reuses the driver's MllpDecoder (HL7 v2.5.1 Appendix C).
 *
 * As a child process: `node dist/bench/reference-server.js --mode group --file F [--port P]` prints
 * `READY {"port":P,"pid":N}`; on SIGTERM prints `STATS {...}` and exits.
 */
import { open, type FileHandle } from 'node:fs/promises';
import net from 'node:net';
import { MllpDecoder, encodeMllp } from '../drivers/hl7-mllp/mllp-decoder';
import { runMain, serveAsTarget } from './bench-lib';

export type CommitMode = 'fsync-each' | 'group';

export interface ReferenceServerOptions {
  host?: string; // default 127.0.0.1
  port?: number; // default 0
  file: string;
  mode: CommitMode;
  maxBytes?: number; // default 1 MiB
}

export interface ReferenceStats {
  messages: number;
  fsyncs: number;
  bytes: number;
  maxBatch: number;
}

interface Item {
  record: Buffer;
  done: () => void;
}

/** MSH-10 from the first segment: MSH|^~\&|3|4|5|6|7|8|9|10 → the 10th '|'-separated token. */
export function controlIdOf(payload: Buffer): string {
  let end = payload.indexOf(0x0d);
  const lf = payload.indexOf(0x0a);
  if (end === -1 || (lf !== -1 && lf < end)) end = lf;
  const first = payload.toString('latin1', 0, end === -1 ? payload.length : end);
  return first.split('|')[9] ?? '';
}

let ackNo = 0;
function ackFor(payload: Buffer): Buffer {
  // original-mode ACK (HL7 v2.5.1 2.9.2): MSH-9 ACK, new MSH-10, MSA-1 AA, MSA-2 = request MSH-10
  const id = controlIdOf(payload);
  return encodeMllp(Buffer.from(`MSH|^~\\&|REF|BENCH|||${Date.now()}||ACK^R01|R${++ackNo}|P|2.3.1\rMSA|AA|${id}`, 'latin1'));
}

export class ReferenceServer {
  readonly stats: ReferenceStats = { messages: 0, fsyncs: 0, bytes: 0, maxBatch: 0 };
  private fh: FileHandle | undefined;
  private server: net.Server | undefined;
  private queue: Item[] = [];
  private committing = false;
  private readonly sockets = new Set<net.Socket>();

  constructor(private readonly opts: ReferenceServerOptions) {}

  async start(): Promise<{ port: number }> {
    this.fh = await open(this.opts.file, 'a');
    const server = net.createServer((s) => this.accept(s));
    this.server = server;
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.opts.port ?? 0, this.opts.host ?? '127.0.0.1', () => resolve());
    });
    const a = server.address();
    return { port: typeof a === 'object' && a ? a.port : 0 };
  }

  async close(): Promise<void> {
    for (const s of this.sockets) s.destroy();
    await new Promise<void>((r) => (this.server ? this.server.close(() => r()) : r()));
    while (this.committing) await new Promise((r) => setTimeout(r, 5));
    await this.fh?.close();
    this.fh = undefined;
  }

  private accept(socket: net.Socket): void {
    this.sockets.add(socket);
    socket.setNoDelay(true);
    const decoder = new MllpDecoder({ maxBytes: this.opts.maxBytes ?? 1024 * 1024 });
    // acks of one connection go out in arrival order: commits are FIFO
    socket.on('data', (chunk) => {
      for (const ev of decoder.push(chunk)) {
        if (ev.type !== 'frame') continue;
        const payload = ev.payload;
        const record = Buffer.allocUnsafe(4 + payload.length);
        record.writeUInt32LE(payload.length, 0);
        payload.copy(record, 4);
        this.submit({
          record,
          done: () => {
            if (!socket.destroyed) socket.write(ackFor(payload));
          },
        });
      }
    });
    socket.on('error', () => undefined);
    socket.on('close', () => this.sockets.delete(socket));
  }

  private submit(item: Item): void {
    this.queue.push(item);
    if (!this.committing) void this.commitLoop();
  }

  private async commitLoop(): Promise<void> {
    this.committing = true;
    const fh = this.fh;
    try {
      while (this.queue.length && fh) {
        let batch: Item[];
        if (this.opts.mode === 'group') {
          batch = this.queue;
          this.queue = [];
          await fh.writev(batch.map((b) => b.record));
        } else {
          batch = [this.queue.shift() as Item];
          await fh.write(batch[0].record);
        }
        await fh.datasync();
        this.stats.fsyncs++;
        this.stats.messages += batch.length;
        for (const b of batch) this.stats.bytes += b.record.length;
        if (batch.length > this.stats.maxBatch) this.stats.maxBatch = batch.length;
        for (const b of batch) b.done();
      }
    } finally {
      this.committing = false;
    }
  }
}

async function main(argv: string[]): Promise<void> {
  const arg = (k: string) => {
    const i = argv.indexOf(`--${k}`);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const mode = (arg('mode') ?? 'group') as CommitMode;
  if (mode !== 'group' && mode !== 'fsync-each') throw new Error('--mode must be group or fsync-each');
  const file = arg('file');
  if (!file) throw new Error('--file is required');
  const srv = new ReferenceServer({ mode, file, port: Number(arg('port') ?? 0) });
  const { port } = await srv.start();
  serveAsTarget(port, () => srv.close(), () => srv.stats);
}

if (require.main === module) runMain(() => main(process.argv.slice(2)));
