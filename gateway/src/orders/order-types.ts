/**
 * Order download types (issue 3 part 4). HL7-free on purpose: the HL7 order parser produces
 * `OrderUpdate[]`, the order cache stores them, and the ASTM driver answers host queries from the
 * cache without depending on the HL7 driver.
 *
 * Everything here except the codes is PHI (patient, specimen ids): never log it above debug.
 */
import type { PatientIdentifier } from '../contracts/observation';

/**
 * ORC-1 order control (HL7 v2.5.1 Table 0119). The cache acts on NW (new), XO (change), CA (cancel
 * request), DC (discontinue request), OC (order cancelled) and OD (order discontinued); anything else
 * (SC status changed, RP, ...) is kept by the parser and ignored by the cache.
 */
export type OrderControl = 'NW' | 'CA' | 'XO' | 'DC' | 'SC' | 'OC' | 'OD' | (string & {});

/** One ordered test (OBR-4 CE/CWE; HL7 v2.5.1 2.A.13). */
export interface OrderTest {
  /** OBR-4.1 identifier (OBR-4.4 when .1 is empty). */
  code: string;
  /** OBR-4.2 text. */
  display?: string;
  /** OBR-4.3 coding system name as sent (Table 0396: LN, L, 99xxx ...). */
  system?: string;
  /** OBR-4.4 alternate identifier: often the analyzer's local test code. */
  altCode?: string;
  /** OBR-4.5 alternate text. */
  altDisplay?: string;
  /** OBR-4.6 alternate coding system. */
  altSystem?: string;
}

/** PHI. Patient demographics as the HIS sent them (PID). */
export interface OrderPatient {
  /** First PID-3 identifier. */
  patientId?: string;
  /** All PID-3 repetitions (CX id^^^authority^type). */
  patientIds?: PatientIdentifier[];
  /** PID-5 as `family^given[^middle]` (trailing empty components dropped). */
  name?: string;
  /** PID-7, YYYYMMDD (or YYYY / YYYYMM when that is all that was sent). */
  birthDate?: string;
  /** PID-8 (Table 0001: M F O U A N). */
  sex?: string;
}

/** Order priority normalized to the ASTM O.6 letters the analyzers understand. */
export type OrderPriority = 'S' | 'A' | 'R';

/** One order for one specimen, as one HL7 message asked for it. */
export interface OrderUpdate {
  control: OrderControl;
  placerOrderNumber?: string;
  fillerOrderNumber?: string;
  /** The specimen barcode the analyzer will query with (rule: drivers/hl7-mllp/order-parser.ts). */
  specimenId: string;
  patient?: OrderPatient;
  /** Tests named by the message. Empty for a cancel = the whole order. */
  tests: OrderTest[];
  priority?: OrderPriority;
  /** ISO 8601 (no offset = local time as sent). */
  requestedAt?: string;
  /** ISO 8601 (OBR-7, else SPM-17). */
  collectedAt?: string;
  /** OBR-15 / SPM-4 code (Table 0487: BLD, SER, PLAS, UR ...). */
  specimenType?: string;
}

export type OrderStatus = 'pending' | 'cancelled';

/** An order as kept in the order cache (one row per specimen barcode): the update's fields, merged. */
export interface CachedOrder extends Omit<OrderUpdate, 'control' | 'tests'> {
  id: number;
  /** Pending tests; for a cancelled order, the tests that were cancelled. */
  tests: OrderTest[];
  status: OrderStatus;
  /** ISO 8601 UTC. */
  createdAt: string;
  updatedAt: string;
  /** Change sequence of the last change (monotonic across the cache's life; see `pendingSince`). */
  changeSeq: number;
}

/** Where an update came from (the cache de-duplicates on it). */
export interface OrderSource {
  deviceId: string;
  /** HL7 MSH-10 (ideally `sender|MSH-10`). Empty = no message-level de-duplication. */
  messageControlId: string;
}

export interface ApplyResult {
  created: number;
  updated: number;
  cancelled: number;
  /** Updates whose control code the cache does not act on, or that changed nothing. */
  ignored: number;
  /** true when (deviceId, messageControlId) had already been applied: nothing was done. */
  duplicate: boolean;
}
