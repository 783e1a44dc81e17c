/**
 * A committed result with nowhere to go (issue 9 §2) on a real store: the flow tracker sees which
 * node types a message reached, and the sink confirms against SQLite (results, no outbox row) before
 * the message is flagged `no-destination` and counted. A message held on purpose by processing id
 * (a destination finished it without queueing) is not this case.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { tempDir } from '../../../test/helpers/env';
import { GatewayStore } from '../store/gateway-store';
import { sampleMessage } from '../store/test/fixtures';
import { registry } from '../metrics/registry';
import { FlowTracker, type UndeliveredReason } from './flow-tracker';
import { NO_DESTINATION_FLAG, undeliveredSink } from './undelivered';

const OUT = 'iomt-hl7-out';
const metric = (device: string, reason: UndeliveredReason) => (registry.counter('iomt_messages_undelivered_total', '') as { get(l: Record<string, string>): number }).get({ device, reason });
const tick = () => new Promise((r) => setTimeout(r, 30));

describe('messages no destination took', () => {
  let t: ReturnType<typeof tempDir>;
  let store: GatewayStore;
  let db: Database.Database;
  let tracker: FlowTracker;
  let seq = 0;

  beforeEach(() => {
    t = tempDir();
    store = GatewayStore.open({ dataDir: t.dir });
    db = new Database(join(t.dir, 'gateway.db'));
    db.pragma('busy_timeout = 10000');
    tracker = new FlowTracker(store);
    tracker.watchUndelivered([OUT], undeliveredSink(db, store));
  });
  afterEach(async () => {
    await tracker.drain();
    db.close();
    await store.close();
    t.cleanup();
  });

  async function commit(deviceId: string, opts: { n?: number } = {}) {
    const c = await store.submit(sampleMessage(++seq, { deviceId, n: opts.n }));
    return c.messageId;
  }
  const flagsOf = (id: number) => store.getMessage(id)?.flags ?? [];

  // Each case is the path a message takes through a flow, as Node-RED's hooks report it.
  const cases: Array<{ name: string; run: (id: number, tr: FlowTracker) => Promise<void> | void; n?: number; expect: UndeliveredReason | 'delivered' | 'held' | 'empty' }> = [
    { name: 'device node with no wires', run: (id, tr) => tr.sent(id), expect: 'no-destination' },
    {
      name: 'wired only to a debug node',
      run: (id, tr) => {
        tr.delivered(id, 'debug');
        tr.sent(id);
        tr.completed(id, undefined, 'debug');
      },
      expect: 'no-destination',
    },
    {
      name: 'wired to a destination node that failed to start (no input handler)',
      run: (id, tr) => {
        tr.delivered(id, OUT, false);
        tr.sent(id);
      },
      expect: 'destination-broken',
    },
    {
      name: 'the destination node failed the message',
      run: (id, tr) => {
        tr.delivered(id, OUT);
        tr.sent(id);
        tr.completed(id, new Error('cannot build ORU'), OUT);
      },
      expect: 'destination-error',
    },
    {
      name: 'a function node failed it before any destination',
      run: (id, tr) => {
        tr.delivered(id, 'function');
        tr.sent(id);
        tr.completed(id, new Error('boom'), 'function');
      },
      expect: 'flow-error',
    },
    {
      name: 'queued in the outbox by the destination node',
      run: async (id, tr) => {
        tr.delivered(id, OUT);
        tr.sent(id);
        await store.appendOutbox('his', [{ key: `k${id}`, messageId: id, payload: Buffer.from('MSH|') }]);
        tr.completed(id, undefined, OUT);
      },
      expect: 'delivered',
    },
    {
      name: 'held on purpose by processing id (T/D): the destination finished it without queueing',
      run: (id, tr) => {
        tr.delivered(id, OUT);
        tr.sent(id);
        tr.completed(id, undefined, OUT);
      },
      expect: 'held',
    },
    { name: 'a message without results (no observations) is not undelivered', run: (id, tr) => tr.sent(id), n: 0, expect: 'empty' },
  ];

  for (const c of cases) {
    it(c.name, async () => {
      const device = `dev-${seq + 1}`;
      const id = await commit(device, { n: c.n });
      tracker.begin(id, device);
      await c.run(id, tracker);
      await tracker.drain();
      await tick();
      const lost = c.expect !== 'delivered' && c.expect !== 'held' && c.expect !== 'empty';
      expect(tracker.isTracked(id)).toBe(false); // finished, never left waiting
      expect(flagsOf(id).includes(NO_DESTINATION_FLAG)).toBe(lost);
      const byDevice = tracker.undeliveredByDevice().find((d) => d.deviceId === device);
      if (lost) {
        expect(metric(device, c.expect as UndeliveredReason)).toBe(1);
        expect(byDevice).toMatchObject({ count: 1, reason: c.expect });
        expect(store.searchMessages({ flag: NO_DESTINATION_FLAG }).map((m) => m.id)).toContain(id);
      } else {
        expect(byDevice).toBeUndefined();
        for (const r of ['no-destination', 'destination-broken', 'destination-error', 'flow-error'] as const) expect(metric(device, r)).toBe(0);
      }
    });
  }

  it('flags once: the same message finishing again (re-emission) keeps one flag; other flags stay', async () => {
    const id = await commit('dev-again');
    db.prepare(`UPDATE messages SET flags = '["charset-fallback"]' WHERE id = ?`).run(id);
    for (let i = 0; i < 2; i++) {
      tracker.begin(id, 'dev-again');
      tracker.sent(id);
      await tracker.drain();
    }
    expect(flagsOf(id)).toEqual(['charset-fallback', NO_DESTINATION_FLAG]);
    expect(tracker.undeliveredByDevice().find((d) => d.deviceId === 'dev-again')?.count).toBe(2);
  });

  it('without watchUndelivered the tracker reports nothing (tools, older callers)', async () => {
    const plain = new FlowTracker(store);
    const id = await commit('dev-plain');
    plain.begin(id, 'dev-plain');
    plain.sent(id);
    await plain.drain();
    expect(flagsOf(id)).toEqual([]);
    expect(plain.undeliveredByDevice()).toEqual([]);
  });
});
