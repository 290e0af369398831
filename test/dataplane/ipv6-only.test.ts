// Data planes of an IPv6-only cluster, in memory: the nodes lease IPv6
// subnets alone and carry no IPv4 at all, over an IPv6 underlay (2001:2::/48).
// IPv4 packets are refused both ways as 'ipv4-disabled', as IPv6 is at an
// IPv4-only node. No kernel, no root.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import pino from 'pino';
import { DataPlane, PeerTable, type Peer } from '../../daemon/dataplane/index.js';
import { describePeer } from '../../daemon/dataplane/peer-table.js';
import { authKey, createSealer, SEAL_OVERHEAD, type Sealer } from '../../daemon/dataplane/sealing.js';
import { routeEgress } from '../../daemon/dataplane/send.js';
import { CODE_NO_ROUTE, ICMP6_DEST_UNREACHABLE, ICMP6_PACKET_TOO_BIG } from '../../daemon/dataplane/icmp6.js';
import { checkIPv6 } from '../../daemon/dataplane/ipv6-packet.js';
import { parseCidr, parseIPv4 } from '../../daemon/net/ipv4.js';
import { parseCidr6 } from '../../daemon/net/ipv6.js';
import { parseEndpoint } from '../../daemon/transport/index.js';
import { MemoryNetwork } from '../../daemon/transport/memory.js';
import { MemoryTun } from '../../daemon/tun/memory.js';
import { ipv4Packet } from '../harness/packets.js';
import { addressBytes, echo6, PROTO_ICMPV6, udp6, upperChecksumHolds } from './ipv6-packets.js';
import { assertCarriedBothWays, ingressVerdict, memoryNode, podA6, podB6, podPacket, PORT, unaccounted, type MemoryNode, type MemoryNodeOptions } from './memory-plane.js';
import { anyBytes, nearValid, podTraffic } from './packet-arbitraries.js';
import { asPeer } from './peer-entries.js';

const ip6A = '2001:2::1';
const ip6B = '2001:2::2';
/** The ids their seals name. A node without IPv4 has no IPv4 PublicIP; the wiring gives each a 32-bit id unique in the cluster. */
const idA = 1;
const idB = 2;

type NodeOptions = Partial<Omit<MemoryNodeOptions, 'subnet' | 'subnet6' | 'ip' | 'ip6' | 'sealer'>>;

/** Two IPv6-only nodes (fd00:10:244:1::/64 and :2::/64) on an IPv6 underlay, each the other's peer. */
function pair(options: NodeOptions & { sealers?: [Sealer, Sealer] } = {}): [MemoryNode, MemoryNode] {
  const { sealers, ...common } = options;
  const network = new MemoryNetwork();
  const a = memoryNode(network, { subnet6: 'fd00:10:244:1::/64', ip: idA, ip6: ip6A, ...common, ...(sealers ? { sealer: sealers[0] } : {}) });
  const b = memoryNode(network, { subnet6: 'fd00:10:244:2::/64', ip: idB, ip6: ip6B, ...common, ...(sealers ? { sealer: sealers[1] } : {}) });
  a.plane.setPeers([b.peer]);
  b.plane.setPeers([a.peer]);
  return [a, b];
}

const version = (p: Buffer) => (p.length === 0 ? 0 : p[0]! >> 4);

