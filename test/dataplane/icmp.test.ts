import { test } from 'node:test';
import assert from 'node:assert/strict';
import { CODE_FRAGMENTATION_NEEDED, CODE_NET_UNREACHABLE, ICMP_ERROR_MAX, RateLimiter, mayAnswerWithError, writeDestinationUnreachable } from '../../daemon/dataplane/icmp.js';
import { checkIPv4, destinationAddress, internetChecksum, sourceAddress, totalLength } from '../../daemon/dataplane/ipv4-packet.js';
import { parseIPv4 } from '../../daemon/net/ipv4.js';
import { icmpEcho, ipv4Packet } from '../harness/packets.js';

const from = parseIPv4('10.244.1.0');

function unreachable(original: Buffer, code: number, mtu = 0): Buffer {
  const out = Buffer.alloc(ICMP_ERROR_MAX + 10, 0xaa);
  const length = writeDestinationUnreachable(out, 10, original, 0, code, from, mtu);
  return out.subarray(10, 10 + length);
}

test('net unreachable: addressed back to the sender, with both checksums right', () => {
  const original = ipv4Packet({ source: '10.244.1.5', destination: '10.244.9.9', payload: Buffer.alloc(40, 1) });
  const reply = unreachable(original, CODE_NET_UNREACHABLE);
  assert.equal(checkIPv4(reply, 0, reply.length), null);
  assert.equal(totalLength(reply, 0), reply.length);
  assert.equal(internetChecksum(reply, 0, 20), 0, 'IP header checksum');
  assert.equal(internetChecksum(reply, 20, reply.length - 20), 0, 'ICMP checksum');
  assert.equal(sourceAddress(reply, 0), from);
  assert.equal(destinationAddress(reply, 0), parseIPv4('10.244.1.5'));
  assert.equal(reply[9], 1, 'protocol ICMP');
  assert.equal(reply[20], 3, 'type destination unreachable');
  assert.equal(reply[21], 0, 'code net unreachable');
  assert.deepEqual(reply.subarray(28), original, 'quotes the whole short original');
});

test('fragmentation needed carries the next-hop MTU', () => {
  const original = ipv4Packet({ source: '10.244.1.5', destination: '10.244.2.9', dontFragment: true, payload: Buffer.alloc(1500) });
  const reply = unreachable(original, CODE_FRAGMENTATION_NEEDED, 1472);
  assert.equal(reply[21], 4);
  assert.equal(reply.readUInt16BE(26), 1472);
  assert.equal(internetChecksum(reply, 20, reply.length - 20), 0);
});

test('a long original is quoted only up to 576 bytes in all', () => {
  const original = ipv4Packet({ source: '10.244.1.5', destination: '10.244.9.9', payload: Buffer.alloc(1400, 3) });
  const reply = unreachable(original, CODE_NET_UNREACHABLE);
  assert.equal(reply.length, ICMP_ERROR_MAX);
  assert.deepEqual(reply.subarray(28), original.subarray(0, ICMP_ERROR_MAX - 28));
});

test('no error in reply to an ICMP error, a later fragment or a non-unicast source (RFC 1122)', () => {
  const error = ipv4Packet({ source: '10.244.1.5', destination: '10.244.9.9', protocol: 1, payload: icmpEcho(3) });
  assert.equal(mayAnswerWithError(error, 0), false);
  const echo = ipv4Packet({ source: '10.244.1.5', destination: '10.244.9.9', protocol: 1, payload: icmpEcho(8) });
  assert.equal(mayAnswerWithError(echo, 0), true);
  const fragment = ipv4Packet({ source: '10.244.1.5', destination: '10.244.9.9', fragmentOffset: 10 });
  assert.equal(mayAnswerWithError(fragment, 0), false);
  const fromNowhere = ipv4Packet({ source: '0.0.0.0', destination: '10.244.9.9' });
  assert.equal(mayAnswerWithError(fromNowhere, 0), false);
});

test('rate limiter: a burst, then the rate', () => {
  let now = 0;
  const limiter = new RateLimiter(10, 3, () => now);
  assert.deepEqual([1, 2, 3, 4].map(() => limiter.tryTake()), [true, true, true, false]);
  now += 100; // 10/s -> one token in 100 ms
  assert.equal(limiter.tryTake(), true);
  assert.equal(limiter.tryTake(), false);
  now += 10_000;
  assert.deepEqual([1, 2, 3, 4].map(() => limiter.tryTake()), [true, true, true, false], 'never more than the burst');
});
