/**
 * BHYT claims export (issue 13 §4): per result indicator, the XML4 fields the gateway can know
 * (QĐ 130/QĐ-BYT table 4 "chỉ tiêu chi tiết dịch vụ cận lâm sàng", as amended by QĐ 4750/QĐ-BYT and
 * QĐ 3176/QĐ-BYT; protocols.md §7.2) plus MA_MAY (XML3: the registered code of the machine that
 * performed the service), so the HIS fills XML3/XML4 without re-keying.
 *
 * - MA_DICH_VU, MA_CHI_SO, TEN_CHI_SO: from the site code map (firmware-config/code-maps/bhyt-*.json);
 *   a result with no row keeps its own code and name and empty codes (never left out).
 * - GIA_TRI: the value as sent (comparator and decimals kept); DON_VI_DO: its unit.
 * - NGAY_KQ: result time (OBX-14 / ASTM R.13, else the time received) as `yyyyMMddHHmm` in Vietnam
 *   time (UTC+7, no daylight saving).
 * - MA_LK: the visit key, from the order's PV1-19 visit number (`OrderInfo.visitNumber`, HL7 v2.5.1
 *   3.4.3.19 CX-1) when the HIS or the device sent one; else empty and the HIS joins on the specimen.
 * - Only results a claim can use: production (MSH-11/H.12 P), status final or corrected (Table 0085
 *   F, C, U, A); one row per result key (same device, specimen, test): a rerun takes the row's place, a
 *   correction replaces the row of the LATEST result of that key (the rule of the FHIR output,
 *   gateway/src/fhir/result-history.ts), a deletion (D) or wrong result (W) withdraws that latest result
 *   only: the result before it (the first run) has the row again.
 */
import { nmText } from '../units/number-text';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { Observation } from '../contracts/observation';
import { packageRoot } from '../package-root';
import { resultKey } from '../fhir/bundle';

export interface BhytCodeMapRow {
  code: string;
  system?: string;
  deviceId?: string;
  MA_DICH_VU: string;
  MA_CHI_SO: string;
  TEN_CHI_SO?: string;
}

export interface BhytCodeMap {
  version: number;
  rows: BhytCodeMapRow[];
}

/** One XML4 row (element names of QĐ 130 XML4) plus MA_MAY (XML3) and the gateway's own keys. */
export interface Xml4Row {
  MA_LK: string;
  STT: number;
  MA_DICH_VU: string;
  MA_CHI_SO: string;
  TEN_CHI_SO: string;
  GIA_TRI: string;
  DON_VI_DO: string;
  MO_TA: string;
  KET_LUAN: string;
  NGAY_KQ: string;
  MA_BS_DOC_KQ: string;
  DU_PHONG: string;
  MA_MAY: string;
}

export const XML4_FIELDS: Array<keyof Xml4Row> = ['MA_LK', 'STT', 'MA_DICH_VU', 'MA_CHI_SO', 'TEN_CHI_SO', 'GIA_TRI', 'DON_VI_DO', 'MO_TA', 'KET_LUAN', 'NGAY_KQ', 'MA_BS_DOC_KQ', 'DU_PHONG', 'MA_MAY'];

export function defaultCodeMapFile(): string {
  return join(packageRoot(), 'firmware-config', 'code-maps', 'bhyt-example.json');
}

/** Load and check a code map; TypeError naming the problem. */
export function loadBhytCodeMap(file = defaultCodeMapFile()): BhytCodeMap {
  const raw = JSON.parse(readFileSync(file, 'utf8')) as Partial<BhytCodeMap>;
  if (!Array.isArray(raw.rows)) throw new TypeError(`${file}: rows must be a list`);
  raw.rows.forEach((r, i) => {
    if (!r || typeof r.code !== 'string' || !r.code) throw new TypeError(`${file}: rows[${i}].code is required`);
    if (typeof r.MA_DICH_VU !== 'string' || typeof r.MA_CHI_SO !== 'string') throw new TypeError(`${file}: rows[${i}] needs MA_DICH_VU and MA_CHI_SO`);
  });
  return { version: raw.version ?? 1, rows: raw.rows };
}

/**
 * `yyyyMMddHHmm` in UTC+7 (Vietnam has no daylight saving); '' when not a time. A device time without an
 * offset (HL7 TS without +ZZZZ) is already the site's local time: its digits are kept as sent (never read
 * in the gateway process's own time zone); a date alone gives 0000 for the time.
 */
export function ngayKq(iso: string | undefined): string {
  const local = /^(\d{4})-(\d{2})-(\d{2})(?:T(\d{2}):(\d{2})(?::\d{2}(?:\.\d+)?)?)?$/.exec(iso?.trim() ?? '');
  if (local) return `${local[1]}${local[2]}${local[3]}${local[4] ?? '00'}${local[5] ?? '00'}`;
  const t = iso ? Date.parse(iso) : NaN;
  if (Number.isNaN(t)) return '';
  const d = new Date(t + 7 * 3600_000);
  const p = (n: number, w = 2) => String(n).padStart(w, '0');
  return `${p(d.getUTCFullYear(), 4)}${p(d.getUTCMonth() + 1)}${p(d.getUTCDate())}${p(d.getUTCHours())}${p(d.getUTCMinutes())}`;
}

