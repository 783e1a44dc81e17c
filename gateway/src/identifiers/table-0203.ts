/**
 * HL7 v2.5.1 Table 0203 (identifier type, CX-5) and the typing of PID-3 on HL7 output (issue 13 §3):
 * a Table 0203 code passes as sent; a Vietnamese HIS's own type name (CCCD, BHYT, BHXH, MA_BN ...,
 * the aliases of firmware-config/fhir/vn-core.json) becomes the kind's Table 0203 code; no type → U.
 */
import { kindOfType } from './vn';
import { loadSiteConfig, type FhirSiteConfig } from './site-config';

/** HL7 v2.5.1 Table 0203 codes (NNxxx: national person identifier, xxx = ISO 3166 country, e.g. NNVNM). */
export const TABLE_0203 = new Set(
  'AM AN ANC AND ANON ANT APRN BA BC BCT BR BRN CC CY DDS DEA DFN DI DL DN DO DP DPM DR DS EI EN FI GI GL GN HC IND JHN LI LN LR MA MB MC MCD MCN MCR MCT MD MI MR MRT MS NBSNR NCT NE NH NI NII NIIP NP NPI OD PA PCN PE PEN PI PN PNT PPN PRC PRN PT QA RI RN RPH RR RRI SL SN SR SS TAX TN TPR U UPIN USID VN VS WC WCN XX'.split(' '),
);

export function inTable0203(code: string): boolean {
  return TABLE_0203.has(code) || /^NN[A-Z]{3}$/.test(code);
}

/** CX-5 for HL7 output: Table 0203 code as sent, a known VN alias → its code, empty → U, other text as sent. */
export function table0203Type(type: string | undefined, cfg?: FhirSiteConfig): string {
  const t = (type ?? '').trim();
  if (!t) return 'U';
  if (inTable0203(t)) return t;
  let site: FhirSiteConfig | undefined = cfg;
  try {
    site ??= loadSiteConfig();
  } catch {
    return t; // a broken site file never stops a result: the type goes as sent
  }
  const kind = kindOfType(t, site);
  return kind ? site.identifiers[kind].hl7Type : t;
}
