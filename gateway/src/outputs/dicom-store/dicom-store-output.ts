/**
 * Forward stored DICOM instances to a PACS with C-STORE through the durable outbox (issue 11 §2).
 *
 * prepare(): one small JSON descriptor per instance (never the pixel data): the file's path relative
 * to the data dir, the UIDs, the stored transfer syntax, sha256 and size, from the index row
 * (DicomInstanceRecord, drivers/dicom/contracts.ts) or else from the observation and the file's meta.
 * write(): one association per batch (kept `lingerMs` for the next batch, so a study's instances
 * share it), one presentation context per (SOP class, stored syntax) and, for native syntaxes only,
 * for deflated data only, one more in explicit VR little endian (its raw inflate, PS3.5 A.5; encapsulated
 * pixel data cannot be re-encoded, PS3.5 A.4; why not implicit LE or big endian: dicom-file.ts).
 * The data set streams from the file (dimse-scu.ts).
 *
 * Outcomes (PS3.4 B.2.3 / PS3.7 9.1.1.1.9 C-STORE statuses):
 * - 0x0000 → delivered; warnings 0xB000 coercion, 0xB007 data set does not match SOP class, 0xB006
 *   elements discarded → delivered with the warning as detail;
 * - any failure (0xA7xx out of resources, 0xA9xx does not match SOP class, 0xCxxx cannot understand,
 *   0x0122 SOP class not supported, 0x0124 not authorized, other 0x01xx/0x02xx) → dead for that
 *   instance only (0xA7xx: retry when `outOfResourcesRetryable`); 0xFE00 cancel → retry;
 * - the PACS did not accept the SOP class in any syntax we may send → dead for that instance;
 * - a missing file, a file whose sha256/size no longer match the index row, a bad descriptor → dead;
 * - connect refused, A-ASSOCIATE-RJ, a failed negotiation → 'unavailable' for the whole batch (not an
 *   attempt; the worker backs the PACS off);
 * - A-ABORT, a lost connection or no response within dimseTimeoutMs during an instance → 'retry' for
 *   that instance; the later ones of the batch → 'unavailable'.
 *
 * Storage commitment (PS3.4 J, N-ACTION / N-EVENT-REPORT) is not built: 'delivered' means the PACS
 * answered the C-STORE with success (docs: issue 11 §2 "optional").
 */
import { closeSync, openSync, readSync, statSync } from 'node:fs';
import { createHash } from 'node:crypto';
import { isAbsolute, relative, resolve } from 'node:path';
import type { Observation } from '../../contracts/observation';
import type { DeliveryOutcome, Output, OutboxEntry } from '../../contracts/output';
import type { DicomInstanceRecord } from '../../../../drivers/dicom/contracts';
import { componentLogger, StateChangeLog } from '../../log/logger';
import { resolveDicomStoreOutputConfig, type DicomStoreOutputConfig, type DicomStoreOutputOptions } from './config';
import { isReencodable, readFileMeta, TS } from './dicom-file';
import { AssociationError, FileChangedError, StoreAssociation, type DatasetSource, type ProposedContext } from './dimse-scu';

/** The outbox payload of one instance (JSON, this key order). */
export interface DicomStoreDescriptor {
  v: 1;
  relPath: string;
  sopClassUid: string;
  sopInstanceUid: string;
  studyInstanceUid?: string;
  transferSyntaxUid: string;
  sha256: string;
  bytes: number;
}

export const DICOM_STORE_CONTENT_TYPE = 'application/vnd.iomt.dicom-store+json';

/**
 * C-STORE response status → outcome class. PS3.4 B.2.3: warnings 0xB000 coercion, 0xB007 data set does
 * not match SOP class, 0xB006 elements discarded; PS3.7 C.1.3 warning class: 0x0001, 0xBxxx, 0x0107
 * attribute list error, 0x0116 attribute value out of range. Everything else but 0xFE00 cancel is a failure.
 */
export function classifyStoreStatus(status: number): 'success' | 'warning' | 'failure' | 'out-of-resources' | 'cancel' {
  if (status === 0x0000) return 'success';
  if ((status & 0xf000) === 0xb000 || status === 0x0001 || status === 0x0107 || status === 0x0116) return 'warning';
  if (status === 0xfe00) return 'cancel';
  if ((status & 0xff00) === 0xa700) return 'out-of-resources';
  return 'failure';
}

const hex4 = (n: number) => `0x${n.toString(16).toUpperCase().padStart(4, '0')}`;

