// UDP segmentation offload (USO) on the TUN without a device: cutting the
// UDP super-packets a kernel with USO hands over (one UDP_SEGMENT send), and
// joining datagrams of one flow before writing them to a device with USO.
// Checksums are judged by test/tun/udp-packets.ts, apart from the native code.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { loadNative } from '../../daemon/native.js';
import { internetChecksum } from '../../daemon/dataplane/ipv4-packet.js';
import { arena, tcpPacket, vnetFrame } from '../harness/packets.js';
import { EXT_DESTINATION_OPTIONS, ipv6Packet, optionsHeader } from '../dataplane/ipv6-packets.js';
import { assertNotJoined } from './not-joined.js';
import { GSO_UDP_L4, NEEDS_CSUM, ipHeaderLength, pattern, seededChecksum, udp4, udp6Packet, udpChecksumHolds, udpPayloadOf, usoFrame } from './udp-packets.js';

const { segmentFrame, joinPackets } = loadNative();
const WITH_USO = true;

/** A datagram of either family, for the tests that hold for both. */
const datagram = (family: 4 | 6, payload: Buffer, id = 0x1234) => (family === 6 ? udp6Packet({ payload }) : udp4({ payload, id }));

function assertDatagram(packet: Buffer, what: string): void {
  const ip = ipHeaderLength(packet);
  assert.equal(packet.readUInt16BE(ip + 4), packet.length - ip, `${what}: UDP length`);
  assert.ok(udpChecksumHolds(packet), `${what}: UDP checksum`);
  if (ip === 40) {
    assert.equal(packet.readUInt16BE(4), packet.length - 40, `${what}: payload length`);
  } else {
    assert.equal(packet.readUInt16BE(2), packet.length, `${what}: total length`);
    assert.equal(internetChecksum(packet, 0, ip), 0, `${what}: header checksum`);
  }
}

test('a UDPv4 super-packet is cut at gso_size into datagrams with their own lengths, ids and checksums', () => {
  const payload = pattern(9_999, 0);
  const gsoSize = 1372;
  const original = udp4({ payload, id: 500, ttl: 17, tos: 0x28, sourcePort: 4000, destinationPort: 8472 });
  const datagrams = segmentFrame(usoFrame(original, gsoSize), 1400)!;
  assert.deepEqual(datagrams.map((d) => udpPayloadOf(d).length), [1372, 1372, 1372, 1372, 1372, 1372, 1372, 395]);
  datagrams.forEach((d, i) => {
    assertDatagram(d, `datagram ${i}`);
    assert.equal(d.readUInt16BE(4), 500 + i, 'IP id counts up from the super-packet\'s');
    assert.deepEqual([d[1], d[6]! & 0x40, d[8], d.readUInt16BE(20), d.readUInt16BE(22)], [0x28, 0x40, 17, 4000, 8472], 'TOS, DF, TTL and ports kept');
    assert.deepEqual(d.subarray(12, 20), original.subarray(12, 20), 'addresses kept');
  });
  assert.deepEqual(Buffer.concat(datagrams.map(udpPayloadOf)), payload);
});

test('a UDPv6 super-packet is cut at gso_size into datagrams with their own payload lengths and checksums', () => {
  const payload = pattern(9_999, 0);
  const gsoSize = 1352;
  const original = udp6Packet({ payload, firstWord: 0x6a0beef1, hopLimit: 9 });
  const datagrams = segmentFrame(usoFrame(original, gsoSize), 1400)!;
  assert.deepEqual(datagrams.map((d) => udpPayloadOf(d).length), [1352, 1352, 1352, 1352, 1352, 1352, 1352, 535]);
  datagrams.forEach((d, i) => {
    assertDatagram(d, `datagram ${i}`);
    assert.deepEqual(d.subarray(0, 4), original.subarray(0, 4), 'traffic class and flow label kept');
    assert.deepEqual(d.subarray(6, 44), original.subarray(6, 44), 'next header, hop limit, addresses and ports kept');
  });
  assert.deepEqual(Buffer.concat(datagrams.map(udpPayloadOf)), payload);
});

