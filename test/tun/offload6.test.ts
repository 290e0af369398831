// The TUN offload path for IPv6 without a device: cutting TCPv6 super-packets
// the kernel hands over, completing partial checksums, and joining IPv6
// segments before writing them back. Checksums are judged here, apart from
// the native code, over the RFC 8200 8.1 pseudo-header.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { loadNative } from '../../daemon/native.js';
import { internetChecksum } from '../../daemon/dataplane/ipv4-packet.js';
import { arena, tcpPacket, vnetFrame } from '../harness/packets.js';
import { assertNotJoined } from './not-joined.js';
import { EXT_HOP_BY_HOP, PROTO_TCP, ipv6Packet, optionsHeader, udp6 } from '../dataplane/ipv6-packets.js';

const { segmentFrame, joinPackets } = loadNative();
const NEEDS_CSUM = 1;
const GSO_TCPV4 = 1;
const GSO_TCPV6 = 4;
const GSO_ECN = 0x80;
const TCP_CWR = 0x80;
const timestamps = Buffer.from([1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9]);
const HEADERS = 40 + 20 + timestamps.length;
const SOURCE = 'fd00:10:0:1::2';
const DESTINATION = 'fd00:10:0:2::2';

/** The pseudo-header of a packet's addresses, an upper-layer length and a next header (RFC 8200 8.1). */
function pseudoHeader(packet: Buffer, upperLength: number, nextHeader: number): Buffer {
  const pseudo = Buffer.alloc(40);
  packet.copy(pseudo, 0, 8, 40);
  pseudo.writeUInt32BE(upperLength, 32);
  pseudo[39] = nextHeader;
  return pseudo;
}

/** The checksum the upper layer at byte 40 should carry at `field` (from byte 40), its own field taken as zero. */
function upperChecksum(packet: Buffer, field: number, nextHeader = packet[6]!): number {
  const upper = Buffer.from(packet.subarray(40));
  upper.writeUInt16BE(0, field);
  const whole = Buffer.concat([pseudoHeader(packet, upper.length, nextHeader), upper]);
  return internetChecksum(whole, 0, whole.length);
}

interface Tcp6Spec {
  seq: number;
  payload?: Buffer;
  /** TCP flag bits: ACK 0x10, PSH 0x08, FIN 0x01. */
  flags?: number;
  sourcePort?: number;
  window?: number;
  options?: Buffer;
  /** The first 32 bits: version 6, traffic class, flow label. */
  firstWord?: number;
  hopLimit?: number;
  source?: string;
  extensions?: Parameters<typeof ipv6Packet>[0]['extensions'];
}

/** A TCP/IPv6 packet with a correct checksum. */
function tcp6(spec: Tcp6Spec): Buffer {
  const options = spec.options ?? timestamps;
  const payload = spec.payload ?? Buffer.alloc(0);
  const tcp = Buffer.alloc(20 + options.length + payload.length);
  tcp.writeUInt16BE(spec.sourcePort ?? 40000, 0);
  tcp.writeUInt16BE(5201, 2);
  tcp.writeUInt32BE(spec.seq >>> 0, 4);
  tcp.writeUInt32BE(1, 8);
  tcp[12] = ((20 + options.length) / 4) << 4;
  tcp[13] = spec.flags ?? 0x10;
  tcp.writeUInt16BE(spec.window ?? 502, 14);
  options.copy(tcp, 20);
  payload.copy(tcp, 20 + options.length);
  const packet = ipv6Packet({ source: spec.source ?? SOURCE, destination: DESTINATION, protocol: PROTO_TCP, upper: tcp, extensions: spec.extensions });
  if (spec.firstWord !== undefined) packet.writeUInt32BE(spec.firstWord >>> 0, 0);
  if (spec.hopLimit !== undefined) packet[7] = spec.hopLimit;
  if (!spec.extensions?.length) packet.writeUInt16BE(upperChecksum(packet, 16), 56);
  return packet;
}

