// A dual-stack cluster end to end: Redis on the underlay, a network config
// with an IPv6 network beside the IPv4 one set with the CLI, the real
// miniflanneld on three nodes with a DaemonSet's flags, and pods made by the
// real CNI plugins from the conflist each daemon wrote, each pod with one
// address of each family. The underlay stays IPv4.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { formatIPv4 } from '../../daemon/net/ipv4.js';
import { cidr6Contains, parseCidr6, parseIPv6 } from '../../daemon/net/ipv6.js';
import { SANDBOX_REDIS_URL, type Pod, type Sandbox } from '../../lab/cluster.js';
import { cliIn, leaseModeArgs, waitFor, writtenConflist, type RunningDaemon } from '../../lab/daemon.js';
import { stopProcess } from '../../lab/exec.js';
import { joinNode, storeNetworkConfig, tearDown } from '../harness/lease-cluster.js';
import { createTestSandbox } from '../harness/namespaces.js';
import { ipv4Packet, udpPayload } from '../harness/packets.js';
import { compiledTest } from '../harness/paths.js';
import { listenUdp, sendDatagrams, tcpTransfer } from '../harness/pod-traffic.js';
import { EXT_DESTINATION_OPTIONS, ipv6Packet, optionsHeader, udp6 } from '../dataplane/ipv6-packets.js';
import type { IngressDropReason } from '../../daemon/dataplane/index.js';

const NETWORK = '10.244.0.0/16';
const IPV6_NETWORK = 'fd00:10:244::/56';
let sandbox: Sandbox;
const daemons: RunningDaemon[] = [];
const pods: Pod[] = [];

const ping6 = (from: Pod, to: string, ...extra: string[]) => from.ns.exec(['ping', '-6', '-c', '2', '-i', '0.2', '-W', '2', ...extra, to]);

before(async () => {
  sandbox = await createTestSandbox(3);
  await sandbox.startRedis({ persistence: true });
  // Nodes lease from 10.244.1.0 to 10.244.199.0 only, so the tests below have subnets of both families no node holds.
  await storeNetworkConfig(sandbox, { Network: NETWORK, SubnetMax: '10.244.199.0', EnableIPv6: true, IPv6Network: IPV6_NETWORK });
  for (const node of sandbox.nodes) {
    const { daemon, pod } = await joinNode(sandbox, node, leaseModeArgs(node, SANDBOX_REDIS_URL));
    daemons.push(daemon);
    pods.push(pod);
  }
});

after(() => tearDown(sandbox, daemons));

/** The node's two subnets as its daemon reports them. */
async function subnetsOf(daemon: RunningDaemon): Promise<{ subnet: string; subnet6: string }> {
  const lease = (await daemon.status()).lease!;
  assert.ok(lease.ipv6Subnet, `the daemon on ${daemon.node.ns.name} reports an IPv6 subnet`);
  return { subnet: lease.subnet, subnet6: lease.ipv6Subnet };
}

test('every node holds an IPv6 subnet paired with its IPv4 one, and its pods get an address of each family', async () => {
  const seen = new Set<string>();
  for (const [i, node] of sandbox.nodes.entries()) {
    const { subnet, subnet6 } = await subnetsOf(daemons[i]!);
    const k = Number(subnet.split('.')[2]);
    assert.equal(subnet6, `fd00:10:244:${k.toString(16)}::/64`, 'the k-th IPv4 subnet pairs with the k-th IPv6 subnet');
    seen.add(subnet6);
    const env = await readFile(path.join(node.workDir, 'run', 'subnet.env'), 'utf8');
    assert.match(env, /^FLANNEL_NETWORK=10\.244\.0\.0\/16$/m);
    assert.match(env, /^FLANNEL_IPV6_NETWORK=fd00:10:244::\/56$/m);
    assert.match(env, new RegExp(`^FLANNEL_IPV6_SUBNET=fd00:10:244:${k.toString(16)}::1/64$`, 'm'));
    const pod = pods[i]!;
    assert.ok(pod.ip6, `pod on ${node.ns.name} got an IPv6 address`);
    assert.ok(cidr6Contains(parseCidr6(subnet6), parseIPv6(pod.ip6)), `${pod.ip6} lies in ${subnet6}`);
    const routes = await pod.ns.exec(['ip', '-6', 'route', 'show']);
    assert.match(routes, /^fd00:10:244::\/56 via fd00:10:244:[0-9a-f]+::1 dev eth0/m, 'the pod routes the IPv6 cluster network via its bridge');
    const tun = await node.ns.ip('-6', 'route', 'show', 'dev', 'flannel0');
    assert.match(tun, /^fd00:10:244::\/56 /m, 'the node routes the IPv6 cluster network into the TUN');
  }
  assert.equal(seen.size, 3);
});

