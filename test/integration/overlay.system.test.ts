// Two nodes in namespaces on a 198.18.0.0/24 underlay, each running the real
// miniflanneld with static peers, each with a pod made by the real CNI
// bridge plugin. A third namespace on the underlay plays a peer, and a
// stranger, with hand-made datagrams.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import type { IngressDropReason } from '../../daemon/dataplane/index.js';
import { cniConflist } from '../../daemon/node/cni.js';
import type { Pod, Sandbox, SandboxNode } from '../../lab/cluster.js';
import { createTestSandbox, destroyTestSandbox } from '../harness/namespaces.js';
import { HEALTHZ_PORT, httpGetIn, startDaemon, waitFor, type RunningDaemon } from '../../lab/daemon.js';
import { ipv4Packet, udpPayload } from '../harness/packets.js';
import { listenUdp, sendDatagrams, tcpTransfer } from '../harness/pod-traffic.js';

const NETWORK = '10.244.0.0/16';
const TUN_MTU = 1500 - 28;
const subnetOf = (node: SandboxNode) => `10.244.${node.index}.0/24`;
const conflistFor = (node: SandboxNode, mtu = TUN_MTU) =>
  cniConflist({ ipv4: { subnet: subnetOf(node), network: NETWORK }, mtu, ipamDataDir: `${node.workDir}/ipam` }) as any;

let sandbox: Sandbox;
const daemons: RunningDaemon[] = [];
const pods: Pod[] = [];
let player: SandboxNode; // node 3: no daemon; the test speaks for it

before(async () => {
  sandbox = await createTestSandbox(3);
  const [n1, n2, n3] = sandbox.nodes as [SandboxNode, SandboxNode, SandboxNode];
  player = n3;
  const peerArgs = (node: SandboxNode) =>
    sandbox.nodes.filter((n) => n !== node).flatMap((n) => ['--static-peer', `${subnetOf(n)}=${n.underlayIp}`]);
  // Node 1 uses the batched native transport, node 2 node:dgram: the two must interoperate on the wire.
  for (const [node, transport] of [[n1, 'mmsg'], [n2, 'dgram']] as const) {
    daemons.push(
      await startDaemon(node, ['--iface', 'eth0', '--transport', transport, '--static-network', NETWORK, '--static-subnet', subnetOf(node), ...peerArgs(node)]),
    );
    pods.push(await sandbox.addPod(node, conflistFor(node)));
  }
});

after(async () => {
  for (const daemon of daemons) await daemon.stop();
  if (!sandbox) return;
  await destroyTestSandbox(sandbox);
  for (const daemon of daemons) assert.notEqual(daemon.process.exitCode ?? daemon.process.signalCode, null, 'daemon still running');
});

test('pods on different nodes ping each other', async () => {
  const [p1, p2] = pods as [Pod, Pod];
  await p1.ns.exec(['ping', '-c', '3', '-i', '0.2', '-W', '2', p2.ip]);
  await p2.ns.exec(['ping', '-c', '3', '-i', '0.2', '-W', '2', p1.ip]);
});

test('a 64 MB TCP transfer arrives intact', async () => {
  const [p1, p2] = pods as [Pod, Pod];
  const { sent, received } = await tcpTransfer(p1, p2, 64 * 1024 * 1024);
  assert.equal(sent.bytes, 64 * 1024 * 1024);
  assert.equal(received.bytes, sent.bytes);
  assert.equal(received.sha256, sent.sha256);
});

test('an unleased destination gets ICMP net unreachable from the node', async () => {
  const outcome = await pods[0]!.ns.execForOutcome(['ping', '-c', '1', '-W', '2', '10.244.99.1']);
  assert.notEqual(outcome.exitCode, 0);
  assert.match(outcome.stdout, /From 10\.244\.1\.0 .*Destination Net Unreachable/);
  const status = await daemons[0]!.status();
  assert.ok(status.counters!.egressDrops['no-route'] >= 1);
  assert.ok(status.counters!.icmpErrorsSent >= 1);
});