for (const family of [4, 6] as const) {
  test(`IPv${family}: a UDP checksum that computes to zero is sent as 0xffff, never as 0 (none)`, () => {
    const segment = 1000;
    const payload = pattern(2 * segment, 3);
    // With its last word zero, the first datagram carries the complement of its sum; as that word, it makes the sum all ones.
    payload.writeUInt16BE(0, segment - 2);
    const carried = datagram(family, payload.subarray(0, segment));
    payload.writeUInt16BE(carried.readUInt16BE(ipHeaderLength(carried) + 6), segment - 2);
    const zeroing = datagram(family, payload.subarray(0, segment));
    assert.equal(zeroing.readUInt16BE(ipHeaderLength(zeroing) + 6), 0xffff, 'the case is set up: a checksum computing to zero');

    const [first, second] = segmentFrame(usoFrame(datagram(family, payload), segment), 1400)!;
    assert.equal(first!.readUInt16BE(ipHeaderLength(first!) + 6), 0xffff);
    assertDatagram(first!, 'first');
    assertDatagram(second!, 'second');
  });
}

test('a UDP super-packet with no more payload than gso_size is one datagram, an empty one too', () => {
  for (const payload of [pattern(700, 1), Buffer.alloc(0)]) {
    const original = udp4({ payload, id: 7 });
    assert.deepEqual(segmentFrame(usoFrame(original, 1000), 1400), [original], `${payload.length} bytes`);
  }
});

test('UDP super-packets the cutter cannot honour are refused, not guessed at', () => {
  const udp = udp4({ payload: pattern(3000, 0) });
  const udp6 = udp6Packet({ payload: pattern(3000, 0) });
  const refused = (what: string, frame: Buffer) => assert.equal(segmentFrame(frame, 1400), null, what);
  refused('gso_size 0', usoFrame(udp, 0));
  refused('IPv6: gso_size 0', usoFrame(udp6, 0));
  refused('TCP inside', vnetFrame({ flags: NEEDS_CSUM, gsoType: GSO_UDP_L4, hdrLen: 28, gsoSize: 1000, csumStart: 20, csumOffset: 6 }, tcpPacket({ source: '10.244.2.2', destination: '10.244.1.2', seq: 1, payload: Buffer.alloc(3000) })));
  refused('cut short inside the UDP header', usoFrame(udp, 1000).subarray(0, 10 + 24));
  refused('IPv6: cut short inside the UDP header', usoFrame(udp6, 1000).subarray(0, 10 + 44));
  const behindOptions = ipv6Packet({ source: 'fd00:10:0:2::2', destination: 'fd00:10:0:1::2', extensions: [optionsHeader(EXT_DESTINATION_OPTIONS)], upper: udp6.subarray(40) });
  refused('IPv6: an extension header before UDP', vnetFrame({ flags: NEEDS_CSUM, gsoType: GSO_UDP_L4, hdrLen: 56, gsoSize: 1000, csumStart: 48, csumOffset: 6 }, behindOptions));
  const version5 = usoFrame(udp, 1000);
  version5[10] = 0x55;
  refused('neither IPv4 nor IPv6', version5);
  const shortHeader = usoFrame(udp, 1000);
  shortHeader[10] = 0x44;
  refused('an IPv4 header length under 20', shortHeader);
  refused('datagrams larger than a slot', usoFrame(udp, 1373));
});

/** One flow's datagrams: `sizes` bytes of payload each, IPv4 ids counting up from 100. */
const flow = (family: 4 | 6, sizes: number[]) => sizes.map((size, i) => datagram(family, pattern(size, i), 100 + i));

function join(packets: Buffer[], udpSegmentation = WITH_USO): Buffer[] {
  const { buffer, offsets, lengths, count } = arena(packets.map((p) => Buffer.from(p)));
  return joinPackets(buffer, offsets, lengths, count, udpSegmentation);
}

