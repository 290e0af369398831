// The node daemon end to end, the way a cluster runs it: Redis on the
// underlay, the network config set with the CLI, the real miniflanneld on
// every node with a DaemonSet's flags, pods made by the real CNI plugins
// from the conflist each daemon wrote.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import { SANDBOX_REDIS_URL, type Pod, type Sandbox, type SandboxNode } from '../../lab/cluster.js';
import { cliIn, HEALTHZ_PORT, httpGetIn, leaseModeArgs, startDaemon, waitFor, writtenConflist, type RunningDaemon } from '../../lab/daemon.js';
import { stopProcess } from '../../lab/exec.js';
import { createTestSandbox, destroyTestSandbox } from '../harness/namespaces.js';
import { tcpTransfer } from '../harness/pod-traffic.js';

const NETWORK = '10.244.0.0/16';
let sandbox: Sandbox;
const daemons = new Map<SandboxNode, RunningDaemon>();
const pods = new Map<SandboxNode, Pod>();

async function startNodeDaemon(node: SandboxNode): Promise<RunningDaemon> {
  const daemon = await startDaemon(node, leaseModeArgs(node, SANDBOX_REDIS_URL));
  daemons.set(node, daemon);
  return daemon;
}

async function joinNode(): Promise<SandboxNode> {
  const node = await sandbox.addNode();
  await startNodeDaemon(node);
  pods.set(node, await sandbox.addPod(node, await writtenConflist(node)));
  return node;
}

const pod = (index: number) => pods.get(sandbox.nodes[index - 1]!)!;
const daemon = (index: number) => daemons.get(sandbox.nodes[index - 1]!)!;
const ping = (from: Pod, to: Pod, count = 2) => from.ns.exec(['ping', '-c', String(count), '-i', '0.2', '-W', '2', to.ip]);

before(async () => {
  sandbox = await createTestSandbox(0);
  await sandbox.startRedis({ persistence: true });
  await cliIn(sandbox.underlay, ['config', 'init', '--network', NETWORK, '--redis-url', SANDBOX_REDIS_URL]);
  for (let i = 0; i < 3; i++) await joinNode();
});

after(async () => {
  for (const d of daemons.values()) await d.stop();
  if (!sandbox) return;
  await destroyTestSandbox(sandbox);
});

test('every node holds a distinct subnet of the network and wrote subnet.env and the conflist', async () => {
  const subnets = new Set<string>();
  for (const node of sandbox.nodes) {
    const status = await daemons.get(node)!.status();
    const lease = status.lease!;
    assert.match(lease.subnet, /^10\.244\.\d+\.0\/24$/);
    assert.equal(lease.publicIP, node.underlayIp);
    subnets.add(lease.subnet);
    const env = await readFile(path.join(node.workDir, 'run', 'subnet.env'), 'utf8');
    const [a, b, c] = lease.subnet.split('.');
    assert.match(env, new RegExp(`^FLANNEL_SUBNET=${a}\\.${b}\\.${c}\\.1/24$`, 'm'));
    assert.match(env, /^FLANNEL_NETWORK=10\.244\.0\.0\/16$/m);
    assert.match(env, /^FLANNEL_MTU=1472$/m);
    assert.match(env, /^FLANNEL_IPMASQ=true$/m);
    const conflist = await writtenConflist(node);
    assert.deepEqual(conflist.plugins.map((p: { type: string }) => p.type), ['bridge', 'portmap']);
    assert.equal(conflist.plugins[0].ipam.ranges[0][0].subnet, lease.subnet);
    assert.equal(status.peers.length, 2);
  }
  assert.equal(subnets.size, 3);
});

test('each daemon logs the TUN it opened and, on this kernel (6.2 or later), that UDP segmentation offload is on', async () => {
  for (const node of sandbox.nodes) {
    const opened = (await readFile(daemons.get(node)!.logFile, 'utf8')).split('\n').find((line) => line.includes('"msg":"TUN device opened"'));
    assert.ok(opened, `node ${node.index} logged no 'TUN device opened' line`);
    const { tun, tunOffload, udpSegmentation } = JSON.parse(opened);
    assert.deepEqual({ tun, tunOffload, udpSegmentation }, { tun: 'flannel0', tunOffload: true, udpSegmentation: true });
  }
});

