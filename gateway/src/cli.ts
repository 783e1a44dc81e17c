#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import { loadSettings, type GatewaySettings } from './config/settings';
import { checkFlowFile } from './config/flow-check';
import { ConfigError, type ConfigProblem } from './contracts/errors';
import { createRootLogger } from './log/logger';
import { startGateway } from './gateway';
import { packageRoot } from './package-root';
import { resolveSiteFlows } from './node-red/flow-files';
import { NODE_SPECS } from './config/node-specs';
import { specMarkdown } from './config/field-spec';
import { DRIVERS } from '../../drivers';
import { installDeviceIoGuard } from './log/device-io-guard';

const USAGE = `iomt-gateway <command> [options]

Commands:
  run [--flows FILE] [--settings FILE]    start the gateway (HTTP, status page, editor, flows)
  demo [--settings FILE]                  gateway + simulated analyzer + simulated HIS; data visibly flows
  simulate hl7|his|astm|monitor|modality [...]
                                          simulated devices (run 'iomt-gateway simulate --help')
  check-config [--flows FILE] [--settings FILE] [--profiles DIR]
                                          validate settings, flows and device profiles; report every problem
  user add|passwd|role|remove|list ...    manage user accounts (run 'iomt-gateway user --help')
  mqtt-client add|list|revoke ...         MQTT device logins for the embedded broker (run 'iomt-gateway mqtt-client --help')
  backup FILE                             online, consistent backup of the data dir
  restore FILE                            put a backup back into the data dir of a stopped gateway
  fields [NODE-TYPE]                      reference of every node's fields (type, default, valid values), as Markdown
  hash-password                           read a password on stdin, print its bcrypt hash (IOMT_ADMIN_PASSWORD_HASH)

Options: -h, --help (also after any command), -V, --version

Environment: IOMT_DATA_DIR, IOMT_HTTP_HOST, IOMT_HTTP_PORT, IOMT_ADMIN_USER, IOMT_ADMIN_PASSWORD,
IOMT_ADMIN_PASSWORD_HASH, IOMT_LOG_LEVEL (see README "Configuration").`;

const FLOWS_HELP = `  --flows FILE      flow to run. A flow shipped in the package (flows/*.json) only seeds the site's
                    flows, <data dir>/flows.json, on first start; after that the site copy runs and
                    Deploy writes only there. A file outside the package is used (and deployed to) in place.
                    Default: <data dir>/flows.json, seeded from flows/hl7-relay.json.
  --settings FILE   gateway settings (JSON); IOMT_* environment variables override it
  -h, --help        this help`;

const HELP: Record<string, string> = {
  run: `iomt-gateway run [--flows FILE] [--settings FILE]

Start the gateway: HTTP (health, metrics, API, status page, editor) and the Node-RED flows.
Refuses to start (exit 2) when the settings or the flow are invalid, listing every problem with
file, path and reason (the same checks as check-config).

${FLOWS_HELP}`,
  demo: `iomt-gateway demo [--settings FILE]

The gateway with a simulated analyzer and a simulated HIS on this machine: data visibly flows.
Ctrl-C stops it and prints the counts.

  --settings FILE   gateway settings (JSON)
  -h, --help        this help`,
  'check-config': `iomt-gateway check-config [--flows FILE] [--settings FILE] [--profiles DIR]

Validate what 'run' would run: the settings, the flow (every field of every IoMT node against its
field spec after \${VAR} substitution: ports, hosts, profiles, transports, TLS files, unknown node
types, port clashes, unique ids) and the device profiles. Prints every problem with file, path and
reason. Exit 0 = OK, 1 = problems.

${FLOWS_HELP}
  --profiles DIR    device profiles directory (default: the shipped firmware-config/profiles)`,
  fields: `iomt-gateway fields [NODE-TYPE]

Print the field reference of the IoMT node types (or of one) as Markdown: name, type, default,
required, valid values, description. It is generated from the same field spec the editor and
check-config use, so it is never out of date.`,
  'hash-password': `iomt-gateway hash-password

Read a password (8 characters or more) on standard input and print its bcrypt hash, for
IOMT_ADMIN_PASSWORD_HASH.`,
};

