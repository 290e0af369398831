// Two (or three) real data planes cross-wired over the in-memory TUN and
// transport: the egress and ingress loops of send.ts and receive.ts, no
// kernel, no root.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { authKey, createSealer, SEAL_HEADER_BYTES, SEAL_OVERHEAD, type Sealer } from '../../daemon/dataplane/sealing.js';
import { CODE_FRAGMENTATION_NEEDED, CODE_NET_UNREACHABLE, ICMP_DEST_UNREACHABLE } from '../../daemon/dataplane/icmp.js';
import { checkIPv4, destinationAddress, internetChecksum, sourceAddress } from '../../daemon/dataplane/ipv4-packet.js';
import { parseCidr, parseIPv4 } from '../../daemon/net/ipv4.js';
import { icmpEcho, ipv4Packet } from '../harness/packets.js';
import { MAX_PACKET, MemoryNetwork, meshed, memoryNode, unaccounted, type MemoryNode } from './memory-plane.js';

const ipA = parseIPv4('198.18.0.1');
const ipB = parseIPv4('198.18.0.2');
const ipC = parseIPv4('198.18.0.3');

function pair(options: { sealers?: [Sealer, Sealer]; maxPacket?: number; tunBatchCapacity?: number; icmpRatePerSecond?: number } = {}): [MemoryNode, MemoryNode] {
  const network = new MemoryNetwork();
  const common = {
    ...(options.maxPacket !== undefined ? { maxPacket: options.maxPacket } : {}),
    ...(options.tunBatchCapacity !== undefined ? { tunBatchCapacity: options.tunBatchCapacity } : {}),
    ...(options.icmpRatePerSecond !== undefined ? { icmpRatePerSecond: options.icmpRatePerSecond } : {}),
  };
  const a = memoryNode(network, { subnet: '10.244.1.0/24', ip: ipA, ...common, ...(options.sealers ? { sealer: options.sealers[0] } : {}) });
  const b = memoryNode(network, { subnet: '10.244.2.0/24', ip: ipB, ...common, ...(options.sealers ? { sealer: options.sealers[1] } : {}) });
  meshed(a, b);
  return [a, b];
}

/** A UDP packet from a pod of one node to a pod of another, numbered in its payload. */
function podPacket(from: string, to: string, n: number, size = 64): Buffer {
  const payload = Buffer.alloc(size - 20, n & 0xff);
  payload.writeUInt32BE(n, 0);
  return ipv4Packet({ source: from, destination: to, payload });
}

