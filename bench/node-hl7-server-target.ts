/**
 * node-hl7-server (npm, 2.x) as a benchmark target, run as its own process so its RSS can be read.
 * Follows the package README: `new Server({bindAddress})`, `createInbound({port}, handler)`, and the
 * handler answers with `res.sendResponse('AA')`. Counts handler calls and calls whose MSH-10 was
 * already seen (re-deliveries of an earlier message on a kept-open connection).
 *
 * `node dist/bench/node-hl7-server-target.js --port P` prints `READY {"port":P,"pid":N}`;
 * on SIGTERM prints `STATS {"handled":n,"redelivered":m,"parseErrors":k}` and exits.
 */
import { Server } from 'node-hl7-server';
import { runMain, serveAsTarget } from './bench-lib';

async function main(argv: string[]): Promise<void> {
  const i = argv.indexOf('--port');
  const port = i >= 0 ? Number(argv[i + 1]) : NaN;
  if (!(port > 0)) throw new Error('--port is required');
  const stats = { handled: 0, redelivered: 0, parseErrors: 0 };
  const seen = new Set<string>();
  const server = new Server({ bindAddress: '127.0.0.1' });
  const inbound = server.createInbound({ port }, async (req, res) => {
    stats.handled++;
    const id = req.getMessage().get('MSH.10').toString();
    if (seen.has(id)) stats.redelivered++;
    else seen.add(id);
    await res.sendResponse('AA');
  });
  inbound.on('data.error', () => stats.parseErrors++);
  await new Promise<void>((resolve, reject) => {
    inbound.once('listen', () => resolve());
    inbound.once('error', reject);
  });
  serveAsTarget(port, () => inbound.close(), () => stats);
}

if (require.main === module) runMain(() => main(process.argv.slice(2)));
