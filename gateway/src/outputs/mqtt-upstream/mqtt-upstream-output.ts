/**
 * MQTT upstream (issue 12 §5): vitals and alarms to an existing broker or cluster (mosquitto, EMQX,
 * HiveMQ, a provincial broker), the bus that scales past one box. mqtt.js client, MQTT 3.1.1, QoS 1,
 * optional TLS (mqtts://) and a topic prefix.
 *
 * Durability is the gateway's outbox, not the client's memory store: one outbox entry = one PUBLISH;
 * an entry is 'delivered' only on its PUBACK (MQTT 3.1.1 §4.3.2 QoS 1: the sender owns the message
 * until PUBACK). The client connects with a clean session and never reconnects or re-sends by itself
 * (reconnectPeriod 0): what is not acknowledged stays in the outbox, across restarts, and the outbox
 * worker retries it. QoS 1 is at least once: a subscriber de-duplicates by `key` in the payload.
 *
 * Topic: `<prefix>/<gateway>/<vitals|alarms>/<device>` (device = EUI-64, else the equipment id, else
 * the gateway's device id; characters outside [A-Za-z0-9._-] become `_`: no `+`, `#` or `/` from data).
 * Payload (JSON, UTF-8): { v: 1, key, topic, gateway, observations: Observation[] } — the observations
 * as the store holds them (MDC code, LOINC codings, UCUM unit, device, bed, time, alarm). Built once in
 * prepare(): a re-delivery publishes the same bytes to the same topic.
 */
import { createHash } from 'node:crypto';
import { hostname } from 'node:os';
import { connectAsync, type IClientOptions, type MqttClient } from 'mqtt';
import type { Observation } from '../../contracts/observation';
import type { DeliveryOutcome, Output, OutboxEntry } from '../../contracts/output';
import { componentLogger, StateChangeLog } from '../../log/logger';
import { isLoopbackHost } from '../../tls/http-tls';

export interface MqttUpstreamOptions {
  destination: string;
  /** mqtt://host:port or mqtts://host:port (TLS). */
  url: string;
  username?: string;
  password?: string;
  /** MQTT client id (default: defaultUpstreamClientId(gateway, destination)). */
  clientId?: string;
  /** Topic prefix (default 'iomt'); no wildcards. */
  topicPrefix?: string;
  /** Gateway name in the topic (default 'gateway'). */
  gateway?: string;
  tls?: { ca?: Buffer; cert?: Buffer; key?: Buffer; rejectUnauthorized?: boolean };
  /**
   * Allow plain mqtt:// to a broker beyond loopback (patient data unencrypted on the network: a closed
   * network the site trusts). Default false: such a URL is refused at start (mqttUpstreamProblems).
   */
  allowPlaintext?: boolean;
  /** Wait this long for a PUBACK, then 'retry' (default 10 s). */
  pubackTimeoutMs?: number;
  connectTimeoutMs?: number;
}

