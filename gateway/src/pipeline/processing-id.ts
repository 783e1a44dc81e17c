/**
 * Processing id of a source message, normalised for routing (HL7 v2.5.1 2.15.9.11 MSH-11, Table 0103: P
 * production, T training, D debugging; ASTM LIS02 H.12 adds Q quality control). First component, trimmed,
 * upper-cased: `P `, `p`, `P^T` are production. Empty → undefined (treated as P by the outputs).
 * Anything else is passed on as is: it is not P, so it reaches only a destination that lists it, and the
 * receivers flag the message `processing-id-unknown` so it can be found.
 */
export function normalizeProcessingId(raw: string | undefined, componentSeparator = '^'): string | undefined {
  if (!raw) return undefined;
  const v = raw.split(componentSeparator)[0].trim().toUpperCase();
  return v || undefined;
}