describe('two data planes over the in-memory TUN and transport', () => {
  it('carries a batch from one TUN to the other, byte for byte', () => {
    const [a, b] = pair();
    const packets = Array.from({ length: 150 }, (_, i) => podPacket('10.244.1.7', '10.244.2.9', i, 64 + i * 9));
    a.tun.send(packets);
    assert.deepEqual(b.tun.takeWritten(), packets);
    const sa = a.plane.snapshot();
    const sb = b.plane.snapshot();
    assert.equal(sa.tunPacketsRead, 150);
    assert.equal(sa.udpPacketsSent, 150);
    assert.equal(sa.udpBytesSent, packets.reduce((n, p) => n + p.length, 0));
    assert.equal(sb.udpPacketsReceived, 150);
    assert.equal(sb.tunPacketsWritten, 150);
    assert.equal(sb.tunBytesWritten, sa.udpBytesSent);
    // And back: the reply path is the other plane's egress.
    b.tun.send([podPacket('10.244.2.9', '10.244.1.7', 1)]);
    assert.equal(a.tun.takeWritten().length, 1);
  });

  it('counts everything read as forwarded or as one drop with its reason, on random traffic both ways', () => {
    const address = fc.constantFrom('10.244.1.7', '10.244.2.9', '10.244.3.4', '10.244.2.255', '224.0.0.5', '8.8.8.8');
    const packet = fc.oneof(
      fc.record({ src: address, dst: address, size: fc.integer({ min: 28, max: MAX_PACKET + 40 }), df: fc.boolean(), cut: fc.integer({ min: -30, max: 0 }) }).map(({ src, dst, size, df, cut }) => {
        const p = ipv4Packet({ source: src, destination: dst, dontFragment: df, payload: Buffer.alloc(Math.min(size, 1600) - 20, 7) });
        return p.subarray(0, Math.max(0, Math.min(p.length + cut, MAX_PACKET)));
      }),
      fc.uint8Array({ maxLength: 60 }).map((b) => Buffer.from(b)),
    );
    fc.assert(
      fc.property(fc.array(packet, { maxLength: 200 }), fc.array(packet, { maxLength: 200 }), fc.nat(5), (fromA, fromB, refused) => {
        const [a, b] = pair();
        a.transport.refuseSends = refused;
        a.tun.send(fromA);
        b.tun.send(fromB);
        const sa = a.plane.snapshot();
        const sb = b.plane.snapshot();
        assert.deepEqual(unaccounted(sa), { egress: 0, ingress: 0 });
        assert.deepEqual(unaccounted(sb), { egress: 0, ingress: 0 });
        assert.equal(sa.tunPacketsRead, fromA.length);
        assert.equal(sb.tunPacketsRead, fromB.length);
        // Nothing is lost in memory: every datagram sent is one the other side received.
        assert.equal(sb.udpPacketsReceived, sa.udpPacketsSent);
        assert.equal(sa.udpPacketsReceived, sb.udpPacketsSent);
        // What reached a TUN is what the other side's pods sent to it, well-formed.
        for (const p of b.tun.written) assert.equal(checkIPv4(p, 0, p.length), null);
        assert.equal(b.tun.written.filter((p) => p[9] === 1 && p.readUInt32BE(12) === b.subnet!.network).length, sb.icmpErrorsSent);
      }),
      { numRuns: 300 },
    );
  });

  it('a zero-length slot from the TUN is dropped and counted, not sent', () => {
    const [a, b] = pair();
    a.tun.send([Buffer.alloc(0), podPacket('10.244.1.7', '10.244.2.9', 1)]);
    const sa = a.plane.snapshot();
    assert.equal(sa.egressDrops.truncated, 1);
    assert.equal(sa.udpPacketsSent, 1);
    assert.equal(b.tun.written.length, 1);
  });

  it('packets the TUN refuses are counted as tun-write-failed', () => {
    const [a, b] = pair();
    b.tun.refuseWrites = 2;
    a.tun.send(Array.from({ length: 5 }, (_, i) => podPacket('10.244.1.7', '10.244.2.9', i)));
    const sb = b.plane.snapshot();
    assert.equal(sb.tunPacketsWritten, 3);
    assert.equal(sb.ingressDrops['tun-write-failed'], 2);
    assert.deepEqual(unaccounted(sb), { egress: 0, ingress: 0 });
  });
});

describe('send-queue-full', () => {
  it('datagrams the transport refuses at flush move from sent to send-queue-full', () => {
    const [a, b] = pair();
    a.transport.refuseSends = 7;
    a.tun.send(Array.from({ length: 20 }, (_, i) => podPacket('10.244.1.7', '10.244.2.9', i, 100)));
    const sa = a.plane.snapshot();
    assert.equal(sa.udpPacketsSent, 13);
    assert.equal(sa.egressDrops['send-queue-full'], 7);
    assert.equal(b.plane.snapshot().udpPacketsReceived, 13);
    assert.deepEqual(unaccounted(sa), { egress: 0, ingress: 0 });
  });

  it('datagrams the transport drops at send() are counted the same way', () => {
    const [a] = pair();
    a.transport.congested = true;
    a.tun.send(Array.from({ length: 4 }, (_, i) => podPacket('10.244.1.7', '10.244.2.9', i)));
    const sa = a.plane.snapshot();
    assert.equal(sa.udpPacketsSent, 0);
    assert.equal(sa.udpBytesSent, 0);
    assert.equal(sa.egressDrops['send-queue-full'], 4);
  });
});

