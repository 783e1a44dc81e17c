import { describe, expect, it } from 'vitest';
import { isDeviceIoError } from './device-io-guard';

const errno = (code: string, syscall: string) => Object.assign(new Error(`${code}: i/o error, ${syscall}`), { errno: -5, code, syscall });

describe('isDeviceIoError (unhandled-rejection guard of the run command)', () => {
  it('matches the read/write errors of a vanished tty', () => {
    expect(isDeviceIoError(errno('EIO', 'write'))).toBe(true);
    expect(isDeviceIoError(errno('ENXIO', 'read'))).toBe(true);
    expect(isDeviceIoError(errno('EBADF', 'write'))).toBe(true);
  });
  it('lets everything else end the process', () => {
    expect(isDeviceIoError(errno('EIO', 'open'))).toBe(false);
    expect(isDeviceIoError(errno('EACCES', 'write'))).toBe(false);
    expect(isDeviceIoError(new TypeError('x is undefined'))).toBe(false);
    expect(isDeviceIoError({ code: 'EIO', syscall: 'write' })).toBe(false); // not an Error
    expect(isDeviceIoError(undefined)).toBe(false);
  });
});
