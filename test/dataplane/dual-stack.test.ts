// Dual-stack data planes over the in-memory TUN and transport: IPv6 pod
// traffic over the IPv4 underlay, beside IPv4, through the egress and
// ingress loops of send.ts and receive.ts. No kernel, no root.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { authKey, createSealer, SEAL_HEADER_BYTES, SEAL_OVERHEAD, type Sealer } from '../../daemon/dataplane/sealing.js';
import { CODE_NO_ROUTE, ICMP6_DEST_UNREACHABLE, ICMP6_PACKET_TOO_BIG } from '../../daemon/dataplane/icmp6.js';
import { checkIPv4 } from '../../daemon/dataplane/ipv4-packet.js';
import { checkIPv6 } from '../../daemon/dataplane/ipv6-packet.js';
import { parseIPv4 } from '../../daemon/net/ipv4.js';
import type { Endpoint } from '../../daemon/transport/index.js';
import { icmpEcho, ipv4Packet } from '../harness/packets.js';
import { addressBytes, echo6, EXT_DESTINATION_OPTIONS, fragmentHeader, ipv6Packet, optionsHeader, PROTO_ICMPV6, tcp6, udp6, upperChecksumHolds } from './ipv6-packets.js';
import { MemoryNetwork, meshed, memoryNode, podA4, podA6, podB6, podPacket, unaccounted, type MemoryNode, type MemoryNodeOptions } from './memory-plane.js';
import { podTraffic } from './packet-arbitraries.js';

const ipA = parseIPv4('198.18.0.1');
const ipB = parseIPv4('198.18.0.2');


type NodeOptions = Partial<Omit<MemoryNodeOptions, 'subnet' | 'subnet6' | 'ip'>>;

/** Two dual-stack nodes, each the other's peer. */
function pair(options: NodeOptions & { sealers?: [Sealer, Sealer] } = {}): [MemoryNode, MemoryNode] {
  const { sealers, ...common } = options;
  const network = new MemoryNetwork();
  const a = memoryNode(network, { subnet: '10.244.1.0/24', subnet6: 'fd00:10:244:1::/64', ip: ipA, ...common, ...(sealers ? { sealer: sealers[0] } : {}) });
  const b = memoryNode(network, { subnet: '10.244.2.0/24', subnet6: 'fd00:10:244:2::/64', ip: ipB, ...common, ...(sealers ? { sealer: sealers[1] } : {}) });
  meshed(a, b);
  return [a, b];
}

/** Records a copy of every datagram the node's transport is handed, as it goes on the wire. */
function wiretap(node: MemoryNode): Buffer[] {
  const datagrams: Buffer[] = [];
  const send = node.transport.send.bind(node.transport);
  node.transport.send = (buffer: Buffer, offset: number, length: number, to: Endpoint) => {
    datagrams.push(Buffer.from(buffer.subarray(offset, offset + length)));
    return send(buffer, offset, length, to);
  };
  return datagrams;
}

/** Counts the TUN writes of a node and the packets in each. */
function tunWrites(node: MemoryNode): number[] {
  const writes: number[] = [];
  const write = node.tun.write.bind(node.tun);
  node.tun.write = (batch) => {
    writes.push(batch.count);
    return write(batch);
  };
  return writes;
}

const isWellFormed = (p: Buffer) => (p[0]! >> 4 === 6 ? checkIPv6(p, 0, p.length) : checkIPv4(p, 0, p.length)) === null;

