import express, { type Router, type Request, type Response } from 'express';
import type { GatewayRuntime } from '../runtime';
import type { MessageQuery } from '../contracts/store';

function int(v: unknown): number | undefined {
  if (typeof v !== 'string' || !/^\d+$/.test(v)) return undefined;
  return Number(v);
}

function str(v: unknown): string | undefined {
  return typeof v === 'string' && v !== '' ? v : undefined;
}

/** Raw device bytes as text when they decode cleanly as UTF-8, else base64. */
function rawView(raw: Buffer): { encoding: 'utf8' | 'base64'; data: string } {
  const s = raw.toString('utf8');
  return Buffer.from(s, 'utf8').equals(raw) ? { encoding: 'utf8', data: s } : { encoding: 'base64', data: raw.toString('base64') };
}

/**
 * JSON API under /api/v1 (authenticated by the caller's middleware). Read-mostly: devices,
 * destinations, message search/detail, quarantine, dead letters and their replay.
 */
export function apiRouter(rt: GatewayRuntime): Router {
  const r = express.Router();
  r.use(express.json({ limit: '64kb' }));

  r.get('/devices', (_req, res) => {
    res.json({ devices: rt.deviceStatuses() });
  });

  r.get('/destinations', (_req, res) => {
    const stats = new Map(rt.store.destinationStats().map((s) => [s.destination, s]));
    const names = new Set([...rt.destinationNames(), ...stats.keys()]);
    res.json({
      destinations: [...names].sort().map((name) => {
        const w = rt.destination(name);
        return {
          ...(stats.get(name) ?? { pending: 0, inFlight: 0, dead: 0, delivered: 0, oldestPendingAgeMs: 0 }),
          destination: name,
          configured: !!w,
          state: w?.state ?? 'not-configured',
          lastError: w?.lastError,
        };
      }),
    });
  });

  r.get('/messages', (req: Request, res: Response) => {
    const q: MessageQuery = {
      deviceId: str(req.query.deviceId),
      from: str(req.query.from),
      to: str(req.query.to),
      patientId: str(req.query.patientId),
      specimenId: str(req.query.specimenId),
      status: str(req.query.status) as MessageQuery['status'],
      limit: Math.min(int(req.query.limit) ?? 50, 1000),
      beforeId: int(req.query.beforeId),
      flag: str(req.query.flag), // e.g. control-id-reused, charset-fallback, parts-withheld (docs/result-fidelity.md)
    };
    if (q.status && !['committed', 'routed', 'flow-error'].includes(q.status)) {
      res.status(400).json({ error: 'status must be committed, routed or flow-error' });
      return;
    }
    for (const k of ['from', 'to'] as const) {
      if (q[k] && Number.isNaN(Date.parse(q[k]!))) {
        res.status(400).json({ error: `${k} must be an ISO 8601 time` });
        return;
      }
    }
    const messages = rt.store.searchMessages(q);
    res.json({ messages, next: messages.length === q.limit ? messages[messages.length - 1].id : undefined });
  });

  r.get('/messages/:id', (req, res) => {
    const id = int(req.params.id);
    const m = id === undefined ? undefined : rt.store.getMessage(id);
    if (!m) {
      res.status(404).json({ error: 'no such message' });
      return;
    }
    res.json({ ...m, raw: rawView(m.raw) });
  });

  r.get('/quarantine', (req, res) => {
    res.json({ quarantine: rt.store.listQuarantine(Math.min(int(req.query.limit) ?? 50, 1000), int(req.query.beforeId)) });
  });

  r.get('/quarantine/:id', (req, res) => {
    const id = int(req.params.id);
    const q = id === undefined ? undefined : rt.store.getQuarantine(id);
    if (!q) {
      res.status(404).json({ error: 'no such quarantine entry' });
      return;
    }
    res.json({ ...q, raw: rawView(q.raw) });
  });

  r.get('/dead-letters', (req, res) => {
    res.json({ deadLetters: rt.store.deadLetters(str(req.query.destination), Math.min(int(req.query.limit) ?? 50, 1000), int(req.query.beforeId)) });
  });

  r.post('/dead-letters/:id/replay', async (req, res) => {
    const id = int(req.params.id);
    if (id === undefined) {
      res.status(400).json({ error: 'id must be a number' });
      return;
    }
    const n = await rt.store.replay({ ids: [id] });
    if (!n) {
      res.status(404).json({ error: 'no such dead letter' });
      return;
    }
    for (const d of rt.destinationNames()) rt.destination(d)?.wake();
    res.json({ replayed: n });
  });

  r.post('/dead-letters/replay', async (req, res) => {
    const destination = str(req.body?.destination) ?? str(req.query.destination);
    const n = await rt.store.replay({ destination });
    for (const d of rt.destinationNames()) rt.destination(d)?.wake();
    res.json({ replayed: n });
  });

  r.use((_req, res) => res.status(404).json({ error: 'not found' }));
  return r;
}
