/**
 * What storage-scp.ts relies on in dcmjs-dimse beyond its typed API (README "dcmjs-dimse: what we
 * override and why"). A new version that changes these fails here before it fails in the field.
 */
import dimse from 'dcmjs-dimse';
import { describe, expect, it } from 'vitest';

describe('dcmjs-dimse internals the SCP uses', () => {
  it('is 0.3.x with Network._processPdu, the store-stream hooks and the lastPduTime/connected fields', () => {
    expect(dimse.version).toMatch(/^0\.3\./);
    const proto = Object.getPrototypeOf(dimse.Scp.prototype) as Record<string, unknown>;
    expect(typeof proto._processPdu).toBe('function');
    expect(typeof dimse.Scp.prototype.createStoreWritableStream).toBe('function');
    expect(typeof dimse.Scp.prototype.createDatasetFromStoreWritableStream).toBe('function');
    // the timeout check reads lastPduTime and connected (Network._wrapSocket); a fake socket shows them
    const { EventEmitter } = require('node:events') as typeof import('node:events');
    const sock = Object.assign(new EventEmitter(), { setTimeout: () => undefined, write: () => true, end: () => undefined, destroy: () => undefined });
    const scp = new dimse.Scp(sock as never, { pduTimeout: 1000 }) as unknown as Record<string, unknown>;
    expect('lastPduTime' in scp && 'connected' in scp && 'timeoutIntervalId' in scp).toBe(true);
    expect(sock.listeners('data')).toHaveLength(1); // the accumulator listener we replace
    clearInterval(scp.timeoutIntervalId as NodeJS.Timeout);
  });
});
