/**
 * The ASTM driver (architecture §3): transport bytes → AstmLink (E1381/LIS01) → records →
 * results parser (E1394/LIS02) → sink. The frame that completes a message is ACKed only after the
 * sink committed it (ack-after-commit); a store failure is a NAK (the analyzer retransmits), and
 * ENQ is answered with NAK (busy) for a while after it. Unparseable messages are quarantined —
 * quarantine is a commit of the raw bytes — and then ACKed (protocols.md §1.3.7 "store first").
 * Host queries are answered from `hooks.onQuery` as a new sender session after the analyzer's EOT.
 */
import { createHash } from 'node:crypto';
import type { CommitResult, DriverStatus, InboundMessage, ObservationSink } from '../../gateway/src/contracts/driver';
import { GatewayError, ParseError } from '../../gateway/src/contracts/errors';
import { componentLogger, StateChangeLog } from '../../gateway/src/log/logger';
import { metrics } from '../../gateway/src/metrics/registry';
import { normalizeProcessingId } from '../../gateway/src/pipeline/processing-id';
import { reportCommitted } from '../../gateway/src/pipeline/committed';
import { AstmLink, type LinkEvent } from './link';
import { realClock, type LinkClock } from './link-clock';
import type { LinkOptions } from './link-options';
import { buildOrderResponse, type AstmOrder } from './order-response';
import { defaultProfile, type AstmProfile } from './profile';
import { parseRecords } from './records';
import { parseAstmMessage, type AstmHostQuery, type ParsedAstm } from './results-parser';
import { decodeWithFallback, encodeFor } from '../../gateway/src/charset/charset';
import { SerialTransport, type SerialTransportOptions } from './transport/serial-transport';
import { TcpClientTransport, type TcpClientTransportOptions } from './transport/tcp-client-transport';
import { TcpServerTransport, type TcpServerTransportOptions } from './transport/tcp-server-transport';
import type { Transport, TransportConnection } from '../../gateway/src/contracts/transport';

export const DRIVER_NAME = 'astm';

export type AstmTransportOptions =
  | ({ kind: 'serial' } & Partial<Omit<SerialTransportOptions, 'path'>> & { path: string })
  | ({ kind: 'tcp-server' } & TcpServerTransportOptions)
  | ({ kind: 'tcp-client' } & TcpClientTransportOptions);

export interface AstmDriverOptions {
  deviceId: string;
  /** Device profile (firmware-config/profiles/astm); default: generic strict LIS2-A2. */
  profile?: AstmProfile;
  transport: AstmTransportOptions;
  /** Overrides of the profile's link options (timers in tests, lenient switches). */
  link?: Partial<LinkOptions>;
  /** After a store failure answer ENQ with NAK (busy) this long. Default 10000. */
  storeBusyMs?: number;
  /** onQuery must answer within this time (analyzers time out after 10–30 s). Default 8000. */
  queryTimeoutMs?: number;
  /** Clock for the link timers (tests). */
  clock?: LinkClock;
}

export interface AstmDriverHooks {
  onCommitted?(r: CommitResult, inbound: InboundMessage): void;
  /** Answer a host query from the order cache. 'unknown' → `L|1|I` (or O.26 Y/Z per profile). */
  onQuery?(q: AstmHostQuery, from?: { remote: string }): Promise<AstmOrder[] | 'unknown'>;
}

interface StrayRun {
  bytes: number[];
  timer: NodeJS.Timeout | undefined;
  warned: boolean;
  /** runs quarantined on this connection */
  kept: number;
}

const STRAY_MIN_BYTES = 16;
const STRAY_IDLE_MS = 500;
const STRAY_MAX_BYTES = 64 * 1024;
const STRAY_MAX_KEPT_PER_CONNECTION = 16;

export class AstmDriver {
  readonly profile: AstmProfile;
  private readonly log;
  private readonly changes = new StateChangeLog();
  private transport: Transport | undefined;
  /** Per connection: its link and the run of bytes that arrived outside a session (see collectStray). */
  private links = new Map<string, { link: AstmLink; conn: TransportConnection; stray: StrayRun }>();
  private storeBusyUntil = 0;
  private busyTimer: NodeJS.Timeout | undefined;
  private lastMessageAt: string | undefined;
  private lastError: string | undefined;
  private lastErrorAt: string | undefined;
  private closed = false;
  private controlIdReused = 0;
  private flaggedResults = 0;