/** The value as the device meant it, as text (comparators, decimals and ranges kept). */
export function giaTri(o: Observation): { value: string; unit: string } {
  const v = o.value;
  if (!v) return { value: '', unit: '' };
  switch (v.kind) {
    case 'quantity':
      return { value: `${v.comparator ?? ''}${v.decimal ?? nmText(v.value)}`, unit: v.unit };
    case 'text':
      return { value: v.text, unit: v.unit ?? '' };
    case 'coded':
      return { value: v.display || v.code, unit: v.unit ?? '' };
    case 'structured-numeric':
      return { value: `${v.comparator ?? ''}${v.num1 ?? ''}${v.separator ?? ''}${v.num2 ?? ''}`, unit: v.unit };
    case 'encapsulated':
      return { value: `[${v.typeOfData}${v.dataSubtype ? `/${v.dataSubtype}` : ''}]`, unit: '' };
    case 'reference':
      return { value: v.pointer, unit: '' };
  }
}

function mapRow(o: Observation, map: BhytCodeMap): BhytCodeMapRow | undefined {
  const codes = [o.localCode, o.code, ...(o.codings ?? [])].filter((c): c is NonNullable<typeof c> => !!c);
  return map.rows.find((r) => (!r.deviceId || r.deviceId === o.deviceId) && codes.some((c) => c.code === r.code && (!r.system || r.system === c.system)));
}

const CLAIMABLE = new Set(['F', 'C', 'U', 'A']); // A: amended (v2.6+, tolerated by the parser), as C
const statusLetter = (o: Observation) => o.statusCode ?? ({ final: 'F', corrected: 'C', amended: 'C' } as Record<string, string>)[o.status] ?? '';

/**
 * Rows for observations given oldest first. A correction replaces the earlier row of the same result.
 */
export function xml4Rows(observations: Observation[], map: BhytCodeMap): Xml4Row[] {
  const byKey = new Map<string, Xml4Row>();
  // per key, the rows of the earlier runs under the latest one: a withdrawal of the latest gives the row back
  const earlier = new Map<string, Xml4Row[]>();
  let anon = 0;
  for (const o of observations) {
    if ((o.processingId ?? 'P') !== 'P') continue;
    const letter = statusLetter(o);
    // Table 0085 D (delete) / W (wrong): the result sent before is withdrawn, so is its claim row
    if (letter === 'D' || letter === 'W' || o.status === 'entered-in-error') {
      const k = resultKey(o);
      if (k) {
        byKey.delete(k);
        const prev = earlier.get(k)?.pop();
        if (prev) byKey.set(k, prev);
      }
      continue;
    }
    if (!CLAIMABLE.has(letter)) continue;
    const m = mapRow(o, map);
    const { value, unit } = giaTri(o);
    const row: Xml4Row = {
      MA_LK: o.order?.visitNumber ?? '',
      STT: 0,
      MA_DICH_VU: m?.MA_DICH_VU ?? '',
      MA_CHI_SO: m?.MA_CHI_SO ?? '',
      TEN_CHI_SO: m?.TEN_CHI_SO ?? o.code.display ?? o.localCode?.display ?? o.code.code,
      GIA_TRI: value,
      DON_VI_DO: unit,
      MO_TA: '',
      KET_LUAN: '',
      NGAY_KQ: ngayKq(o.effectiveAt ?? o.receivedAt),
      MA_BS_DOC_KQ: '',
      DU_PHONG: '',
      MA_MAY: o.equipment?.machineCode ?? '',
    };
    const key = resultKey(o) ?? `#${++anon}`;
    const before = byKey.get(key);
    // a rerun (F, U) keeps the row it follows underneath; a correction (C, A) replaces the latest one
    if (before && (letter === 'F' || letter === 'U')) earlier.set(key, [...(earlier.get(key) ?? []), before]);
    byKey.delete(key); // a later result of the same key takes the later place
    byKey.set(key, row);
  }
  return [...byKey.values()].map((r, i) => ({ ...r, STT: i + 1 }));
}

function csvCell(v: string | number): string {
  const s = String(v);
  // RFC 4180 quoting; a leading = + - @ is prefixed with ' so a spreadsheet does not run it as a formula
  // (OWASP CSV injection); only a plain signed number (-2.5) is left as it is: `-2+3+cmd|...` is a formula
  const safe = /^[=+\-@\t\r]/.test(s) && !/^[+-]?(?:\d+(?:\.\d*)?|\.\d+)$/.test(s) ? `'${s}` : s;
  return /[",\r\n]/.test(safe) ? `"${safe.replace(/"/g, '""')}"` : safe;
}

/** CSV (RFC 4180, CRLF, UTF-8 with BOM so spreadsheet programs read the Vietnamese text). */
export function toCsv(rows: Xml4Row[]): string {
  const lines = [XML4_FIELDS.join(','), ...rows.map((r) => XML4_FIELDS.map((f) => csvCell(r[f])).join(','))];
  return `\uFEFF${lines.join('\r\n')}\r\n`;
}

const xmlEscape = (s: string) => s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&apos;' })[c]!).replace(/[\x00-\x08\x0b\x0c\x0e-\x1f]/g, '');

/** XML4 table: CHITIEU_CHITIET_DICHVUCANLAMSANG / DSACH_CHI_TIET_CLS / CHI_TIET_CLS, UTF-8, plus MA_MAY per row. */
export function toXml4(rows: Xml4Row[]): string {
  const out = ['<?xml version="1.0" encoding="utf-8"?>', '<CHITIEU_CHITIET_DICHVUCANLAMSANG>', '<DSACH_CHI_TIET_CLS>'];
  for (const r of rows) {
    out.push('<CHI_TIET_CLS>');
    for (const f of XML4_FIELDS) out.push(`<${f}>${xmlEscape(String(r[f]))}</${f}>`);
    out.push('</CHI_TIET_CLS>');
  }
  out.push('</DSACH_CHI_TIET_CLS>', '</CHITIEU_CHITIET_DICHVUCANLAMSANG>');
  return out.join('\n') + '\n';
}
