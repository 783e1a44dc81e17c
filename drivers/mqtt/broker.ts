/**
 * The embedded MQTT broker for bedside devices (issue 12 §1), on aedes (MQTT 3.1.1 and 3.1).
 *
 * - Plain and/or TLS listener (TLS: optional client certificates; a certificate's CN, when present, must
 *   equal the client id). Connections are admitted by the listener guard (allow-list, per-address limit,
 *   first-frame timeout, evict the idlest when full: gateway/src/net/listener-guard.ts).
 * - No anonymous clients by default. The user name must equal the client id; the password is checked
 *   against `<dataDir>/mqtt-clients.json` (credentials.ts). CONNACK 4 wrong password, 5 anonymous or
 *   revoked, 2 bad client id (MQTT 3.1.1 3.2.2.3). MQTT 5 clients get CONNACK 1 (aedes speaks 3.1.1 only).
 * - ACL: a client publishes only under `iomt/<clientId>/` and subscribes only inside it.
 * - Revocation: the credentials file is checked (one `stat`) before each publish is accepted, so a revoke or a
 *   new password written by any process (CLI, admin API) counts for the very next publish, with no restart or
 *   signal (mosquitto reads its password file again only on SIGHUP); connections made with the old login are
 *   closed within `credentialsPollMs`. (fs.watch would save the stat but its event can come after a publish
 *   read in the same loop turn, and the data dir's SQLite writes would wake it on every commit.)
 * - PUBACK only after commit: aedes runs `authorizePublish` before it writes the PUBACK (QoS 1) and waits
 *   for its callback, so the payload is validated and committed (sink.submit) there.
 *
 * What a client sees (MQTT 3.1.1 has no negative PUBACK, 3.3.5: "it MUST either make a positive
 * acknowledgement ... or close the Network Connection" [MQTT-3.3.5-2]):
 * - valid payload: PUBACK after the commit; a repeat (same client, topic and bytes, e.g. a DUP re-send) is
 *   acknowledged again and stored once;
 * - payload that fails validation: kept in quarantine with the reason, then PUBACK (re-sending the same
 *   bytes cannot help, and closing would make a QoS 1 client re-send them forever), and a QoS 0 notice
 *   `{"topic","reason","quarantineId"}` on `iomt/<clientId>/errors` (the client may subscribe to it);
 * - store cannot commit (disk full, I/O): no PUBACK, the connection is closed; the client re-sends after
 *   it reconnects (QoS 1 with DUP);
 * - publish outside `iomt/<clientId>/`: not stored as results, kept in quarantine with the reason (once per
 *   client, topic and content), the connection is closed (counted, logged).
 * QoS 0 goes the same way (committed before the broker moves on) but the client gets no answer, so
 * nothing is promised to it.
 *
 * Status: one entry per known client (from the credentials file and every client that connected):
 * connected/offline, the reason (disconnect, will, keepalive, error), last message time.
 */
import net from 'node:net';
import tls from 'node:tls';
import { createHash, hash as sha } from 'node:crypto';
import { Aedes, type Client, type PublishPacket } from 'aedes';
import type { CommitResult, DriverStatus, InboundMessage, ObservationSink } from '../../gateway/src/contracts/driver';
import { GatewayError } from '../../gateway/src/contracts/errors';
import { componentLogger } from '../../gateway/src/log/logger';
import { metrics } from '../../gateway/src/metrics/registry';
import { reportCommitted } from '../../gateway/src/pipeline/committed';
import { ListenerGuard, type GuardedConnection } from '../../gateway/src/net/listener-guard';
import { CLIENT_ID_RE, MqttCredentials } from './credentials';
import { normalizeAlarms, normalizeVitals, PayloadError, type NormalizedPayload } from './payload';

export const DRIVER_NAME = 'mqtt-monitor';
export const TOPIC_ROOT = 'iomt';

