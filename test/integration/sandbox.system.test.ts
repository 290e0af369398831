// The main job, scripted: `sandbox up --detach`, `status`, `down`, run as
// the README's newcomer would run them, through the built CLI.
import { after, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { readdir } from 'node:fs/promises';
import { run, runForOutcome } from '../../lab/exec.js';
import { alive } from '../../lab/netns.js';
import { cliBin } from '../../lab/paths.js';

const cli = (...args: string[]) => runForOutcome([process.execPath, cliBin, 'sandbox', ...args], { timeoutMs: 240_000 });
const namespacesOf = async (pid: number) => (await readdir('/run/netns').catch(() => [])).filter((name) => name.startsWith(`mf${pid}x`));

describe('sandbox up --detach, status, down', () => {
  let upPid: number | undefined;
  after(async () => {
    // A failed assertion must not leave the background sandbox running.
    if (upPid !== undefined && alive(upPid)) await cli('down', '--pid', String(upPid));
  });

  it('builds a ready cluster in the background, reports it, and removes every trace on down', async () => {
    const started = await cli('up', '--detach', '--nodes', '2');
    // Known before any assertion, so that after() stops the sandbox whatever fails.
    upPid = Number(/running in the background as pid (\d+)/.exec(started.stdout)?.[1]);
    assert.equal(started.exitCode, 0, started.stderr);
    assert.ok(upPid > 0 && alive(upPid), started.stdout);
    assert.match(started.stdout, /10\.244\.\d+\.2 -> 10\.244\.\d+\.2 {2}ok/);
    assert.match(started.stdout, /fd00:10:244:[0-9a-f]+::2 -> fd00:10:244:[0-9a-f]+::2 {2}ok/, 'the sandbox is dual-stack');
    assert.match(started.stdout, /SUBNET\s+IPV6 SUBNET\s+PUBLIC IP\s+PUBLIC IPV6\s+NODE/);

    const status = await cli('status', '--json');
    assert.equal(status.exitCode, 0, status.stderr);
    const mine = (JSON.parse(status.stdout) as { pid: number; nodes: { ready: boolean; subnet: string; ipv6Subnet: string }[] }[]).find((s) => s.pid === upPid);
    assert.ok(mine, status.stdout);
    assert.equal(mine.nodes.length, 2);
    assert.ok(mine.nodes.every((node) => node.ready), status.stdout);
    assert.notEqual(mine.nodes[0]!.subnet, mine.nodes[1]!.subnet);
    assert.notEqual(mine.nodes[0]!.ipv6Subnet, mine.nodes[1]!.ipv6Subnet);
    assert.ok((await namespacesOf(upPid)).length >= 5, 'underlay, two nodes and two pods');

    const stopped = await cli('down', '--pid', String(upPid));
    assert.equal(stopped.exitCode, 0, stopped.stderr);
    assert.equal(alive(upPid), false);
    assert.deepEqual(await namespacesOf(upPid), []);
    const after = await cli('status', '--json');
    assert.equal((JSON.parse(after.stdout) as { pid: number }[]).some((s) => s.pid === upPid), false);
    // Redis and the daemons ran inside the namespaces; nothing of ours is left listening.
    assert.doesNotMatch(await run(['ps', '-eo', 'args']), new RegExp(`mf${upPid}x`));
  });
});
