/**
 * The `iomt-dicom-in` node's configuration → DicomScpOptions (kept out of the thin node file), and
 * the worklist / MPPS providers (drivers/dicom/worklist.ts, mpps.ts), created only when switched on.
 * Throws Error with a short reason on a bad setting (the node reports it and stays listed in error).
 */
import { readFileSync } from 'node:fs';
import { resolveBool, resolveEnvTemplate, resolveNumber } from '../../gateway/src/config/env-template';
import { parseAllowList } from '../../gateway/src/net/listener-guard';
import type { CommitResult, InboundMessage } from '../../gateway/src/contracts/driver';
import type { DicomScpServices } from './contracts';
import { createMppsHandler } from './mpps';
import type { AllowedCaller, DicomScpOptions } from './storage-scp';
import { createWorklistProvider } from './worklist';

export interface DicomInConfig {
  id: string;
  name?: string;
  deviceId?: string;
  host?: string;
  port?: string;
  aeTitle?: string;
  allowedCallers?: string;
  allowFrom?: string;
  maxAssociations?: string;
  maxPerAddress?: string;
  idleTimeoutS?: string;
  storage?: boolean | string;
  maxStorageMb?: string;
  worklist?: boolean | string;
  asciiAeTitles?: string;
  mpps?: boolean | string;
  tls?: boolean | string;
  tlsCert?: string;
  tlsKey?: string;
  tlsCa?: string;
  requestCert?: boolean | string;
}

export function deviceIdOf(config: DicomInConfig): string {
  return resolveEnvTemplate(config.deviceId).trim() || config.name || config.id;
}

/**
 * "CT01@10.1.2.3, MR01@10.1.2.0/24; US01" → allowed callers (an AE title may not contain ',' ';' '@'
 * here). Throws on a bad host or an AE title longer than 16 characters (PS3.5 Table 6.2-1).
 */
export function parseCallers(spec: string): AllowedCaller[] {
  const out: AllowedCaller[] = [];
  for (const entry of spec.split(/[,;]/).map((s) => s.trim()).filter(Boolean)) {
    const at = entry.lastIndexOf('@');
    const aeTitle = (at >= 0 ? entry.slice(0, at) : entry).trim();
    const host = at >= 0 ? entry.slice(at + 1).trim() : '';
    if (!aeTitle || aeTitle.length > 16) throw new Error(`allowed caller '${entry}': the AE title must be 1-16 characters`);
    if (host) parseAllowList(host); // throws RangeError naming the entry
    out.push(host ? { aeTitle, host } : { aeTitle });
  }
  return out;
}

export function dicomInOptions(config: DicomInConfig, dataDir: string): DicomScpOptions {
  const port = resolveNumber(config.port, 11112);
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new Error(`invalid port '${config.port}' (resolves to '${resolveEnvTemplate(config.port)}')`);
  const aeTitle = resolveEnvTemplate(config.aeTitle).trim() || 'IOMT_GW';
  const o: DicomScpOptions = {
    deviceId: deviceIdOf(config),
    aeTitle,
    host: resolveEnvTemplate(config.host).trim() || '0.0.0.0',
    port,
    dataDir,
    maxAssociations: resolveNumber(config.maxAssociations, 16),
    maxPerAddress: resolveNumber(config.maxPerAddress, 8),
    idleTimeoutMs: resolveNumber(config.idleTimeoutS, 60) * 1000,
    storage: resolveBool(config.storage, true),
    maxStorageBytes: resolveNumber(config.maxStorageMb, 0) * 1024 * 1024,
  };
  const callers = parseCallers(resolveEnvTemplate(config.allowedCallers));
  if (callers.length) o.allowedCallers = callers;
  const allowFrom = resolveEnvTemplate(config.allowFrom).trim();
  if (allowFrom) {
    parseAllowList(allowFrom);
    o.allowFrom = allowFrom;
  }
  if (resolveBool(config.tls, false)) {
    const file = (f: string | undefined, what: string) => {
      try {
        return readFileSync(resolveEnvTemplate(f).trim());
      } catch (e) {
        throw new Error(`TLS ${what} file: ${(e as Error).message}`);
      }
    };
    const ca = resolveEnvTemplate(config.tlsCa).trim();
    o.tls = { cert: file(config.tlsCert, 'certificate'), key: file(config.tlsKey, 'key'), ...(ca ? { ca: file(ca, 'CA') } : {}), requestCert: resolveBool(config.requestCert, false) };
  }
  return o;
}

/**
 * The runtime as the providers see it, with MPPS commits handed to `onCommitted` (the node emits
 * them into the flow at once, as C-STORE instances: the RIS gets IP/CM/DC without waiting for the
 * device node's replay sweep). The order cache is read when used (it may be attached after the node).
 */
export function providerRuntime(
  rt: { orders: unknown; store: { submit(m: InboundMessage): Promise<CommitResult> } },
  onCommitted: (r: CommitResult, m: InboundMessage) => void,
): { readonly orders: never; store: { submit(m: InboundMessage): Promise<CommitResult> } } {
  return {
    get orders() {
      return rt.orders as never;
    },
    store: {
      submit: async (m) => {
        const r = await rt.store.submit(m);
        onCommitted(r, m);
        return r;
      },
    },
  };
}

/** Worklist / MPPS providers for the switched-on services (worklist.ts / mpps.ts: the order cache). */
export function dicomInServices(config: DicomInConfig, runtime: unknown): DicomScpServices {
  const services: DicomScpServices = {};
  if (resolveBool(config.worklist, false)) {
    const ascii = resolveEnvTemplate(config.asciiAeTitles).split(/[,;]/).map((s) => s.trim()).filter(Boolean);
    services.worklist = createWorklistProvider(runtime as Parameters<typeof createWorklistProvider>[0], ascii.length ? { asciiAeTitles: ascii } : {});
  }
  if (resolveBool(config.mpps, false)) {
    services.mpps = createMppsHandler(runtime as Parameters<typeof createMppsHandler>[0], { deviceId: deviceIdOf(config) });
  }
  return services;
}
