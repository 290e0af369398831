// The README's promise for the fast tier, kept: every unit test (each
// *.test.js that is not *.system.test.js) passes as an unprivileged user,
// with no redis-server to be found and no sbin on the PATH. This is where
// `npm test` runs the unit tier: once, as nobody, rather than again as root.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readdirSync } from 'node:fs';
import path from 'node:path';
import { runForOutcome } from '../lab/exec.js';
import { packageRoot } from '../lab/paths.js';

const NOBODY = 65534;

/** Each failing test of a TAP report with its diagnostic block (the assertion, expected and actual, the stack): what CI shows of a unit test failing here. */
function failuresOf(tap: string): string {
  const failures: string[] = [];
  let inFailure = false;
  for (const line of tap.split('\n')) {
    if (/^\s*not ok/.test(line)) inFailure = true;
    if (inFailure) failures.push(line);
    if (inFailure && line.trim() === '...') inFailure = false;
  }
  return failures.join('\n');
}

test('the unit tier passes as user nobody, without Redis or root', { timeout: 300_000 }, async () => {
  const tests = path.join(packageRoot, 'dist', 'test');
  const unit = readdirSync(tests, { recursive: true, encoding: 'utf8' })
    .filter((file) => file.endsWith('.test.js') && !file.endsWith('.system.test.js'))
    .map((file) => path.join(tests, file))
    .sort();
  assert.ok(unit.length > 20, `${unit.length} unit test files`);
  const outcome = await runForOutcome(
    ['setpriv', `--reuid=${NOBODY}`, `--regid=${NOBODY}`, '--clear-groups', 'env', '-i', 'HOME=/tmp', 'PATH=/usr/bin:/bin', 'REDIS_SERVER=/nonexistent', process.execPath, '--test', '--test-reporter=tap', ...unit],
    { timeoutMs: 240_000 },
  );
  const count = (name: string) => Number(new RegExp(`^# ${name} (\\d+)$`, 'm').exec(outcome.stdout)?.[1] ?? Number.NaN);
  assert.equal(outcome.exitCode, 0, failuresOf(outcome.stdout) || outcome.stderr);
  assert.equal(count('fail'), 0);
  assert.ok(count('pass') > 200, `${count('pass')} unit tests passed`);
});
