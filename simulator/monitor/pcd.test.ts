/**
 * `simulate monitor --mode pcd` against the real HL7 receiver and store: every message stored once
 * (duplicates acknowledged, not stored again), alarms stored as alarms, the faults flagged, never dropped.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { GatewayStore } from '../../gateway/src/store/gateway-store';
import { Hl7Receiver } from '../../drivers/hl7-mllp/hl7-receiver';
import { freePort, tempDir } from '../../test/helpers/env';
import { simulateMonitor } from './cli';
import type { CommitResult } from '../../gateway/src/contracts/driver';

describe('simulate monitor --mode pcd (central station over MLLP)', () => {
  const cleanups: Array<() => Promise<void> | void> = [];
  afterEach(async () => {
    for (const c of cleanups.reverse()) await c();
    cleanups.length = 0;
  });

  it('3 beds × 6 messages, an alarm every 3rd, with duplicates, unassociated beds, NaN and demo values', { timeout: 30_000 }, async () => {
    const t = tempDir();
    cleanups.push(() => t.cleanup());
    const store = GatewayStore.open({ dataDir: t.dir });
    cleanups.push(() => store.close());
    const port = await freePort();
    const committed: CommitResult[] = [];
    const abort = new AbortController();
    const rx = new Hl7Receiver({ deviceId: 'cs', host: '127.0.0.1', port }, store, (r) => committed.push(r));
    await rx.start(abort.signal);
    cleanups.push(async () => {
      abort.abort();
      await rx.close();
    });
    const lines: string[] = [];
    const code = await simulateMonitor(['--mode', 'pcd', '--port', String(port), '--beds', '3', '--count', '6', '--rate', '50', '--alarm-every', '3', '--fault', 'duplicate', '--fault', 'unassociated', '--fault', 'nan', '--fault', 'demo'], { log: (s) => lines.push(s), err: (s) => lines.push(s) });
    expect(lines.join('\n')).toMatch(/pcd central station OK sent=36 vitals=12 alarms=6 duplicates=18 AA=36/);
    expect(code).toBe(0);
    const fresh = committed.filter((c) => !c.duplicate);
    expect(fresh).toHaveLength(18); // each message stored once
    const obs = fresh.flatMap((c) => c.observations);
    const alarms = obs.filter((o) => o.alarm);
    expect(alarms).toHaveLength(6);
    expect(alarms.map((a) => a.alarm!.phase)).toEqual(['start', 'start', 'start', 'end', 'end', 'end']);
    expect(new Set(alarms.map((a) => a.alarm!.id)).size).toBe(3); // start and end of one alarm share its id
    expect(obs.every((o) => o.category === 'vital-signs' && o.equipment?.eui64?.length === 16 && o.location?.bed)).toBe(true);
    expect(obs.filter((o) => o.quality?.some((q) => q.code === 'value-missing' && q.original === '8388607')).length).toBeGreaterThan(0);
    expect(obs.filter((o) => o.quality?.some((q) => q.code === 'validity-doubtful')).length).toBeGreaterThan(0);
    expect(obs.filter((o) => !o.subject?.patientId && o.location?.bed === 'BED03').length).toBeGreaterThan(0); // unassociated: kept
    expect(obs.filter((o) => o.quality?.some((q) => q.code === 'unmapped-code'))).toEqual([]);
  });

  it('--help and bad options', async () => {
    const lines: string[] = [];
    expect(await simulateMonitor(['--mode', 'pcd', '--help'], { log: (s) => lines.push(s), err: (s) => lines.push(s) })).toBe(0);
    expect(lines.join('\n')).toMatch(/--alarm-every/);
    await expect(simulateMonitor(['--mode', 'pcd', '--fault', 'meteor'], { log: () => undefined, err: () => undefined })).rejects.toThrow(/unknown fault/);
  });
});
