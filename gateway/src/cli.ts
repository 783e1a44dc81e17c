#!/usr/bin/env node
import { parseArgs } from 'node:util';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import bcrypt from 'bcryptjs';
import { loadSettings } from './config/settings';
import { checkFlowFile } from './config/flow-check';
import { ConfigError, type ConfigProblem } from './contracts/errors';
import { createRootLogger } from './log/logger';
import { startGateway } from './gateway';
import { packageRoot } from './package-root';
import { DRIVERS } from '../../drivers';
import { installDeviceIoGuard } from './log/device-io-guard';

const USAGE = `iomt-gateway <command> [options]

Commands:
  run [--flows FILE] [--settings FILE]   start the gateway (HTTP, editor, flows)
  demo [--settings FILE]                  gateway + simulated analyzer + simulated HIS; data visibly flows
  simulate hl7|his|astm [...]             simulated devices (run 'iomt-gateway simulate --help')
  check-config [--flows FILE] [--settings FILE] [--profiles DIR]
                                          validate settings, flows and device profiles; report every problem
  hash-password                           read a password on stdin, print its bcrypt hash (IOMT_ADMIN_PASSWORD_HASH)

Environment: IOMT_DATA_DIR, IOMT_HTTP_HOST, IOMT_HTTP_PORT, IOMT_ADMIN_USER, IOMT_ADMIN_PASSWORD,
IOMT_ADMIN_PASSWORD_HASH, IOMT_LOG_LEVEL (see README "Configuration").`;

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

async function main(argv: string[]): Promise<number> {
  const [cmd, ...rest] = argv;
  if (!cmd || cmd === '--help' || cmd === '-h' || cmd === 'help') {
    process.stdout.write(USAGE + '\n');
    return cmd ? 0 : 1;
  }
  if (cmd === 'simulate') {
    const { simulateCli } = await import('../../simulator/cli');
    return simulateCli(rest);
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
  const { values } = parseArgs({
    args: rest,
    options: { flows: { type: 'string' }, settings: { type: 'string' }, profiles: { type: 'string' } },
    strict: true,
  });
  if (cmd === 'check-config') {
    const problems: ConfigProblem[] = [];
    try {
      loadSettings({ file: values.settings });
    } catch (e) {
      if (e instanceof ConfigError) problems.push(...e.problems);
      else throw e;
    }
    const flows = values.flows ?? join(packageRoot(), 'flows', 'hl7-relay.json');
    problems.push(...checkFlowFile(flows));
    problems.push(...checkProfiles(values.profiles ?? join(packageRoot(), 'firmware-config', 'profiles')));
    if (problems.length) {
      reportProblems(problems);
      return 1;
    }
    process.stdout.write('configuration OK\n');
    return 0;
  }
  if (cmd === 'run' || cmd === 'demo') {
    // the data dir holds PHI (raw messages, observations): files readable by the gateway's user only
    process.umask(0o077);
    let settings;
    try {
      settings = loadSettings({ file: values.settings });
    } catch (e) {
      if (e instanceof ConfigError) {
        reportProblems(e.problems);
        return 2;
      }
      throw e;
    }
    createRootLogger(settings.logLevel);
    installDeviceIoGuard();
    if (values.flows) {
      const problems = checkFlowFile(values.flows);
      if (problems.length) {
        reportProblems(problems);
        return 2;
      }
    }
    if (cmd === 'demo') {
      const { runDemo } = await import('./demo');
      return runDemo(settings);
    }
    const gw = await startGateway(settings, { flowsFile: values.flows });
    process.stdout.write(`iomt-gateway listening on ${gw.url} (editor ${gw.editorUrl}, flows ${gw.flowFile})\n`);
    await new Promise<void>((resolve) => {
      const stop = () => resolve();
      process.once('SIGINT', stop);
      process.once('SIGTERM', stop);
    });
    await gw.close();
    return 0;
  }
  process.stderr.write(`unknown command '${cmd}'\n\n${USAGE}\n`);
  return 1;
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
