/**
 * The properties every fuzz input must keep (issue 10 part 8), shared by the generated runs
 * (parsers.fuzz.test.ts) and the replay of kept failing inputs (cases.test.ts). Each check throws an
 * Error naming what broke; it returns normally when the input is handled as the contract says.
 */
import { ManualClock } from '../../drivers/astm/link-clock';
import { AstmLink } from '../../drivers/astm/link';
import { ETB, ETX, STX, encodeFrame, isRestricted, parseFrame } from '../../drivers/astm/frame';
import { parseRecords } from '../../drivers/astm/records';
import { parseAstmMessage } from '../../drivers/astm/results-parser';
import { buildAck, parseAck } from '../../drivers/hl7-mllp/ack';
import { parseHl7, readHeader } from '../../drivers/hl7-mllp/hl7-message';
import { contentHash } from '../../drivers/hl7-mllp/hl7-receiver';
import { prepareHl7, reviveHl7Error, serializeHl7Error, type Hl7PrepareOptions } from '../../drivers/hl7-mllp/hl7-worker-parse';
import { isDeepStrictEqual } from 'node:util';
import { MllpDecoder, type MllpEvent } from '../../drivers/hl7-mllp/mllp-decoder';
import { isOrderMessage, parseOrders } from '../../drivers/hl7-mllp/order-parser';
import { buildOruR251 } from '../../drivers/hl7-mllp/oru-builder';
import { parseOru } from '../../drivers/hl7-mllp/oru-parser';
import { CHARSET_NAMES, CharsetError, decodeHl7Message, decodeStrict, encodeFor, type CharsetName } from '../../gateway/src/charset/charset';
import { ParseError, UnsupportedMessageError } from '../../gateway/src/contracts/errors';
import type { Observation } from '../../gateway/src/contracts/observation';
import { validateOruR01v251 } from '../helpers/hl7v251-validator';

/** Rethrow anything that is not one of the allowed error classes. */
function only(e: unknown, ...allowed: Array<new (...a: never[]) => Error>): void {
  if (allowed.some((c) => e instanceof c)) return;
  throw new Error(`unexpected ${e instanceof Error ? `${e.constructor.name}: ${e.message}` : String(e)}`, { cause: e });
}

const RECEIVED_AT = '2024-01-01T12:00:00.000Z';

/**
 * Validator findings already reported to their owner and kept as a pending case (cases/*.json with
 * `pending`, replayed expecting `pendingError`, so the case turns red once fixed). Only these are tolerated here,
 * so the fuzzer keeps looking for new faults.
 */
const KNOWN: RegExp[] = []; // the three findings kept as cases (DT/TS forms, OBR-1 without a PID, Table 0396) are fixed

/**
 * HL7: parseHl7 (lenient and strict), parseOru (lenient and strict) or parseOrders, the ACK round trip
 * and buildOruR251 of the results. Only ParseError / UnsupportedMessageError may be thrown; a built
 * ORU^R01 must pass the v2.5.1 validator; the ACK must echo MSH-10.
 */
export function checkHl7(text: string): void {
  checkHl7With(text, KNOWN);
}

/** checkHl7 without tolerating the KNOWN findings (the replay of pending cases). */
export function checkHl7Strict(text: string): void {
  checkHl7With(text, []);
}

function checkHl7With(text: string, known: RegExp[]): void {
  contentHash(text);
  for (const lenient of [true, false]) {
    let msg;
    try {
      msg = parseHl7(text, { lenient });
    } catch (e) {
      only(e, ParseError);
      continue;
    }
    let header;
    try {
      header = readHeader(msg);
    } catch (e) {
      only(e, ParseError);
      continue;
    }
    const ack = buildAck({ request: header, code: 'AE', controlId: 'GW-ACK-1', error: { location: 'PID^1^3', hl7Code: 102, text: 'fuzz' } });
    const parsedAck = parseAck(ack);
    if (parsedAck.controlId !== header.controlId) {
      // MSA-2 is MSH-10 escaped (HL7 v2.5.1 2.7) and read back: it must come back as sent
      throw new Error(`ACK MSA-2 ${JSON.stringify(parsedAck.controlId)} is not MSH-10 ${JSON.stringify(header.controlId)}`);
    }
    if (isOrderMessage(header)) {
      try {
        parseOrders(msg);
      } catch (e) {
        only(e, ParseError, UnsupportedMessageError);
      }
      continue;
    }
    for (const strict of [false, true]) {
      let r;
      try {
        r = parseOru(msg, { strict });
      } catch (e) {
        only(e, ParseError, UnsupportedMessageError);
        continue;
      }
      if (!r.drafts.length) continue;
      const obs = r.drafts.map((d, i) => ({ ...d, id: `F${i + 1}`, messageId: 1, messageUid: 'FUZZ', seq: i + 1, deviceId: 'fuzz', driver: 'hl7-mllp', receivedAt: RECEIVED_AT }) as Observation);
      const out = buildOruR251(obs, { controlId: 'GW-1', sendingApp: 'IOMT-GW', sendingFacility: 'FUZZ', receivingApp: 'HIS', country: 'VNM', charset: 'UNICODE UTF-8', now: new Date(RECEIVED_AT) });
      const problems = validateOruR01v251(out).filter((p) => !known.some((k) => k.test(p)));
      if (problems.length) throw new Error(`built ORU^R01 is not valid v2.5.1: ${problems.slice(0, 5).join('; ')}`);
    }
  }
}

