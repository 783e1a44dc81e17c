process.env.IOMT_LOG_LEVEL ??= 'silent';
import { afterEach, describe, expect, it } from 'vitest';
import { SimulatedHis } from './his/his';
import { simulateCli } from './cli';

function capture() {
  const lines: string[] = [];
  const errs: string[] = [];
  return { lines, errs, out: { log: (s: string) => lines.push(s), err: (s: string) => errs.push(s) } };
}

let his: SimulatedHis | undefined;
afterEach(async () => {
  await his?.stop();
  his = undefined;
});

describe('simulateCli', () => {
  it('prints usage on --help and on an unknown subcommand', async () => {
    const c = capture();
    expect(await simulateCli(['--help'], c.out)).toBe(0);
    expect(c.lines.join('\n')).toContain('usage: iomt-gateway simulate');
    const d = capture();
    expect(await simulateCli(['frobnicate'], d.out)).toBe(2);
    expect(d.errs.join('\n')).toContain("unknown simulator 'frobnicate'");
  });

  it('hl7: exit 0 when every message got AA, 1 otherwise', async () => {
    his = new SimulatedHis();
    const port = await his.start();
    const c = capture();
    expect(await simulateCli(['hl7', '--host', '127.0.0.1', '--port', String(port), '--count', '5', '--connections', '2', '--device', 'CLI-XN'], c.out)).toBe(0);
    expect(c.lines[0]).toMatch(/^hl7 OK sent=5 acked=5 /);
    expect(his.received().length).toBe(5);
    his.mode = 'ae';
    const d = capture();
    expect(await simulateCli(['hl7', '--host', '127.0.0.1', '--port', String(port), '--count', '2'], d.out)).toBe(1);
    expect(d.lines[0]).toMatch(/^hl7 FAILED sent=2 acked=0 nacked=2/);
  });

  it('hl7: bad options are usage errors', async () => {
    const c = capture();
    expect(await simulateCli(['hl7', '--port', '1'], c.out)).toBe(2);
    expect(c.errs[0]).toContain('--host is required');
    const d = capture();
    expect(await simulateCli(['hl7', '--host', 'h', '--port', '1', '--bogus', 'x'], d.out)).toBe(2);
    expect(d.errs[0]).toContain('unknown option --bogus');
    const e = capture();
    expect(await simulateCli(['his', '--port', '0', '--mode', 'nope'], e.out)).toBe(2);
  });

  it('his: prints one line per message (time, MSH-10, OBX count) and stops on SIGTERM', async () => {
    const c = capture();
    const done = simulateCli(['his', '--port', '0', '--mode', 'aa'], c.out);
    const { waitFor } = await import('../test/helpers/env');
    const first = await waitFor(() => c.lines.find((l) => l.startsWith('his listening on ')));
    const port = Number(/:(\d+) /.exec(first)![1]);
    const { runAnalyzer } = await import('./hl7/analyzer');
    const r = await runAnalyzer({ host: '127.0.0.1', port, count: 3, generatorOptions: { runId: 'CLIH' } });
    expect(r.acked).toBe(3);
    await waitFor(() => c.lines.length >= 4);
    expect(c.lines[1]).toMatch(/^\d{4}-\d\d-\d\dT\S+Z CLIH1 obx=13 AA$/);
    process.emit('SIGTERM');
    expect(await done).toBe(0);
    expect(c.lines.at(-1)).toBe('his stopped after 3 messages');
  });

  it('astm: a clear error when the ASTM simulator is not in this build', async () => {
    const c = capture();
    const code = await simulateCli(['astm', '--help'], c.out);
    expect(typeof code).toBe('number');
    // simulator/astm is written separately: when it is absent, the error says so
    const { existsSync } = await import('node:fs');
    if (!existsSync(`${__dirname}/astm/cli.ts`)) {
      expect(code).toBe(2);
      expect(c.errs.join('\n')).toContain('simulate astm is not available');
    }
  });
});
