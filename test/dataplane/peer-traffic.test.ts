// Per-peer traffic: what each peer-table entry counts, through real data
// planes cross-wired in memory (the same loops the daemon runs).
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import { authKey, createSealer, SEAL_OVERHEAD } from '../../daemon/dataplane/sealing.js';
import type { PeerTraffic } from '../../daemon/dataplane/index.js';
import { parseIPv4 } from '../../daemon/net/ipv4.js';
import { parseEndpoint } from '../../daemon/transport/index.js';
import { ipv4Packet } from '../harness/packets.js';
import { datagramBatch, MemoryNetwork, meshed, memoryNode, type MemoryNode } from './memory-plane.js';

const ipA = parseIPv4('198.18.0.1');
const ipB = parseIPv4('198.18.0.2');
const ipC = parseIPv4('198.18.0.3');

function trio(): [MemoryNode, MemoryNode, MemoryNode] {
  const network = new MemoryNetwork();
  const a = memoryNode(network, { subnet: '10.244.1.0/24', ip: ipA });
  const b = memoryNode(network, { subnet: '10.244.2.0/24', ip: ipB });
  const c = memoryNode(network, { subnet: '10.244.3.0/24', ip: ipC });
  meshed(a, b, c);
  return [a, b, c];
}

/** The traffic `node` counted for its peer `other`, as a plain object. */
function traffic(node: MemoryNode, other: MemoryNode): PeerTraffic {
  const { packetsSent, bytesSent, packetsReceived, bytesReceived, drops, lastReceivedAt } = node.plane.peerTable.get(other.subnet!)!;
  return { packetsSent, bytesSent, packetsReceived, bytesReceived, drops, lastReceivedAt };
}

const packet = (source: string, destination: string, size: number) => ipv4Packet({ source, destination, payload: Buffer.alloc(size - 20, 1) });
const bytes = (packets: Buffer[]) => packets.reduce((n, p) => n + p.length, 0);
const quiet: Omit<PeerTraffic, 'lastReceivedAt'> = { packetsSent: 0, bytesSent: 0, packetsReceived: 0, bytesReceived: 0, drops: 0 };

