// The ingress rules for IPv6 on random datagrams, through the production
// path: a dual-stack data plane's ingress stage (sender, then the family by
// the version nibble, then the checks), fed by the in-memory transport and
// judged by a reference written from the rules, not from the code. The
// random datagrams also go to an IPv6-only data plane, which refuses IPv4.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import type { Peer } from '../../daemon/dataplane/peer-table.js';
import { parseCidr, parseIPv4 } from '../../daemon/net/ipv4.js';
import { parseCidr6 } from '../../daemon/net/ipv6.js';
import { addressBytes, EXT_DESTINATION_OPTIONS, echo6, fragmentHeader, ipv6Packet, optionsHeader } from './ipv6-packets.js';
import { datagramBatch, ingressVerdict, MemoryNetwork, memoryNode, unaccounted, type MemoryNode } from './memory-plane.js';
import { anyBytes, nearValid, nearValid6 } from './packet-arbitraries.js';

const port = 8285;
const dual = (n: number): Peer => ({
  subnet: parseCidr(`10.244.${n}.0/24`),
  subnet6: parseCidr6(`fd00:10:244:${n}::/64`),
  endpoint: { address: `198.18.0.${n}`, ip: parseIPv4(`198.18.0.${n}`), port },
});
const peerA = dual(2);
const peerB = dual(3);
/** A peer that leases no IPv6 subnet: it may not send IPv6. */
const peerC: Peer = { subnet: parseCidr('10.244.4.0/24'), endpoint: { address: '198.18.0.4', ip: parseIPv4('198.18.0.4'), port } };
const peers = [peerA, peerB, peerC];

const senders = fc.constantFrom<[number, number]>(
  [peerA.endpoint.ip, port],
  [peerB.endpoint.ip, port],
  [peerC.endpoint.ip, port],
  [parseIPv4('198.18.0.66'), port],
  [peerA.endpoint.ip, 1234],
);

/** The node under test and the peers it knows. */
interface Plane {
  readonly name: string;
  readonly carriesIPv4: boolean;
  readonly peers: readonly Peer[];
}

const dualStack: Plane = { name: 'a dual-stack data plane', carriesIPv4: true, peers };
/** An IPv6-only cluster's node: A and B lease their IPv6 subnets alone, and C, having none, is no peer. */
const ipv6Only: Plane = { name: 'an IPv6-only data plane', carriesIPv4: false, peers: [peerA, peerB].map(({ subnet: _ipv4, ...rest }) => rest) };

function nodeOf(plane: Plane): MemoryNode {
  const node = memoryNode(new MemoryNetwork(), { ...(plane.carriesIPv4 ? { subnet: '10.244.1.0/24' } : {}), subnet6: 'fd00:10:244:1::/64', ip: parseIPv4('198.18.0.1') });
  node.plane.setPeers(plane.peers);
  return node;
}

const dualNode = () => nodeOf(dualStack);

// The reference. Subnets are the test's /24s and /64s, compared byte-wise; peer n sends from 198.18.0.n.
const in24 = (d: Buffer, at: number, n: number) => d[at] === 10 && d[at + 1] === 244 && d[at + 2] === n;
const in64 = (d: Buffer, at: number, n: number) => d.subarray(at, at + 8).equals(addressBytes(`fd00:10:244:${n}::`).subarray(0, 8));
const subnetNumber = (peer: Peer) => peer.endpoint.ip & 0xff;

/** RFC 8200 section 4: whether the extension headers end inside `end` bytes, within 8 of them, Hop-by-Hop only first. */
function chainEndsInside(d: Buffer, end: number): boolean {
  let next = d[6]!;
  let at = 40;
  for (let seen = 0; ; seen++) {
    let size: number;
    if (next === 0 || next === 43 || next === 60) size = at + 2 <= end ? (d[at + 1]! + 1) * 8 : Infinity;
    else if (next === 51) size = at + 2 <= end ? (d[at + 1]! + 2) * 4 : Infinity;
    else if (next === 44) size = 8;
    else return true;
    if ((next === 0 && seen > 0) || seen === 8 || at + size > end) return false;
    // After a later fragment's header comes data, not headers.
    if (next === 44 && d.readUInt16BE(at + 2) >> 3 !== 0) return true;
    next = d[at]!;
    at += size;
  }
}

/** What the plane's ingress must do with datagram `d` from ip:port: 'delivered' and how many bytes, or the drop reason. */
function reference(plane: Plane, d: Buffer, ip: number, senderPort: number): { verdict: string; length?: number } {
  const sender = plane.peers.find((p) => p.endpoint.ip === ip && p.endpoint.port === senderPort);
  if (!sender) return { verdict: 'unknown-sender' };
  if (d.length === 0) return { verdict: 'truncated' };
  const version = d[0]! >> 4;
  if (version === 6) {
    if (d.length < 40) return { verdict: 'truncated' };
    const payload = d.readUInt16BE(4);
    if (payload === 0) return { verdict: 'bad-payload-length' };
    if (40 + payload > d.length) return { verdict: 'truncated' };
    if (!chainEndsInside(d, 40 + payload)) return { verdict: 'bad-extension-header' };
    if (sender.subnet6 === undefined || !in64(d, 8, subnetNumber(sender))) return { verdict: 'spoofed-source' };
    if (!in64(d, 24, 1)) return { verdict: 'wrong-destination' };
    return { verdict: 'delivered', length: 40 + payload };
  }
  if (version !== 4) return { verdict: 'not-ipv4' };
  if (!plane.carriesIPv4) return { verdict: 'ipv4-disabled' };
  if (d.length < 20) return { verdict: 'truncated' };
  const ihl = (d[0]! & 15) * 4;
  if (ihl < 20) return { verdict: 'bad-header-length' };
  const total = d.readUInt16BE(2);
  if (total < ihl) return { verdict: 'bad-total-length' };
  if (total > d.length) return { verdict: 'truncated' };
  if (!in24(d, 12, subnetNumber(sender))) return { verdict: 'spoofed-source' };
  if (!in24(d, 16, 1) || d[19] === 255) return { verdict: 'wrong-destination' };
  return { verdict: 'delivered', length: total };
}

