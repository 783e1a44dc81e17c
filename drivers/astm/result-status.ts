/**
 * ASTM E1394 / CLSI LIS02 R.9 result status → HL7 v2.5.1 Table 0085 (OBX-11) and FHIR R4
 * ObservationStatus, mapped by meaning (issue 8 §5; docs/protocols.md §2.2 R.9).
 *
 * The two tables share letters that mean different things, so a letter is never copied across:
 *   - LIS02 `W` = "warning: validity doubtful"; HL7 `W` = "post original as wrong, e.g. transmitted
 *     for wrong patient" (a void). An ASTM W goes out as HL7 `R` ("results entered – not verified")
 *     with the quality flag `validity-doubtful`.
 *   - LIS02 `R` = "previously transmitted" (a re-send); HL7 `R` = "not verified". An ASTM R is a
 *     re-send of a result already reported, so it goes out as `F`.
 *   - LIS02 `N` = "contains information needed for a new order" (a reflex trigger); HL7 `N` = "not
 *     asked". An ASTM N goes out as `P`: it is a real result, but the answer the order is waiting
 *     for comes with the new order, so it must not close the order as final.
 *
 * Pure data and one function; no I/O.
 */
import type { ObservationStatus, QualityFlag } from '../../gateway/src/contracts/observation';

export interface ResultStatusMapping {
  /** HL7 v2.5.1 Table 0085 letter sent in OBX-11. */
  hl7: 'C' | 'D' | 'F' | 'I' | 'N' | 'O' | 'P' | 'R' | 'S' | 'U' | 'W' | 'X';
  /** FHIR R4 Observation.status. */
  fhir: ObservationStatus;
  /** Quality flag added to the result when the mapping had to weaken the device's status. */
  flag?: QualityFlag['code'];
  /** LIS02 meaning (documentation). */
  meaning: string;
}

/**
 * LIS02 R.9 (CLSI LIS2-A2 §9.9, E1394-97 10.1.9) → HL7 v2.5.1 Table 0085.
 *
 * | R.9 | LIS02 meaning                          | 0085 | FHIR         | flag              |
 * |-----|----------------------------------------|------|--------------|-------------------|
 * | F   | final results                          | F    | final        |                   |
 * | V   | operator verified/approved             | F    | final        |                   |
 * | Q   | response to query                      | F    | final        |                   |
 * | M   | MIC level                              | F    | final        |                   |
 * | R   | previously transmitted (re-send)       | F    | final        |                   |
 * | C   | correction of previously sent results  | C    | corrected    |                   |
 * | P   | preliminary results                    | P    | preliminary  |                   |
 * | S   | partial results                        | S    | preliminary  |                   |
 * | I   | in instrument, results pending         | I    | registered   |                   |
 * | X   | results cannot be done                 | X    | cancelled    |                   |
 * | N   | necessary information for a new order  | P    | preliminary  |                   |
 * | W   | warning: validity doubtful             | R    | preliminary  | validity-doubtful |
 * | any other letter                             | R    | unknown      | unknown-status    |
 */
export const ASTM_RESULT_STATUS: Readonly<Record<string, ResultStatusMapping>> = Object.freeze({
  F: { hl7: 'F', fhir: 'final', meaning: 'final results' },
  V: { hl7: 'F', fhir: 'final', meaning: 'operator verified/approved result' },
  Q: { hl7: 'F', fhir: 'final', meaning: 'response to query' },
  M: { hl7: 'F', fhir: 'final', meaning: 'MIC level' },
  R: { hl7: 'F', fhir: 'final', meaning: 'previously transmitted results (re-send)' },
  C: { hl7: 'C', fhir: 'corrected', meaning: 'correction of previously transmitted results' },
  P: { hl7: 'P', fhir: 'preliminary', meaning: 'preliminary results' },
  S: { hl7: 'S', fhir: 'preliminary', meaning: 'partial results' },
  I: { hl7: 'I', fhir: 'registered', meaning: 'in instrument, results pending' },
  X: { hl7: 'X', fhir: 'cancelled', meaning: 'results cannot be done, request cannot be fulfilled' },
  N: { hl7: 'P', fhir: 'preliminary', meaning: 'results contain necessary information to run a new order' },
  W: { hl7: 'R', fhir: 'preliminary', flag: 'validity-doubtful', meaning: 'warning: validity doubtful' },
});

/** Safe mapping for a letter outside LIS02 R.9: HL7 R (not verified), flagged `unknown-status`. */
export const UNKNOWN_RESULT_STATUS: ResultStatusMapping = Object.freeze({ hl7: 'R', fhir: 'unknown', flag: 'unknown-status', meaning: 'status outside LIS02 R.9' });

/** The profile's `defaultResultStatus` (used when R.9 is empty) → the same mapping shape. */
const DEFAULTS: Record<'final' | 'preliminary' | 'unknown', ResultStatusMapping> = {
  final: { hl7: 'F', fhir: 'final', meaning: 'no status sent; the profile says this device sends final results only' },
  preliminary: { hl7: 'P', fhir: 'preliminary', meaning: 'no status sent; the profile says preliminary' },
  unknown: { hl7: 'R', fhir: 'unknown', flag: 'unknown-status', meaning: 'no status sent' },
};

export interface MappedStatus extends ResultStatusMapping {
  /** The R.9 text as sent (trimmed); '' when the device sent none. */
  device: string;
}

/**
 * Map one R.9 value. Letters are matched case-insensitively (the device's text is kept in `device`).
 * Empty R.9: the profile's `defaultResultStatus`, or, when the profile has none, HL7 R + `unknown-status`
 * (a missing status never becomes "final" unless the profile says the device never sends one).
 */
export function mapAstmResultStatus(r9: string, defaultResultStatus?: 'final' | 'preliminary' | 'unknown'): MappedStatus {
  const device = r9.trim();
  if (!device) return { ...DEFAULTS[defaultResultStatus ?? 'unknown'], device };
  const m = ASTM_RESULT_STATUS[device.toUpperCase()];
  return { ...(m ?? UNKNOWN_RESULT_STATUS), device };
}
