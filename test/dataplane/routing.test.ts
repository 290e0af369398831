// The egress decision as a plain function over buffers, and the ingress
// rules through a real data plane's ingress (sender, then checks).
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { PeerTable, type Peer } from '../../daemon/dataplane/peer-table.js';
import { routeEgress, routeEgress6 } from '../../daemon/dataplane/send.js';
import { checkIPv4, destinationAddress } from '../../daemon/dataplane/ipv4-packet.js';
import { checkIPv6, isNonUnicast6 } from '../../daemon/dataplane/ipv6-packet.js';
import { parseCidr, parseIPv4 } from '../../daemon/net/ipv4.js';
import { parseCidr6 } from '../../daemon/net/ipv6.js';
import { ipv4Packet } from '../harness/packets.js';
import { udp6 } from './ipv6-packets.js';
import { ingressVerdict, MemoryNetwork, memoryNode } from './memory-plane.js';
import { anyBytes, nearValid, nearValid6 } from './packet-arbitraries.js';
import { asPeer } from './peer-entries.js';

const peerA: Peer = { subnet: parseCidr('10.244.2.0/24'), endpoint: { address: '198.18.0.2', ip: parseIPv4('198.18.0.2'), port: 8285 } };
const peerB: Peer = { subnet: parseCidr('10.244.3.0/24'), endpoint: { address: '198.18.0.3', ip: parseIPv4('198.18.0.3'), port: 8285 } };
const table = new PeerTable(24, [peerA, peerB]);
const MAX = 1472;
const node = memoryNode(new MemoryNetwork(), { subnet: '10.244.1.0/24', ip: parseIPv4('198.18.0.1') });
node.plane.setPeers([peerA, peerB]);
const ingressOf = (p: Buffer, ip: number, port: number) => ingressVerdict(node, p, ip, port).verdict;

test('egress: routes to the peer leasing the destination', () => {
  const p = ipv4Packet({ source: '10.244.1.2', destination: '10.244.3.7' });
  assert.deepEqual(asPeer(routeEgress(p, 0, p.length, table, MAX)), peerB);
});

test('egress: unknown destination, non-unicast, too big and malformed are dropped with their reason', () => {
  const cases: Array<[Buffer, string]> = [
    [ipv4Packet({ source: '10.244.1.2', destination: '10.244.9.7' }), 'no-route'],
    [ipv4Packet({ source: '10.244.1.2', destination: '224.0.0.251' }), 'non-unicast'],
    [ipv4Packet({ source: '10.244.1.2', destination: '255.255.255.255' }), 'non-unicast'],
    [ipv4Packet({ source: '10.244.1.2', destination: '10.244.2.7', payload: Buffer.alloc(MAX - 19) }), 'too-big'],
    [Buffer.from([0x60, 0, 0, 0, 0, 8, 17, 64]), 'not-ipv4'],
  ];
  for (const [packet, reason] of cases) assert.equal(routeEgress(packet, 0, packet.length, table, MAX), reason);
  const fits = ipv4Packet({ source: '10.244.1.2', destination: '10.244.2.7', payload: Buffer.alloc(MAX - 20) });
  assert.deepEqual(asPeer(routeEgress(fits, 0, fits.length, table, MAX)), peerA, 'exactly the MTU fits');
});

test('ingress: accepts a packet from a peer, from its subnet, to ours', () => {
  const p = ipv4Packet({ source: '10.244.2.9', destination: '10.244.1.4' });
  const { verdict, delivered } = ingressVerdict(node, p, peerA.endpoint.ip, 8285);
  assert.equal(verdict, null);
  assert.deepEqual(delivered, p);
});

test('ingress: a stranger, a spoofed source and a foreign destination are dropped', () => {
  const p = ipv4Packet({ source: '10.244.2.9', destination: '10.244.1.4' });
  assert.equal(ingressOf(p, parseIPv4('198.18.0.99'), 8285), 'unknown-sender');
  assert.equal(ingressOf(p, peerA.endpoint.ip, 9999), 'unknown-sender');
  assert.equal(ingressOf(p, peerB.endpoint.ip, 8285), 'spoofed-source', "B may not speak for A's subnet");
  const elsewhere = ipv4Packet({ source: '10.244.2.9', destination: '10.244.3.4' });
  assert.equal(ingressOf(elsewhere, peerA.endpoint.ip, 8285), 'wrong-destination');
});

test('egress fuzz: never throws, and only well-formed unicast packets that fit are routed', () => {
  fc.assert(
    fc.property(fc.oneof(nearValid, anyBytes), (packet) => {
      const verdict = routeEgress(packet, 0, packet.length, table, MAX);
      if (typeof verdict !== 'string') {
        assert.equal(checkIPv4(packet, 0, packet.length), null);
        assert.equal(table.lookup(destinationAddress(packet, 0)), verdict);
      }
    }),
    { numRuns: 20_000 },
  );
});

const dualA: Peer = { ...peerA, subnet6: parseCidr6('fd00:10:244:2::/64') };
const dualB: Peer = { ...peerB, subnet6: parseCidr6('fd00:10:244:3::/64') };
const table6 = new PeerTable(24, [dualA, dualB], 64);

test('egress IPv6: routes to the peer leasing the destination; drops the rest with their reason', () => {
  const to = (destination: string, size = 20) => udp6('fd00:10:244:1::2', destination, Buffer.alloc(size));
  assert.deepEqual(asPeer(routeEgress6(to('fd00:10:244:3::7'), 0, to('fd00:10:244:3::7').length, table6, MAX)), dualB);
  const fits = to('fd00:10:244:2::7', MAX - 48);
  assert.deepEqual(asPeer(routeEgress6(fits, 0, fits.length, table6, MAX)), dualA, 'exactly the MTU fits');
  const cases: Array<[Buffer, string]> = [
    [to('fd00:10:244:9::7'), 'no-route'],
    [to('ff02::1'), 'non-unicast'],
    [to('fd00:10:244:2::7', MAX - 47), 'too-big'],
    [to('fd00:10:244:2::7').subarray(0, 39), 'truncated'],
  ];
  for (const [packet, reason] of cases) assert.equal(routeEgress6(packet, 0, packet.length, table6, MAX), reason);
  const p = to('fd00:10:244:2::7');
  assert.deepEqual(asPeer(routeEgress6(p, 0, p.length, table, MAX)), 'ipv6-disabled', 'a table without IPv6 subnets');
});

test('egress fuzz, IPv6: never throws, and only well-formed unicast packets that fit are routed, to the peer that leases them', () => {
  const versionSix = anyBytes.filter((b) => b.length > 0).map((b) => Buffer.concat([Buffer.from([0x60 | (b[0]! & 15)]), b.subarray(1)]));
  fc.assert(
    fc.property(fc.oneof(nearValid6, versionSix), (packet) => {
      // routeEgress6 is only given what the version nibble sends it; the edits of nearValid6 may change that.
      if (packet.length === 0 || packet[0]! >> 4 !== 6) return;
      const verdict = routeEgress6(packet, 0, packet.length, table6, MAX);
      if (typeof verdict !== 'string') {
        assert.equal(checkIPv6(packet, 0, packet.length), null);
        assert.equal(isNonUnicast6(packet, 24), false);
        assert.ok(40 + packet.readUInt16BE(4) <= MAX);
        assert.ok(verdict.subnet6 !== undefined && packet.subarray(24, 32).equals(Buffer.from([0xfd, 0, 0, 0x10, 0x02, 0x44, 0, verdict.subnet6 === dualA.subnet6 ? 2 : 3])));
      }
    }),
    { numRuns: 20_000 },
  );
});
