/**
 * A JavaScript number as HL7 NM text (HL7 v2.5.1 2.A.47 / v2.6 2.A.47: optional sign, digits, optional
 * decimal point; no exponent). `String(1e-7)` is '1e-7' and `String(-1e308)` '-1e+308': not NM. Used by
 * every writer that sends a computed number (outputs send a device's own `decimal` text when there is one).
 */
export function nmText(n: number): string {
  const s = String(n);
  const m = /^(-?)(\d)(?:\.(\d+))?e([+-]\d+)$/.exec(s);
  if (!m) return s;
  const digits = m[2] + (m[3] ?? '');
  const point = 1 + Number(m[4]);
  const body = point <= 0 ? `0.${'0'.repeat(-point)}${digits}` : point >= digits.length ? digits + '0'.repeat(point - digits.length) : `${digits.slice(0, point)}.${digits.slice(point)}`;
  return m[1] + body;
}
