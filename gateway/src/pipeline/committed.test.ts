import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { Writable } from 'node:stream';
import pino from 'pino';
import { tempDir } from '../../../test/helpers/env';
import type { CommitResult, InboundMessage } from '../contracts/driver';
import { metrics, registry } from '../metrics/registry';
import { GatewayStore } from '../store/gateway-store';
import { sampleMessage } from '../store/test/fixtures';
import { reportCommitted } from './committed';

/** A pino logger writing JSON lines into an array (the real logger library, no mock). */
function captureLogger(): { log: pino.Logger; lines: Array<Record<string, unknown>>; text: () => string } {
  const chunks: string[] = [];
  const stream = new Writable({
    write(chunk: Buffer, _enc, cb) {
      chunks.push(chunk.toString('utf8'));
      cb();
    },
  });
  const log = pino({ level: 'info' }, stream);
  const text = () => chunks.join('');
  return {
    log,
    get lines() {
      return text()
        .split('\n')
        .filter(Boolean)
        .map((l) => JSON.parse(l) as Record<string, unknown>);
    },
    text,
  };
}

describe('reportCommitted: reused control ids', () => {
  let tmp: ReturnType<typeof tempDir>;
  let store: GatewayStore;

  beforeEach(() => {
    tmp = tempDir('iomt-committed-');
    store = GatewayStore.open({ dataDir: tmp.dir });
  });
  afterEach(async () => {
    await store.close();
    tmp.cleanup();
  });

  it.each([1, 3, 7])('%i messages reusing a control id → iomt_control_id_reused_total == N, one warn line each, no patient data', async (n) => {
    const device = `reuse-${n}-${Date.now()}`; // the registry is per process: a label of its own
    const msg = (i: number, content: string): InboundMessage =>
      sampleMessage(i, { deviceId: device, sender: 'LAB^X', sourceMessageId: 'CTL-1', controlKey: 'LAB^X|CTL-1', dedupeKey: `LAB^X|CTL-1|${content}`, patientId: `PATIENT-${i}` });
    const cap = captureLogger();
    const handed: CommitResult[] = [];
    const report = async (m: InboundMessage) => reportCommitted(cap.log, await store.submit(m), m, (r) => handed.push(r), { connId: 1, msg: 'duplicate message' });

    await report(msg(0, 'original')); // first use: not a reuse
    for (let i = 1; i <= n; i++) await report(msg(i, `other-${i}`)); // n reuses
    await report(msg(1, 'other-1')); // a resend of a reuse: duplicate, not counted again
    await report(sampleMessage(99, { deviceId: device, controlKey: 'LAB^X|CTL-2', dedupeKey: 'LAB^X|CTL-2|x' })); // other control id

    expect(metrics.controlIdReused.get({ device })).toBe(n);
    expect(metrics.committed.get({ device })).toBe(n + 2);
    expect(metrics.duplicates.get({ device })).toBe(1);
    expect(registry.render()).toContain(`iomt_control_id_reused_total{device="${device}"} ${n}`);
    // every new message is handed on (stored and delivered), the reuses included
    expect(handed).toHaveLength(n + 2);
    expect(handed.filter((r) => r.controlIdReused)).toHaveLength(n);

    const warns = cap.lines.filter((l) => l.level === 40);
    expect(warns).toHaveLength(n);
    const reused = handed.filter((r) => r.controlIdReused);
    expect(warns.map((w) => w.messageId)).toEqual(reused.map((r) => r.messageId));
    for (const w of warns) expect(w).toMatchObject({ device, controlId: 'CTL-1', msg: expect.stringContaining('control id reused') });
    expect(cap.text()).not.toMatch(/PATIENT-|SPEC\d|MSH\|/); // no patient ids, specimen ids or payload
  });
});
