// The node's dual-stack wiring with the real miniflanneld in namespaces:
// the IPv6 underlay address it publishes in its lease (--public-ipv6), what
// /status shows, the IPv6 masquerade rules a crashed predecessor left,
// which go when this run does not want them, and an underlay too narrow for
// IPv6. Pod traffic end to end is test/integration/dual-stack.system.test.ts.
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import path from 'node:path';
import { SANDBOX_REDIS_URL, type Sandbox, type SandboxNode } from '../../lab/cluster.js';
import { cliIn, leaseModeArgs, startDaemon, type RunningDaemon } from '../../lab/daemon.js';
import { MASQ_CHAIN } from '../../daemon/node/masquerade.js';
import { createTestSandbox } from '../harness/namespaces.js';
import { daemonLog } from '../reliability/harness.js';

const DUAL_STACK_PREFIX = 'dualstack';
const IPV4_ONLY_PREFIX = 'ipv4only';
let sandbox: Sandbox;
const daemons: RunningDaemon[] = [];

const ip6nat = (node: SandboxNode, ...args: string[]) => node.ns.exec(['ip6tables', '-w', '5', '-t', 'nat', ...args]);
const JUMP = ['POSTROUTING', '-m', 'comment', '--comment', 'miniflannel masq', '-j', MASQ_CHAIN];

/** What a predecessor killed with --ip-masq in a dual-stack network leaves: the IPv6 chain and the jump to it. */
async function leaveIPv6Chain(node: SandboxNode): Promise<void> {
  await ip6nat(node, '-N', MASQ_CHAIN);
  await ip6nat(node, '-A', MASQ_CHAIN, '-s', 'fd00:10:244::/48', '-j', 'MASQUERADE');
  await ip6nat(node, '-A', ...JUMP);
}

const withoutFlag = (args: string[], flag: string) => args.filter((a) => a !== flag);
const dualStackArgs = (node: SandboxNode) => [...withoutFlag(leaseModeArgs(node, SANDBOX_REDIS_URL), '--ip-masq'), '--prefix', DUAL_STACK_PREFIX];

before(async () => {
  sandbox = await createTestSandbox(3);
  await sandbox.startRedis({ persistence: false });
  await cliIn(sandbox.underlay, ['config', 'init', '--network', '10.244.0.0/16', '--ipv6-network', 'fd00:10:244::/48', '--prefix', DUAL_STACK_PREFIX, '--redis-url', SANDBOX_REDIS_URL]);
  await cliIn(sandbox.underlay, ['config', 'init', '--network', '10.245.0.0/16', '--prefix', IPV4_ONLY_PREFIX, '--redis-url', SANDBOX_REDIS_URL]);
  const [n1, n2] = sandbox.nodes as [SandboxNode, SandboxNode];
  for (const node of [n1, n2]) await leaveIPv6Chain(node);
  // Node 1: dual-stack, without --ip-masq. Node 2: IPv4 only, with --ip-masq.
  daemons.push(await startDaemon(n1, [...dualStackArgs(n1), '--public-ipv6', 'fd00:198:18:0:0:0:0:1']));
  daemons.push(await startDaemon(n2, [...leaseModeArgs(n2, SANDBOX_REDIS_URL), '--prefix', IPV4_ONLY_PREFIX, '--public-ipv6', 'fd00:198:18::2']));
});

after(async () => {
  for (const daemon of daemons) await daemon.stop();
  await sandbox?.destroy();
});

test('dual-stack: --public-ipv6 is published in the lease, in RFC 5952 form, and /status shows the node\'s IPv6 subnet and network', async () => {
  const status = await daemons[0]!.status();
  assert.equal(status.lease?.publicIPv6, 'fd00:198:18::1');
  const k = Number(status.lease!.subnet.split('.')[2]);
  assert.equal(status.lease?.ipv6Subnet, `fd00:10:244:${k.toString(16)}::/64`);
  assert.equal(status.node?.ipv6Subnet, status.lease?.ipv6Subnet);
  assert.equal(status.node?.ipv6Network, 'fd00:10:244::/48');
  const listing = JSON.parse(await cliIn(sandbox.underlay, ['lease', 'list', '--json', '--prefix', DUAL_STACK_PREFIX, '--redis-url', SANDBOX_REDIS_URL]));
  assert.deepEqual(
    listing.leases.map((l: { subnet: string; publicIPv6: string }) => [l.subnet, l.publicIPv6]),
    [[status.lease!.subnet, 'fd00:198:18::1']],
    'the store holds it',
  );
});

test('IPv4 only: --public-ipv6 is not published, and the log says why; /status shows no IPv6', async () => {
  const status = await daemons[1]!.status();
  assert.ok(status.lease);
  assert.equal('publicIPv6' in status.lease, false);
  assert.equal('ipv6Subnet' in status.lease, false);
  assert.equal('ipv6Subnet' in status.node!, false);
  const log = await daemonLog(daemons[1]!);
  assert.ok(log.some((l) => l.msg === '--public-ipv6 is not published: the network config does not enable IPv6'));
});

test('IPv6 masquerade rules a crashed run left go when --ip-masq is off, or when the network config no longer enables IPv6; the IPv4 ones stay with --ip-masq', async () => {
  const [n1, n2] = sandbox.nodes as [SandboxNode, SandboxNode];
  const [d1, d2] = daemons as [RunningDaemon, RunningDaemon];
  assert.ok((await daemonLog(d1)).some((l) => l.msg === 'removing IPv6 masquerade rules left by a previous run (--ip-masq is off)'));
  assert.ok((await daemonLog(d2)).some((l) => l.msg === 'removing IPv6 masquerade rules left by a previous run (the network config does not enable IPv6)'));
  for (const node of [n1, n2]) assert.doesNotMatch(await ip6nat(node, '-S'), /MINIFLANNEL/, node.ns.name);
  assert.match(await n2.ns.exec(['iptables', '-t', 'nat', '-S', MASQ_CHAIN]), /-s 10\.245\.0\.0\/16 -d 10\.245\.0\.0\/16 .*-j RETURN/);
});

test('an underlay too narrow for IPv6 over the overlay stops the start with one line naming the MTUs and the way out', async () => {
  const node = sandbox.nodes[2]!;
  await node.ns.ip('link', 'set', 'eth0', 'mtu', '1300');
  await assert.rejects(startDaemon(node, dualStackArgs(node)), /exited with 1/);
  const logFile = (await readdir(node.workDir)).find((name) => name.startsWith('miniflanneld-'))!;
  const log = await readFile(path.join(node.workDir, logFile), 'utf8');
  assert.match(log, /^miniflanneld: the overlay MTU 1272 \(underlay eth0's 1300 less encapsulation\) is below IPv6's minimum of 1280; raise the underlay MTU or set EnableIPv6 false$/m);
  assert.doesNotMatch(await node.ns.ip('link', 'show'), /flannel0/, 'no TUN was made');
});
