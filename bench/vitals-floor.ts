/**
 * Transport floors for bench:vitals (A/B only, never a durability measurement): the cheapest MQTT QoS 1
 * servers Node can run on this machine, to tell the gateway's own per-message cost from Node's.
 *   --floor raw:   net + mqtt-packet's parser; CONNACK, PUBACK, PINGRESP written by hand (MQTT 3.1.1 3.2, 3.4, 3.13)
 *   --floor aedes: aedes with no hooks (anonymous, no ACL, no commit): the library's own cost
 * Protocol: bench-lib serveAsTarget (READY {port,pid}; STATS on SIGTERM).
 */
import net from 'node:net';
import mqttPacket from 'mqtt-packet';
import { Aedes } from 'aedes';
import { parseArgs, runMain, serveAsTarget } from './bench-lib';

runMain(async () => {
  const a = parseArgs(process.argv.slice(2));
  let published = 0;
  let server: net.Server;
  if (a.floor === 'raw') {
    server = net.createServer((s) => {
      s.setNoDelay(true);
      const parser = mqttPacket.parser({ protocolVersion: 4 });
      parser.on('packet', (p: mqttPacket.Packet) => {
        if (p.cmd === 'connect') s.write(Buffer.from([0x20, 2, 0, 0]));
        else if (p.cmd === 'publish') {
          published++;
          if (p.qos === 1) s.write(Buffer.from([0x40, 2, (p.messageId! >> 8) & 0xff, p.messageId! & 0xff]));
        } else if (p.cmd === 'pingreq') s.write(Buffer.from([0xd0, 0]));
        else if (p.cmd === 'disconnect') s.end();
      });
      s.on('data', (d) => parser.parse(d));
      s.on('error', () => s.destroy());
    });
  } else {
    const broker = new (Aedes as unknown as new () => { handle: (s: net.Socket) => void; listen: () => Promise<void>; on: (e: string, f: () => void) => void })();
    await broker.listen(); // aedes 1.x: persistence and heartbeat start here
    broker.on('publish', () => published++);
    server = net.createServer((s) => broker.handle(s));
  }
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  serveAsTarget(
    (server.address() as net.AddressInfo).port,
    () => new Promise((r) => server.close(() => r(undefined))),
    () => ({ committed: published, cpu: process.cpuUsage(), rss: process.memoryUsage().rss }),
  );
});
