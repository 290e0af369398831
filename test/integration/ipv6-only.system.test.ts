// An IPv6-only cluster over an IPv6 underlay: the network config has no
// IPv4 side (EnableIPv4: false), the nodes' underlay interfaces hold no IPv4
// address, and they reach Redis, and each other, over IPv6 only. Every node
// runs the real miniflanneld, leases an IPv6 subnet (the lease's key), and
// pods made by the real CNI plugins get IPv6 addresses only and talk across
// it, in the clear and sealed with a cluster key.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { SANDBOX_REDIS_URL, SANDBOX_REDIS_URL6, UNDERLAY_GATEWAY, type Pod, type Sandbox } from '../../lab/cluster.js';
import { cliIn, leaseModeArgs, startDaemon, writtenConflist, type RunningDaemon } from '../../lab/daemon.js';
import { joinNode, tearDown } from '../harness/lease-cluster.js';
import { createTestSandbox } from '../harness/namespaces.js';
import { tcpTransfer } from '../harness/pod-traffic.js';

let sandbox: Sandbox;
const daemons: RunningDaemon[] = [];
const pods: Pod[] = [];
const NETWORK6 = 'fd00:10:244::/56';

/** Each node's subnet in its subnet.env: FLANNEL_IPV6_SUBNET is a subnet's first address and its length. */
function ipv6SubnetLine(text: string): string | undefined {
  return /^FLANNEL_IPV6_SUBNET=(.*)$/m.exec(text)?.[1];
}

before(async () => {
  sandbox = await createTestSandbox(3, { underlay6: true });
  await sandbox.startRedis({ persistence: true });
  await cliIn(sandbox.underlay, ['config', 'init', '--ipv6-network', NETWORK6, '--redis-url', SANDBOX_REDIS_URL]);
  for (const node of sandbox.nodes) {
    // Take the node's IPv4 underlay address away: from here on it has IPv6 only.
    await node.ns.ip('addr', 'del', `${node.underlayIp}/24`, 'dev', 'eth0');
    const { daemon, pod } = await joinNode(sandbox, node, leaseModeArgs(node, SANDBOX_REDIS_URL6), { healthzIp: node.underlayIp6 });
    daemons.push(daemon);
    pods.push(pod);
  }
});

after(() => tearDown(sandbox, daemons));

test('each node leases an IPv6 subnet as its key, published with its PublicIPv6 and no PublicIP, and writes IPv6-only node files', async () => {
  const list = JSON.parse(await cliIn(sandbox.underlay, ['lease', 'list', '--json', '--redis-url', SANDBOX_REDIS_URL]));
  assert.equal(list.leases.length, 3);
  for (const [i, daemon] of daemons.entries()) {
    const node = sandbox.nodes[i]!;
    const { lease, node: info } = await daemon.status();
    assert.match(lease!.subnet, /^fd00:10:244:[0-9a-f]{1,2}::\/64$/);
    assert.equal(lease!.ipv6Subnet, lease!.subnet);
    assert.equal(lease!.publicIP, undefined);
    assert.equal(lease!.publicIPv6, node.underlayIp6);
    assert.equal(info!.subnet, undefined, 'no IPv4 subnet');
    const listed = list.leases.find((l: { subnet: string }) => l.subnet === lease!.subnet);
    assert.deepEqual([listed.publicIP, listed.publicIPv6, listed.nodeName], [null, node.underlayIp6, node.ns.name]);

    const env = await readFile(path.join(node.workDir, 'run', 'subnet.env'), 'utf8');
    assert.doesNotMatch(env, /^FLANNEL_(NETWORK|SUBNET)=/m);
    assert.equal(ipv6SubnetLine(env), lease!.subnet.replace('::/64', '::1/64'));
    const conflist = await writtenConflist(node);
    assert.deepEqual(conflist.plugins[0].ipam.ranges, [[{ subnet: lease!.subnet }]]);
    assert.equal(conflist.plugins[0].mtu, 1452, 'the IPv6 underlay leaves 1500 - 48');
    // The TUN has no IPv4 address, and the IPv4 cluster route does not exist.
    const tunAddresses = await node.ns.exec(['ip', '-4', '-o', 'addr', 'show', 'dev', 'flannel0']);
    assert.equal(tunAddresses.trim(), '');
    assert.match(await node.ns.exec(['ip', '-6', 'route', 'show', NETWORK6]), /dev flannel0/);
  }
  for (const pod of pods) assert.ok(pod.ip.includes(':') && pod.ip === pod.ip6, `pod ${pod.ns.name} has IPv6 only: ${pod.ip}`);
  const table = await cliIn(sandbox.underlay, ['lease', 'list', '--redis-url', SANDBOX_REDIS_URL]);
  assert.deepEqual(table.split('\n')[0]!.trim().split(/\s{2,}/), ['SUBNET', 'PUBLIC IP', 'PUBLIC IPV6', 'NODE', 'BACKEND', 'EXPIRES IN']);
});

