/** Command-line options of the simulators: `--key value`, `--key=value`, `--flag`, repeatable lists. */
export class UsageError extends Error {}

/** Where a simulator command prints (tests pass their own). */
export type Out = { log: (s: string) => void; err: (s: string) => void };
export const stdio: Out = { log: (s) => process.stdout.write(s + '\n'), err: (s) => process.stderr.write(s + '\n') };

export type OptKind = 'string' | 'flag' | 'list';

/**
 * Parse options; unknown keys are a UsageError. A 'list' option may repeat: its values go to `lists[key]`
 * (in order); every other value goes to the returned record ('true' for a flag).
 */
export function parseOpts(argv: string[], known: Record<string, OptKind>, lists: Record<string, string[]> = {}): Record<string, string> {
  const out: Record<string, string> = {};
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('--')) throw new UsageError(`unexpected argument '${a}'`);
    let key = a.slice(2);
    let val: string | undefined;
    const eq = key.indexOf('=');
    if (eq >= 0) {
      val = key.slice(eq + 1);
      key = key.slice(0, eq);
    }
    const kind = known[key];
    if (!kind) throw new UsageError(`unknown option --${key}`);
    if (kind === 'flag') {
      out[key] = 'true';
      continue;
    }
    if (val === undefined) {
      val = argv[++i];
      if (val === undefined) throw new UsageError(`--${key} needs a value`);
    }
    if (kind === 'list') (lists[key] ??= []).push(val);
    else out[key] = val;
  }
  return out;
}
