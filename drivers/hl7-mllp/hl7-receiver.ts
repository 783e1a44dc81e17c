/**
 * The HL7 v2 / MLLP driver (architecture §3): MLLP frames → parse → commit in the sink → ACK.
 * AA only after the sink resolved (ack-after-commit); AE for bad content and store failures;
 * AR for message types/versions we do not handle (protocols.md §3.3, docs/errors.md).
 */
import type { CommitResult, DriverStatus, InboundMessage, ObservationSink } from '../../gateway/src/contracts/driver';
import { GatewayError, ParseError, UnsupportedMessageError } from '../../gateway/src/contracts/errors';
import { componentLogger } from '../../gateway/src/log/logger';
import { metrics } from '../../gateway/src/metrics/registry';
import { normalizeProcessingId } from '../../gateway/src/pipeline/processing-id';
import { reportCommitted } from '../../gateway/src/pipeline/committed';
import { buildAck, type AckCode } from './ack';
import type { OrderUpdate } from '../../gateway/src/orders/order-types';
import { CharsetError, encodeFor, type CharsetName } from '../../gateway/src/charset/charset';
import type { Hl7Header, Hl7Limits } from './hl7-message';
import { MllpServer, nextAckId, type MllpConnectionInfo, type MllpServerOptions } from './mllp-server';
import type { OrderParseResult } from './order-parser';
import type { OruParseResult } from './oru-parser';
import { DEFAULT_HL7_WORKER_THRESHOLD, isLargeHl7, prepareHl7, type Hl7Prepared, type Hl7PrepareOptions, type Hl7WorkerThreshold } from './hl7-worker-parse';
import { sharedHl7WorkerPool, type Hl7WorkerPool } from './hl7-worker-pool';
import { reclaimAfterWork, WORK_EXPANSION_FACTOR } from '../../gateway/src/pipeline/memory-budget';

/**
 * Where ORM^O01 / OML^O21 orders go (the order cache). Called after the raw message is committed to
 * the message store and before AA; a throw → AE 207. Called again for a re-sent message (same MSH-10,
 * `info.duplicate`), so a crash between the two commits heals on the re-send: it must be idempotent
 * for the same message (OrderCache.apply de-duplicates on (deviceId, messageControlId)).
 */
export interface Hl7OrderAcceptor {
  accept(updates: OrderUpdate[], header: Hl7Header, raw: Buffer, info: { deviceId: string; duplicate: boolean }): Promise<void> | void;
}

export interface Hl7ReceiverOptions extends Omit<MllpServerOptions, 'logBindings' | 'onRefused'> {
  deviceId: string;
  /**
   * Listener charset: how the bytes are decoded when MSH-18 is empty (default utf8; latin1 for 8859/1
   * devices). A valued MSH-18 (HL7 v2.5.1 2.15.9.18, Table 0211) always wins.
   */
  charset?: CharsetName;
  /**
   * Charset for bytes that are invalid in the declared one (e.g. windows-1258 for a device that says
   * UTF-8 but sends legacy Vietnamese). Absent: such a message is quarantined and answered AE.
   */
  fallbackCharset?: CharsetName;
  /** Strict: any content fault is an AE (issue 8 part 2, for sites that want it). Default lenient. */
  strict?: boolean;
  /** Table 0085 status for results whose OBX-11 is empty (a device that never sends one). Default: R + flag. */
  defaultResultStatus?: string;
  /** Accept ORM^O01 / OML^O21 orders (issue 3 part 4). Absent: orders are answered AR like any unsupported type. */
  orders?: Hl7OrderAcceptor;
  /** Structural limits per message (segments, fields, repetitions, components); over one: AE + quarantine. Default DEFAULT_HL7_LIMITS. */
  limits?: Partial<Hl7Limits>;
  /**
   * Messages at least this big are decoded and parsed in the worker pool, off the main thread (issue 10
   * §1); smaller ones inline. Default DEFAULT_HL7_WORKER_THRESHOLD (64 KiB, 1000 segments or 16000 delimiters);
   * false = always inline. A large message is also charged WORK_EXPANSION_FACTOR × its size to the in-flight budget.
   */
  parseInWorker?: Partial<Hl7WorkerThreshold> | false;
  /** The pool for large messages (default: the process-wide one, IOMT_HL7_PARSE_WORKERS threads). */
  workerPool?: Hl7WorkerPool;
}