/** MLLP: the events of the stream pushed whole equal those of the same bytes in the given chunks. */
export function checkMllp(stream: Buffer, cuts: number[]): void {
  const summary = (evs: MllpEvent[]) =>
    evs.map((e) => (e.type === 'frame' ? `frame:${e.payload.toString('hex')}` : e.type === 'oversize' ? 'oversize' /* its byte count is what had arrived when refused: chunk-dependent by design */ : `junk:${e.reason}:${e.bytes}`)).join(',');
  const whole = new MllpDecoder({ maxBytes: 4096 });
  const a = [...whole.push(stream), ...whole.end()];
  const chunked = new MllpDecoder({ maxBytes: 4096 });
  const b: MllpEvent[] = [];
  let from = 0;
  for (const c of [...cuts.filter((x) => x > 0 && x < stream.length).sort((x, y) => x - y), stream.length]) {
    b.push(...chunked.push(stream.subarray(from, c)));
    from = c;
  }
  b.push(...chunked.end());
  // junk runs may be reported at different points, but frames and their order never differ
  const frames = (evs: MllpEvent[]) => summary(evs.filter((e) => e.type !== 'junk'));
  if (frames(a) !== frames(b)) throw new Error(`chunking changed the frames: ${frames(a)} vs ${frames(b)}`);
  const junkBytes = (evs: MllpEvent[]) => evs.reduce((n, e) => n + (e.type === 'junk' ? e.bytes : 0), 0);
  if (junkBytes(a) !== junkBytes(b)) throw new Error(`chunking changed the refused byte count: ${junkBytes(a)} vs ${junkBytes(b)}`);
}

/** ASTM frame: parseFrame never throws; an encoded frame parses back to its text. */
export function checkAstmFrame(bytes: Buffer): void {
  parseFrame(bytes);
  parseFrame(bytes, { noChecksum: true });
  parseFrame(bytes, { missingLfTolerated: true, crlfRecordTerminator: true });
  // E1381 / LIS01 §1.2: any text without restricted characters goes into a frame and comes back unchanged
  const text = Buffer.from(bytes.filter((b) => !isRestricted(b) && b !== STX && b !== ETX && b !== ETB));
  const f = parseFrame(encodeFrame(3, text, true));
  if (!f.ok) throw new Error(`an encoded frame did not parse: ${f.reason}`);
  if (!f.text.equals(text)) throw new Error('an encoded frame parsed to other text');
}

/** ASTM link: any bytes, any split, never throw and always drain (no hang), with and without timers firing. */
export async function checkAstmLink(chunks: Buffer[]): Promise<void> {
  const clock = new ManualClock();
  const link = new AstmLink({ write: () => undefined, onMessage: async () => undefined, onDiscard: () => undefined, onEvent: () => undefined }, {}, clock);
  for (const c of chunks) {
    link.onBytes(c);
    clock.advance(50);
  }
  let timer: NodeJS.Timeout | undefined;
  const hang = new Promise<never>((_r, reject) => {
    timer = setTimeout(() => reject(new Error('the link did not drain within 2 s')), 2_000);
  });
  try {
    await Promise.race([link.drain(), hang]);
    clock.advance(60_000);
    await Promise.race([link.drain(), hang]);
  } finally {
    clearTimeout(timer);
    link.close();
  }
}

/** ASTM records + results: only ParseError. */
export function checkAstmRecords(text: string): void {
  let msg;
  try {
    msg = parseRecords(text.split(/\r\n|\r|\n/));
  } catch (e) {
    only(e, ParseError);
    return;
  }
  try {
    parseAstmMessage(msg);
  } catch (e) {
    only(e, ParseError);
  }
}

/** Charsets: decode gives text or a CharsetError, never anything else; what decodes strictly re-encodes to a CharsetError or bytes. */
export function checkCharset(bytes: Buffer, charset: CharsetName): void {
  try {
    decodeHl7Message(bytes, { listenerCharset: charset });
  } catch (e) {
    only(e, CharsetError);
  }
  let text: string;
  try {
    text = decodeStrict(bytes, charset);
  } catch (e) {
    only(e, CharsetError);
    return;
  }
  if (text !== text.normalize('NFC') && !/\p{M}{31,}/u.test(text)) throw new Error('decoded text is not NFC');
  try {
    encodeFor(text, charset);
  } catch (e) {
    only(e, CharsetError);
  }
}

export { CHARSET_NAMES };

/**
 * The worker boundary (issue 10 §1, drivers/hl7-mllp/hl7-worker-pool.ts): prepareHl7 never throws; its
 * result survives the structured clone postMessage uses unchanged, and a failure revived on the main
 * thread has the class and fields the inline path would have thrown (so the ACK is the same).
 */
export function checkHl7Transport(bytes: Buffer, opts: Hl7PrepareOptions = {}): void {
  const r = prepareHl7(bytes, opts);
  if (r.ok) {
    const back = structuredClone(r);
    if (!isDeepStrictEqual(back, r)) throw new Error('prepareHl7 result changed across a structured clone');
    return;
  }
  only(r.error, ParseError, UnsupportedMessageError, CharsetError);
  const revived = reviveHl7Error(structuredClone(serializeHl7Error(r.error))) as Error & Record<string, unknown>;
  const e = r.error as Error & Record<string, unknown>;
  for (const k of ['message', 'code', 'location', 'hl7ErrorCode', 'charset', 'offset', 'reason', 'name']) {
    if (revived[k] !== e[k]) throw new Error(`revived ${e.constructor.name}.${k} ${JSON.stringify(revived[k])} is not ${JSON.stringify(e[k])}`);
  }
  if (revived.constructor !== e.constructor) throw new Error(`revived as ${revived.constructor.name}, thrown as ${e.constructor.name}`);
  if (structuredClone(r.header) && !isDeepStrictEqual(structuredClone(r.header), r.header)) throw new Error('header changed across a structured clone');
}
