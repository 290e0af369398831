// `miniflannel doctor` against one real three-node cluster in lease mode
// (Redis on the underlay, the real daemons, pods made by the CNI plugins),
// run as an operator would, from the underlay's namespace. The cases break
// the cluster a step at a time, each left in place for the next, and each is
// recognised by the exit code and in the JSON: healthy; a node whose
// firewall drops the overlay's datagrams (it accepts nothing from a peer
// that sends to it); a node whose firewall refuses its own outgoing
// datagrams (its drops show it, and no peer is called silent); a lease
// changed in Redis behind the daemons' backs (their peer entries stale,
// which trace names too); a node whose Redis traffic is rejected; a daemon
// killed.

import assert from 'node:assert/strict';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { SANDBOX_REDIS_URL, UNDERLAY_GATEWAY } from '../../lab/cluster.js';
import { waitFor } from '../../lab/daemon.js';
import { exited } from '../../lab/exec.js';
import { runPrefix } from '../../lab/netns.js';
import { leaseOverlay, type Overlay } from '../../lab/overlays.js';
import { cliBin } from '../../lab/paths.js';
import type { Finding, NodeReport } from '../../cli/cluster/doctor.js';
import type { Hop } from '../../cli/cluster/trace.js';

let overlay: Overlay;
let workDir: string;
/** Each node's leased subnet, in node order: the store chose them. */
const subnets: string[] = [];

interface Report {
  readonly problems: number;
  readonly nodes: NodeReport[];
  readonly findings: Finding[];
}

before(async () => {
  workDir = await mkdtemp(path.join(tmpdir(), 'miniflannel-doctor-'));
  overlay = await leaseOverlay({ workDir, prefix: `${runPrefix()}dr`, nodes: 3 });
  for (const daemon of overlay.daemons) {
    await waitFor(`${daemon.node.ns.name} to list 2 peers`, async () => (await daemon.status()).peers.length === 2);
    subnets.push((await daemon.status()).lease!.subnet);
  }
});

after(async () => {
  await overlay?.destroy();
});

const name = (i: number) => overlay.sandbox.nodes[i - 1]!.ns.name;
const subnetOfNode = (i: number) => subnets[i - 1]!;
const redisCli = (...args: string[]) => overlay.sandbox.underlay.exec(['redis-cli', '-h', UNDERLAY_GATEWAY, ...args]);

async function doctor(): Promise<{ code: number; report: Report; stderr: string }> {
  const outcome = await overlay.sandbox.underlay.execForOutcome([process.execPath, cliBin, 'doctor', '--json', '--redis-url', SANDBOX_REDIS_URL, '--timeout', '2000', '--state', path.join(workDir, 'doctor.json')]);
  return { code: outcome.exitCode, report: JSON.parse(outcome.stdout) as Report, stderr: outcome.stderr };
}

async function trace(src: string, dst: string): Promise<{ code: number; hops: Hop[] }> {
  const outcome = await overlay.sandbox.underlay.execForOutcome([process.execPath, cliBin, 'trace', src, dst, '--json', '--redis-url', SANDBOX_REDIS_URL, '--timeout', '2000']);
  return { code: outcome.exitCode, hops: (JSON.parse(outcome.stdout) as { hops: Hop[] }).hops };
}

const checks = (report: Report) => report.findings.filter((f) => f.severity !== 'info').map((f) => `${f.check} ${[...f.nodes].sort().join(',')}`).sort();
const nodeOf = (report: Report, i: number) => report.nodes.find((n) => n.node === name(i))!;

