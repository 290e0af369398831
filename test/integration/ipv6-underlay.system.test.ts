// A dual-stack cluster whose nodes send to each other over IPv6: every node
// runs the real miniflanneld with --underlay ipv6 and its 2001:2::/64
// underlay address as --public-ipv6, leases from Redis, and pods made by
// the real CNI plugins carry IPv4 and IPv6 across it, in the clear and
// sealed with a cluster key.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { SANDBOX_REDIS_URL, type Pod, type Sandbox } from '../../lab/cluster.js';
import { leaseModeArgs, startDaemon, writtenConflist, type RunningDaemon } from '../../lab/daemon.js';
import { snmp, snmp6 } from '../../lab/snmp.js';
import { joinNode, storeNetworkConfig, tearDown } from '../harness/lease-cluster.js';
import { createTestSandbox } from '../harness/namespaces.js';
import { tcpTransfer } from '../harness/pod-traffic.js';

let sandbox: Sandbox;
const daemons: RunningDaemon[] = [];
const pods: Pod[] = [];

before(async () => {
  sandbox = await createTestSandbox(3, { underlay6: true });
  await sandbox.startRedis({ persistence: true });
  await storeNetworkConfig(sandbox, { Network: '10.244.0.0/16', EnableIPv6: true, IPv6Network: 'fd00:10:244::/56' });
  for (const node of sandbox.nodes) {
    const { daemon, pod } = await joinNode(sandbox, node, leaseModeArgs(node, SANDBOX_REDIS_URL));
    daemons.push(daemon);
    pods.push(pod);
  }
});

after(() => tearDown(sandbox, daemons));

test("every node publishes its IPv6 underlay address and sends to the others' at their IPv6 endpoints", async () => {
  for (const [i, daemon] of daemons.entries()) {
    const status = await daemon.status();
    assert.equal(status.lease!.publicIPv6, sandbox.nodes[i]!.underlayIp6);
    const others = sandbox.nodes.filter((_, k) => k !== i).map((n) => `[${n.underlayIp6}]:8285`);
    assert.deepEqual(status.peers.map((p) => p.endpoint).sort(), others.sort());
  }
  // The overlay MTU leaves room for the 40-byte IPv6 header: 1500 - 48.
  assert.equal((await writtenConflist(sandbox.nodes[0]!)).plugins[0].mtu, 1452);
});

test('pods ping and move data intact over both families, and the datagrams travel over IPv6', async () => {
  const node1 = sandbox.nodes[0]!;
  const [before4, before6] = [await snmp(node1.ns), await snmp6(node1.ns)];
  const [p1, p2, p3] = pods as [Pod, Pod, Pod];
  for (const [from, to] of [[p1, p2], [p2, p3], [p3, p1]] as const) {
    await from.ns.exec(['ping', '-c', '2', '-i', '0.2', '-W', '2', to.ip]);
    await from.ns.exec(['ping', '-6', '-c', '2', '-i', '0.2', '-w', '5', to.ip6!]);
  }
  for (const [from, to, address] of [[p1, p2, p2.ip], [p1, p3, p3.ip6!]] as const) {
    const { sent, received } = await tcpTransfer(from, to, 8 * 1024 * 1024, 5021, address);
    assert.equal(received.bytes, 8 * 1024 * 1024);
    assert.equal(received.sha256, sent.sha256, `${address}`);
  }
  const [after4, after6] = [await snmp(node1.ns), await snmp6(node1.ns)];
  // Two 8 MiB transfers leave node 1 as thousands of datagrams, in UDP GSO trains that the
  // kernel counts one send each; over IPv4 UDP node 1 sent next to nothing meanwhile.
  const sent6 = after6.Udp6OutDatagrams! - before6.Udp6OutDatagrams!;
  const sent4 = after4.Udp!.OutDatagrams! - before4.Udp!.OutDatagrams!;
  assert.ok(sent6 > 200, `UDP sends over IPv6 from node 1: ${sent6}`);
  assert.ok(sent4 < sent6 / 10, `UDP sends over IPv4 from node 1: ${sent4}, over IPv6 ${sent6}`);
  const counters = (await daemons[0]!.status()).counters!;
  assert.equal(counters.ingressDrops['unknown-sender'], 0);
});

test('with a cluster key, the IPv6 underlay carries only sealed datagrams: a node with another key is shut out', async () => {
  const keyFile = path.join(sandbox.options.workDir, 'cluster-key');
  const otherKeyFile = path.join(sandbox.options.workDir, 'other-key');
  await writeFile(keyFile, `${randomBytes(32).toString('base64')}\n`, { mode: 0o600 });
  await writeFile(otherKeyFile, `${randomBytes(32).toString('base64')}\n`, { mode: 0o600 });
  for (const [i, node] of sandbox.nodes.entries()) {
    await daemons[i]!.stop();
    daemons[i] = await startDaemon(node, [...leaseModeArgs(node, SANDBOX_REDIS_URL), '--auth-key-file', i === 2 ? otherKeyFile : keyFile]);
  }
  const [p1, p2, p3] = pods as [Pod, Pod, Pod];
  await p1.ns.exec(['ping', '-c', '2', '-i', '0.2', '-W', '2', p2.ip]);
  await p1.ns.exec(['ping', '-6', '-c', '2', '-i', '0.2', '-w', '5', p2.ip6!]);
  for (const address of [p3.ip, p3.ip6!]) {
    const outcome = await p1.ns.execForOutcome(['ping', '-c', '2', '-i', '0.2', '-W', '1', address]);
    assert.notEqual(outcome.exitCode, 0, `${address} behind another key`);
  }
  const shutOut = (await daemons[2]!.status()).counters!;
  assert.ok(shutOut.ingressDrops.unauthenticated >= 4, `node 3 refused ${shutOut.ingressDrops.unauthenticated} datagrams`);
  assert.equal(shutOut.tunPacketsWritten, 0);
  assert.equal((await daemons[1]!.status()).counters!.ingressDrops.unauthenticated, 0);
});
