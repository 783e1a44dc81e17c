import express, { type Router, type Request, type Response, type NextFunction } from 'express';
import type { AuditLog } from '../audit/audit-log';
import { principalOf } from './auth';
import { ApiError, badRequest, forbidden } from './errors';
import { CredentialError, MqttCredentials } from '../../../drivers/mqtt/credentials';

/**
 * Admin API for the embedded MQTT broker's device logins (issue 12 §1), mounted at
 * `/api/v1/mqtt-clients` behind the API's authentication (admin only; every change audited):
 *
 * | route | body | answer |
 * |---|---|---|
 * | GET / | | `{ clients: [{ clientId, createdAt, revokedAt? }] }` |
 * | POST / | `{ clientId, password? }` | 201 `{ client, generatedPassword? }` (a generated password is shown once) |
 * | DELETE /:clientId | | `{ revoked: clientId }`; a connected device is disconnected within the broker's poll |
 *
 * Errors: 400 bad client id / password (16-256 characters) / unknown field, 403 not admin, 404 unknown
 * client, 409 client exists (docs/errors.md GW_ERR_MQTT_CLIENT_*).
 */
export function mqttClientsRouter(dataDir: string, audit: AuditLog): Router {
  const r = express.Router();
  const creds = new MqttCredentials(dataDir);
  const admin = (res: Response) => {
    const p = principalOf(res);
    if (p.role !== 'admin') throw forbidden();
    return { user: p.user, role: p.role, source: p.source };
  };
  const h = (fn: (req: Request, res: Response) => unknown) => (req: Request, res: Response, next: NextFunction) => {
    Promise.resolve()
      .then(() => fn(req, res))
      .catch((e: unknown) => next(mapError(e)));
  };
  const noQuery = (req: Request) => {
    const k = Object.keys(req.query)[0];
    if (k !== undefined) throw badRequest(`unknown query parameter '${k}'`);
  };

  r.get('/', h((req, res) => {
    admin(res);
    noQuery(req);
    res.json({ clients: creds.list() });
  }));

  r.post('/', h(async (req, res) => {
    const who = admin(res);
    noQuery(req);
    const b: unknown = req.body ?? {};
    if (typeof b !== 'object' || b === null || Array.isArray(b)) throw badRequest('body must be a JSON object');
    for (const k of Object.keys(b)) if (!['clientId', 'password'].includes(k)) throw badRequest(`unknown field '${k}' (allowed: clientId, password)`);
    const { clientId, password } = b as { clientId?: unknown; password?: unknown };
    if (password !== undefined && typeof password !== 'string') throw badRequest('password must be a string');
    const added = await creds.add(clientId as string, password as string | undefined);
    audit.record({ ...who, action: 'mqtt-client.add', target: added.client.clientId });
    res.status(201).json({ client: added.client, generatedPassword: added.generated ? added.password : undefined });
  }));

  r.delete('/:clientId', h(async (req, res) => {
    const who = admin(res);
    noQuery(req);
    const c = await creds.revoke(req.params.clientId);
    audit.record({ ...who, action: 'mqtt-client.revoke', target: c.clientId });
    res.json({ revoked: c.clientId });
  }));
  return r;
}

function mapError(e: unknown): unknown {
  if (e instanceof CredentialError) {
    const status = e.code === 'GW_ERR_MQTT_CLIENT_NOT_FOUND' ? 404 : e.code === 'GW_ERR_MQTT_CLIENT_INVALID' ? 400 : 409;
    return new ApiError(status, status === 404 ? 'GW_API_NOT_FOUND' : status === 400 ? 'GW_API_BAD_REQUEST' : 'GW_API_CONFLICT', e.message, { reason: e.code });
  }
  return e;
}