export const DRIVER_NAME = 'hl7-mllp';

export class Hl7Receiver {
  readonly server: MllpServer;
  private readonly log;
  private state: DriverStatus['state'] = 'stopped';
  private detail: string | undefined;
  private lastMessageAt: string | undefined;
  private lastErrorAt: string | undefined;
  private lastError: string | undefined;
  private port: number | undefined;
  private controlIdReused = 0;
  private flaggedResults = 0;

  constructor(
    private readonly opts: Hl7ReceiverOptions,
    private readonly sink: ObservationSink,
    private readonly onCommitted?: (r: CommitResult, inbound: InboundMessage) => void,
  ) {
    if (!opts.deviceId) throw new TypeError('Hl7Receiver: deviceId is required');
    this.log = componentLogger('hl7-receiver', { deviceId: opts.deviceId });
    const { deviceId: _d, charset: _c, orders: _o, fallbackCharset: _f, strict: _s, defaultResultStatus: _r, limits: _l, parseInWorker: _w, workerPool: _p, ...serverOpts } = opts;
    this.server = new MllpServer(
      {
        ...serverOpts,
        logBindings: { deviceId: opts.deviceId },
        // issue 8: bytes that are not a complete MLLP block (HL7 v2.5.1 Appendix C.2.1) go to quarantine with
        // the reason, bounded as ASTM stray bytes (mllp-server.ts REFUSED_*); an oversize head is GW_ERR_TOO_LARGE
        onRefused: (bytes, reason, conn, run) => {
          this.lastError = `refused: ${reason}`;
          this.lastErrorAt = new Date().toISOString();
          return this.quarantine(bytes, reason, run.kind === 'oversize' ? 'GW_ERR_TOO_LARGE' : 'GW_ERR_PARSE', conn, { mllp: run.kind, bytesReceived: run.total });
        },
      },
      (payload, conn) => this.handle(payload, conn),
    );
    // every refused byte is counted, kept or not (iomt_stray_bytes_total, as the ASTM driver)
    this.server.on('junk', (e: { bytes: number }) => metrics.strayBytes.inc({ device: opts.deviceId }, e.bytes));
    this.server.on('oversize', () => metrics.rejected.inc({ device: opts.deviceId, reason: 'oversize' }));
  }

  /** Listen; resolves with the bound port. */
  async start(signal?: AbortSignal): Promise<{ port: number }> {
    this.state = 'starting';
    try {
      if (this.opts.parseInWorker !== false) (this.opts.workerPool ?? sharedHl7WorkerPool()).warm();
      const r = await this.server.start(signal);
      this.port = r.port;
      this.state = 'listening';
      this.detail = `port ${r.port}`;
      return r;
    } catch (e) {
      this.state = 'error';
      this.detail = (e as Error).message;
      this.lastError = this.detail;
      this.lastErrorAt = new Date().toISOString();
      throw e;
    }
  }

  /** Listen until `signal` aborts, then close. Rejects when the port cannot be bound. */
  async run(signal: AbortSignal): Promise<void> {
    await this.start(signal);
    if (!signal.aborted) await new Promise<void>((r) => signal.addEventListener('abort', () => r(), { once: true }));
    await this.close();
  }

  async close(): Promise<void> {
    await this.server.close();
    this.state = 'stopped';
    this.detail = undefined;
  }