describe('IPv6 between two dual-stack data planes', () => {
  it('carries ICMPv6 echo, TCP and UDP both ways, byte for byte, their checksums intact', () => {
    const [a, b] = pair();
    const fromA = [echo6(podA6, podB6, 1), tcp6(podA6, podB6, 1000, Buffer.from('GET / HTTP/1.1\r\n\r\n')), udp6(podA6, podB6, Buffer.alloc(1300, 3)), tcp6(podA6, podB6, 0xfffffff0)];
    a.tun.send(fromA);
    const arrived = b.tun.takeWritten();
    assert.deepEqual(arrived, fromA);
    for (const p of arrived) assert.ok(upperChecksumHolds(p), 'the upper-layer checksum over the pseudo-header holds');
    const fromB = [echo6(podB6, podA6, 1, 129), tcp6(podB6, podA6, 1, Buffer.from('HTTP/1.1 200 OK\r\n\r\n'))];
    b.tun.send(fromB);
    assert.deepEqual(a.tun.takeWritten(), fromB);
    const sa = a.plane.snapshot();
    const sb = b.plane.snapshot();
    assert.equal(sa.udpPacketsSent, fromA.length);
    assert.equal(sa.udpBytesSent, fromA.reduce((n, p) => n + p.length, 0));
    assert.equal(sb.tunBytesWritten, sa.udpBytesSent);
    assert.equal(sa.tunPacketsWritten, fromB.length);
    for (const s of [sa, sb]) assert.deepEqual(unaccounted(s), { egress: 0, ingress: 0 });
  });

  it('sends the bare packet, trimmed to 40 + payload length, and delivers it so', () => {
    const [a, b] = pair();
    const tap = wiretap(a);
    const packet = echo6(podA6, podB6, 7);
    a.tun.send([Buffer.concat([packet, Buffer.alloc(13, 0xee)])]);
    assert.deepEqual(tap, [packet], 'the datagram is the IPv6 packet, no header of ours, no trailing bytes');
    assert.deepEqual(b.tun.takeWritten(), [packet]);
  });

  it('keeps the order of a batch that mixes the families, drops among them', () => {
    const [a, b] = pair();
    const families = Array.from({ length: 120 }, (_, i) => ((i * 7) % 3 === 0 ? 6 : 4) as 4 | 6);
    const packets = families.map((family, i) => (i % 11 === 10 ? ipv6Packet({ source: podA6, destination: 'fd00:10:244:9::1' }) : podPacket(family, true, i, 60 + i * 5)));
    a.tun.send(packets);
    assert.deepEqual(b.tun.takeWritten(), packets.filter((_, i) => i % 11 !== 10));
    assert.equal(a.plane.snapshot().egressDrops['no-route'], 10);
  });

  for (const mode of ['mac', 'encrypt'] as const) {
    it(`with the native sealer (${mode}), seals either family's bare packet and opens it intact`, () => {
      const key = authKey(randomBytes(32));
      const sealers: [Sealer, Sealer] = [createSealer({ mode, localIp: ipA, keys: [key] }), createSealer({ mode, localIp: ipB, keys: [key] })];
      const [a, b] = pair({ sealers, maxPacket: 1400, tunBatchCapacity: 64 });
      const tap = wiretap(a);
      const packets = Array.from({ length: 64 }, (_, i) => podPacket(i % 2 === 0 ? 6 : 4, true, i, 1400 - (i % 3) * 600));
      a.tun.send(packets);
      assert.deepEqual(b.tun.takeWritten(), packets);
      for (const [i, datagram] of tap.entries()) {
        assert.equal(datagram.length, packets[i]!.length + SEAL_OVERHEAD);
        const inner = datagram.subarray(SEAL_HEADER_BYTES, SEAL_HEADER_BYTES + packets[i]!.length);
        // MAC mode leaves the packet readable where it was sealed; encryption hides all of it.
        if (mode === 'mac') assert.deepEqual(inner, packets[i]);
        else assert.notDeepEqual(inner.subarray(0, 40), packets[i]!.subarray(0, 40));
      }
      const sb = b.plane.snapshot();
      assert.equal(sb.ingressDrops.unauthenticated + sb.ingressDrops.replayed, 0);
      b.tun.send([podPacket(6, false, 1), podPacket(4, false, 2)]);
      assert.equal(a.tun.takeWritten().length, 2);
    });
  }

  it('on random traffic of both families both ways, counts everything once and writes only well-formed packets', () => {
    fc.assert(
      fc.property(fc.array(podTraffic, { maxLength: 150 }), fc.array(podTraffic, { maxLength: 150 }), (fromA, fromB) => {
        const [a, b] = pair({ maxPacket: 1400, tunMtu: 1500 });
        a.tun.send(fromA);
        b.tun.send(fromB);
        const sa = a.plane.snapshot();
        const sb = b.plane.snapshot();
        assert.deepEqual(unaccounted(sa), { egress: 0, ingress: 0 });
        assert.deepEqual(unaccounted(sb), { egress: 0, ingress: 0 });
        assert.equal(sa.tunPacketsRead, fromA.length);
        assert.equal(sb.udpPacketsReceived, sa.udpPacketsSent);
        assert.equal(sa.udpPacketsReceived, sb.udpPacketsSent);
        for (const p of b.tun.written) assert.ok(isWellFormed(p));
        // The errors a node wrote to its own TUN come from its overlay addresses.
        const errors = b.tun.written.filter((p) => (p[0]! >> 4 === 6 ? p.subarray(8, 24).equals(addressBytes('fd00:10:244:2::')) : p.readUInt32BE(12) === b.subnet!.network));
        assert.equal(errors.length, sb.icmpErrorsSent);
      }),
      { numRuns: 200 },
    );
  });
});

