/**
 * The HL7 v2 / MLLP driver (architecture §3): MLLP frames → parse → commit in the sink → ACK.
 * AA only after the sink resolved (ack-after-commit); AE for bad content and store failures;
 * AR for message types/versions we do not handle (protocols.md §3.3, docs/errors.md).
 */
import type { CommitResult, DriverStatus, InboundMessage, ObservationSink } from '../../gateway/src/contracts/driver';
import { GatewayError, ParseError, UnsupportedMessageError } from '../../gateway/src/contracts/errors';
import { componentLogger } from '../../gateway/src/log/logger';
import { metrics } from '../../gateway/src/metrics/registry';
import { reportCommitted } from '../../gateway/src/pipeline/committed';
import { buildAck, type AckCode } from './ack';
import type { OrderUpdate } from '../../gateway/src/orders/order-types';
import { parseHl7, peekHeader, readHeader, type Hl7Header } from './hl7-message';
import { MllpServer, nextAckId, type MllpConnectionInfo, type MllpServerOptions } from './mllp-server';
import { isOrderMessage, parseOrders, type OrderParseResult } from './order-parser';
import { parseOru, type OruParseResult } from './oru-parser';

/**
 * Where ORM^O01 / OML^O21 orders go (the order cache). Called after the raw message is committed to
 * the message store and before AA; a throw → AE 207. Called again for a re-sent message (same MSH-10,
 * `info.duplicate`), so a crash between the two commits heals on the re-send: it must be idempotent
 * for the same message (OrderCache.apply de-duplicates on (deviceId, messageControlId)).
 */
export interface Hl7OrderAcceptor {
  accept(updates: OrderUpdate[], header: Hl7Header, raw: Buffer, info: { deviceId: string; duplicate: boolean }): Promise<void> | void;
}

export interface Hl7ReceiverOptions extends Omit<MllpServerOptions, 'logBindings'> {
  deviceId: string;
  /** Profile option: how the bytes are decoded (default utf8; latin1 for 8859/1 devices). */
  charset?: 'utf8' | 'latin1';
  /** Accept ORM^O01 / OML^O21 orders (issue 3 part 4). Absent: orders are answered AR like any unsupported type. */
  orders?: Hl7OrderAcceptor;
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

  constructor(
    private readonly opts: Hl7ReceiverOptions,
    private readonly sink: ObservationSink,
    private readonly onCommitted?: (r: CommitResult, inbound: InboundMessage) => void,
  ) {
    if (!opts.deviceId) throw new TypeError('Hl7Receiver: deviceId is required');
    this.log = componentLogger('hl7-receiver', { deviceId: opts.deviceId });
    const { deviceId: _d, charset: _c, orders: _o, ...serverOpts } = opts;
    this.server = new MllpServer({ ...serverOpts, logBindings: { deviceId: opts.deviceId } }, (payload, conn) => this.handle(payload, conn));
  }

  /** Listen; resolves with the bound port. */
  async start(signal?: AbortSignal): Promise<{ port: number }> {
    this.state = 'starting';
    try {
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
    let header: Hl7Header | undefined;
    try {
      const text = raw.toString(this.opts.charset ?? 'utf8');
      let parsed: OruParseResult | OrderParseResult;
      try {
        const msg = parseHl7(text);
        // ORM^O01 / OML^O21 only when an order acceptor is configured; otherwise parseOru answers AR 200
        parsed = this.opts.orders && isOrderMessage(readHeader(msg)) ? parseOrders(msg) : parseOru(msg);
      } catch (e) {
        header = peekHeader(text);
        throw e;
      }
      header = parsed.header;
      if ('orders' in parsed) return await this.handleOrders(parsed, raw, conn, this.opts.orders as Hl7OrderAcceptor);
      const inbound = this.inbound(parsed.header, raw, conn, parsed.drafts);
      const result = await this.commit(inbound, parsed.header);
      if (Buffer.isBuffer(result)) return result;
      reportCommitted(this.log, result, inbound, this.onCommitted, { connId: conn.id, msg: 'duplicate message (same MSH-10): acknowledged again, not stored' });
      return this.ack(header, 'AA');
    } catch (e) {
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
  private async handleOrders(parsed: OrderParseResult, raw: Buffer, conn: MllpConnectionInfo, orders: Hl7OrderAcceptor): Promise<Buffer> {
    const device = this.opts.deviceId;
    const h = parsed.header;
    const inbound = this.inbound(h, raw, conn, [], { orders: parsed.orders.length });
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

  /** The store's view of a received message; de-duplicated on sender + MSH-10 (protocols.md §3.1: re-sent after a lost ACK). */
  private inbound(h: Hl7Header, raw: Buffer, conn: MllpConnectionInfo, drafts: InboundMessage['drafts'], meta: Record<string, unknown> = {}): InboundMessage {
    const sender = `${h.sendingApp}^${h.sendingFacility}`;
    return {
      deviceId: this.opts.deviceId,
      driver: DRIVER_NAME,
      raw,
      receivedAt: new Date(),
      sourceMessageId: h.controlId,
      sender,
      dedupeKey: `${sender}|${h.controlId}`,
      messageType: `${h.messageType}^${h.trigger}`,
      drafts,
      meta: { version: h.version, remote: conn.remoteAddress, processingId: h.processingId, ...meta },
    };
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
      return Buffer.from(buildAck({ request, code, error, controlId: nextAckId() }), this.opts.charset ?? 'utf8');
    } catch {
      return Buffer.from(buildAck({ code: code === 'AA' ? 'AE' : code, error, controlId: nextAckId() }), 'utf8');
    }
  }

  private async quarantine(raw: Buffer, reason: string, errorCode: string, conn: MllpConnectionInfo): Promise<void> {
    try {
      await this.sink.quarantine({ deviceId: this.opts.deviceId, driver: DRIVER_NAME, raw, reason, errorCode, meta: { remote: conn.remoteAddress } });
      metrics.quarantined.inc({ device: this.opts.deviceId });
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
