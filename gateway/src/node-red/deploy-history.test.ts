import { describe, expect, it } from 'vitest';
import { readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { tempDir } from '../../../test/helpers/env';
import { DeployHistory, deployContext, deploySourceMiddleware, historyStorageModule, summarizeChanges, SUMMARY_LIST_CAP, type DeployContext, type FlowVersion } from './deploy-history';

const tab = { id: 't1', type: 'tab', label: 'Lab' };
const hl7in = { id: 'in1', type: 'iomt-hl7-in', z: 't1', deviceId: 'cobas', port: '${HL7_IN_PORT:-2575}', x: 100, y: 80, wires: [['out1']] };
const hl7out = { id: 'out1', type: 'iomt-hl7-out', z: 't1', destination: 'his', host: 'his.local', port: '2576', x: 300, y: 80, wires: [] };

describe('summarizeChanges (ids, types and field names only)', () => {
  const cases: Array<{ name: string; before: unknown[]; after: unknown[]; expect: { added: string[]; removed: string[]; changed: Array<[string, string[]]> } }> = [
    { name: 'first version: everything added', before: [], after: [tab, hl7in, hl7out], expect: { added: ['t1', 'in1', 'out1'], removed: [], changed: [] } },
    { name: 'destination node deleted and its wire gone', before: [tab, hl7in, hl7out], after: [tab, { ...hl7in, wires: [[]] }], expect: { added: [], removed: ['out1'], changed: [['in1', ['wires']]] } },
    { name: 'a port and a host changed', before: [tab, hl7in, hl7out], after: [tab, { ...hl7in, port: '3000' }, { ...hl7out, host: 'his2' }], expect: { added: [], removed: [], changed: [['in1', ['port']], ['out1', ['host']]] } },
    { name: 'moving a node on the canvas is no change', before: [tab, hl7in], after: [tab, { ...hl7in, x: 400, y: 300 }], expect: { added: [], removed: [], changed: [] } },
    { name: 'a field removed counts as changed', before: [hl7out], after: [{ ...hl7out, port: undefined }].map((n) => JSON.parse(JSON.stringify(n))), expect: { added: [], removed: [], changed: [['out1', ['port']]] } },
    { name: 'order of nodes does not matter', before: [tab, hl7in, hl7out], after: [hl7out, tab, hl7in], expect: { added: [], removed: [], changed: [] } },
  ];
  for (const c of cases) {
    it(c.name, () => {
      const s = summarizeChanges(c.before, c.after);
      expect(s.added.map((n) => n.id)).toEqual(c.expect.added);
      expect(s.removed.map((n) => n.id)).toEqual(c.expect.removed);
      expect(s.changed.map((n) => [n.id, n.fields])).toEqual(c.expect.changed);
      expect(s.counts).toEqual({ added: c.expect.added.length, removed: c.expect.removed.length, changed: c.expect.changed.length });
    });
  }
  it('names types, never values (no host, port or label text in the summary)', () => {
    const s = JSON.stringify(summarizeChanges([tab, hl7in, hl7out], [{ ...tab, label: 'Ward 7 patient Nguyen' }, hl7in]));
    expect(s).toContain('iomt-hl7-out');
    expect(s).not.toMatch(/his\.local|Nguyen|2576/);
  });
  it('caps long lists but keeps exact counts', () => {
    const many = Array.from({ length: SUMMARY_LIST_CAP + 5 }, (_, i) => ({ id: `n${i}`, type: 'debug' }));
    const s = summarizeChanges([], many);
    expect(s.added).toHaveLength(SUMMARY_LIST_CAP);
    expect(s.counts.added).toBe(SUMMARY_LIST_CAP + 5);
  });
});

describe('DeployHistory (files under <data dir>/flow-history)', () => {
  it('keeps versions with time, user, source and summary; newest first; pruned to the last N; ids never reused', () => {
    const t = tempDir();
    try {
      const h = new DeployHistory(join(t.dir, 'flow-history'), { keep: 3 });
      expect(h.list()).toEqual([]);
      const v1 = h.record([tab, hl7in, hl7out], { kind: 'deploy', user: 'anna', source: '10.0.0.5', at: new Date('2026-01-02T03:04:05Z') });
      expect(v1).toMatchObject({ id: 1, at: '2026-01-02T03:04:05.000Z', kind: 'deploy', user: 'anna', source: '10.0.0.5', nodeCount: 3 });
      for (let i = 0; i < 4; i++) h.record([tab, { ...hl7in, port: String(3000 + i) }], { kind: 'deploy', user: 'bob' });
      const list = h.list();
      expect(list.map((v) => v.id)).toEqual([5, 4, 3]);
      expect(list[0].summary.changed).toEqual([{ id: 'in1', type: 'iomt-hl7-in', fields: ['port'] }]);
      expect(list[2].summary.removed).toEqual([]);
      expect(h.get(1)).toBeUndefined(); // pruned
      expect(h.get(4)?.flows).toEqual([tab, { ...hl7in, port: '3002' }]);
      const files = readdirSync(h.dir).sort();
      expect(files).toEqual(['000003.json', '000004.json', '000005.json']);
      expect(statSync(join(h.dir, files[0])).mode & 0o077).toBe(0); // flows may name hosts: owner only
      // a new instance (restart) continues the numbering
      const again = new DeployHistory(h.dir, { keep: 3 });
      expect(again.record([tab], { kind: 'rollback', user: 'anna', rollbackOf: 4 }).id).toBe(6);
    } finally {
      t.cleanup();
    }
  });
  it('at start keeps the flows only when they differ from the latest version; skips a corrupt file', () => {
    const t = tempDir();
    try {
      const h = new DeployHistory(join(t.dir, 'fh'));
      expect(h.recordIfChanged([tab, hl7in])?.kind).toBe('start');
      expect(h.recordIfChanged([tab, hl7in])).toBeUndefined();
      const edited = h.recordIfChanged([tab]);
      expect(edited).toMatchObject({ id: 2, kind: 'start', source: 'start' });
      expect(edited?.summary.removed).toEqual([{ id: 'in1', type: 'iomt-hl7-in' }]);
      writeFileSync(join(h.dir, '000003.json'), '{ not json');
      expect(h.list().map((v) => v.id)).toEqual([2, 1]);
      expect(h.latest()?.version.id).toBe(2);
    } finally {
      t.cleanup();
    }
  });
});

describe('historyStorageModule (Node-RED storage API wrapper)', () => {
  function base() {
    const saved: unknown[][] = [];
    let current: unknown[] = [tab, hl7in];
    return {
      saved,
      module: {
        init: async () => undefined,
        getFlows: async () => current,
        saveFlows: async (f: unknown[]) => {
          saved.push(f);
          current = f;
        },
        getSettings: async () => ({}),
        saveSettings: async () => undefined,
      },
    };
  }
  it('keeps each save with the editor user and the admin request address, after the base saved it', async () => {
    const t = tempDir();
    try {
      const h = new DeployHistory(join(t.dir, 'fh'));
      const b = base();
      const seen: Array<[FlowVersion, DeployContext]> = [];
      const m = historyStorageModule(b.module, h, (v, c) => seen.push([v, c])) as any;
      expect(Object.prototype.hasOwnProperty.call(m, 'getSettings')).toBe(true); // Node-RED checks own properties
      await m.getFlows(); // start: kept once
      await new Promise<void>((resolve, reject) =>
        deploySourceMiddleware({ socket: { remoteAddress: '192.0.2.7' } }, {}, () => {
          m.saveFlows([tab, hl7in, hl7out], { username: 'anna', permissions: '*' }).then(resolve, reject);
        }),
      );
      expect(b.saved).toHaveLength(1);
      expect(seen).toHaveLength(1);
      expect(seen[0][0]).toMatchObject({ id: 2, kind: 'deploy', user: 'anna', source: '192.0.2.7' });
      expect(seen[0][0].summary.added).toEqual([{ id: 'out1', type: 'iomt-hl7-out' }]);
      await deployContext.run({ kind: 'rollback', rollbackOf: 1, source: '192.0.2.8', user: 'bob' }, () => m.saveFlows([tab, hl7in], { username: 'bob' }));
      expect(h.list()[0]).toMatchObject({ id: 3, kind: 'rollback', rollbackOf: 1, user: 'bob', source: '192.0.2.8' });
      expect(JSON.parse(readFileSync(join(h.dir, '000003.json'), 'utf8')).flows).toEqual([tab, hl7in]);
    } finally {
      t.cleanup();
    }
  });
  it('a failed save keeps no version', async () => {
    const t = tempDir();
    try {
      const h = new DeployHistory(join(t.dir, 'fh'));
      const b = base();
      b.module.saveFlows = async () => {
        throw new Error('disk full');
      };
      const m = historyStorageModule(b.module, h, () => undefined) as any;
      await expect(m.saveFlows([tab], { username: 'anna' })).rejects.toThrow('disk full');
      expect(h.list()).toEqual([]);
    } finally {
      t.cleanup();
    }
  });
});