export interface MqttBrokerOptions {
  /** Device id of the broker in the store and status (messages are stored under it; sender = client id). */
  deviceId: string;
  /** Data dir holding mqtt-clients.json. */
  dataDir: string;
  host?: string;
  /** Plain MQTT port; undefined = no plain listener. 0 = any free port. */
  port?: number;
  /** MQTT over TLS (default port 8883 in the flow). */
  tls?: { port: number; host?: string; cert: Buffer; key: Buffer; ca?: Buffer; requestCert?: boolean };
  /** Accept clients without credentials (tests, closed networks). Default false. */
  allowAnonymous?: boolean;
  maxConnections?: number;
  maxPerAddress?: number;
  allowFrom?: string;
  /** CONNECT must arrive within this (ms, default 10000). */
  connectTimeoutMs?: number;
  /** Largest payload stored (bytes, default 262144); larger ones are quarantined (GW_ERR_TOO_LARGE). */
  maxPayloadBytes?: number;
  /** Flag `device-clock-skew` beyond this (ms, default 300000). */
  maxSkewMs?: number;
  /**
   * Group commit delay (ms, 0-100, default 10; InboundMessage.commitDelayMs): a publish waits up to this long
   * for publishes of other devices to share its transaction and fsync; its PUBACK still follows the commit.
   * Each device has one message in flight, so without it every publish at 1/s commits alone
   * (docs/BENCHMARKS.md "Commit path"). 0: commit at once.
   */
  commitDelayMs?: number;
  /** How often the credentials file is checked for revoked clients (ms, default 2000). */
  credentialsPollMs?: number;
  /**
   * Route device publishes on through aedes (its persistence and emitter) as a general broker would, so a
   * device subscribed to its own `iomt/<id>/#` receives its own data back. Default false: they are consumed
   * by the gateway only (cheaper per message; the A/B switch of bench:vitals).
   */
  routeDevicePublishes?: boolean;
}

export interface ClientState {
  clientId: string;
  connected: boolean;
  known: boolean; // in the credentials file
  revoked?: boolean;
  connectedAt?: string;
  offlineAt?: string;
  offlineReason?: 'disconnect' | 'will' | 'keepalive-timeout' | 'error' | 'revoked' | 'taken-over';
  lastMessageAt?: string;
  messages: number;
  quarantined: number;
  flaggedResults: number;
  lastError?: string;
  lastErrorAt?: string;
}

type Kind = 'vitals' | 'alarms' | 'status';

/** Topic, ids and lengths around a payload: a packet larger than maxPayloadBytes + this is refused. */
const PACKET_OVERHEAD = 64 * 1024;

/**
 * Close a connection whose next packet announces more than `max` bytes (MQTT 3.1.1 2.2.3 remaining length
 * goes up to 256 MB, and mqtt-packet would buffer all of it, before authentication too). aedes creates
 * its parser without options, so the check wraps that parser's length step (aedes 1.2 / mqtt-packet 9:
 * `client._parser._parseLength`, `_emitError`; tests fail if they change).
 */
function limitPacketSize(client: Client, max: number): void {
  const parser = (client as unknown as { _parser?: { _parseLength(): boolean; _emitError(e: Error): void; packet: { length: number } } })._parser;
  if (!parser || typeof parser._parseLength !== 'function') throw new Error('aedes internals changed: cannot bound the MQTT packet size');
  const parseLength = parser._parseLength.bind(parser);
  parser._parseLength = () => {
    const ok = parseLength();
    if (ok && parser.packet.length > max) {
      parser._emitError(new Error(`packet of ${parser.packet.length} bytes is over the limit of ${max}`));
      return false;
    }
    return ok;
  };
}

const WARM_UP = JSON.stringify({ time: new Date(0).toISOString(), observations: [{ code: 'MDC_ECG_HEART_RATE', value: 1, unit: '/min' }, { code: 'MDC_PRESS_BLD_NONINV_SYS', value: 1, unit: 'mm[Hg]' }] });

/** An error the broker hands aedes to close a connection on purpose (already logged with the reason). */
class Refusal extends Error {}

