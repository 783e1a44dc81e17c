import type { GatewayStoreApi } from './contracts/store';
import type { DriverStatus } from './contracts/driver';
import type { Output } from './contracts/output';
import type { GatewaySettings } from './config/settings';
import { FlowTracker } from './pipeline/flow-tracker';
import { OutboxWorker, type OutboxWorkerOptions } from './pipeline/outbox-worker';
import type { OrderCache } from './orders/order-cache';

/** A node that failed to start; `reason` names the configuration or resource problem (no PHI). */
export interface NodeFailure {
  kind: 'device' | 'destination';
  /** Device id or destination name. */
  id: string;
  /** Driver (devices) or output (destinations) name. */
  driver: string;
  /** Node-RED node id, to find it in the editor. */
  nodeId: string;
  reason: string;
  at: string;
}

/**
 * The running gateway as the Node-RED nodes see it: the store, the flow tracker, the device
 * status registry and the destination workers. One per process; Node-RED node files reach it with
 * `getRuntime()` (they are loaded with require() into the same process).
 */
export class GatewayRuntime {
  readonly tracker: FlowTracker;
  private readonly devices = new Map<string, () => DriverStatus>();
  private readonly destinations = new Map<string, OutboxWorker>();
  /** Nodes that could not start (bad configuration, port in use, TLS files): kept visible until they close. */
  private readonly failures = new Map<string, NodeFailure>();

  /** HIS/LIS orders for host queries and order download (its own connection to the same SQLite file). */
  orders: OrderCache | undefined;

  constructor(readonly settings: GatewaySettings, readonly store: GatewayStoreApi) {
    this.tracker = new FlowTracker(store);
  }

  registerDevice(deviceId: string, status: () => DriverStatus): () => void {
    if (this.devices.has(deviceId)) throw new Error(`device id '${deviceId}' is used by two nodes; give each device node a unique device id`);
    this.devices.set(deviceId, status);
    return () => {
      if (this.devices.get(deviceId) === status) this.devices.delete(deviceId);
    };
  }

  /**
   * Every device: running ones with their driver status, and devices whose node failed to start
   * (state 'error', `detail`/`lastError` = the reason). A running device marked failed (e.g. its
   * listener could not bind) reports 'error' with the reason until its node closes.
   */
  deviceStatuses(): DriverStatus[] {
    const out: DriverStatus[] = [];
    for (const [id, f] of this.devices) {
      const s = f();
      const fail = this.failures.get(`device:${id}`);
      out.push(fail ? { ...s, state: 'error', detail: fail.reason, lastError: fail.reason, lastErrorAt: fail.at } : s);
    }
    for (const fail of this.failures.values()) {
      if (fail.kind !== 'device' || this.devices.has(fail.id)) continue;
      out.push({ deviceId: fail.id, driver: fail.driver, state: 'error', detail: fail.reason, lastError: fail.reason, lastErrorAt: fail.at });
    }
    return out;
  }

  /**
   * Record that a node failed to start (or its device stopped for good). Returns the function
   * that clears it, called when the node closes (redeploy). `/readyz` is degraded while any exists.
   */
  reportNodeFailure(f: Omit<NodeFailure, 'at'>): () => void {
    const key = `${f.kind}:${f.id}`;
    const entry: NodeFailure = { ...f, at: new Date().toISOString() };
    this.failures.set(key, entry);
    return () => {
      if (this.failures.get(key) === entry) this.failures.delete(key);
    };
  }

  /** Nodes currently failed, for /readyz and the status page. */
  nodeFailures(): NodeFailure[] {
    return [...this.failures.values()];
  }

  registerDestination(output: Output, opts?: Partial<OutboxWorkerOptions>): OutboxWorker {
    if (this.destinations.has(output.destination)) throw new Error(`destination '${output.destination}' is used by two nodes; give each output node a unique destination name`);
    const w = new OutboxWorker(this.store, output, opts);
    this.destinations.set(output.destination, w);
    w.start();
    return w;
  }

  async unregisterDestination(destination: string): Promise<void> {
    const w = this.destinations.get(destination);
    this.destinations.delete(destination);
    await w?.stop();
  }

  destination(name: string): OutboxWorker | undefined {
    return this.destinations.get(name);
  }

  destinationNames(): string[] {
    return [...this.destinations.keys()];
  }

  async stopAll(): Promise<void> {
    await Promise.all([...this.destinations.values()].map((w) => w.stop()));
    this.destinations.clear();
    await this.tracker.drain();
  }
}

let current: GatewayRuntime | undefined;
export function setRuntime(rt: GatewayRuntime | undefined): void {
  current = rt;
}
export function getRuntime(): GatewayRuntime {
  if (!current) throw new Error('the IoMT gateway runtime is not started (these nodes run only inside iomt-gateway)');
  return current;
}
