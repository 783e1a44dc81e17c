/**
 * ListenerGuard (issue 10 §2/§3): allow-list parsing and matching, log lines bounded per address and
 * interval. Socket behaviour end to end: drivers/hl7-mllp/mllp-guard.test.ts, drivers/astm/transport.
 */
import type net from 'node:net';
import type { Logger } from 'pino';
import { describe, expect, it } from 'vitest';
import { metrics } from '../metrics/registry';
import { ListenerGuard, addressOfRemote, isAllowed, normalizeAddress, parseAllowList } from './listener-guard';

describe('allow-list', () => {
  it.each([
    // [list, address, allowed]
    ['10.0.0.0/8', '10.20.30.40', true],
    ['10.0.0.0/8', '11.0.0.1', false],
    ['192.168.1.20', '192.168.1.20', true],
    ['192.168.1.20', '192.168.1.21', false],
    ['192.168.1.20', '::ffff:192.168.1.20', true], // IPv4-mapped IPv6 (dual-stack listener)
    ['192.168.1.0/24', '::ffff:192.168.1.99', true],
    ['192.168.1.0/24', '::FFFF:192.168.2.1', false],
    ['::1', '::1', true],
    ['::1', '127.0.0.1', false],
    ['fd00::/8', 'fd12:3456::1', true],
    ['fd00::/8', 'fe80::1', false],
    ['fe80::/10', 'fe80::1%eth0', true], // zone id ignored
    ['10.0.0.1, 10.0.0.2;10.0.0.3 10.0.0.4', '10.0.0.3', true],
    ['10.0.0.1, 10.0.0.2;10.0.0.3 10.0.0.4', '10.0.0.5', false],
    ['0.0.0.0/0', '8.8.8.8', true],
    ['10.0.0.0/8', '', false],
    ['10.0.0.0/8', 'not-an-address', false],
  ])('%s allows %s: %s', (list, address, allowed) => {
    expect(isAllowed(parseAllowList(list), address)).toBe(allowed);
  });

  it('empty or blank: everyone', () => {
    for (const e of ['', '  ', undefined, [], [' , ']]) {
      expect(parseAllowList(e as string)).toBeUndefined();
      expect(isAllowed(parseAllowList(e as string), '203.0.113.9')).toBe(true);
    }
  });

  it.each(['host.example', '10.0.0.0/33', 'fd00::/129', '10.0.0.1/8/2', '10.0.0.0/x', '300.1.1.1'])('%s is refused with its name', (bad) => {
    expect(() => parseAllowList(`127.0.0.1, ${bad}`)).toThrow(new RegExp(bad.replace(/[.*/]/g, '\\$&')));
  });

  it.each([
    ['10.0.0.5:40122', '10.0.0.5'],
    ['::ffff:10.0.0.5:40122', '::ffff:10.0.0.5'],
    ['::1:40122', '::1'],
    ['[fd00::7]:5000', 'fd00::7'],
  ])('the address of remote %s is %s', (remote, address) => {
    expect(addressOfRemote(remote)).toBe(address);
  });

  it('normalizes only IPv4-mapped addresses', () => {
    expect(normalizeAddress('::ffff:10.1.2.3')).toBe('10.1.2.3');
    expect(normalizeAddress('::ffff:a01:203')).toBe('::ffff:a01:203');
    expect(normalizeAddress('2001:db8::1')).toBe('2001:db8::1');
  });
});

/** A socket stand-in: the guard only reads remoteAddress and calls destroy(). */
function fakeSocket(remoteAddress: string): net.Socket & { destroyedByGuard: boolean } {
  const s = { remoteAddress, destroyedByGuard: false, destroy() { s.destroyedByGuard = true; } };
  return s as unknown as net.Socket & { destroyedByGuard: boolean };
}

function captureLog(): { log: Logger; lines: Array<Record<string, unknown>> } {
  const lines: Array<Record<string, unknown>> = [];
  const log = { warn: (o: Record<string, unknown>, msg: string) => lines.push({ ...o, msg }) } as unknown as Logger;
  return { log, lines };
}

describe('ListenerGuard log lines', () => {
  it('1000 refusals from 3 addresses: 3 lines per interval; the next line carries the count since', () => {
    const { log, lines } = captureLog();
    const g = new ListenerGuard({ listener: 'log-test', maxConnections: 10, allowFrom: '10.0.0.0/8', logIntervalMs: 60_000, log });
    const socks = Array.from({ length: 1000 }, (_, i) => fakeSocket(`192.0.2.${1 + (i % 3)}`));
    for (const s of socks) expect(g.admit(s)).toBeUndefined();
    expect(socks.every((s) => s.destroyedByGuard)).toBe(true);
    expect(metrics.listenerRefused.get({ listener: 'log-test', reason: 'not-allowed' })).toBe(1000);
    expect(lines).toHaveLength(3);
    expect(lines.map((l) => l.remote).sort()).toEqual(['192.0.2.1', '192.0.2.2', '192.0.2.3']);
  });

  it('after the interval one more line per address, with the events not logged meanwhile', async () => {
    const { log, lines } = captureLog();
    const g = new ListenerGuard({ listener: 'log-test-2', maxConnections: 10, allowFrom: '10.0.0.1', logIntervalMs: 50, log });
    for (let i = 0; i < 10; i++) g.admit(fakeSocket('192.0.2.7'));
    await new Promise((r) => setTimeout(r, 70));
    g.admit(fakeSocket('192.0.2.7'));
    expect(lines).toHaveLength(2);
    expect(lines[1].sinceLastLog).toBe(9);
  });

  it('per-address and full: refusal reasons counted apart; eviction frees the slot of the idle-longest', () => {
    const { log } = captureLog();
    const g = new ListenerGuard({ listener: 'log-test-3', maxConnections: 3, maxPerAddress: 2, firstFrameTimeoutMs: 0, log });
    const a1 = g.admit(fakeSocket('10.0.0.1'))!;
    const a2 = g.admit(fakeSocket('10.0.0.1'))!;
    expect(g.admit(fakeSocket('10.0.0.1'))).toBeUndefined();
    expect(metrics.listenerRefused.get({ listener: 'log-test-3', reason: 'per-address' })).toBe(1);
    a1.frame();
    a2.busy = true;
    const b1 = g.admit(fakeSocket('10.0.0.2'))!;
    b1.busy = true;
    // full: a1 is the only one not busy → evicted
    const c1Sock = fakeSocket('10.0.0.3');
    expect(g.admit(c1Sock)).toBeDefined();
    expect(metrics.listenerEvicted.get({ listener: 'log-test-3', reason: 'idle-longest' })).toBe(1);
    expect(g.size).toBe(3);
    // all remaining are busy or newer... make them all busy: a new one is refused 'full'
    for (const s of [a2, b1]) s.busy = true;
    const g2 = new ListenerGuard({ listener: 'log-test-4', maxConnections: 1, firstFrameTimeoutMs: 0, log });
    g2.admit(fakeSocket('10.0.0.1'))!.busy = true;
    expect(g2.admit(fakeSocket('10.0.0.2'))).toBeUndefined();
    expect(metrics.listenerRefused.get({ listener: 'log-test-4', reason: 'full' })).toBe(1);
  });
});