export class DicomStoreOutput implements Output {
  readonly destination: string;
  readonly config: DicomStoreOutputConfig;
  private readonly log;
  private readonly states = new StateChangeLog();
  private assoc: StoreAssociation | undefined;
  private lingerTimer: NodeJS.Timeout | undefined;
  /** associations opened (for tests and the benchmark: re-use is visible) */
  associationsOpened = 0;

  constructor(opts: DicomStoreOutputOptions) {
    const { config, problems } = resolveDicomStoreOutputConfig(opts);
    if (problems.length) throw new TypeError(`dicom-store output: ${problems.map((p) => `${p.path}: ${p.reason}`).join('; ')}`);
    this.config = config;
    this.destination = config.destination;
    this.log = componentLogger('dicom-store-output', { destination: this.destination });
  }

  get connected(): boolean {
    return !!this.assoc?.alive;
  }

  /**
   * The descriptor of the one DICOM instance in `observations` (an observation whose value is a
   * reference to the stored file). `record` (the message meta) gives UIDs, sha256 and size; without it
   * they come from the observation and the file (its meta, size, and a hash read from disk).
   * Throws TypeError when there is no DICOM reference or the file cannot be read.
   */
  prepare(observations: Observation[], _key: string, record?: Partial<DicomInstanceRecord>): { payload: Buffer; contentType?: string } {
    const refs = observations.filter((o) => o.value?.kind === 'reference');
    if (refs.length !== 1) throw new TypeError(`dicom-store output: expected one DICOM instance reference, got ${refs.length}`);
    const obs = refs[0];
    const v = obs.value as { kind: 'reference'; pointer: string; subtype?: string };
    const relPath = record?.relPath ?? v.pointer;
    if (record?.relPath && record.relPath !== v.pointer) throw new TypeError('dicom-store output: the observation points to another file than the index row');
    const abs = this.pathOf(relPath);
    const fromCode = obs.code?.code?.startsWith('urn:oid:') ? obs.code.code.slice('urn:oid:'.length) : undefined;
    let meta: ReturnType<typeof readFileMeta> | undefined;
    const fileMeta = () => (meta ??= readFileMeta(abs));
    const d: DicomStoreDescriptor = {
      v: 1,
      relPath,
      sopClassUid: record?.sopClassUid ?? fromCode ?? fileMeta().sopClassUid,
      sopInstanceUid: record?.sopInstanceUid ?? obs.sourceMessageId ?? fileMeta().sopInstanceUid,
      studyInstanceUid: record?.studyInstanceUid,
      transferSyntaxUid: record?.transferSyntaxUid ?? fileMeta().transferSyntaxUid,
      sha256: record?.sha256 ?? sha256Sync(abs),
      bytes: record?.bytes ?? statSync(abs).size,
    };
    if (d.studyInstanceUid === undefined) delete d.studyInstanceUid;
    return { payload: Buffer.from(JSON.stringify(d), 'utf8'), contentType: DICOM_STORE_CONTENT_TYPE };
  }

  /** Absolute path of a data-dir-relative path; throws when it leaves the data dir. */
  private pathOf(relPath: string): string {
    const root = resolve(this.config.dataDir);
    const abs = resolve(root, relPath);
    const rel = relative(root, abs);
    if (!relPath || isAbsolute(relPath) || rel.startsWith('..') || isAbsolute(rel)) throw new TypeError(`dicom-store output: path '${relPath}' is outside the data dir`);
    return abs;
  }

  async connect(signal: AbortSignal): Promise<void> {
    if (signal.aborted) return;
    // associations are negotiated per batch (the contexts depend on the instances): nothing to do here
  }

  async write(batch: OutboxEntry[], signal: AbortSignal): Promise<DeliveryOutcome[]> {
    if (this.lingerTimer) clearTimeout(this.lingerTimer);
    // the worker stops (shutdown, redeploy): abort a transfer in progress (a 1 GB object would hold the
    // stop for minutes); that instance is 'unavailable', not a failed attempt, and is sent again later
    const onAbort = () => this.drop();
    signal.addEventListener('abort', onAbort, { once: true });
    try {
      return await this.writeBatch(batch, signal);
    } finally {
      signal.removeEventListener('abort', onAbort);
    }
  }

