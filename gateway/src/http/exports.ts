/**
 * `GET /api/v1/exports/bhyt?from=&to=&deviceId=&format=json|csv|xml` (issue 13 §4): the results of
 * messages received in [from, to) as BHYT XML4 rows plus MA_MAY (gateway/src/exports/bhyt.ts).
 * Operator or admin (results are health data); every export is audited (action `export`).
 * `from`/`to` are ISO 8601 times on the time received; at most 31 days and 20 000 messages per export.
 */
import express, { type Router, type Request, type Response, type NextFunction } from 'express';
import type { GatewayRuntime } from '../runtime';
import type { AuditLog } from '../audit/audit-log';
import type { Observation } from '../contracts/observation';
import { principalOf } from './auth';
import { badRequest, forbidden } from './errors';
import { loadBhytCodeMap, toCsv, toXml4, xml4Rows, type BhytCodeMap } from '../exports/bhyt';

const MAX_SPAN_MS = 31 * 24 * 3600_000;
const MAX_MESSAGES = 20_000;

export function exportsRouter(rt: GatewayRuntime, sec: { audit: AuditLog; codeMapFile?: string }): Router {
  const r = express.Router();
  let map: BhytCodeMap | undefined;
  const codeMap = () => (map ??= loadBhytCodeMap(sec.codeMapFile ?? process.env.IOMT_BHYT_CODE_MAP ?? undefined));

  r.get('/bhyt', (req: Request, res: Response, next: NextFunction) => {
    try {
      const p = principalOf(res);
      if (p.role !== 'admin' && p.role !== 'operator') throw forbidden('the claims export needs the operator or admin role');
      const q: Record<string, string | undefined> = {};
      for (const [k, v] of Object.entries(req.query)) {
        if (!['from', 'to', 'deviceId', 'format'].includes(k)) throw badRequest(`unknown query parameter '${k}' (allowed: from, to, deviceId, format)`);
        if (typeof v !== 'string') throw badRequest(`query parameter '${k}' must be given once, as a plain value`);
        q[k] = v === '' ? undefined : v;
      }
      const format = q.format ?? 'json';
      if (!['json', 'csv', 'xml'].includes(format)) throw badRequest('format must be json, csv or xml');
      if (!q.from || !q.to) throw badRequest('from and to are required (ISO 8601 times)');
      const from = Date.parse(q.from);
      const to = Date.parse(q.to);
      if (Number.isNaN(from) || Number.isNaN(to)) throw badRequest('from and to must be ISO 8601 times');
      if (to <= from || to - from > MAX_SPAN_MS) throw badRequest('to must be after from, at most 31 days later');
      // newest first from the store, in pages; then oldest first so a correction replaces what it corrects
      const ids: number[] = [];
      let beforeId: number | undefined;
      for (;;) {
        const page = rt.store.searchMessages({ from: new Date(from).toISOString(), to: new Date(to).toISOString(), deviceId: q.deviceId, limit: 1000, beforeId });
        ids.push(...page.map((m) => m.id));
        if (ids.length > MAX_MESSAGES) throw badRequest(`more than ${MAX_MESSAGES} messages in this range: export a shorter range`);
        if (page.length < 1000) break;
        beforeId = page[page.length - 1].id;
      }
      const observations: Observation[] = [];
      for (const id of ids.reverse()) observations.push(...(rt.store.getMessage(id)?.observations ?? []));
      const rows = xml4Rows(observations, codeMap());
      sec.audit.record({ user: p.user, role: p.role, source: p.source, action: 'export', target: 'bhyt-xml4', detail: { from: q.from, to: q.to, deviceId: q.deviceId, format, rows: rows.length } });
      const name = `xml4-${q.from.slice(0, 10)}-${q.to.slice(0, 10)}`.replace(/[^A-Za-z0-9_.-]/g, '');
      if (format === 'csv') {
        res.type('text/csv; charset=utf-8').attachment(`${name}.csv`).send(toCsv(rows));
      } else if (format === 'xml') {
        res.type('application/xml; charset=utf-8').attachment(`${name}.xml`).send(toXml4(rows));
      } else {
        res.json({ rows, count: rows.length, note: 'MA_LK comes from the order (PV1-19 visit number) when the HIS sends it; empty otherwise.' });
      }
    } catch (e) {
      next(e);
    }
  });
  return r;
}