test('pods on every pair of nodes ping each other and move data intact', async () => {
  const all = [pod(1), pod(2), pod(3)];
  for (const from of all) {
    for (const to of all) {
      if (from === to) continue;
      await ping(from, to);
      const { sent, received } = await tcpTransfer(from, to, 4 * 1024 * 1024, 5002);
      assert.equal(received.sha256, sent.sha256, `${from.ip} -> ${to.ip}`);
    }
  }
});

test('lease list shows every node', async () => {
  const listing = JSON.parse(await cliIn(sandbox.underlay, ['lease', 'list', '--json', '--redis-url', SANDBOX_REDIS_URL]));
  const leases: Array<{ publicIP: string }> = Array.isArray(listing) ? listing : listing.leases;
  assert.deepEqual(leases.map((l) => l.publicIP).sort(), sandbox.nodes.map((n) => n.underlayIp).sort());
});

test('with --ip-masq, pod traffic leaving the cluster network is masqueraded and traffic inside it is not', async () => {
  // A TCP server outside the cluster network (on the underlay) and one in a pod print the address each connection came from.
  const peerAddressServer = (ns: Pod['ns'] | Sandbox['underlay'], ip: string) =>
    ns.spawn([process.execPath, '-e', `require('net').createServer((s) => { console.log(s.remoteAddress); s.end(); }).listen(5003, '${ip}', () => console.log('listening'))`]);
  const connect = (from: Pod, ip: string) =>
    from.ns.exec([process.execPath, '-e', `require('net').connect(5003, '${ip}').on('close', () => process.exit(0)).on('error', (e) => { console.error(e.message); process.exit(1); })`]);
  for (const [ns, ip, expected] of [
    [sandbox.underlay, '198.18.0.254', sandbox.nodes[0]!.underlayIp],
    [pod(2).ns, pod(2).ip, pod(1).ip],
  ] as const) {
    const server = peerAddressServer(ns, ip);
    try {
      const lines = createInterface({ input: server.stdout! })[Symbol.asyncIterator]();
      assert.equal((await lines.next()).value, 'listening');
      await connect(pod(1), ip);
      assert.equal((await lines.next()).value, expected, `source seen by ${ip}`);
    } finally {
      await stopProcess(server);
    }
  }
  const rules = await sandbox.nodes[0]!.ns.exec(['iptables', '-t', 'nat', '-S', 'MINIFLANNEL-POSTRTG']);
  assert.match(rules, /-s 10\.244\.0\.0\/16 -d 10\.244\.0\.0\/16 .*-j RETURN/);
  assert.match(rules, /-s 10\.244\.0\.0\/16 ! -d 224\.0\.0\.0\/4 .*-j MASQUERADE/);
});

test('/metrics exposes packets, bytes, drops by reason, peers, lease expiry and the store connection', async () => {
  const node = sandbox.nodes[0]!;
  const { status, body } = await httpGetIn(node.ns, `http://${node.underlayIp}:${HEALTHZ_PORT}/metrics`);
  assert.equal(status, 200);
  const value = (series: string) => Number(new RegExp(`^${series.replace(/[{}"]/g, (c) => `\\${c}`)} (\\S+)$`, 'm').exec(body)?.[1]);
  assert.ok(value('miniflannel_udp_sent_packets_total') > 0);
  assert.ok(value('miniflannel_udp_sent_bytes_total') > 0);
  assert.ok(value('miniflannel_tun_written_packets_total') > 0);
  assert.equal(value('miniflannel_peers'), 2);
  assert.equal(value('miniflannel_store_connected'), 1);
  assert.equal(value('miniflannel_store_resets_total'), 0);
  assert.equal(value('miniflannel_peers_unconfirmed'), 0);
  const expiry = value('miniflannel_lease_expiry_timestamp_seconds');
  assert.ok(expiry > Date.now() / 1000 + 3600, `lease expiry ${expiry}`);
  assert.match(body, /^miniflannel_dropped_packets_total\{direction="ingress",reason="[a-z-]+"\} \d+$/m);
});

test('a node that joins is reachable, and the others pick it up without a restart', async () => {
  const before = [1, 2, 3].map((i) => daemon(i).process.pid);
  const fourth = await joinNode();
  for (const i of [1, 2, 3]) {
    await waitFor(`node ${i} to list 3 peers`, async () => (await daemon(i).status()).peers.length === 3);
  }
  await ping(pod(1), pods.get(fourth)!);
  await ping(pods.get(fourth)!, pod(3));
  assert.deepEqual([1, 2, 3].map((i) => daemon(i).process.pid), before, 'no daemon restarted');
});