function version(): string {
  try {
    return String(JSON.parse(readFileSync(join(packageRoot(), 'package.json'), 'utf8')).version);
  } catch {
    return 'unknown';
  }
}

function reportProblems(problems: ConfigProblem[]): void {
  process.stderr.write(`configuration has ${problems.length} problem(s):\n`);
  for (const p of problems) process.stderr.write(`  ${p.file}: ${p.path || '(file)'}: ${p.reason}\n`);
}

/** Validate device profiles with the driver that owns them (profiles are data: firmware-config/profiles). */
function checkProfiles(dir: string): ConfigProblem[] {
  if (!existsSync(dir)) return [{ file: dir, path: '', reason: 'profiles directory not found' }];
  const out: ConfigProblem[] = [];
  for (const d of DRIVERS) {
    const sub = join(dir, d.name);
    if (d.checkProfiles && existsSync(sub)) out.push(...d.checkProfiles(sub));
  }
  return out;
}

/**
 * Everything `run` would start with, checked: settings, the flow it would run (without seeding),
 * and the profiles. Returns the problems and the settings when they loaded.
 */
function checkAll(opts: { settings?: string; flows?: string; profiles?: string }): { problems: ConfigProblem[]; settings?: GatewaySettings } {
  const problems: ConfigProblem[] = [];
  let settings: GatewaySettings | undefined;
  try {
    settings = loadSettings({ file: opts.settings });
  } catch (e) {
    if (e instanceof ConfigError) problems.push(...e.problems);
    else throw e;
  }
  let flowFile: string | undefined;
  try {
    flowFile = settings
      ? resolveSiteFlows(settings.dataDir, { flowsArg: opts.flows, seed: false }).flowFile
      : (opts.flows ?? join(packageRoot(), 'flows', 'hl7-relay.json'));
  } catch (e) {
    problems.push({ file: opts.flows ?? '(flows)', path: '', reason: (e as Error).message });
  }
  if (flowFile) problems.push(...checkFlowFile(flowFile, { env: process.env, httpPort: settings?.http.port }));
  const profilesDir = opts.profiles ?? join(packageRoot(), 'firmware-config', 'profiles');
  problems.push(...checkProfiles(profilesDir));
  if (!opts.profiles && process.env.IOMT_PROFILES_DIR) problems.push(...checkProfiles(process.env.IOMT_PROFILES_DIR));
  return { problems, settings };
}