/** A super-packet as the kernel reads it out: the TCP checksum field seeded with the pseudo-header sum. */
function superPacket(payload: Buffer, flags = 0x18): Buffer {
  const packet = tcp6({ seq: 1000, flags, payload });
  const pseudo = pseudoHeader(packet, packet.length - 40, PROTO_TCP);
  packet.writeUInt16BE(~internetChecksum(pseudo, 0, pseudo.length) & 0xffff, 56);
  return packet;
}

const tcpv6Frame = (packet: Buffer, mss: number, gsoType = GSO_TCPV6) =>
  vnetFrame({ flags: NEEDS_CSUM, gsoType, hdrLen: HEADERS, gsoSize: mss, csumStart: 40, csumOffset: 16 }, packet);

test('a TCPv6 super-packet is cut into MSS-sized segments with correct payload lengths and checksums', () => {
  const payload = Buffer.from(Array.from({ length: 10_000 }, (_, i) => i % 251));
  const mss = 1328;
  const original = superPacket(payload);
  const segments = segmentFrame(tcpv6Frame(original, mss), 1400)!;
  assert.equal(segments.length, Math.ceil(payload.length / mss));
  segments.forEach((segment, i) => {
    const chunk = Math.min(mss, payload.length - i * mss);
    assert.equal(segment.length, HEADERS + chunk);
    assert.equal(segment.readUInt16BE(4), segment.length - 40, 'IPv6 payload length');
    assert.deepEqual(segment.subarray(0, 4), original.subarray(0, 4), 'version, traffic class and flow label kept');
    assert.deepEqual(segment.subarray(6, 40), original.subarray(6, 40), 'next header, hop limit and addresses kept');
    assert.equal(segment.readUInt32BE(44), 1000 + i * mss, 'sequence number');
    assert.equal(segment[53], i === segments.length - 1 ? 0x18 : 0x10, 'PSH only on the last');
    assert.deepEqual(segment.subarray(60, HEADERS), timestamps, 'options copied');
    assert.equal(segment.readUInt16BE(56), upperChecksum(segment, 16), `segment ${i}: TCP checksum`);
  });
  assert.deepEqual(Buffer.concat(segments.map((s) => s.subarray(HEADERS))), payload);
});

test('an ECN TCPv6 super-packet keeps CWR on its first segment only', () => {
  const frame = tcpv6Frame(superPacket(Buffer.alloc(4000, 3), 0x10 | TCP_CWR), 1328, GSO_TCPV6 | GSO_ECN);
  const segments = segmentFrame(frame, 1400)!;
  assert.deepEqual(segments.map((s) => s[53]! & TCP_CWR), [TCP_CWR, 0, 0, 0]);
  segments.forEach((segment, i) => assert.equal(segment.readUInt16BE(56), upperChecksum(segment, 16), `segment ${i}: TCP checksum`));
});

test('a whole IPv6 packet with a partial checksum gets it completed; one that sums to zero is sent as 0xffff', () => {
  const seeded = (packet: Buffer) => {
    const copy = Buffer.from(packet);
    const pseudo = pseudoHeader(copy, copy.length - 40, copy[6]!);
    copy.writeUInt16BE(~internetChecksum(pseudo, 0, pseudo.length) & 0xffff, 46);
    return vnetFrame({ flags: NEEDS_CSUM, csumStart: 40, csumOffset: 6 }, copy);
  };
  const packet = udp6(SOURCE, DESTINATION, Buffer.alloc(30, 9));
  const [out] = segmentFrame(seeded(packet), 1400)!;
  assert.equal(out!.readUInt16BE(46), upperChecksum(packet, 6));
  assert.notEqual(out!.readUInt16BE(46), 0);

  // Two body bytes chosen so that the sum is all ones: the complement would be 0, which means "no checksum".
  const zeroing = udp6(SOURCE, DESTINATION, Buffer.alloc(30, 9));
  zeroing.writeUInt16BE(0, 48);
  zeroing.writeUInt16BE(upperChecksum(zeroing, 6), 48);
  assert.equal(upperChecksum(zeroing, 6), 0, 'the crafted datagram sums to zero');
  const [completed] = segmentFrame(seeded(zeroing), 1400)!;
  assert.equal(completed!.readUInt16BE(46), 0xffff);
});

