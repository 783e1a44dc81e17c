/**
 * The per-device settings every result must carry, applied in one place for every driver (issue 13 §3-4):
 * a wrapper of the ack-after-commit sink that, before the commit,
 * - sets `equipment.machineCode` (MA_MAY, the code the hospital registered with social insurance,
 *   QĐ 130/QĐ-BYT XML3/XML4) and, when the device did not say, model / serial / manufacturer, on every draft;
 * - flags bad Vietnamese patient identifiers (CCCD, BHXH, BHYT, MRN: identifiers/vn.ts) on every draft
 *   of that subject. The identifier itself is kept as sent: flagged, never dropped.
 * Only adds information: values, codes, statuses and the raw bytes are untouched, and the driver's
 * dedupeKey (built from the raw content) is unchanged.
 *
 * Use in a device node: `new SomeDriver(cfg, withDeviceSettings(rt.store, deviceId, { machineCode }))`.
 */
import type { CommitResult, InboundMessage, ObservationSink, QuarantineInput } from '../contracts/driver';
import type { ObservationDraft, QualityFlag } from '../contracts/observation';
import { identifierQuality } from './vn';
import { loadSiteConfig, type FhirSiteConfig } from './site-config';

export interface DeviceSettings {
  /** MA_MAY of this instrument (trimmed; empty = none). */
  machineCode?: string;
  model?: string;
  serial?: string;
  manufacturer?: string;
  /** Check patient identifiers and flag bad ones (default true). */
  checkIdentifiers?: boolean;
  /** Identifier kinds and aliases (default: the shipped firmware-config/fhir/vn-core.json). */
  siteConfig?: FhirSiteConfig;
}

/** MA_MAY as registered: printable, no HL7 delimiters, at most 50 characters (XML3 MA_MAY is a string). */
export function checkMachineCode(code: string): string | undefined {
  if (code.length > 50) return 'machineCode: at most 50 characters';
  if (/[\x00-\x1f|^~\\&]/.test(code)) return 'machineCode: no control characters or HL7 delimiters (| ^ ~ \\ &)';
  return undefined;
}

const sameFlag = (a: QualityFlag, b: QualityFlag) => a.code === b.code && a.location === b.location && a.text === b.text;

/** The drafts with the device settings applied (new objects; the input is not changed). */
export function applyDeviceSettings(deviceId: string, drafts: ObservationDraft[], s: DeviceSettings, cfg?: FhirSiteConfig): ObservationDraft[] {
  const machineCode = s.machineCode?.trim();
  return drafts.map((d) => {
    const out: ObservationDraft = { ...d };
    if (machineCode || s.model || s.serial || s.manufacturer) {
      const eq = { ...(d.equipment ?? { id: deviceId }) };
      if (machineCode) eq.machineCode = machineCode; // the registered code of this node's instrument
      if (s.model && !eq.model) eq.model = s.model;
      if (s.serial && !eq.serial) eq.serial = s.serial;
      if (s.manufacturer && !eq.manufacturer) eq.manufacturer = s.manufacturer;
      out.equipment = eq;
    }
    if (s.checkIdentifiers !== false && d.subject) {
      const flags = identifierQuality(d.subject, cfg);
      const have = d.quality ?? [];
      const add = flags.filter((f) => !have.some((h) => sameFlag(h, f)));
      if (add.length) out.quality = [...have, ...add];
    }
    return out;
  });
}

/** Wrap a sink so every committed draft carries the device settings. Throws at once on a bad setting or site file. */
export function withDeviceSettings(sink: ObservationSink, deviceId: string, s: DeviceSettings = {}): ObservationSink {
  const bad = s.machineCode ? checkMachineCode(s.machineCode.trim()) : undefined;
  if (bad) throw new TypeError(bad);
  const cfg = s.checkIdentifiers === false ? undefined : s.siteConfig ?? loadSiteConfig();
  return {
    submit(msg: InboundMessage): Promise<CommitResult> {
      return sink.submit({ ...msg, drafts: applyDeviceSettings(deviceId, msg.drafts, s, cfg) });
    },
    quarantine(q: QuarantineInput): Promise<number> {
      return sink.quarantine(q);
    },
  };
}