for (const plane of [dualStack, ipv6Only]) {
  describe(`IPv6 ingress on random datagrams, through ${plane.name}`, () => {
    const datagrams = fc.oneof({ weight: 4, arbitrary: nearValid6 }, { weight: 1, arbitrary: nearValid }, { weight: 1, arbitrary: anyBytes });

    it('never throws, ends each datagram as written or exactly one drop, and does what the reference says, byte for byte', () => {
      const node = nodeOf(plane);
      const seen = new Set<string>();
      fc.assert(
        fc.property(datagrams, senders, (packet, [ip, senderPort]) => {
          const expected = reference(plane, packet, ip, senderPort);
          const { verdict, delivered } = ingressVerdict(node, packet, ip, senderPort);
          seen.add(verdict ?? 'delivered');
          assert.equal(verdict ?? 'delivered', expected.verdict);
          if (verdict === null) assert.deepEqual(delivered, packet.subarray(0, expected.length));
        }),
        { numRuns: 20_000 },
      );
      // The generators reach every IPv6 outcome (and IPv4's refusal where it is off), so the agreement above means something for each.
      const outcomes = ['delivered', 'unknown-sender', 'truncated', 'bad-payload-length', 'bad-extension-header', 'spoofed-source', 'wrong-destination'];
      for (const outcome of plane.carriesIPv4 ? outcomes : [...outcomes, 'ipv4-disabled']) {
        assert.ok(seen.has(outcome), `no datagram came to ${outcome}`);
      }
    });

    it('a whole batch of mixed datagrams delivers what the reference accepts, in order, and accounts for the rest', () => {
      fc.assert(
        fc.property(fc.array(fc.tuple(datagrams, senders), { maxLength: 120 }), (items) => {
          const node = nodeOf(plane);
          node.transport.receive(datagramBatch(items.map(([data, [ip, senderPort]]) => ({ data, ip, port: senderPort }))));
          const expected = items.map(([d, [ip, senderPort]]) => ({ d, ...reference(plane, d, ip, senderPort) }));
          assert.deepEqual(node.tun.takeWritten(), expected.filter((e) => e.verdict === 'delivered').map((e) => e.d.subarray(0, e.length)));
          const s = node.plane.snapshot();
          assert.deepEqual(unaccounted(s), { egress: 0, ingress: 0 });
          for (const [reason, count] of Object.entries(s.ingressDrops)) {
            assert.equal(count, expected.filter((e) => e.verdict === reason).length, reason);
          }
        }),
        { numRuns: 300 },
      );
    });
  });
}

describe('IPv6 ingress rules, case by case', () => {
  const node = dualNode();
  const verdictOf = (p: Buffer, peer: Peer = peerA) => ingressVerdict(node, p, peer.endpoint.ip, peer.endpoint.port).verdict;

  it('delivers a packet from a peer, from its IPv6 subnet, to ours (this node\'s own address included)', () => {
    for (const destination of ['fd00:10:244:1::7', 'fd00:10:244:1::', 'fd00:10:244:1:ffff:ffff:ffff:ffff']) {
      assert.equal(verdictOf(echo6('fd00:10:244:2::5', destination, 1)), null, destination);
    }
  });

  it('refuses a stranger, a spoofed source, a peer without an IPv6 subnet, and a foreign destination', () => {
    const p = echo6('fd00:10:244:2::5', 'fd00:10:244:1::7', 1);
    assert.equal(ingressVerdict(node, p, parseIPv4('198.18.0.99'), port).verdict, 'unknown-sender');
    assert.equal(verdictOf(p, peerB), 'spoofed-source', "B may not speak for A's subnet");
    assert.equal(verdictOf(echo6('fd00:10:244:4::5', 'fd00:10:244:1::7', 1), peerC), 'spoofed-source', 'C leases no IPv6 subnet');
    assert.equal(verdictOf(echo6('fe80::5', 'fd00:10:244:1::7', 1)), 'spoofed-source');
    for (const destination of ['fd00:10:244:3::7', 'ff02::1', 'fe80::1', '::1']) {
      assert.equal(verdictOf(echo6('fd00:10:244:2::5', destination, 1)), 'wrong-destination', destination);
    }
  });

  it('walks 8 extension headers and refuses a ninth; a later fragment ends the walk', () => {
    const chain = (n: number) => Array.from({ length: n }, () => optionsHeader(EXT_DESTINATION_OPTIONS));
    assert.equal(verdictOf(ipv6Packet({ source: 'fd00:10:244:2::5', destination: 'fd00:10:244:1::7', extensions: chain(8) })), null);
    assert.equal(verdictOf(ipv6Packet({ source: 'fd00:10:244:2::5', destination: 'fd00:10:244:1::7', extensions: chain(9) })), 'bad-extension-header');
    const later = ipv6Packet({ source: 'fd00:10:244:2::5', destination: 'fd00:10:244:1::7', extensions: [fragmentHeader(185, false)], protocol: EXT_DESTINATION_OPTIONS, upper: Buffer.from([6, 255, 0, 0]) });
    assert.equal(verdictOf(later), null, 'the bytes after a later fragment are data');
  });
});
