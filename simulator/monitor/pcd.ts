/**
 * `iomt-gateway simulate monitor --mode pcd`: a central station (Mindray / GE / Philips pattern,
 * protocols.md §4) exporting IHE PCD-01 ORU^R01 v2.6 over MLLP for N beds, one link, stop-and-wait on
 * each ACK; alarms as IHE ACM PCD-04 ORU^R40. The messages are written here from the IHE PCD pattern
 * (MSH-21 IHE_PCD_001, MDS row with OBX-18 EUI-64, OBX-4 containment, MDC codes and units), not with
 * the gateway's own builder, so the gateway's parser is exercised by an independent writer.
 * Faults: unassociated (no PID-3 on every 3rd bed), nan (11073 NaN 8388607 in SpO2), demo (OBX-8 DEMO),
 * duplicate (each message sent twice: the gateway must store it once).
 */
import { readFileSync } from 'node:fs';
import { MllpClient } from '../../drivers/hl7-mllp/mllp-client';
import { parseOpts, UsageError, type Out } from '../options';

export const PCD_USAGE = `usage: iomt-gateway simulate monitor --mode pcd [options]
  --host H            gateway PCD-01 listener host (default 127.0.0.1)
  --port P            its port (default 2579)
  --tls-ca FILE       MLLP over TLS, trusting this CA
  --beds N            beds on this central station (default 4)
  --rate R            messages per second per bed (default 1)
  --duration S        seconds to run (default 10); or --count N messages per bed
  --count N
  --alarm-every N     an ACM PCD-04 alarm every N messages of a bed (start, then end; 0 = none; default 0)
  --fault KIND        unassociated | nan | demo | duplicate (repeatable)
  --seed N            random seed (default 1)`;

export type PcdFault = 'unassociated' | 'nan' | 'demo' | 'duplicate';

export interface PcdBedState {
  bed: number;
  eui64: string;
  seq: number;
}

const PROFILE = 'IHE_PCD_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.1.1^ISO';
const ACM_PROFILE = 'IHE_PCD_ACM_001^IHE PCD^1.3.6.1.4.1.19376.1.6.1.4.1^ISO';
const p2 = (n: number) => String(n).padStart(2, '0');

/** HL7 DTM in UTC with +0000. */
export function hl7Utc(d: Date): string {
  return `${d.getUTCFullYear()}${p2(d.getUTCMonth() + 1)}${p2(d.getUTCDate())}${p2(d.getUTCHours())}${p2(d.getUTCMinutes())}${p2(d.getUTCSeconds())}+0000`;
}

/** A small deterministic PRNG (mulberry32). */
export function rng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

function header(type: string, id: string, when: string, profile: string): string {
  return `MSH|^~\\&|CS_SIM^0A1B2C3D4E5F6071^EUI-64|BV_DEMO|||${when}||${type}|${id}|P|2.6|||NE|AL||UNICODE UTF-8|||${profile}`;
}

function patient(b: PcdBedState, faults: Set<PcdFault>): string[] {
  const bed = `BED${p2(b.bed)}`;
  // an unassociated monitor has no PID-3 (IHE PCD: not bound to a patient)
  const pid = faults.has('unassociated') && b.bed % 3 === 0 ? 'PID|||' : `PID|||SIM${p2(b.bed)}^^^BV_DEMO^MR`;
  return [pid, `PV1||I|ICU^^${bed}^BV_DEMO`];
}

