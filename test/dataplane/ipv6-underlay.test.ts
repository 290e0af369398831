// Data planes over an IPv6 underlay, in memory: the transports are bound to
// IPv6 addresses (2001:2::/48, RFC 5180's benchmarking range), so datagrams
// carry IPv6 senders and the peer table finds peers by IPv6 endpoint. The
// payload stays the bare IP packet of either family. No kernel, no root.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { PeerTable, type Peer } from '../../daemon/dataplane/index.js';
import { authKey, createSealer } from '../../daemon/dataplane/sealing.js';
import { parseCidr, parseIPv4 } from '../../daemon/net/ipv4.js';
import { formatIPv6, parseCidr6 } from '../../daemon/net/ipv6.js';
import { parseEndpoint } from '../../daemon/transport/index.js';
import { udp6 } from './ipv6-packets.js';
import { assertCarriedBothWays, datagramBatch, MemoryNetwork, meshed, memoryNode, podB6, podPacket, unaccounted, type MemoryNode } from './memory-plane.js';
import { asPeer } from './peer-entries.js';

const ip6A = '2001:2::1';
const ip6B = '2001:2::2';

/** Two dual-stack nodes on an IPv6 underlay, each the other's peer. */
function pair(): [MemoryNode, MemoryNode] {
  const network = new MemoryNetwork();
  const a = memoryNode(network, { subnet: '10.244.1.0/24', subnet6: 'fd00:10:244:1::/64', ip: 0, ip6: ip6A });
  const b = memoryNode(network, { subnet: '10.244.2.0/24', subnet6: 'fd00:10:244:2::/64', ip: 0, ip6: ip6B });
  meshed(a, b);
  return [a, b];
}

