/**
 * Thin Node-RED wrapper (conventions §11). `iomt-dicom-out` queues each stored DICOM instance (a
 * message from `iomt-dicom-in`: one observation whose value references the file) for one PACS: a
 * small descriptor goes to the durable outbox (key = the message uid, so a re-emitted message is not
 * queued twice) and done() is called after that commit; a worker sends the files with C-STORE.
 * Messages without a DICOM instance (e.g. MPPS events) are passed over.
 */
import { getRuntime } from '../../../runtime';
import { queueForDelivery, reportStartFailure, watchDestination, specProblems, type RedNode } from '../../../node-red/device-node';
import { resolveEnvTemplate } from '../../../config/env-template';
import type { Observation } from '../../../contracts/observation';
import type { DicomInstanceRecord } from '../../../../../drivers/dicom/contracts';
import { DicomStoreOutput } from '../dicom-store-output';
import { dicomOutSettings, type DicomOutConfig } from './dicom-out-settings';
import { DICOM_OUT_SPEC } from './iomt-dicom-out.spec';

export = function register(RED: any): void {
  function IomtDicomOut(this: RedNode, config: DicomOutConfig) {
    try {
      start.call(this, config);
    } catch (e) {
      reportStartFailure(this, 'destination', resolveEnvTemplate(config.destination).trim() || config.name || config.id, 'dicom-store', `cannot start: ${(e as Error).message}`, 'cannot start');
    }
  }
  function start(this: RedNode, config: DicomOutConfig) {
    RED.nodes.createNode(this, config);
    const node = this;
    const rt = getRuntime();
    const invalid = specProblems(DICOM_OUT_SPEC, config);
    const s = invalid ? { problem: invalid } : dicomOutSettings(config, rt.settings.dataDir);
    if ('problem' in s) {
      reportStartFailure(node, 'destination', resolveEnvTemplate(config.destination).trim() || config.name || config.id, 'dicom-store', s.problem, 'invalid configuration');
      return;
    }
    const output = new DicomStoreOutput(s.options);
    const destination = output.destination;
    rt.store.setDestinationPolicy(destination, s.policy);
    let worker;
    try {
      worker = rt.registerDestination(output, { unavailableBackoffMs: { base: Math.min(1000, s.reconnectMaxMs), max: s.reconnectMaxMs } });
    } catch (e) {
      reportStartFailure(node, 'destination', `${destination}#${node.id}`, 'dicom-store', (e as Error).message, 'duplicate destination');
      return;
    }
    // 'connected' only while the link to the peer is really open; 'idle' before the first delivery
    const stopStatus = watchDestination(node, rt.store, destination, worker, () => output.connected || undefined);

    node.on('input', (msg: { payload?: unknown; _iomt?: { messageUid?: string; messageId?: number } }, _send, done) => {
      const observations = Array.isArray(msg.payload) ? (msg.payload as Observation[]) : undefined;
      if (!observations || !msg._iomt?.messageUid) return done(new Error('iomt-dicom-out expects msg.payload = observations from an IoMT device node'));
      if (!observations.some((o) => o.value?.kind === 'reference' && o.driver === 'dicom')) return done(); // nothing to forward
      const iomt = { messageUid: msg._iomt.messageUid, messageId: msg._iomt.messageId };
      // the index row (message meta, drivers/dicom/contracts.ts) carries UIDs, sha256 and size
      const record = () => (iomt.messageId ? (rt.store.getMessage(iomt.messageId)?.meta as Partial<DicomInstanceRecord> | undefined) : undefined);
      queueForDelivery(rt.store, destination, iomt, (key) => output.prepare(observations, key, record()), worker, done);
    });
    node.on('close', (_removed, done) => {
      stopStatus();
      rt.unregisterDestination(destination).then(() => done(), () => done());
    });
  }
  RED.nodes.registerType('iomt-dicom-out', IomtDicomOut);
};
