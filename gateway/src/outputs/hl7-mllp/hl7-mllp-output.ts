/**
 * HL7 v2.5.1 ORU^R01 over MLLP to a HIS/LIS (architecture §3 step 5/6).
 * prepare(): deterministic bytes with MSH-10 derived from the outbox key, so a re-delivery after a
 * crash carries the same MSH-10 and the receiver can de-duplicate (protocols.md §3.1).
 * write(): stop-and-wait over one kept-open connection, reconnecting on demand.
 */
import { createHash } from 'node:crypto';
import type { Observation } from '../../contracts/observation';
import type { DeliveryOutcome, Output, OutboxEntry } from '../../contracts/output';
import { DeliveryError, TimeoutError } from '../../contracts/errors';
import { componentLogger, StateChangeLog } from '../../log/logger';
import { parseAck } from '../../../../drivers/hl7-mllp/ack';
import { peekHeader } from '../../../../drivers/hl7-mllp/hl7-message';
import { MllpClient } from '../../../../drivers/hl7-mllp/mllp-client';
import { buildOruR251 } from '../../../../drivers/hl7-mllp/oru-builder';
import { buildOrmStatus, isMppsStatusObservation } from '../../../../drivers/hl7-mllp/orm-status-builder';
import { resolveHl7MllpOutputConfig, type Hl7MllpOutputConfig, type Hl7MllpOutputOptions } from './config';

const BASE32 = 'ABCDEFGHIJKLMNOPQRSTUVWXYZ234567';

/**
 * MSH-10 (ST, 20 chars in v2.5.1) from the outbox key: the key itself when it has ≤ 20 characters of
 * [A-Za-z0-9._-]; otherwise the first 20 base32 characters (100 bits) of SHA-256(key). Stable across
 * rebuilds and restarts.
 */
export function controlIdForKey(key: string): string {
  if (key.length > 0 && key.length <= 20 && /^[A-Za-z0-9._-]+$/.test(key)) return key;
  const h = createHash('sha256').update(key, 'utf8').digest();
  let bits = 0;
  let acc = 0;
  let out = '';
  for (const byte of h) {
    acc = (acc << 8) | byte;
    bits += 8;
    while (bits >= 5 && out.length < 20) {
      out += BASE32[(acc >>> (bits - 5)) & 31];
      bits -= 5;
    }
    acc &= (1 << bits) - 1;
    if (out.length >= 20) break;
  }
  return out;
}

export class Hl7MllpOutput implements Output {
  readonly destination: string;
  readonly config: Hl7MllpOutputConfig;
  private client: MllpClient;
  private readonly log;
  private readonly states = new StateChangeLog();

  constructor(opts: Hl7MllpOutputOptions) {
    const { config, problems } = resolveHl7MllpOutputConfig(opts);
    if (problems.length) throw new TypeError(`hl7-mllp output: ${problems.map((p) => `${p.path}: ${p.reason}`).join('; ')}`);
    this.config = config;
    this.destination = config.destination;
    this.log = componentLogger('hl7-mllp-output', { destination: this.destination });
    this.client = this.newClient();
  }

  /** The connection to the HIS is open now (false before the first delivery and after a drop). */
  get connected(): boolean {
    return this.client.connected;
  }

  private newClient(): MllpClient {
    const c = new MllpClient({
      host: this.config.host,
      port: this.config.port,
      tls: this.config.tls,
      ackTimeoutMs: this.config.ackTimeoutMs,
      connectTimeoutMs: this.config.connectTimeoutMs,
    });
    c.on('connect', () => {
      if (this.states.changed('conn', 'connected')) this.log.info({ host: this.config.host, port: this.config.port }, 'connected');
    });
    c.on('close', () => {
      if (this.states.changed('conn', 'disconnected')) this.log.info({ host: this.config.host, port: this.config.port }, 'disconnected');
    });
    return c;
  }