test('a node that leaves and whose lease is revoked becomes unreachable with net unreachable', async () => {
  const fourth = sandbox.nodes[3]!;
  const lease = (await daemons.get(fourth)!.status()).lease!;
  assert.equal(await daemons.get(fourth)!.stop(), 0, 'SIGTERM is a clean stop');
  assert.doesNotMatch(await fourth.ns.ip('link', 'show'), /flannel0/, 'the TUN is gone');
  assert.doesNotMatch(await fourth.ns.exec(['iptables', '-t', 'nat', '-S']), /MINIFLANNEL/, 'the masquerade rules are gone');
  const out = await cliIn(sandbox.underlay, ['lease', 'revoke', lease.subnet, '--yes', '--redis-url', SANDBOX_REDIS_URL]);
  assert.match(out, new RegExp(fourth.ns.name));
  for (const i of [1, 2, 3]) {
    await waitFor(`node ${i} to drop the revoked peer`, async () => (await daemon(i).status()).peers.length === 2);
  }
  const outcome = await pod(1).ns.execForOutcome(['ping', '-c', '1', '-W', '2', pods.get(fourth)!.ip]);
  assert.notEqual(outcome.exitCode, 0);
  assert.match(outcome.stdout, /Destination Net Unreachable/);
});

test('a restarted daemon keeps its subnet and its pods work again', async () => {
  const node = sandbox.nodes[1]!;
  const lease = (await daemons.get(node)!.status()).lease!;
  await daemons.get(node)!.stop();
  const restarted = await startNodeDaemon(node);
  assert.equal((await restarted.status()).lease!.subnet, lease.subnet);
  await ping(pod(1), pod(2));
  await ping(pod(2), pod(3));
});

test('stopping Redis for 10 s breaks no established flow', async () => {
  const [client, server] = [pod(1), pod(3)];
  const iperf = server.ns.spawn(['iperf3', '--server', '--one-off', '--forceflush', '--bind', server.ip]);
  try {
    await new Promise<void>((resolve) => createInterface({ input: iperf.stdout! }).on('line', (l) => l.includes('Server listening') && resolve()));
    const flow = client.ns.exec(['iperf3', '--client', server.ip, '--time', '16', '--json', '--bitrate', '50M'], { timeoutMs: 60_000 });
    await new Promise((resolve) => setTimeout(resolve, 3000));
    await sandbox.stopRedis();
    await new Promise((resolve) => setTimeout(resolve, 10_000));
    await sandbox.startRedis({ persistence: true });
    const report = JSON.parse(await flow);
    const intervals: number[] = report.intervals.map((i: { sum: { bits_per_second: number } }) => i.sum.bits_per_second);
    assert.ok(intervals.length >= 15, `${intervals.length} intervals`);
    assert.ok(intervals.every((bps) => bps > 10e6), `an interval stalled: ${intervals.map((b) => (b / 1e6).toFixed(0)).join(' ')} Mbit/s`);
  } finally {
    await stopProcess(iperf);
  }
  for (const i of [1, 2, 3]) {
    await waitFor(`node ${i} to reconnect to Redis`, async () => (await daemon(i).status()).store!.connected === true, 30_000);
    assert.equal(daemon(i).process.exitCode, null, `node ${i} still running`);
  }
});

test('a daemon whose lease is revoked under it says so and exits non-zero, leaving no TUN behind', async () => {
  const node = sandbox.nodes[1]!;
  const running = daemons.get(node)!;
  const lease = (await running.status()).lease!;
  await cliIn(sandbox.underlay, ['lease', 'revoke', lease.subnet, '--yes', '--redis-url', SANDBOX_REDIS_URL]);
  const code = await waitFor('the daemon to exit', async () => running.process.exitCode ?? false);
  assert.notEqual(code, 0);
  assert.match(await readFile(running.logFile, 'utf8'), new RegExp(`lease ${lease.subnet.replace(/[./]/g, '\\$&')} lost`));
  assert.doesNotMatch(await node.ns.ip('link', 'show'), /flannel0/);
});