describe('ICMPv6 errors written back into the TUN', () => {
  /** A node whose TUN is wider than what the underlay carries, with one peer, its TUN writes counted. */
  function narrowNode(maxPacket: number, icmpRatePerSecond?: number): MemoryNode & { writes: number[] } {
    const node = memoryNode(new MemoryNetwork(), {
      subnet: '10.244.1.0/24',
      subnet6: 'fd00:10:244:1::/64',
      overlayAddress6: 'fd00:10:244:1::1',
      ip: ipA,
      maxPacket,
      tunMtu: 1500,
      ...(icmpRatePerSecond !== undefined ? { icmpRatePerSecond } : {}),
    });
    const peer = memoryNode(new MemoryNetwork(), { subnet: '10.244.2.0/24', subnet6: 'fd00:10:244:2::/64', ip: ipB });
    node.plane.setPeers([peer.peer]);
    return Object.assign(node, { writes: tunWrites(node) });
  }

  /** Checks the frame of an ICMPv6 error this node wrote in reply to `original`, and returns the ICMPv6 message. */
  function checkError(reply: Buffer, original: Buffer, type: number): Buffer {
    assert.equal(checkIPv6(reply, 0, reply.length), null);
    assert.equal(reply[6], PROTO_ICMPV6);
    assert.deepEqual(reply.subarray(8, 24), addressBytes('fd00:10:244:1::1'), 'from the overlay address');
    assert.deepEqual(reply.subarray(24, 40), original.subarray(8, 24), 'to the sender');
    assert.ok(upperChecksumHolds(reply), 'the ICMPv6 checksum covers the pseudo-header');
    const icmp = reply.subarray(40);
    assert.equal(icmp[0], type);
    assert.deepEqual(icmp.subarray(8), original.subarray(0, Math.min(original.length, 1280 - 48)), 'quotes the packet, up to the minimum MTU');
    assert.ok(reply.length <= 1280);
    return icmp;
  }

  it('a packet too big gets a Packet Too Big naming what the underlay carries, a packet without route an unreachable, in one write', () => {
    const node = narrowNode(1300);
    const tooBig = udp6(podA6, podB6, Buffer.alloc(1400));
    const noRoute = echo6(podA6, 'fd00:10:244:9::9', 3);
    const fits = udp6(podA6, podB6, Buffer.alloc(1300 - 48));
    node.tun.send([tooBig, fits, noRoute]);
    assert.deepEqual(node.writes, [2], 'one TUN write with both replies');
    const [ptb, unreachable] = node.tun.takeWritten() as [Buffer, Buffer];
    assert.equal(checkError(ptb, tooBig, ICMP6_PACKET_TOO_BIG).readUInt32BE(4), 1300, 'MTU');
    const du = checkError(unreachable, noRoute, ICMP6_DEST_UNREACHABLE);
    assert.equal(du[1], CODE_NO_ROUTE);
    assert.equal(du.readUInt32BE(4), 0, 'unused');
    const c = node.plane.snapshot();
    assert.deepEqual([c.egressDrops['too-big'], c.egressDrops['no-route'], c.udpPacketsSent, c.icmpErrorsSent], [1, 1, 1, 2]);
    assert.deepEqual(unaccounted(c), { egress: 0, ingress: 0 });
  });

  it('never names an MTU below 1280, whatever the underlay carries', () => {
    const node = narrowNode(1000);
    const tooBig = udp6(podA6, podB6, Buffer.alloc(1100));
    node.tun.send([tooBig]);
    const [ptb] = node.tun.takeWritten() as [Buffer];
    assert.equal(checkError(ptb, tooBig, ICMP6_PACKET_TOO_BIG).readUInt32BE(4), 1280);
  });

  it('answers no ICMPv6 error, an unspecified source, a later fragment or a multicast destination (RFC 4443 2.4(e)), but counts the drop', () => {
    const node = narrowNode(1300);
    const error = ipv6Packet({ source: podA6, destination: 'fd00:10:244:9::9', protocol: PROTO_ICMPV6, upper: Buffer.from([1, 0, 0, 0, 0, 0, 0, 0]) });
    const unspecified = echo6('::', 'fd00:10:244:9::9', 1);
    const laterFragment = ipv6Packet({ source: podA6, destination: podB6, extensions: [fragmentHeader(100, false)], upper: Buffer.alloc(1400) });
    const multicast = udp6(podA6, 'ff05::1:3', Buffer.alloc(10));
    node.tun.send([error, unspecified, laterFragment, multicast]);
    assert.equal(node.tun.written.length, 0);
    const c = node.plane.snapshot();
    assert.deepEqual([c.egressDrops['no-route'], c.egressDrops['too-big'], c.egressDrops['non-unicast'], c.icmpErrorsSent], [2, 1, 1, 0]);
  });

  it('shares one rate limit with ICMPv4: a burst of 64 errors in all, then none at a rate of zero', () => {
    const node = narrowNode(1300, 0);
    const batch = Array.from({ length: 40 }, (_, i) =>
      i % 2 === 0 ? ipv4Packet({ source: podA4, destination: `10.244.9.${i}`, protocol: 1, payload: icmpEcho() }) : echo6(podA6, `fd00:10:244:9::${i}`, i),
    );
    node.tun.send(batch);
    node.tun.send(batch);
    assert.deepEqual(node.writes, [40, 24]);
    const written = node.tun.takeWritten();
    assert.equal(written.filter((p) => p[0]! >> 4 === 6).length, 32);
    assert.equal(written.filter((p) => p[0]! >> 4 === 4).length, 32);
    assert.equal(node.plane.snapshot().icmpErrorsSent, 64);
    assert.equal(node.plane.snapshot().egressDrops['no-route'], 80);
  });
});