test('TCPv6 frames the cutter cannot honour are refused, not guessed at', () => {
  const tcp = superPacket(Buffer.alloc(3000));
  // What the kernel hands over for a socket with IPV6_HOPOPTS: TCP behind a Hop-by-Hop header.
  const behindExtension = tcp6({ seq: 1, payload: Buffer.alloc(3000), extensions: [optionsHeader(EXT_HOP_BY_HOP)] });
  assert.equal(behindExtension[6], EXT_HOP_BY_HOP);
  assert.equal(segmentFrame(tcpv6Frame(behindExtension, 1328), 1400), null, 'an extension header before TCP');
  assert.equal(segmentFrame(tcpv6Frame(udp6(SOURCE, DESTINATION, Buffer.alloc(3000)), 1328), 1400), null, 'not TCP');
  assert.equal(segmentFrame(tcpv6Frame(tcp, 1328, GSO_TCPV4), 1400), null, 'TCPv4 announced, IPv6 inside');
  const tcp4 = tcpPacket({ source: '10.244.1.2', destination: '10.244.2.2', seq: 1, payload: Buffer.alloc(3000) });
  assert.equal(segmentFrame(tcpv6Frame(tcp4, 1328), 1400), null, 'TCPv6 announced, IPv4 inside');
  assert.equal(segmentFrame(tcpv6Frame(tcp.subarray(0, 50), 1328), 1400), null, 'cut short inside the TCP header');
  assert.equal(segmentFrame(tcpv6Frame(tcp, 0), 1400), null, 'gso_size 0');
  assert.equal(segmentFrame(tcpv6Frame(tcp, 1340), 1400), null, 'segments larger than a slot');
});

const flow = (seq: number, payload: number, extra: Partial<Tcp6Spec> = {}) => tcp6({ seq, payload: Buffer.alloc(payload, seq & 255), ...extra });

test('consecutive IPv6 segments of one flow are joined into one TCPv6 GSO frame, which cuts back into them', () => {
  const packets = Array.from({ length: 10 }, (_, i) => flow(i * 1000, 1000, { flags: i === 9 ? 0x18 : 0x10 }));
  const { buffer, offsets, lengths, count } = arena(packets.map((p) => Buffer.from(p)));
  const frames = joinPackets(buffer, offsets, lengths, count);
  assert.equal(frames.length, 1);
  const frame = frames[0]!;
  assert.equal(frame[0], NEEDS_CSUM);
  assert.equal(frame[1], GSO_TCPV6);
  assert.equal(frame.readUInt16LE(2), HEADERS, 'hdr_len');
  assert.equal(frame.readUInt16LE(4), 1000, 'gso_size is the MSS');
  assert.equal(frame.readUInt16LE(6), 40, 'csum_start: the TCP header');
  assert.equal(frame.readUInt16LE(8), 16, 'csum_offset: the TCP checksum');
  const joined = frame.subarray(10);
  assert.equal(joined.length, HEADERS + 10_000);
  assert.equal(joined.readUInt16BE(4), joined.length - 40, 'IPv6 payload length of the whole');
  assert.equal(joined[53], 0x18, 'the last segment\'s PSH carried');
  const pseudo = pseudoHeader(joined, joined.length - 40, PROTO_TCP);
  assert.equal(joined.readUInt16BE(56), ~internetChecksum(pseudo, 0, pseudo.length) & 0xffff, 'checksum field seeded with the pseudo-header sum');
  assert.deepEqual(segmentFrame(frame, 1400), packets);
});