  constructor(
    readonly opts: AstmDriverOptions,
    private readonly sink: ObservationSink,
    private readonly hooks: AstmDriverHooks = {},
  ) {
    if (!opts.deviceId) throw new TypeError('AstmDriver: deviceId is required');
    if (!opts.transport) throw new TypeError('AstmDriver: transport is required');
    this.profile = opts.profile ?? defaultProfile();
    this.log = componentLogger('astm-driver', { deviceId: opts.deviceId });
  }

  /** Open the transport (serial: keeps retrying; TCP server: rejects when the port cannot be bound). */
  async start(signal?: AbortSignal): Promise<void> {
    if (this.transport) return;
    this.closed = false;
    const t = this.opts.transport;
    const s = this.profile.serial;
    let transport: Transport;
    if (t.kind === 'serial') {
      const { kind: _k, ...o } = t;
      transport = new SerialTransport({ baudRate: s.baudRate, dataBits: s.dataBits, parity: s.parity, stopBits: s.stopBits, rtscts: s.rtscts, xon: s.xon, ...o });
    } else if (t.kind === 'tcp-server') {
      const { kind: _k, ...o } = t;
      transport = new TcpServerTransport(o);
    } else {
      const { kind: _k, ...o } = t;
      transport = new TcpClientTransport(o);
    }
    this.transport = transport;
    transport.on('connection', (c: TransportConnection) => this.attach(c));
    transport.on('state', (st: { state: string; lastError?: string }) => {
      if (this.changes.changed('transport', st.state)) this.log.info({ state: st.state, error: st.lastError }, 'transport state');
    });
    await transport.start(signal);
  }

  /** Run until `signal` aborts, then close. */
  async run(signal: AbortSignal): Promise<void> {
    await this.start(signal);
    if (!signal.aborted) await new Promise<void>((r) => signal.addEventListener('abort', () => r(), { once: true }));
    await this.close();
  }

  /** Safe twice. */
  async close(): Promise<void> {
    this.closed = true;
    if (this.busyTimer) clearTimeout(this.busyTimer);
    for (const { stray } of this.links.values()) if (stray.timer) clearTimeout(stray.timer);
    const links = [...this.links.values()];
    this.links.clear(); // first: shutting down, a stray run is not worth a quarantine write into a closing store
    for (const { link, conn } of links) {
      link.close();
      conn.close();
    }
    const t = this.transport;
    this.transport = undefined;
    await t?.close();
  }

  /** Bound port of a TCP server transport. */
  get boundPort(): number | undefined {
    return this.transport instanceof TcpServerTransport ? this.transport.boundPort : undefined;
  }

  status(): DriverStatus {
    const ts = this.transport?.status();
    const s: DriverStatus = { deviceId: this.opts.deviceId, driver: DRIVER_NAME, state: this.closed || !ts ? 'stopped' : ts.state, connections: this.links.size };
    if (ts?.detail) s.detail = ts.detail;
    if (this.lastMessageAt) s.lastMessageAt = this.lastMessageAt;
    const err = this.lastError ?? ts?.lastError;
    if (err) s.lastError = err;
    const errAt = this.lastErrorAt ?? ts?.lastErrorAt;
    if (errAt) s.lastErrorAt = errAt;
    if (this.controlIdReused) s.controlIdReused = this.controlIdReused;
    if (this.flaggedResults) s.flaggedResults = this.flaggedResults;
    return s;
  }

  /**
   * Order download (broadcast mode): send orders to every connected analyzer as a new sender session
   * (E1381 establishment → H, P, O…, L). Resolves with the number of links that took them; a link
   * that is busy receiving waits its turn (the instrument wins contention, E1381 8.2.7.1).
   */
  async sendOrders(orders: AstmOrder[]): Promise<number> {
    if (!orders.length) return 0;
    const records = buildOrderResponse({ specimenIds: [], tests: ['ALL'], status: 'O' }, orders, { profile: this.profile });
    const encoded = this.encodeRecords(records);
    let sent = 0;
    for (const { link, conn } of [...this.links.values()]) {
      try {
        await link.send(encoded);
        sent++;
      } catch (e) {
        this.error(`order download: ${(e as Error).message}`);
        this.log.warn({ conn: conn.id, err: (e as Error).message }, 'order download failed');
      }
    }
    return sent;
  }