for (const family of [4, 6] as const) {
  test(`IPv${family}: consecutive datagrams of one flow are joined into one USO frame, which cuts back into them`, () => {
    const packets = flow(family, [...Array<number>(9).fill(1000), 333]);
    const frames = join(packets);
    assert.equal(frames.length, 1);
    const frame = frames[0]!;
    const ip = family === 6 ? 40 : 20;
    assert.deepEqual(
      { flags: frame[0], gsoType: frame[1], hdrLen: frame.readUInt16LE(2), gsoSize: frame.readUInt16LE(4), csumStart: frame.readUInt16LE(6), csumOffset: frame.readUInt16LE(8) },
      { flags: NEEDS_CSUM, gsoType: GSO_UDP_L4, hdrLen: ip + 8, gsoSize: 1000, csumStart: ip, csumOffset: 6 },
    );
    const joined = frame.subarray(10);
    assert.equal(joined.length, ip + 8 + 9 * 1000 + 333);
    assert.equal(joined.readUInt16BE(ip + 4), joined.length - ip, 'UDP length');
    assert.equal(joined.readUInt16BE(ip + 6), seededChecksum(joined), 'UDP checksum field: the pseudo-header sum');
    if (family === 6) {
      assert.equal(joined.readUInt16BE(4), joined.length - 40, 'payload length');
    } else {
      assert.equal(joined.readUInt16BE(2), joined.length, 'total length');
      assert.equal(internetChecksum(joined, 0, 20), 0, 'header checksum');
    }
    assert.deepEqual(segmentFrame(frame, 1400), packets);
  });
}

test('IPv4 ids: counting up they join, with DF or without; one id for all joins only with DF; out of sequence never', () => {
  const run = (ids: number[], dontFragment: boolean) => join(ids.map((id, i) => udp4({ payload: pattern(1000, i), id, dontFragment })));
  assert.equal(run([7, 8, 9], false).length, 1, 'counting up, no DF');
  assert.equal(run([0xffff, 0, 1], false).length, 1, 'counting up across the wrap');
  assert.equal(run([7, 8, 9], true).length, 1, 'counting up, DF');
  assert.equal(run([7, 7, 7], true).length, 1, 'one id, DF: an atomic datagram, its id means nothing');
  // Cut again, the joined packet's datagrams would get ids 7, 8, 9: ids their sender never used.
  assert.equal(run([7, 7, 7], false).length, 3, 'one id, no DF');
  assert.equal(run([7, 9, 10], true).length, 2, 'a gap in the ids ends the run, DF or not');
  assert.equal(run([7, 9], false).length, 2, 'out of sequence, no DF');
});

test('without USO on the device, datagrams of one flow are written one by one, untouched', () => {
  const packets = flow(4, [1000, 1000, 1000]);
  const frames = join(packets, false);
  assert.deepEqual(frames.map((f) => f.subarray(10)), packets);
  assert.ok(frames.every((f) => f.subarray(0, 10).every((b) => b === 0)), 'plain headers');
});

test('a shorter datagram ends a run; a datagram alone is a plain write', () => {
  const packets = flow(4, [1000, 1000, 500, 1000]);
  const frames = join(packets);
  assert.equal(frames.length, 2);
  assert.equal(frames[0]![1], GSO_UDP_L4);
  assert.equal(frames[0]!.length, 10 + 28 + 2500);
  assert.deepEqual(frames[1], Buffer.concat([Buffer.alloc(10), packets[3]!]));
  assert.deepEqual(join([packets[0]!]), [Buffer.concat([Buffer.alloc(10), packets[0]!])]);
});

test('a run holds at most 64 datagrams and 65,535 bytes', () => {
  const many = join(flow(4, Array<number>(70).fill(100)));
  assert.deepEqual(many.map((f) => (f.length - 10 - 28) / 100), [64, 6]);
  // 48 + 50 * 1300 = 65,048 bytes; one more datagram would pass 65,535.
  const large = join(flow(6, Array<number>(52).fill(1300)));
  assert.deepEqual(large.map((f) => (f.length - 10 - 48) / 1300), [50, 2]);
});

