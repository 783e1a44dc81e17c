import type { CommitResult, DriverStatus } from '../contracts/driver';
import type { GatewayStoreApi } from '../contracts/store';
import type { Observation } from '../contracts/observation';
import { getRuntime } from '../runtime';
import { componentLogger } from '../log/logger';
import { validateNode, type NodeSpec } from '../config/field-spec';
import { knownProfileIds } from '../config/node-specs';
import { resolveBool } from '../config/env-template';

/** The message a device node sends into a flow. `payload` is the normalized observations (PHI). */
export interface IomtFlowMessage {
  _msgid?: string;
  topic: string; // device id
  payload: Observation[];
  _iomt: { messageId: number; messageUid: string; deviceId: string; driver: string; messageType?: string; replay?: boolean };
}

/** Minimal Node-RED node surface we use (node-red ships no types). */
export interface RedNode {
  id: string;
  name?: string;
  send(msg: unknown): void;
  status(s: { fill?: string; shape?: string; text?: string }): void;
  on(ev: 'close', cb: (removed: boolean, done: () => void) => void): void;
  on(ev: 'input', cb: (msg: any, send: (m: unknown) => void, done: (err?: unknown) => void) => void): void;
  error(e: unknown, msg?: unknown): void;
  warn(e: unknown): void;
  log(e: unknown): void;
}

/** One status helper for every node (conventions §11): dot colour from the driver state. */
export function showStatus(node: RedNode, s: DriverStatus | { state: string; detail?: string }): void {
  const fill = s.state === 'connected' || s.state === 'listening' ? 'green' : s.state === 'error' ? 'red' : s.state === 'stopped' ? 'grey' : 'yellow';
  const last = 'lastMessageAt' in s && s.lastMessageAt ? ` · last ${s.lastMessageAt.slice(11, 19)}` : '';
  node.status({ fill, shape: fill === 'green' ? 'dot' : 'ring', text: `${s.state}${s.detail ? ` ${s.detail}` : ''}${last}` });
}

/**
 * The node's fields checked against its field spec with the running environment, as check-config
 * does (one rule set): the problems joined in one line, or undefined when it is valid. A node
 * deployed from the editor with a bad field then fails visibly instead of running half-configured.
 */
export function specProblems(spec: NodeSpec, config: object, env: NodeJS.ProcessEnv = process.env): string | undefined {
  const problems = validateNode(spec, config as Record<string, unknown>, 'node', '', { env, profiles: knownProfileIds(env) });
  return problems.length ? `invalid configuration: ${problems.map((p) => `${p.path.replace(/^\./, '')}: ${p.reason}`).join('; ')}` : undefined;
}

/**
 * A node could not start (bad field, port in use, TLS files): say it on the node, in the log, and
 * keep it visible in the runtime (`/api/v1/devices` state 'error', `/readyz` degraded) until the
 * node closes on the next deploy. Returns the function that clears it early.
 */
export function reportStartFailure(node: RedNode, kind: 'device' | 'destination', id: string, driver: string, reason: string, shortDetail?: string): () => void {
  node.error(reason);
  showStatus(node, { state: 'error', detail: shortDetail ?? reason });
  let clear: () => void = () => {};
  try {
    clear = getRuntime().reportNodeFailure({ kind, id, driver, nodeId: node.id, reason });
  } catch {
    return clear; // no runtime: nothing to report to
  }
  node.on('close', (_removed, done) => {
    clear();
    done();
  });
  return clear;
}

/**
 * Emits committed messages from a device into the flow with tracking, re-emits the ones a previous
 * run did not finish (architecture §3), and sweeps periodically for messages whose flow failed
 * transiently (e.g. the outbox could not commit) so they are routed once the store recovers.
 */
/**
 * Run `fn` once every node of the deployed flows exists. Device drivers start listening only then,
 * so nothing committed is sent to a node that is not there yet (it would be dropped and counted as done).
 */
