// Hostile input on the overlay port: about a million datagrams, random and
// crafted to be nearly valid, sent to the real miniflanneld from a known
// peer's underlay endpoint, from a stranger's, and from the peer's address
// on another port. The daemon must stay up, deliver only what the rules of
// daemon/dataplane/receive.ts allow (checked on the pod's own interface),
// and count every other datagram under exactly the drop reason that the
// reference in test/harness/hostile-datagrams.ts expects.
//
// Fragments: every fragment carries the full IP header, so the sender and
// address checks apply to each one. Well-formed fragments from a known peer,
// from its subnet to ours, are that peer's pods' traffic and are delivered
// (as flannel does); the pod reassembles them. Fragments with a wrong
// address are dropped like any other packet.
import { after, before, describe, test, type TestContext } from 'node:test';
import assert from 'node:assert/strict';
import type { Pod, SandboxNode } from '../../lab/cluster.js';
import { HEALTHZ_PORT, httpGetIn, waitFor, type RunningDaemon } from '../../lab/daemon.js';
import { compiledTest } from '../harness/paths.js';
import { OVERLAY_PORT, staticCluster, statusUrlOf, subnetOf, type StaticCluster } from '../harness/static-cluster.js';
import type { FuzzJob, FuzzReport } from '../harness/datagram-sender.js';
import type { Category } from '../harness/hostile-datagrams.js';
import { captureIPv4 } from '../harness/pod-capture.js';
import { snmp } from '../harness/node-stats.js';
import { listenUdp } from '../harness/pod-traffic.js';

const POD_PORT = 6000;
const SEED = Number(process.env['MINIFLANNEL_FUZZ_SEED'] ?? 20_260_801);

/** The mix from the known peer: mostly random, every crafted kind in quantity, and a few thousand valid packets as the control. */
function peerMix(scale: number): Partial<Record<Category, number>> {
  const n = (count: number) => Math.round(count * scale);
  return {
    random: n(300_000),
    'random-ipv4': n(150_000),
    short: n(15_000),
    ipv6: n(20_000),
    'other-version': n(15_000),
    'ihl-below-5': n(15_000),
    'total-below-header': n(15_000),
    'total-beyond-datagram': n(20_000),
    'header-beyond-datagram': n(15_000),
    'spoofed-source': n(25_000),
    'wrong-destination': n(25_000),
    'fragment-spoofed-source': n(10_000),
    'fragment-wrong-destination': n(10_000),
    'fragment-truncated': n(10_000),
    valid: n(1500),
    'valid-padded': n(1000),
    'valid-options': n(1000),
    fragmented: n(1000),
    'bad-checksum': n(5000),
  };
}

/** Strangers send the same kinds, valid ones included: none may get through. */
function strangerMix(scale: number): Partial<Record<Category, number>> {
  const mix = peerMix(scale);
  for (const category of ['valid', 'valid-padded', 'valid-options', 'fragmented'] as const) mix[category] = Math.round(10_000 * scale);
  return mix;
}

function assertAlive(daemon: RunningDaemon): void {
  const { exitCode, signalCode } = daemon.process;
  assert.ok(exitCode === null && signalCode === null, `miniflanneld on ${daemon.node.ns.name} died (exit ${exitCode}, signal ${signalCode}); log: ${daemon.logFile}`);
}