test('MTU-sized packets pass; a larger one with DF gets fragmentation needed', async () => {
  const [p1, p2] = pods as [Pod, Pod];
  await p1.ns.exec(['ping', '-c', '2', '-i', '0.2', '-W', '2', '-M', 'do', '-s', String(TUN_MTU - 28), p2.ip]);
  // A pod whose own link is wider than the overlay learns the overlay's MTU from the network.
  const wide = await sandbox.addPod(sandbox.nodes[0]!, conflistFor(sandbox.nodes[0]!, 1500));
  const outcome = await wide.ns.execForOutcome(['ping', '-c', '2', '-i', '0.2', '-W', '2', '-M', 'do', '-s', String(1500 - 28), p2.ip]);
  assert.notEqual(outcome.exitCode, 0);
  assert.match(outcome.stdout + outcome.stderr, new RegExp(`mtu ?= ?${TUN_MTU}`));
});

/** A UDP packet for the pod listener, with the given inner addresses, as a hex datagram payload. */
function innerUdp(source: string, destination: string, text: string): string {
  return ipv4Packet({ source, destination, payload: udpPayload(text, 4000, 6000) }).toString('hex');
}

test('only a known peer speaking for its own subnet reaches a pod', async () => {
  const target = pods[1]!; // on node 2, whose static peers include node 3's address
  const listener = await listenUdp(target, 6000);
  try {
    const before = (await daemons[1]!.status()).counters!;
    const send = (bindPort: number, ...payloads: string[]) => sendDatagrams(player, bindPort, { ip: '198.18.0.2', port: 8285 }, payloads);

    await send(9999, innerUdp('10.244.3.5', target.ip, 'from-a-stranger-port'));
    await send(8285, innerUdp('10.244.1.5', target.ip, 'spoofed-source'), innerUdp('10.244.3.5', '10.244.1.9', 'wrong-destination'));
    await send(8285, innerUdp('10.244.3.5', target.ip, 'legitimate'));
    await waitFor('the legitimate datagram', async () => listener.received.includes('legitimate'));
    const afterCounters = (await daemons[1]!.status()).counters!;

    assert.deepEqual(listener.received, ['legitimate']);
    const delta = (reason: IngressDropReason) => afterCounters.ingressDrops[reason] - before.ingressDrops[reason];
    assert.equal(delta('unknown-sender'), 1);
    assert.equal(delta('spoofed-source'), 1);
    assert.equal(delta('wrong-destination'), 1);
  } finally {
    await listener.stop();
  }
});

test('the counters add up', async () => {
  const [sender, receiver] = await Promise.all([daemons[0]!.status(), daemons[1]!.status()]).then(([a, b]) => [a.counters!, b.counters!] as const);
  for (const c of [sender, receiver]) {
    const sum = (drops: Record<string, number>) => Object.values(drops).reduce((a, b) => a + b, 0);
    assert.equal(c.tunPacketsRead, c.udpPacketsSent + sum(c.egressDrops));
    assert.equal(c.udpPacketsReceived, c.tunPacketsWritten + sum(c.ingressDrops));
  }
  // The 64 MiB transfer alone is over 45,000 MTU-sized packets from node 1 to node 2.
  const transfer = (64 * 1024 * 1024) / (TUN_MTU - 52);
  assert.ok(sender.udpPacketsSent > transfer, `node 1 sent ${sender.udpPacketsSent} datagrams`);
  assert.ok(receiver.tunPacketsWritten > transfer, `node 2 delivered ${receiver.tunPacketsWritten} packets`);
});

test('/metrics serves the same counters for Prometheus', async () => {
  const daemon = daemons[1]!;
  const [metrics, status] = await Promise.all([
    httpGetIn(daemon.node.ns, `http://${daemon.node.underlayIp}:${HEALTHZ_PORT}/metrics`),
    daemon.status(),
  ]);
  assert.equal(metrics.status, 200);
  const value = (line: string) => Number(new RegExp(`^${line.replace(/[{}]/g, '\\$&')} (\\d+)$`, 'm').exec(metrics.body)?.[1]);
  assert.equal(value('miniflannel_dropped_packets_total{direction="ingress",reason="spoofed-source"}'), status.counters!.ingressDrops['spoofed-source']);
  assert.equal(value('miniflannel_peers'), 2);
  assert.ok(value('miniflannel_udp_received_packets_total') > 0);
});
