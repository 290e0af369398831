// A dual-stack cluster whose nodes do not all share an underlay family:
// node 1 has both (--underlay dual), node 2 has IPv6 only (its interface
// holds no IPv4 address; --underlay ipv6), node 3 sends over IPv4 only,
// though it publishes its IPv6 address as a dual-stack node does. Node 1
// reaches node 2 over IPv6 and node 3 over IPv4, whichever the two share;
// nodes 2 and 3 share none, and leave each other out, saying why. Real
// daemons, Redis, CNI plugins and pods throughout.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { SANDBOX_REDIS_URL, SANDBOX_REDIS_URL6, type Pod, type Sandbox, type SandboxNode } from '../../lab/cluster.js';
import { leaseModeArgs, writtenConflist, type RunningDaemon } from '../../lab/daemon.js';
import { joinNode, storeNetworkConfig, tearDown } from '../harness/lease-cluster.js';
import { createTestSandbox } from '../harness/namespaces.js';
import { tcpTransfer } from '../harness/pod-traffic.js';

let sandbox: Sandbox;
const daemons: RunningDaemon[] = [];
const pods: Pod[] = [];

/** The DaemonSet flags of `node` (which send over IPv6), with `--underlay` set to `underlay`. */
function argsFor(node: SandboxNode, underlay: 'dual' | 'ipv6' | 'ipv4', redisUrl: string): string[] {
  const args = leaseModeArgs(node, redisUrl);
  const at = args.indexOf('--underlay');
  return args.map((arg, i) => (i === at + 1 ? underlay : arg));
}

before(async () => {
  sandbox = await createTestSandbox(3, { underlay6: true });
  await sandbox.startRedis({ persistence: true });
  await storeNetworkConfig(sandbox, { Network: '10.244.0.0/16', EnableIPv6: true, IPv6Network: 'fd00:10:244::/56' });
  const [n1, n2, n3] = sandbox.nodes as [SandboxNode, SandboxNode, SandboxNode];
  await n2.ns.ip('addr', 'del', `${n2.underlayIp}/24`, 'dev', 'eth0');
  for (const [node, underlay, url, healthzIp] of [[n1, 'dual', SANDBOX_REDIS_URL], [n2, 'ipv6', SANDBOX_REDIS_URL6, n2.underlayIp6], [n3, 'ipv4', SANDBOX_REDIS_URL]] as const) {
    const { daemon, pod } = await joinNode(sandbox, node, argsFor(node, underlay, url), healthzIp === undefined ? {} : { healthzIp });
    daemons.push(daemon);
    pods.push(pod);
  }
});

after(() => tearDown(sandbox, daemons));

test('each pair of nodes uses the underlay family both have, and a pair with none leaves each other out, saying why', async () => {
  const [d1, d2, d3] = daemons as [RunningDaemon, RunningDaemon, RunningDaemon];
  const endpoints = async (daemon: RunningDaemon) => (await daemon.status()).peers.map((p) => p.endpoint).sort();
  assert.deepEqual(await endpoints(d1), ['198.18.0.3:8285', '[2001:2::2]:8285']);
  assert.deepEqual(await endpoints(d2), ['[2001:2::1]:8285']);
  assert.deepEqual(await endpoints(d3), ['198.18.0.1:8285']);
  // A dual node may send anything over IPv6, so its overlay leaves room for the 40-byte header: 1500 - 48.
  assert.deepEqual(await Promise.all(sandbox.nodes.map(async (n) => (await writtenConflist(n)).plugins[0].mtu)), [1452, 1452, 1472]);
  const [lease1, lease2, lease3] = [(await d1.status()).lease!, (await d2.status()).lease!, (await d3.status()).lease!];
  assert.deepEqual([lease1.publicIP, lease1.publicIPv6], ['198.18.0.1', '2001:2::1']);
  assert.deepEqual([lease2.publicIP, lease2.publicIPv6], [undefined, '2001:2::2'], 'node 2 has no IPv4 underlay address');
  assert.deepEqual([lease3.publicIP, lease3.publicIPv6], ['198.18.0.3', '2001:2::3'], 'node 3 publishes the IPv6 address it does not listen on');
  assert.match(await readFile(d2.logFile, 'utf8'), /"reason":"it shares no underlay family with this node \(--underlay ipv6\): it listens on IPv4 and publishes a PublicIP and a PublicIPv6".*"msg":"lease skipped"/);
  assert.match(await readFile(d3.logFile, 'utf8'), /"reason":"its node publishes no PublicIP, and this node sends over an IPv4 underlay".*"msg":"lease skipped"/);
});

test('pods on nodes that share a family talk over both pod families; those on nodes that share none cannot', async () => {
  const [p1, p2, p3] = pods as [Pod, Pod, Pod];
  for (const [from, to] of [[p1, p2], [p2, p1], [p1, p3], [p3, p1]] as const) {
    await from.ns.exec(['ping', '-c', '2', '-i', '0.2', '-W', '2', to.ip]);
    await from.ns.exec(['ping', '-6', '-c', '2', '-i', '0.2', '-w', '5', to.ip6!]);
  }
  for (const [from, to, port] of [[p2, p1, 5041], [p3, p1, 5042]] as const) {
    const { sent, received } = await tcpTransfer(from, to, 4 * 1024 * 1024, port);
    assert.equal(received.sha256, sent.sha256, `${from.ns.name} to ${to.ns.name}`);
  }
  const cut = await p2.ns.execForOutcome(['ping', '-c', '2', '-i', '0.2', '-W', '1', p3.ip]);
  assert.notEqual(cut.exitCode, 0, 'node 2 has no route to node 3');
  const counters = (await daemons[1]!.status()).counters!;
  assert.ok(counters.egressDrops['no-route'] >= 2, `node 2 dropped ${counters.egressDrops['no-route']} packets for node 3 as no-route`);
  assert.equal((await daemons[0]!.status()).counters!.ingressDrops['unknown-sender'], 0);
});
