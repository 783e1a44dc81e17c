/**
 * Serial ports for the editor's port picker. serialport's `SerialPort.list()` runs `udevadm` on
 * Linux, which is missing in minimal images (Docker): then the ports are listed from /dev
 * (/dev/serial/by-id links and the tty names serialport itself accepts), and the reason the first
 * method failed is returned as a warning. Both failing is an error the editor shows.
 */
import { readdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';

export interface SerialPortInfo {
  path: string;
  manufacturer?: string;
  serialNumber?: string;
  vendorId?: string;
  productId?: string;
}

export interface SerialPortListing {
  /** Stable names (/dev/serial/by-id/...): prefer these in flows. */
  stable: string[];
  ports: SerialPortInfo[];
  /** 'serialport' (udev data) or 'dev' (names from /dev only). */
  source: 'serialport' | 'dev';
  /** Why the udev listing was not used, when it was not. */
  warning?: string;
}

// same device name filter as @serialport/bindings-cpp linux-list
const TTY = /^(tty(S|WCH|ACM|USB|AMA|MFD|O|XRUSB)\d+|rfcomm\d+)$/;

export async function listSerialPorts(opts: { list?: () => Promise<SerialPortInfo[]>; devDir?: string } = {}): Promise<SerialPortListing> {
  const devDir = opts.devDir ?? '/dev';
  const byIdDir = join(devDir, 'serial', 'by-id');
  let stable: string[] = [];
  try {
    stable = existsSync(byIdDir) ? readdirSync(byIdDir).sort().map((f) => join(byIdDir, f)) : [];
  } catch {
    stable = [];
  }
  let warning: string;
  try {
    const list = opts.list ?? (async () => (await import('serialport')).SerialPort.list());
    const ports = await list();
    return { stable, ports: ports.map((p) => ({ path: p.path, manufacturer: p.manufacturer, serialNumber: p.serialNumber, vendorId: p.vendorId, productId: p.productId })), source: 'serialport' };
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    warning = err.code === 'ENOENT' ? 'udevadm is not installed: ports listed from /dev without vendor details' : `udev listing failed (${err.message}): ports listed from /dev without vendor details`;
  }
  let names: string[];
  try {
    names = readdirSync(devDir);
  } catch (e) {
    throw new Error(`cannot list serial ports: ${warning}; and ${devDir} is not readable (${(e as Error).message})`);
  }
  return { stable, ports: names.filter((n) => TTY.test(n)).sort().map((n) => ({ path: join(devDir, n) })), source: 'dev', warning };
}
