import { existsSync, readFileSync } from 'node:fs';
import type { ConfigProblem } from '../contracts/errors';
import { resolveEnvTemplate } from './env-template';
import { resolvedBool, validateNode, type NodeSpec, type SpecContext } from './field-spec';
import { NODE_SPECS, knownProfileIds } from './node-specs';

type NodeDef = Record<string, unknown> & { id?: string; type?: string; wires?: unknown };

/** Node-RED's own node types (@node-red/nodes core) plus the flow structure types. */
const CORE_TYPES = new Set([
  'tab', 'subflow', 'group', 'junction', 'unknown',
  'batch', 'catch', 'change', 'comment', 'complete', 'csv', 'debug', 'delay', 'exec', 'file', 'file in', 'function',
  'global-config', 'html', 'http in', 'http proxy', 'http request', 'http response', 'inject', 'join', 'json',
  'link call', 'link in', 'link out', 'mqtt in', 'mqtt out', 'mqtt-broker', 'range', 'rbe', 'sort', 'split', 'status',
  'switch', 'tcp in', 'tcp out', 'tcp request', 'template', 'tls-config', 'trigger', 'udp in', 'udp out', 'watch',
  'websocket in', 'websocket out', 'websocket-client', 'websocket-listener', 'xml', 'yaml',
]);

export interface FlowCheckOptions extends SpecContext {
  /** The gateway's own HTTP port: a node listening on it clashes too. */
  httpPort?: number;
  specs?: readonly NodeSpec[];
}

function levenshtein(a: string, b: string): number {
  const d = Array.from({ length: a.length + 1 }, (_, i) => [i, ...Array(b.length).fill(0)]);
  for (let j = 1; j <= b.length; j++) d[0][j] = j;
  for (let i = 1; i <= a.length; i++) for (let j = 1; j <= b.length; j++) d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + (a[i - 1] === b[j - 1] ? 0 : 1));
  return d[a.length][b.length];
}

/**
 * Validate a Node-RED flow file as the gateway will run it: JSON shape, wires to existing nodes,
 * known node types (no palette installs at run time, so any other type would never start), every
 * field of our nodes against its field spec after ${ENV} substitution (ports, hosts, profiles,
 * TLS files, ...), unique device ids and destinations, and two listeners on one TCP port.
 * Disabled nodes and nodes on disabled tabs are checked for shape only.
 */
export function checkFlowFile(file: string, envOrOpts: NodeJS.ProcessEnv | FlowCheckOptions = process.env): ConfigProblem[] {
  const opts: FlowCheckOptions = 'env' in envOrOpts || 'profiles' in envOrOpts || 'httpPort' in envOrOpts || 'specs' in envOrOpts ? (envOrOpts as FlowCheckOptions) : { env: envOrOpts as NodeJS.ProcessEnv };
  const env = opts.env ?? process.env;
  const specs = opts.specs ?? NODE_SPECS;
  const ctx: SpecContext = { env, profiles: opts.profiles ?? knownProfileIds(env) };
  if (!existsSync(file)) return [{ file, path: '', reason: 'flows file not found' }];
  let nodes: unknown;
  try {
    nodes = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    return [{ file, path: '', reason: `not valid JSON: ${(e as Error).message}` }];
  }
  if (!Array.isArray(nodes)) return [{ file, path: '', reason: 'a flow file is a JSON array of nodes' }];
  return checkFlowNodes(nodes, file, { ...opts, env, specs, profiles: ctx.profiles });
}