test('IPv6 segments are not joined across flows, gaps, header differences, flags or extension headers', () => {
  const cases: Record<string, Buffer[]> = {
    'another port': [flow(0, 1000), flow(1000, 1000, { sourcePort: 40001 })],
    'another source': [flow(0, 1000), flow(1000, 1000, { source: 'fd00:10:0:1::3' })],
    'a sequence gap': [flow(0, 1000), flow(2000, 1000)],
    'another flow label': [flow(0, 1000), flow(1000, 1000, { firstWord: 0x6000beee })],
    'another traffic class': [flow(0, 1000), flow(1000, 1000, { firstWord: 0x6010beef })],
    'another hop limit': [flow(0, 1000), flow(1000, 1000, { hopLimit: 63 })],
    'an extension header': [flow(0, 1000), flow(1000, 1000, { extensions: [optionsHeader(EXT_HOP_BY_HOP)] })],
    FIN: [flow(0, 1000), flow(1000, 1000, { flags: 0x11 })],
    'PSH on the first': [flow(0, 1000, { flags: 0x18 }), flow(1000, 1000)],
    'different options': [flow(0, 1000), flow(1000, 1000, { options: Buffer.from([1, 1, 8, 10, 0, 0, 0, 8, 0, 0, 0, 9]) })],
    'another window': [flow(0, 1000), flow(1000, 1000, { window: 600 })],
    'a larger second segment': [flow(0, 1000), flow(1000, 1200)],
  };
  assertNotJoined(cases);
});

test('an IPv4 run and an IPv6 run in one batch are joined apart, each with its own GSO type', () => {
  const v4 = Array.from({ length: 3 }, (_, i) =>
    tcpPacket({ source: '10.244.2.2', destination: '10.244.1.2', seq: i * 1000, options: timestamps, payload: Buffer.alloc(1000, i), id: 100 + i }),
  );
  const v6 = Array.from({ length: 3 }, (_, i) => flow(i * 1000, 1000));
  const packets = [...v4, ...v6];
  const { buffer, offsets, lengths, count } = arena(packets.map((p) => Buffer.from(p)));
  const frames = joinPackets(buffer, offsets, lengths, count);
  assert.deepEqual(frames.map((f) => f[1]), [GSO_TCPV4, GSO_TCPV6]);
  assert.deepEqual(frames.flatMap((f) => segmentFrame(f, 1400)), packets);
});

test('property: whatever IPv4 and IPv6 segments are joined, cutting the frames gives back the original packets', () => {
  const step = fc.record({
    flow: fc.integer({ min: 0, max: 2 }),
    payload: fc.constantFrom(0, 200, 1000, 1000, 1000),
    gap: fc.boolean(),
    push: fc.boolean(),
  });
  fc.assert(
    fc.property(fc.array(step, { minLength: 1, maxLength: 80 }), (steps) => {
      const next = [0, 0, 0];
      const ids = [0, 0, 0];
      const packets = steps.map((s) => {
        if (s.gap) next[s.flow]! += 7;
        const flags = s.push ? 0x18 : 0x10;
        const payload = Buffer.alloc(s.payload, 7);
        // Flows 0 and 1 are IPv6 (two ports), flow 2 is IPv4.
        const packet =
          s.flow === 2
            ? tcpPacket({ source: '10.244.2.2', destination: '10.244.1.2', seq: next[2]!, flags, options: timestamps, payload, id: ids[2]!++ })
            : tcp6({ sourcePort: 40000 + s.flow, seq: next[s.flow]!, flags, payload });
        next[s.flow]! += s.payload;
        return packet;
      });
      const { buffer, offsets, lengths, count } = arena(packets.map((p) => Buffer.from(p)));
      const frames = joinPackets(buffer, offsets, lengths, count);
      const cut = frames.flatMap((frame) => segmentFrame(frame, 1400) ?? assert.fail('the cutter refused a joined frame'));
      assert.deepEqual(cut, packets);
    }),
    { numRuns: 500 },
  );
});
