// Daemons that die without cleaning up (SIGKILL): the restarted daemon has
// its pods working again within seconds and leaves nothing doubled; leftovers
// that outlive a crash are removed by the successor; a node that stays dead
// drops out of its peers' tables when its lease expires. Leases here live
// 10 s and are renewed every 4 s.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { SANDBOX_REDIS_URL, type SandboxNode } from '../../lab/cluster.js';
import { leaseModeArgs, waitFor, type RunningDaemon } from '../../lab/daemon.js';
import { exited } from '../../lab/exec.js';
import { daemonLog, leftoversIn, statusLease, TestCluster, waitForPeers, type Leftovers } from './harness.js';

const LEASE_TTL_MS = 10_000;
let cluster: TestCluster;

before(async () => {
  cluster = await TestCluster.create(3, SANDBOX_REDIS_URL, ['--lease-ttl', `${LEASE_TTL_MS / 1000}s`, '--lease-renew-margin', '6s']);
  await cluster.sandbox.startRedis({ persistence: false });
  await cluster.join();
});

after(async () => {
  await cluster?.destroy();
});

/** SIGKILL by pid: no handler runs, nothing is cleaned up. */
async function crash(daemon: RunningDaemon): Promise<void> {
  daemon.process.kill('SIGKILL');
  await exited(daemon.process);
}

const pingOnce = (from: number, to: number) => cluster.pod(from).ns.execForOutcome(['ping', '-c', '1', '-W', '1', cluster.pod(to).ip]);

/** Restarts node `index`'s daemon and measures until a pod on another node reaches its pod again. */
async function restartUntilPodsWork(index: number, extra: readonly string[] = [], base?: string[]): Promise<{ daemon: RunningDaemon; ms: number }> {
  const startedAt = Date.now();
  const daemon = await cluster.startDaemon(cluster.node(index), extra, base);
  await waitFor(`pods to reach node ${index}'s pod again`, async () => (await pingOnce(1, index)).exitCode === 0 && (await pingOnce(index, 1)).exitCode === 0, 30_000);
  return { daemon, ms: Date.now() - startedAt };
}

const without = (args: string[], flag: string) => args.filter((a) => a !== flag);

test('SIGKILL, then restart: pods work again within seconds, with the same subnet and no doubled route or rule', async (t) => {
  const node = cluster.node(2);
  const clean: Leftovers = await leftoversIn(node);
  assert.ok(clean.tun && clean.rules.length > 0, 'the running daemon has its TUN and rules');
  const { subnet } = await statusLease(cluster.daemon(2));

  const killedAt = Date.now();
  await crash(cluster.daemon(2));
  const crashed = await leftoversIn(node);
  assert.equal(crashed.tun, false, 'the kernel removed the TUN with its last file descriptor');
  assert.deepEqual(crashed.rules, clean.rules, 'the masquerade rules outlive the crash');
  assert.notEqual((await pingOnce(1, 2)).exitCode, 0, 'the pod is unreachable while its daemon is down');

  const { ms } = await restartUntilPodsWork(2);
  t.diagnostic(`restart to pods working: ${ms} ms (kill to working: ${Date.now() - killedAt} ms)`);
  assert.equal((await statusLease(cluster.daemon(2))).subnet, subnet, 'the lease was reused');
  assert.deepEqual(await leftoversIn(node), clean, 'exactly the TUN, routes and rules of one daemon');
});

test('a TUN device and masquerade rules that outlived a crashed daemon are removed by its successor', async (t) => {
  const node: SandboxNode = cluster.node(2);
  await crash(cluster.daemon(2));
  // As if the predecessor had made its TUN persistent; the kill left the masquerade chain too.
  await node.ns.ip('tuntap', 'add', 'dev', 'flannel0', 'mode', 'tun');
  const stale = await leftoversIn(node);
  assert.ok(stale.tun && stale.rules.length > 0, 'leftovers in place');

  const base = without(leaseModeArgs(node, SANDBOX_REDIS_URL), '--ip-masq');
  const { daemon, ms } = await restartUntilPodsWork(2, [], base);
  t.diagnostic(`restart over leftovers to pods working: ${ms} ms`);
  const log = await daemonLog(daemon);
  assert.ok(log.some((l) => l.msg === 'removing a TUN device left by a previous run'));
  assert.ok(log.some((l) => /^removing masquerade rules left by a previous run/.test(l.msg)));
  assert.deepEqual((await leftoversIn(node)).rules, [], 'without --ip-masq no rule remains');

  assert.equal(await daemon.stop(), 0);
  assert.deepEqual(await leftoversIn(node), { tun: false, routes: [], rules: [] }, 'the stop removed everything, the persistent device included');
  await restartUntilPodsWork(2);
});

test('a dead node: its peers keep its route until its lease expires, then drop it (net unreachable)', async (t) => {
  const dead = await statusLease(cluster.daemon(3));
  await crash(cluster.daemon(3));
  const killedAt = Date.now();
  for (const i of [1, 2]) assert.equal((await cluster.daemon(i).status()).peers.length, 2, `node ${i} still routes to the dead node's subnet`);

  for (const i of [1, 2]) await waitForPeers(cluster, i, 1, LEASE_TTL_MS + 30_000);
  const droppedAt = Date.now();
  t.diagnostic(`peers dropped the dead node ${droppedAt - killedAt} ms after the kill (its lease expired ${dead.expiresAt - killedAt} ms after it)`);
  assert.ok(droppedAt >= dead.expiresAt, 'not before the lease expired');
  const outcome = await pingOnce(1, 3);
  assert.notEqual(outcome.exitCode, 0);
  assert.match(outcome.stdout, /Destination Net Unreachable/);
  const listed = JSON.parse(await cluster.cli(['lease', 'list', '--json'])).leases as Array<{ subnet: string }>;
  assert.ok(!listed.some((l) => l.subnet === dead.subnet), 'the expired lease is gone from the store');

  // The node comes back: it asks for its old subnet (subnet.env) and its peers take it in again.
  await restartUntilPodsWork(3);
  assert.equal((await statusLease(cluster.daemon(3))).subnet, dead.subnet);
  for (const i of [1, 2]) await waitForPeers(cluster, i, 2);
});

test('after the final stop nothing remains on any node: no TUN, no route, no rule', async () => {
  for (const node of cluster.sandbox.nodes) {
    assert.equal(await cluster.daemons.get(node)!.stop(), 0);
    assert.deepEqual(await leftoversIn(node), { tun: false, routes: [], rules: [] }, node.ns.name);
  }
});
