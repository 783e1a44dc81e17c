/**
 * GET /api/v1/studies (issue 11 §5): "did my images arrive, and did PACS take them". One row per
 * study (Study Instance UID) of the DICOM instances the gateway stored (messages of driver 'dicom',
 * message type 'C-STORE', meta = DicomInstanceRecord, drivers/dicom/contracts.ts), with, per
 * destination (one per PACS), how many instances were delivered, are pending or dead, and how many
 * have no outbox row there yet (the flow has not queued them, or does not route them there).
 *
 * Query: accession (0008,0050), patientId (0010,0020), from / to (ISO 8601 time of arrival,
 * to exclusive), limit (1..500, default 50). Unknown or repeated parameters → 400.
 * Roles: every signed-in role lists studies; searching by accession or patient id, and seeing the
 * patient id, needs operator or admin and is audited (phi.search), as for /messages.
 *
 * Read through its own read-only SQLite connection, opened per request (WAL: it sees committed data
 * only). The instances are found by scanning the dicom messages' meta (json_extract): fine for the
 * few 100 000 messages a gateway keeps; an index on (driver, message_type) would make it cheaper.
 */
import { join } from 'node:path';
import Database from 'better-sqlite3';
import type { NextFunction, Request, Response, Router } from 'express';
import type { GatewayRuntime } from '../runtime';
import type { AuditLog } from '../audit/audit-log';
import { DB_FILE } from '../store/gateway-store';
import { principalOf } from './auth';
import { badRequest, forbidden } from './errors';

export interface StudyDestinationState {
  delivered: number;
  pending: number;
  dead: number;
  /** instances of the study with no outbox row for this destination */
  notQueued: number;
}

export interface StudySummary {
  studyInstanceUid: string;
  accessionNumber?: string;
  /** PHI: only for operator and admin */
  patientId?: string;
  studyDate?: string;
  modalities: string[];
  callingAeTitles: string[];
  instances: number;
  bytes: number;
  firstReceivedAt: string;
  lastReceivedAt: string;
  /** per destination (PACS) */
  destinations: Record<string, StudyDestinationState>;
  /** every instance delivered to every destination that has any of them */
  allDelivered: boolean;
  /**
   * Further contents received for a SOP Instance UID of the study already stored (each flagged
   * control-id-reused; 2 = two more versions of one instance, or one of two): each content is forwarded on its own, and an instance counts as delivered only when every content is; a
   * PACS may keep the first and answer Success for the others (Orthanc with OverwriteInstances false).
   * Absent when 0.
   */
  conflicts?: number;
}

const ALLOWED = ['accession', 'patientId', 'from', 'to', 'limit'] as const;

function queryOf(req: Request): Partial<Record<(typeof ALLOWED)[number], string>> {
  const out: Record<string, string> = {};
  for (const [k, v] of Object.entries(req.query)) {
    if (!(ALLOWED as readonly string[]).includes(k)) throw badRequest(`unknown query parameter '${k}' (allowed: ${ALLOWED.join(', ')})`);
    if (typeof v !== 'string') throw badRequest(`query parameter '${k}' must be given once, as a plain value`);
    if (v !== '') out[k] = v;
  }
  return out;
}

const iso = (v: string, name: string) => {
  const t = Date.parse(v);
  if (Number.isNaN(t)) throw badRequest(`${name} must be an ISO 8601 time or date`);
  return new Date(t).toISOString();
};

