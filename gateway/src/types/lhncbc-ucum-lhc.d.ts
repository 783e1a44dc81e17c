/** The part of @lhncbc/ucum-lhc (no bundled types) that the gateway uses: gateway/src/units/ucum.ts. */
declare module '@lhncbc/ucum-lhc' {
  export const UcumLhcUtils: {
    getInstance(): { validateUnitString(unit: string, suggest?: boolean): { status: 'valid' | 'invalid' | 'error'; ucumCode: string | null } };
  };
}
