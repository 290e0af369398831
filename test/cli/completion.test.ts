// `miniflannel completion bash`: the script the CLI prints, sourced in a real
// bash and asked to complete command lines as bash would at a TAB.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { runForOutcome } from '../../lab/exec.js';
import { oneLineError, runCli } from './helpers.js';

/** What the completion offers for the words typed so far, the last one being completed. */
async function completions(script: string, words: string[]): Promise<string[]> {
  const program = [
    script,
    'COMP_WORDS=("$@"); COMP_CWORD=$((${#COMP_WORDS[@]} - 1)); _miniflannel',
    'printf "%s\\n" "${COMPREPLY[@]}"',
  ].join('\n');
  const outcome = await runForOutcome(['bash', '-c', program, 'bash', ...words]);
  assert.equal(outcome.exitCode, 0, outcome.stderr);
  return outcome.stdout.split('\n').filter(Boolean);
}

describe('miniflannel completion bash', async () => {
  const result = await runCli(['completion', 'bash']);
  const script = result.stdout;

  it('prints a script that registers the completion, exit 0', () => {
    assert.equal(result.code, 0, result.stderr);
    assert.match(script, /^complete -F _miniflannel miniflannel$/m);
  });

  it('completes the commands, and the global options, at the top', async () => {
    const offered = await completions(script, ['miniflannel', '']);
    for (const word of ['lease', 'config', 'status', 'bench', 'sandbox', 'completion', '--redis-url', '--version', '--help']) assert.ok(offered.includes(word), `${word} in ${offered.join(' ')}`);
  });

  it('completes subcommands and options by prefix, under their command', async () => {
    assert.deepEqual(await completions(script, ['miniflannel', 'lease', 'li']), ['list']);
    assert.deepEqual(await completions(script, ['miniflannel', 'lease', 'list', '--wa']), ['--watch']);
    assert.deepEqual(await completions(script, ['miniflannel', '--json', 'config', 'in']), ['init'], 'a global option before the command');
    const e2e = await completions(script, ['miniflannel', 'bench', 'e2e', '--']);
    for (const flag of ['--ipv6', '--repeats', '--redis-url', '--help']) assert.ok(e2e.includes(flag), `${flag} in ${e2e.join(' ')}`);
    assert.ok(!e2e.includes('--version'), '--version belongs to the top only');
  });

  it('completes the values of an option with choices, file names for a path, and nothing for a free value', async () => {
    assert.deepEqual(await completions(script, ['miniflannel', 'completion', '']).then((w) => w.filter((x) => !x.startsWith('-'))), ['bash', 'zsh']);
    assert.ok((await completions(script, ['miniflannel', '--redis-ca-file', '/et'])).includes('/etc'));
    assert.deepEqual(await completions(script, ['miniflannel', 'lease', 'reserve', '--public-ip', '']), []);
  });

  it('refuses another shell in one line, exit 2', async () => {
    const fish = await runCli(['completion', 'fish']);
    assert.equal(fish.code, 2);
    assert.match(oneLineError(fish), /'fish' is invalid for argument 'shell'\. Allowed choices are bash, zsh/);
  });
});