/** The studies matching `q`, newest arrival first. */
export function searchStudies(dbFile: string, q: { accession?: string; patientId?: string; from?: string; to?: string; limit: number }): StudySummary[] {
  const db = new Database(dbFile, { readonly: true, fileMustExist: true });
  try {
    db.pragma('query_only = ON');
    const where = [`m.driver = 'dicom'`, `m.message_type = 'C-STORE'`, `m.meta IS NOT NULL`];
    const args: unknown[] = [];
    if (q.accession !== undefined) (where.push(`json_extract(m.meta, '$.accessionNumber') = ?`), args.push(q.accession));
    if (q.patientId !== undefined) (where.push(`m.id IN (SELECT message_id FROM message_keys WHERE kind = 'patient' AND value = ?)`), args.push(q.patientId));
    if (q.from !== undefined) (where.push('m.received_at >= ?'), args.push(q.from));
    if (q.to !== undefined) (where.push('m.received_at < ?'), args.push(q.to));
    // the matching instances, then their studies (all instances of a matching study are counted)
    const inst = `SELECT m.id, m.received_at,
        json_extract(m.meta, '$.studyInstanceUid') AS study, json_extract(m.meta, '$.sopInstanceUid') AS sop,
        json_extract(m.meta, '$.accessionNumber') AS acc, json_extract(m.meta, '$.studyDate') AS sd,
        json_extract(m.meta, '$.modality') AS modality, json_extract(m.meta, '$.callingAeTitle') AS aet,
        json_extract(m.meta, '$.bytes') AS bytes
      FROM messages m WHERE m.driver = 'dicom' AND m.message_type = 'C-STORE' AND m.meta IS NOT NULL`;
    const studies = db
      .prepare(
        `WITH inst AS (${inst}),
              hit AS (SELECT DISTINCT json_extract(m.meta, '$.studyInstanceUid') AS study FROM messages m WHERE ${where.join(' AND ')})
         SELECT i.study, count(DISTINCT i.sop) AS instances, count(*) - count(DISTINCT i.sop) AS extra, sum(i.bytes) AS bytes, min(i.received_at) AS first, max(i.received_at) AS last,
                max(i.acc) AS acc, max(i.sd) AS sd, group_concat(DISTINCT i.modality) AS modalities, group_concat(DISTINCT i.aet) AS aets
           FROM inst i JOIN hit h ON h.study = i.study
          GROUP BY i.study ORDER BY last DESC LIMIT ?`,
      )
      .all(...args, q.limit) as Array<{ study: string; instances: number; extra: number; bytes: number | null; first: string; last: string; acc: string | null; sd: string | null; modalities: string | null; aets: string | null }>;
    if (!studies.length) return [];
    const ph = studies.map(() => '?').join(',');
    const uids = studies.map((s) => s.study);
    // per instance and destination: several messages of one SOP Instance UID are different contents (an
    // identical re-send is stored once), each forwarded on its own. The instance is delivered only when
    // every content is: dead if any is dead, not queued if any has no row there, pending if any is
    // (before: the best state, so a dead or unsent second content showed as delivered)
    const states = db
      .prepare(
        `WITH inst AS (${inst}),
              v AS (SELECT study, sop, count(*) AS versions FROM inst WHERE study IN (${ph}) GROUP BY study, sop)
         SELECT study, destination, state, count(*) AS n FROM (
           SELECT i.study, o.destination, i.sop,
                  CASE WHEN max(o.state = 'dead') THEN 'dead'
                       WHEN count(DISTINCT i.id) < max(v.versions) THEN 'notQueued'
                       WHEN max(o.state = 'pending') THEN 'pending' ELSE 'delivered' END AS state
             FROM inst i JOIN outbox o ON o.message_id = i.id JOIN v ON v.study = i.study AND v.sop = i.sop
            WHERE i.study IN (${ph})
            GROUP BY i.study, o.destination, i.sop)
         GROUP BY study, destination, state`,
      )
      .all(...uids, ...uids) as Array<{ study: string; destination: string; state: 'delivered' | 'pending' | 'dead' | 'notQueued'; n: number }>;
    const patients = db
      .prepare(
        `WITH inst AS (${inst})
         SELECT DISTINCT i.study, k.value FROM inst i JOIN message_keys k ON k.message_id = i.id AND k.kind = 'patient' WHERE i.study IN (${ph})`,
      )
      .all(...uids) as Array<{ study: string; value: string }>;
    return studies.map((s) => {
      const destinations: Record<string, StudyDestinationState> = {};
      for (const r of states.filter((x) => x.study === s.study)) {
        const d = (destinations[r.destination] ??= { delivered: 0, pending: 0, dead: 0, notQueued: 0 });
        if (r.state !== 'notQueued') d[r.state] += r.n; // notQueued: the rest, below
      }
      for (const d of Object.values(destinations)) d.notQueued = Math.max(0, s.instances - d.delivered - d.pending - d.dead);
      const out: StudySummary = {
        studyInstanceUid: s.study,
        modalities: s.modalities ? s.modalities.split(',').sort() : [],
        callingAeTitles: s.aets ? s.aets.split(',').sort() : [],
        instances: s.instances,
        bytes: s.bytes ?? 0,
        firstReceivedAt: s.first,
        lastReceivedAt: s.last,
        destinations,
        allDelivered: Object.values(destinations).every((d) => d.delivered === s.instances),
      };
      if (s.extra > 0) out.conflicts = s.extra; // contents beyond the first, per SOP Instance UID
      if (s.acc) out.accessionNumber = s.acc;
      if (s.sd) out.studyDate = s.sd;
      const pid = patients.find((p) => p.study === s.study)?.value;
      if (pid) out.patientId = pid;
      return out;
    });
  } finally {
    db.close();
  }
}

/** Adds GET /studies to the API router (after its authentication middleware). */
export function registerStudyRoutes(r: Router, rt: GatewayRuntime, audit: AuditLog): void {
  r.get('/studies', (req: Request, res: Response, next: NextFunction) => {
    try {
      const p = principalOf(res);
      const qs = queryOf(req);
      const limit = qs.limit === undefined ? 50 : Number(qs.limit);
      if (!/^\d{1,4}$/.test(qs.limit ?? '50') || limit < 1 || limit > 500) throw badRequest('limit must be a whole number from 1 to 500');
      const mayPhi = p.role === 'admin' || p.role === 'operator';
      const who = { user: p.user, role: p.role, source: p.source };
      if (qs.accession !== undefined || qs.patientId !== undefined) {
        if (!mayPhi) {
          audit.record({ ...who, action: 'phi.search', outcome: 'denied' });
          throw forbidden('searching studies by accession number or patient id needs the operator or admin role');
        }
        audit.record({ ...who, action: 'phi.search', detail: { route: 'studies', ...qs } });
      }
      const studies = searchStudies(join(rt.settings.dataDir, DB_FILE), {
        accession: qs.accession,
        patientId: qs.patientId,
        from: qs.from === undefined ? undefined : iso(qs.from, 'from'),
        to: qs.to === undefined ? undefined : iso(qs.to, 'to'),
        limit,
      });
      res.json({ studies: mayPhi ? studies : studies.map(({ patientId: _p, ...s }) => s) });
    } catch (e) {
      next(e);
    }
  });
}