export class MqttBroker {
  readonly broker: Aedes;
  readonly credentials: MqttCredentials;
  private readonly log;
  private readonly guard: ListenerGuard;
  private readonly guarded = new WeakMap<object, GuardedConnection>();
  private readonly clients = new Map<string, ClientState>();
  private servers: net.Server[] = [];
  private ports: { plain?: number; tls?: number } = {};
  private state: DriverStatus['state'] = 'stopped';
  private detail: string | undefined;
  private lastMessageAt: string | undefined;
  private lastError: string | undefined;
  private lastErrorAt: string | undefined;
  private flaggedResults = 0;
  private pollTimer: NodeJS.Timeout | undefined;
  private credVersion = '';
  /** The login (createdAt of its credentials record) each connection authenticated with. */
  private readonly loginOf = new WeakMap<Client, string>();
  /** Active logins in the credentials file: client id → createdAt of its record. */
  private activeLogins = new Map<string, string>();
  /** Device publishes accepted by authorizePublish, not routed on by aedes (see the constructor). */
  private readonly consumed = new WeakSet<PublishPacket>();
  /** Device publishes whose aedes routing was skipped (tests, benches). */
  forwardsSkipped = 0;
  /** Called when a client id is seen for the first time (the node registers its status). */
  onClientAdded?: (clientId: string) => void;
  /** iomt_messages_received_total of this broker (its label key built once, not per message). */
  private readonly received;

  constructor(
    private readonly opts: MqttBrokerOptions,
    private readonly sink: ObservationSink,
    private readonly onCommitted?: (r: CommitResult, inbound: InboundMessage) => void,
  ) {
    if (!opts.deviceId) throw new TypeError('MqttBroker: deviceId is required');
    if (opts.port === undefined && !opts.tls) throw new TypeError('MqttBroker: a plain port, a TLS listener or both');
    this.log = componentLogger('mqtt-broker', { deviceId: opts.deviceId });
    this.received = metrics.received.child({ device: opts.deviceId });
    this.credentials = new MqttCredentials(opts.dataDir);
    this.guard = new ListenerGuard({
      listener: opts.deviceId,
      maxConnections: opts.maxConnections ?? 1024,
      maxPerAddress: opts.maxPerAddress,
      allowFrom: opts.allowFrom,
      firstFrameTimeoutMs: opts.connectTimeoutMs ?? 10_000,
      log: this.log,
    });
    this.broker = new Aedes({
      id: opts.deviceId,
      connectTimeout: opts.connectTimeoutMs ?? 10_000,
      authenticate: (client, username, password, done) => void this.authenticate(client, username, password, done),
      authorizePublish: (client, packet, done) => void this.authorizePublish(client, packet, done),
      authorizeSubscribe: (client, sub, done) => {
        // own subtree only; anything else is refused with SUBACK 0x80 (MQTT 3.1.1 3.9.3)
        const prefix = `${TOPIC_ROOT}/${client.id}/`;
        done(null, sub.topic.startsWith(prefix) || sub.topic === `${TOPIC_ROOT}/${client.id}/#` ? sub : null);
      },
    });
    // A device's own publishes (iomt/<id>/vitals|alarms|status, its will) are consumed by the gateway, not
    // routed: only that device may subscribe inside iomt/<id>/ (authorizeSubscribe), and it is not sent its
    // own data back. aedes would still run every QoS 1 publish, after the PUBACK, through its persistence
    // (offline-subscription lookup) and emitter; that is skipped for the packets authorizePublish accepted
    // and marked. The gateway's own publishes (iomt/<id>/errors, $SYS) have no client and are routed as usual.
    // (typed for (packet, done) only; at run time aedes 1.2 calls it as publish(packet, client, done))
    const route = this.broker.publish.bind(this.broker) as unknown as (p: PublishPacket, c?: unknown, d?: unknown) => void;
    (this.broker as unknown as { publish: (p: PublishPacket, c?: Client | null | ((e?: Error | null) => void), d?: (e?: Error | null) => void) => void }).publish = (p, c, d) => {
      if (c && typeof c !== 'function' && this.consumed.has(p)) {
        this.consumed.delete(p);
        this.forwardsSkipped++;
        return d?.(null);
      }
      return route(p, c, d);
    };
    this.broker.on('clientReady', (c) => this.clientUp(c));
    this.broker.on('clientDisconnect', (c) => this.clientDown(c, 'disconnect'));
    this.broker.on('keepaliveTimeout', (c) => this.mark(c.id, 'keepalive-timeout'));
    this.broker.on('clientError', (c, e) => {
      // our own refusals already set lastError with the reason; other errors (protocol, socket) are kept
      // (only for clients already known: a refused CONNECT with a made-up id adds no entry)
      const st = c?.id ? this.clients.get(c.id) : undefined;
      if (st && !(e instanceof Refusal)) {
        st.lastError = e.message;
        st.lastErrorAt = new Date().toISOString();
        if (st.connected) st.offlineReason = 'error';
      }
    });
  }