/** Problems in the options (empty = valid). */
export function mqttUpstreamProblems(o: Partial<MqttUpstreamOptions>): string[] {
  const p: string[] = [];
  if (!o.destination) p.push('destination: required');
  let u: URL | undefined;
  try {
    u = new URL(o.url ?? '');
  } catch {
    p.push(`url: '${o.url ?? ''}' is not a URL (mqtt://host:port or mqtts://host:port)`);
  }
  if (u && u.protocol !== 'mqtt:' && u.protocol !== 'mqtts:') p.push(`url: scheme must be mqtt: or mqtts:, not ${u.protocol}`);
  // vitals and alarms are patient data: plain MQTT only to this box (as the HTTP port: plain only on loopback
  // unless IOMT_HTTP_INSECURE), else mqtts:// (MQTT 3.1.1 5.4.9: TLS is how MQTT protects data in transit)
  if (u && u.protocol === 'mqtt:' && !isLoopbackHost(u.hostname) && o.allowPlaintext !== true) {
    p.push(`url: mqtt:// to ${u.hostname.slice(0, 253)} would send patient data unencrypted beyond this machine: use mqtts://, or set allowPlaintext (only on a network you trust)`);
  }
  if (o.topicPrefix !== undefined && (!/^[^#+\x00]{1,64}$/.test(o.topicPrefix) || o.topicPrefix.startsWith('/') || o.topicPrefix.endsWith('/'))) p.push('topicPrefix: 1-64 characters, no + # or leading/trailing /');
  return p;
}

const topicPart = (s: string): string => s.replace(/[^A-Za-z0-9._-]/g, '_').slice(0, 64) || '_';

/**
 * The default client id: `iomt-gw-` + 15 hex of SHA-256(gateway name, host name, destination), 23
 * characters (the length every server must accept, MQTT 3.1.1 3.1.3.1 [MQTT-3.1.3-5]). Many hospitals
 * publish to one provincial broker with the same shipped flow (destination `upstream`): a client id
 * made of the destination alone was the same for all of them, and a broker closes the older connection
 * of a client id that connects again (MQTT-3.1.4-2), so the gateways kept disconnecting each other.
 */
export function defaultUpstreamClientId(gateway: string, destination: string, host = hostname()): string {
  return `iomt-gw-${createHash('sha256').update(`${gateway}\n${host}\n${destination}`).digest('hex').slice(0, 15)}`;
}

export class MqttUpstreamOutput implements Output {
  readonly destination: string;
  private readonly opts: MqttUpstreamOptions;
  private client: MqttClient | undefined;
  private readonly log;
  private readonly states = new StateChangeLog();

  /** @throws TypeError listing the configuration problems. */
  constructor(opts: MqttUpstreamOptions) {
    const problems = mqttUpstreamProblems(opts);
    if (problems.length) throw new TypeError(`mqtt-upstream output: ${problems.join('; ')}`);
    this.opts = opts;
    this.destination = opts.destination;
    this.log = componentLogger('mqtt-upstream', { destination: this.destination });
  }

  get connected(): boolean {
    return this.client?.connected === true;
  }

  /** The topic of a group of observations. */
  topicFor(observations: Observation[]): string {
    const first = observations[0];
    const kind = observations.some((o) => o.alarm) ? 'alarms' : 'vitals';
    const device = first.equipment?.eui64 ?? first.equipment?.id ?? first.deviceId;
    return `${this.opts.topicPrefix ?? 'iomt'}/${topicPart(this.opts.gateway ?? 'gateway')}/${kind}/${topicPart(device)}`;
  }

  prepare(observations: Observation[], key: string): { payload: Buffer; contentType?: string } {
    if (!observations.length) throw new TypeError('mqtt-upstream output: prepare() needs at least one observation');
    const topic = this.topicFor(observations);
    const body = { v: 1, key, topic, gateway: this.opts.gateway ?? 'gateway', observations };
    return { payload: Buffer.from(JSON.stringify(body), 'utf8'), contentType: 'application/json' };
  }

  private async ensureConnected(): Promise<MqttClient> {
    if (this.client?.connected) return this.client;
    await this.dropClient();
    const u = new URL(this.opts.url);
    const o: IClientOptions = {
      clientId: this.opts.clientId || defaultUpstreamClientId(this.opts.gateway ?? 'gateway', this.destination),
      username: this.opts.username || undefined,
      password: this.opts.password || undefined,
      clean: true, // the outbox holds what is not acknowledged, not a broker or client session
      reconnectPeriod: 0, // no reconnect or re-send by the client: the outbox worker decides
      connectTimeout: this.opts.connectTimeoutMs ?? 10_000,
      protocolVersion: 4,
      queueQoSZero: false,
      ...(u.protocol === 'mqtts:' ? { ca: this.opts.tls?.ca, cert: this.opts.tls?.cert, key: this.opts.tls?.key, rejectUnauthorized: this.opts.tls?.rejectUnauthorized ?? true } : {}),
    };
    const c = await connectAsync(this.opts.url, o);
    c.on('error', (e) => {
      if (this.states.changed('err', e.message)) this.log.warn({ reason: e.message }, 'upstream broker error');
    });
    c.on('close', () => {
      if (this.states.changed('conn', 'disconnected')) this.log.info({ url: this.safeUrl() }, 'disconnected');
    });
    if (this.states.changed('conn', 'connected')) this.log.info({ url: this.safeUrl() }, 'connected');
    this.client = c;
    return c;
  }

  private safeUrl(): string {
    const u = new URL(this.opts.url);
    u.username = '';
    u.password = '';
    return u.toString();
  }

  private async dropClient(): Promise<void> {
    const c = this.client;
    this.client = undefined;
    if (c) await c.endAsync(true).catch(() => undefined);
  }

  async connect(signal: AbortSignal): Promise<void> {
    if (signal.aborted) return;
    await this.ensureConnected();
  }

  /**
   * Publish the batch in order (QoS 1, pipelined on one connection). PUBACK → delivered. No PUBACK in
   * time or the connection lost → 'retry' (the client is dropped; nothing is re-sent by mqtt.js).
   * Connect refused or unreachable → 'unavailable' for the whole batch. A payload that is not ours
   * (not JSON with a topic) → dead. Never throws.
   */
  async write(batch: OutboxEntry[], signal: AbortSignal): Promise<DeliveryOutcome[]> {
    let c: MqttClient;
    try {
      c = await this.ensureConnected();
    } catch (e) {
      const msg = (e as Error).message;
      if (this.states.changed('conn', 'unreachable')) this.log.warn({ reason: msg }, 'upstream broker unreachable');
      return batch.map((b) => ({ id: b.id, outcome: 'unavailable' as const, error: msg }));
    }
    const timeoutMs = this.opts.pubackTimeoutMs ?? 10_000;
    const results = await Promise.all(
      batch.map(async (entry): Promise<DeliveryOutcome> => {
        if (signal.aborted) return { id: entry.id, outcome: 'unavailable', error: 'aborted' };
        let topic: string;
        try {
          topic = (JSON.parse(entry.payload.toString('utf8')) as { topic?: unknown }).topic as string;
          if (typeof topic !== 'string' || !topic) throw new Error('no topic');
        } catch (e) {
          return { id: entry.id, outcome: 'dead', error: `not an mqtt-upstream payload: ${(e as Error).message}` };
        }
        let timer: NodeJS.Timeout | undefined;
        try {
          await Promise.race([
            c.publishAsync(topic, entry.payload, { qos: 1 }),
            new Promise((_, reject) => {
              timer = setTimeout(() => reject(new Error(`no PUBACK within ${timeoutMs} ms`)), timeoutMs);
            }),
          ]);
          return { id: entry.id, outcome: 'delivered', detail: 'PUBACK' };
        } catch (e) {
          return { id: entry.id, outcome: 'retry', error: (e as Error).message };
        } finally {
          if (timer) clearTimeout(timer);
        }
      }),
    );
    // a lost PUBACK: drop this connection (its in-flight state is mqtt.js memory, not ours)
    if (results.some((r) => r.outcome === 'retry')) await this.dropClient();
    return results;
  }

  async close(): Promise<void> {
    await this.dropClient();
  }
}
