// The ingress rules on random input, through the production path: a real
// data plane's ingress stage (sender lookup, then open with a cluster key,
// then the packet checks), fed datagrams by the in-memory transport. No
// root; ingress-fuzz.system.test.ts does the same to the real daemon.
import { describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import fc from 'fast-check';
import type { Peer } from '../../daemon/dataplane/peer-table.js';
import { authKey, createSealer, SEAL_OVERHEAD } from '../../daemon/dataplane/sealing.js';
import { checkIPv4, destinationAddress, sourceAddress } from '../../daemon/dataplane/ipv4-packet.js';
import { parseCidr, parseIPv4 } from '../../daemon/net/ipv4.js';
import { ingressVerdict, MemoryNetwork, memoryNode } from '../dataplane/memory-plane.js';
import { anyBytes, nearValid } from '../dataplane/packet-arbitraries.js';

const local = parseCidr('10.244.1.0/24');
const nodeIp = parseIPv4('198.18.0.1');
const peerA: Peer = { subnet: parseCidr('10.244.2.0/24'), endpoint: { address: '198.18.0.2', ip: parseIPv4('198.18.0.2'), port: 8285 } };
const peerB: Peer = { subnet: parseCidr('10.244.3.0/24'), endpoint: { address: '198.18.0.3', ip: parseIPv4('198.18.0.3'), port: 8285 } };

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
  return src >>> 8 === sender.subnet!.network >>> 8 && dst >>> 8 === local.network >>> 8 && (dst & 0xff) !== 0xff;
}

const senders = fc.constantFrom(
  [peerA.endpoint.ip, 8285],
  [peerB.endpoint.ip, 8285],
  [parseIPv4('198.18.0.66'), 8285],
  [peerA.endpoint.ip, 1234],
) as fc.Arbitrary<[number, number]>;

describe('ingress on random datagrams, through the data plane', () => {
  it('never throws, and delivers exactly what the reference accepts, byte for byte', () => {
    const node = memoryNode(new MemoryNetwork(), { subnet: '10.244.1.0/24', ip: nodeIp });
    node.plane.setPeers([peerA, peerB]);
    fc.assert(
      fc.property(fc.oneof(nearValid, anyBytes), senders, (packet, [ip, port]) => {
        const { verdict, delivered } = ingressVerdict(node, packet, ip, port);
        const padded = Buffer.concat([packet, Buffer.alloc(24)]);
        assert.equal(verdict === null, acceptable(padded, packet.length, ip, port), `verdict ${verdict}`);
        if (verdict === null) {
          assert.equal(checkIPv4(delivered!, 0, delivered!.length), null);
          assert.deepEqual(delivered, packet.subarray(0, packet.readUInt16BE(2)), 'the packet, without padding');
          assert.equal(destinationAddress(delivered!, 0) >>> 8, local.network >>> 8);
          assert.ok([peerA, peerB].some((p) => sourceAddress(delivered!, 0) >>> 8 === p.subnet!.network >>> 8));
        }
      }),
      { numRuns: 20_000 },
    );
  });

  it('with a cluster key: strangers are turned away before opening, then only authentic datagrams are checked', () => {
    const key = authKey(randomBytes(32));
    const sealerOf = (ip: number) => createSealer({ mode: 'mac', localIp: ip, keys: [key] });
    const node = memoryNode(new MemoryNetwork(), { subnet: '10.244.1.0/24', ip: nodeIp, sealer: sealerOf(nodeIp) });
    node.plane.setPeers([peerA, peerB]);
    const sealers = new Map([peerA, peerB].map((p) => [p.endpoint.ip, sealerOf(p.endpoint.ip)]));
    const stranger = sealerOf(parseIPv4('198.18.0.66'));
    const form = fc.constantFrom('sealed', 'bare', 'tampered');
    fc.assert(
      fc.property(fc.oneof(nearValid, anyBytes), senders, form, (packet, [ip, port], how) => {
        // Sealed at run time, so that a re-run (when shrinking) is not a replay.
        let datagram = packet;
        if (how !== 'bare') {
          datagram = Buffer.alloc(packet.length + SEAL_OVERHEAD);
          (sealers.get(ip) ?? stranger).seal(packet, 0, packet.length, datagram, 0);
          if (how === 'tampered') datagram[datagram.length - 1]! ^= 0x01;
        }
        const known = [peerA, peerB].some((p) => p.endpoint.ip === ip && p.endpoint.port === port);
        const { verdict, delivered } = ingressVerdict(node, datagram, ip, port);
        if (!known) {
          assert.equal(verdict, 'unknown-sender', 'a stranger is dropped before any crypto');
        } else if (how !== 'sealed') {
          // A bare packet can only pass if its bytes happen to be a sealed datagram: they never are.
          assert.equal(verdict, 'unauthenticated');
        } else {
          const padded = Buffer.concat([packet, Buffer.alloc(24)]);
          assert.equal(verdict === null, acceptable(padded, packet.length, ip, port), `verdict ${verdict}`);
          if (verdict === null) assert.deepEqual(delivered, packet.subarray(0, packet.readUInt16BE(2)));
        }
      }),
      { numRuns: 5_000 },
    );
  });
});