test('healthy: exit 0, every daemon running with both peers, and after pod pings per-peer traffic both ways', async () => {
  const [a, b, c] = overlay.pods;
  for (const [from, to] of [[a!, b!], [b!, c!], [c!, a!]] as const) await from.ns.exec(['ping', '-c', '2', '-i', '0.2', '-W', '2', to.ip]);
  const first = await doctor();
  assert.equal(first.code, 0, first.stderr);
  assert.equal(first.report.problems, 0);
  assert.ok(first.report.findings.some((f) => f.check === 'first-look'));
  for (let i = 1; i <= 3; i++) {
    const node = nodeOf(first.report, i);
    assert.equal(node.state, 'running');
    assert.equal(node.storeConnected, true);
    assert.deepEqual(node.peers, { matching: 2, expected: 2 });
    for (let j = 1; j <= 3; j++) {
      if (j === i) continue;
      const figures = node.traffic?.[subnetOfNode(j)];
      assert.ok(figures && figures.sent > 0 && figures.received > 0, `${name(i)} sent to and received from ${name(j)}: ${JSON.stringify(node.traffic)}`);
    }
  }
  // The second look compares with the first: drop rates, not totals.
  const second = await doctor();
  assert.equal(second.code, 0, second.stderr);
  assert.ok(!second.report.findings.some((f) => f.check === 'first-look'));
  assert.ok(second.report.nodes.every((n) => typeof n.drops?.perSecond === 'number'));
});

/** Twelve echo requests from node 1's pod to node 2's, none answered. */
async function pingUnanswered(): Promise<void> {
  const ping = await overlay.pods[0]!.ns.execForOutcome(['ping', '-c', '12', '-i', '0.05', '-W', '1', overlay.pods[1]!.ip]);
  assert.notEqual(ping.exitCode, 0, ping.stdout);
}

test("a node whose firewall drops the overlay's datagrams: it accepted nothing from a peer that sent to it since the last look, exit 1", async () => {
  const ns = overlay.sandbox.nodes[1]!.ns;
  const rule = ['INPUT', '-p', 'udp', '--dport', '8285', '-j', 'DROP'];
  // The look to compare with, just before: silence is judged over the time between the two.
  const baseline = await doctor();
  assert.equal(baseline.code, 0, JSON.stringify(baseline.report.findings));
  await ns.exec(['iptables', '-w', '5', '-I', ...rule]);
  try {
    // Every one dropped before node 2's daemon sees it.
    await pingUnanswered();
    const { code, report } = await doctor();
    assert.equal(code, 1);
    assert.deepEqual(checks(report), [`peer-silent ${[name(1), name(2)].sort().join(',')}`]);
    const silent = new RegExp(`^${name(2)} accepted nothing from ${name(1)}: ${name(1)} sent (\\d+) since the last look; ${name(2)} received 0 and dropped 0$`).exec(report.findings.find((f) => f.check === 'peer-silent')!.message);
    assert.ok(silent && Number(silent[1]) >= 12, JSON.stringify(report.findings));
  } finally {
    await ns.exec(['iptables', '-w', '5', '-D', ...rule]);
  }
});

test('a node whose firewall refuses its own outgoing datagrams: no peer is called silent, its drops show them refused at send', async () => {
  const ns = overlay.sandbox.nodes[0]!.ns;
  const rule = ['OUTPUT', '-p', 'udp', '--dport', '8285', '-j', 'DROP'];
  const before = await doctor();
  assert.equal(before.code, 0, JSON.stringify(before.report.findings));
  await ns.exec(['iptables', '-w', '5', '-I', ...rule]);
  try {
    // Node 1's data plane counts each as sent to node 2, and the kernel refuses each at its send (EPERM).
    await pingUnanswered();
    const { report } = await doctor();
    assert.deepEqual(checks(report).filter((check) => !check.startsWith('drops ')), [], JSON.stringify(report.findings));
    const sent = (r: Report) => nodeOf(r, 1).traffic![subnetOfNode(2)]!.sent;
    assert.ok(sent(report) - sent(before.report) >= 12, JSON.stringify(nodeOf(report, 1).traffic));
    assert.ok((nodeOf(report, 1).drops?.byReason['egress send-queue-full'] ?? 0) >= 12, JSON.stringify(nodeOf(report, 1).drops));
    assert.match(report.findings.find((f) => f.check === 'drops' && f.nodes.includes(name(1)))!.message, /egress send-queue-full \d+/);
  } finally {
    await ns.exec(['iptables', '-w', '5', '-D', ...rule]);
  }
});

