// Overload: several senders at once, far above what the daemons forward,
// for a few seconds:
//   - a known peer's endpoint sends well-formed packets for both nodes' pods
//     (the daemons must write each to the TUN: their most expensive path);
//   - a stranger sends random bytes to both daemons;
//   - each pod floods the other pod across the overlay (each daemon's TUN
//     side, and the other one's receive side).
// The daemons must not queue without limit: the excess is dropped by the
// kernel (a full socket buffer or TUN queue) or counted as send-queue-full,
// their memory stays within a bound, and pod traffic works again as soon as
// the flood stops.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { EgressDropReason, IngressDropReason, PacketCounterKey } from '../../daemon/dataplane/index.js';
import type { Pod, SandboxNode } from '../../lab/cluster.js';
import type { RunningDaemon } from '../../lab/daemon.js';
import type { Netns } from '../../lab/netns.js';
import { compiledTest } from '../harness/paths.js';
import { OVERLAY_PORT, staticCluster, subnetOf, type StaticCluster } from '../harness/static-cluster.js';
import type { FloodJob, FloodReport } from '../harness/datagram-sender.js';
import { linkDrops, memoryOf, mib, snmp, udpSocket } from '../harness/node-stats.js';
import { tcpTransfer } from '../harness/pod-traffic.js';

const FLOOD_SECONDS = 5;
const SINK_PORT = 9;
/** How much a daemon's resident memory may grow under the flood. */
const MEMORY_BOUND = 64 * 1024 * 1024;

/** Packets the pod's sink rule (UDP to SINK_PORT, dropped) has counted. */
async function sinkCount(pod: Pod): Promise<number> {
  const listing = await pod.ns.exec(['iptables', '-L', 'INPUT', '-v', '-x', '-n']);
  const line = listing.split('\n').find((l) => l.includes(`dpt:${SINK_PORT}`));
  return Number(line?.trim().split(/\s+/)[0] ?? Number.NaN);
}

/** Milliseconds until one ping from `from` to `to` is answered. */
async function timeToFirstReply(from: Pod, to: Pod, deadlineMs: number): Promise<number> {
  const started = performance.now();
  for (;;) {
    const outcome = await from.ns.execForOutcome(['ping', '-c', '1', '-W', '1', to.ip]);
    if (outcome.exitCode === 0) return Math.round(performance.now() - started);
    if (performance.now() - started > deadlineMs) throw new Error(`${from.ip} got no answer from ${to.ip} within ${deadlineMs} ms after the flood`);
  }
}