  /** Listen on the configured ports; resolves with the bound ports. */
  async start(): Promise<{ port?: number; tlsPort?: number }> {
    this.state = 'starting';
    try {
      await this.broker.listen(); // aedes 1.x: persistence and heartbeat start here
      // load the code map and the UCUM tables now, not inside the first device's PUBACK time
      normalizeVitals(Buffer.from(WARM_UP), { clientId: 'warm-up', receivedAt: new Date() });
      this.loadKnownClients();
      if (this.opts.port !== undefined) {
        const s = net.createServer((sock) => this.accept(sock, sock));
        this.ports.plain = await this.listen(s, this.opts.port, this.opts.host);
      }
      if (this.opts.tls) {
        const t = this.opts.tls;
        const s = tls.createServer({ key: t.key, cert: t.cert, ca: t.ca, requestCert: !!t.requestCert, rejectUnauthorized: !!t.requestCert, handshakeTimeout: this.opts.connectTimeoutMs ?? 10_000 });
        // admitted after the handshake (a stalled handshake ends at handshakeTimeout)
        s.on('secureConnection', (sock: tls.TLSSocket) => this.accept(sock, sock));
        s.on('tlsClientError', (e: Error, sock: tls.TLSSocket) => this.guard.tlsFailure(sock.remoteAddress, e.message));
        this.ports.tls = await this.listen(s, t.port, t.host ?? this.opts.host);
      }
      this.state = 'listening';
      this.detail = [this.ports.plain !== undefined ? `port ${this.ports.plain}` : '', this.ports.tls !== undefined ? `tls ${this.ports.tls}` : ''].filter(Boolean).join(', ');
      this.pollTimer = setInterval(() => this.pollCredentials(), this.opts.credentialsPollMs ?? 2000);
      this.pollTimer.unref();
      return { port: this.ports.plain, tlsPort: this.ports.tls };
    } catch (e) {
      this.state = 'error';
      this.detail = (e as Error).message;
      this.lastError = this.detail;
      this.lastErrorAt = new Date().toISOString();
      await this.close();
      this.state = 'error';
      throw e;
    }
  }

  async close(): Promise<void> {
    if (this.pollTimer) clearInterval(this.pollTimer);
    this.guard.close();
    const servers = this.servers;
    this.servers = [];
    for (const s of servers) s.close();
    await new Promise<void>((r) => this.broker.close(() => r()));
    this.state = 'stopped';
    this.detail = undefined;
  }

  get boundPorts(): { port?: number; tlsPort?: number } {
    return { port: this.ports.plain, tlsPort: this.ports.tls };
  }

  /** The broker as one device: listening/connected, how many clients online and known. */
  status(): DriverStatus {
    const online = [...this.clients.values()].filter((c) => c.connected).length;
    const s: DriverStatus = { deviceId: this.opts.deviceId, driver: DRIVER_NAME, state: this.state, connections: online };
    if (this.state === 'listening' && online > 0) s.state = 'connected';
    const parts = [this.detail, this.state === 'listening' || online ? `${online} of ${this.clients.size} devices online` : ''].filter(Boolean);
    if (parts.length) s.detail = parts.join(' · ');
    if (this.lastMessageAt) s.lastMessageAt = this.lastMessageAt;
    if (this.lastError) s.lastError = this.lastError;
    if (this.lastErrorAt) s.lastErrorAt = this.lastErrorAt;
    if (this.flaggedResults) s.flaggedResults = this.flaggedResults;
    return s;
  }

  /** Every known client (connected and offline) with its last message. */
  clientStates(): ClientState[] {
    return [...this.clients.values()].map((c) => ({ ...c })).sort((a, b) => a.clientId.localeCompare(b.clientId));
  }

