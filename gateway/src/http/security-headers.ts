import type { Request, Response, NextFunction, RequestHandler } from 'express';

/**
 * CSP of the Node-RED editor: the narrowest policy it runs under (checked in Chromium by
 * test/e2e/editor.test.ts, which fails on any CSP violation while it logs in, loads the palette
 * and the flows, opens a node's dialog and the Monaco JSON editor). Node-RED 4's editor needs
 * inline scripts (every node's .html registers itself in an inline <script>; jQuery inserts
 * scripts) and inline styles; no eval in what is loaded by default (`editorCsp({ allowEval })`
 * adds 'unsafe-eval' when the host nodes are on: Monaco's JavaScript worker for function nodes).
 * Everything comes from the gateway itself. Nothing may frame the editor, it loads no plug-ins
 * and posts forms only to itself.
 */
export function editorCsp(o: { allowEval?: boolean } = {}): string {
  return EDITOR_CSP.replace("script-src 'self' 'unsafe-inline'", `script-src 'self' 'unsafe-inline'${o.allowEval ? " 'unsafe-eval'" : ''}`);
}

export const EDITOR_CSP = [
  "default-src 'self'",
  "script-src 'self' 'unsafe-inline'",
  "style-src 'self' 'unsafe-inline'",
  "img-src 'self' data: blob:",
  "font-src 'self' data:",
  "connect-src 'self'",
  "worker-src 'self' blob:",
  "frame-src 'self' blob:",
  "object-src 'none'",
  "base-uri 'self'",
  "form-action 'self'",
  "frame-ancestors 'none'",
].join('; ');

/** CSP of everything else (JSON API, health, metrics, redirects): no content at all. Pages set their own (the status page: script-src 'self'). */
export const DEFAULT_CSP = "default-src 'none'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'";

/**
 * Headers on every HTTP response (issue 10 §6): a CSP (the editor's under `editorRoot`),
 * frame protection twice (X-Frame-Options DENY for old browsers, CSP frame-ancestors 'none'),
 * X-Content-Type-Options nosniff, Referrer-Policy no-referrer, Cross-Origin-Opener-Policy and
 * -Resource-Policy same-origin. Under `editorRoot` it also removes the
 * `Access-Control-Allow-Origin: *` that Node-RED's editor API always sets
 * (@node-red/editor-api lib/index.js: cors({origin:"*"})): the editor is same-origin only, and a
 * cross-origin preflight gets no CORS headers, so the browser refuses the request.
 * Mount it first, before any router.
 */
export function securityHeaders(opts: { editorRoot?: string; editorAllowEval?: boolean } = {}): RequestHandler {
  const editorRoot = opts.editorRoot ?? '/editor';
  const editorPolicy = editorCsp({ allowEval: opts.editorAllowEval });
  return (req: Request, res: Response, next: NextFunction) => {
    const editor = req.path === editorRoot || req.path.startsWith(editorRoot + '/');
    res.setHeader('Content-Security-Policy', editor ? editorPolicy : DEFAULT_CSP);
    res.setHeader('X-Frame-Options', 'DENY');
    res.setHeader('X-Content-Type-Options', 'nosniff');
    res.setHeader('Referrer-Policy', 'no-referrer');
    res.setHeader('Cross-Origin-Opener-Policy', 'same-origin');
    res.setHeader('Cross-Origin-Resource-Policy', 'same-origin');
    if (editor) {
      const set = res.setHeader.bind(res);
      res.setHeader = ((name: string, value: number | string | readonly string[]) =>
        /^access-control-/i.test(name) ? res : set(name, value)) as typeof res.setHeader;
    }
    next();
  };
}