describe('sealed datagrams: one slot per packet read', () => {
  /** A sealer in JS that checks the data plane's slot arithmetic: every datagram of a batch in bounds and apart. */
  function checkingSealer(maxPacket: number, batchCapacity: number): Sealer & { slots: Array<[number, number]> } {
    const slots: Array<[number, number]> = [];
    return {
      slots,
      seal(src, offset, length, dst, dstOffset) {
        const end = dstOffset + length + SEAL_OVERHEAD;
        assert.ok(dst.length >= batchCapacity * (maxPacket + SEAL_OVERHEAD), 'the sealed buffer holds a full batch of the largest packets');
        assert.ok(end <= dst.length, `datagram [${dstOffset}, ${end}) past the sealed buffer (${dst.length})`);
        for (const [s, e] of slots) assert.ok(end <= s || dstOffset >= e, `datagram [${dstOffset}, ${end}) overlaps [${s}, ${e}) of the same batch`);
        slots.push([dstOffset, end]);
        dst.fill(0xee, dstOffset, dstOffset + SEAL_HEADER_BYTES);
        src.copy(dst, dstOffset + SEAL_HEADER_BYTES, offset, offset + length);
        dst.fill(0xdd, dstOffset + SEAL_HEADER_BYTES + length, end);
        return length + SEAL_OVERHEAD;
      },
      open(buffer, offset, length) {
        return buffer[offset] === 0xee && length >= SEAL_OVERHEAD ? length - SEAL_OVERHEAD : -1;
      },
      setKeys() {},
    };
  }

  it('a full batch of the largest packets is sealed into disjoint slots and arrives intact', () => {
    const maxPacket = 1400;
    const capacity = 16;
    const sa = checkingSealer(maxPacket, capacity);
    const sb = checkingSealer(maxPacket, capacity);
    const [a, b] = pair({ sealers: [sa, sb], maxPacket, tunBatchCapacity: capacity });
    // Some dropped among them, so the slot follows the packet's place in the batch, not the count sent.
    const packets = Array.from({ length: capacity }, (_, i) =>
      i % 5 === 4 ? podPacket('10.244.1.7', '10.244.9.9', i, 200) : podPacket('10.244.1.7', '10.244.2.9', i, maxPacket - (i % 3)),
    );
    a.tun.send(packets);
    assert.deepEqual(b.tun.takeWritten(), packets.filter((_, i) => i % 5 !== 4));
    assert.equal(sa.slots.length, capacity - 3);
    assert.equal(sa.slots[1]![0], 1 * (maxPacket + SEAL_OVERHEAD));
    assert.equal(a.plane.snapshot().udpBytesSent, packets.filter((_, i) => i % 5 !== 4).reduce((n, p) => n + p.length + SEAL_OVERHEAD, 0));
  });

  it('with the native sealer in both modes, a full batch of mixed sizes crosses intact', () => {
    const key = authKey(randomBytes(32));
    for (const mode of ['mac', 'encrypt'] as const) {
      const sealers: [Sealer, Sealer] = [createSealer({ mode, localIp: ipA, keys: [key] }), createSealer({ mode, localIp: ipB, keys: [key] })];
      const maxPacket = 1400;
      const [a, b] = pair({ sealers, maxPacket, tunBatchCapacity: 64 });
      const packets = Array.from({ length: 64 }, (_, i) => podPacket('10.244.1.7', '10.244.2.9', i, maxPacket - (i % 2) * 700));
      a.tun.send(packets);
      assert.deepEqual(b.tun.takeWritten(), packets, mode);
      const sb = b.plane.snapshot();
      assert.equal(sb.ingressDrops.unauthenticated + sb.ingressDrops.replayed, 0, mode);
    }
  });
});