describe('IPv6 refused with its reason', () => {
  it('at an IPv4-only node, IPv6 is ipv6-disabled both ways, with no ICMPv6 error; IPv4 still flows', () => {
    const network = new MemoryNetwork();
    const a = memoryNode(network, { subnet: '10.244.1.0/24', ip: ipA });
    const b = memoryNode(network, { subnet: '10.244.2.0/24', subnet6: 'fd00:10:244:2::/64', ip: ipB });
    a.plane.setPeers([{ subnet: b.subnet, endpoint: b.peer.endpoint }]);
    b.plane.setPeers([a.peer]);
    a.tun.send([echo6(podA6, podB6, 1), Buffer.from([0x60]), podPacket(4, true, 1), Buffer.alloc(0)]);
    const sa = a.plane.snapshot();
    assert.equal(sa.egressDrops['ipv6-disabled'], 2);
    assert.equal(sa.egressDrops.truncated, 1, 'an empty slot is truncated, whatever its stale first byte');
    assert.equal(sa.icmpErrorsSent, 0);
    assert.equal(b.tun.takeWritten().length, 1);
    // A leases no IPv6 subnet, so B has no route for A's IPv6 pods; a datagram sent anyway is refused.
    b.tun.send([echo6(podB6, podA6, 1)]);
    assert.equal(b.plane.snapshot().egressDrops['no-route'], 1);
    const stray = echo6(podB6, podA6, 2);
    b.transport.send(stray, 0, stray.length, a.peer.endpoint);
    b.transport.flush();
    assert.equal(a.plane.snapshot().ingressDrops['ipv6-disabled'], 1);
    assert.equal(a.tun.written.length, 0);
  });

  it('egress: non-unicast destinations and each kind of malformed IPv6 packet', () => {
    const [a, b] = pair();
    const zeroPayload = echo6(podA6, podB6, 1).subarray(0, 40);
    zeroPayload.writeUInt16BE(0, 4);
    const cases: Array<[Buffer, string]> = [
      [udp6(podA6, 'ff02::1', Buffer.alloc(4)), 'non-unicast'],
      [udp6(podA6, 'fe80::1', Buffer.alloc(4)), 'non-unicast'],
      [udp6(podA6, '::1', Buffer.alloc(4)), 'non-unicast'],
      [echo6(podA6, podB6, 1).subarray(0, 39), 'truncated'],
      [echo6(podA6, podB6, 1).subarray(0, 50), 'truncated'],
      [zeroPayload, 'bad-payload-length'],
      [ipv6Packet({ source: podA6, destination: podB6, extensions: Array.from({ length: 9 }, () => optionsHeader(EXT_DESTINATION_OPTIONS)) }), 'bad-extension-header'],
    ];
    for (const [packet, reason] of cases) {
      const before = a.plane.snapshot().egressDrops;
      a.tun.send([packet]);
      const after = a.plane.snapshot().egressDrops;
      const moved = Object.keys(after).filter((r) => after[r as keyof typeof after] !== before[r as keyof typeof before]);
      assert.deepEqual(moved, [reason], packet.toString('hex').slice(0, 16));
    }
    assert.equal(b.plane.snapshot().udpPacketsReceived, 0);
    assert.equal(a.tun.written.length, 0, 'no error answers them');
  });
});
