/**
 * The serialport library (bindings-cpp unix-write) can leave a rejected write promise unhandled when
 * a USB serial adapter is pulled out in the middle of a write (EIO from write(2) on the dead tty;
 * seen once in CI during the unplug test). On Node 20 an unhandled rejection ends the process. The
 * driver already sees the port go away (read error / presence check) and reopens it, so that one
 * rejection carries no information; everything else still ends the process (fail fast on bugs).
 */
import { componentLogger } from './logger';

const DEVICE_GONE_CODES = new Set(['EIO', 'ENXIO', 'EBADF', 'ENODEV']);

/** A read/write system-call error of a device that went away (no stack frames of ours to lose). */
export function isDeviceIoError(reason: unknown): boolean {
  if (!(reason instanceof Error)) return false;
  const e = reason as NodeJS.ErrnoException;
  return typeof e.code === 'string' && DEVICE_GONE_CODES.has(e.code) && (e.syscall === 'write' || e.syscall === 'read');
}

let installed = false;

/** Install once per process (the `run` and `demo` commands). */
export function installDeviceIoGuard(): void {
  if (installed) return;
  installed = true;
  const log = componentLogger('process');
  process.on('unhandledRejection', (reason) => {
    if (isDeviceIoError(reason)) {
      const e = reason as NodeJS.ErrnoException;
      log.warn({ code: e.code, syscall: e.syscall }, 'I/O error of a device port that went away (unhandled in the serial library): ignored, the driver reopens the port');
      return;
    }
    throw reason; // as without this handler: the process ends with the error
  });
}
