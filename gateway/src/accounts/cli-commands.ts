import { userInfo } from 'node:os';
import { parseArgs } from 'node:util';
import { ConfigError } from '../contracts/errors';
import { loadSettings } from '../config/settings';
import { openAccounts } from './accounts';
import { AccountError, checkPassword, checkRole, checkUserName, generatePassword, type Role } from './users';

export const USER_USAGE = `Usage: iomt-gateway user <command> [options]

Commands:
  add NAME [--role admin|operator|viewer]   create a user (default role: operator)
  passwd NAME                               set a user's password
  role NAME ROLE                            change a user's role
  remove NAME                               delete a user (not the last admin)
  list                                      list users and roles

Options:
  --password-stdin     read the password from the first line of standard input
                       (never from the command line); without it a random password
                       is generated and printed once
  --settings FILE      gateway settings file (for the data dir; IOMT_DATA_DIR works too)
  -h, --help           this help

Roles: admin (editor, configuration, accounts), operator (lab technician: status,
search, replay), viewer (status only, no patient data).
Works while the gateway runs; running sessions of a changed user end at once.
`;

export interface UserCommandIo {
  stdin?: NodeJS.ReadableStream;
  out?: (s: string) => void;
  err?: (s: string) => void;
  env?: NodeJS.ProcessEnv;
}

async function readFirstLine(stream: NodeJS.ReadableStream): Promise<string> {
  let buf = '';
  for await (const chunk of stream) {
    buf += typeof chunk === 'string' ? chunk : (chunk as Buffer).toString('utf8');
    const i = buf.indexOf('\n');
    if (i >= 0) return buf.slice(0, i).replace(/\r$/, '');
    if (buf.length > 4096) break;
  }
  return buf.replace(/\r?\n$/, '');
}

/**
 * `iomt-gateway user add|passwd|role|remove|list`: argv is what follows `user`. Returns the exit
 * code: 0 ok, 1 refused (unknown user, exists, last admin, bad password), 2 usage or settings error.
 * Passwords come from stdin (--password-stdin) or are generated and printed once; never from argv.
 * Every change is written to the audit log (source 'cli', with the OS user).
 */
export async function runUserCommand(argv: string[], io: UserCommandIo = {}): Promise<number> {
  const out = io.out ?? ((s: string) => process.stdout.write(s));
  const err = io.err ?? ((s: string) => process.stderr.write(s));
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      strict: true,
      options: { role: { type: 'string' }, 'password-stdin': { type: 'boolean' }, settings: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    });
  } catch (e) {
    err(`${(e as Error).message}\n\n${USER_USAGE}`);
    return 2;
  }
  const { values, positionals } = parsed;
  const [cmd, ...args] = positionals;
  if (values.help || !cmd) {
    (values.help ? out : err)(USER_USAGE);
    return values.help ? 0 : 2;
  }
  const arity: Record<string, number> = { add: 1, passwd: 1, role: 2, remove: 1, list: 0 };
  if (!(cmd in arity)) {
    err(`unknown user command '${cmd}'\n\n${USER_USAGE}`);
    return 2;
  }
  if (args.length !== arity[cmd]) {
    err(`'user ${cmd}' takes ${arity[cmd] === 0 ? 'no arguments' : arity[cmd] === 1 ? 'NAME' : 'NAME ROLE'}${args.length > arity[cmd] ? ' (passwords are read from stdin with --password-stdin, never from the command line)' : ''}\n`);
    return 2;
  }
  if (values.role !== undefined && cmd !== 'add') {
    err(`--role is for 'user add' (use 'user role NAME ROLE')\n`);
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

  let osUser = '?';
  try {
    osUser = userInfo().username;
  } catch {
    /* no passwd entry (containers) */
  }
  const actor = { source: 'cli', detail: { osUser } };

  const acc = openAccounts(settings, { pruneIntervalMs: 0 });
  try {
    if (acc.admin.generatedPassword) {
      out(`First start: generated admin password for user '${acc.admin.user}': ${acc.admin.generatedPassword}\n(also in ${acc.admin.passwordFile}, mode 0600)\n`);
    }
    const password = async (): Promise<{ pw: string; generated: boolean }> => {
      if (values['password-stdin']) return { pw: checkPassword(await readFirstLine(io.stdin ?? process.stdin)), generated: false };
      return { pw: generatePassword(), generated: true };
    };
    switch (cmd) {
      case 'list': {
        const users = acc.users.list();
        const w = Math.max(4, ...users.map((u) => u.name.length));
        out(`${'USER'.padEnd(w)}  ROLE      PASSWORD CHANGED\n`);
        for (const u of users) out(`${u.name.padEnd(w)}  ${u.role.padEnd(8)}  ${u.passwordChangedAt}\n`);
        return 0;
      }
      case 'add': {
        const name = checkUserName(args[0]);
        const role: Role = checkRole(values.role ?? 'operator');
        const { pw, generated } = await password();
        await acc.users.add(name, role, pw);
        acc.audit.record({ ...actor, action: 'user.add', target: name, detail: { ...actor.detail, role } });
        out(`user '${name}' added with role ${role}\n`);
        if (generated) out(`password (shown once): ${pw}\n`);
        return 0;
      }
      case 'passwd': {
        const name = checkUserName(args[0]);
        if (!acc.users.get(name)) throw new AccountError('GW_ERR_ACCOUNT_NOT_FOUND', `no user '${name}'`);
        const { pw, generated } = await password();
        await acc.users.setPassword(name, pw);
        acc.audit.record({ ...actor, action: 'user.passwd', target: name });
        out(`password of '${name}' changed\n`);
        if (generated) out(`password (shown once): ${pw}\n`);
        return 0;
      }
      case 'role': {
        const name = checkUserName(args[0]);
        const role = checkRole(args[1]);
        acc.users.setRole(name, role);
        acc.audit.record({ ...actor, action: 'user.role', target: name, detail: { ...actor.detail, role } });
        out(`user '${name}' now has role ${role}\n`);
        return 0;
      }
      case 'remove': {
        const name = checkUserName(args[0]);
        acc.users.remove(name);
        acc.audit.record({ ...actor, action: 'user.remove', target: name });
        out(`user '${name}' removed\n`);
        return 0;
      }
    }
    return 2;
  } catch (e) {
    if (e instanceof AccountError) {
      err(`${e.message}\n`);
      return 1;
    }
    throw e;
  } finally {
    acc.close();
  }
}
