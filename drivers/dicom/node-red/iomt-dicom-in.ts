/**
 * Thin Node-RED wrapper (conventions §11): `iomt-dicom-in` is the DICOM storage SCP for modalities
 * (drivers/dicom/storage-scp.ts). Each stored instance is committed (file + index row) before its
 * C-STORE success, then its imaging observation goes into the flow. Worklist and MPPS are optional.
 */
import { getRuntime } from '../../../gateway/src/runtime';
import { DeviceEmitter, reportStartFailure, showStatus, specProblems, whenFlowsStarted, type RedNode } from '../../../gateway/src/node-red/device-node';
import { deviceIdOf, dicomInOptions, dicomInServices, providerRuntime, type DicomInConfig } from '../dicom-in-node';
import { DicomStorageScp, DRIVER_NAME } from '../storage-scp';
import { DICOM_IN_SPEC } from './iomt-dicom-in.spec';

export = function register(RED: any): void {
  function IomtDicomIn(this: RedNode, config: DicomInConfig) {
    RED.nodes.createNode(this, config);
    const node = this;
    const deviceId = deviceIdOf(config);
    const fail = (reason: string, detail: string) => reportStartFailure(node, 'device', deviceId, DRIVER_NAME, reason, detail);
    try {
      const invalid = specProblems(DICOM_IN_SPEC, config);
      if (invalid) return void fail(invalid, 'invalid configuration');
      const rt = getRuntime();
      const emitter = new DeviceEmitter(node, deviceId, DRIVER_NAME);
      // MPPS state changes go into the flow as they are committed (to the RIS through an hl7 out)
      const services = dicomInServices(config, providerRuntime(rt, (r, m) => emitter.committed(r, m.messageType)));
      const opts = { ...dicomInOptions(config, rt.settings.dataDir), services };
      const scp = new DicomStorageScp(opts, rt.store, (r, inbound) => {
        emitter.committed(r, inbound.messageType);
        showStatus(node, scp.status());
      });
      let unregister: () => void;
      try {
        unregister = rt.registerDevice(deviceId, () => scp.status());
      } catch (e) {
        // the other node keeps the device id: report under this node's id so both stay visible
        return void reportStartFailure(node, 'device', `${deviceId}#${node.id}`, DRIVER_NAME, (e as Error).message, 'duplicate device id');
      }
      showStatus(node, { state: 'starting' });
      const cancelStart = whenFlowsStarted(RED, () => {
        emitter.start();
        scp.start().then(
          () => showStatus(node, scp.status()),
          (e: Error) => fail(`cannot listen on ${opts.host}:${opts.port}: ${e.message}`, e.message),
        );
      });
      const timer = setInterval(() => showStatus(node, scp.status()), 5000);
      timer.unref();
      node.on('close', (_removed, done) => {
        cancelStart();
        clearInterval(timer);
        emitter.stop();
        unregister();
        scp.close().then(() => done(), () => done());
      });
    } catch (e) {
      fail(`cannot start: ${(e as Error).message}`, 'cannot start');
    }
  }
  RED.nodes.registerType('iomt-dicom-in', IomtDicomIn);
};
