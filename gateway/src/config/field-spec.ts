/**
 * One field spec per Node-RED node type: the editor's defaults and validation, `check-config`
 * and the docs all come from it (issue 9 §2). A spec is plain data (JSON-serializable), so the
 * same object is served to the editor (gateway/src/node-red/editor-fields.ts) and used here.
 *
 * Every field may hold `${VAR}` or `${VAR:-default}` (architecture §4): validation happens after
 * substitution with the environment the gateway runs with.
 */
import { existsSync } from 'node:fs';
import type { ConfigProblem } from '../contracts/errors';
import { resolveEnvTemplate } from './env-template';

export type FieldType =
  /** free text */
  | 'string'
  /** host name or address; `required` ones must not resolve to '' */
  | 'host'
  /** TCP port 1..65535 (0 allowed only with `allowZero`) */
  | 'port'
  /** whole number in [min, max] */
  | 'int'
  /** true / false (stored as a boolean, or as a `${VAR:-false}` template string) */
  | 'bool'
  /** one of `options` ('' allowed when not required) */
  | 'enum'
  /** path of a file that must exist (when the field is in use) */
  | 'file'
  /** a device profile id known to the driver named by `profileDriver` */
  | 'profile';

export interface FieldSpec {
  name: string;
  type: FieldType;
  /** Editor default for a new node (a template string is allowed). */
  default: string | boolean;
  /** Must not resolve to an empty value. */
  required?: boolean;
  min?: number;
  max?: number;
  options?: string[];
  /** Resolved value must match this regular expression source (after substitution). */
  pattern?: string;
  /** Only validated when this other (bool / enum) field resolves to one of these values. */
  when?: { field: string; equals: Array<string | boolean> };
  /** Used as the fallback when the field is empty at run time (documented, not stored). */
  runtimeDefault?: string | number | boolean;
  /** The value of this field must be unique among all nodes of the same `unique` group. */
  unique?: string;
  profileDriver?: string;
  description: string;
}

export interface NodeSpec {
  type: string;
  /** Human summary for the docs. */
  summary: string;
  fields: FieldSpec[];
  /** The node listens on TCP port `port` (on host `host`): two nodes on one port clash. */
  listen?: { port: string; host?: string; when?: { field: string; equals: Array<string | boolean> } };
}

/** Context a validator needs beyond the node itself. */
export interface SpecContext {
  env?: NodeJS.ProcessEnv;
  /** Known profile ids per driver name (e.g. astm → {generic-lis2-a2, sysmex-xn, ...}). */
  profiles?: Record<string, Set<string>>;
}

const TEMPLATE_RE = /\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}/;

/** True when a stored value contains a `${VAR}` / `${VAR:-default}` reference. */
export function isTemplate(v: unknown): v is string {
  return typeof v === 'string' && TEMPLATE_RE.test(v);
}

/** Resolve a stored bool: real booleans as they are; strings after substitution (true|1|yes|on). */
export function resolvedBool(v: unknown, env: NodeJS.ProcessEnv, def = false): boolean | undefined {
  if (typeof v === 'boolean') return v;
  if (v === undefined || v === null) return def;
  const s = resolveEnvTemplate(v, env).trim().toLowerCase();
  if (s === '') return def;
  if (/^(1|true|yes|on)$/.test(s)) return true;
  if (/^(0|false|no|off)$/.test(s)) return false;
  return undefined;
}

/** Editor `defaults` data: the value a new node gets, plus what the editor's validator needs. */
export function editorDefaults(spec: NodeSpec): Record<string, { value: string | boolean; required?: boolean }> {
  const out: Record<string, { value: string | boolean; required?: boolean }> = {};
  for (const f of spec.fields) out[f.name] = { value: f.default, ...(f.required && f.type !== 'bool' ? { required: true } : {}) };
  return out;
}

/**
 * Check one value against its field spec; returns the reason it is wrong, or undefined.
 * `raw` is the stored value, `value` the value after `${VAR}` substitution.
 */
