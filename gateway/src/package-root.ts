import { existsSync, readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

/** The iomt-gateway package directory, whether running from dist/ or from sources under tsx. */
export function packageRoot(): string {
  let d = __dirname;
  for (let i = 0; i < 8; i++) {
    const p = join(d, 'package.json');
    if (existsSync(p)) {
      try {
        if (JSON.parse(readFileSync(p, 'utf8')).name === 'iomt-gateway') return d;
      } catch {
        /* keep looking */
      }
    }
    d = dirname(d);
  }
  throw new Error('cannot find the iomt-gateway package directory');
}