describe('ICMP errors written back into the TUN', () => {
  /** A node whose TUN is wider than what the underlay carries, so packets can be too big. */
  function narrowNode(icmpRatePerSecond?: number): MemoryNode & { writes: number[] } {
    const node = memoryNode(new MemoryNetwork(), { subnet: '10.244.1.0/24', ip: ipA, maxPacket: 1000, tunMtu: 1500, ...(icmpRatePerSecond !== undefined ? { icmpRatePerSecond } : {}) });
    node.plane.setPeers([{ subnet: parseCidr('10.244.2.0/24'), endpoint: { address: '198.18.0.2', ip: ipB, port: 8285 } }]);
    const writes: number[] = [];
    const write = node.tun.write.bind(node.tun);
    node.tun.write = (batch) => {
      writes.push(batch.count);
      return write(batch);
    };
    return Object.assign(node, { writes });
  }

  it('no route and too big with DF each get one destination-unreachable, all in one write after the batch', () => {
    const node = narrowNode();
    const noRoute = ipv4Packet({ source: '10.244.1.7', destination: '10.244.9.9', protocol: 1, payload: icmpEcho() });
    const tooBig = ipv4Packet({ source: '10.244.1.8', destination: '10.244.2.9', dontFragment: true, payload: Buffer.alloc(990) });
    const tooBigNoDf = ipv4Packet({ source: '10.244.1.8', destination: '10.244.2.9', payload: Buffer.alloc(990) });
    const errorNoRoute = ipv4Packet({ source: '10.244.1.7', destination: '10.244.9.9', protocol: 1, payload: icmpEcho(3) });
    const fine = podPacket('10.244.1.7', '10.244.2.9', 1);
    node.tun.send([noRoute, tooBig, fine, tooBigNoDf, errorNoRoute]);
    assert.deepEqual(node.writes, [2], 'one TUN write with both replies');
    const [unreachable, fragNeeded] = node.tun.takeWritten() as [Buffer, Buffer];
    for (const [reply, to, code] of [[unreachable, '10.244.1.7', CODE_NET_UNREACHABLE], [fragNeeded, '10.244.1.8', CODE_FRAGMENTATION_NEEDED]] as const) {
      assert.equal(checkIPv4(reply, 0, reply.length), null);
      assert.equal(internetChecksum(reply, 0, 20), 0);
      assert.equal(sourceAddress(reply, 0), parseIPv4('10.244.1.0'), 'from the node overlay address');
      assert.equal(destinationAddress(reply, 0), parseIPv4(to));
      assert.equal(reply[20], ICMP_DEST_UNREACHABLE);
      assert.equal(reply[21], code);
      assert.equal(internetChecksum(reply, 20, reply.length - 20), 0);
    }
    assert.equal(fragNeeded.readUInt16BE(26), 1000, 'next-hop MTU is what the underlay carries');
    assert.deepEqual(unreachable.subarray(28, 28 + 20), noRoute.subarray(0, 20), 'quotes the packet');
    const c = node.plane.snapshot();
    assert.equal(c.icmpErrorsSent, 2);
    assert.equal(c.egressDrops['no-route'], 2);
    assert.equal(c.egressDrops['too-big'], 2);
    assert.equal(c.udpPacketsSent, 1);
    assert.deepEqual(unaccounted(c), { egress: 0, ingress: 0 });
  });

  it('replies are rate-limited: a burst, then none at a rate of zero; replies the TUN refuses are not counted as sent', () => {
    const node = narrowNode(0);
    const batch = Array.from({ length: 50 }, (_, i) => ipv4Packet({ source: '10.244.1.7', destination: `10.244.9.${i}` }));
    node.tun.send(batch);
    node.tun.refuseWrites = 4;
    node.tun.send(batch);
    node.tun.send(batch);
    assert.deepEqual(node.writes, [50, 14]);
    assert.equal(node.plane.snapshot().icmpErrorsSent, 60);
    assert.equal(node.plane.snapshot().egressDrops['no-route'], 150);
  });
});

