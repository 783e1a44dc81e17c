/**
 * A real mosquitto broker for tests (issue 12: the upstream bus is mosquitto in tests): its own config
 * in a temp dir, a free port, `allow_anonymous false` and a password file made with mosquitto_passwd.
 * The caller stops it (teardown); a missing peer throws (requirePeer).
 */
import { spawn, execFileSync, type ChildProcess } from 'node:child_process';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { createConnection } from 'node:net';
import { userInfo } from 'node:os';
import { freePort, requirePeer, tempDir, waitFor } from './env';

export class MosquittoPeer {
  port = 0;
  proc: ChildProcess | undefined;
  private readonly tmp = tempDir('iomt-mosq-');
  readonly users: Record<string, string>;
  constructor(users: Record<string, string> = { gateway: 'gw-secret', reader: 'rd-secret' }) {
    this.users = users;
  }

  async start(port?: number): Promise<number> {
    requirePeer('mosquitto');
    requirePeer('mosquitto_passwd');
    this.port = port ?? this.port ?? 0;
    if (!this.port) this.port = await freePort();
    const pw = join(this.tmp.dir, 'passwd');
    writeFileSync(pw, '', { mode: 0o600 });
    for (const [u, p] of Object.entries(this.users)) execFileSync('mosquitto_passwd', ['-b', pw, u, p]);
    const conf = join(this.tmp.dir, 'mosquitto.conf');
    // run as the test's own user (as root mosquitto would drop to 'mosquitto', which cannot read the temp dir)
    writeFileSync(conf, [`user ${userInfo().username}`, `listener ${this.port} 127.0.0.1`, 'allow_anonymous false', `password_file ${pw}`, 'persistence false', 'log_dest stderr', 'log_type error', ''].join('\n'));
    this.proc = spawn('mosquitto', ['-c', conf], { stdio: ['ignore', 'ignore', 'pipe'] });
    await waitFor(
      () =>
        new Promise<boolean>((resolve) => {
          const s = createConnection({ host: '127.0.0.1', port: this.port }, () => {
            s.destroy();
            resolve(true);
          });
          s.on('error', () => resolve(false));
        }),
      10_000,
      50,
    );
    return this.port;
  }

  async stop(): Promise<void> {
    const p = this.proc;
    this.proc = undefined;
    if (!p || p.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      p.once('exit', () => resolve());
      p.kill('SIGTERM');
    });
  }

  cleanup(): void {
    this.tmp.cleanup();
  }

  /**
   * Start mosquitto_sub on `topicFilter` (QoS 1, `-v`: "topic payload" per line) and collect `count`
   * messages. `ready` resolves once the subscription is seen to work: a probe published with
   * mosquitto_pub under `probeTopic` (inside the filter) came back. Probe lines are not in `messages`.
   */
  subscribe(topicFilter: string, probeTopic: string, count: number, user = 'reader'): { messages: string[]; ready: Promise<void>; done: Promise<string[]>; stop(): void } {
    requirePeer('mosquitto_sub');
    requirePeer('mosquitto_pub');
    const messages: string[] = [];
    const auth = ['-h', '127.0.0.1', '-p', String(this.port), '-u', user, '-P', this.users[user]];
    const sub = spawn('mosquitto_sub', [...auth, '-t', topicFilter, '-q', '1', '-v'], { stdio: ['ignore', 'pipe', 'pipe'] });
    let buf = '';
    let probed = false;
    let finish: (m: string[]) => void = () => undefined;
    const done = new Promise<string[]>((r) => (finish = r));
    sub.stdout.on('data', (d: Buffer) => {
      buf += d.toString('utf8');
      for (;;) {
        const i = buf.indexOf('\n');
        if (i < 0) break;
        const line = buf.slice(0, i);
        buf = buf.slice(i + 1);
        if (line.startsWith(`${probeTopic} `)) probed = true;
        else messages.push(line);
        if (messages.length >= count) finish(messages);
      }
    });
    sub.on('exit', () => finish(messages));
    const ready = waitFor(
      () => {
        if (probed) return true;
        execFileSync('mosquitto_pub', [...auth, '-t', probeTopic, '-m', 'probe', '-q', '1']);
        return false;
      },
      10_000,
      200,
    ).then(() => undefined);
    return { messages, ready, done, stop: () => sub.kill('SIGTERM') };
  }
}