describe('two IPv6-only data planes over an IPv6 underlay', () => {
  it('carry IPv6 pod packets both ways, byte for byte, as bare packets, and the counters add up', () => {
    const [a, b] = pair();
    assert.equal(a.peer.subnet, undefined, 'the node leases no IPv4 subnet');
    const fromA = Array.from({ length: 90 }, (_, i) => podPacket(6, true, i, 100 + i * 13));
    const fromB = Array.from({ length: 70 }, (_, i) => podPacket(6, false, i, 1400 - i * 11));
    assertCarriedBothWays(a, b, fromA, fromB);
  });

  it('drop IPv4 from the TUN as ipv4-disabled, answering no ICMP and sending nothing; the IPv6 around it still flows', () => {
    const [a, b] = pair();
    const ipv6 = [podPacket(6, true, 1), podPacket(6, true, 2)];
    const noRoute4 = ipv4Packet({ source: '10.244.1.7', destination: '10.244.9.9', dontFragment: true, payload: Buffer.alloc(64) });
    a.tun.send([ipv6[0]!, podPacket(4, true, 3), Buffer.from([0x45]), noRoute4, Buffer.alloc(0), Buffer.from([0x50, 0, 0, 20]), ipv6[1]!]);
    const sa = a.plane.snapshot();
    assert.equal(sa.egressDrops['ipv4-disabled'], 3, 'every packet whose version says IPv4, a one-byte one too');
    assert.equal(sa.egressDrops.truncated, 1, 'an empty slot is truncated, whatever its stale first byte');
    assert.equal(sa.egressDrops['not-ipv4'], 1, 'version 5 is no family at all');
    assert.equal(sa.udpPacketsSent, 2);
    assert.equal(sa.icmpErrorsSent, 0);
    assert.deepEqual(a.tun.written, [], 'no ICMP error: the node has no IPv4 address to send one from');
    assert.deepEqual(b.tun.takeWritten(), ipv6);
    assert.deepEqual(unaccounted(sa), { egress: 0, ingress: 0 });
  });

  it('drop IPv4 from a peer as ipv4-disabled, never delivering it; a stranger is unknown-sender before any family', () => {
    const [a, b] = pair();
    const cases: Array<[Buffer, string, string | null]> = [
      [podPacket(4, true, 1), ip6A, 'ipv4-disabled'],
      [Buffer.from([0x45]), ip6A, 'ipv4-disabled'],
      [Buffer.from([0x50, 0, 0, 20]), ip6A, 'not-ipv4'],
      [Buffer.alloc(0), ip6A, 'truncated'],
      [podPacket(4, true, 2), '2001:2::9', 'unknown-sender'],
      [podPacket(6, true, 3), ip6A, null],
    ];
    for (const [packet, sender, expected] of cases) {
      assert.equal(ingressVerdict(b, packet, sender, PORT).verdict, expected, `${packet.subarray(0, 1).toString('hex')} from ${sender}`);
    }
    // And on the wire: A's transport sends B an IPv4 packet its data plane would not have.
    const stray = podPacket(4, true, 4);
    a.transport.send(stray, 0, stray.length, b.peer.endpoint);
    a.transport.flush();
    const sb = b.plane.snapshot();
    assert.equal(sb.ingressDrops['ipv4-disabled'], 3);
    assert.equal(sb.tunPacketsWritten, 1);
    assert.ok(b.tun.written.every((p) => version(p) === 6));
    assert.deepEqual(unaccounted(sb), { egress: 0, ingress: 0 });
  });

  it('answer a packet without route or too big with ICMPv6 from the IPv6 overlay address, a full batch of them intact', () => {
    // Every error is as large as ICMPv6 makes them (1280 bytes): a node without IPv4 still needs slots that wide.
    const [a] = pair({ maxPacket: 1300, tunMtu: 1500 });
    const sent = Array.from({ length: 64 }, (_, i) =>
      i % 2 === 0 ? udp6(podA6, podB6, Buffer.alloc(1400, i)) : udp6(podA6, `fd00:10:244:9::${i}`, Buffer.alloc(1240, i)),
    );
    a.tun.send(sent);
    const replies = a.tun.takeWritten();
    assert.equal(replies.length, 64);
    for (const [i, reply] of replies.entries()) {
      assert.equal(checkIPv6(reply, 0, reply.length), null);
      assert.equal(reply[6], PROTO_ICMPV6);
      assert.deepEqual(reply.subarray(8, 24), addressBytes('fd00:10:244:1::'), 'from the overlay address');
      assert.ok(upperChecksumHolds(reply));
      assert.equal(reply.length, 1280);
      const icmp = reply.subarray(40);
      assert.deepEqual([icmp[0], icmp[1]], i % 2 === 0 ? [ICMP6_PACKET_TOO_BIG, 0] : [ICMP6_DEST_UNREACHABLE, CODE_NO_ROUTE]);
      assert.deepEqual(icmp.subarray(8), sent[i]!.subarray(0, 1280 - 48), 'quotes its own packet, not a neighbour slot');
    }
    const s = a.plane.snapshot();
    assert.deepEqual([s.egressDrops['too-big'], s.egressDrops['no-route'], s.icmpErrorsSent], [32, 32, 64]);
  });

  it('on random traffic of both families both ways, count everything once, deliver only IPv6 and answer only in ICMPv6', () => {
    fc.assert(
      fc.property(fc.array(podTraffic, { maxLength: 150 }), fc.array(podTraffic, { maxLength: 150 }), (fromA, fromB) => {
        const [a, b] = pair({ maxPacket: 1400, tunMtu: 1500 });
        a.tun.send(fromA);
        b.tun.send(fromB);
        const [sa, sb] = [a.plane.snapshot(), b.plane.snapshot()];
        for (const s of [sa, sb]) assert.deepEqual(unaccounted(s), { egress: 0, ingress: 0 });
        assert.equal(sa.egressDrops['ipv4-disabled'], fromA.filter((p) => version(p) === 4).length);
        assert.equal(sb.udpPacketsReceived, sa.udpPacketsSent);
        assert.equal(sa.udpPacketsReceived, sb.udpPacketsSent);
        for (const p of b.tun.written) assert.equal(checkIPv6(p, 0, p.length), null);
        // The errors B wrote to its own TUN come from its overlay address; the rest came from A.
        const errors = b.tun.written.filter((p) => p.subarray(8, 24).equals(addressBytes('fd00:10:244:2::')));
        assert.equal(errors.length, sb.icmpErrorsSent);
        assert.equal(b.tun.written.length - errors.length, sb.tunPacketsWritten);
      }),
      { numRuns: 150 },
    );
  });

  for (const mode of ['mac', 'encrypt'] as const) {
    it(`seal (${mode}) IPv6 both ways under the sealerIds given; a sealed IPv4 packet opens, then is ipv4-disabled`, () => {
      const key = authKey(randomBytes(32));
      const sealers: [Sealer, Sealer] = [createSealer({ mode, localIp: idA, keys: [key] }), createSealer({ mode, localIp: idB, keys: [key] })];
      const [a, b] = pair({ sealers, maxPacket: 1400 });
      const fromA = Array.from({ length: 40 }, (_, i) => podPacket(6, true, i, 120 + i * 31));
      const fromB = Array.from({ length: 30 }, (_, i) => podPacket(6, false, i, 1400 - i * 37));
      a.tun.send(fromA);
      b.tun.send(fromB);
      assert.deepEqual(b.tun.takeWritten(), fromA);
      assert.deepEqual(a.tun.takeWritten(), fromB);
      assert.equal(a.plane.snapshot().udpBytesSent, fromA.reduce((n, p) => n + p.length + SEAL_OVERHEAD, 0));
      const ipv4 = podPacket(4, true, 1);
      const sealed = Buffer.alloc(ipv4.length + SEAL_OVERHEAD);
      sealers[0].seal(ipv4, 0, ipv4.length, sealed, 0);
      assert.equal(ingressVerdict(b, sealed, ip6A, PORT).verdict, 'ipv4-disabled');
      assert.equal(ingressVerdict(b, ipv4, ip6A, PORT).verdict, 'unauthenticated', 'a bare packet is no seal');
      const { sealerId: _unnamed, ...anonymous } = a.peer;
      assert.throws(() => b.plane.setPeer(anonymous), { name: 'RangeError', message: /sealing over an IPv6 underlay needs the peer's sealerId/ });
    });
  }

  it('remove a peer by its IPv6 subnet: its datagrams are then a stranger\'s, and packets for it have no route', () => {
    const [a, b] = pair();
    assert.equal(b.plane.removePeer(parseCidr6('fd00:10:244:1::/64')), true);
    assert.equal(b.plane.removePeer(parseCidr6('fd00:10:244:1::/64')), false);
    assert.equal(b.plane.peerTable.size, 0);
    a.tun.send([podPacket(6, true, 1)]);
    b.tun.send([echo6(podB6, podA6, 2)]);
    const sb = b.plane.snapshot();
    assert.deepEqual([sb.ingressDrops['unknown-sender'], sb.egressDrops['no-route'], sb.icmpErrorsSent], [1, 1, 1]);
  });
});

describe('a data plane without IPv4', () => {
  const network = new MemoryNetwork();
  const transport = network.open({ ip: parseIPv4('198.18.0.1'), port: PORT });
  const common = { tun: new MemoryTun(), transport, maxPacket: 1472, logger: pino({ level: 'silent' }) };

  it('needs a subnet of some family, and localSubnet only with overlayAddress', () => {
    assert.throws(() => new DataPlane(common), { name: 'RangeError', message: /needs localSubnet, localSubnet6 or both/ });
    const localSubnet = parseCidr('10.244.1.0/24');
    assert.throws(() => new DataPlane({ ...common, localSubnet }), { name: 'RangeError', message: /localSubnet and overlayAddress go together/ });
    const localSubnet6 = parseCidr6('fd00:10:244:1::/64');
    assert.throws(() => new DataPlane({ ...common, localSubnet6, overlayAddress: localSubnet.network }), /localSubnet and overlayAddress go together/);
    assert.equal(new DataPlane({ ...common, localSubnet6 }).peerTable.subnetLength, undefined);
  });

  it('logs its start with its IPv6 subnet alone', () => {
    const lines: Array<Record<string, unknown>> = [];
    const logger = pino({}, { write: (line: string) => void lines.push(JSON.parse(line) as Record<string, unknown>) });
    const plane = new DataPlane({ ...common, logger, localSubnet6: parseCidr6('fd00:10:244:1::/64') });
    plane.start((err) => {
      throw err;
    });
    const started = lines.find((line) => line.msg === 'data plane started');
    assert.equal(started?.subnet6, 'fd00:10:244:1::/64');
    assert.ok(started !== undefined && !('subnet' in started));
  });
});

describe('the peer table of a node without IPv4', () => {
  const endpoint = (n: number, port = 8285) => parseEndpoint(`2001:2::${n}`, port);
  const peer = (n: number, port = 8285): Peer => ({ subnet6: parseCidr6(`fd00:10:244:${n}::/64`), endpoint: endpoint(n, port) });
  const at = (address: string) => Buffer.concat([Buffer.alloc(3), addressBytes(address)]);
  const from = (table: PeerTable, n: number, port = 8285) => table.fromEndpoint6(Uint32Array.from(endpoint(n).ip6!), 0, port);

  it('keys peers by their IPv6 subnet: get, delete, replace; lookup6 finds them and an IPv4 lookup nothing', () => {
    const [two, three] = [peer(2), peer(3)];
    const table = new PeerTable(undefined, [two, three], 64, 6);
    assert.equal(table.size, 2);
    assert.deepEqual([...table.peers()].map(asPeer), [two, three]);
    assert.deepEqual(asPeer(table.get(parseCidr6('fd00:10:244:2::/64'))), two);
    assert.equal(table.get(parseCidr6('fd00:10:244:2::/80')), undefined, 'another length is another subnet');
    assert.equal(table.get(parseCidr('10.244.2.0/24')), undefined);
    assert.deepEqual(asPeer(table.lookup6(at('fd00:10:244:3::9'), 3)), three);
    assert.equal(table.lookup(parseIPv4('10.244.2.9')), undefined);
    assert.equal(table.lookup(0), undefined);
    assert.deepEqual(asPeer(from(table, 2)), two);
    // The same IPv6 subnet again is the same peer moved: the old endpoint is forgotten.
    const moved = peer(2, 9000);
    table.set(moved);
    assert.equal(table.size, 2);
    assert.equal(from(table, 2), undefined);
    assert.deepEqual(asPeer(from(table, 2, 9000)), moved);
    assert.deepEqual(asPeer(table.lookup6(at('fd00:10:244:2::1'), 3)), moved);
    assert.equal(table.delete(parseCidr6('fd00:10:244:2::/64')), true);
    assert.equal(table.delete(parseCidr6('fd00:10:244:2::/64')), false);
    assert.equal(table.lookup6(at('fd00:10:244:2::1'), 3), undefined);
    assert.equal(from(table, 2, 9000), undefined);
    assert.deepEqual([...table.peers()].map(asPeer), [three]);
  });

  it('refuses an IPv4 subnet, a peer without subnets and an IPv6 subnet of another length, each naming it; and a table of no family', () => {
    const table = new PeerTable(undefined, [], 64, 6);
    const refusals: Array<[Peer, string]> = [
      [{ ...peer(2), subnet: parseCidr('10.244.2.0/24') }, 'peer subnet 10.244.2.0/24 is refused: this node carries IPv6 only'],
      [{ endpoint: endpoint(2) }, 'peer at [2001:2::2]:8285 is refused: it has neither an IPv4 nor an IPv6 subnet'],
      [{ ...peer(2), subnet6: parseCidr6('fd00:10:244:2::/80') }, 'peer IPv6 subnet fd00:10:244:2::/80 is refused: it is not a /64'],
      [{ ...peer(2), endpoint: parseEndpoint('198.18.0.2', 8285) }, 'peer fd00:10:244:2::/64=198.18.0.2:8285 is refused: its endpoint is not on the IPv6 underlay'],
    ];
    for (const [refused, message] of refusals) assert.throws(() => table.set(refused), { name: 'RangeError', message });
    assert.equal(table.size, 0);
    assert.throws(() => new PeerTable(undefined, [], undefined, 6), { name: 'RangeError', message: /needs an IPv4 or an IPv6 subnet length/ });
  });

  it('a table that carries IPv4 refuses a peer with an IPv6 subnet alone, and finds a dual-stack peer by either subnet', () => {
    const dual = new PeerTable(24, [], 64, 6);
    assert.throws(() => dual.set(peer(2)), { name: 'RangeError', message: 'peer IPv6 subnet fd00:10:244:2::/64 is refused: it has no IPv4 subnet, and this node carries IPv4' });
    const both: Peer = { ...peer(2), subnet: parseCidr('10.244.2.0/24') };
    dual.set(both);
    assert.deepEqual(asPeer(dual.get(parseCidr6('fd00:10:244:2::/64'))), both);
    assert.deepEqual(asPeer(dual.get(parseCidr('10.244.2.0/24'))), both);
    assert.equal(dual.delete(parseCidr6('fd00:10:244:2::/64')), true);
    assert.equal(dual.size, 0);
    assert.equal(dual.lookup(parseIPv4('10.244.2.9')), undefined, 'deleting by the IPv6 subnet removes the whole peer');
  });

  it('names a peer by its subnets and endpoint, whichever it has', () => {
    assert.equal(describePeer(peer(2)), 'fd00:10:244:2::/64=[2001:2::2]:8285');
    assert.equal(describePeer({ ...peer(2), subnet: parseCidr('10.244.2.0/24') }), '10.244.2.0/24+fd00:10:244:2::/64=[2001:2::2]:8285');
    assert.equal(describePeer({ subnet: parseCidr('10.244.2.0/24'), endpoint: parseEndpoint('198.18.0.2', 8285) }), '10.244.2.0/24=198.18.0.2:8285');
  });

  it('agrees with a naive model on random sets, moves and deletes by IPv6 subnet', () => {
    const operation = fc.record({ n: fc.integer({ min: 0, max: 7 }), port: fc.integer({ min: 1, max: 3 }), remove: fc.boolean() });
    fc.assert(
      fc.property(fc.array(operation, { maxLength: 60 }), (operations) => {
        const table = new PeerTable(undefined, [], 64, 6);
        const model = new Map<number, Peer>();
        for (const { n, port, remove } of operations) {
          if (remove) {
            assert.equal(table.delete(parseCidr6(`fd00:10:244:${n}::/64`)), model.delete(n));
          } else {
            const p = peer(n, port);
            table.set(p);
            model.set(n, p);
          }
          assert.equal(table.size, model.size);
          for (let k = 0; k < 8; k++) {
            const expected = model.get(k);
            assert.deepEqual(asPeer(table.get(parseCidr6(`fd00:10:244:${k}::/64`))), expected);
            assert.deepEqual(asPeer(table.lookup6(at(`fd00:10:244:${k}::1234`), 3)), expected);
            for (let p = 1; p <= 3; p++) assert.deepEqual(asPeer(from(table, k, p)), expected?.endpoint.port === p ? expected : undefined);
          }
        }
      }),
      { numRuns: 300 },
    );
  });

  it('egress at a node without IPv4: any packet whose version says IPv4 is ipv4-disabled before its header is read', () => {
    const table = new PeerTable(undefined, [peer(2)], 64, 6);
    fc.assert(
      fc.property(fc.oneof(nearValid, anyBytes), (packet) => {
        const expected = packet.length === 0 ? 'truncated' : version(packet) === 4 ? 'ipv4-disabled' : 'not-ipv4';
        assert.deepEqual(asPeer(routeEgress(packet, 0, packet.length, table, 1472)), expected);
      }),
      { numRuns: 5_000 },
    );
  });
});
