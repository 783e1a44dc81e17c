/**
 * Thin Node-RED wrapper (conventions §11): `iomt-pcd-out` queues each flow message as IHE PCD-01 (or,
 * in ACM mode, PCD-04 alarms) for one MLLP destination; the logic is gateway/src/vitals/destination-node.ts.
 */
import { PcdOutput, type PcdMode } from '../pcd-output';
import { readTemplateFile, resolveBool, resolveEnvTemplate, resolveNumber } from '../../../config/env-template';
import { reportStartFailure, specProblems, type RedNode } from '../../../node-red/device-node';
import { processingIdSet, startVitalsDestination } from '../../../vitals/destination-node';
import { PCD_OUT_SPEC } from './iomt-pcd-out.spec';

type Cfg = Record<string, string | boolean | undefined> & { id: string; name?: string };
const s = (v: unknown): string => resolveEnvTemplate(v).trim();

export = function register(RED: any): void {
  function IomtPcdOut(this: RedNode, config: Cfg) {
    RED.nodes.createNode(this, config);
    const destination = s(config.destination) || config.name || config.id;
    const fail = (reason: string, detail: string) => reportStartFailure(this, 'destination', destination, 'pcd', reason, detail);
    try {
      const invalid = specProblems(PCD_OUT_SPEC, config);
      if (invalid) return void fail(invalid, 'invalid configuration');
      const tls = resolveBool(config.tls, false)
        ? { ca: readTemplateFile(config.tlsCa), cert: readTemplateFile(config.tlsCert), key: readTemplateFile(config.tlsKey) }
        : undefined;
      const output = new PcdOutput({
        destination,
        mode: (s(config.mode) || 'pcd-01') as PcdMode,
        host: s(config.host) || '127.0.0.1',
        port: resolveNumber(config.port, 0),
        tls,
        ackTimeoutMs: resolveNumber(config.ackTimeoutS, 30) * 1000,
        sendingEui64: s(config.sendingEui64) || undefined,
        sendingApp: s(config.sendingApp) || undefined,
        sendingFacility: s(config.sendingFacility) || undefined,
        receivingApp: s(config.receivingApp) || undefined,
        receivingFacility: s(config.receivingFacility) || undefined,
      });
      startVitalsDestination({
        node: this,
        output,
        select: (o) => output.select(o),
        downsampleS: resolveNumber(config.downsampleS, 60),
        processingIds: processingIdSet(s(config.processingIds)),
        strictOrder: false,
        maxAttempts: resolveNumber(config.maxAttempts, 10),
        maxAgeHours: resolveNumber(config.maxAgeHours, 168),
        reconnectMaxS: resolveNumber(config.reconnectMaxS, 30),
        driverName: 'iomt-pcd-out',
      });
    } catch (e) {
      fail(`cannot start: ${(e as Error).message}`, 'cannot start');
    }
  }
  RED.nodes.registerType('iomt-pcd-out', IomtPcdOut);
};