/** One PCD-01 message of a bed: HR, SpO2, pulse rate, RR, temperature, NIBP every 5th message. */
export function pcd01Message(b: PcdBedState, at: Date, rnd: () => number, faults: Set<PcdFault>): { controlId: string; text: string } {
  b.seq++;
  const id = `CS${p2(b.bed)}-${b.seq}`;
  const when = hl7Utc(at);
  const hr = Math.round(60 + rnd() * 40);
  const spo2 = faults.has('nan') && b.seq % 4 === 0 ? '8388607' : String(Math.round(94 + rnd() * 5));
  const flag = hr > 95 ? 'H' : '';
  const demo = faults.has('demo') && b.seq % 5 === 0 ? 'DEMO' : '';
  const obx = [
    `OBX|1||69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC|1.0.0.0|||||||X|||||||${b.eui64}^^${b.eui64}^EUI-64`,
    `OBX|2|NM|147842^MDC_ECG_HEART_RATE^MDC|1.1.1.1|${hr}|264864^MDC_DIM_BEAT_PER_MIN^MDC|50-95|${flag || demo}|||R|||${when}`,
    `OBX|3|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.2.1.1|${spo2}|262688^MDC_DIM_PERCENT^MDC|90-100||||R|||${when}`,
    `OBX|4|NM|149530^MDC_PULS_OXIM_PULS_RATE^MDC|1.2.1.2|${hr - 1}|264864^MDC_DIM_BEAT_PER_MIN^MDC|50-95||||R|||${when}`,
    `OBX|5|NM|151562^MDC_RESP_RATE^MDC|1.1.2.1|${Math.round(12 + rnd() * 8)}|264928^MDC_DIM_RESP_PER_MIN^MDC|8-30||||R|||${when}`,
    `OBX|6|NM|150344^MDC_TEMP^MDC|1.4.1.1|${(36.4 + rnd()).toFixed(1)}|268192^MDC_DIM_DEGC^MDC|35.5-38.0||||R|||${when}`,
  ];
  if (b.seq % 5 === 1) {
    obx.push(
      `OBX|7|NM|150021^MDC_PRESS_BLD_NONINV_SYS^MDC|1.3.1.1|${Math.round(105 + rnd() * 30)}|266016^MDC_DIM_MMHG^MDC|90-160||||R|||${when}||^APERIODIC`,
      `OBX|8|NM|150022^MDC_PRESS_BLD_NONINV_DIA^MDC|1.3.1.2|${Math.round(65 + rnd() * 20)}|266016^MDC_DIM_MMHG^MDC|50-90||||R|||${when}||^APERIODIC`,
    );
  }
  const segs = [header('ORU^R01^ORU_R01', id, when, PROFILE), ...patient(b, faults), `OBR|1|${id}^CS_SIM^${b.eui64}^EUI-64|${id}^CS_SIM^${b.eui64}^EUI-64|182777000^monitoring of patient^SCT|||${when}`, ...obx];
  return { controlId: id, text: segs.join('\r') };
}

/** An ACM PCD-04 alarm of a bed (SpO2 low, physiological, high priority), phase start or end. */
export function pcd04Message(b: PcdBedState, at: Date, phase: 'start' | 'end', alarmNo: number, faults: Set<PcdFault>): { controlId: string; text: string } {
  b.seq++;
  const id = `AL${p2(b.bed)}-${b.seq}`;
  const when = hl7Utc(at);
  const alarmId = `AL${p2(b.bed)}-${alarmNo}^CS_SIM^${b.eui64}^EUI-64`;
  const segs = [
    header('ORU^R40^ORU_R40', id, when, ACM_PROFILE),
    ...patient(b, faults),
    `OBR|1||${alarmId}|196616^MDC_EVT_ALARM^MDC|||${when}`,
    `OBX|1||69965^MDC_DEV_MON_PHYSIO_MULTI_PARAM_MDS^MDC|1.0.0.0|||||||X|||||||${b.eui64}^^${b.eui64}^EUI-64`,
    `OBX|2|NM|150456^MDC_PULS_OXIM_SAT_O2^MDC|1.2.1.150456.1|86|262688^MDC_DIM_PERCENT^MDC|90-100|L~PH~SP|||F|||${when}`,
    `OBX|3|ST|68481^MDC_ATTR_EVENT_PHASE^MDC|1.2.1.150456.2|${phase}||||||F`,
    `OBX|4|ST|68482^MDC_ATTR_ALARM_STATE^MDC|1.2.1.150456.3|${phase === 'end' ? 'inactive' : 'active'}||||||F`,
  ];
  return { controlId: id, text: segs.join('\r') };
}

export interface PcdRunOptions {
  host: string;
  port: number;
  ca?: Buffer;
  beds: number;
  rate: number;
  /** Messages per bed (vitals and alarms together). */
  count: number;
  alarmEvery: number;
  faults: Set<PcdFault>;
  seed: number;
}

export interface PcdReport {
  sent: number;
  vitals: number;
  alarms: number;
  duplicatesSent: number;
  aa: number;
  ae: number;
  ar: number;
  errors: string[];
  /** Control ids answered AA (first send), per kind. */
  accepted: string[];
}

