// The README's test command (`npm test`): installs the real peers the tests drive when they are
// missing, builds, runs vitest, and ends with the plain summary line `N passed, N failed`.
import { spawnSync } from 'node:child_process';
import { readFileSync, mkdirSync, existsSync } from 'node:fs';
import { join } from 'node:path';

const root = new URL('..', import.meta.url).pathname;
const run = (cmd, args, opts = {}) => spawnSync(cmd, args, { stdio: 'inherit', cwd: root, ...opts });

let r = run('bash', ['scripts/install-peers.sh']);
if (r.status !== 0) {
  console.error('test: could not install the peers the tests need (see above)');
  console.log('0 passed, 1 failed');
  process.exit(1);
}
r = run('npm', ['run', '--silent', 'build']);
if (r.status !== 0) {
  console.error('test: build failed');
  console.log('0 passed, 1 failed');
  process.exit(1);
}
mkdirSync(join(root, '.tmp'), { recursive: true });
const report = join(root, '.tmp', 'vitest-report.json');
r = run('npx', ['vitest', 'run', '--reporter=default', '--reporter=json', `--outputFile.json=${report}`, ...process.argv.slice(2)]);
let passed = 0;
let failed = 0;
if (existsSync(report)) {
  const j = JSON.parse(readFileSync(report, 'utf8'));
  passed = j.numPassedTests ?? 0;
  failed = (j.numFailedTests ?? 0) + (j.numFailedTestSuites ?? 0 ? 0 : 0);
  // a suite that failed to load has no tests: count it as a failure
  for (const f of j.testResults ?? []) if (f.status === 'failed' && (f.assertionResults ?? []).length === 0) failed++;
}
if (r.status !== 0 && failed === 0) failed = 1;
console.log(`${passed} passed, ${failed} failed`);
process.exit(failed > 0 || r.status !== 0 ? 1 : 0);
