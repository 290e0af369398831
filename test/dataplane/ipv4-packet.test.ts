import { test } from 'node:test';
import assert from 'node:assert/strict';
import { checkIPv4, destinationAddress, dontFragment, internetChecksum, isLaterFragment, isNonUnicast, sourceAddress } from '../../daemon/dataplane/ipv4-packet.js';
import { parseIPv4 } from '../../daemon/net/ipv4.js';
import { ipv4Packet } from '../harness/packets.js';

const good = () => ipv4Packet({ source: '10.244.1.2', destination: '10.244.2.3', payload: Buffer.alloc(100, 7) });

test('a well-formed packet passes, at any offset in a larger buffer', () => {
  const packet = good();
  assert.equal(checkIPv4(packet, 0, packet.length), null);
  const arena = Buffer.alloc(packet.length + 37, 0xff);
  packet.copy(arena, 37);
  assert.equal(checkIPv4(arena, 37, packet.length), null);
  assert.equal(sourceAddress(arena, 37), parseIPv4('10.244.1.2'));
  assert.equal(destinationAddress(arena, 37), parseIPv4('10.244.2.3'));
});

test('an empty read and anything shorter than a header are truncated', () => {
  const packet = good();
  assert.equal(checkIPv4(packet, 0, 0), 'truncated');
  for (let length = 1; length < 20; length++) assert.equal(checkIPv4(packet, 0, length), 'truncated', `length ${length}`);
});

test('a packet cut short of its total length is truncated', () => {
  const packet = good();
  assert.equal(checkIPv4(packet, 0, packet.length - 1), 'truncated');
});

test('trailing bytes past the total length are allowed', () => {
  const packet = Buffer.concat([good(), Buffer.alloc(6)]);
  assert.equal(checkIPv4(packet, 0, packet.length), null);
});

test('IPv6 and other versions are not IPv4', () => {
  for (const version of [0, 1, 5, 6, 15]) {
    const packet = good();
    packet[0] = (version << 4) | 5;
    assert.equal(checkIPv4(packet, 0, packet.length), 'not-ipv4', `version ${version}`);
  }
});

test('a header length under 20 bytes is rejected', () => {
  for (let ihl = 0; ihl < 5; ihl++) {
    const packet = good();
    packet[0] = 0x40 | ihl;
    assert.equal(checkIPv4(packet, 0, packet.length), 'bad-header-length', `ihl ${ihl}`);
  }
});

test('a header length beyond the total length is rejected', () => {
  const packet = ipv4Packet({ source: '10.0.0.1', destination: '10.0.0.2', payload: Buffer.alloc(0) });
  packet[0] = 0x46; // 24-byte header in a 20-byte packet
  assert.equal(checkIPv4(packet, 0, packet.length), 'bad-total-length');
});

test('a total length shorter than the header is rejected', () => {
  const packet = good();
  packet.writeUInt16BE(19, 2);
  assert.equal(checkIPv4(packet, 0, packet.length), 'bad-total-length');
});

test('options are allowed and counted in the header length', () => {
  const packet = ipv4Packet({ source: '10.0.0.1', destination: '10.0.0.2', options: Buffer.from([1, 1, 1, 0]) });
  assert.equal(packet[0], 0x46);
  assert.equal(checkIPv4(packet, 0, packet.length), null);
});

test('flags: DF and fragment offset', () => {
  assert.equal(dontFragment(ipv4Packet({ source: '1.1.1.1', destination: '2.2.2.2', dontFragment: true }), 0), true);
  assert.equal(dontFragment(good(), 0), false);
  assert.equal(isLaterFragment(good(), 0), false);
  assert.equal(isLaterFragment(ipv4Packet({ source: '1.1.1.1', destination: '2.2.2.2', fragmentOffset: 185 }), 0), true);
});

test('non-unicast destinations', () => {
  for (const address of ['224.0.0.1', '239.255.255.250', '255.255.255.255', '0.0.0.0']) {
    assert.equal(isNonUnicast(parseIPv4(address)), true, address);
  }
  for (const address of ['10.244.1.255', '198.18.0.1', '223.255.255.255']) {
    assert.equal(isNonUnicast(parseIPv4(address)), false, address);
  }
});

test('checksum of a checksummed header is zero, and it catches a flipped bit', () => {
  const packet = good();
  assert.equal(internetChecksum(packet, 0, 20), 0);
  packet[8]! ^= 1;
  assert.notEqual(internetChecksum(packet, 0, 20), 0);
});

test('checksum of an odd length pads with a zero byte (RFC 1071)', () => {
  assert.equal(internetChecksum(Buffer.from([0x12, 0x34, 0x56]), 0, 3), ~(0x1234 + 0x5600) & 0xffff);
});