  status(): DriverStatus {
    const s: DriverStatus = { deviceId: this.opts.deviceId, driver: DRIVER_NAME, state: this.state, connections: this.server.connectionCount };
    if (this.state === 'listening' && this.server.connectionCount > 0) s.state = 'connected';
    if (this.detail) s.detail = this.detail;
    if (this.lastMessageAt) s.lastMessageAt = this.lastMessageAt;
    if (this.lastErrorAt) s.lastErrorAt = this.lastErrorAt;
    if (this.lastError) s.lastError = this.lastError;
    if (this.controlIdReused) s.controlIdReused = this.controlIdReused;
    if (this.flaggedResults) s.flaggedResults = this.flaggedResults;
    return s;
  }

  get boundPort(): number | undefined {
    return this.port;
  }

  /** MLLP handler: never throws; always returns an ACK payload. */
  private async handle(raw: Buffer, conn: MllpConnectionInfo): Promise<Buffer> {
    const device = this.opts.deviceId;
    metrics.received.inc({ device });
    this.lastMessageAt = new Date().toISOString();
    // a large message's processing costs several times its bytes (issue 10 §7): charged to the in-flight
    // budget before it starts, given back after the answer; large messages then run one or a few at a time
    const large = this.isLarge(raw);
    const release = large ? await this.server.budget.acquireWork(raw.length * WORK_EXPANSION_FACTOR) : undefined;
    try {
      return await this.process(raw, conn, large);
    } finally {
      release?.();
      if (large) reclaimAfterWork(raw.length); // its garbage returned before the next large message grows the heap (issue 10 §7)
    }
  }

  private async process(raw: Buffer, conn: MllpConnectionInfo, large: boolean): Promise<Buffer> {
    const device = this.opts.deviceId;
    let header: Hl7Header | undefined;
    try {
      // decode + parse: inline for small messages, in the worker pool for large ones (issue 10 §1);
      // both run prepareHl7, so the observations, flags and errors are the same
      const prep = await this.prepare(raw, large);
      if (!prep.ok) {
        header = prep.header;
        throw prep.error;
      }
      const decoded = prep;
      const parsed: OruParseResult | OrderParseResult = 'orders' in prep ? prep.orders : prep.oru;
      header = parsed.header;
      const flags: string[] = decoded.usedFallback ? ['charset-fallback'] : [];
      if ('orders' in parsed) return await this.handleOrders(parsed, raw, conn, this.opts.orders as Hl7OrderAcceptor, decoded.hash, flags);
      for (const f of parsed.messageFlags) if (!flags.includes(f.code)) flags.push(f.code);
      if (parsed.withheld.length) flags.push('parts-withheld');
      const inbound = this.inbound(parsed.header, raw, conn, parsed.drafts, decoded.hash, flags, { charset: decoded.charset, ...(parsed.messageFlags.length ? { quality: parsed.messageFlags.map(({ original: _o, ...f }) => f) } : {}) });
      const result = await this.commit(inbound, parsed.header);
      if (Buffer.isBuffer(result)) return result;
      if (!result.duplicate) {
        if (result.controlIdReused) this.controlIdReused++;
        this.flaggedResults += parsed.drafts.filter((d) => d.quality?.length).length;
        // what could not become a result is kept in quarantine, beside the accepted message
        for (const w of parsed.withheld) {
          await this.quarantine(Buffer.from(w.text, 'utf8'), `part of accepted message ${result.messageUid} withheld: ${w.reason}`, 'GW_ERR_WITHHELD', conn, { messageId: result.messageId, location: w.location }, false);
          metrics.withheld.inc({ device }); // a part of a stored message, not a refused message
        }
        if (decoded.usedFallback) this.log.warn({ charset: decoded.charset, declared: decoded.declared }, 'bytes invalid in the declared charset: decoded with the fallback charset (message flagged)');
      }
      reportCommitted(this.log, result, inbound, this.onCommitted, { connId: conn.id, msg: 'duplicate message (same sender, MSH-10 and content): acknowledged again, not stored' });
      return this.ack(header, 'AA');
    } catch (e) {
      if (e instanceof CharsetError) {
        // AE (Table 0357 102 data type error at MSH-18): the bytes cannot be read as sent; raw kept in quarantine
        await this.quarantine(raw, e.message, e.code, conn);
        this.reject('charset', e.code, e);
        metrics.rejected.inc({ device, reason: 'charset' });
        return this.ack(header, 'AE', { location: 'MSH^1^18', hl7Code: 102, text: e.message });
      }
      if (e instanceof UnsupportedMessageError) {
        // AR: unsupported type/event/version (Table 0357 200/201/203); raw kept in quarantine
        await this.quarantine(raw, e.message, e.code, conn);
        this.reject('unsupported', e.code, e);
        metrics.rejected.inc({ device, reason: 'unsupported' });
        const loc = e.hl7ErrorCode === 203 ? 'MSH^1^12' : 'MSH^1^9';
        return this.ack(header, 'AR', { location: loc, hl7Code: e.hl7ErrorCode, text: e.message });
      }
      if (e instanceof ParseError) {
        await this.quarantine(raw, e.message, e.code, conn);
        this.reject('parse', e.code, e);
        metrics.rejected.inc({ device, reason: 'parse' });
        return this.ack(header, 'AE', { location: e.location, hl7Code: e.hl7ErrorCode ?? 207, text: e.message });
      }
      this.reject('internal', 'GW_ERR_INTERNAL', e);
      metrics.rejected.inc({ device, reason: 'internal' });
      return this.ack(header, 'AE', { hl7Code: 207, text: 'application internal error' });
    }
  }