  /** Tell the link the store is (un)available: ENQ is answered with NAK (busy) while unavailable. */
  setStoreAvailable(available: boolean): void {
    this.storeBusyUntil = available ? 0 : Number.MAX_SAFE_INTEGER;
    for (const { link } of this.links.values()) link.setBusy(!available);
  }

  // ------------------------------------------------------------------------------------------

  private attach(conn: TransportConnection): void {
    if (this.closed) return conn.close();
    const link: AstmLink = new AstmLink(
      {
        write: (b) => {
          if (this.log.isLevelEnabled('trace')) this.log.trace({ conn: conn.id, raw: b.toString('latin1') }, 'tx');
          conn.write(b);
        },
        onMessage: (records): Promise<void> => this.handleMessage(records, conn, link),
        onDiscard: (records, reason, rejectedFrame) => void this.quarantineDiscarded(records, reason, conn, rejectedFrame),
        onEvent: (e) => this.onLinkEvent(e, conn),
      },
      { ...this.profile.link, ...(this.opts.link ?? {}), role: 'computer' },
      this.opts.clock ?? realClock,
    );
    link.setBusy(Date.now() < this.storeBusyUntil);
    this.links.set(conn.id, { link, conn, stray: { bytes: [], timer: undefined, warned: false, kept: 0 } });
    this.log.info({ conn: conn.id, remote: conn.remote }, 'connection open');
    conn.on('data', (b: Buffer) => {
      if (this.log.isLevelEnabled('trace')) this.log.trace({ conn: conn.id, raw: b.toString('latin1') }, 'rx');
      link.onBytes(b);
    });
    conn.on('error', (e: Error) => this.error(`connection error: ${e.message}`));
    conn.on('close', () => {
      link.close();
      this.flushStray(conn);
      this.links.delete(conn.id);
      this.log.info({ conn: conn.id }, 'connection closed');
    });
  }

  private onLinkEvent(e: LinkEvent, conn: TransportConnection): void {
    const device = this.opts.deviceId;
    switch (e.type) {
      case 'nak':
        metrics.rejected.inc({ device, reason: `nak-${e.reason}` });
        this.log.warn({ conn: conn.id, reason: e.reason, fn: e.fn }, 'NAK sent');
        break;
      case 'duplicate-frame':
        this.log.info({ conn: conn.id, fn: e.fn }, 'repeated frame (lost ACK): ACKed again, not processed twice');
        break;
      case 'timeout':
      case 'contention':
      case 'interrupted':
      case 'send-failed':
        this.log.warn({ conn: conn.id, event: e.type, detail: e }, 'link event');
        break;
      case 'state':
        this.log.debug({ conn: conn.id, state: e.state }, 'link state');
        this.flushStray(conn); // a run of stray bytes ends where a session begins (or the link closes)
        break;
      case 'stray-bytes':
        // only between sessions: inside one, the link answers anomalies itself (NAK, lenient options)
        if (!(this.opts.link?.rawRecords ?? this.profile.link.rawRecords) && this.links.get(conn.id)?.link.linkState === 'neutral') this.collectStray(e.byte, conn);
        break;
      default:
        break;
    }
  }

  /**
   * Bytes the link ignored (LIS01 §1.3: outside a transfer phase only ENQ matters). A lone control
   * byte is line noise; a run of them usually means the device speaks another protocol (bioMérieux
   * mini VIDAS output, a printer port) or the profile does not match it. Runs of at least
   * STRAY_MIN_BYTES go to quarantine after STRAY_IDLE_MS of quiet (or at STRAY_MAX_BYTES), so the
   * operator sees what arrived; the warning is logged once per connection.
   */
  private collectStray(byte: number, conn: TransportConnection): void {
    const st = this.links.get(conn.id)?.stray;
    if (!st) return;
    st.bytes.push(byte);
    if (st.bytes.length >= STRAY_MAX_BYTES) return this.flushStray(conn);
    if (st.timer) st.timer.refresh();
    else {
      st.timer = setTimeout(() => this.flushStray(conn), STRAY_IDLE_MS);
      st.timer.unref();
    }
  }