export function checkFieldValue(f: FieldSpec, raw: unknown, ctx: SpecContext = {}): string | undefined {
  const env = ctx.env ?? process.env;
  if (f.type === 'bool') {
    if (raw === undefined || raw === '') return undefined;
    return resolvedBool(raw, env) === undefined ? `'${String(raw)}' does not resolve to true or false (got '${resolveEnvTemplate(raw, env)}')` : undefined;
  }
  if (raw !== undefined && raw !== null && typeof raw !== 'string' && typeof raw !== 'number') return `must be text, got ${typeof raw}`;
  const value = resolveEnvTemplate(raw, env).trim();
  const shown = isTemplate(raw) ? `'${String(raw)}' (resolves to '${value}')` : `'${value}'`;
  if (value === '') return f.required ? (isTemplate(raw) ? `${shown} is empty; set the variable or give a default` : 'required, but empty') : undefined;
  switch (f.type) {
    case 'port': {
      const n = /^\d+$/.test(value) ? Number(value) : NaN;
      const min = f.min ?? 1;
      if (!Number.isInteger(n) || n < min || n > 65535) return `${shown} is not a port number ${min}..65535`;
      break;
    }
    case 'int': {
      const n = /^-?\d+$/.test(value) ? Number(value) : NaN;
      if (!Number.isInteger(n)) return `${shown} is not a whole number`;
      if (f.min !== undefined && n < f.min) return `${shown} is below the minimum ${f.min}`;
      if (f.max !== undefined && n > f.max) return `${shown} is above the maximum ${f.max}`;
      break;
    }
    case 'enum':
      if (!f.options?.includes(value)) return `${shown} is not one of: ${(f.options ?? []).filter((o) => o).join(', ')}`;
      break;
    case 'host':
      // RFC 1123 host name, IPv4 or IPv6 literal
      if (!/^[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?$/.test(value) && !/^[0-9A-Fa-f:.]+$/.test(value)) return `${shown} is not a host name or address`;
      break;
    case 'file':
      if (!existsSync(value)) return `file not found: ${value}`;
      break;
    case 'profile': {
      const known = ctx.profiles?.[f.profileDriver ?? ''];
      if (known && !known.has(value)) return `unknown profile ${shown} (known: ${[...known].sort().join(', ')})`;
      break;
    }
    default:
      break;
  }
  if (f.pattern && !new RegExp(f.pattern).test(value)) return `${shown} does not match ${f.pattern}`;
  return undefined;
}

function conditionHolds(f: FieldSpec, node: Record<string, unknown>, spec: NodeSpec, env: NodeJS.ProcessEnv): boolean {
  if (!f.when) return true;
  const other = spec.fields.find((x) => x.name === f.when!.field);
  const raw = node[f.when.field] ?? other?.default;
  const v = other?.type === 'bool' ? resolvedBool(raw, env) : resolveEnvTemplate(raw, env).trim();
  return f.when.equals.some((e) => e === v || String(e) === String(v));
}

/** Validate every field of one node; `where` prefixes the path of each problem. */
export function validateNode(spec: NodeSpec, node: Record<string, unknown>, file: string, where: string, ctx: SpecContext = {}): ConfigProblem[] {
  const env = ctx.env ?? process.env;
  const out: ConfigProblem[] = [];
  for (const f of spec.fields) {
    if (!conditionHolds(f, node, spec, env)) continue;
    const raw = Object.prototype.hasOwnProperty.call(node, f.name) ? node[f.name] : undefined;
    const reason = checkFieldValue(f, raw, ctx);
    if (reason) out.push({ file, path: `${where}.${f.name}`, reason });
  }
  return out;
}

/** Markdown table of a node's fields (docs/configuration, generated from the spec). */
export function specMarkdown(spec: NodeSpec): string {
  const esc = (s: string) => s.replace(/\|/g, '\\|');
  const lines = [`### \`${spec.type}\``, '', spec.summary, '', '| Field | Type | Default | Required | Valid values | Description |', '|---|---|---|---|---|---|'];
  for (const f of spec.fields) {
    const valid =
      f.type === 'port' ? `${f.min ?? 1}..65535` :
      f.type === 'int' ? `${f.min ?? ''}..${f.max ?? ''}` :
      f.type === 'enum' ? (f.options ?? []).map((o) => (o === '' ? '(empty)' : `\`${o}\``)).join(', ') :
      f.type === 'bool' ? 'true, false' :
      f.type === 'file' ? 'existing file' :
      f.type === 'profile' ? `profile id (${f.profileDriver} profiles)` :
      f.type === 'host' ? 'host name or address' :
      f.pattern ? `matches \`${f.pattern}\`` : '';
    const cond = f.when ? ` (checked when \`${f.when.field}\` is ${f.when.equals.join(' or ')})` : '';
    lines.push(`| \`${f.name}\` | ${f.type} | ${f.default === '' ? '' : `\`${esc(String(f.default))}\``} | ${f.required ? 'yes' : ''} | ${esc(valid)} | ${esc(f.description + cond)} |`);
  }
  return lines.join('\n');
}
