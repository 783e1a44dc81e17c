/**
 * Where the site's flows live (issue 9 §2): in the data dir, never in the checkout. Deploy writes
 * the flow file (and Node-RED its backup beside it), so it must be the site's own copy: an upgrade
 * of the checkout then never clashes with a site's edits.
 */
import { copyFileSync, existsSync } from 'node:fs';
import { join, relative, resolve, isAbsolute } from 'node:path';
import { packageRoot } from '../package-root';

export const SHIPPED_DEFAULT_FLOW = 'hl7-relay.json';

export interface SiteFlows {
  /** The file Node-RED runs and Deploy writes. */
  flowFile: string;
  /** Shipped (or given) flow copied into the data dir now, on first start. */
  seededFrom?: string;
  /** Said to the person starting the gateway, e.g. that a --flows in the checkout only seeds. */
  note?: string;
}

/** True when `file` is inside the package (the git checkout or the installed package). */
export function inCheckout(file: string, root = packageRoot()): boolean {
  const rel = relative(resolve(root), resolve(file));
  return rel === '' || (!rel.startsWith('..') && !isAbsolute(rel));
}

/**
 * Resolve the flow file to run:
 * - `--flows FILE` outside the checkout: the operator's own file, used (and deployed to) in place;
 * - otherwise `<dataDir>/flows.json`, seeded on first start from `--flows FILE` (a shipped flow)
 *   or from the shipped default; once it exists, it is the site's and is used as it is.
 * With `seed: false` nothing is copied (check-config): the file that would be seeded is returned.
 */
export function resolveSiteFlows(dataDir: string, opts: { flowsArg?: string; defaultFlow?: string; seed?: boolean; root?: string } = {}): SiteFlows {
  const root = opts.root ?? packageRoot();
  const given = opts.flowsArg ? resolve(opts.flowsArg) : undefined;
  if (given && !inCheckout(given, root)) {
    if (!existsSync(given)) throw new Error(`flows file not found: ${given}`);
    return { flowFile: given };
  }
  const site = join(resolve(dataDir), 'flows.json');
  if (existsSync(site)) {
    return given && given !== site
      ? { flowFile: site, note: `running the site's flows ${site}; --flows ${given} is in the package and only seeds a new data dir` }
      : { flowFile: site };
  }
  const source = given ?? join(root, 'flows', opts.defaultFlow ?? SHIPPED_DEFAULT_FLOW);
  if (!existsSync(source)) throw new Error(`flows file not found: ${source}`);
  if (opts.seed === false) return { flowFile: source, seededFrom: source };
  copyFileSync(source, site);
  return { flowFile: site, seededFrom: source };
}
