// `miniflannel completion zsh` in a real zsh: the script loads zsh's
// completion system and its bash support, and registers the completion.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { runForOutcome } from '../../lab/exec.js';
import { runCli } from './helpers.js';

test('zsh sources the script and registers the completion for miniflannel', async () => {
  const { code, stdout: script, stderr } = await runCli(['completion', 'zsh']);
  assert.equal(code, 0, stderr);
  // -f: no user's startup files; the script must load what it needs itself.
  const outcome = await runForOutcome(['zsh', '-f', '-c', `${script}\nprint -r -- "\${_comps[miniflannel]}"; whence -w _miniflannel`], { env: { ...process.env, HOME: '/nonexistent' } });
  assert.equal(outcome.exitCode, 0, outcome.stderr);
  assert.deepEqual(outcome.stdout.trim().split('\n'), ['_bash_complete -F _miniflannel', '_miniflannel: function']);
});
