import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createServer } from 'node:net';
import { execFileSync } from 'node:child_process';

/** A fresh temp dir; removed by the returned cleanup. */
export function tempDir(prefix = 'iomt-test-'): { dir: string; cleanup: () => void } {
  const dir = mkdtempSync(join(tmpdir(), prefix));
  return { dir, cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** Ports this process was already given: a test that asks for two ports (HTTP and a device port) must not
 * get the same one twice. */
const given = new Set<number>();

/** Listen on `port` (0: the kernel picks) on 127.0.0.1 and close again: the port, or 0 if it is taken. */
function probe(port: number): Promise<number> {
  return new Promise<number>((resolve) => {
    const s = createServer();
    s.once('error', () => resolve(0));
    s.listen(port, '127.0.0.1', () => {
      const addr = s.address();
      const p = typeof addr === 'object' && addr ? addr.port : 0;
      s.close(() => resolve(p));
    });
  });
}

/**
 * A free TCP port on 127.0.0.1, for a server the test (or a child process) binds a moment later.
 * Taken below the kernel's ephemeral range (32768+), from a slice of 1,500 ports of its own per vitest
 * worker (VITEST_POOL_ID): between this probe and the real bind, no `listen(0)` or outgoing connection
 * anywhere and no other test file running in parallel can be handed the same port (an ephemeral port
 * from `listen(0)` can be re-issued to anyone as soon as it is closed). Falls back to the kernel's pick.
 */
export async function freePort(): Promise<number> {
  const slice = Number(process.env.VITEST_POOL_ID ?? 0) % 8; // 20000 + 8 × 1500 stays below 32768
  const base = 20_000 + slice * 1_500;
  for (let i = 0; i < 50; i++) {
    const port = await probe(i < 40 ? base + Math.floor(Math.random() * 1_500) : 0);
    if (port > 0 && !given.has(port)) {
      given.add(port);
      return port;
    }
  }
  throw new Error('freePort: no new free port after 50 tries');
}

/**
 * A real peer program must be present. There is no skip: a missing peer fails the test
 * (`npm test` installs them through scripts/install-peers.sh).
 */
export function requirePeer(cmd: string): string {
  try {
    return execFileSync('sh', ['-c', `command -v ${cmd}`], { encoding: 'utf8' }).trim();
  } catch {
    throw new Error(`peer '${cmd}' is not installed: run scripts/install-peers.sh`);
  }
}

export async function waitFor<T>(fn: () => T | Promise<T>, timeoutMs = 10_000, stepMs = 25): Promise<NonNullable<T>> {
  const end = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v as NonNullable<T>;
    } catch (e) {
      last = e;
    }
    if (Date.now() > end) throw new Error(`waitFor timed out${last ? `: ${String(last)}` : ''}`);
    await new Promise((r) => setTimeout(r, stepMs));
  }
}