  /**
   * ORM^O01 / OML^O21: raw message → message store (audit trail, de-duplicated on MSH-10 like ORU),
   * then the orders → `orders.accept` (order cache), and only then AA. The answer is the original-mode
   * general acknowledgement ACK^O01^ACK / ACK^O21^ACK (HL7 v2.5.1 2.9.2 original mode, 4.4 order
   * messages: the application-level ORR^O02 / ORL^O22 is not sent).
   */
  private async handleOrders(parsed: OrderParseResult, raw: Buffer, conn: MllpConnectionInfo, orders: Hl7OrderAcceptor, hash: string, flags: string[]): Promise<Buffer> {
    const device = this.opts.deviceId;
    const h = parsed.header;
    const inbound = this.inbound(h, raw, conn, [], hash, flags, { orders: parsed.orders.length });
    const result = await this.commit(inbound, h);
    if (Buffer.isBuffer(result)) return result;
    try {
      await orders.accept(parsed.orders, h, raw, { deviceId: device, duplicate: result.duplicate });
    } catch (e) {
      // the order cache did not commit: AE 207, the sender may re-send (the audit copy de-duplicates)
      this.reject('orders', e instanceof GatewayError ? e.code : 'GW_ERR_INTERNAL', e);
      metrics.rejected.inc({ device, reason: 'orders' });
      return this.ack(h, 'AE', { hl7Code: 207, text: 'order cache unavailable' });
    }
    reportCommitted(this.log, result, inbound, this.onCommitted, { connId: conn.id, msg: 'duplicate order message (same MSH-10): acknowledged again' });
    return this.ack(h, 'AA');
  }

  /**
   * The store's view of a received message. A duplicate is the same sender (MSH-3^MSH-4), the same
   * MSH-10 *and* the same content: a re-send after a lost ACK (protocols.md §3.1) is recognised, a
   * different message that reuses the control id (analyzers that restart their counter) is stored,
   * delivered and flagged `control-id-reused` (docs/result-fidelity.md "Duplicates").
   */
  private inbound(h: Hl7Header, raw: Buffer, conn: MllpConnectionInfo, drafts: InboundMessage['drafts'], hash: string, flags: string[], meta: Record<string, unknown> = {}): InboundMessage {
    const sender = `${h.sendingApp}^${h.sendingFacility}`;
    const m: InboundMessage = {
      deviceId: this.opts.deviceId,
      driver: DRIVER_NAME,
      raw,
      receivedAt: new Date(),
      sourceMessageId: h.controlId,
      sender,
      dedupeKey: `${sender}|${h.controlId}|${hash}`, // contentHash of the decoded text
      controlKey: `${sender}|${h.controlId}`,
      messageType: `${h.messageType}^${h.trigger}`,
      drafts,
      meta: { version: h.version, remote: conn.remoteAddress, processingId: h.processingId, ...meta },
    };
    // MSH-11.1 normalised (`p`, `P `): production; an id outside Table 0103 is held and flagged, never sent as P
    const pid = normalizeProcessingId(h.processingId);
    if (pid) m.processingId = pid;
    if (pid && !['P', 'T', 'D'].includes(pid) && !flags.includes('processing-id-unknown')) flags.push('processing-id-unknown');
    if (flags.length) m.flags = flags;
    return m;
  }