test('pods ping each other and move data intact over IPv6', async () => {
  const [p1, p2, p3] = pods as [Pod, Pod, Pod];
  for (const [from, to] of [[p1, p2], [p2, p3], [p3, p1]] as const) {
    await from.ns.exec(['ping', '-6', '-c', '2', '-i', '0.2', '-w', '5', to.ip]);
  }
  const { sent, received } = await tcpTransfer(p1, p3, 8 * 1024 * 1024, 5031);
  assert.equal(received.bytes, 8 * 1024 * 1024);
  assert.equal(received.sha256, sent.sha256);
  const counters = (await daemons[0]!.status()).counters!;
  assert.equal(counters.ingressDrops['unknown-sender'], 0);
  assert.ok(counters.tunPacketsWritten > 0);
});

test('a node restarted after the store lost its data gets its IPv6 subnet back from its subnet.env', async () => {
  const node = sandbox.nodes[1]!;
  const before = (await daemons[1]!.status()).lease!.subnet;
  await daemons[1]!.stop();
  // The store forgets every lease; the running nodes put theirs back, this one has only its subnet.env.
  await sandbox.underlay.exec(['redis-cli', '-h', UNDERLAY_GATEWAY, 'FLUSHALL']);
  daemons[1] = await startDaemon(node, leaseModeArgs(node, SANDBOX_REDIS_URL6), { healthzIp: node.underlayIp6 });
  assert.equal((await daemons[1]!.status()).lease!.subnet, before);
  assert.match(await readFile(daemons[1]!.logFile, 'utf8'), /"source":"previous".*"msg":"lease acquired"/);
  await pods[0]!.ns.exec(['ping', '-6', '-c', '2', '-i', '0.2', '-w', '5', pods[1]!.ip]);
});

test('with a cluster key, seals name each node by its subnet: the nodes that share the key talk, the one with another key is shut out', async () => {
  const keyFile = path.join(sandbox.options.workDir, 'cluster-key');
  const otherKeyFile = path.join(sandbox.options.workDir, 'other-key');
  await writeFile(keyFile, `${randomBytes(32).toString('base64')}\n`, { mode: 0o600 });
  await writeFile(otherKeyFile, `${randomBytes(32).toString('base64')}\n`, { mode: 0o600 });
  for (const [i, node] of sandbox.nodes.entries()) {
    await daemons[i]!.stop();
    daemons[i] = await startDaemon(node, [...leaseModeArgs(node, SANDBOX_REDIS_URL6), '--auth-key-file', i === 2 ? otherKeyFile : keyFile], { healthzIp: node.underlayIp6 });
  }
  const [p1, p2, p3] = pods as [Pod, Pod, Pod];
  await p1.ns.exec(['ping', '-6', '-c', '2', '-i', '0.2', '-w', '5', p2.ip]);
  await p2.ns.exec(['ping', '-6', '-c', '2', '-i', '0.2', '-w', '5', p1.ip]);
  const outcome = await p1.ns.execForOutcome(['ping', '-6', '-c', '2', '-i', '0.2', '-w', '2', p3.ip]);
  assert.notEqual(outcome.exitCode, 0, 'the node behind another key is unreachable');
  const shutOut = (await daemons[2]!.status()).counters!;
  assert.ok(shutOut.ingressDrops.unauthenticated >= 2, `node 3 refused ${shutOut.ingressDrops.unauthenticated} datagrams`);
  assert.equal(shutOut.tunPacketsWritten, 0);
  const inside = (await daemons[1]!.status()).counters!;
  assert.equal(inside.ingressDrops.unauthenticated, 0);
  assert.equal(inside.ingressDrops.replayed, 0);
});
