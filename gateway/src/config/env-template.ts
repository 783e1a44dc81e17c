import { readFileSync } from 'node:fs';
/**
 * `${VAR}` and `${VAR:-default}` in Node-RED node properties (architecture §4). Node-RED itself
 * substitutes a whole-string `${VAR}` when it loads a flow; this handles what is left (embedded
 * references and defaults) and the empty string an unset variable leaves behind.
 */
export function resolveEnvTemplate(value: unknown, env: NodeJS.ProcessEnv = process.env): string {
  if (value === undefined || value === null) return '';
  return String(value).replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/g, (_m, name: string, def?: string) => {
    const v = env[name];
    return v !== undefined && v !== '' ? v : def ?? '';
  });
}

/** Resolve a property as a port/number; empty → default; garbage → NaN (reported by the caller). */
export function resolveNumber(value: unknown, def: number, env: NodeJS.ProcessEnv = process.env): number {
  const s = resolveEnvTemplate(value, env).trim();
  if (s === '') return def;
  return /^-?\d+(\.\d+)?$/.test(s) ? Number(s) : NaN;
}

/**
 * Resolve a bool property. Node-RED stores a checkbox as a real boolean; a shipped flow may hold
 * `${VAR:-false}`. Strings resolve after substitution: true|1|yes|on and false|0|no|off (any case);
 * empty → `def`. Anything else throws: a typo must stop the node visibly, never flip TLS on or off.
 */
export function resolveBool(value: unknown, def: boolean, env: NodeJS.ProcessEnv = process.env): boolean {
  if (typeof value === 'boolean') return value;
  const s = resolveEnvTemplate(value, env).trim();
  if (s === '') return def;
  if (/^(1|true|yes|on)$/i.test(s)) return true;
  if (/^(0|false|no|off)$/i.test(s)) return false;
  throw new Error(`'${String(value)}' does not resolve to true or false (got '${s}')`);
}

/**
 * The bytes of the file a path field names (`${VAR}` templates resolved), or undefined when the field is
 * empty or resolves to empty: an unset `${HIS_TLS_CA}` means "no file" (e.g. the system CAs), not
 * readFileSync(''). @throws the read error of a named file that cannot be read.
 */
export function readTemplateFile(value: unknown, env: NodeJS.ProcessEnv = process.env): Buffer | undefined {
  const path = resolveEnvTemplate(value, env).trim();
  return path ? readFileSync(path) : undefined;
}
