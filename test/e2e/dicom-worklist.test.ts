/**
 * Issue 11 parts 3, 4, 8 end to end, with independent peers:
 * - a RIS sends ORM^O01 (Vietnamese patient name) with python-hl7's `mllp_send` to the gateway's
 *   orders listener (Hl7Receiver with the order cache, as the `hl7 in` node wires it);
 * - dcmtk's `findscu -W` queries the gateway's DICOM SCP (drivers/dicom/storage-scp.ts with the
 *   worklist provider and MPPS handler, as the `dicom in` node wires them): the name arrives intact in
 *   UTF-8 with ISO_IR 192, only the asked keys come back; an old console (ASCII) gets it folded;
 * - a cancel (ORC-1 CA) removes the item;
 * - MPPS IN PROGRESS then COMPLETED from the modality simulator reaches an independent MLLP receiver
 *   (test/helpers/independent-his.ts) as ORM^O01 ORC-1 SC, ORC-5 IP then CM, through the store's
 *   outbox and the hl7-mllp output (what the `hl7 out` node does on each committed message);
 * - `simulate modality` runs its whole workflow (echo, worklist, MPPS, streamed C-STORE) against it.
 */
import { execFile } from 'node:child_process';
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import Database from 'better-sqlite3';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { requirePeer, tempDir, waitFor } from '../helpers/env';
import { IndependentHis } from '../helpers/independent-his';
import type { CommitResult } from '../../gateway/src/contracts/driver';
import { createRootLogger } from '../../gateway/src/log/logger';
import { OrderCache } from '../../gateway/src/orders/order-cache';
import { Hl7MllpOutput } from '../../gateway/src/outputs/hl7-mllp/hl7-mllp-output';
import { OutboxWorker } from '../../gateway/src/pipeline/outbox-worker';
import { GatewayStore } from '../../gateway/src/store/gateway-store';
import { Hl7Receiver } from '../../drivers/hl7-mllp/hl7-receiver';
import { DicomStorageScp } from '../../drivers/dicom/storage-scp';
import { createWorklistProvider } from '../../drivers/dicom/worklist';
import { createMppsHandler } from '../../drivers/dicom/mpps';
import { ormCt } from '../../drivers/dicom/worklist-fixtures';
import { mppsFinish, mppsStart, worklist } from '../../simulator/dicom/modality';
import { simulateModality } from '../../simulator/dicom/cli';

const pexec = promisify(execFile);