test('every pod pair pings over IPv4 and over IPv6', async () => {
  for (const from of pods) {
    for (const to of pods) {
      if (from === to) continue;
      await from.ns.exec(['ping', '-c', '2', '-i', '0.2', '-W', '2', to.ip]);
      await ping6(from, to.ip6!);
    }
  }
});

test('a TCP transfer over IPv6 arrives with a matching SHA-256', async () => {
  const [p1, p2, p3] = pods as [Pod, Pod, Pod];
  for (const [from, to] of [[p1, p2], [p3, p1]] as const) {
    const { sent, received } = await tcpTransfer(from, to, 16 * 1024 * 1024, 5012, to.ip6!);
    assert.equal(received.bytes, 16 * 1024 * 1024);
    assert.equal(received.sha256, sent.sha256, `${from.ip6} -> ${to.ip6}`);
  }
});

test('an IPv6 destination no node leases gets ICMPv6 no route from the node', async () => {
  const before = (await daemons[0]!.status()).counters!;
  const outcome = await pods[0]!.ns.execForOutcome(['ping', '-6', '-c', '1', '-W', '2', 'fd00:10:244:ff::1']);
  assert.notEqual(outcome.exitCode, 0);
  assert.match(outcome.stdout, /From fd00:10:244:[0-9a-f]+::\S* icmp_seq=1 Destination unreachable: No route/);
  const after = (await daemons[0]!.status()).counters!;
  assert.ok(after.egressDrops['no-route'] > before.egressDrops['no-route']);
  assert.ok(after.icmpErrorsSent > before.icmpErrorsSent);
});

test('a pod whose link is wider than the overlay learns the IPv6 path MTU, and its TCP transfer adapts', async () => {
  const node = sandbox.nodes[0]!;
  const conflist = await writtenConflist(node);
  const wide = await sandbox.addPod(node, { ...conflist, plugins: conflist.plugins.map((p: { type: string }) => (p.type === 'bridge' ? { ...p, mtu: 1500 } : p)) });
  try {
    const target = pods[1]!;
    const big = await wide.ns.execForOutcome(['ping', '-6', '-c', '1', '-W', '2', '-M', 'do', '-s', String(1500 - 48), target.ip6!]);
    assert.notEqual(big.exitCode, 0);
    assert.match(big.stdout + big.stderr, /Packet too big: mtu=1472|mtu=1472|message too long, mtu: 1472/i);
    const { sent, received } = await tcpTransfer(wide, target, 4 * 1024 * 1024, 5013, target.ip6!);
    assert.equal(received.sha256, sent.sha256);
    assert.match(await wide.ns.exec(['ip', '-6', 'route', 'get', target.ip6!]), /mtu 1472/, 'the pod cached the path MTU');
  } finally {
    await sandbox.removePod(wide);
  }
});