  private async writeBatch(batch: OutboxEntry[], signal: AbortSignal): Promise<DeliveryOutcome[]> {
    const out: DeliveryOutcome[] = [];
    type Item = { entry: OutboxEntry; d: DicomStoreDescriptor; path: string; datasetOffset: number };
    const items: Item[] = [];
    for (const entry of batch) {
      try {
        const d = parseDescriptor(entry.payload);
        const path = this.pathOf(d.relPath);
        let size: number;
        try {
          size = statSync(path).size;
        } catch (e) {
          throw new TypeError(`stored file missing: ${d.relPath} (${(e as NodeJS.ErrnoException).code ?? (e as Error).message})`);
        }
        if (size !== d.bytes) throw new TypeError(`stored file changed: ${d.relPath} has ${size} bytes, the index row ${d.bytes}`);
        const m = readFileMeta(path);
        if ((m.sopInstanceUid !== d.sopInstanceUid && m.dataset?.sopInstanceUid !== d.sopInstanceUid) || m.transferSyntaxUid !== d.transferSyntaxUid) throw new TypeError(`stored file ${d.relPath} does not hold the instance of its index row`);
        // the command carries the data set's own UIDs (PS3.7 9.3.1.1), as dcmtk's storescu does, even where
        // the File Meta disagrees; the context is negotiated for that class
        const uids = { sopClassUid: m.dataset?.sopClassUid ?? d.sopClassUid, sopInstanceUid: m.dataset?.sopInstanceUid ?? d.sopInstanceUid };
        items.push({ entry, d: { ...d, ...uids }, path, datasetOffset: m.datasetOffset });
      } catch (e) {
        out.push({ id: entry.id, outcome: 'dead', error: (e as Error).message });
      }
    }
    const contexts = contextsFor(items.map((i) => i.d));
    for (let i = 0; i < items.length; i++) {
      const { entry, d, path, datasetOffset } = items[i];
      const rest = (from: number, error: string) => {
        for (let k = from; k < items.length; k++) out.push({ id: items[k].entry.id, outcome: 'unavailable', error });
      };
      if (signal.aborted) {
        rest(i, 'aborted');
        break;
      }
      let assoc: StoreAssociation;
      try {
        assoc = await this.association(contexts);
      } catch (e) {
        const msg = (e as Error).message;
        if (this.states.changed('conn', 'unreachable')) this.log.warn({ reason: msg }, 'PACS unreachable or association refused');
        rest(i, msg);
        break;
      }
      if (!assoc.proposed(d.sopClassUid, d.transferSyntaxUid)) {
        // more than 128 contexts in one batch (PS3.8 9.3.2.2): this one was not offered; next batch
        out.push({ id: entry.id, outcome: 'unavailable', error: 'not attempted: too many presentation contexts in one batch' });
        continue;
      }
      // the stored syntax when accepted; else explicit VR LE for deflated data (PS3.5 A.5)
      let ts: string | undefined;
      if (assoc.accepts(d.sopClassUid, d.transferSyntaxUid)) ts = d.transferSyntaxUid;
      else if (isReencodable(d.transferSyntaxUid) && assoc.accepts(d.sopClassUid, TS.explicitLE)) ts = TS.explicitLE;
      if (!ts) {
        const why = assoc.rejectionOf(d.sopClassUid, d.transferSyntaxUid) ?? 'not accepted';
        const alt = isReencodable(d.transferSyntaxUid)
          ? ' or explicit VR little endian'
          : d.transferSyntaxUid === TS.explicitLE || d.transferSyntaxUid === TS.implicitLE
            ? ''
            : d.transferSyntaxUid === TS.explicitBE
              ? ' (big endian: sent only as stored, see dicom-file.ts)'
              : ' (compressed: sent only as stored, PS3.5 A.4)';
        out.push({ id: entry.id, outcome: 'dead', error: `PACS does not accept SOP class ${d.sopClassUid} in ${d.transferSyntaxUid}${alt}: ${why}` });
        continue;
      }
      // stored bytes as they are, or the raw inflate of a deflated data set (PS3.5 A.5)
      const source: DatasetSource = { kind: ts === d.transferSyntaxUid ? 'file' : 'inflate', path, datasetOffset, sha256: d.sha256, bytes: d.bytes };
      try {
        const r = await assoc.store(d.sopClassUid, d.sopInstanceUid, ts, source);
        const cls = classifyStoreStatus(r.status);
        const text = `${hex4(r.status)}${r.errorComment ? ` ${r.errorComment}` : ''}`;
        if (this.states.changed('conn', 'up')) this.log.info({ host: this.config.host, port: this.config.port }, 'PACS reachable');
        if (cls === 'success') out.push(ts === d.transferSyntaxUid ? { id: entry.id, outcome: 'delivered' } : { id: entry.id, outcome: 'delivered', detail: `sent as ${ts}` });
        else if (cls === 'warning') out.push({ id: entry.id, outcome: 'delivered', detail: `warning ${text}` });
        else if (cls === 'cancel') out.push({ id: entry.id, outcome: 'retry', error: `cancelled ${text}` });
        else if (cls === 'out-of-resources') out.push({ id: entry.id, outcome: this.config.outOfResourcesRetryable ? 'retry' : 'dead', error: `out of resources ${text}` });
        else out.push({ id: entry.id, outcome: 'dead', error: `refused ${text}` });
      } catch (e) {
        if (e instanceof FileChangedError) {
          out.push({ id: entry.id, outcome: 'dead', error: e.message });
          this.drop();
          continue;
        }
        const msg = e instanceof AssociationError ? `${e.kind}: ${e.message}` : String((e as Error)?.message ?? e);
        out.push(signal.aborted ? { id: entry.id, outcome: 'unavailable', error: 'aborted: the gateway is stopping' } : { id: entry.id, outcome: 'retry', error: msg });
        this.drop();
        rest(i + 1, 'not attempted: association lost during an earlier instance');
        break;
      }
    }
    this.scheduleRelease();
    return out;
  }