/** The daemon's counters; if it does not answer, says whether it died. */
async function countersOf(daemon: RunningDaemon): Promise<any> {
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`miniflanneld on ${daemon.node.ns.name} did not answer /status within 20 s; log: ${daemon.logFile}`)), 20_000);
  });
  try {
    return (await Promise.race([daemon.status(), deadline])).counters;
  } catch (err) {
    await new Promise((resolve) => setTimeout(resolve, 300));
    assertAlive(daemon);
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

interface Phase {
  name: string;
  from: SandboxNode;
  port: number;
  known: boolean;
  counts: Partial<Record<Category, number>>;
  empty: number;
}

describe('hostile datagrams on the overlay port', () => {
  let cluster: StaticCluster;

  before(async () => {
    // Node 1 runs the batched native transport, node 2 node:dgram; node 3 is a peer of both; node 4 a stranger.
    cluster = await staticCluster({ transports: ['mmsg', 'dgram'], peers: 1, strangers: 1 });
  });

  after(async () => {
    await cluster?.destroy();
  });

  async function fuzzDaemon(t: TestContext, daemon: RunningDaemon, pod: Pod, scale: number): Promise<void> {
    const node = daemon.node;
    const peer = cluster.peers[0]!;
    const stranger = cluster.strangers[0]!;
    const phases: Phase[] = [
      { name: 'known peer', from: peer, port: OVERLAY_PORT, known: true, counts: peerMix(scale), empty: Math.round(2000 * scale) },
      { name: 'stranger', from: stranger, port: OVERLAY_PORT, known: false, counts: strangerMix(scale / 4), empty: Math.round(500 * scale) },
      { name: "peer's address, other port", from: peer, port: 9999, known: false, counts: strangerMix(scale / 8), empty: Math.round(200 * scale) },
    ];

    const listener = await listenUdp(pod, POD_PORT);
    const capture = await captureIPv4(pod.ns).catch(async (err) => {
      await listener.stop();
      throw err;
    });
    const payloads = listener.received;
    try {

      const before = await countersOf(daemon);
      const kernelBefore = await snmp(node.ns);
      const reports: Array<FuzzReport & { phase: string }> = [];
      for (const [i, phase] of phases.entries()) {
        const job: FuzzJob = {
          bind: phase.from.underlayIp,
          bindPort: phase.port,
          to: node.underlayIp,
          toPort: OVERLAY_PORT,
          statusUrl: statusUrlOf(node),
          seed: SEED + i,
          counts: phase.counts,
          empty: phase.empty,
          target: {
            peerSubnet: subnetOf(phase.from),
            localSubnet: subnetOf(node),
            podIp: pod.ip,
            podPort: POD_PORT,
            known: phase.known,
            // Strangers' "valid" packets come from other hosts, so any of them reaching the pod stands out.
            validHosts: phase.known ? [100, 199] : [200, 254],
          },
        };
        const outcome = await phase.from.ns.execForOutcome([process.execPath, compiledTest('harness/datagram-sender.js'), 'fuzz', JSON.stringify(job)], { timeoutMs: 240_000 });
        if (outcome.exitCode !== 0) throw new Error(`the ${phase.name} sender failed (exit ${outcome.exitCode}): ${outcome.stderr.slice(-2000)}`);
        const report = { ...(JSON.parse(outcome.stdout) as FuzzReport), phase: phase.name };
        reports.push(report);
        const rate = Math.round(report.sent / (report.elapsedMs / 1000));
        t.diagnostic(`${phase.name} (${phase.from.underlayIp}:${phase.port}): ${report.sent} datagrams in ${report.elapsedMs} ms (${rate}/s, ${report.polls} status polls)`);
      }

      const expectedMarkers = reports.flatMap((r) => r.podMarkers).sort();
      await waitFor(`the pod to receive ${expectedMarkers.length} valid datagrams (has ${payloads.length})`, async () => payloads.length >= expectedMarkers.length, 30_000).catch(() => undefined);
      // Anything that should not have come would come by now.
      await new Promise((resolve) => setTimeout(resolve, 500));
      const captured = await capture.stop();
      const after = await countersOf(daemon);
      const kernelAfter = await snmp(node.ns);

      // The daemon is up and serving.
      assertAlive(daemon);
      assert.equal((await httpGetIn(node.ns, `http://${node.underlayIp}:${HEALTHZ_PORT}/healthz`)).status, 200);

      // Nothing was lost on the way, so the counters can be compared datagram for datagram.
      const rcvbufErrors = kernelAfter['Udp']!['RcvbufErrors']! - kernelBefore['Udp']!['RcvbufErrors']!;
      t.diagnostic(`kernel UDP receive-buffer drops on ${node.ns.name}: ${rcvbufErrors}`);
      for (const r of reports) assert.equal(r.unacknowledged, 0, `${r.phase}: ${r.unacknowledged} datagrams never reached the daemon (RcvbufErrors ${rcvbufErrors})`);

      const sum = (key: string) => reports.reduce((total, r) => total + (r.verdicts[key] ?? 0), 0);
      const sent = reports.reduce((total, r) => total + r.sent, 0);
      const delta = (now: number, then: number) => now - then;
      const drops = Object.fromEntries(Object.keys(after.ingressDrops).map((reason) => [reason, delta(after.ingressDrops[reason], before.ingressDrops[reason])]));
      const expectedDrops = Object.fromEntries(Object.keys(after.ingressDrops).map((reason) => [reason, sum(reason)]));
      t.diagnostic(`sent ${sent}; delivered to the TUN ${delta(after.tunPacketsWritten, before.tunPacketsWritten)} (expected ${sum('delivered')})`);
      t.diagnostic(`ingress drops by reason: ${JSON.stringify(drops)}`);
      for (const r of reports) t.diagnostic(`${r.phase} by category: ${JSON.stringify(r.byCategory)}`);

      assert.equal(delta(after.udpPacketsReceived, before.udpPacketsReceived), sent, 'datagrams the daemon received');
      assert.deepEqual(drops, expectedDrops, 'ingress drops by reason');
      assert.equal(delta(after.tunPacketsWritten, before.tunPacketsWritten), sum('delivered'), 'packets written to the TUN');
      const dropSum = Object.values(drops).reduce((a, b) => a + b, 0);
      assert.equal(delta(after.udpPacketsReceived, before.udpPacketsReceived), delta(after.tunPacketsWritten, before.tunPacketsWritten) + dropSum, 'received = written + dropped');

      // The pod's application got every valid datagram once, fragments reassembled and padding cut off.
      const markers = payloads.map((p) => /^(m\d+):\.*$/.exec(p)?.[1] ?? `unexpected payload ${JSON.stringify(p.slice(0, 40))}`).sort();
      assert.deepEqual(markers, expectedMarkers, 'datagrams the pod received');

      // On the pod's wire: only the valid packets (a fragmented one as fragments or reassembled), nothing else.
      assert.equal(captured.droppedByKernel, 0, 'tcpdump missed packets');
      // The node's own link-local chatter on the pod bridge (IGMP reports to 224.0.0.22) is no concern:
      // no router forwards 224.0.0.0/24, so none of it can have come through the overlay.
      const arrived = captured.packets.filter((p) => !p.destination.startsWith('224.0.0.'));
      const allowed = new Set(reports.flatMap((r) => r.podKeys));
      const strays = arrived.filter((p) => p.destination !== pod.ip || !allowed.has(`${p.source}/${p.id}`));
      assert.deepEqual(
        strays.slice(0, 5).map((p) => `${p.source} > ${p.destination} proto ${p.protocol} id ${p.id}: ${p.packet.subarray(0, 48).toString('hex')}`),
        [],
        `${strays.length} packets reached the pod that should not have`,
      );
      assert.equal(new Set(arrived.map((p) => `${p.source}/${p.id}`)).size, allowed.size, 'valid packets seen on the pod interface');
      t.diagnostic(`pod ${pod.ip}: ${payloads.length} valid datagrams received, ${arrived.length} IPv4 packets on its interface, none other`);

      // The daemon passes header checksums to the kernel to judge, which drops the bad ones on the node.
      const inHdrErrors = kernelAfter['Ip']!['InHdrErrors']! - kernelBefore['Ip']!['InHdrErrors']!;
      const badChecksumSent = reports[0]!.byCategory['bad-checksum'] ?? 0;
      t.diagnostic(`IP header errors on ${node.ns.name} (bad checksums the kernel dropped): ${inHdrErrors} (sent ${badChecksumSent})`);
      assert.ok(inHdrErrors >= badChecksumSent, `the kernel saw ${inHdrErrors} bad headers; ${badChecksumSent} bad checksums were delivered to it`);
    } finally {
      await capture.stop().catch(() => undefined);
      await listener.stop();
    }
  }

  test('a million hostile datagrams to the batched (mmsg) transport: all counted, only valid ones reach the pod', { timeout: 300_000 }, async (t) => {
    await fuzzDaemon(t, cluster.daemons[0]!, cluster.pods[0]!, 1);
  });

  test('the same mix, smaller, to the node:dgram transport', { timeout: 300_000 }, async (t) => {
    await fuzzDaemon(t, cluster.daemons[1]!, cluster.pods[1]!, 0.15);
  });

  test('a GSO train longer than GRO builds does not break the receiver', { timeout: 120_000 }, async (t) => {
    // Linux >= 6.11 sends up to 128 segments in one UDP GSO message, and a
    // local sender's train reaches a socket with UDP_GRO whole; the receiver
    // sized its arrays for GRO's 64 per message and wrote past them.
    const daemon = cluster.daemons[0]!;
    const stranger = cluster.strangers[0]!;
    const before = await countersOf(daemon);
    const script = [
      'import socket, struct, sys',
      's = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)',
      `s.bind(("${stranger.underlayIp}", 0))`,
      'sent = 0',
      'for segments in (128, 100, 65, 128):',
      '    for _ in range(40):',
      `        s.sendmsg([b"x" * (100 * segments)], [(socket.SOL_UDP, 103, struct.pack("H", 100))], 0, ("${daemon.node.underlayIp}", ${OVERLAY_PORT}))`,
      '        sent += segments',
      'print(sent)',
    ].join('\n');
    const sent = Number(await stranger.ns.exec(['python3', '-c', script]));
    await waitFor('the daemon to count the trains', async () => {
      assertAlive(daemon);
      const now = await countersOf(daemon);
      return now.udpPacketsReceived > before.udpPacketsReceived;
    });
    await new Promise((resolve) => setTimeout(resolve, 500));
    const after = await countersOf(daemon);
    const received = after.udpPacketsReceived - before.udpPacketsReceived;
    t.diagnostic(`${sent} datagrams sent in GSO trains of up to 128; the daemon counted ${received}, all as unknown-sender`);
    assertAlive(daemon);
    assert.ok(received > 0 && received <= sent);
    assert.equal(after.ingressDrops['unknown-sender'] - before.ingressDrops['unknown-sender'], received);
    assert.equal(after.tunPacketsWritten, before.tunPacketsWritten);
    // And it still forwards.
    const [p1, p2] = cluster.pods as [Pod, Pod];
    await p2.ns.exec(['ping', '-c', '2', '-i', '0.2', '-W', '2', p1.ip]);
  });
});
