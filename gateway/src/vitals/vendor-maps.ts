/**
 * Vendor code systems mapped to MDC, as data (issue 12 §3: "vendor code systems mapped to MDC by
 * profile"). One file per vendor system in firmware-config/code-maps/vendor/*.json:
 *   { "id": "...", "systems": ["<OBX-3.3 coding system name>", ...], "confidence": "C"|"S"|"U",
 *     "codes": { "<vendor code or label>": "<MDC reference id>" } }
 * The PCD normalizer looks an OBX-3 whose coding system is one of `systems` up here, then in the MDC
 * code map; the vendor's code is kept as `localCode`. No vendor name appears in code.
 */
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { packageRoot } from '../package-root';

export interface VendorCodeMap {
  id: string;
  systems: string[];
  confidence?: 'C' | 'S' | 'U';
  description?: string;
  codes: Record<string, string>;
}

/** Coding system name (OBX-3.3) → its vendor map. @throws Error on a malformed file or a system claimed twice. */
export function loadVendorMaps(dir: string): Map<string, VendorCodeMap> {
  const out = new Map<string, VendorCodeMap>();
  if (!existsSync(dir)) return out;
  for (const f of readdirSync(dir).filter((x) => x.endsWith('.json')).sort()) {
    const m = JSON.parse(readFileSync(join(dir, f), 'utf8')) as VendorCodeMap;
    if (!m.id || !Array.isArray(m.systems) || typeof m.codes !== 'object') throw new Error(`vendor code map ${f}: needs id, systems[], codes{}`);
    for (const [k, v] of Object.entries(m.codes)) if (!k.startsWith('$') && !/^MDC[X]?_[A-Z0-9_]+$/.test(v)) throw new Error(`vendor code map ${f}: ${k} -> '${v}' is not an MDC reference id`);
    for (const s of m.systems) {
      if (out.has(s)) throw new Error(`vendor code map ${f}: coding system ${s} already mapped by ${out.get(s)!.id}`);
      out.set(s, m);
    }
  }
  return out;
}

let shipped: Map<string, VendorCodeMap> | undefined;

/** The shipped vendor maps (firmware-config/code-maps/vendor), loaded once. */
export function shippedVendorMaps(): Map<string, VendorCodeMap> {
  return (shipped ??= loadVendorMaps(join(packageRoot(), 'firmware-config', 'code-maps', 'vendor')));
}