/** Sub-commands owned by other modules, loaded when used; a build without them says so. */
async function delegate(modulePath: string, exportName: string, argv: string[]): Promise<number> {
  let mod: Record<string, unknown>;
  try {
    mod = await import(modulePath);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND' || (e as NodeJS.ErrnoException).code === 'ERR_MODULE_NOT_FOUND') {
      process.stderr.write(`iomt-gateway: this command is not available in this build (${modulePath} is missing)\n`);
      return 2;
    }
    throw e;
  }
  const fn = mod[exportName] as ((a: string[]) => Promise<number>) | undefined;
  if (typeof fn !== 'function') {
    process.stderr.write(`iomt-gateway: this command is not available in this build (${modulePath} has no ${exportName})\n`);
    return 2;
  }
  return fn(argv);
}

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    process.stdout.write(USAGE + '\n');
    return cmd ? 0 : 1;
  }
  if (cmd === '--version' || cmd === '-V' || cmd === 'version') {
    process.stdout.write(`iomt-gateway ${version()}\n`);
    return 0;
  }
  if (cmd === 'simulate') {
    const { simulateCli } = await import('../../simulator/cli');
    return simulateCli(rest);
  }
  // these parse their own options (and --help)
  if (cmd === 'user') return delegate('./accounts/cli-commands', 'runUserCommand', rest);
  if (cmd === 'mqtt-client') return delegate('../../drivers/mqtt/cli-commands', 'runMqttClientCommand', rest);
  if (cmd === 'backup') return delegate('./backup/cli-commands', 'runBackupCommand', rest);
  if (cmd === 'restore') return delegate('./backup/cli-commands', 'runRestoreCommand', rest);
  if (!HELP[cmd]) {
    process.stderr.write(`unknown command '${cmd}'\n\n${USAGE}\n`);
    return 1;
  }
  let values: { flows?: string; settings?: string; profiles?: string; help?: boolean };
  let positionals: string[];
  try {
    const options: Record<string, { type: 'string' | 'boolean'; short?: string }> = { help: { type: 'boolean', short: 'h' } };
    if (cmd === 'run' || cmd === 'check-config') options.flows = { type: 'string' };
    if (cmd !== 'hash-password' && cmd !== 'fields') options.settings = { type: 'string' };
    if (cmd === 'check-config') options.profiles = { type: 'string' };
    ({ values, positionals } = parseArgs({ args: rest, options, strict: true, allowPositionals: cmd === 'fields' }) as { values: typeof values; positionals: string[] });
  } catch (e) {
    process.stderr.write(`iomt-gateway ${cmd}: ${(e as Error).message}\n\n${HELP[cmd]}\n`);
    return 2;
  }
  if (values.help) {
    process.stdout.write(HELP[cmd] + '\n');
    return 0;
  }
  if (cmd === 'fields') {
    const specs = positionals.length ? NODE_SPECS.filter((x) => positionals.includes(x.type)) : NODE_SPECS;
    if (specs.length !== (positionals.length || NODE_SPECS.length)) {
      process.stderr.write(`unknown node type; known: ${NODE_SPECS.map((x) => x.type).join(', ')}\n`);
      return 2;
    }
    process.stdout.write(specs.map(specMarkdown).join('\n\n') + '\n');
    return 0;
  }
  if (cmd === 'hash-password') {
    const chunks: Buffer[] = [];
    for await (const c of process.stdin) chunks.push(c as Buffer);
    const pw = Buffer.concat(chunks).toString('utf8').replace(/\r?\n$/, '');
    if (pw.length < 8) {
      process.stderr.write('password must be at least 8 characters\n');
      return 1;
    }
    process.stdout.write(bcrypt.hashSync(pw, 10) + '\n');
    return 0;
  }
  if (cmd === 'check-config') {
    const { problems } = checkAll(values);
    if (problems.length) {
      reportProblems(problems);
      return 1;
    }
    process.stdout.write('configuration OK\n');
    return 0;
  }
  // run | demo
  // the data dir holds PHI (raw messages, observations): files readable by the gateway's user only
  process.umask(0o077);
  // the same checks as check-config: an invalid configuration never starts (docs/errors.md GW_ERR_CONFIG)
  const { problems, settings } = cmd === 'run' ? checkAll(values) : { problems: [] as ConfigProblem[], settings: undefined };
  let s = settings;
  if (!problems.length && !s) {
    try {
      s = loadSettings({ file: values.settings });
    } catch (e) {
      if (e instanceof ConfigError) problems.push(...e.problems);
      else throw e;
    }
  }
  if (problems.length || !s) {
    reportProblems(problems);
    process.stderr.write(`iomt-gateway ${cmd}: not started; fix the configuration ('iomt-gateway check-config' lists the same problems)\n`);
    return 2;
  }
  createRootLogger(s.logLevel);
  installDeviceIoGuard();
  if (cmd === 'demo') {
    const { runDemo } = await import('./demo');
    return runDemo(s);
  }
  const gw = await startGateway(s, { flowsFile: values.flows });
  process.stdout.write(`iomt-gateway listening on ${gw.url} (editor ${gw.editorUrl}, flows ${gw.flowFile})\n`);
  await new Promise<void>((resolve) => {
    const stop = () => resolve();
    process.once('SIGINT', stop);
    process.once('SIGTERM', stop);
  });
  await gw.close();
  return 0;
}

if (require.main === module) {
  main(process.argv.slice(2)).then(
    (code) => process.exit(code),
    (e) => {
      process.stderr.write(`iomt-gateway: ${(e as Error)?.stack ?? String(e)}\n`);
      process.exit(1);
    },
  );
}

export { main };
