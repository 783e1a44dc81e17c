/**
 * HL7 acknowledgements, original mode (HL7 v2.5.1 2.9.2 / 2.10.3, protocols.md §3.3).
 * Enhanced mode (MSH-15/16 → separate commit ACK CA/CE/CR then application ACK) is not implemented:
 * we always answer with one application ACK, which is what IHE PCD-01 senders with MSH-15 NE /
 * MSH-16 AL expect.
 */
import { ParseError } from '../../gateway/src/contracts/errors';
import { escapeHl7, formatHl7Timestamp, parseHl7, type Hl7Header } from './hl7-message';

export type AckCode = 'AA' | 'AE' | 'AR' | 'CA' | 'CE' | 'CR';

/** HL7 Table 0357 message error condition codes (v2.5.1) → text for ERR-3.2. */
export const HL7_ERROR_TEXT: Record<number, string> = {
  0: 'Message accepted',
  100: 'Segment sequence error',
  101: 'Required field missing',
  102: 'Data type error',
  103: 'Table value not found',
  104: 'Value too long',
  200: 'Unsupported message type',
  201: 'Unsupported event code',
  202: 'Unsupported processing id',
  203: 'Unsupported version id',
  204: 'Unknown key identifier',
  205: 'Duplicate key identifier',
  206: 'Application record locked',
  207: 'Application internal error',
};

export interface AckOptions {
  /** Header of the message being acknowledged; undefined when it could not be parsed at all (MSA-2 empty). */
  request?: Hl7Header;
  code: AckCode;
  error?: { location?: string; hl7Code: number; text: string };
  /** MSH-10 of the ACK itself (new id, HL7 v2.5.1 2.14.9.10). */
  controlId: string;
  /** MSH-3/MSH-4 of the ACK (us). Default: the receiving app/facility the request addressed. */
  sendingApp?: string;
  sendingFacility?: string;
  now?: Date;
}

/** Build an original-mode ACK as text (segments separated by CR, no MLLP framing). */
export function buildAck(o: AckOptions): string {
  const r = o.request;
  const sendingApp = o.sendingApp ?? (r?.receivingApp || 'IOMT-GW');
  const sendingFacility = o.sendingFacility ?? (r?.receivingFacility || '');
  const trigger = r?.trigger ?? '';
  const segs: string[] = [];
  // MSH: swap sender/receiver (2.9.2.2), MSH-9 ACK^<trigger>^ACK, new MSH-10, echo MSH-11 / MSH-12
  segs.push(
    [
      'MSH',
      '^~\\&',
      sendingApp,
      sendingFacility,
      r?.sendingApp ?? '',
      r?.sendingFacility ?? '',
      formatHl7Timestamp(o.now ?? new Date()),
      '',
      trigger ? `ACK^${escapeHl7(trigger)}^ACK` : 'ACK',
      escapeHl7(o.controlId),
      escapeHl7(r?.processingId || 'P'),
      escapeHl7(r?.version || '2.5.1'),
    ].join('|'),
  );
  // MSA-1 ack code, MSA-2 control id of the request (2.14.8); MSA-3 text kept for v2.3/2.4 peers
  const msa = ['MSA', o.code, escapeHl7(r?.controlId ?? '')];
  if (o.error && o.code !== 'AA' && o.code !== 'CA') msa.push(escapeHl7(o.error.text));
  segs.push(msa.join('|'));
  if (o.error && o.code !== 'AA' && o.code !== 'CA') {
    // ERR (v2.5.1 2.14.5): 2 location ERL SEG^seq^field, 3 code CWE code^text^HL70357, 4 severity E, 8 user message
    const loc = (o.error.location ?? '').split('^').map((x) => escapeHl7(x)).join('^');
    const codeText = HL7_ERROR_TEXT[o.error.hl7Code] ?? '';
    segs.push(['ERR', '', loc, `${o.error.hl7Code}^${escapeHl7(codeText)}^HL70357`, 'E', '', '', '', escapeHl7(o.error.text)].join('|'));
  }
  return segs.join('\r');
}

export interface ParsedAck {
  code: string; // MSA-1
  controlId: string; // MSA-2: the MSH-10 being acknowledged
  errorText?: string; // ERR-8, else MSA-3, else ERR-3.2
  hl7ErrorCode?: number; // ERR-3.1
  location?: string; // ERR-2
}

/** Parse an ACK (client side). Throws ParseError when there is no MSA. */
export function parseAck(input: Buffer | string): ParsedAck {
  const text = typeof input === 'string' ? input : input.toString('utf8');
  const msg = parseHl7(text);
  const msa = msg.segment('MSA');
  if (!msa) throw new ParseError('ACK has no MSA segment', { location: 'MSA^1', hl7ErrorCode: 100 });
  const out: ParsedAck = { code: msa.get(1), controlId: msa.get(2) };
  const err = msg.segment('ERR');
  const text8 = err?.get(8) || msa.get(3) || err?.get(3, 2) || '';
  if (text8) out.errorText = text8;
  if (err) {
    const c = Number(err.get(3, 1));
    if (err.get(3, 1) !== '' && Number.isFinite(c)) out.hl7ErrorCode = c;
    const loc = err.raw(2);
    if (loc) out.location = loc;
  }
  return out;
}
