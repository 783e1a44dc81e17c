import { describe, expect, it } from 'vitest';
import { buildAck, parseAck } from './ack';
import { parseHl7, readHeader } from './hl7-message';

const REQ = readHeader(parseHl7('MSH|^~\\&|ELite 580|Erba|LIS|LAB|20250628173514||ORU^R01|d7e83c08|P|2.3.1'));
const NOW = new Date(Date.UTC(2025, 2, 1, 2, 31, 0));

describe('buildAck (original mode)', () => {
  it('AA: swaps sender/receiver, ACK^R01^ACK, new MSH-10, echoes version/processing id, MSA-2 = request MSH-10', () => {
    const ack = buildAck({ request: REQ, code: 'AA', controlId: 'ACK1', now: NOW });
    const m = parseHl7(ack);
    expect(m.get('MSH', 3)).toBe('LIS');
    expect(m.get('MSH', 4)).toBe('LAB');
    expect(m.get('MSH', 5)).toBe('ELite 580');
    expect(m.get('MSH', 6)).toBe('Erba');
    expect(m.get('MSH', 7)).toMatch(/^\d{14}[+-]\d{4}$/);
    expect(m.segment('MSH')!.raw(9)).toBe('ACK^R01^ACK');
    expect(m.get('MSH', 10)).toBe('ACK1');
    expect(m.get('MSH', 11)).toBe('P');
    expect(m.get('MSH', 12)).toBe('2.3.1');
    expect(ack.split('\r')[1]).toBe('MSA|AA|d7e83c08');
    expect(m.segment('ERR')).toBeUndefined();
    expect(parseAck(ack)).toEqual({ code: 'AA', controlId: 'd7e83c08' });
  });

  it('AE with ERR: location, code^text^HL70357, severity E', () => {
    const ack = buildAck({ request: REQ, code: 'AE', controlId: 'A2', sendingApp: 'GW', sendingFacility: 'H', error: { location: 'OBX^17^5', hl7Code: 102, text: 'OBX^17^5: NM value is not numeric' } });
    const err = parseHl7(ack).segment('ERR')!;
    expect(err.raw(2)).toBe('OBX^17^5');
    expect(err.raw(3)).toBe('102^Data type error^HL70357');
    expect(err.get(4)).toBe('E');
    expect(parseHl7(ack).get('MSH', 3)).toBe('GW');
    expect(parseAck(Buffer.from(ack))).toEqual({ code: 'AE', controlId: 'd7e83c08', errorText: 'OBX^17^5: NM value is not numeric', hl7ErrorCode: 102, location: 'OBX^17^5' });
  });

  it('works without a request (unparseable message): MSA-2 empty', () => {
    const ack = buildAck({ code: 'AE', controlId: 'A3', error: { hl7Code: 104, text: 'too large' } });
    expect(ack).toMatch(/^MSH\|\^~\\&\|IOMT-GW\|/);
    expect(ack.split('\r')[1]).toBe('MSA|AE||too large');
    expect(parseAck(ack)).toMatchObject({ code: 'AE', controlId: '', hl7ErrorCode: 104 });
  });

  it('parseAck rejects a message without MSA', () => {
    expect(() => parseAck('MSH|^~\\&|A')).toThrow(/MSA/);
  });
});