describe('modality worklist and MPPS end to end (mllp_send → findscu; MPPS → ORM^O01 at an independent HIS)', () => {
  const tmp = tempDir('dicom-mwl-e2e-');
  let store: GatewayStore;
  let db: Database.Database;
  let cache: OrderCache;
  let his: IndependentHis;
  let output: Hl7MllpOutput;
  let worker: OutboxWorker;
  let receiver: Hl7Receiver;
  let scp: DicomStorageScp;
  let ordersPort: number;
  let dicomPort: number;
  let n = 0;

  const today = (() => {
    const d = new Date();
    return `${d.getFullYear()}${String(d.getMonth() + 1).padStart(2, '0')}${String(d.getDate()).padStart(2, '0')}`;
  })();

  beforeAll(async () => {
    requirePeer('mllp_send');
    requirePeer('findscu');
    requirePeer('dcmdump');
    createRootLogger('silent');
    store = GatewayStore.open({ dataDir: tmp.dir });
    db = new Database(join(tmp.dir, 'gateway.db'));
    db.pragma('journal_mode = WAL');
    db.pragma('synchronous = FULL');
    db.pragma('busy_timeout = 10000');
    cache = new OrderCache(db);
    his = new IndependentHis();
    const hisPort = await his.start();
    output = new Hl7MllpOutput({ destination: 'ris', host: '127.0.0.1', port: hisPort, ackTimeoutMs: 5000 });
    worker = new OutboxWorker(store, output, { idlePollMs: 200, unavailableBackoffMs: { base: 200, max: 1000 } });
    worker.start();
    // the `dicom in` node emits each committed MPPS message into the flow (onCommitted); the `hl7 out`
    // node then prepares it, appends it to the outbox and wakes its worker: done here directly
    const onCommitted = (r: CommitResult) => {
      if (!r.observations.length) return;
      const p = output.prepare(r.observations, r.messageUid);
      void store.appendOutbox('ris', [{ key: r.messageUid, messageId: r.messageId, payload: p.payload, contentType: p.contentType }]).then(() => worker.wake());
    };
    receiver = new Hl7Receiver({ deviceId: 'ris-orders', host: '127.0.0.1', port: 0, orders: { accept: (u, h) => void cache.apply(u, { deviceId: 'ris-orders', messageControlId: h.controlId }) } }, store);
    ordersPort = (await receiver.start()).port;
    scp = new DicomStorageScp(
      {
        deviceId: 'dicom-gw',
        aeTitle: 'IOMT_GW',
        host: '127.0.0.1',
        port: 0,
        dataDir: tmp.dir,
        services: { worklist: createWorklistProvider({ orders: cache }, { asciiAeTitles: ['OLDCT'] }), mpps: createMppsHandler({ orders: cache, store }, { deviceId: 'dicom-gw', onCommitted }) },
      },
      store,
    );
    dicomPort = (await scp.start()).port;
  });

  afterAll(async () => {
    await scp?.close();
    await receiver?.close();
    await worker?.stop();
    await output?.close();
    await his?.stop();
    db?.close();
    await store?.close();
    tmp.cleanup();
  });

  async function sendOrm(text: string): Promise<string> {
    const f = join(tmp.dir, `orm-${++n}.hl7`);
    writeFileSync(f, text.replace(/\r/g, '\n'));
    const { stdout } = await pexec('timeout', ['10', 'mllp_send', '--loose', '-f', f, '-p', String(ordersPort), '127.0.0.1']);
    return stdout;
  }

  /** findscu -W with -X: the responses as files; returns their paths (one per match). */
  async function findscu(calling: string, keys: string[]): Promise<string[]> {
    const dir = join(tmp.dir, `find-${++n}`);
    mkdirSync(dir);
    await pexec('findscu', ['-W', '-aet', calling, '-aec', 'IOMT_GW', '-X', '-od', dir, ...keys.flatMap((k) => ['-k', k]), '127.0.0.1', String(dicomPort)], { timeout: 20_000 });
    return readdirSync(dir)
      .filter((f) => f.startsWith('rsp'))
      .sort()
      .map((f) => join(dir, f));
  }

  /** The tags in a response file (dcmdump), nested ones with their sequence path. */
  async function tagsOf(file: string): Promise<string[]> {
    const { stdout } = await pexec('dcmdump', ['-q', file]);
    return stdout
      .split('\n')
      .map((l) => /^(\s*)\(([0-9a-f]{4},[0-9a-f]{4})\)/i.exec(l))
      .filter((m): m is RegExpExecArray => !!m && m[2].toLowerCase() !== 'fffe,e000' && m[2].toLowerCase() !== 'fffe,e00d' && m[2].toLowerCase() !== 'fffe,e0dd')
      .map((m) => `${m[1].length ? '>' : ''}${m[2].toLowerCase()}`)
      .filter((t) => !t.startsWith('0002,')); // findscu -X adds File Meta Information (PS3.10) when it writes the response
  }

  const keys = (date: string) => ['PatientName=', 'PatientID=', 'AccessionNumber=', '(0040,0100)[0].Modality=CT', '(0040,0100)[0].ScheduledStationAETitle=', `(0040,0100)[0].ScheduledProcedureStepStartDate=${date}`];

  it('ORM^O01 via mllp_send → AA; findscu -W gets the Vietnamese name in UTF-8 (ISO_IR 192) and only the asked keys', async () => {
    const ack = await sendOrm(ormCt({ ctrl: 'E2E-ORM-1', order: 'E2E-1', acc: 'ACC-E2E-1', date: `${today}100000` }));
    expect(ack).toContain('MSA|AA|E2E-ORM-1');
    const files = await findscu('CT01', keys(today));
    expect(files).toHaveLength(1);
    const bytes = readFileSync(files[0]);
    expect(bytes.includes(Buffer.from('Nguyễn^Văn An', 'utf8'))).toBe(true);
    const { stdout } = await pexec('dcmdump', ['+U8', '-q', files[0]]);
    expect(stdout).toContain('(0008,0005) CS [ISO_IR 192]');
    expect(stdout).toContain('(0008,0050) SH [ACC-E2E-1]');
    expect(stdout).toContain('(0010,0020) LO [BN0067890]');
    expect(await tagsOf(files[0])).toEqual(['0008,0005', '0008,0050', '0010,0010', '0010,0020', '0040,0100', '>0008,0060', '>0040,0001', '>0040,0002']);
  });

  it('an old console (calling AE in asciiAeTitles) gets the name folded to ASCII and no character set', async () => {
    const files = await findscu('OLDCT', ['SpecificCharacterSet=', ...keys(today)]);
    expect(files).toHaveLength(1);
    const { stdout } = await pexec('dcmdump', ['-q', files[0]]);
    expect(stdout).toContain('(0010,0010) PN [Nguyen^Van An]');
    expect(stdout).not.toContain('ISO_IR 192');
    const bytes = readFileSync(files[0]);
    expect(bytes.includes(Buffer.from('Nguyen^Van An', 'latin1'))).toBe(true);
    expect(bytes.includes(Buffer.from('ễ', 'utf8'))).toBe(false);
  });

  it('a worklist query through the simulator (dcmjs-dimse) decodes the same UTF-8 name', async () => {
    const r = await worklist({ host: '127.0.0.1', port: dicomPort, calling: 'CT01', called: 'IOMT_GW' }, { PatientName: 'NGUYEN*', AccessionNumber: '' });
    expect(r.status).toBe(0);
    expect(r.items.map((i) => i.AccessionNumber)).toEqual(['ACC-E2E-1']);
    expect(JSON.stringify(r.items[0].PatientName)).toContain('Nguyễn^Văn An');
  });

  it('MPPS IN PROGRESS then COMPLETED → ORM^O01 ORC-1 SC with ORC-5 IP, then CM, at the independent HIS; the item shows its progress', async () => {
    const peer = { host: '127.0.0.1', port: dicomPort, calling: 'CT01', called: 'IOMT_GW' };
    const { items } = await worklist(peer, { AccessionNumber: 'ACC-E2E-1', PatientName: '', PatientID: '', StudyInstanceUID: '', RequestedProcedureID: '', ScheduledProcedureStepSequence: [{ ScheduledProcedureStepID: '' }] });
    expect(items).toHaveLength(1);
    const uid = `2.25.${Date.now()}1`;
    expect(await mppsStart(peer, uid, items[0], 'CT')).toBe(0);
    const ip = await waitFor(() => his.received.find((m) => /\rORC\|SC\|[^\r]*\|IP\|/.test(m.text)), 15_000);
    const segs = ip.text.split('\r');
    expect(segs[0].split('|')[8]).toBe('ORM^O01^ORM_O01');
    const orc = segs.find((s) => s.startsWith('ORC|'))!.split('|');
    expect([orc[1], orc[2], orc[3], orc[5]]).toEqual(['SC', 'E2E-1', 'E2E-1', 'IP']);
    expect(segs.find((s) => s.startsWith('PID|'))).toContain('Nguyễn^Văn An');
    expect(segs.find((s) => s.startsWith('OBR|'))!.split('|')[18]).toBe('ACC-E2E-1');
    const st = await worklist(peer, { AccessionNumber: 'ACC-E2E-1', ScheduledProcedureStepSequence: [{ ScheduledProcedureStepStatus: '' }] });
    expect(JSON.stringify(st.items[0].ScheduledProcedureStepSequence)).toContain('STARTED');

    expect(await mppsFinish(peer, uid, 'COMPLETED', [])).toBe(0);
    const cm = await waitFor(() => his.received.find((m) => /\rORC\|SC\|[^\r]*\|CM\|/.test(m.text)), 15_000);
    expect(cm.text.split('\r').find((s) => s.startsWith('ORC|'))!.split('|')[5]).toBe('CM');
    expect(his.received.indexOf(ip)).toBeLessThan(his.received.indexOf(cm));
    // after COMPLETED the step may no longer be updated (PS3.4 F.7.2.2.2): 0x0110
    expect(await mppsFinish(peer, uid, 'DISCONTINUED', [])).toBe(0x0110);
  });

  it('OMI^O23 (v2.5.1, IPC) via mllp_send: the station AE of IPC-9 and the study UID of IPC-3 are served', async () => {
    const omi = [
      'MSH|^~\\&|RIS|BV_DEMO|IOMT-GW|RIS|20250302080000+0700||OMI^O23^OMI_O23|E2E-OMI-1|P|2.5.1|||AL|NE|VNM|UNICODE UTF-8',
      'PID|1||BN0011111^^^BV_DEMO^MR||Trần^Thị Bình||19850505|F',
      'ORC|NW|PL-MR-1|FI-MR-1||||||20250302080000',
      `TQ1|1||||||${today}143000||S`,
      'OBR|1|PL-MR-1|FI-MR-1|MRBRAIN^MRI sọ não^99RIS',
      'IPC|ACC-MR-E2E|RP-MR-1|1.2.826.0.1.3680043.8.498.777|SPS-MR-1|MR|BRAIN-STD^Brain standard^99GW|MR_ROOM1|PHONG MR 1|MR01',
    ].join('\r');
    expect(await sendOrm(omi)).toContain('MSA|AA|E2E-OMI-1');
    const files = await findscu('MR01', ['PatientName=', 'StudyInstanceUID=', '(0040,0100)[0].ScheduledStationAETitle=MR01', '(0040,0100)[0].Modality=MR', '(0040,0100)[0].ScheduledStationName=']);
    expect(files).toHaveLength(1);
    const { stdout } = await pexec('dcmdump', ['+U8', '-q', files[0]]);
    expect(stdout).toContain('(0020,000d) UI [1.2.826.0.1.3680043.8.498.777]');
    expect(stdout).toContain('(0040,0010) SH [MR_ROOM1]');
    expect(readFileSync(files[0]).includes(Buffer.from('Trần^Thị Bình', 'utf8'))).toBe(true);
    expect(await findscu('CT01', ['PatientName=', '(0040,0100)[0].ScheduledStationAETitle=CT01', '(0040,0100)[0].Modality=MR'])).toEqual([]);
  });

  it('the RIS is down when the procedure starts: the modality still gets success (committed), the ORM^O01 waits in the outbox and arrives when the RIS is back', async () => {
    await sendOrm(ormCt({ ctrl: 'E2E-ORM-5', order: 'E2E-5', acc: 'ACC-E2E-5', date: `${today}130000` }));
    const peer = { host: '127.0.0.1', port: dicomPort, calling: 'CT01', called: 'IOMT_GW' };
    const { items } = await worklist(peer, { AccessionNumber: 'ACC-E2E-5', PatientName: '', PatientID: '', StudyInstanceUID: '', RequestedProcedureID: '', ScheduledProcedureStepSequence: [{ ScheduledProcedureStepID: '' }] });
    expect(items).toHaveLength(1);
    await his.stop();
    expect(await mppsStart(peer, `2.25.${Date.now()}5`, items[0], 'CT')).toBe(0);
    await waitFor(() => (store.destinationStats('ris')[0]?.pending ?? 0) >= 1, 5000);
    await new Promise((r) => setTimeout(r, 500));
    expect(his.received.some((m) => m.text.includes('ORC|SC|E2E-5|'))).toBe(false);
    await his.start(); // the same port
    const ip = await waitFor(() => his.received.find((m) => m.text.includes('\rORC|SC|E2E-5|E2E-5||IP|')), 30_000);
    expect(ip.answered).toBe('AA');
  });

  it('ORC-1 CA via mllp_send removes the item from the worklist', async () => {
    await sendOrm(ormCt({ ctrl: 'E2E-ORM-2', order: 'E2E-2', acc: 'ACC-E2E-2', name: 'Lê^Văn^Cường', pid: 'BN2', date: `${today}110000` }));
    expect((await findscu('CT01', ['AccessionNumber=ACC-E2E-2', 'PatientName='])).length).toBe(1);
    const ack = await sendOrm(ormCt({ ctrl: 'E2E-ORM-3', control: 'CA', order: 'E2E-2', acc: 'ACC-E2E-2', name: 'Lê^Văn^Cường', pid: 'BN2', date: `${today}110000` }));
    expect(ack).toContain('MSA|AA|E2E-ORM-3');
    expect(await findscu('CT01', ['AccessionNumber=ACC-E2E-2', 'PatientName='])).toEqual([]);
  });

  it('simulate modality: echo, worklist, MPPS and a streamed C-STORE of 2 generated objects against the gateway', async () => {
    await sendOrm(ormCt({ ctrl: 'E2E-ORM-4', order: 'E2E-4', acc: 'ACC-E2E-4', date: `${today}120000` }));
    const out: string[] = [];
    const code = await simulateModality(['--host', '127.0.0.1', '--port', String(dicomPort), '--aet', 'CT01', '--aec', 'IOMT_GW', '--accession', 'ACC-E2E-4', '--count', '2', '--size', '1M'], { log: (s) => out.push(s), err: (s) => out.push(s) });
    expect(out.join('\n')).toMatch(/echo 0x0000/);
    expect(out.join('\n')).toMatch(/find 0x0000 items=\d+ chosen accession=ACC-E2E-4/);
    expect(out.join('\n')).toMatch(/mpps n-create IN PROGRESS 0x0000/);
    expect(out.join('\n')).toMatch(/store ok=2\/2/);
    expect(out.join('\n')).toMatch(/mpps n-set COMPLETED 0x0000/);
    expect(code).toBe(0);
    await waitFor(() => his.received.some((m) => /\rORC\|SC\|E2E-4\|E2E-4\|\|CM\|/.test(m.text)), 15_000);
    // wrong called AE → A-ASSOCIATE-RJ reason 7 (PS3.8 9.3.4); the simulator says the gateway reacted as it must
    out.length = 0;
    expect(await simulateModality(['--host', '127.0.0.1', '--port', String(dicomPort), '--do', 'echo', '--fault', 'wrong-aet'], { log: (s) => out.push(s), err: (s) => out.push(s) })).toBe(0);
    expect(out.join('\n')).toMatch(/called AE title not recognized/);
  });
});
