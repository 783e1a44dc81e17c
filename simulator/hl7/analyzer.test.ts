process.env.IOMT_LOG_LEVEL ??= 'silent';
import { afterEach, describe, expect, it } from 'vitest';
import { parseHl7, readHeader } from '../../drivers/hl7-mllp/hl7-message';
import { SimulatedHis } from '../his/his';
import { runAnalyzer, summarize, type AnalyzerAckEvent } from './analyzer';
import { CBC_PANEL, OruGenerator } from './oru-generator';

let his: SimulatedHis | undefined;
afterEach(async () => {
  await his?.stop();
  his = undefined;
});

describe('OruGenerator', () => {
  it('builds a ~1 KB v2.3.1 ORU^R01 with a CBC OBX set, unique MSH-10 and specimen id', () => {
    const g = new OruGenerator({ device: 'XN-1000', runId: 'T1' });
    const a = g.next();
    const b = g.next();
    expect(a.payload.length).toBeGreaterThan(800);
    expect(a.payload.length).toBeLessThan(1400);
    const m = parseHl7(a.text);
    const h = readHeader(m);
    expect(h.sendingApp).toBe('XN-1000');
    expect(h.messageType).toBe('ORU');
    expect(h.trigger).toBe('R01');
    expect(h.version).toBe('2.3.1');
    expect(h.controlId).toBe(a.controlId);
    expect(h.controlId.length).toBeLessThanOrEqual(20);
    expect(m.get('OBR', 3)).toBe(a.specimenId);
    const obx = m.segments('OBX');
    expect(obx.length).toBe(CBC_PANEL.length);
    for (const s of obx) {
      expect(s.get(2)).toBe('NM');
      expect(s.get(3, 3)).toBe('LN');
      expect(Number.isFinite(Number(s.get(5)))).toBe(true);
      expect(s.get(6)).not.toBe('');
      expect(s.get(7)).toMatch(/^[\d.]+-[\d.]+$/);
      expect(['L', 'H', 'N']).toContain(s.get(8));
      expect(s.get(11)).toBe('F');
    }
    expect(b.controlId).not.toBe(a.controlId);
    expect(b.specimenId).not.toBe(a.specimenId);
  });

  it('rejects a device name containing HL7 delimiters', () => {
    expect(() => new OruGenerator({ device: 'A|B' })).toThrow(RangeError);
  });
});

describe('summarize', () => {
  it('computes nearest-rank percentiles', () => {
    const s = summarize(Array.from({ length: 100 }, (_, i) => i + 1));
    expect(s.p50).toBe(50);
    expect(s.p99).toBe(99);
    expect(s.max).toBe(100);
    expect(summarize([]).count).toBe(0);
  });
});

describe('analyzer ↔ SimulatedHis', () => {
  it('AA mode: every message acked with its own MSH-10, control ids unique, over several connections', async () => {
    his = new SimulatedHis();
    const port = await his.start();
    const acks: AnalyzerAckEvent[] = [];
    const r = await runAnalyzer({ host: '127.0.0.1', port, count: 60, connections: 4, device: 'SIM-XN', onAck: (e) => acks.push(e) });
    expect(r.ok).toBe(true);
    expect(r).toMatchObject({ sent: 60, acked: 60, nacked: 0, mismatched: 0, timeouts: 0, errors: 0, connections: 4 });
    expect(r.latencyMs.count).toBe(60);
    expect(acks.length).toBe(60);
    expect(acks.every((a) => a.outcome === 'acked' && a.ackControlId === a.controlId)).toBe(true);
    const rec = his.received();
    expect(rec.length).toBe(60);
    expect(his.uniqueControlIds().size).toBe(60);
    expect(new Set(rec.map((m) => m.conn)).size).toBe(4);
    expect(rec.every((m) => m.answer === 'AA' && m.obxCount === CBC_PANEL.length && readHeader(parseHl7(m.text)).sendingApp === 'SIM-XN')).toBe(true);
  });

  it('paced rate and duration bound the run', async () => {
    his = new SimulatedHis();
    const port = await his.start();
    const r = await runAnalyzer({ host: '127.0.0.1', port, count: 5, rate: 200 });
    expect(r.sent).toBe(5);
    expect(r.ok).toBe(true);
    const d = await runAnalyzer({ host: '127.0.0.1', port, durationMs: 200, connections: 2 });
    expect(d.sent).toBeGreaterThan(0);
    expect(d.acked).toBe(d.sent);
  });

  it('AE-pattern mode: the analyzer reports the nacks for matching messages only', async () => {
    // every third control id ends in 3, 6 or 9 → match on the run id + those digits
    const gen = new OruGenerator({ runId: 'AEX' });
    his = new SimulatedHis({ mode: 'ae', aePattern: /\|ORU\^R01\|AEX\d*[05]\|/ });
    const port = await his.start();
    const nacks: AnalyzerAckEvent[] = [];
    const r = await runAnalyzer({ host: '127.0.0.1', port, count: 20, generator: gen, onAck: (e) => e.outcome === 'nacked' && nacks.push(e) });
    expect(r.ok).toBe(false);
    expect(r.nacked).toBe(4); // 5, 10, 15, 20
    expect(r.acked).toBe(16);
    expect(nacks.map((n) => n.controlId).sort()).toEqual(['AEX10', 'AEX15', 'AEX20', 'AEX5']);
    expect(nacks.every((n) => n.code === 'AE' && n.ackControlId === n.controlId)).toBe(true);
    expect(r.nackSamples[0]).toContain('rejected by simulated HIS');
  });

  it('silent mode: the analyzer reports ACK timeouts', async () => {
    his = new SimulatedHis({ mode: 'silent' });
    const port = await his.start();
    const r = await runAnalyzer({ host: '127.0.0.1', port, count: 3, ackTimeoutMs: 250 });
    expect(r).toMatchObject({ sent: 3, acked: 0, timeouts: 3, errors: 0, ok: false });
    expect(his.received().length).toBe(3);
    expect(his.received().every((m) => m.answer === 'none')).toBe(true);
  });

  it('drop mode: every 2nd message loses its connection, the analyzer reconnects and reports the errors', async () => {
    his = new SimulatedHis({ mode: 'drop', dropEvery: 2 });
    const port = await his.start();
    const r = await runAnalyzer({ host: '127.0.0.1', port, count: 6, ackTimeoutMs: 5000 });
    expect(r).toMatchObject({ sent: 6, acked: 3, errors: 3, timeouts: 0, ok: false });
    expect(r.errorSamples[0]).toMatch(/connection lost/);
    expect(his.received().map((m) => m.answer)).toEqual(['AA', 'dropped', 'AA', 'dropped', 'AA', 'dropped']);
  });

  it('drop mode without dropEvery drops every message', async () => {
    his = new SimulatedHis({ mode: 'drop' });
    const port = await his.start();
    const r = await runAnalyzer({ host: '127.0.0.1', port, count: 2 });
    expect(r).toMatchObject({ sent: 2, acked: 0, errors: 2 });
  });

  it('reports connection errors when nobody listens', async () => {
    his = new SimulatedHis();
    const port = await his.start();
    await his.stop();
    const r = await runAnalyzer({ host: '127.0.0.1', port, count: 2, connectTimeoutMs: 1000 });
    expect(r).toMatchObject({ sent: 2, acked: 0, errors: 2, ok: false });
  });
});