test("a lease changed in Redis behind the daemons' backs: their entries for it are stale, exit 1", async () => {
  const leases = '{miniflannel}:leases';
  const original = (await redisCli('HGET', leases, subnetOfNode(2))).trim();
  const changed = JSON.parse(original) as { BackendData: Record<string, unknown> };
  changed.BackendData = { ...changed.BackendData, Port: 9999 };
  // HSET alone writes no change event: no daemon hears of it, as after a lease changed while they were away.
  await redisCli('HSET', leases, subnetOfNode(2), JSON.stringify(changed));
  try {
    const { code, report } = await doctor();
    assert.equal(code, 1);
    assert.deepEqual(checks(report), ['config-mismatch ' + name(2), `peer-endpoint ${[name(1), name(3)].sort().join(',')}`]);
    assert.match(report.findings.find((f) => f.check === 'peer-endpoint')!.message, new RegExp(`at 198\\.18\\.0\\.2:8285, but its lease says 198\\.18\\.0\\.2:9999$`));
    assert.deepEqual(nodeOf(report, 1).peers, { matching: 1, expected: 2 });
    // trace names the same stale entry on the path from a pod of node 1 to one of node 2.
    const traced = await trace(overlay.pods[0]!.ip, overlay.pods[1]!.ip);
    assert.equal(traced.code, 1);
    const broken = traced.hops.filter((hop) => hop.status === 'broken');
    assert.deepEqual(broken.map((hop) => hop.hop), ['source-peer'], JSON.stringify(traced.hops));
    assert.match(broken[0]!.detail, /198\.18\.0\.2:8285/);
    assert.match(broken[0]!.detail, /198\.18\.0\.2:9999/);
  } finally {
    await redisCli('HSET', leases, subnetOfNode(2), original);
  }
});

test('a node whose Redis traffic is rejected: it sees the store unreachable, exit 1', async () => {
  const ns = overlay.sandbox.nodes[2]!.ns;
  // New connections are refused, and the ones open are destroyed, as when Redis's host refuses this node.
  await ns.exec(['iptables', '-w', '5', '-I', 'OUTPUT', '-d', UNDERLAY_GATEWAY, '-p', 'tcp', '--dport', '6379', '-j', 'REJECT', '--reject-with', 'tcp-reset']);
  await ns.exec(['ss', '-K', 'dst', UNDERLAY_GATEWAY, 'dport', '=', '6379']);
  await waitFor(`${name(3)} to see the store unreachable`, async () => (await overlay.daemons[2]!.status()).store?.connected === false);
  const { code, report } = await doctor();
  assert.equal(code, 1);
  assert.deepEqual(checks(report), [`store-unreachable ${name(3)}`]);
  assert.equal(nodeOf(report, 3).storeConnected, false);
});

test('a daemon killed: reported unreachable, its node named, exit 1', async () => {
  const daemon = overlay.daemons[0]!;
  process.kill(daemon.process.pid!, 'SIGKILL');
  await exited(daemon.process);
  const { code, report, stderr } = await doctor();
  assert.equal(code, 1);
  assert.deepEqual(checks(report), [`daemon-unreachable ${name(1)}`, `store-unreachable ${name(3)}`]);
  assert.equal(stderr, 'miniflannel: doctor found 2 problems (2 errors, 0 warnings)\n');
  const killed = nodeOf(report, 1);
  assert.equal(killed.state, 'unreachable');
  assert.match(killed.reason!, /^daemon unreachable at http:\/\/198\.18\.0\.1:8286\/status: ECONNREFUSED$/);
});
