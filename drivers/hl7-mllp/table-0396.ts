/**
 * HL7 Table 0396 (coding system) values, as listed by the hl7-dictionary package (MIT), plus the patterns
 * 99zzz (local) and HL7nnnn (HL7 tables) the table defines (HL7 v2.5.1 2.A.13 CWE-3). Data, copied once.
 */
export const TABLE_0396: ReadonlySet<string> = new Set(["ACR","ALPHAID2006","ALPHAID2007","ALPHAID2008","ANS+","ART","AS4","AS4E","ATC","C4","C5","CAS","CCC","CD2","CDCA","CDCM","CDS","CE","CLP","CPTM","CST","CVX","DCM","E","E5","E6","E7","ENZC","FDDC","FDDX","FDK","GDRG2004","GDRG2005","GDRG2006","GDRG2007","GDRG2008","GMDC2004","GMDC2005","GMDC2006","GMDC2007","GMDC2008","HB","HCPCS","HCPT","HHC","HI","HOT","HPC","I10","I10G2004","I10G2005","I10G2006","I10P","I9","I9C","I9CDX","I9CP","IBT","IBTnnnn","ICD10AM","ICD10CA","ICD10GM2007","ICD10GM2008","ICDO","ICS","ICSD","ISO+","ITIS","IUPC","IUPP","JC10","JC8","JJ1017","LB","LN","MCD","MCR","MDC","MDDX","MEDC","MEDR","MEDX","MGPI","MVX","NDA","NDC","NIC","NPI","NUBC","O301","O3012004","O3012005","O3012006","OHA","OPS2007","OPS2008","POS","RC","SCT","SCT2","SDM","SNM","SNM3","SNT","UB04FL14","UB04FL15","UB04FL17","UC","UCUM","UMD","UML","UPC","UPIN","USPS","W1","W2","W4","WC"]);

/** Is this a Table 0396 coding system name (a listed value, 99zzz, L or HL7nnnn)? */
export function inTable0396(name: string): boolean {
  return TABLE_0396.has(name) || name === 'L' || /^99[A-Za-z0-9]{1,8}$/.test(name) || /^HL7\d{4}$/.test(name);
}
