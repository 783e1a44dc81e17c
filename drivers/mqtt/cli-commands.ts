import { userInfo } from 'node:os';
import { parseArgs } from 'node:util';
import { ConfigError } from '../../gateway/src/contracts/errors';
import { loadSettings } from '../../gateway/src/config/settings';
import { openAccounts } from '../../gateway/src/accounts/accounts';
import { CredentialError, MqttCredentials } from './credentials';

export const MQTT_CLIENT_USAGE = `Usage: iomt-gateway mqtt-client <command> [options]

Commands:
  add CLIENT-ID      create a device login for the embedded MQTT broker; prints its password once
  list               list device logins (client id, created, revoked)
  revoke CLIENT-ID   revoke a login; a connected device is disconnected within seconds

Options:
  --password-stdin   read the password from the first line of standard input (16-256 characters;
                     never from the command line); without it a random one is generated and printed once
  --settings FILE    gateway settings file (for the data dir; IOMT_DATA_DIR works too)
  -h, --help         this help

The device connects with client id = user name = CLIENT-ID and publishes to iomt/CLIENT-ID/vitals
and iomt/CLIENT-ID/alarms. Only a scrypt hash of the password is kept, in <data dir>/mqtt-clients.json
(mode 0600). Works while the gateway runs.
`;

export interface MqttClientCommandIo {
  stdin?: NodeJS.ReadableStream;
  out?: (s: string) => void;
  err?: (s: string) => void;
  env?: NodeJS.ProcessEnv;
}

async function firstLine(stream: NodeJS.ReadableStream): Promise<string> {
  let buf = '';
  for await (const chunk of stream) {
    buf += typeof chunk === 'string' ? chunk : (chunk as Buffer).toString('utf8');
    const i = buf.indexOf('\n');
    if (i >= 0) return buf.slice(0, i).replace(/\r$/, '');
    if (buf.length > 4096) break;
  }
  return buf.replace(/\r?\n$/, '');
}

/** Audit row (source cli, OS user) in the gateway's audit log; the change itself is already written. */
function audit(settings: ReturnType<typeof loadSettings>, action: string, target: string): void {
  let osUser = '?';
  try {
    osUser = userInfo().username;
  } catch {
    /* no passwd entry (containers) */
  }
  const acc = openAccounts(settings, { pruneIntervalMs: 0, bootstrap: false });
  try {
    acc.audit.record({ source: 'cli', action, target, detail: { osUser } });
  } finally {
    acc.close();
  }
}

/**
 * `iomt-gateway mqtt-client add|list|revoke`: argv is what follows `mqtt-client`. Returns the exit code:
 * 0 ok, 1 refused (exists, unknown, bad id or password), 2 usage or settings error.
 */
export async function runMqttClientCommand(argv: string[], io: MqttClientCommandIo = {}): Promise<number> {
  const out = io.out ?? ((s: string) => process.stdout.write(s));
  const err = io.err ?? ((s: string) => process.stderr.write(s));
  let parsed;
  try {
    parsed = parseArgs({ args: argv, allowPositionals: true, strict: true, options: { 'password-stdin': { type: 'boolean' }, settings: { type: 'string' }, help: { type: 'boolean', short: 'h' } } });
  } catch (e) {
    err(`${(e as Error).message}\n\n${MQTT_CLIENT_USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  const [cmd, ...args] = positionals;
  if (values.help || !cmd) {
    (values.help ? out : err)(MQTT_CLIENT_USAGE);
    return values.help ? 0 : 2;
  }
  const arity: Record<string, number> = { add: 1, list: 0, revoke: 1 };
  if (!(cmd in arity)) {
    err(`unknown mqtt-client command '${cmd}'\n\n${MQTT_CLIENT_USAGE}`);
    return 2;
  }
  if (args.length !== arity[cmd]) {
    err(`'mqtt-client ${cmd}' takes ${arity[cmd] ? 'CLIENT-ID' : 'no arguments'}${args.length > arity[cmd] ? ' (passwords are read with --password-stdin, never from the command line)' : ''}\n`);
    return 2;
  }
  let settings;
  try {
    settings = loadSettings({ file: values.settings, env: io.env });
  } catch (e) {
    if (e instanceof ConfigError) {
      for (const p of e.problems) err(`${p.file}: ${p.path}: ${p.reason}\n`);
      return 2;
    }
    throw e;
  }
  const creds = new MqttCredentials(settings.dataDir);
  try {
    switch (cmd) {
      case 'list': {
        const list = creds.list();
        const w = Math.max(9, ...list.map((c) => c.clientId.length));
        out(`${'CLIENT-ID'.padEnd(w)}  CREATED                   REVOKED\n`);
        for (const c of list) out(`${c.clientId.padEnd(w)}  ${c.createdAt.padEnd(24)}  ${c.revokedAt ?? '-'}\n`);
        return 0;
      }
      case 'add': {
        const given = values['password-stdin'] ? await firstLine(io.stdin ?? process.stdin) : undefined;
        const r = await creds.add(args[0], given);
        audit(settings, 'mqtt-client.add', args[0]);
        out(`MQTT client '${args[0]}' added (user name = client id)\n`);
        if (r.generated) out(`password (shown once): ${r.password}\n`);
        return 0;
      }
      case 'revoke': {
        await creds.revoke(args[0]);
        audit(settings, 'mqtt-client.revoke', args[0]);
        out(`MQTT client '${args[0]}' revoked\n`);
        return 0;
      }
    }
    return 2;
  } catch (e) {
    if (e instanceof CredentialError) {
      err(`${e.message}\n`);
      return 1;
    }
    throw e;
  }
}
