import type { ErrorRequestHandler, Response } from 'express';

/**
 * Stable error codes of the HTTP API (docs/errors.md). Every error under /api/v1 is JSON
 * `{ "error": "<human text>", "code": "<code>" }` (plus `details` for some), never HTML, never a stack trace.
 */
export type ApiErrorCode =
  | 'GW_API_BAD_REQUEST' // 400: malformed JSON, bad or unknown query/body values
  | 'GW_API_UNAUTHENTICATED' // 401: no or wrong credentials, session expired
  | 'GW_API_FORBIDDEN' // 403: the role may not do this
  | 'GW_API_NOT_FOUND' // 404: unknown route, message, destination, user, ...
  | 'GW_API_CONFLICT' // 409: the user exists, the last admin
  | 'GW_API_TOO_LARGE' // 413: request body over the limit
  | 'GW_API_UNSUPPORTED_MEDIA' // 415: a body that is not application/json
  | 'GW_API_THROTTLED' // 429: too many failed logins from this address
  | 'GW_API_INTERNAL'; // 500: unexpected; details only in the log

export class ApiError extends Error {
  constructor(readonly status: number, readonly code: ApiErrorCode, message: string, readonly details?: unknown) {
    super(message);
    this.name = 'ApiError';
  }
}

export const badRequest = (msg: string, details?: unknown) => new ApiError(400, 'GW_API_BAD_REQUEST', msg, details);
export const notFound = (msg: string) => new ApiError(404, 'GW_API_NOT_FOUND', msg);
export const forbidden = (msg = 'your role may not do this') => new ApiError(403, 'GW_API_FORBIDDEN', msg);

export function sendError(res: Response, e: ApiError): void {
  if (res.headersSent) return;
  const body: Record<string, unknown> = { error: e.message, code: e.code };
  if (e.details !== undefined) body.details = e.details;
  res.status(e.status).json(body);
}

/**
 * Last handler of the API router: ApiError as is; body-parser errors (malformed JSON, too large,
 * bad charset) as 400/413/415 JSON; anything else 500 with a generic text (the error goes to the log).
 */
export function apiErrorHandler(onUnexpected: (err: unknown) => void): ErrorRequestHandler {
  return (err, _req, res, _next) => {
    if (err instanceof ApiError) return sendError(res, err);
    const type = (err as { type?: string })?.type;
    const status = (err as { status?: number })?.status;
    if (type === 'entity.parse.failed') return sendError(res, badRequest('request body is not valid JSON'));
    if (type === 'entity.too.large') return sendError(res, new ApiError(413, 'GW_API_TOO_LARGE', 'request body too large'));
    if (type === 'charset.unsupported' || type === 'encoding.unsupported') return sendError(res, new ApiError(415, 'GW_API_UNSUPPORTED_MEDIA', 'unsupported body encoding'));
    if (typeof status === 'number' && status >= 400 && status < 500) return sendError(res, badRequest('bad request'));
    onUnexpected(err);
    sendError(res, new ApiError(500, 'GW_API_INTERNAL', 'internal error'));
  };
}
