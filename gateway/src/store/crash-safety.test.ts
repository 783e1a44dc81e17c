import { describe, expect, it } from 'vitest';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import Database from 'better-sqlite3';
import { tempDir } from '../../../test/helpers/env';
import { GatewayStore } from './gateway-store';
import { sampleMessage } from './test/fixtures';

const CHILD = join(__dirname, 'test', 'crash-child.ts');

interface ChildLog {
  acks: Array<{ messageId: number; uid: string; observations: number; dedupeKey: string }>;
  outbox: Set<string>;
  settling: Set<string>;
  delivered: Set<string>;
}

/** Run the writer child, SIGKILL it once `killAfterAcks` messages were acknowledged, return what it printed. */
function runAndKill(dataDir: string, startIndex: number, killAfterAcks: number): Promise<ChildLog> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, ['--import', 'tsx', CHILD, dataDir, String(startIndex)], {
      cwd: join(__dirname, '..', '..', '..'),
      env: { ...process.env, IOMT_LOG_LEVEL: 'silent' },
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    const log: ChildLog = { acks: [], outbox: new Set(), settling: new Set(), delivered: new Set() };
    let buf = '';
    let stderr = '';
    let killed = false;
    child.stdout.setEncoding('utf8');
    child.stdout.on('data', (chunk: string) => {
      buf += chunk;
      let nl: number;
      while ((nl = buf.indexOf('\n')) >= 0) {
        const line = buf.slice(0, nl);
        buf = buf.slice(nl + 1);
        const [kind, ...rest] = line.split(' ');
        if (kind === 'ACK') log.acks.push({ messageId: Number(rest[0]), uid: rest[1], observations: Number(rest[2]), dedupeKey: rest[3] });
        else if (kind === 'OUTBOX') log.outbox.add(rest[0]);
        else if (kind === 'SETTLING') rest.forEach((k) => log.settling.add(k));
        else if (kind === 'DELIVERED') rest.forEach((k) => log.delivered.add(k));
      }
      if (!killed && log.acks.length >= killAfterAcks) {
        killed = true;
        child.kill('SIGKILL'); // mid-stream: the child is writing continuously
      }
    });
    child.stderr.on('data', (d) => (stderr += String(d)));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      // a partial last line (no newline) was not fully printed: ignored
      if (signal !== 'SIGKILL') return reject(new Error(`child exited ${code} ${signal}: ${stderr}`));
      resolve(log);
    });
  });
}

async function checkRecovered(dataDir: string, log: ChildLog): Promise<void> {
  const check = new Database(join(dataDir, 'gateway.db'));
  expect(check.pragma('integrity_check', { simple: true })).toBe('ok');
  check.close();

  const store = GatewayStore.open({ dataDir });
  try {
    // every acknowledged message is there, with its observations (same ids)
    for (const a of log.acks) {
      const m = store.getMessage(a.messageId);
      expect(m, `acknowledged message ${a.messageId} lost`).toBeDefined();
      expect(m!.uid).toBe(a.uid);
      expect(m!.observations.map((o) => o.id)).toEqual(Array.from({ length: a.observations }, (_, k) => `${a.uid}-${k + 1}`));
    }
    const unfinished = new Set(store.unfinished('analyzer-1', 1_000_000).map((u) => u.messageId));
    for (const a of log.acks) expect(unfinished.has(a.messageId)).toBe(true);

    // outbox: acknowledged appends survive; settled-and-acknowledged are delivered; everything else is due again
    const due = new Map(store.lease('his', 1_000_000, 60_000).map((e) => [e.key, e]));
    const stats = store.destinationStats('his')[0];
    expect(stats.delivered).toBeGreaterThanOrEqual(log.delivered.size);
    for (const key of log.outbox) {
      if (log.delivered.has(key)) expect(due.has(key), `delivered ${key} leased again`).toBe(false);
      else if (!log.settling.has(key)) expect(due.has(key), `unsettled ${key} not due after restart`).toBe(true);
    }
    for (const key of log.delivered) expect(due.has(key)).toBe(false);
    store.release('his', [...due.values()].map((e) => e.id));
  } finally {
    await store.close();
  }
}

describe('crash safety (SIGKILL while writing)', () => {
  it('every acknowledged write survives kill -9 at two different instants; unsettled outbox rows are due again', async () => {
    const tmp = tempDir('iomt-crash-');
    try {
      const first = await runAndKill(tmp.dir, 0, 40);
      expect(first.acks.length).toBeGreaterThanOrEqual(40);
      expect(first.outbox.size).toBeGreaterThan(0);
      // some appended rows were leased (in flight, in memory only) and never settled when the kill came
      expect([...first.outbox].filter((k) => !first.settling.has(k)).length).toBeGreaterThan(0);
      await checkRecovered(tmp.dir, first);

      // second crash, later in the stream, on the file recovered from the first
      const second = await runAndKill(tmp.dir, 100_000, 400);
      expect(second.acks.length).toBeGreaterThanOrEqual(400);
      expect(second.delivered.size).toBeGreaterThan(0);
      const both: ChildLog = {
        acks: [...first.acks, ...second.acks],
        outbox: new Set([...first.outbox, ...second.outbox]),
        settling: new Set([...first.settling, ...second.settling]),
        delivered: new Set([...first.delivered, ...second.delivered]),
      };
      await checkRecovered(tmp.dir, both);

      // a device resending an acknowledged message after the crash gets a duplicate, not a second copy
      const store = GatewayStore.open({ dataDir: tmp.dir });
      const last = second.acks[second.acks.length - 1];
      const index = Number(last.dedupeKey.slice('crash-'.length));
      const again = await store.submit(sampleMessage(index, { n: 3, dedupeKey: last.dedupeKey }));
      expect(again).toMatchObject({ duplicate: true, messageId: last.messageId, messageUid: last.uid });
      await store.close();
    } finally {
      tmp.cleanup();
    }
  });
});
