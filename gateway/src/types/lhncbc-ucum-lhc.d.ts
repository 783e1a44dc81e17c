/** The part of @lhncbc/ucum-lhc (no bundled types) that the gateway uses: gateway/src/units/ucum.ts, gateway/src/vitals/code-map.ts. */
declare module '@lhncbc/ucum-lhc' {
  export const UcumLhcUtils: {
    getInstance(): {
      validateUnitString(unit: string, suggest?: boolean): { status: 'valid' | 'invalid' | 'error'; ucumCode: string | null };
      convertUnitTo(from: string, value: number, to: string): { status: 'succeeded' | 'failed' | 'error'; toVal: number | null };
    };
  };
}
