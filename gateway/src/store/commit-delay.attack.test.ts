/**
 * Attacks on the store's group commit delay (InboundMessage.commitDelayMs, writer-client holdPost): values a
 * flow config or a driver could pass, a quarantine or an undelayed submit arriving during a hold, the writer
 * dying during a hold, a close racing it. The rule under test: a submit resolves only after its commit,
 * it never waits longer than the 100 ms cap, and nothing else waits for it. Real SQLite on disk.
 */
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { StoreError } from '../contracts/errors';
import { tempDir } from '../../../test/helpers/env';
import { GatewayStore } from './gateway-store';
import { sampleMessage } from './test/fixtures';

describe('commit delay attacks', () => {
  const t = tempDir('iomt-commit-delay-');
  let store: GatewayStore;
  beforeEach(() => {
    store = GatewayStore.open({ dataDir: t.dir });
  });
  afterEach(async () => {
    await store?.close();
    t.cleanup();
  });

  // commitDelayMs as a driver or a flow config might pass it; each submit commits within a bounded time
  // (clamped to 0-100 ms; a string or NaN means no hold). 1e9 unclamped would hold for 11 days.
  const VALUES: Array<[string, unknown]> = [
    ['NaN', Number.NaN],
    ['-5', -5],
    ['Infinity', Number.POSITIVE_INFINITY],
    ['1e9', 1e9],
    ['"50" (a string from a flow config)', '50'],
    ['null', null],
  ];
  it.each(VALUES)('commitDelayMs %s: the submit commits, held at most the 100 ms cap', async (_name, v) => {
    const t0 = performance.now();
    const r = await store.submit(sampleMessage(1, { commitDelayMs: v as number }));
    expect(r.duplicate).toBe(false);
    expect(store.getMessage(r.messageId)).toBeDefined();
    // the cap is 100 ms; the rest is one commit on a loaded machine
    expect(performance.now() - t0).toBeLessThan(5000);
  });

  it('a quarantine during a hold is posted at once and takes the held submit with it', async () => {
    let heldDone = false;
    const held = store.submit(sampleMessage(1, { commitDelayMs: 100 })).then((r) => ((heldDone = true), r));
    const q = await store.quarantine({ deviceId: 'dev-1', driver: 'mqtt', reason: 'bad payload', errorCode: 'GW_ERR_PARSE', raw: Buffer.from('{') });
    expect(q).toBeGreaterThan(0);
    await new Promise((r) => setImmediate(r));
    // one post, one transaction: the held submit was answered with the quarantine, not after its 100 ms
    expect(heldDone).toBe(true);
    expect((await held).duplicate).toBe(false);
  });

  it('the writer dying during a hold rejects the held submit (never a resolve: no PUBACK for it)', async () => {
    const held = store.submit(sampleMessage(1, { commitDelayMs: 100 }));
    const outcome = held.then(
      () => 'resolved',
      (e: unknown) => (e instanceof StoreError ? 'rejected' : `other: ${String(e)}`),
    );
    store.crashWriterForTest();
    // the crash command goes with the held submit; an answered submit would have been committed first
    const o = await outcome;
    if (o === 'resolved') {
      // answered before the crash: then it must be on disk
      await store.close().catch(() => undefined);
      const again = GatewayStore.open({ dataDir: t.dir });
      try {
        expect(again.searchMessages({ deviceId: sampleMessage(1).deviceId, limit: 10 }).length).toBe(1);
      } finally {
        await again.close();
      }
    } else {
      expect(o).toBe('rejected');
    }
    // later submits fail loudly, they do not hang in a hold
    await expect(store.submit(sampleMessage(2, { commitDelayMs: 100 }))).rejects.toBeInstanceOf(StoreError);
  });

  it('many held submits past the cap of held commands: all commit, each within the hold', async () => {
    const t0 = performance.now();
    const rs = await Promise.all(Array.from({ length: 600 }, (_, i) => store.submit(sampleMessage(i, { commitDelayMs: 100 }))));
    expect(new Set(rs.map((r) => r.messageId)).size).toBe(600);
    expect(performance.now() - t0).toBeLessThan(10_000);
  });
});