test('datagrams are not joined across flows, header changes, options, fragments, absent checksums or a larger datagram', () => {
  const v4 = (extra: Partial<Parameters<typeof udp4>[0]> = {}, size = 1000) => udp4({ payload: pattern(size, 5), ...extra });
  const v6 = (extra: Partial<Parameters<typeof udp6Packet>[0]> = {}, size = 1000) => udp6Packet({ payload: pattern(size, 5), ...extra });
  const padded = v4();
  const paddedUdp = Buffer.from(padded);
  paddedUdp.writeUInt16BE(paddedUdp.readUInt16BE(24) - 4, 24); // a UDP length short of the IP length: padding
  assertNotJoined(
    {
      'another source port': [v4(), v4({ sourcePort: 40001 })],
      'another destination port': [v4(), v4({ destinationPort: 54 })],
      'another source address': [v4(), v4({ source: '10.244.2.3' })],
      'another TOS': [v4(), v4({ tos: 4 })],
      'another TTL': [v4(), v4({ ttl: 63 })],
      'DF on one only': [v4(), v4({ dontFragment: false })],
      'IPv4 options': [v4({ options: Buffer.from([1, 1, 1, 0]) }), v4({ options: Buffer.from([1, 1, 1, 0]) })],
      'a fragment': [v4(), v4({ moreFragments: true })],
      'checksum 0 on the second': [v4(), v4({ noChecksum: true })],
      'checksum 0 on both': [v4({ noChecksum: true }), v4({ noChecksum: true })],
      'a UDP length short of the IP length': [padded, paddedUdp],
      'a larger second datagram': [v4({}, 500), v4({}, 1000)],
      'an empty first datagram': [v4({}, 0), v4({}, 0)],
      'IPv6: another flow label': [v6(), v6({ firstWord: 0x6000beee })],
      'IPv6: another hop limit': [v6(), v6({ hopLimit: 63 })],
      'IPv6: another destination port': [v6(), v6({ destinationPort: 54 })],
      'IPv4 then IPv6': [v4(), v6()],
      'TCP then UDP': [tcpPacket({ source: '10.244.2.2', destination: '10.244.1.2', seq: 1, payload: Buffer.alloc(1000) }), v4()],
    },
    WITH_USO,
  );
  const behindOptions = ipv6Packet({ source: 'fd00:10:0:2::2', destination: 'fd00:10:0:1::2', extensions: [optionsHeader(EXT_DESTINATION_OPTIONS)], upper: v6().subarray(40) });
  assertNotJoined({ 'IPv6: an extension header': [behindOptions, behindOptions] }, WITH_USO);
});

test('property: whatever is joined, cutting the frames gives back the original datagrams', () => {
  const step = fc.record({
    flow: fc.integer({ min: 0, max: 2 }),
    payload: fc.constantFrom(0, 1, 200, 999, 1000, 1000, 1000),
    noChecksum: fc.boolean(),
  });
  fc.assert(
    fc.property(fc.array(step, { minLength: 1, maxLength: 150 }), (steps) => {
      const ids = [0, 0, 0];
      // Flows 0 and 1 are IPv4 (the second with absent checksums allowed), flow 2 is IPv6.
      const packets = steps.map((s, i) => {
        const payload = pattern(s.payload, i);
        if (s.flow === 2) return udp6Packet({ payload });
        return udp4({ payload, sourcePort: 40000 + s.flow, id: ids[s.flow]!++, noChecksum: s.flow === 1 && s.noChecksum });
      });
      const frames = join(packets);
      const cut = frames.flatMap((frame) => segmentFrame(frame, 1400) ?? assert.fail('the cutter refused a joined frame'));
      // The joiner keeps IPv4 ids only as the first id plus the position, which these flows have.
      assert.deepEqual(cut, packets);
    }),
    { numRuns: 500 },
  );
});
