/**
 * Is a unit string valid UCUM? Checked with the National Library of Medicine's UCUM library
 * (`@lhncbc/ucum-lhc`, the reference implementation behind the UCUM web validator) rather than our
 * own grammar: UCUM is case-sensitive and full of traps (`mmol/l` is valid, `IU/mL` is not: it is
 * `[IU]/mL`; `RLU`, `S/CO`, `cells/uL` are not UCUM at all).
 *
 * Outputs use it to decide whether a unit may be labelled UCUM (HL7 v2.5.1 OBX-6 `unit^^UCUM`, FHIR
 * `valueQuantity.system = http://unitsofmeasure.org`); issue 8: "OBX-6 says UCUM only when the unit is
 * valid UCUM". Results are cached (bounded): a gateway sees a few dozen distinct units.
 */
import { UcumLhcUtils } from '@lhncbc/ucum-lhc';

const cache = new Map<string, boolean>();
const MAX_CACHE = 2048;
let utils: ReturnType<typeof UcumLhcUtils.getInstance> | undefined;

/** true when `unit` is a valid UCUM expression, exactly as written (no suggestion taken). '' → false. */
export function isValidUcum(unit: string): boolean {
  if (!unit) return false;
  const hit = cache.get(unit);
  if (hit !== undefined) return hit;
  const u = (utils ??= UcumLhcUtils.getInstance());
  let ok = false;
  try {
    ok = u.validateUnitString(unit, false).status === 'valid';
  } catch {
    ok = false;
  }
  if (cache.size >= MAX_CACHE) cache.clear();
  cache.set(unit, ok);
  return ok;
}
