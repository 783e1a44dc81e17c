process.env.IOMT_LOG_LEVEL ??= 'silent';
import { afterEach, describe, expect, it } from 'vitest';
import { parseAck } from '../../drivers/hl7-mllp/ack';
import { MllpClient } from '../../drivers/hl7-mllp/mllp-client';
import { freePort, waitFor } from '../../test/helpers/env';
import { runAnalyzer } from '../hl7/analyzer';
import { OruGenerator } from '../hl7/oru-generator';
import { SimulatedHis, type HisReceived } from './his';

let his: SimulatedHis | undefined;
afterEach(async () => {
  await his?.stop();
  his = undefined;
});

describe('SimulatedHis', () => {
  it('records MSH-10, raw text, time and OBX count, and calls the onMessage hooks', async () => {
    const seen: HisReceived[] = [];
    const seen2: string[] = [];
    his = new SimulatedHis({ onMessage: (m) => seen.push(m) });
    const off = his.onMessage((m) => seen2.push(m.controlId));
    const port = await his.start();
    const gen = new OruGenerator({ runId: 'REC' });
    const msg = gen.next();
    const client = new MllpClient({ host: '127.0.0.1', port });
    const ack = parseAck(await client.send(msg.payload));
    expect(ack).toMatchObject({ code: 'AA', controlId: msg.controlId });
    off();
    await client.send(gen.next().payload);
    await client.close();
    const rec = his.received();
    expect(rec.length).toBe(2);
    expect(rec[0]).toMatchObject({ seq: 1, controlId: msg.controlId, text: msg.text, obxCount: msg.obxCount, answer: 'AA' });
    expect(rec[0].at).toBeGreaterThan(0);
    expect(seen.length).toBe(2);
    expect(seen2).toEqual([msg.controlId]);
    expect([...his.uniqueControlIds()]).toEqual(['REC1', 'REC2']);
    his.clear();
    expect(his.received()).toEqual([]);
  });

  it('answers AE with ERR for a matching pattern given as a string, AA otherwise; mode can change at run time', async () => {
    his = new SimulatedHis({ mode: 'ae', aePattern: 'OBX\\|6\\|NM\\|718-7' });
    const port = await his.start();
    const client = new MllpClient({ host: '127.0.0.1', port });
    const gen = new OruGenerator();
    const a = parseAck(await client.send(gen.next().payload));
    expect(a.code).toBe('AE');
    expect(a.hl7ErrorCode).toBe(207);
    his.aePattern = /NO-SUCH-THING/;
    expect(parseAck(await client.send(gen.next().payload)).code).toBe('AA');
    his.mode = 'aa';
    his.aePattern = undefined;
    expect(parseAck(await client.send(gen.next().payload)).code).toBe('AA');
    await client.close();
  });

  it('can be stopped and started on the same port (outage)', async () => {
    const fixed = await freePort();
    his = new SimulatedHis({ port: fixed });
    const port = await his.start();
    expect(port).toBe(fixed);
    expect((await runAnalyzer({ host: '127.0.0.1', port, count: 2 })).acked).toBe(2);
    await his.stop();
    expect(his.running).toBe(false);
    const down = await runAnalyzer({ host: '127.0.0.1', port, count: 1, connectTimeoutMs: 1000 });
    expect(down.errors).toBe(1);
    expect(await his.start()).toBe(fixed);
    expect((await runAnalyzer({ host: '127.0.0.1', port, count: 2 })).acked).toBe(2);
    expect(his.received().length).toBe(4);
    expect(his.uniqueControlIds().size).toBe(4);
  });

  it('stop() releases connections held by silent mode', async () => {
    his = new SimulatedHis({ mode: 'silent' });
    const port = await his.start();
    const client = new MllpClient({ host: '127.0.0.1', port, ackTimeoutMs: 30_000 });
    const p = client.send(new OruGenerator().next().payload).then(
      () => 'acked',
      (e: Error) => e.name,
    );
    await waitFor(() => his!.received().length === 1);
    await his.stop();
    expect(await p).not.toBe('acked');
    await client.close();
  });

  it('does not record raw text when recordText is false and caps records with maxRecords', async () => {
    his = new SimulatedHis({ recordText: false, maxRecords: 2 });
    const port = await his.start();
    await runAnalyzer({ host: '127.0.0.1', port, count: 5 });
    const rec = his.received();
    expect(rec.length).toBe(2);
    expect(rec.map((r) => r.seq)).toEqual([4, 5]);
    expect(rec[0].text).toBe('');
    expect(his.receivedCount).toBe(5);
  });
});
