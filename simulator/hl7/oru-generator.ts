/**
 * Synthetic lab results: ORU^R01 in the HL7 v2.3.1 style of hematology analyzers (compare the Erba
 * ELite 580 capture in drivers/hl7-mllp/cases): MSH, PID, PV1, OBR, then one OBX per CBC parameter
 * with value, units, reference range and abnormal flag (HL7 v2.3.1 7.3.2 OBX-5..8, Table 0078).
 * About 1 KB per message. Every message gets a unique MSH-10 (control id, ST ≤ 20, HL7 v2.3.1 2.24.1.10)
 * and a unique specimen id (OBR-3 filler order number, where analyzers put the sample barcode).
 * No real patient data: PID carries a synthetic id only.
 */
import { formatHl7Timestamp } from '../../drivers/hl7-mllp/hl7-message';

export interface OruGeneratorOptions {
  /** Sending application MSH-3 (instrument name), default 'SIM-HEMA'. */
  device?: string;
  /** Sending facility MSH-4, default 'SIMLAB'. */
  facility?: string;
  /** Receiving application / facility MSH-5 / MSH-6 (defaults empty, as analyzers often send). */
  receivingApp?: string;
  receivingFacility?: string;
  /** MSH-12, default '2.3.1'. */
  version?: string;
  /**
   * Prefix making control and specimen ids unique across runs (default: random base-36, 5 chars).
   * Control id = `${prefix}${seq}` (≤ 20 chars), specimen id = `S${prefix}${seq}`.
   */
  runId?: string;
  /** Seed for the pseudo-random results (default derived from runId). */
  seed?: number;
}

export interface GeneratedOru {
  seq: number;
  controlId: string; // MSH-10
  specimenId: string; // OBR-3
  obxCount: number;
  text: string; // CR-separated segments, no trailing CR after the last one is added (HL7 2.5.1: every segment ends in CR)
  payload: Buffer; // UTF-8 bytes of text
}

interface CbcParam {
  code: string; // LOINC
  name: string;
  unit: string;
  low: number;
  high: number;
  decimals: number;
}

/** The CBC panel a 3/5-part-diff hematology analyzer reports (LOINC codes, UCUM-style units). */
export const CBC_PANEL: readonly CbcParam[] = [
  { code: '6690-2', name: 'WBC', unit: '10*3/uL', low: 4.0, high: 10.0, decimals: 2 },
  { code: '770-8', name: 'NEU%', unit: '%', low: 50.0, high: 70.0, decimals: 1 },
  { code: '736-9', name: 'LYM%', unit: '%', low: 20.0, high: 40.0, decimals: 1 },
  { code: '5905-5', name: 'MON%', unit: '%', low: 3.0, high: 12.0, decimals: 1 },
  { code: '789-8', name: 'RBC', unit: '10*6/uL', low: 3.5, high: 5.5, decimals: 2 },
  { code: '718-7', name: 'HGB', unit: 'g/dL', low: 11.0, high: 16.0, decimals: 1 },
  { code: '4544-3', name: 'HCT', unit: '%', low: 37.0, high: 54.0, decimals: 1 },
  { code: '787-2', name: 'MCV', unit: 'fL', low: 80.0, high: 100.0, decimals: 1 },
  { code: '785-6', name: 'MCH', unit: 'pg', low: 27.0, high: 34.0, decimals: 1 },
  { code: '786-4', name: 'MCHC', unit: 'g/dL', low: 32.0, high: 36.0, decimals: 1 },
  { code: '788-0', name: 'RDW-CV', unit: '%', low: 11.0, high: 16.0, decimals: 1 },
  { code: '777-3', name: 'PLT', unit: '10*3/uL', low: 100, high: 300, decimals: 0 },
  { code: '32623-1', name: 'MPV', unit: 'fL', low: 6.5, high: 12.0, decimals: 1 },
];

/** mulberry32: small deterministic PRNG, so a seeded run produces the same results. */
function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function hashString(s: string): number {
  let h = 2166136261;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 16777619);
  return h >>> 0;
}

export class OruGenerator {
  readonly runId: string;
  private seq = 0;
  private readonly rnd: () => number;
  private readonly o: Required<Omit<OruGeneratorOptions, 'seed' | 'runId'>>;

  constructor(opts: OruGeneratorOptions = {}) {
    this.runId = opts.runId ?? Math.floor(Math.random() * 36 ** 5).toString(36).toUpperCase().padStart(5, '0');
    if (this.runId.length > 8) throw new RangeError('runId must be at most 8 characters (MSH-10 is ST 20)');
    if (/[|^~\\&\r\n]/.test(this.runId)) throw new RangeError('runId must not contain HL7 delimiters');
    this.rnd = prng(opts.seed ?? hashString(this.runId));
    this.o = {
      device: opts.device ?? 'SIM-HEMA',
      facility: opts.facility ?? 'SIMLAB',
      receivingApp: opts.receivingApp ?? '',
      receivingFacility: opts.receivingFacility ?? '',
      version: opts.version ?? '2.3.1',
    };
    for (const [k, v] of Object.entries(this.o)) {
      if (/[|^~\\&\r\n]/.test(v)) throw new RangeError(`${k} must not contain HL7 delimiters`);
    }
  }

  /** Number of messages generated so far. */
  get generated(): number {
    return this.seq;
  }

  next(now = new Date()): GeneratedOru {
    const seq = ++this.seq;
    const controlId = `${this.runId}${seq}`;
    const specimenId = `S${this.runId}${seq}`;
    const ts = formatHl7Timestamp(now).slice(0, 14); // v2.3.1 analyzers send local time without offset
    const collected = formatHl7Timestamp(new Date(now.getTime() - 90_000)).slice(0, 14);
    const { device, facility, receivingApp, receivingFacility, version } = this.o;
    const segs: string[] = [
      // MSH-9 ORU^R01, MSH-10 control id, MSH-11 P, MSH-12 version, MSH-18 charset (v2.3.1 2.24.1)
      `MSH|^~\\&|${device}|${facility}|${receivingApp}|${receivingFacility}|${ts}||ORU^R01|${controlId}|P|${version}||||||UNICODE`,
      `PID|1||SIM${String(seq % 100000).padStart(5, '0')}^^^SIM^MR`,
      'PV1|1|O',
      // OBR-3 filler order number = specimen barcode; OBR-4 service; OBR-7 observation time; OBR-24 section HM
      `OBR|1||${specimenId}|58410-2^CBC panel^LN|||${collected}|||||||${collected}||||||||${ts}||HM|F`,
    ];
    let i = 0;
    for (const p of CBC_PANEL) {
      i++;
      // mostly inside the range, ~15% outside on either side
      const span = p.high - p.low;
      const v = p.low - 0.15 * span + this.rnd() * 1.3 * span;
      const value = Math.max(0, v).toFixed(p.decimals);
      const num = Number(value);
      const flag = num < p.low ? 'L' : num > p.high ? 'H' : 'N';
      const range = `${p.low.toFixed(p.decimals)}-${p.high.toFixed(p.decimals)}`;
      // OBX-2 NM, 3 code^text^LN, 5 value, 6 units, 7 range, 8 flag (Table 0078), 11 status F, 14 time
      segs.push(`OBX|${i}|NM|${p.code}^${p.name}^LN||${value}|${p.unit}|${range}|${flag}|||F|||${ts}`);
    }
    const text = segs.join('\r') + '\r';
    return { seq, controlId, specimenId, obxCount: i, text, payload: Buffer.from(text, 'utf8') };
  }
}