/** Run the central station: every bed sends `count` messages at `rate` per second over one MLLP link. */
export async function runPcdCentralStation(o: PcdRunOptions): Promise<PcdReport> {
  const client = new MllpClient({ host: o.host, port: o.port, tls: o.ca ? { ca: o.ca } : undefined, ackTimeoutMs: 10_000 });
  const rnd = rng(o.seed);
  const beds: PcdBedState[] = Array.from({ length: o.beds }, (_, i) => ({ bed: i + 1, eui64: `0A1B2C3D4E5F${(0x7000 + i + 1).toString(16).toUpperCase()}`, seq: 0 }));
  const r: PcdReport = { sent: 0, vitals: 0, alarms: 0, duplicatesSent: 0, aa: 0, ae: 0, ar: 0, errors: [], accepted: [] };
  const alarmOpen = new Map<number, number>();
  const start = Date.now();
  try {
    for (let k = 0; k < o.count; k++) {
      const due = start + (k * 1000) / o.rate;
      const wait = due - Date.now();
      if (wait > 0) await new Promise((res) => setTimeout(res, wait));
      for (const b of beds) {
        const at = new Date();
        let m: { controlId: string; text: string };
        if (o.alarmEvery > 0 && (k + 1) % o.alarmEvery === 0) {
          const open = alarmOpen.get(b.bed);
          if (open === undefined) {
            const no = k + 1;
            alarmOpen.set(b.bed, no);
            m = pcd04Message(b, at, 'start', no, o.faults);
          } else {
            alarmOpen.delete(b.bed);
            m = pcd04Message(b, at, 'end', open, o.faults);
          }
          r.alarms++;
        } else {
          m = pcd01Message(b, at, rnd, o.faults);
          r.vitals++;
        }
        const times = o.faults.has('duplicate') ? 2 : 1;
        for (let t = 0; t < times; t++) {
          try {
            const ack = (await client.send(Buffer.from(m.text, 'utf8'))).toString('utf8');
            r.sent++;
            if (t > 0) r.duplicatesSent++;
            const code = /\rMSA\|([A-Z]{2})/.exec(ack)?.[1] ?? '';
            if (code === 'AA') {
              r.aa++;
              if (t === 0) r.accepted.push(m.controlId);
            } else if (code === 'AE') r.ae++;
            else if (code === 'AR') r.ar++;
            else r.errors.push(`${m.controlId}: no MSA in the ACK`);
          } catch (e) {
            r.errors.push(`${m.controlId}: ${(e as Error).message}`);
          }
        }
      }
    }
  } finally {
    await client.close().catch(() => undefined);
  }
  return r;
}

export function formatPcdReport(r: PcdReport): string {
  return `sent=${r.sent} vitals=${r.vitals} alarms=${r.alarms} duplicates=${r.duplicatesSent} AA=${r.aa} AE=${r.ae} AR=${r.ar} errors=${r.errors.length}`;
}

/** Entry point (simulator/monitor/cli.ts mode switch). Exit 0 when every message got AA. */
export async function simulatePcd(argv: string[], out: Out): Promise<number> {
  const lists: Record<string, string[]> = {};
  const o = parseOpts(argv, { host: 'string', port: 'string', 'tls-ca': 'string', beds: 'string', rate: 'string', duration: 'string', count: 'string', 'alarm-every': 'string', fault: 'list', seed: 'string', help: 'flag' }, lists);
  if (o.help) {
    out.log(PCD_USAGE);
    return 0;
  }
  const num = (k: string, d: number, min: number) => {
    const v = o[k] === undefined ? d : Number(o[k]);
    if (!Number.isFinite(v) || v < min) throw new UsageError(`--${k} must be a number >= ${min}`);
    return v;
  };
  const faults = new Set<PcdFault>();
  for (const f of lists.fault ?? []) {
    if (!['unassociated', 'nan', 'demo', 'duplicate'].includes(f)) throw new UsageError(`unknown fault '${f}'`);
    faults.add(f as PcdFault);
  }
  const rate = num('rate', 1, 0.01);
  const count = o.count !== undefined ? Math.floor(num('count', 1, 1)) : Math.max(1, Math.floor(num('duration', 10, 0.1) * rate));
  const r = await runPcdCentralStation({
    host: o.host ?? '127.0.0.1',
    port: Math.floor(num('port', 2579, 1)),
    ca: o['tls-ca'] ? readFileSync(o['tls-ca']) : undefined,
    beds: Math.floor(num('beds', 4, 1)),
    rate,
    count,
    alarmEvery: Math.floor(num('alarm-every', 0, 0)),
    faults,
    seed: Math.floor(num('seed', 1, 0)),
  });
  const ok = r.errors.length === 0 && r.aa === r.sent;
  out.log(`pcd central station ${ok ? 'OK' : 'FAILED'} ${formatPcdReport(r)}`);
  for (const e of r.errors.slice(0, 20)) out.err(`  error: ${e}`);
  return ok ? 0 : 1;
}