  /** One client as a device status (`<brokerDeviceId>/<clientId>` in the device list). */
  clientStatus(clientId: string): DriverStatus {
    const c = this.clientState(clientId);
    const s: DriverStatus = {
      deviceId: `${this.opts.deviceId}/${clientId}`,
      driver: DRIVER_NAME,
      state: c.connected ? 'connected' : this.state === 'listening' ? 'disconnected' : this.state,
      connections: c.connected ? 1 : 0,
      detail: c.connected ? `online since ${c.connectedAt}` : c.revoked ? 'revoked' : c.offlineReason ? `offline (${c.offlineReason}) since ${c.offlineAt}` : 'never connected',
    };
    if (c.lastMessageAt) s.lastMessageAt = c.lastMessageAt;
    if (c.lastError) s.lastError = c.lastError;
    if (c.lastErrorAt) s.lastErrorAt = c.lastErrorAt;
    if (c.flaggedResults) s.flaggedResults = c.flaggedResults;
    return s;
  }

  // ------------------------------------------------------------------ connections

  private listen(s: net.Server, port: number, host?: string): Promise<number> {
    return new Promise((resolve, reject) => {
      s.once('error', reject);
      s.listen(port, host ?? '0.0.0.0', () => {
        s.off('error', reject);
        s.on('error', (e) => this.log.error({ err: e.message }, 'MQTT listener error'));
        this.servers.push(s);
        resolve((s.address() as net.AddressInfo).port);
      });
    });
  }

  private accept(raw: net.Socket, stream: net.Socket): void {
    const g = this.guard.admit(raw);
    if (!g) return;
    this.guarded.set(stream, g);
    raw.once('close', () => g.release());
    limitPacketSize(this.broker.handle(stream), (this.opts.maxPayloadBytes ?? 262_144) + PACKET_OVERHEAD);
  }

  private clientState(clientId: string): ClientState {
    let c = this.clients.get(clientId);
    if (!c) {
      c = { clientId, connected: false, known: false, messages: 0, quarantined: 0, flaggedResults: 0 };
      this.clients.set(clientId, c);
      this.onClientAdded?.(clientId);
    }
    return c;
  }

  private loadKnownClients(): void {
    try {
      this.credVersion = this.credentials.version();
      const list = this.credentials.list();
      for (const r of list) {
        const c = this.clientState(r.clientId);
        c.known = true;
        c.revoked = !!r.revokedAt;
      }
      this.activeLogins = new Map(list.filter((r) => !r.revokedAt).map((r) => [r.clientId, r.createdAt]));
    } catch (e) {
      this.log.error({ err: (e as Error).message }, 'cannot read the MQTT credentials file');
    }
  }

  /** Revoked clients are disconnected when the file changes (CLI or admin API, any process). */
  private pollCredentials(): void {
    let v: string;
    try {
      v = this.credentials.version();
    } catch {
      return;
    }
    if (v === this.credVersion) return;
    this.loadKnownClients();
    const logins = this.activeLogins;
    // a connection stays only while the login it authenticated with is still active: revoked, removed, or
    // replaced (revoke + add = a new password, maybe within one poll: the file then never shows 'revoked')
    for (const [id, live] of Object.entries((this.broker as unknown as { clients: Record<string, Client> }).clients)) {
      const login = this.loginOf.get(live);
      if (login === undefined || logins.get(id) === login) continue;
      this.log.warn({ clientId: id }, logins.has(id) ? 'MQTT client password replaced: the connection made with the old one is closed' : 'MQTT client revoked: disconnected');
      this.clientState(id).offlineReason = 'revoked';
      live.close();
    }
  }

  private clientUp(client: Client): void {
    const c = this.clientState(client.id);
    c.connected = true;
    c.connectedAt = new Date().toISOString();
    c.offlineReason = undefined;
    this.guarded.get(client.conn)?.frame();
  }

  private clientDown(client: Client, reason: ClientState['offlineReason']): void {
    if (!client.id) return;
    const live = (this.broker as unknown as { clients: Record<string, Client> }).clients[client.id];
    if (live && live !== client) return; // taken over by a new connection with the same id (MQTT-3.1.4-2)
    this.mark(client.id, reason);
  }

