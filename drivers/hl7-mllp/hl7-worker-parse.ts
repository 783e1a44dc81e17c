/**
 * The CPU part of receiving one HL7 v2 message, shared by the inline path (small messages, in
 * hl7-receiver.ts) and the parse worker (large ones, hl7-parse-worker.ts): decode the bytes
 * (MSH-18, HL7 v2.5.1 2.15.9.18), parse (linear, Hl7Limits), build the results (parseOru) or
 * orders (parseOrders), and the de-duplication hash. Both paths call this one function, so a
 * message gives the same observations, flags and errors whichever path took it (issue 10 §1).
 *
 * Pure: no logger, no metrics, no I/O; importable in a worker thread.
 */
import { createHash } from 'node:crypto';
import { CharsetError, decodeHl7Message, type CharsetErrorReason, type CharsetName } from '../../gateway/src/charset/charset';
import { GatewayError, ParseError, UnsupportedMessageError } from '../../gateway/src/contracts/errors';
import { parseHl7, peekHeader, readHeader, type Hl7Header, type Hl7Limits } from './hl7-message';
import { isOrderMessage, parseOrders, type OrderParseResult } from './order-parser';
import { parseOru, type OruParseResult } from './oru-parser';

/** What the receiver's options say about parsing (plain data: it crosses to the worker). */
export interface Hl7PrepareOptions {
  charset?: CharsetName;
  fallbackCharset?: CharsetName;
  strict?: boolean;
  defaultResultStatus?: string;
  /** Orders (ORM^O01 / OML^O21) go to parseOrders only when the receiver has an order acceptor. */
  orders?: boolean;
  limits?: Partial<Hl7Limits>;
}

export interface Hl7Decoded {
  charset: CharsetName;
  declared: string;
  usedFallback: boolean;
  /** contentHash of the decoded text (the text itself is not kept: an 8 MB string is not copied back). */
  hash: string;
}

export type Hl7Prepared =
  | ({ ok: true; oru: OruParseResult } & Hl7Decoded)
  | ({ ok: true; orders: OrderParseResult } & Hl7Decoded)
  | { ok: false; error: Error; header: Hl7Header | undefined };

/** Decode + parse one message. Never throws: a failure is `{ ok: false, error, header }` (header peeked for the ACK's MSA). */
export function prepareHl7(raw: Buffer, opts: Hl7PrepareOptions): Hl7Prepared {
  let decoded: ReturnType<typeof decodeHl7Message>;
  try {
    // MSH-18 (HL7 v2.5.1 2.15.9.18, Table 0211) first, the listener charset when empty; invalid
    // bytes never become U+FFFD silently: the fallback charset, or quarantine + AE
    decoded = decodeHl7Message(raw, { listenerCharset: opts.charset ?? 'utf8', fallback: opts.fallbackCharset });
  } catch (e) {
    return { ok: false, error: asError(e), header: peekHeader(raw.subarray(0, 65536).toString('latin1')) };
  }
  const text = decoded.text;
  try {
    const msg = parseHl7(text, { lenient: !opts.strict, ...(opts.limits ? { limits: opts.limits } : {}) });
    const d: Hl7Decoded = { charset: decoded.charset, declared: decoded.declared, usedFallback: decoded.usedFallback, hash: contentHash(text) };
    // ORM^O01 / OML^O21 only when an order acceptor is configured; otherwise parseOru answers AR 200
    if (opts.orders && isOrderMessage(readHeader(msg))) return { ok: true, orders: parseOrders(msg), ...d };
    return { ok: true, oru: parseOru(msg, { strict: opts.strict, defaultResultStatus: opts.defaultResultStatus }), ...d };
  } catch (e) {
    return { ok: false, error: asError(e), header: peekHeader(text) };
  }
}

/**
 * "Same content" for de-duplication (docs/result-fidelity.md): SHA-256 of the decoded message with
 * MSH-7 (date/time of message, HL7 v2.5.1 2.15.9.7) blanked and trailing segment terminators removed.
 * A device that re-sends after a lost ACK may restamp MSH-7 and MLLP senders differ on the final CR;
 * neither makes it another message. Everything else counts, results and MSH-10 included.
 */