export function whenFlowsStarted(RED: any, fn: () => void): () => void {
  let done = false;
  const handler = () => {
    if (done) return;
    done = true;
    RED.events.removeListener('flows:started', handler);
    fn();
  };
  RED.events.on('flows:started', handler);
  return () => RED.events.removeListener('flows:started', handler);
}

export class DeviceEmitter {
  private sweepTimer: NodeJS.Timeout | undefined;
  private readonly log;
  constructor(private readonly node: RedNode, readonly deviceId: string, private readonly driver: string, private readonly sweepMs = 60_000) {
    this.log = componentLogger('device-node', { deviceId });
  }

  emit(result: { messageId: number; messageUid: string; observations: Observation[] }, messageType?: string, replay = false): void {
    const rt = getRuntime();
    const msg: IomtFlowMessage = {
      topic: this.deviceId,
      payload: result.observations,
      _iomt: { messageId: result.messageId, messageUid: result.messageUid, deviceId: this.deviceId, driver: this.driver, messageType, replay: replay || undefined },
    };
    rt.tracker.begin(result.messageId, this.deviceId);
    this.node.send(msg);
    rt.tracker.sent(result.messageId);
  }

  committed = (r: CommitResult, messageType?: string): void => {
    if (!r.duplicate) this.emit(r, messageType);
  };

  /** Re-emit committed-but-unfinished messages of this device that nothing is processing now. */
  sweep(limit = 2000): number {
    const rt = getRuntime();
    let n = 0;
    for (const m of rt.store.unfinished(this.deviceId, limit)) {
      if (rt.tracker.isTracked(m.messageId)) continue;
      this.emit(m, undefined, true);
      n++;
    }
    if (n) this.log.info({ count: n }, 're-emitted committed messages the flow had not finished');
    return n;
  }

  /** Call once the whole flow is running ('flows:started'): a message sent to a node that does not exist yet would be dropped. */
  start(): void {
    try {
      this.sweep();
    } catch (e) {
      this.log.error({ err: String(e) }, 're-emission failed');
    }
    this.sweepTimer = setInterval(() => {
      try {
        this.sweep();
      } catch (e) {
        this.log.error({ err: String(e) }, 'sweep failed');
      }
    }, this.sweepMs);
    this.sweepTimer.unref();
  }

  stop(): void {
    if (this.sweepTimer) clearInterval(this.sweepTimer);
  }
}

/**
 * The status dot of an outbox destination node, refreshed every 2 s: `disconnected` while the worker backs off
 * or `link()` says the peer is unreachable (false), `stopped`, `connected` while `link()` is true, else `idle`
 * (nothing sent yet); the detail is its queue and dead letters. Returns the function that stops it.
 */
export function watchDestination(node: RedNode, store: GatewayStoreApi, destination: string, worker: { state: string }, link: () => boolean | undefined): () => void {
  const refresh = () => {
    const st = store.destinationStats(destination)[0];
    const l = link();
    const state = worker.state === 'backoff' || l === false ? 'disconnected' : worker.state === 'stopped' ? 'stopped' : l ? 'connected' : 'idle';
    showStatus(node, { state, detail: st ? `queue ${st.pending}${st.dead ? `, dead ${st.dead}` : ''}` : '' });
  };
  const timer = setInterval(refresh, 2000);
  timer.unref();
  refresh();
  return () => clearInterval(timer);
}

/**
 * A setting that keeps a node from starting, thrown by the plain config modules beside the drivers
 * (conventions §11): `message` is the reason (node log, `/api/v1/devices`), `detail` the short text
 * on the status dot.
 */
export class NodeStartError extends Error {
  constructor(reason: string, readonly detail: string) {
    super(reason);
    this.name = 'NodeStartError';
  }
}

