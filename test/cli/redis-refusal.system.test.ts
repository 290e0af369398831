// A Redis in protected mode turns away every client that is not on its
// loopback with a DENIED reply and a closed connection. The CLI and the
// daemon, on another node, say so in one line with what to do, instead of
// "Connection is closed".
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { UNDERLAY_GATEWAY, type Sandbox } from '../../lab/cluster.js';
import { leaseModeArgs, startDaemon } from '../../lab/daemon.js';
import { stopProcess } from '../../lab/exec.js';
import { cliBin } from '../../lab/paths.js';
import { createTestSandbox, destroyTestSandbox } from '../harness/namespaces.js';

let sandbox: Sandbox;
let redis: ChildProcess | undefined;
const URL = `redis://${UNDERLAY_GATEWAY}:6379`;
const REFUSED = new RegExp(
  `^miniflannel: Redis at ${URL.replace(/[./]/g, '\\$&')} refused the connection: DENIED Redis is running in protected mode because protected mode is enabled and no password is set for the default user\\. ` +
    'Give its default user a password \\(requirepass\\) and put it in the URL, or set protected-mode no on a Redis that only the cluster can reach$',
);

before(async () => {
  sandbox = await createTestSandbox(1);
  // No bind and no password: protected mode refuses every address but loopback.
  redis = sandbox.underlay.spawn(['redis-server', '--port', '6379', '--save', '', '--appendonly', 'no', '--protected-mode', 'yes', '--dir', sandbox.options.workDir]);
  await sandbox.underlay.exec(['sh', '-c', 'for i in $(seq 50); do redis-cli -p 6379 ping >/dev/null 2>&1 && exit 0; sleep 0.1; done; exit 1']);
});

after(async () => {
  if (redis) await stopProcess(redis);
  if (sandbox) await destroyTestSandbox(sandbox);
});

test('the CLI says Redis refused the connection, why, and what to do, in one line, exit 1', async () => {
  const node = sandbox.nodes[0]!;
  const outcome = await node.ns.execForOutcome([process.execPath, cliBin, 'lease', 'list', '--redis-url', URL]);
  assert.equal(outcome.exitCode, 1);
  assert.equal(outcome.stdout, '');
  assert.match(outcome.stderr.trimEnd(), REFUSED);
});

test('the daemon does not wait out a refusal: it exits with the same line', async () => {
  const node = sandbox.nodes[0]!;
  await assert.rejects(startDaemon(node, leaseModeArgs(node, URL)), (err: Error) => {
    assert.match(err.message, /exited with 1: .*refused the connection: DENIED Redis is running in protected mode/);
    return true;
  });
});