/** The checks of checkFlowFile on flow JSON already parsed (e.g. a deploy body). */
export function checkFlowNodes(nodes: unknown[], file: string, opts: FlowCheckOptions = {}): ConfigProblem[] {
  const env = opts.env ?? process.env;
  const specs = opts.specs ?? NODE_SPECS;
  const ctx: SpecContext = { env, profiles: opts.profiles ?? knownProfileIds(env) };
  const problems: ConfigProblem[] = [];
  const bad = (path: string, reason: string) => problems.push({ file, path, reason });
  const ids = new Set<string>();
  const disabledTabs = new Set<string>();
  const subflows = new Set<string>();
  (nodes as NodeDef[]).forEach((n: NodeDef, i) => {
    if (typeof n !== 'object' || n === null || typeof n.id !== 'string' || typeof n.type !== 'string') bad(`[${i}]`, 'each node needs a string id and type');
    else if (ids.has(n.id)) bad(`[${i}].id`, `duplicate node id '${n.id}'`);
    else {
      ids.add(n.id);
      if (n.type === 'tab' && n.disabled === true) disabledTabs.add(n.id);
      if (n.type === 'subflow') subflows.add(n.id);
    }
  });
  const ourTypes = new Map(specs.map((s) => [s.type, s]));
  const unique = new Map<string, string>();
  const listeners = new Map<string, string>();
  (nodes as NodeDef[]).forEach((n: NodeDef, i) => {
    if (typeof n !== 'object' || n === null || typeof n.type !== 'string') return;
    const where = `[${i}] ${n.type}${n.name ? ` '${String(n.name)}'` : ''}`;
    if (Array.isArray(n.wires)) {
      n.wires.forEach((port: unknown, pi: number) => {
        if (!Array.isArray(port)) return bad(`${where}.wires[${pi}]`, 'must be an array of node ids');
        for (const t of port) if (!ids.has(String(t))) bad(`${where}.wires[${pi}]`, `wired to a node that does not exist: '${String(t)}'`);
      });
    }
    const spec = ourTypes.get(n.type);
    if (!spec) {
      const isSubflowInstance = n.type.startsWith('subflow:') && subflows.has(n.type.slice(8));
      if (!CORE_TYPES.has(n.type) && !isSubflowInstance) {
        const near = [...ourTypes.keys(), ...CORE_TYPES].map((t) => [t, levenshtein(t, String(n.type))] as const).sort((a, b) => a[1] - b[1])[0];
        bad(`${where}.type`, `unknown node type '${n.type}'${near && near[1] <= 3 ? ` (did you mean '${near[0]}'?)` : ''}; this gateway installs no palette modules, so it would never start`);
      }
      return;
    }
    if (n.d === true || (typeof n.z === 'string' && disabledTabs.has(n.z))) return;
    problems.push(...validateNode(spec, n, file, where, ctx));
    for (const f of spec.fields) {
      if (!f.unique) continue;
      const key = `${f.unique}:${resolveEnvTemplate(n[f.name], env).trim() || String(n.name ?? '') || n.id}`;
      const prev = unique.get(key);
      if (prev) bad(`${where}.${f.name}`, `same ${f.unique} id as ${prev}; each must be unique`);
      else unique.set(key, where);
    }
    if (spec.listen) {
      const l = spec.listen;
      const cond = !l.when || l.when.equals.some((e) => {
        const other = spec.fields.find((x) => x.name === l.when!.field);
        const raw = n[l.when!.field] ?? other?.default;
        const v = other?.type === 'bool' ? resolvedBool(raw, env) : resolveEnvTemplate(raw, env).trim();
        return String(e) === String(v);
      });
      const port = resolveEnvTemplate(n[l.port], env).trim();
      if (cond && /^\d+$/.test(port) && Number(port) > 0) {
        const host = (l.host ? resolveEnvTemplate(n[l.host], env).trim() : '') || '0.0.0.0';
        // a wildcard listener clashes with every address on the same port
        const clash = [...listeners.entries()].find(([k]) => {
          const [h, p] = [k.slice(0, k.lastIndexOf(':')), k.slice(k.lastIndexOf(':') + 1)];
          return p === port && (h === host || h === '0.0.0.0' || host === '0.0.0.0' || h === '::' || host === '::');
        });
        if (clash) bad(`${where}.${l.port}`, `port ${port} is already listened on by ${clash[1]}`);
        else if (opts.httpPort !== undefined && Number(port) === opts.httpPort) bad(`${where}.${l.port}`, `port ${port} is the gateway's own HTTP port (IOMT_HTTP_PORT)`);
        listeners.set(`${host}:${port}`, where);
      }
    }
  });
  return problems;
}