export function contentHash(text: string): string {
  let end = text.length;
  while (end > 0 && (text.charCodeAt(end - 1) === 13 || text.charCodeAt(end - 1) === 10)) end--; // not /[\r\n]+$/: quadratic on a run of CRs (issue 10)
  const fs = text[3];
  const eol = text.slice(0, end).search(/[\r\n]/);
  const first = eol === -1 ? text.slice(0, end) : text.slice(0, eol);
  const h = createHash('sha256');
  if (first.startsWith('MSH') && fs) {
    const parts = first.split(fs);
    if (parts.length > 6) parts[6] = ''; // parts[0] MSH, [1] MSH-2, … [6] MSH-7
    h.update(parts.join(fs), 'utf8');
    if (eol !== -1) h.update(text.slice(eol, end), 'utf8'); // hashed in two parts: the same digest, no joined copy
  } else h.update(text.slice(0, end), 'utf8');
  return h.digest('hex');
}

/** Message size, segment and delimiter counts from which the receiver parses in the worker pool. */
export interface Hl7WorkerThreshold {
  /** Bytes (default 65536: ~30 ms of parsing on a slow core). */
  minBytes: number;
  /** Segment terminators (CR) in the raw bytes (default 1000). */
  minSegments: number;
  /**
   * Delimiters (CR and the MSH-1/MSH-2 characters) in the raw bytes (default 16000): parse time grows
   * with them, so 20,000 repetitions in a 40 KB message go to the worker like a large message.
   */
  minDelimiters: number;
}

export const DEFAULT_HL7_WORKER_THRESHOLD: Hl7WorkerThreshold = { minBytes: 64 * 1024, minSegments: 1000, minDelimiters: 16_000 };

/** True when `raw` is large enough to be parsed off the main thread (one pass over at most minBytes bytes). */
export function isLargeHl7(raw: Buffer, t: Hl7WorkerThreshold): boolean {
  if (raw.length >= t.minBytes) return true;
  // MSH-1 field separator and MSH-2 encoding characters (HL7 v2.5.1 2.15.9.1-2); defaults if absent
  const start = raw.indexOf('MSH');
  const enc = start >= 0 && raw.length >= start + 8 ? raw.subarray(start + 3, start + 8) : Buffer.from('|^~\\&');
  const isDelim = new Uint8Array(256);
  for (const b of enc) isDelim[b] = 1;
  isDelim[13] = 2;
  let segments = 0;
  let delimiters = 0;
  for (let i = 0; i < raw.length; i++) {
    const d = isDelim[raw[i]];
    if (d === 0) continue;
    if (++delimiters >= t.minDelimiters) return true;
    if (d === 2 && ++segments >= t.minSegments) return true;
  }
  return false;
}

// ---- errors across the thread boundary (structured clone keeps neither classes nor own fields reliably) ----

export interface SerializedHl7Error {
  cls: 'charset' | 'parse' | 'unsupported' | 'gateway' | 'error';
  message: string;
  code?: string;
  location?: string;
  hl7ErrorCode?: number;
  charset?: string;
  offset?: number;
  reason?: CharsetErrorReason;
}

export function serializeHl7Error(e: Error): SerializedHl7Error {
  if (e instanceof CharsetError) return { cls: 'charset', message: e.message, charset: e.charset, offset: e.offset, reason: e.reason };
  if (e instanceof UnsupportedMessageError) return { cls: 'unsupported', message: e.message, hl7ErrorCode: e.hl7ErrorCode };
  if (e instanceof ParseError) return { cls: 'parse', message: e.message, code: e.code, location: e.location, hl7ErrorCode: e.hl7ErrorCode };
  if (e instanceof GatewayError) return { cls: 'gateway', message: e.message, code: e.code };
  return { cls: 'error', message: e.message };
}

/** The same class and fields as the error the inline path would have thrown. */
export function reviveHl7Error(s: SerializedHl7Error): Error {
  switch (s.cls) {
    case 'charset':
      return new CharsetError(s.message, { charset: s.charset ?? '', offset: s.offset, reason: s.reason as CharsetErrorReason });
    case 'unsupported':
      return new UnsupportedMessageError(s.message, s.hl7ErrorCode);
    case 'parse':
      return new ParseError(s.message, { location: s.location, hl7ErrorCode: s.hl7ErrorCode, code: s.code });
    case 'gateway':
      return new GatewayError(s.code ?? 'GW_ERR_INTERNAL', s.message);
    default:
      return new Error(s.message);
  }
}

function asError(e: unknown): Error {
  return e instanceof Error ? e : new Error(String(e));
}