  private mark(clientId: string, reason: ClientState['offlineReason']): void {
    const c = this.clientState(clientId);
    if (!c.connected && c.offlineReason) {
      // will / keepalive seen first: keep the more specific reason
      if (reason === 'disconnect') return;
    }
    c.connected = false;
    c.offlineAt = new Date().toISOString();
    if (!(c.offlineReason && c.offlineReason !== 'disconnect' && reason === 'disconnect')) c.offlineReason = reason;
  }

  private async authenticate(client: Client, username: string | undefined, password: Buffer | undefined, done: (e: (Error & { returnCode: number }) | null, ok: boolean | null) => void): Promise<void> {
    const refuse = (code: number, why: string) => {
      metrics.rejected.inc({ device: this.opts.deviceId, reason: 'mqtt-auth' });
      this.log.warn({ clientId: CLIENT_ID_RE.test(client.id) ? client.id : '(invalid)', remote: (client.conn as net.Socket).remoteAddress, returnCode: code, why }, 'MQTT connection refused');
      done(Object.assign(new Error(why), { returnCode: code }), false);
    };
    // client ids are topic levels: MQTT 3.1.1 3.1.3.1 lets a server reject others with CONNACK 2
    if (!CLIENT_ID_RE.test(client.id)) return refuse(2, 'client id must be 1-64 letters, digits, . _ -');
    if (username === undefined && password === undefined) {
      if (this.opts.allowAnonymous) return done(null, true);
      return refuse(5, 'anonymous clients are not allowed'); // 3.2.2.3: 5 not authorized
    }
    if (username !== client.id) return refuse(4, 'user name must equal the client id'); // 4 bad user name or password
    const peer = (client.conn as tls.TLSSocket).getPeerCertificate?.();
    if (peer && peer.subject?.CN && peer.subject.CN !== client.id) return refuse(5, 'client certificate CN does not match the client id');
    // a client that gave up (connect timeout) while its CONNECT waited costs no hashing
    if ((client as unknown as { closed?: boolean }).closed || (client.conn as net.Socket).destroyed) return done(Object.assign(new Refusal('connection closed before authentication'), { returnCode: 3 }), false);
    const loginNow = () => this.credentials.list().find((r) => r.clientId === client.id && !r.revokedAt)?.createdAt;
    const login = loginNow();
    const ok = await this.credentials.verify(client.id, password?.toString('utf8') ?? '');
    // the login must be the same before and after the (asynchronous) check: not revoked or replaced meanwhile
    if (!ok || login === undefined || loginNow() !== login) return refuse(4, 'wrong password, unknown or revoked client');
    this.loginOf.set(client, login);
    done(null, true);
  }

  // ------------------------------------------------------------------ publish: validate, commit, then PUBACK

