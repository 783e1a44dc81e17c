// Copies the Node-RED node editor files (.html) beside their compiled .js in dist/.
import { cpSync, readdirSync, statSync, mkdirSync } from 'node:fs';
import { join, relative, dirname } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const roots = ['drivers', 'gateway/src/outputs'];
function walk(dir) {
  for (const f of readdirSync(dir)) {
    const p = join(dir, f);
    if (f === 'node_modules') continue;
    const st = statSync(p);
    if (st.isDirectory()) walk(p);
    else if (f.endsWith('.html') && dir.endsWith('node-red')) {
      const out = join(root, 'dist', relative(root, p));
      mkdirSync(dirname(out), { recursive: true });
      cpSync(p, out);
    }
  }
}
for (const r of roots) walk(join(root, r));
// The status page's static files (HTML, JS, CSS, language dictionaries) beside the compiled router.
cpSync(join(root, 'gateway/src/http/status/public'), join(root, 'dist/gateway/src/http/status/public'), { recursive: true });
