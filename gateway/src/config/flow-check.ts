import { existsSync, readFileSync } from 'node:fs';
import type { ConfigProblem } from '../contracts/errors';
import { resolveEnvTemplate, resolveNumber } from './env-template';

type NodeDef = Record<string, unknown> & { id?: string; type?: string; wires?: unknown };

/** Per node type: which properties are ports / numbers / required, checked after ${ENV} resolution. */
const NODE_RULES: Record<string, { ports?: string[]; positive?: string[]; uniqueBy?: string; files?: Array<{ prop: string; when: string }> }> = {
  'iomt-hl7-in': { ports: ['port'], positive: ['maxBytes', 'idleTimeoutS', 'maxConnections'], uniqueBy: 'deviceId', files: [{ prop: 'tlsCert', when: 'tls' }, { prop: 'tlsKey', when: 'tls' }] },
  'iomt-hl7-out': { ports: ['port'], positive: ['ackTimeoutS', 'maxAttempts', 'maxAgeHours', 'reconnectMaxS'], uniqueBy: 'destination' },
  'iomt-astm-device': { positive: ['baudRate'], uniqueBy: 'deviceId' },
};

/**
 * Validate a Node-RED flow file as the gateway will run it: JSON shape, wires to existing nodes,
 * our nodes' properties after environment substitution, unique device ids and destinations.
 */
export function checkFlowFile(file: string, env: NodeJS.ProcessEnv = process.env): ConfigProblem[] {
  const problems: ConfigProblem[] = [];
  const bad = (path: string, reason: string) => problems.push({ file, path, reason });
  if (!existsSync(file)) return [{ file, path: '', reason: 'flows file not found' }];
  let nodes: unknown;
  try {
    nodes = JSON.parse(readFileSync(file, 'utf8'));
  } catch (e) {
    return [{ file, path: '', reason: `not valid JSON: ${(e as Error).message}` }];
  }
  if (!Array.isArray(nodes)) return [{ file, path: '', reason: 'a flow file is a JSON array of nodes' }];
  const ids = new Set<string>();
  nodes.forEach((n: NodeDef, i) => {
    if (typeof n !== 'object' || n === null || typeof n.id !== 'string' || typeof n.type !== 'string') bad(`[${i}]`, 'each node needs a string id and type');
    else if (ids.has(n.id)) bad(`[${i}].id`, `duplicate node id '${n.id}'`);
    else ids.add(n.id);
  });
  const unique = new Map<string, string>();
  nodes.forEach((n: NodeDef, i) => {
    if (typeof n !== 'object' || n === null) return;
    const where = `[${i}] ${n.type}${n.name ? ` '${String(n.name)}'` : ''}`;
    if (Array.isArray(n.wires)) {
      n.wires.forEach((port: unknown, pi: number) => {
        if (!Array.isArray(port)) return bad(`${where}.wires[${pi}]`, 'must be an array of node ids');
        for (const t of port) if (!ids.has(String(t))) bad(`${where}.wires[${pi}]`, `wired to a node that does not exist: '${String(t)}'`);
      });
    }
    const rule = NODE_RULES[String(n.type)];
    if (!rule) return;
    for (const p of rule.ports ?? []) {
      const v = resolveNumber(n[p], 1, env);
      if (!Number.isInteger(v) || v < 0 || v > 65535) bad(`${where}.${p}`, `'${String(n[p])}' does not resolve to a port number (got '${resolveEnvTemplate(n[p], env)}')`);
    }
    for (const p of rule.positive ?? []) {
      const v = resolveNumber(n[p], 1, env);
      if (!Number.isFinite(v) || v <= 0) bad(`${where}.${p}`, `'${String(n[p])}' must resolve to a positive number`);
    }
    for (const f of rule.files ?? []) {
      if (String(resolveEnvTemplate(n[f.when], env)) !== 'true') continue;
      const path = resolveEnvTemplate(n[f.prop], env);
      if (!path) bad(`${where}.${f.prop}`, `required when ${f.when} is on`);
      else if (!existsSync(path)) bad(`${where}.${f.prop}`, `file not found: ${path}`);
    }
    if (rule.uniqueBy && !n.d) {
      const key = `${rule.uniqueBy}:${resolveEnvTemplate(n[rule.uniqueBy], env).trim() || String(n.name ?? '') || n.id}`;
      const prev = unique.get(key);
      if (prev) bad(`${where}.${rule.uniqueBy}`, `same ${rule.uniqueBy} as ${prev}; each must be unique`);
      else unique.set(key, where);
    }
  });
  return problems;
}