  private async authorizePublish(client: Client | null, packet: PublishPacket, done: (e?: Error | null) => void): Promise<void> {
    if (!client) return done(new Refusal('no client')); // a stale will without its client: not ours to publish
    const id = client.id;
    const prefix = `${TOPIC_ROOT}/${id}/`;
    if (!packet.topic.startsWith(prefix)) {
      // ACL (issue 12 §1): not stored as results; MQTT 3.1.1 3.3.5: close the connection. What was refused is
      // kept in quarantine with the reason (once per client + topic + content: a device retries it for ever)
      metrics.rejected.inc({ device: this.opts.deviceId, reason: 'mqtt-acl' });
      await this.quarantineRefused(id, packet);
      this.error(id, 'publish outside its own topic iomt/<clientId>/ refused: connection closed');
      return done(new Refusal('not authorized: topic outside iomt/<clientId>/'));
    }
    const login = this.loginOf.get(client);
    if (login !== undefined) {
      // a revoke or a new password counts from the moment the file says so, not from the next poll (a stat per publish)
      this.pollCredentials();
      if (this.activeLogins.get(id) !== login) {
        this.error(id, 'login revoked or replaced: publish refused without PUBACK, connection closed');
        return done(new Refusal('login revoked'));
      }
    }
    this.guarded.get(client.conn)?.frame();
    // retained messages would be kept in the broker's memory for any topic a device invents: not kept
    packet.retain = false;
    // consumed here, not routed on (constructor); a refused packet is never published by aedes
    if (!this.opts.routeDevicePublishes) this.consumed.add(packet);
    const isWill = packet === (client as unknown as { will?: unknown }).will;
    const kind = packet.topic.slice(prefix.length) as Kind;
    if (kind === 'status' || isWill) {
      // `iomt/<id>/status`: "offline" / {"state":"offline"} (typically the will) marks the device offline
      const text = packet.payload.toString('utf8').trim().toLowerCase();
      if (isWill || text === 'offline' || /"state"\s*:\s*"offline"/.test(text)) this.mark(id, isWill ? 'will' : 'disconnect');
      if (kind === 'status') return done(null);
    }
    if (packet.topic.slice(prefix.length) === 'errors') {
      // MQTT 3.1.1 3.3.5: not accepted, so the connection is closed; the reason is kept (status, log)
      metrics.rejected.inc({ device: this.opts.deviceId, reason: 'mqtt-acl' });
      this.error(id, 'publish to iomt/<clientId>/errors refused (written by the gateway only): connection closed');
      return done(new Refusal('iomt/<clientId>/errors is written by the gateway only'));
    }
    const receivedAt = new Date();
    const c = this.clientState(id);
    if (!isWill && !c.connected && (this.broker as unknown as { clients: Record<string, Client> }).clients[id] === client) {
      // it said "offline" on its status topic but is still connected and sending: online again
      c.connected = true;
      c.offlineReason = undefined;
    }
    c.lastMessageAt = receivedAt.toISOString();
    this.lastMessageAt = c.lastMessageAt;
    c.messages++;
    this.received.inc();
    const raw = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload);
    let norm: NormalizedPayload;
    try {
      if (raw.length > (this.opts.maxPayloadBytes ?? 262_144)) throw Object.assign(new PayloadError('', `payload of ${raw.length} bytes is over the limit of ${this.opts.maxPayloadBytes ?? 262_144}`), { tooLarge: true });
      if (kind === 'vitals') norm = normalizeVitals(raw, { clientId: id, receivedAt, maxSkewMs: this.opts.maxSkewMs });
      else if (kind === 'alarms') norm = normalizeAlarms(raw, { clientId: id, receivedAt, maxSkewMs: this.opts.maxSkewMs });
      // the topic goes to the quarantine (protected like the payload), not to the log or the status: a
      // device's topic can carry patient data (iomt/<id>/patient/<patient id>)
      else throw Object.assign(new PayloadError('', `unknown topic '${packet.topic.slice(prefix.length).slice(0, 64)}' (use vitals, alarms or status)`), { logText: 'unknown topic under iomt/<clientId>/ (use vitals, alarms or status; the topic is in the quarantine entry)' });
    } catch (e) {
      if (!(e instanceof PayloadError)) {
        // a bug, not the device's fault: nothing is acknowledged, the device keeps the message
        this.error(id, `internal error while reading a payload (${(e as Error).message}): connection closed without PUBACK`);
        return done(new Refusal('internal error'));
      }
      return this.quarantined(client, packet, raw, e, done);
    }
    // SHA-256 of topic, LF, payload: one call (crypto.hash, Node >= 20.12), the same digest as update() x3
    const hash = sha('sha256', Buffer.concat([Buffer.from(`${packet.topic}\n`), raw]), 'hex');
    const inbound: InboundMessage = {
      deviceId: this.opts.deviceId,
      driver: DRIVER_NAME,
      raw,
      receivedAt,
      sender: id,
      // a repeat is the same client, topic and bytes (a QoS 1 re-send after a lost PUBACK carries DUP)
      dedupeKey: `${id}|${kind}|${hash}`,
      messageType: `MQTT ${kind}`,
      drafts: norm.drafts,
      commitDelayMs: this.opts.commitDelayMs ?? 10,
      meta: { clientId: id, topic: packet.topic, qos: packet.qos, dup: !!packet.dup, remote: (client.conn as net.Socket).remoteAddress, skewMs: norm.skewMs },
      ...(norm.flags.length ? { flags: norm.flags } : {}),
    };
    let result: CommitResult;
    try {
      result = await this.sink.submit(inbound);
    } catch (e) {
      // no PUBACK: the connection closes and the client re-sends after reconnecting
      metrics.rejected.inc({ device: this.opts.deviceId, reason: 'store' });
      this.error(id, `store: ${e instanceof GatewayError ? e.code : (e as Error).message}: connection closed without PUBACK`);
      return done(new Refusal('store unavailable'));
    }
    if (!result.duplicate) {
      const flagged = norm.drafts.filter((d) => d.quality?.length).length;
      c.flaggedResults += flagged;
      this.flaggedResults += flagged;
    }
    reportCommitted(this.log, result, inbound, this.onCommitted, { connId: id, msg: 'duplicate MQTT publish (same client, topic and payload): acknowledged again, not stored' });
    done(null);
  }

  /** Refused publishes already in quarantine (client|topic|sha256), bounded: the oldest forgotten first. */
  private readonly refusedSeen = new Set<string>();

  /** Keep a publish refused by the ACL in quarantine (first 64 KiB), once per client, topic and content. */
  private async quarantineRefused(clientId: string, packet: PublishPacket): Promise<void> {
    const raw = Buffer.isBuffer(packet.payload) ? packet.payload : Buffer.from(packet.payload ?? '');
    const key = `${clientId}|${packet.topic}|${createHash('sha256').update(raw).digest('hex')}`;
    if (this.refusedSeen.has(key)) return;
    try {
      await this.sink.quarantine({
        deviceId: this.opts.deviceId,
        driver: DRIVER_NAME,
        raw: raw.subarray(0, 64 * 1024),
        reason: `publish outside the client's own topic iomt/${clientId}/: refused (no PUBACK), connection closed`,
        errorCode: 'GW_ERR_UNSUPPORTED',
        meta: { clientId, topic: packet.topic.slice(0, 256), qos: packet.qos, bytes: raw.length },
      });
      this.refusedSeen.add(key);
      if (this.refusedSeen.size > 1024) this.refusedSeen.delete(this.refusedSeen.values().next().value as string);
    } catch {
      // the store cannot take it now: the refusal stands (no PUBACK), the device keeps the message
    }
  }

  private async quarantined(client: Client, packet: PublishPacket, raw: Buffer, e: PayloadError, done: (e?: Error | null) => void): Promise<void> {
    const id = client.id;
    const tooLarge = (e as { tooLarge?: boolean }).tooLarge;
    let qid: number;
    try {
      qid = await this.sink.quarantine({
        deviceId: this.opts.deviceId,
        driver: DRIVER_NAME,
        raw: tooLarge ? raw.subarray(0, 4096) : raw,
        reason: e.message,
        errorCode: tooLarge ? 'GW_ERR_TOO_LARGE' : 'GW_ERR_PARSE',
        meta: { clientId: id, topic: packet.topic, qos: packet.qos, bytes: raw.length },
      });
    } catch (qe) {
      metrics.rejected.inc({ device: this.opts.deviceId, reason: 'store' });
      this.error(id, `cannot quarantine a bad payload (${(qe as Error).message}): connection closed without PUBACK`);
      return done(new Refusal('store unavailable'));
    }
    metrics.quarantined.inc({ device: this.opts.deviceId });
    this.clientState(id).quarantined++;
    this.error(id, `payload quarantined (#${qid}): ${(e as { logText?: string }).logText ?? e.message}`);
    // the client learns why on its own errors topic (QoS 0; MQTT 3.1.1 has no negative PUBACK)
    setImmediate(() =>
      this.broker.publish(
        { cmd: 'publish', topic: `${TOPIC_ROOT}/${id}/errors`, qos: 0, dup: false, retain: false, payload: Buffer.from(JSON.stringify({ topic: packet.topic, reason: e.message, quarantineId: qid })) } as PublishPacket,
        () => {},
      ),
    );
    done(null);
  }

  private error(clientId: string, text: string): void {
    const at = new Date().toISOString();
    const c = this.clientState(clientId);
    c.lastError = text;
    c.lastErrorAt = at;
    this.lastError = `${clientId}: ${text}`;
    this.lastErrorAt = at;
    this.log.warn({ clientId }, text);
  }
}