describe('peer table swaps under traffic', () => {
  it('each batch goes where the table in force says; a moved, removed or replaced peer applies from the next batch', () => {
    const network = new MemoryNetwork();
    const a = memoryNode(network, { subnet: '10.244.1.0/24', ip: ipA });
    const b = memoryNode(network, { subnet: '10.244.2.0/24', ip: ipB });
    const c = memoryNode(network, { subnet: '10.244.3.0/24', ip: ipC });
    meshed(a, b, c);
    // A's route for 10.244.9.0/24 changes hands between batches, by setPeer, setPeers and removePeer.
    // B and C do not lease it, so each counts what it got as wrong-destination: that shows who got it.
    const moving = parseCidr('10.244.9.0/24');
    const owners = ['b', 'c', 'none', 'b', 'c', 'b', 'none', 'c'] as const;
    let n = 0;
    for (const [round, owner] of owners.entries()) {
      const route = owner === 'b' ? { subnet: moving, endpoint: b.peer.endpoint } : { subnet: moving, endpoint: c.peer.endpoint };
      if (owner === 'none') a.plane.removePeer(moving);
      else if (round % 2 === 0) a.plane.setPeer(route);
      else a.plane.setPeers([b.peer, c.peer, route]);
      const before = { a: a.plane.snapshot(), b: b.plane.snapshot(), c: c.plane.snapshot() };
      const packets = Array.from({ length: 50 }, (_, i) => podPacket('10.244.1.7', i < 20 ? '10.244.2.9' : i < 40 ? '10.244.3.9' : '10.244.9.1', n++));
      a.tun.send(packets);
      const after = { a: a.plane.snapshot(), b: b.plane.snapshot(), c: c.plane.snapshot() };
      const wrong = (x: 'b' | 'c') => after[x].ingressDrops['wrong-destination'] - before[x].ingressDrops['wrong-destination'];
      const written = (x: 'b' | 'c') => after[x].tunPacketsWritten - before[x].tunPacketsWritten;
      assert.deepEqual(
        { b: wrong('b'), c: wrong('c'), noRoute: after.a.egressDrops['no-route'] - before.a.egressDrops['no-route'], writtenB: written('b'), writtenC: written('c') },
        { b: owner === 'b' ? 10 : 0, c: owner === 'c' ? 10 : 0, noRoute: owner === 'none' ? 10 : 0, writtenB: 20, writtenC: 20 },
        `round ${round}: 10.244.9.0/24 at ${owner}`,
      );
    }
    assert.deepEqual(unaccounted(a.plane.snapshot()), { egress: 0, ingress: 0 });
  });

  it('a table replaced while a batch is being forwarded applies from the next batch, not half way', () => {
    const network = new MemoryNetwork();
    const a = memoryNode(network, { subnet: '10.244.1.0/24', ip: ipA });
    const b = memoryNode(network, { subnet: '10.244.2.0/24', ip: ipB });
    meshed(a, b);
    // The swap happens inside the batch: after the transport has taken the tenth datagram.
    const send = a.transport.send.bind(a.transport);
    let sends = 0;
    a.transport.send = (...args) => {
      if (++sends === 10) a.plane.setPeers([]);
      return send(...args);
    };
    const packets = Array.from({ length: 30 }, (_, i) => podPacket('10.244.1.7', '10.244.2.9', i));
    a.tun.send(packets);
    assert.equal(b.tun.takeWritten().length, 30, 'the whole batch went by the table it started with');
    a.tun.send(packets);
    assert.equal(a.plane.snapshot().egressDrops['no-route'], 30, 'the next batch sees the empty table');
    assert.equal(b.tun.written.length, 0);
  });

  it('ingress sees removals from the next batch: a removed peer is a stranger', () => {
    const [a, b] = pair();
    a.tun.send([podPacket('10.244.1.7', '10.244.2.9', 1)]);
    b.plane.removePeer(a.subnet!);
    a.tun.send([podPacket('10.244.1.7', '10.244.2.9', 2)]);
    const sb = b.plane.snapshot();
    assert.equal(sb.tunPacketsWritten, 1);
    assert.equal(sb.ingressDrops['unknown-sender'], 1);
  });
});
