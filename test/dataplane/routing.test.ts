// The egress and ingress decisions, as plain functions over buffers.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { PeerTable, type Peer } from '../../daemon/dataplane/peer-table.js';
import { routeEgress } from '../../daemon/dataplane/send.js';
import { checkIngress } from '../../daemon/dataplane/receive.js';
import { checkIPv4, destinationAddress, sourceAddress } from '../../daemon/dataplane/ipv4-packet.js';
import { parseCidr, parseIPv4 } from '../../daemon/net/ipv4.js';
import { ipv4Packet } from '../harness/packets.js';

const local = parseCidr('10.244.1.0/24');
const peerA: Peer = { subnet: parseCidr('10.244.2.0/24'), endpoint: { address: '198.18.0.2', ip: parseIPv4('198.18.0.2'), port: 8285 } };
const peerB: Peer = { subnet: parseCidr('10.244.3.0/24'), endpoint: { address: '198.18.0.3', ip: parseIPv4('198.18.0.3'), port: 8285 } };
const table = new PeerTable(24, [peerA, peerB]);
const MAX = 1472;

test('egress: routes to the peer leasing the destination', () => {
  const p = ipv4Packet({ source: '10.244.1.2', destination: '10.244.3.7' });
  assert.equal(routeEgress(p, 0, p.length, table, MAX), peerB);
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
  assert.equal(routeEgress(fits, 0, fits.length, table, MAX), peerA, 'exactly the MTU fits');
});

test('ingress: accepts a packet from a peer, from its subnet, to ours', () => {
  const p = ipv4Packet({ source: '10.244.2.9', destination: '10.244.1.4' });
  assert.equal(checkIngress(p, 0, p.length, peerA.endpoint.ip, 8285, table, local), null);
});

test('ingress: a stranger, a spoofed source and a foreign destination are dropped', () => {
  const p = ipv4Packet({ source: '10.244.2.9', destination: '10.244.1.4' });
  assert.equal(checkIngress(p, 0, p.length, parseIPv4('198.18.0.99'), 8285, table, local), 'unknown-sender');
  assert.equal(checkIngress(p, 0, p.length, peerA.endpoint.ip, 9999, table, local), 'unknown-sender');
  assert.equal(checkIngress(p, 0, p.length, peerB.endpoint.ip, 8285, table, local), 'spoofed-source', "B may not speak for A's subnet");
  const elsewhere = ipv4Packet({ source: '10.244.2.9', destination: '10.244.3.4' });
  assert.equal(checkIngress(elsewhere, 0, elsewhere.length, peerA.endpoint.ip, 8285, table, local), 'wrong-destination');
});

// Reference: what "valid" means, written independently of the validator.
function acceptable(buf: Buffer, length: number, senderIp: number, senderPort: number): boolean {
  const sender = [peerA, peerB].find((p) => p.endpoint.ip === senderIp && p.endpoint.port === senderPort);
  if (!sender || length < 20) return false;
  const version = buf[0]! >> 4;
  const ihl = (buf[0]! & 15) * 4;
  const total = buf.readUInt16BE(2);
  if (version !== 4 || ihl < 20 || total < ihl || total > length) return false;
  const src = buf.readUInt32BE(12);
  const dst = buf.readUInt32BE(16);
  return src >>> 8 === sender.subnet.network >>> 8 && dst >>> 8 === local.network >>> 8;
}

const senders = fc.constantFrom(
  [peerA.endpoint.ip, 8285],
  [peerB.endpoint.ip, 8285],
  [parseIPv4('198.18.0.66'), 8285],
  [peerA.endpoint.ip, 1234],
) as fc.Arbitrary<[number, number]>;

// Near-valid packets: a valid one with a few bytes of the header overwritten and a random length.
const nearValid = fc
  .record({
    src: fc.constantFrom('10.244.2.5', '10.244.3.5', '10.244.1.5', '10.9.9.9'),
    dst: fc.constantFrom('10.244.1.7', '10.244.2.7', '8.8.8.8'),
    payload: fc.uint8Array({ maxLength: 64 }),
    edits: fc.array(fc.tuple(fc.integer({ min: 0, max: 23 }), fc.integer({ min: 0, max: 255 })), { maxLength: 3 }),
    cut: fc.integer({ min: -8, max: 8 }),
  })
  .map(({ src, dst, payload, edits, cut }) => {
    const packet = ipv4Packet({ source: src, destination: dst, payload: Buffer.from(payload) });
    for (const [at, value] of edits) if (at < packet.length) packet[at] = value;
    const length = Math.max(0, Math.min(packet.length + cut, packet.length));
    return packet.subarray(0, Math.max(length, 0));
  });

const anyBytes = fc.uint8Array({ maxLength: 80 }).map((b) => Buffer.from(b));

test('ingress fuzz: never throws, and accepts exactly what the reference accepts', () => {
  fc.assert(
    fc.property(fc.oneof(nearValid, anyBytes), senders, (packet, [ip, port]) => {
      // Read from inside a bigger arena, as the transport hands it over.
      const arena = Buffer.alloc(packet.length + 100, 0x45);
      packet.copy(arena, 50);
      const verdict = checkIngress(arena, 50, packet.length, ip, port, table, local);
      const padded = Buffer.concat([packet, Buffer.alloc(24)]);
      assert.equal(verdict === null, acceptable(padded, packet.length, ip, port), `verdict ${verdict}`);
      if (verdict === null) {
        assert.equal(checkIPv4(arena, 50, packet.length), null);
        assert.equal(destinationAddress(arena, 50) >>> 8, local.network >>> 8);
        assert.ok([peerA, peerB].some((p) => sourceAddress(arena, 50) >>> 8 === p.subnet.network >>> 8));
      }
    }),
    { numRuns: 20_000 },
  );
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
