import { join } from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import type { CommitResult, InboundMessage, ObservationSink } from '../../gateway/src/contracts/driver';
import { AstmDriver } from '../../drivers/astm/astm-driver';
import { loadProfiles } from '../../drivers/astm/profile';
import { parseFaults, simulateAstm } from './cli';

const profiles = loadProfiles(join(__dirname, '../../firmware-config/profiles/astm'));
let driver: AstmDriver | undefined;
afterEach(async () => driver?.close());

describe('simulate astm', () => {
  it('sends sessions with faults over TCP and prints the orders of a host query', async () => {
    const stored: InboundMessage[] = [];
    const sink: ObservationSink = {
      submit: async (m): Promise<CommitResult> => (stored.push(m), { messageId: stored.length, messageUid: String(stored.length), duplicate: false, observations: [] }),
      quarantine: async () => 1,
    };
    driver = new AstmDriver({ deviceId: 'sim', profile: profiles.get('roche-cobas-c311'), transport: { kind: 'tcp-server', port: 0, host: '127.0.0.1' } }, sink, {
      onQuery: async (q) => [{ specimenId: q.specimenIds[0], tests: ['717'] }],
    });
    await driver.start();
    const out: string[] = [];
    const io = { log: (s: string) => out.push(s), err: (s: string) => out.push(`ERR ${s}`) };
    const code = await simulateAstm(['--tcp', `127.0.0.1:${driver.boundPort}`, '--profile', 'roche-cobas-c311', '--count', '3', '--tests', '2', '--fault', 'corrupt-checksum=2', '--fault', 'split-writes=5', '--query', 'Q-1', '--timeout-ms', '10000'], io);
    expect(out.filter((l) => l.startsWith('ERR'))).toEqual([]);
    expect(code).toBe(0);
    expect(stored.filter((m) => m.drafts.length === 2)).toHaveLength(3);
    expect(out.some((l) => /O\|1\|Q-1\|\|\^\^\^717\//.test(l))).toBe(true);
  });
  it('rejects unknown faults and missing endpoints', async () => {
    expect(() => parseFaults(['bogus'])).toThrow();
    const out: string[] = [];
    expect(await simulateAstm([], { log: (s) => out.push(s), err: (s) => out.push(s) })).toBe(2);
  });
});
