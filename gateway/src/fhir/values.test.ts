import { describe, expect, it } from 'vitest';
import { decimalOf, FhirDecimal, fhirJson, quantity, referenceRange } from './values';

describe('FHIR decimal precision (FHIR R4 2.1.28.0.1 decimal: precision is significant)', () => {
  // device text → what the FHIR JSON carries
  const cases: Array<[string, string]> = [
    ['36.80', '36.80'],
    ['5.0', '5.0'],
    ['0.010', '0.010'],
    ['+5.0', '5.0'], // RFC 8259 6: no '+'
    ['.50', '0.50'], // a digit before the point
    ['05.10', '5.10'], // no leading zeros
    ['5.', '5'],
    ['120', '120'],
    ['-1.50', '-1.50'],
    ['1.5', '1.5'],
  ];
  it.each(cases)('%s is sent as %s', (text, json) => {
    expect(fhirJson({ valueQuantity: quantity(decimalOf(text), 'mmol/L') })).toBe(`{"valueQuantity":{"value":${json},"unit":"mmol/L","system":"http://unitsofmeasure.org","code":"mmol/L"}}`);
    expect(Number(decimalOf(text))).toBe(Number(text));
  });

  it('reference ranges keep their precision too', () => {
    expect(fhirJson(referenceRange('3.50-5.10', 'mmol/L'))).toContain('"low":{"value":3.50');
    expect(fhirJson(referenceRange('3.50-5.10', 'mmol/L'))).toContain('"high":{"value":5.10');
  });

  it('a device string that looks like the internal mark stays a string', () => {
    const text = '\u0000fhir-decimal-000000000000:1.0';
    expect(JSON.parse(fhirJson({ valueString: text }))).toEqual({ valueString: text });
  });

  it('a device string built from what JSON.stringify shows of a FhirDecimal (a log, a debug dump) stays a string', () => {
    // the mark must not be learnable: anyone who saw it could turn a display into a bare number or break the JSON
    const shown = JSON.parse(JSON.stringify({ v: new FhirDecimal('5.0') })) as { v: unknown };
    const mark = String(shown.v).replace(/5(\.0)?$/, '');
    for (const device of [`${mark}5`, `${mark}5.0`, `a"${mark}5`, `${mark}-1.50`]) {
      const text = fhirJson({ valueString: device, code: { coding: [{ display: device }] }, valueQuantity: { value: new FhirDecimal('36.80') } });
      expect(JSON.parse(text)).toEqual({ valueString: device, code: { coding: [{ display: device }] }, valueQuantity: { value: 36.8 } });
      expect(text).toContain('"value":36.80}');
    }
  });

  it('the number itself is used where no text was sent', () => {
    expect(decimalOf(undefined, 7.25)).toBe(7.25);
    expect(decimalOf('not a number', 7.25)).toBe(7.25);
    expect(decimalOf(undefined, Number.NaN)).toBeUndefined();
  });
});