describe('two data planes over an IPv6 underlay', () => {
  it('carry IPv4 and IPv6 pod packets both ways, byte for byte, and the counters add up', () => {
    const [a, b] = pair();
    const fromA = Array.from({ length: 90 }, (_, i) => podPacket(i % 3 === 0 ? 4 : 6, true, i, 100 + i * 13));
    const fromB = Array.from({ length: 70 }, (_, i) => podPacket(i % 2 === 0 ? 6 : 4, false, i, 1400 - i * 11));
    assertCarriedBothWays(a, b, fromA, fromB);
  });

  it("drop a stranger's datagram as unknown-sender: another IPv6 address, or the peer's address with another port", () => {
    const [a, b] = pair();
    const packet = podPacket(6, true, 5, 200);
    const packet4 = podPacket(4, true, 6, 200);
    b.transport.receive(
      datagramBatch([
        { data: packet, ip6: '2001:2::3', port: 8285 },
        { data: packet4, ip6: '2001:2::3', port: 8285 },
        { data: packet, ip6: ip6A, port: 8286 },
        { data: packet, ip6: '2001:2:0:1::1', port: 8285 },
        { data: packet, ip6: ip6A, port: 8285 },
      ]),
    );
    const s = b.plane.snapshot();
    assert.equal(s.ingressDrops['unknown-sender'], 4);
    assert.equal(s.tunPacketsWritten, 1, "only the peer's own endpoint is heard");
    assert.deepEqual(b.tun.takeWritten(), [packet]);
    assert.deepEqual(unaccounted(s), { egress: 0, ingress: 0 });
    assert.equal(a.plane.snapshot().udpPacketsSent, 0);
  });

  it('check the inner packet against the sending peer as on an IPv4 underlay: B may not speak for A', () => {
    const [a, b] = pair();
    const spoofed = udp6(podB6, podB6, Buffer.alloc(20));
    b.transport.receive(datagramBatch([{ data: spoofed, ip6: ip6A, port: 8285 }]));
    assert.equal(b.plane.snapshot().ingressDrops['spoofed-source'], 1);
    assert.equal(a.plane.snapshot().udpPacketsReceived, 0);
  });

  it('refuse a peer whose endpoint is IPv4, with a RangeError naming it, and keep the table as it was', () => {
    const [a] = pair();
    const peer = { subnet: parseCidr('10.244.3.0/24'), endpoint: parseEndpoint('198.18.0.3', 8285) };
    assert.throws(() => a.plane.setPeer(peer), { name: 'RangeError', message: 'peer 10.244.3.0/24=198.18.0.3:8285 is refused: its endpoint is not on the IPv6 underlay' });
    assert.throws(() => a.plane.setPeers([peer]), RangeError);
    assert.equal(a.plane.peerTable.size, 1);
    assert.equal(a.plane.peerTable.get(peer.subnet), undefined);
  });

  for (const mode of ['mac', 'encrypt'] as const) {
    it(`seal (${mode}) with each node's IPv4 PublicIP as the sender its nonces name, and refuse a peer that does not name it`, () => {
      const network = new MemoryNetwork();
      const key = authKey(randomBytes(32));
      const node = (n: number, ip6: string) => {
        const ip = parseIPv4(`198.18.0.${n}`);
        return memoryNode(network, { subnet: `10.244.${n}.0/24`, subnet6: `fd00:10:244:${n}::/64`, ip, ip6, sealer: createSealer({ mode, localIp: ip, keys: [key] }) });
      };
      const [a, b] = [node(1, ip6A), node(2, ip6B)];
      meshed(a, b);
      const fromA = Array.from({ length: 40 }, (_, i) => podPacket(i % 2 === 0 ? 4 : 6, true, i, 120 + i * 17));
      a.tun.send(fromA);
      assert.deepEqual(b.tun.takeWritten(), fromA);
      assert.equal(b.plane.snapshot().ingressDrops.unauthenticated, 0);
      // A seal that names another node's address fails to open, though it came from A's endpoint.
      b.plane.setPeer({ ...a.peer, sealerId: parseIPv4('198.18.0.9') });
      a.tun.send([podPacket(6, true, 99, 200)]);
      assert.deepEqual(b.tun.takeWritten(), []);
      assert.equal(b.plane.snapshot().ingressDrops.unauthenticated, 1);
      const { sealerId: _unnamed, ...anonymous } = a.peer;
      assert.throws(() => b.plane.setPeer(anonymous), /sealing over an IPv6 underlay needs the peer's sealerId/);
    });
  }
});

describe('the peer table on an IPv6 underlay', () => {
  const endpoint6 = (address: string, port = 8285) => parseEndpoint(address, port);
  const peer = (n: number, address: string, port = 8285) => ({ subnet: parseCidr(`10.244.${n}.0/24`), endpoint: endpoint6(address, port) });
  const words = (address: string, port = 8285) => ({ words: Uint32Array.from(parseEndpoint(address, port).ip6!), port });
  const from = (table: PeerTable, address: string, port = 8285) => {
    const w = words(address, port);
    return table.fromEndpoint6(w.words, 0, w.port);
  };

  it('finds a sender by address and port exactly, at any offset of the source words', () => {
    const table = new PeerTable(24, [peer(2, 'fd00::2'), peer(3, 'fd00::2', 9000), peer(4, 'fd00:0:0:1::2')], undefined, 6);
    assert.deepEqual(asPeer(from(table, 'fd00::2'))?.subnet?.network, parseIPv4('10.244.2.0'));
    assert.deepEqual(asPeer(from(table, 'fd00::2', 9000))?.subnet?.network, parseIPv4('10.244.3.0'));
    assert.deepEqual(asPeer(from(table, 'fd00:0:0:1::2'))?.subnet?.network, parseIPv4('10.244.4.0'));
    assert.equal(from(table, 'fd00::3'), undefined);
    assert.equal(from(table, 'fd00::2', 8286), undefined);
    const batch = new Uint32Array(12);
    batch.set(parseEndpoint('fd00:0:0:1::2', 1).ip6!, 8);
    assert.deepEqual(asPeer(table.fromEndpoint6(batch, 8, 8285))?.subnet?.network, parseIPv4('10.244.4.0'));
    assert.equal(table.fromEndpoint(0, 8285), undefined, 'an IPv6 peer is not found by an IPv4 sender');
  });

  it('moves a peer to a new endpoint and forgets the old one; a removed peer is not heard', () => {
    const table = new PeerTable(24, [peer(2, '2001:2::2')], undefined, 6);
    table.set(peer(2, '2001:2::9'));
    assert.equal(from(table, '2001:2::2'), undefined);
    assert.deepEqual(asPeer(from(table, '2001:2::9'))?.subnet?.network, parseIPv4('10.244.2.0'));
    table.delete(parseCidr('10.244.2.0/24'));
    assert.equal(from(table, '2001:2::9'), undefined);
    assert.equal(table.size, 0);
  });

  it('refuses an IPv6 endpoint in a table for an IPv4 underlay (the default)', () => {
    assert.throws(() => new PeerTable(24, [peer(2, '2001:2::2')]), {
      name: 'RangeError',
      message: 'peer 10.244.2.0/24=[2001:2::2]:8285 is refused: its endpoint is not on the IPv4 underlay',
    });
  });

  it('agrees with a naive reference on random endpoints, sets, moves and deletes', () => {
    // Few distinct words, so that addresses share prefixes and differ in one word, and ports collide.
    const word = fc.constantFrom(0, 1, 0x7fffffff, 0x80000000, 0xffffffff);
    const address = fc.tuple(word, word, word, word).map((w) => formatIPv6(w));
    const port = fc.constantFrom(8285, 8286, 1);
    const op = fc.record({ subnet: fc.integer({ min: 0, max: 7 }), address, port, remove: fc.boolean() });
    fc.assert(
      fc.property(fc.array(op, { maxLength: 60 }), fc.array(fc.tuple(address, port), { maxLength: 20 }), (ops, probes) => {
        const table = new PeerTable(24, [], 64, 6);
        // The naive reference: subnets in a Map, endpoints by their text, the newer of two leases naming one endpoint kept.
        const bySubnet = new Map<number, Peer>();
        const byEndpoint = new Map<string, Peer>();
        const keyOf = (p: Peer) => `[${p.endpoint.address}]:${p.endpoint.port}`;
        const forget = (subnet: number) => {
          const old = bySubnet.get(subnet);
          if (old === undefined) return false;
          bySubnet.delete(subnet);
          if (byEndpoint.get(keyOf(old)) === old) byEndpoint.delete(keyOf(old));
          return true;
        };
        for (const o of ops) {
          const p = { subnet: parseCidr(`10.244.${o.subnet}.0/24`), subnet6: parseCidr6(`fd00:10:244:${o.subnet}::/64`), endpoint: endpoint6(o.address, o.port) };
          if (o.remove) {
            assert.equal(table.delete(p.subnet), forget(o.subnet));
          } else {
            table.set(p);
            forget(o.subnet);
            bySubnet.set(o.subnet, p);
            byEndpoint.set(keyOf(p), p);
          }
        }
        for (const [a, p] of [...probes, ...ops.map((o) => [o.address, o.port] as const)]) {
          assert.deepEqual(asPeer(from(table, a, p)), byEndpoint.get(`[${formatIPv6(parseEndpoint(a, p).ip6!)}]:${p}`), `[${a}]:${p}`);
        }
      }),
    );
  });
});