  prepare(observations: Observation[], key: string): { payload: Buffer; contentType?: string } {
    if (!observations.length) throw new TypeError('hl7-mllp output: prepare() needs at least one observation');
    // `now` from receivedAt: the same input rebuilds to the same bytes
    const now = new Date(observations[0].receivedAt);
    if (Number.isNaN(now.getTime())) throw new TypeError('hl7-mllp output: observation receivedAt is not a date');
    if (observations.every(isMppsStatusObservation)) {
      // issue 11 part 4: an MPPS state change goes to the RIS as ORM^O01 ORC-1 SC / ORC-5 IP|CM|DC (Table 0038)
      const orm = buildOrmStatus(observations, { controlId: controlIdForKey(key), sendingApp: this.config.sendingApp, sendingFacility: this.config.sendingFacility, receivingApp: this.config.receivingApp, receivingFacility: this.config.receivingFacility, processingId: this.config.processingId, country: this.config.country, now });
      return { payload: Buffer.from(orm, 'utf8'), contentType: 'application/hl7-v2' };
    }
    const text = buildOruR251(observations, {
      controlId: controlIdForKey(key),
      sendingApp: this.config.sendingApp,
      sendingFacility: this.config.sendingFacility,
      receivingApp: this.config.receivingApp,
      receivingFacility: this.config.receivingFacility,
      processingId: this.config.processingId,
      country: this.config.country,
      charset: 'UNICODE UTF-8',
      now,
    });
    return { payload: Buffer.from(text, 'utf8'), contentType: 'application/hl7-v2' };
  }

  async connect(signal: AbortSignal): Promise<void> {
    if (signal.aborted) return;
    await this.client.connect();
  }

  /**
   * Deliver in order. AA/CA → delivered; AE/CE → dead (retry when aeRetryable); AR/CR → dead (retry
   * when arRetryable). Timeout, lost connection, an unreadable ACK or one for another MSH-10 → 'retry'
   * for that entry and the batch stops: the entries after it were not attempted and are returned as
   * 'unavailable' (contract: attempts not used up, the worker backs the destination off). Connect
   * refused → 'unavailable' for all remaining entries. Never throws. Counts nothing itself: the
   * delivered / failed-attempt / dead-letter counters move once, when the store settles the outcomes
   * (GatewayStore.settle), so each event is counted once (issue 8 part 7).
   */
  async write(batch: OutboxEntry[], signal: AbortSignal): Promise<DeliveryOutcome[]> {
    const out: DeliveryOutcome[] = [];
    const rest = (from: number, error: string) => {
      for (let k = from; k < batch.length; k++) out.push({ id: batch[k].id, outcome: 'unavailable', error });
    };
    for (let i = 0; i < batch.length; i++) {
      const entry = batch[i];
      if (signal.aborted) {
        rest(i, 'aborted');
        break;
      }
      if (!this.client.connected) {
        try {
          await this.client.connect();
        } catch (e) {
          const msg = (e as Error).message;
          if (this.states.changed('conn', 'unreachable')) this.log.warn({ reason: msg }, 'destination unreachable');
          rest(i, msg);
          break;
        }
      }
      const expectedId = peekHeader(entry.payload.toString('utf8'))?.controlId ?? '';
      let ackBuf: Buffer;
      try {
        ackBuf = await this.client.send(entry.payload);
      } catch (e) {
        const why = e instanceof TimeoutError ? `ACK timeout: ${e.message}` : e instanceof DeliveryError ? e.message : String(e);
        out.push({ id: entry.id, outcome: 'retry', error: why });
        rest(i + 1, 'not attempted: connection reset after a failed delivery');
        break;
      }
      let ack;
      try {
        ack = parseAck(ackBuf);
      } catch (e) {
        out.push({ id: entry.id, outcome: 'retry', error: `unreadable ACK: ${(e as Error).message}` });
        await this.resetConnection();
        rest(i + 1, 'not attempted: connection reset after an unreadable ACK');
        break;
      }
      if (expectedId && ack.controlId !== expectedId) {
        // an ACK for another message: the exchange is out of step (HL7 v2.5.1 2.9.2 MSA-2 echoes MSH-10)
        out.push({ id: entry.id, outcome: 'retry', error: 'ACK for another message (MSA-2 does not match MSH-10)' });
        await this.resetConnection();
        rest(i + 1, 'not attempted: connection reset after an out-of-step ACK');
        break;
      }
      const text = ack.errorText ? `${ack.code}: ${ack.errorText}` : ack.code;
      switch (ack.code) {
        case 'AA':
        case 'CA':
          out.push({ id: entry.id, outcome: 'delivered', detail: ack.code });
          break;
        case 'AE':
        case 'CE':
          out.push({ id: entry.id, outcome: this.config.aeRetryable ? 'retry' : 'dead', error: text });
          break;
        case 'AR':
        case 'CR':
          out.push({ id: entry.id, outcome: this.config.arRetryable ? 'retry' : 'dead', error: text });
          break;
        default:
          out.push({ id: entry.id, outcome: 'retry', error: `unknown ACK code '${ack.code}'` });
      }
    }
    return out;
  }

  private async resetConnection(): Promise<void> {
    await this.client.close().catch(() => undefined);
    this.client.removeAllListeners();
    this.client = this.newClient();
  }

  async close(): Promise<void> {
    await this.client.close();
  }
}