test('lease list shows both subnets of every node', async () => {
  const listing = JSON.parse(await cliIn(sandbox.underlay, ['lease', 'list', '--json', '--redis-url', SANDBOX_REDIS_URL]));
  const leases: Array<{ subnet: string; ipv6Subnet: string }> = Array.isArray(listing) ? listing : listing.leases;
  const expected = await Promise.all(daemons.map((d) => subnetsOf(d)));
  assert.deepEqual(
    leases.map((l) => `${l.subnet} ${l.ipv6Subnet}`).sort(),
    expected.map((e) => `${e.subnet} ${e.subnet6}`).sort(),
  );
});

test('a node that speaks flannel\'s IPv4 wire format interoperates unchanged: bare IPv4 packets in datagrams, both ways', async () => {
  // Node 4 runs no daemon: the test speaks for it with hand-made datagrams, as flannel's UDP backend would send them.
  const flannelNode = await sandbox.addNode();
  const flannelSubnet = '10.244.250.0/24';
  await cliIn(sandbox.underlay, ['lease', 'reserve', flannelSubnet, '--public-ip', flannelNode.underlayIp, '--node', 'flannel-node', '--redis-url', SANDBOX_REDIS_URL]);
  const [node1, pod1] = [sandbox.nodes[0]!, pods[0]!];
  await waitFor('node 1 to route to the flannel node', async () => (await daemons[0]!.status()).peers.some((p) => p.subnet === flannelSubnet));

  // miniflannel -> flannel: the datagram is the bare IPv4 packet, sent from port 8285 to port 8285.
  const wire = flannelNode.ns.spawn([process.execPath, compiledTest('harness/udp-probe.js'), 'listen', flannelNode.underlayIp, '8285', 'hex']);
  try {
    const lines = createInterface({ input: wire.stdout! })[Symbol.asyncIterator]();
    assert.equal((await lines.next()).value, 'listening');
    await pod1.ns.exec([process.execPath, '-e', `const s = require('dgram').createSocket('udp4'); s.send('to-flannel', 7000, '10.244.250.5', () => s.close())`]);
    const { hex, from } = JSON.parse((await lines.next()).value) as { hex: string; from: string };
    const packet = Buffer.from(hex, 'hex');
    assert.equal(from, `${node1.underlayIp}:8285`);
    assert.equal(packet[0], 0x45, 'an IPv4 header with no options, nothing before it');
    assert.equal(packet.readUInt16BE(2), packet.length, 'the datagram is exactly the packet');
    assert.equal(packet[9], 17);
    assert.equal(formatIPv4(packet.readUInt32BE(12)), pod1.ip);
    assert.equal(formatIPv4(packet.readUInt32BE(16)), '10.244.250.5');
    assert.equal(packet.subarray(28).toString(), 'to-flannel');
  } finally {
    await stopProcess(wire);
  }

  // flannel -> miniflannel: a bare IPv4 packet from the flannel node's subnet reaches the pod.
  const listener = await listenUdp(pod1, 6001);
  try {
    const inner = ipv4Packet({ source: '10.244.250.5', destination: pod1.ip, payload: udpPayload('from-flannel', 7000, 6001) });
    await sendDatagrams(flannelNode, 8285, { ip: node1.underlayIp, port: 8285 }, [inner.toString('hex')]);
    await waitFor('the datagram from the flannel node', async () => listener.received.includes('from-flannel'));
  } finally {
    await listener.stop();
  }
});