  private flushStray(conn: TransportConnection): void {
    const st = this.links.get(conn.id)?.stray;
    if (!st) return;
    if (st.timer) clearTimeout(st.timer);
    st.timer = undefined;
    const bytes = st.bytes;
    st.bytes = [];
    if (bytes.length) metrics.strayBytes.inc({ device: this.opts.deviceId }, bytes.length);
    if (bytes.length < STRAY_MIN_BYTES) return;
    // bounded: a peer streaming garbage cannot fill the disk through the quarantine (the metric keeps counting)
    if (st.kept >= STRAY_MAX_KEPT_PER_CONNECTION) return;
    if (++st.kept === STRAY_MAX_KEPT_PER_CONNECTION) this.log.warn({ conn: conn.id }, `stray bytes: quarantined ${STRAY_MAX_KEPT_PER_CONNECTION} runs on this connection; further ones are only counted`);
    const device = this.opts.deviceId;
    const reason = `${bytes.length} bytes outside an ASTM session (not ASTM E1381 framing: another protocol, or a profile that does not match the device)`;
    if (!st.warned) {
      st.warned = true;
      this.error(reason);
      this.log.warn({ conn: conn.id, bytes: bytes.length }, 'bytes outside an ASTM session (kept in quarantine); check the device protocol and profile');
    }
    this.sink
      .quarantine({ deviceId: device, driver: DRIVER_NAME, raw: Buffer.from(bytes), reason, errorCode: 'GW_ERR_PARSE', meta: { remote: conn.remote } })
      .then(
        () => metrics.quarantined.inc({ device }),
        (e: unknown) => this.log.error({ err: (e as Error).message }, 'could not quarantine bytes outside a session'),
      );
  }

  private error(msg: string): void {
    this.lastError = msg;
    this.lastErrorAt = new Date().toISOString();
  }

  /**
   * Records we send (order answers, downloads) in the profile's encoding. Names are folded to ASCII only
   * toward an analyzer whose profile says so (`asciiFold`); a character the encoding cannot carry is
   * an error (CharsetError), never a silent '?'.
   */
  private encodeRecords(records: string[]): Buffer[] {
    return records.map((r) => encodeFor(r, this.profile.encoding, { asciiFold: this.profile.asciiFold }));
  }

  /** The message's bytes as stored: each record followed by its CR (LIS02 record terminator). */
  private rawOf(records: Buffer[]): Buffer {
    const cr = Buffer.from([0x0d]);
    const parts: Buffer[] = [];
    for (const r of records) parts.push(r, cr);
    return Buffer.concat(parts);
  }

  /**
   * Record text in the profile's encoding (default UTF-8; LIS01-A2 §4.3 allows multi-byte encodings by
   * agreement), strictly: bytes invalid in it use the profile's `fallbackEncoding` (message flagged
   * 'charset-fallback'), or the message goes to quarantine. Never a silent U+FFFD.
   */
  private decode(raw: Buffer): { lines: string[]; usedFallback: boolean } {
    const r = decodeWithFallback(raw, this.profile.encoding, this.profile.fallbackEncoding);
    const lines = r.text.split('\r');
    if (lines.length && lines[lines.length - 1] === '') lines.pop();
    return { lines, usedFallback: r.usedFallback };
  }

