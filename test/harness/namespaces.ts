// Test namespaces: named with this run's prefix, stale ones from dead runs
// removed first, and all of them deleted when the test file ends, on failure too.
import { after } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { Netns, removeStaleNamespaces, runPrefix } from '../../lab/netns.js';
import { Sandbox } from '../../lab/cluster.js';
import { run } from '../../lab/exec.js';

let counter = 0;

/** A fresh, uniquely named namespace, deleted after the current test file. */
export async function testNamespace(): Promise<Netns> {
  await removeStaleNamespaces();
  const ns = await Netns.create(`${runPrefix()}t${++counter}`);
  after(() => ns.destroy());
  return ns;
}

/**
 * A sandbox cluster with `nodes` nodes. The caller destroys it in its
 * `after` hook (after stopping what runs in it). Node 20 runs top-level
 * hooks as soon as they are registered, so one `before` must create it and
 * start what depends on it, in order.
 */
export async function createTestSandbox(nodes: number, options: { underlay6?: boolean } = {}): Promise<Sandbox> {
  await removeStaleNamespaces();
  const workDir = await mkdtemp(path.join(tmpdir(), 'miniflannel-test-'));
  const sandbox = await Sandbox.create({ workDir, prefix: `${runPrefix()}s${++counter}`, ...options });
  try {
    for (let i = 0; i < nodes; i++) await sandbox.addNode();
  } catch (err) {
    await sandbox.destroy();
    throw err;
  }
  return sandbox;
}

/** Destroys a test sandbox and asserts that none of its namespaces is left behind. */
export async function destroyTestSandbox(sandbox: Sandbox): Promise<void> {
  const prefix = sandbox.underlay.name.replace(/ul$/, '');
  await sandbox.destroy();
  const left = (await run(['ip', 'netns', 'list'])).split('\n').filter((line) => line.startsWith(prefix));
  assert.deepEqual(left, [], 'namespaces left behind');
}
