/**
 * IHE PCD outputs over MLLP: PCD-01 (vitals to an EMR) and ACM PCD-04 (alarms to an alarm manager).
 * The transport — MLLP client, TLS, stop-and-wait, ACK handling and the MSA-2/MSH-10 check — is the
 * HL7 output's (Hl7MllpOutput), used by composition: only prepare() differs.
 * MSH-10 comes from the outbox key (controlIdForKey), so a re-delivery carries the same MSH-10.
 */
import type { Observation } from '../../contracts/observation';
import type { DeliveryOutcome, Output, OutboxEntry } from '../../contracts/output';
import { controlIdForKey, Hl7MllpOutput } from '../hl7-mllp/hl7-mllp-output';
import type { Hl7MllpOutputOptions } from '../hl7-mllp/config';
import { buildPcd01, buildPcd04 } from './pcd-builder';

export type PcdMode = 'pcd-01' | 'acm';

export interface PcdOutputOptions extends Hl7MllpOutputOptions {
  /** 'pcd-01': vitals as ORU^R01 (alarms are not sent here); 'acm': alarms as ORU^R40 (only alarms). */
  mode: PcdMode;
  /** MSH-3 universal id: the gateway's EUI-64 (16 hex digits), optional. */
  sendingEui64?: string;
}

export class PcdOutput implements Output {
  readonly destination: string;
  readonly mode: PcdMode;
  private readonly transport: Hl7MllpOutput;
  private readonly opts: PcdOutputOptions;

  /** @throws TypeError on an invalid configuration (the HL7 output's checks, and the EUI-64 form). */
  constructor(opts: PcdOutputOptions) {
    if (opts.mode !== 'pcd-01' && opts.mode !== 'acm') throw new TypeError(`pcd output: mode must be pcd-01 or acm, not '${String(opts.mode)}'`);
    if (opts.sendingEui64 && !/^[0-9A-Fa-f]{16}$/.test(opts.sendingEui64)) throw new TypeError('pcd output: sendingEui64 must be 16 hex digits (IEEE EUI-64)');
    this.transport = new Hl7MllpOutput(opts);
    this.destination = this.transport.destination;
    this.mode = opts.mode;
    this.opts = opts;
  }

  get connected(): boolean {
    return this.transport.connected;
  }

  /** The observations this output sends: vitals (no alarm) for PCD-01, alarms for ACM. */
  select(observations: Observation[]): Observation[] {
    return observations.filter((o) => (this.mode === 'acm' ? o.alarm !== undefined : o.alarm === undefined));
  }

  prepare(observations: Observation[], key: string): { payload: Buffer; contentType?: string } {
    if (!observations.length) throw new TypeError('pcd output: prepare() needs at least one observation');
    const now = new Date(observations[0].receivedAt);
    if (Number.isNaN(now.getTime())) throw new TypeError('pcd output: observation receivedAt is not a date');
    const c = this.transport.config;
    const opts = {
      controlId: controlIdForKey(key),
      sendingApp: c.sendingApp,
      sendingEui64: this.opts.sendingEui64,
      sendingFacility: c.sendingFacility,
      receivingApp: c.receivingApp,
      receivingFacility: c.receivingFacility,
      processingId: c.processingId,
      now,
    };
    const text = this.mode === 'acm' ? buildPcd04(observations, opts) : buildPcd01(observations, opts);
    return { payload: Buffer.from(text, 'utf8'), contentType: 'application/hl7-v2' };
  }

  connect(signal: AbortSignal): Promise<void> {
    return this.transport.connect(signal);
  }

  write(batch: OutboxEntry[], signal: AbortSignal): Promise<DeliveryOutcome[]> {
    return this.transport.write(batch, signal);
  }

  close(): Promise<void> {
    return this.transport.close();
  }
}