  /** Awaited by the link before the completing frame is ACKed; a rejection makes it NAK. */
  private async handleMessage(records: Buffer[], conn: TransportConnection, link: AstmLink): Promise<void> {
    const device = this.opts.deviceId;
    metrics.received.inc({ device });
    this.lastMessageAt = new Date().toISOString();
    const raw = this.rawOf(records);
    let parsed: ParsedAstm;
    let usedFallback = false;
    let lines: string[];
    try {
      const dec = this.decode(raw);
      lines = dec.lines;
      usedFallback = dec.usedFallback;
      parsed = parseAstmMessage(parseRecords(lines), this.profile);
    } catch (e) {
      const err = e instanceof GatewayError ? e : new ParseError((e as Error).message, { cause: e });
      // store first: quarantine commits the raw bytes; the ACK follows that commit
      await this.sink.quarantine({ deviceId: device, driver: DRIVER_NAME, raw, reason: err.message, errorCode: err.code, meta: { remote: conn.remote, location: (err as ParseError).location } });
      metrics.quarantined.inc({ device });
      this.error(`quarantined: ${err.message}`);
      this.log.warn({ conn: conn.id, reason: err.message, code: err.code }, 'message quarantined');
      return;
    }
    const h = parsed.header;
    const faults = [...parsed.drafts.flatMap((d) => d.quality ?? []).map((q) => `${q.code} at ${q.location ?? '?'}`), ...(parsed.withheld ?? []).map((w) => `${w.reason} at ${w.location}`)];
    if (this.profile.strict && faults.length) {
      // strict profile: the whole message to quarantine with every reason (no PHI), then the ACK (store first)
      const reason = `strict profile: ${faults.length} fault(s): ${faults.slice(0, 10).join('; ')}${faults.length > 10 ? '; …' : ''}`;
      await this.sink.quarantine({ deviceId: device, driver: DRIVER_NAME, raw, reason, errorCode: 'GW_ERR_PARSE', meta: { remote: conn.remote } });
      metrics.quarantined.inc({ device });
      this.error(`quarantined: ${reason}`);
      this.log.warn({ conn: conn.id, faults: faults.length }, 'message quarantined (strict profile)');
      return;
    }
    const sender = h.sender.filter((x) => x).join('^');
    const withheld = parsed.withheld ?? [];
    const flags: string[] = [];
    if (usedFallback) flags.push('charset-fallback');
    if (withheld.length) flags.push('parts-withheld');
    const inbound: InboundMessage = {
      deviceId: device,
      driver: DRIVER_NAME,
      raw,
      receivedAt: new Date(),
      messageType: 'ASTM',
      drafts: parsed.drafts,
      // the same rule as HL7 (docs/result-fidelity.md "Duplicates"): same sender, H.3 and content; a whole
      // message re-sent after a lost final ACK is a duplicate, another message reusing H.3 is flagged
      dedupeKey: `${sender}|${h.messageControlId ?? ''}|${astmContentHash(lines)}`,
      meta: { remote: conn.remote, version: h.version, processingId: h.processingId, queries: parsed.queries.length, termination: parsed.terminationCode, records: records.length, encoding: this.profile.encoding },
    };
    if (h.messageControlId) {
      inbound.sourceMessageId = h.messageControlId;
      inbound.controlKey = `${sender}|${h.messageControlId}`;
    }
    if (sender) inbound.sender = sender;
    // H.12 processing id (P production, T training, D debugging, Q quality control), normalised; a QC specimen
    // (O.12 Q) makes the whole message quality control: it reaches only destinations that take Q
    const pid = normalizeProcessingId(h.processingId);
    if (parsed.qualityControl && (!pid || pid === 'P')) {
      inbound.processingId = 'Q';
      flags.push('qc-specimen');
    } else if (pid) inbound.processingId = pid;
    if (pid && !['P', 'T', 'D', 'Q'].includes(pid)) flags.push('processing-id-unknown');
    if (flags.length) inbound.flags = flags;
    let result: CommitResult;
    try {
      result = await this.sink.submit(inbound);
    } catch (e) {
      // never ACK without a commit (architecture §3); NAK now, and answer ENQ with NAK (busy) for a while
      metrics.rejected.inc({ device, reason: 'store' });
      this.error(`store: ${(e as Error).message}`);
      this.log.error({ conn: conn.id, err: (e as Error).message, code: (e as GatewayError).code }, 'commit failed: NAK');
      this.markStoreBusy();
      throw e;
    }
    if (!result.duplicate) {
      if (result.controlIdReused) this.controlIdReused++;
      this.flaggedResults += parsed.drafts.filter((d) => d.quality?.length).length;
      // results the profile withholds (raw instrument signals, records without a test code) stay visible
      for (const w of withheld) {
        try {
          await this.sink.quarantine({ deviceId: device, driver: DRIVER_NAME, raw: Buffer.from(lines[Number(w.location.split('^')[1]) - 1] ?? '', 'utf8'), reason: `part of accepted message ${result.messageUid} withheld: ${w.reason}`, errorCode: 'GW_ERR_WITHHELD', meta: { remote: conn.remote, messageId: result.messageId, location: w.location } });
          metrics.withheld.inc({ device }); // a part of a stored message, not a refused message
        } catch (e) {
          this.log.error({ err: (e as Error).message }, 'could not keep a withheld result in quarantine');
        }
      }
    }
    reportCommitted(this.log, result, inbound, this.hooks.onCommitted, { connId: conn.id, msg: 'duplicate message: acknowledged, not stored again' });
    for (const q of parsed.queries) void this.answerQuery(q, link, conn);
  }