  /** The open association when it offers every context needed; else a new one (the old one released). */
  private async association(contexts: ProposedContext[]): Promise<StoreAssociation> {
    const a = this.assoc;
    if (a?.alive && contexts.every((c) => a.proposed(c.sopClassUid, c.transferSyntaxUid))) return a;
    if (a) {
      this.assoc = undefined;
      await a.release().catch(() => undefined);
    }
    const c = this.config;
    const next = await StoreAssociation.open({
      host: c.host,
      port: c.port,
      tls: c.tls,
      callingAeTitle: c.callingAeTitle,
      calledAeTitle: c.calledAeTitle,
      contexts,
      connectTimeoutMs: c.connectTimeoutMs,
      dimseTimeoutMs: c.dimseTimeoutMs,
      maxPduLength: c.maxPduLength,
    });
    this.associationsOpened++;
    this.assoc = next;
    return next;
  }

  private drop(): void {
    this.assoc?.abort();
    this.assoc = undefined;
  }

  private scheduleRelease(): void {
    if (this.lingerTimer) clearTimeout(this.lingerTimer);
    const a = this.assoc;
    if (!a) return;
    this.lingerTimer = setTimeout(() => {
      if (this.assoc === a) this.assoc = undefined;
      void a.release().catch(() => undefined);
    }, this.config.lingerMs);
    this.lingerTimer.unref();
  }

  async close(): Promise<void> {
    if (this.lingerTimer) clearTimeout(this.lingerTimer);
    const a = this.assoc;
    this.assoc = undefined;
    await a?.release().catch(() => undefined);
  }
}

/** Presentation contexts for a batch: (class, stored syntax), plus (class, explicit LE) for deflated data. */
export function contextsFor(ds: Array<Pick<DicomStoreDescriptor, 'sopClassUid' | 'transferSyntaxUid'>>): ProposedContext[] {
  const seen = new Set<string>();
  const out: ProposedContext[] = [];
  const add = (sopClassUid: string, transferSyntaxUid: string) => {
    const k = `${sopClassUid}|${transferSyntaxUid}`;
    if (!seen.has(k) && out.length < 128) (seen.add(k), out.push({ sopClassUid, transferSyntaxUid }));
  };
  for (const d of ds) {
    add(d.sopClassUid, d.transferSyntaxUid);
    if (isReencodable(d.transferSyntaxUid)) add(d.sopClassUid, TS.explicitLE);
  }
  return out;
}

function parseDescriptor(payload: Buffer): DicomStoreDescriptor {
  let d: DicomStoreDescriptor;
  try {
    d = JSON.parse(payload.toString('utf8')) as DicomStoreDescriptor;
  } catch {
    throw new TypeError('outbox payload is not a dicom-store descriptor (JSON)');
  }
  for (const k of ['relPath', 'sopClassUid', 'sopInstanceUid', 'transferSyntaxUid', 'sha256'] as const) if (typeof d?.[k] !== 'string' || !d[k]) throw new TypeError(`dicom-store descriptor lacks ${k}`);
  if (!Number.isInteger(d.bytes)) throw new TypeError('dicom-store descriptor lacks bytes');
  return d;
}

/** Only without an index row (tests, tools; the row normally carries the hash): 1 MiB at a time. */
function sha256Sync(path: string): string {
  const h = createHash('sha256');
  const fd = openSync(path, 'r');
  try {
    const buf = Buffer.allocUnsafe(1024 * 1024);
    for (let n; (n = readSync(fd, buf, 0, buf.length, null)) > 0; ) h.update(buf.subarray(0, n));
  } finally {
    closeSync(fd);
  }
  return h.digest('hex');
}

