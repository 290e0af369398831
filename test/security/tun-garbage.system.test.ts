// Garbage from the kernel into the TUN: IPv6, broadcasts and multicast that
// a node or a pod sends into the overlay. This cluster is IPv4-only and
// miniflanneld carries unicast only, so each such packet is dropped and
// counted under an egress reason ('ipv6-disabled' or 'non-unicast') and
// never reaches a peer.
//
// "Broadcast" covers the limited broadcast 255.255.255.255 and directed
// broadcasts into the cluster network: a peer subnet's (10.244.2.255) and
// the whole network's (10.244.255.255). The kernel routes these into the
// TUN as plain unicast, but the node that leases the subnet would take the
// first as a broadcast on its pod bridge.
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { EgressDropReason } from '../../daemon/dataplane/index.js';
import type { Pod } from '../../lab/cluster.js';
import type { Netns } from '../../lab/netns.js';
import { staticCluster, type StaticCluster } from '../harness/static-cluster.js';

const COUNT = 5;

describe('garbage from the kernel into the TUN', () => {
  let cluster: StaticCluster;

  before(async () => {
    cluster = await staticCluster({ transports: ['mmsg', 'dgram'], peers: 0, strangers: 0 });
  });

  after(async () => {
    await cluster?.destroy();
  });

  /** Sends COUNT echo requests, expecting no answer; only the packets matter. */
  async function pingInto(ns: Netns, args: string[]): Promise<void> {
    const outcome = await ns.execForOutcome(['ping', '-c', String(COUNT), '-i', '0.2', '-W', '1', ...args]);
    assert.match(outcome.stdout, new RegExp(`${COUNT} packets transmitted`), `ping ${args.join(' ')}: ${outcome.stdout}${outcome.stderr}`);
  }

  test('IPv6, broadcast and multicast are dropped and counted, never forwarded', { timeout: 120_000 }, async (t) => {
    const [d1, d2] = cluster.daemons;
    const [p1, p2] = cluster.pods as [Pod, Pod];
    const node = d1!.node;

    // The control: unicast across the overlay does move the peer's counters.
    const control = (await d2!.status()).counters!.udpPacketsReceived;
    await p1.ns.exec(['ping', '-c', '2', '-i', '0.2', '-W', '2', p2.ip]);
    assert.ok((await d2!.status()).counters!.udpPacketsReceived >= control + 2, 'pod-to-pod pings reach the peer');

    await node.ns.ip('-6', 'addr', 'add', 'fd00:244::1/64', 'dev', 'flannel0', 'nodad');
    await node.ns.ip('route', 'add', '239.0.0.0/8', 'dev', 'flannel0');
    const [before1, before2] = await Promise.all([d1!.status(), d2!.status()]).then(([a, b]) => [a.counters!, b.counters!] as const);

    const ipv6 = [
      ['-6', 'fd00:244::2'],
      ['-6', '-I', 'flannel0', 'ff02::1'],
    ];
    const nonUnicast: Array<[Netns, string[]]> = [
      [node.ns, ['-b', '-I', 'flannel0', '255.255.255.255']],
      [node.ns, ['-b', '10.244.2.255']], // the peer's subnet broadcast
      [node.ns, ['-b', '10.244.255.255']], // the cluster network's
      [p1.ns, ['-b', '10.244.2.255']], // from a pod, forwarded by its node into the TUN
      [p1.ns, ['-b', '10.244.255.255']],
      [node.ns, ['-I', 'flannel0', '224.0.0.1']],
      [node.ns, ['239.1.2.3']],
    ];
    await Promise.all([...ipv6.map((args) => pingInto(node.ns, args)), ...nonUnicast.map(([ns, args]) => pingInto(ns, args))]);
    await new Promise((resolve) => setTimeout(resolve, 500));
    const [after1, after2] = await Promise.all([d1!.status(), d2!.status()]).then(([a, b]) => [a.counters!, b.counters!] as const);

    const egress = (reason: EgressDropReason) => after1.egressDrops[reason] - before1.egressDrops[reason];
    const read = after1.tunPacketsRead - before1.tunPacketsRead;
    t.diagnostic(`node 1 read ${read} packets from its TUN: ipv6-disabled ${egress('ipv6-disabled')}, non-unicast ${egress('non-unicast')}, no-route ${egress('no-route')}, forwarded ${after1.udpPacketsSent - before1.udpPacketsSent}`);
    t.diagnostic(`node 2 received ${after2.udpPacketsReceived - before2.udpPacketsReceived} datagrams meanwhile`);

    // The kernel adds IPv6 multicast listener reports of its own, hence "at least".
    assert.ok(egress('ipv6-disabled') >= ipv6.length * COUNT, `ipv6-disabled drops: ${egress('ipv6-disabled')}`);
    assert.equal(egress('non-unicast'), nonUnicast.length * COUNT, 'non-unicast drops');
    assert.equal(egress('no-route'), 0, 'a broadcast is not a destination without a lease');
    assert.equal(after1.icmpErrorsSent - before1.icmpErrorsSent, 0, 'no ICMP error answers a broadcast');
    const sum = (drops: Record<string, number>) => Object.values(drops).reduce((a, b) => a + b, 0);
    assert.equal(read, after1.udpPacketsSent - before1.udpPacketsSent + sum(after1.egressDrops) - sum(before1.egressDrops), 'read = sent + dropped');
    assert.equal(after1.udpPacketsSent, before1.udpPacketsSent, 'node 1 forwarded nothing');
    assert.equal(after2.udpPacketsReceived, before2.udpPacketsReceived, 'node 2 received nothing');
  });
});