describe('overload', () => {
  let cluster: StaticCluster;

  before(async () => {
    cluster = await staticCluster({ transports: ['mmsg', 'dgram'], peers: 1, strangers: 1 });
    for (const pod of cluster.pods) await pod.ns.exec(['iptables', '-A', 'INPUT', '-p', 'udp', '--dport', String(SINK_PORT), '-j', 'DROP']);
  });

  after(async () => {
    await cluster?.destroy();
  });

  test('a flood far above capacity: bounded memory, drops instead of queues, recovery right after', { timeout: 240_000 }, async (t) => {
    const daemons = cluster.daemons as [RunningDaemon, RunningDaemon];
    const [p1, p2] = cluster.pods as [Pod, Pod];
    const peer = cluster.peers[0]!;
    const stranger = cluster.strangers[0]!;
    const nodes = daemons.map((d) => d.node) as [SandboxNode, SandboxNode];

    // Warm up, so that memory the daemons take on first use is not counted as growth.
    await p1.ns.exec(['ping', '-c', '3', '-i', '0.2', '-W', '2', p2.ip]);
    const warmup = await tcpTransfer(p1, p2, 8 * 1024 * 1024);
    assert.equal(warmup.received.sha256, warmup.sent.sha256);

    const pids = daemons.map((d) => d.process.pid!);
    const memoryBefore = await Promise.all(pids.map(memoryOf));
    const countersBefore = await Promise.all(daemons.map(async (d) => (await d.status()).counters!));
    const kernelBefore = await Promise.all(nodes.map((n) => snmp(n.ns)));
    const sinksBefore = await Promise.all([p1, p2].map(sinkCount));
    const tunBefore = await Promise.all(nodes.map((n) => linkDrops(n.ns, 'flannel0')));

    // Memory is sampled all through the flood; the peak is what must stay bounded.
    const peak = memoryBefore.map((m) => m.rss);
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const now = await Promise.all(pids.map(memoryOf));
        now.forEach((m, i) => (peak[i] = Math.max(peak[i]!, m.rss)));
        await new Promise((resolve) => setTimeout(resolve, 200));
      }
    })();

    const flood = async (ns: Netns, job: Omit<FloodJob, 'seconds' | 'podPort' | 'seed'>, seed: number): Promise<FloodReport> => {
      const full: FloodJob = { ...job, seconds: FLOOD_SECONDS, podPort: SINK_PORT, seed };
      const outcome = await ns.execForOutcome([process.execPath, compiledTest('harness/datagram-sender.js'), 'flood', JSON.stringify(full)], { timeoutMs: 60_000 });
      if (outcome.exitCode !== 0) throw new Error(`a flood sender in ${ns.name} failed (exit ${outcome.exitCode}): ${outcome.stderr.slice(-2000)}`);
      return JSON.parse(outcome.stdout) as FloodReport;
    };
    const bothDaemons = nodes.map((n, i) => ({ ip: n.underlayIp, port: OVERLAY_PORT, podIp: cluster.pods[i]!.ip }));
    let reports: FloodReport[];
    try {
      reports = await Promise.all([
        flood(peer.ns, { bind: peer.underlayIp, bindPort: OVERLAY_PORT, targets: bothDaemons, kind: 'valid', sourceSubnet: subnetOf(peer) }, 1),
        flood(stranger.ns, { bind: stranger.underlayIp, bindPort: OVERLAY_PORT, targets: bothDaemons, kind: 'garbage', sourceSubnet: subnetOf(stranger) }, 2),
        flood(p1.ns, { bind: p1.ip, bindPort: 0, targets: [{ ip: p2.ip, port: SINK_PORT, podIp: p2.ip }], kind: 'garbage', sourceSubnet: subnetOf(nodes[0]) }, 3),
        flood(p2.ns, { bind: p2.ip, bindPort: 0, targets: [{ ip: p1.ip, port: SINK_PORT, podIp: p1.ip }], kind: 'garbage', sourceSubnet: subnetOf(nodes[1]) }, 4),
      ]);
    } finally {
      sampling = false;
      await sampler;
    }
    const floodEnded = performance.now();
    const [peerFlood, strangerFlood, pod1Flood, pod2Flood] = reports;

    // Legitimate flows recover as soon as the flood stops.
    const recovery = await Promise.all([timeToFirstReply(p2, p1, 15_000), timeToFirstReply(p1, p2, 15_000)]);
    const transfer = await tcpTransfer(p2, p1, 16 * 1024 * 1024);
    const transferMs = Math.round(performance.now() - floodEnded);

    // Nothing was kept queued: each daemon's socket drains at once.
    await Promise.all(
      nodes.map(async (n) => {
        const deadline = performance.now() + 10_000;
        for (;;) {
          const socket = await udpSocket(n.ns, OVERLAY_PORT);
          assert.ok(socket, `no UDP socket on port ${OVERLAY_PORT} in ${n.ns.name}`);
          if (socket.rxQueue === 0) return;
          assert.ok(performance.now() < deadline, `${n.ns.name}: ${socket.rxQueue} bytes still queued 10 s after the flood`);
          await new Promise((resolve) => setTimeout(resolve, 100));
        }
      }),
    );

    const memoryAfter = await Promise.all(pids.map(memoryOf));
    const countersAfter = await Promise.all(daemons.map(async (d) => (await d.status()).counters!));
    const kernelAfter = await Promise.all(nodes.map((n) => snmp(n.ns)));
    const sinksAfter = await Promise.all([p1, p2].map(sinkCount));
    const tunAfter = await Promise.all(nodes.map((n) => linkDrops(n.ns, 'flannel0')));

    const underlaySent = peerFlood!.sent + strangerFlood!.sent;
    t.diagnostic(
      `flood for ${FLOOD_SECONDS} s: peer ${peerFlood!.sent} valid datagrams, stranger ${strangerFlood!.sent} garbage datagrams (half to each node), ` +
        `pod 1 -> pod 2 ${pod1Flood!.sent}, pod 2 -> pod 1 ${pod2Flood!.sent} UDP packets`,
    );
    for (const [i, daemon] of daemons.entries()) {
      const before = countersBefore[i]!;
      const now = countersAfter[i]!;
      const d = (key: PacketCounterKey) => now[key] - before[key];
      const rcvbuf = kernelAfter[i]!['Udp']!['RcvbufErrors']! - kernelBefore[i]!['Udp']!['RcvbufErrors']!;
      const egressDrops = Object.fromEntries((Object.keys(now.egressDrops) as EgressDropReason[]).map((k) => [k, now.egressDrops[k] - before.egressDrops[k]]).filter(([, v]) => v !== 0));
      const ingressDrops = Object.fromEntries((Object.keys(now.ingressDrops) as IngressDropReason[]).map((k) => [k, now.ingressDrops[k] - before.ingressDrops[k]]).filter(([, v]) => v !== 0));
      t.diagnostic(
        `${daemon.node.ns.name} (${i === 0 ? 'mmsg' : 'dgram'}): received ${d('udpPacketsReceived')} datagrams, wrote ${d('tunPacketsWritten')} to the TUN, ` +
          `read ${d('tunPacketsRead')} from it, sent ${d('udpPacketsSent')}; kernel receive-buffer drops ${rcvbuf}, ` +
          `TUN queue drops ${tunAfter[i]!.tx - tunBefore[i]!.tx}; ` +
          `ingress drops ${JSON.stringify(ingressDrops)}; egress drops ${JSON.stringify(egressDrops)}`,
      );
      t.diagnostic(
        `${daemon.node.ns.name} RSS: before ${mib(memoryBefore[i]!.rss)}, peak during the flood ${mib(peak[i]!)}, after ${mib(memoryAfter[i]!.rss)} (growth ${mib(memoryAfter[i]!.rss - memoryBefore[i]!.rss)})`,
      );

      assert.equal(daemon.process.exitCode ?? daemon.process.signalCode, null, `${daemon.node.ns.name}: the daemon died; log: ${daemon.logFile}`);
      assert.ok(peak[i]! - memoryBefore[i]!.rss < MEMORY_BOUND, `${daemon.node.ns.name}: RSS grew by ${mib(peak[i]! - memoryBefore[i]!.rss)} under the flood`);
      assert.ok(memoryAfter[i]!.rss - memoryBefore[i]!.rss < MEMORY_BOUND, `${daemon.node.ns.name}: RSS grew by ${mib(memoryAfter[i]!.rss - memoryBefore[i]!.rss)}`);
      // Far above capacity: the kernel dropped what the daemon could not take, rather than the daemon holding it.
      assert.ok(rcvbuf > 0, `${daemon.node.ns.name}: the flood never filled the socket buffer (received ${d('udpPacketsReceived')} of ~${Math.round(underlaySent / 2)} underlay datagrams)`);
      assert.ok(d('udpPacketsReceived') < underlaySent / 2 + (i === 0 ? pod2Flood!.sent : pod1Flood!.sent), `${daemon.node.ns.name} received everything: not an overload`);
      const sum = (drops: Record<string, number>) => Object.values(drops).reduce((a, b) => a + b, 0);
      assert.equal(now.udpPacketsReceived, now.tunPacketsWritten + sum(now.ingressDrops), 'received = written + dropped');
      assert.equal(now.tunPacketsRead, now.udpPacketsSent + sum(now.egressDrops), 'read = sent + dropped');
    }
    t.diagnostic(`pods' sinks counted ${sinksAfter[0]! - sinksBefore[0]!} and ${sinksAfter[1]! - sinksBefore[1]!} flood packets`);
    t.diagnostic(`recovery: first ping answered ${recovery[0]} ms (pod 2 -> pod 1) and ${recovery[1]} ms (pod 1 -> pod 2) after the flood; a 16 MiB TCP transfer done ${transferMs} ms after it`);
    assert.equal(transfer.received.bytes, 16 * 1024 * 1024);
    assert.equal(transfer.received.sha256, transfer.sent.sha256);
    assert.ok(sinksAfter[0]! > sinksBefore[0]! && sinksAfter[1]! > sinksBefore[1]!, 'flood traffic reached the pods: the overlay kept forwarding under load');
  });
});