describe('per-peer traffic', () => {
  it('counts what each node sent to and received from each peer, and when it last heard from it', () => {
    const [a, b, c] = trio();
    const toB = [packet('10.244.1.5', '10.244.2.5', 100), packet('10.244.1.5', '10.244.2.6', 300)];
    const toC = [packet('10.244.1.5', '10.244.3.5', 1000)];
    const before = Date.now();
    a.tun.send([...toB, ...toC]);
    const after = Date.now();
    assert.deepEqual(traffic(a, b), { ...quiet, packetsSent: 2, bytesSent: bytes(toB), lastReceivedAt: 0 });
    assert.deepEqual(traffic(a, c), { ...quiet, packetsSent: 1, bytesSent: bytes(toC), lastReceivedAt: 0 });
    const heardByB = traffic(b, a);
    assert.equal(heardByB.packetsReceived, 2);
    assert.equal(heardByB.bytesReceived, bytes(toB));
    assert.ok(heardByB.lastReceivedAt >= before && heardByB.lastReceivedAt <= after, `${heardByB.lastReceivedAt} within [${before}, ${after}]`);
    assert.equal(traffic(c, a).packetsReceived, 1);
    assert.deepEqual(traffic(c, b), { ...quiet, lastReceivedAt: 0 }, 'b sent c nothing');
  });

  it("counts as the peer's drops what it sent that ingress refused, and leaves a stranger's datagrams out of every entry", () => {
    const [a, b] = trio();
    const spoofed = packet('10.244.9.5', '10.244.2.5', 80);
    const misaddressed = packet('10.244.1.5', '10.244.3.5', 80);
    b.transport.receive(datagramBatch([
      { data: spoofed, ip: ipA, port: 8285 },
      { data: misaddressed, ip: ipA, port: 8285 },
      { data: Buffer.from([0x45, 0]), ip: ipA, port: 8285 },
      { data: packet('10.244.1.5', '10.244.2.5', 80), ip: parseIPv4('198.18.0.99'), port: 8285 },
    ]));
    const fromA = traffic(b, a);
    assert.equal(fromA.packetsReceived, 3);
    assert.equal(fromA.drops, 3);
    const counters = b.plane.snapshot();
    assert.equal(counters.ingressDrops['unknown-sender'], 1);
    assert.equal(counters.udpPacketsReceived, 4);
  });

  it("leaves what this node's send queue refused to the node's counters: neither sent to the peer nor its drops", () => {
    const [a, b] = trio();
    a.transport.congested = true;
    a.tun.send([packet('10.244.1.5', '10.244.2.5', 100), packet('10.244.1.5', '10.244.2.5', 100)]);
    assert.deepEqual(traffic(a, b), { ...quiet, lastReceivedAt: 0 });
    assert.equal(a.plane.snapshot().egressDrops['send-queue-full'], 2);
  });

  it("leaves a flush's refusals to the node's counters: the peer's sent count still holds them", () => {
    const [a, b] = trio();
    a.transport.refuseSends = 2;
    a.tun.send(Array.from({ length: 5 }, () => packet('10.244.1.5', '10.244.2.5', 100)));
    assert.equal(traffic(a, b).packetsSent, 5);
    assert.equal(a.plane.snapshot().udpPacketsSent, 3);
    assert.equal(a.plane.snapshot().egressDrops['send-queue-full'], 2);
  });

  it('counts the bytes of the datagrams, sealed ones with their seal', () => {
    const network = new MemoryNetwork();
    const key = authKey(randomBytes(32));
    const a = memoryNode(network, { subnet: '10.244.1.0/24', ip: ipA, sealer: createSealer({ mode: 'mac', localIp: ipA, keys: [key] }) });
    const b = memoryNode(network, { subnet: '10.244.2.0/24', ip: ipB, sealer: createSealer({ mode: 'mac', localIp: ipB, keys: [key] }) });
    meshed(a, b);
    const packets = [packet('10.244.1.5', '10.244.2.5', 100), packet('10.244.1.5', '10.244.2.5', 700)];
    a.tun.send(packets);
    assert.equal(b.tun.takeWritten().length, 2);
    assert.equal(traffic(a, b).bytesSent, bytes(packets) + 2 * SEAL_OVERHEAD);
    assert.equal(traffic(b, a).bytesReceived, bytes(packets) + 2 * SEAL_OVERHEAD);
  });

  it('keeps an entry\'s traffic while its endpoint stays, and starts from zero when the subnet moves to another node', () => {
    const [a, b] = trio();
    a.tun.send([packet('10.244.1.5', '10.244.2.5', 100)]);
    a.plane.setPeer({ ...b.peer });
    assert.equal(traffic(a, b).packetsSent, 1, 'the same peer set again (a renewal, a listing) keeps its figures');
    a.plane.setPeer({ ...b.peer, endpoint: parseEndpoint('198.18.0.7', 8285) });
    assert.equal(traffic(a, b).packetsSent, 0, 'another node now leases the subnet');
  });

  it('on random traffic, the entries account for every datagram from a known sender and every one sent', () => {
    const address = fc.constantFrom('10.244.1.7', '10.244.2.9', '10.244.3.4', '10.244.9.1');
    const pod = fc.record({ src: address, dst: address, size: fc.integer({ min: 28, max: 600 }) }).map(({ src, dst, size }) => packet(src, dst, size));
    fc.assert(
      fc.property(fc.array(pod, { maxLength: 60 }), fc.array(pod, { maxLength: 60 }), fc.array(pod, { maxLength: 60 }), (fromA, fromB, fromC) => {
        const nodes = trio();
        nodes[0].tun.send(fromA);
        nodes[1].tun.send(fromB);
        nodes[2].tun.send(fromC);
        for (const node of nodes) {
          const entries = [...node.plane.peerTable.peers()];
          const sum = (key: keyof Omit<PeerTraffic, 'lastReceivedAt'>) => entries.reduce((n, t) => n + t[key], 0);
          const counters = node.plane.snapshot();
          assert.equal(sum('packetsSent'), counters.udpPacketsSent);
          assert.equal(sum('bytesSent'), counters.udpBytesSent);
          assert.equal(sum('packetsReceived'), counters.udpPacketsReceived - counters.ingressDrops['unknown-sender']);
          const received = entries.filter((t) => t.packetsReceived > 0);
          assert.ok(received.every((t) => t.lastReceivedAt > 0));
        }
      }),
      { numRuns: 100 },
    );
  });
});