/**
 * A node's yes/no fields (a checkbox, or a `${VAR:-false}` template) resolved with their defaults, in
 * the order of `defaults`; the first that is not a yes/no throws NodeStartError (detail 'invalid setting').
 */
export function resolveBools<K extends string>(config: object, defaults: Record<K, boolean>): Record<K, boolean> {
  const out = {} as Record<K, boolean>;
  try {
    for (const k of Object.keys(defaults) as K[]) out[k] = resolveBool((config as Record<string, unknown>)[k], defaults[k]);
  } catch (e) {
    throw new NodeStartError((e as Error).message, 'invalid setting');
  }
  return out;
}

/** Report what a node's start threw: a NodeStartError with its reason and detail, anything else (a bug, a resource) as `cannot start: …`. */
export function reportThrown(fail: (reason: string, detail: string) => void, e: unknown): void {
  if (e instanceof NodeStartError) fail(e.message, e.detail);
  else fail(`cannot start: ${(e as Error).message}`, 'cannot start');
}

/**
 * List the device in the runtime (`/api/v1/devices`, `/readyz`). A device id another node already
 * has is reported under `<deviceId>#<node id>` (the other node keeps the id, both stay visible):
 * then undefined, and the node must not start. Else the function that removes the listing.
 */
export function registerDeviceOrReport(node: RedNode, deviceId: string, driver: string, status: () => DriverStatus): (() => void) | undefined {
  try {
    return getRuntime().registerDevice(deviceId, status);
  } catch (e) {
    reportStartFailure(node, 'device', `${deviceId}#${node.id}`, driver, (e as Error).message, 'duplicate device id');
    return undefined;
  }
}

/**
 * The life of a device node once its driver is built: status 'starting'; once every node of the flows
 * exists, re-emit what a previous run did not finish (DeviceEmitter.start), then `run` the driver; the
 * status dot refreshed every `statusEveryMs`; on close (redeploy, stop): cancel a start not yet made,
 * stop the timers and the emitter, `stop` (abort, unregister), and call done() once `close` settles.
 */
export function runDeviceNode(
  RED: any,
  node: RedNode,
  o: { emitter: DeviceEmitter; status: () => DriverStatus; statusEveryMs: number; run: () => void; stop: () => void; close: () => Promise<unknown> },
): void {
  showStatus(node, { state: 'starting' });
  const cancelStart = whenFlowsStarted(RED, () => {
    o.emitter.start();
    o.run();
  });
  const statusTimer = setInterval(() => showStatus(node, o.status()), o.statusEveryMs);
  statusTimer.unref();
  node.on('close', (_removed, done) => {
    cancelStart();
    clearInterval(statusTimer);
    o.emitter.stop();
    o.stop();
    o.close().then(() => done(), () => done());
  });
}

/**
 * Queue one inbound message for a destination: the output's payload, keyed by the message uid (one outbound
 * message per inbound message and destination, architecture §3.6), appended to the outbox; after that commit
 * `onQueued` runs, the delivery worker is woken and the node's `done` is called. `prepare` throwing or the
 * append failing goes to `done(err)`: the message stays unfinished and is re-emitted (flow-tracker.ts).
 */
export function queueForDelivery(
  store: Pick<GatewayStoreApi, 'appendOutbox'>,
  destination: string,
  iomt: { messageUid: string; messageId?: number },
  prepare: (key: string) => { payload: Buffer; contentType?: string },
  worker: { wake(): void },
  done: (err?: unknown) => void,
  onQueued?: () => void,
): void {
  const key = iomt.messageUid;
  let prepared: { payload: Buffer; contentType?: string };
  try {
    prepared = prepare(key);
  } catch (e) {
    done(e);
    return;
  }
  store
    .appendOutbox(destination, [{ key, messageId: iomt.messageId, payload: prepared.payload, contentType: prepared.contentType }])
    .then(() => {
      onQueued?.();
      worker.wake();
      done();
    })
    .catch((e: unknown) => done(e));
}