  private markStoreBusy(): void {
    const ms = this.opts.storeBusyMs ?? 10_000;
    this.storeBusyUntil = Date.now() + ms;
    for (const { link } of this.links.values()) link.setBusy(true);
    if (this.busyTimer) clearTimeout(this.busyTimer);
    this.busyTimer = setTimeout(() => {
      this.busyTimer = undefined;
      if (Date.now() >= this.storeBusyUntil) for (const { link } of this.links.values()) link.setBusy(false);
    }, ms);
    this.busyTimer.unref?.();
  }

  private async quarantineDiscarded(records: Buffer[], reason: string, conn: TransportConnection, rejectedFrame?: Buffer): Promise<void> {
    const device = this.opts.deviceId;
    try {
      // records (CR-terminated), then the frame the analyzer gave up on, exactly as received (STX … trailer)
      const raw = rejectedFrame ? Buffer.concat([this.rawOf(records), rejectedFrame]) : this.rawOf(records);
      const meta = rejectedFrame ? { remote: conn.remote, records: records.length, rejectedFrameBytes: rejectedFrame.length } : { remote: conn.remote };
      await this.sink.quarantine({ deviceId: device, driver: DRIVER_NAME, raw, reason: `incomplete message: ${reason}`, errorCode: 'GW_ERR_PARSE', meta });
      metrics.quarantined.inc({ device });
    } catch (e) {
      this.log.error({ err: (e as Error).message }, 'could not quarantine a discarded partial message');
    }
    this.log.warn({ conn: conn.id, reason, records: records.length }, 'partial message discarded (kept in quarantine)');
  }

  private async answerQuery(q: AstmHostQuery, link: AstmLink, conn: TransportConnection): Promise<void> {
    if (!this.hooks.onQuery) {
      this.log.info({ conn: conn.id }, 'host query received; no onQuery hook configured, not answered');
      return;
    }
    const timeoutMs = this.opts.queryTimeoutMs ?? 8_000;
    let timer: NodeJS.Timeout | undefined;
    try {
      const orders = await Promise.race([
        this.hooks.onQuery(q, { remote: conn.remote }), // the node answers only its configured analyzer (issue 10 §3)
        new Promise<never>((_, rej) => {
          timer = setTimeout(() => rej(new Error(`onQuery did not answer within ${timeoutMs} ms`)), timeoutMs);
        }),
      ]);
      const records = buildOrderResponse(q, orders, { profile: this.profile });
      await link.send(this.encodeRecords(records));
      this.log.info({ conn: conn.id, orders: orders === 'unknown' ? 0 : orders.length }, 'host query answered');
    } catch (e) {
      this.error(`host query: ${(e as Error).message}`);
      this.log.warn({ conn: conn.id, err: (e as Error).message }, 'host query not answered');
    } finally {
      if (timer) clearTimeout(timer);
    }
  }
}

/**
 * "Same content" for ASTM de-duplication: SHA-256 of the decoded records with H.14 (date and time of
 * message, LIS02 H.14) blanked. An analyzer that re-sends a whole message after a lost final ACK may
 * restamp H.14; every other byte of the message counts.
 */
export function astmContentHash(lines: string[]): string {
  const h = createHash('sha256');
  lines.forEach((l, i) => {
    if (i === 0 && /^H/i.test(l) && l.length > 1) {
      const f = l.split(l[1]);
      if (f.length > 13) f[13] = ''; // [0] 'H', [1] delimiters, … [13] H.14 (H.2 holds the other delimiters)
      l = f.join(l[1]);
    }
    h.update(l, 'utf8').update('\r');
  });
  return h.digest('hex');
}