  /** Decode + parse (prepareHl7): inline below the worker threshold, else in the worker pool (same function, same result). */
  private prepare(raw: Buffer, large: boolean): Promise<Hl7Prepared> | Hl7Prepared {
    const o = this.opts;
    const p: Hl7PrepareOptions = { charset: o.charset, fallbackCharset: o.fallbackCharset, strict: o.strict, defaultResultStatus: o.defaultResultStatus, orders: !!o.orders, ...(o.limits ? { limits: o.limits } : {}) };
    if (o.parseInWorker === false || !large) return prepareHl7(raw, p);
    return (o.workerPool ?? sharedHl7WorkerPool()).prepare(raw, p);
  }

  /** At least the worker threshold (DEFAULT_HL7_WORKER_THRESHOLD or parseInWorker). */
  private isLarge(raw: Buffer): boolean {
    const t = this.opts.parseInWorker;
    return isLargeHl7(raw, { ...DEFAULT_HL7_WORKER_THRESHOLD, ...(t || {}) });
  }

  /** Commit before any AA (architecture §3): the result, or the AE to answer when the store cannot commit. */
  private async commit(inbound: InboundMessage, h: Hl7Header): Promise<CommitResult | Buffer> {
    try {
      return await this.sink.submit(inbound);
    } catch (e) {
      // Table 0357 207 application internal error
      this.reject('store', e instanceof GatewayError ? e.code : 'GW_ERR_STORE', e);
      metrics.rejected.inc({ device: this.opts.deviceId, reason: 'store' });
      return this.ack(h, 'AE', { hl7Code: 207, text: 'store unavailable' });
    }
  }

  private ack(request: Hl7Header | undefined, code: AckCode, error?: { location?: string; hl7Code: number; text: string }): Buffer {
    try {
      return encodeFor(buildAck({ request, code, error, controlId: nextAckId() }), this.opts.charset ?? 'utf8');
    } catch {
      return Buffer.from(buildAck({ code: code === 'AA' ? 'AE' : code, error, controlId: nextAckId() }), 'utf8');
    }
  }

  private async quarantine(raw: Buffer, reason: string, errorCode: string, conn: MllpConnectionInfo, extra: Record<string, unknown> = {}, countAsMessage = true): Promise<void> {
    try {
      await this.sink.quarantine({ deviceId: this.opts.deviceId, driver: DRIVER_NAME, raw, reason, errorCode, meta: { remote: conn.remoteAddress, ...extra } });
      if (countAsMessage) metrics.quarantined.inc({ device: this.opts.deviceId });
    } catch (e) {
      this.log.error({ err: (e as Error)?.message ?? String(e) }, 'could not quarantine a rejected message');
    }
  }

  /** One log line per rejection with the reason (messages carry no PHI: locations and codes only). */
  private reject(kind: string, code: string, e: unknown): void {
    const reason = e instanceof Error ? e.message : String(e);
    this.lastError = `${kind}: ${reason}`;
    this.lastErrorAt = new Date().toISOString();
    this.log.warn({ kind, code, reason }, 'message rejected');
  }
}

/** Re-exported: the de-duplication hash lives beside the parse step it belongs to (hl7-worker-parse.ts). */
export { contentHash } from './hl7-worker-parse';