test('IPv6 from a known peer reaches a pod only when well formed, from its own IPv6 subnet and for ours; every drop is counted by reason', async () => {
  // The flannel node of the test above is a peer whose lease pairs 10.244.250.0/24 with fd00:10:244:fa::/64.
  const flannelNode = sandbox.nodes[3]!;
  const [node1, pod1] = [sandbox.nodes[0]!, pods[0]!];
  const peerPod = 'fd00:10:244:fa::5';
  const listener = await listenUdp(pod1, 6002, pod1.ip6!);
  try {
    const before = (await daemons[0]!.status()).counters!;
    const datagram = (packet: Buffer) => packet.toString('hex');
    const send = (bindPort: number, ...packets: Buffer[]) => sendDatagrams(flannelNode, bindPort, { ip: node1.underlayIp, port: 8285 }, packets.map(datagram));
    const tooManyExtensions = Array.from({ length: 9 }, () => optionsHeader(EXT_DESTINATION_OPTIONS));
    await send(9999, udp6(peerPod, pod1.ip6!, Buffer.from('from-a-stranger-port'), [7000, 6002]));
    await send(
      8285,
      udp6(pods[1]!.ip6!, pod1.ip6!, Buffer.from('spoofed-source'), [7000, 6002]),
      udp6(peerPod, pods[1]!.ip6!, Buffer.from('wrong-destination'), [7000, 6002]),
      udp6(peerPod, pod1.ip6!, Buffer.from('truncated'), [7000, 6002]).subarray(0, 30),
      ipv6Packet({ source: peerPod, destination: pod1.ip6!, extensions: tooManyExtensions, upper: Buffer.from('too-many-extension-headers') }),
    );
    await send(8285, udp6(peerPod, pod1.ip6!, Buffer.from('legitimate'), [7000, 6002]));
    await waitFor('the legitimate IPv6 datagram', async () => listener.received.includes('legitimate'));
    const after = (await daemons[0]!.status()).counters!;
    assert.deepEqual(listener.received, ['legitimate']);
    const delta = (reason: IngressDropReason) => after.ingressDrops[reason] - before.ingressDrops[reason];
    assert.deepEqual(
      Object.fromEntries((['unknown-sender', 'spoofed-source', 'wrong-destination', 'truncated', 'bad-extension-header'] as const).map((r) => [r, delta(r)])),
      { 'unknown-sender': 1, 'spoofed-source': 1, 'wrong-destination': 1, truncated: 1, 'bad-extension-header': 1 },
    );
  } finally {
    await listener.stop();
  }
});

test('with --ip-masq, IPv6 traffic leaving the IPv6 cluster network is masqueraded, and stopping the daemon removes the rules', async () => {
  const node = sandbox.nodes[2]!;
  // An IPv6 host outside the cluster network, on the underlay, for the pods to reach through node 3.
  await sandbox.underlay.ip('-6', 'addr', 'add', '2001:2::fe/64', 'dev', 'br0', 'nodad');
  await node.ns.ip('-6', 'addr', 'add', '2001:2::3/64', 'dev', 'eth0', 'nodad');
  const [client, inside] = [pods[2]!, pods[0]!];
  // Each server prints the address every connection came from.
  for (const [ns, address, expected] of [
    [sandbox.underlay, '2001:2::fe', '2001:2::3'],
    [inside.ns, inside.ip6!, client.ip6!],
  ] as const) {
    const server = ns.spawn([process.execPath, '-e', `require('net').createServer((s) => { console.log(s.remoteAddress); s.end(); }).listen(5004, '${address}', () => console.log('listening'))`]);
    try {
      const lines = createInterface({ input: server.stdout! })[Symbol.asyncIterator]();
      assert.equal((await lines.next()).value, 'listening');
      await client.ns.exec([process.execPath, '-e', `require('net').connect(5004, '${address}').on('close', () => process.exit(0)).on('error', (e) => { console.error(e.message); process.exit(1); })`]);
      assert.equal((await lines.next()).value, expected, `source seen by ${address}`);
    } finally {
      await stopProcess(server);
    }
  }
  const rules = await node.ns.exec(['ip6tables', '-t', 'nat', '-S']);
  assert.match(rules, /-s fd00:10:244::\/56 -d fd00:10:244::\/56 .*-j RETURN/);
  assert.match(rules, /-s fd00:10:244::\/56 .*-j MASQUERADE/);
  assert.equal(await daemons[2]!.stop(), 0);
  assert.doesNotMatch(await node.ns.exec(['ip6tables', '-t', 'nat', '-S']), /MINIFLANNEL/);
  assert.doesNotMatch(await node.ns.ip('link', 'show'), /flannel0/);
});
