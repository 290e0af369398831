// The TUN offload path without a device: cutting TCP super-packets the
// kernel hands over, and joining segments before writing them back.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import fc from 'fast-check';
import { loadNative } from '../../daemon/native.js';
import { internetChecksum } from '../../daemon/dataplane/ipv4-packet.js';
import { arena, ipv4Packet, tcpPacket, transportChecksum, vnetFrame } from '../harness/packets.js';
import { assertNotJoined } from './not-joined.js';

const { segmentFrame, joinPackets } = loadNative();
const NEEDS_CSUM = 1;
const GSO_TCPV4 = 1;
const timestamps = Buffer.from([1, 1, 8, 10, 0, 0, 0, 7, 0, 0, 0, 9]);

function assertChecksumsValid(packet: Buffer, what: string): void {
  assert.equal(internetChecksum(packet, 0, 20), 0, `${what}: IP header checksum`);
  assert.equal(packet.readUInt16BE(36), transportChecksum(packet), `${what}: TCP checksum`);
}

/** A super-packet as the kernel reads it out: TCP checksum field seeded with the pseudo-header sum. */
function superPacket(payload: Buffer, flags = 0x18): Buffer {
  const packet = tcpPacket({ source: '10.244.1.2', destination: '10.244.2.2', seq: 1000, flags, options: timestamps, payload, id: 500 });
  const pseudo = Buffer.alloc(12);
  packet.copy(pseudo, 0, 12, 20);
  pseudo[9] = 6;
  pseudo.writeUInt16BE(packet.length - 20, 10);
  packet.writeUInt16BE(~internetChecksum(pseudo, 0, 12) & 0xffff, 36);
  return packet;
}

test('a TCP super-packet is cut into MSS-sized segments with correct headers', () => {
  const payload = Buffer.from(Array.from({ length: 10_000 }, (_, i) => i % 251));
  const mss = 1400;
  const frame = vnetFrame({ flags: NEEDS_CSUM, gsoType: GSO_TCPV4, hdrLen: 52, gsoSize: mss, csumStart: 20, csumOffset: 16 }, superPacket(payload));
  const segments = segmentFrame(frame, 1500)!;
  assert.equal(segments.length, Math.ceil(payload.length / mss));
  segments.forEach((segment, i) => {
    const chunk = Math.min(mss, payload.length - i * mss);
    assert.equal(segment.length, 52 + chunk);
    assert.equal(segment.readUInt16BE(2), segment.length, 'IP total length');
    assert.equal(segment.readUInt16BE(4), 500 + i, 'IP id');
    assert.equal(segment.readUInt32BE(24), 1000 + i * mss, 'sequence number');
    assert.equal(segment[33], i === segments.length - 1 ? 0x18 : 0x10, 'PSH only on the last');
    assert.deepEqual(segment.subarray(40, 52), timestamps, 'options copied');
    assertChecksumsValid(segment, `segment ${i}`);
  });
  assert.deepEqual(Buffer.concat(segments.map((s) => s.subarray(52))), payload);
});

test('a whole packet with a partial checksum gets it completed', () => {
  const udp = Buffer.alloc(8 + 30, 9);
  udp.writeUInt16BE(1000, 0);
  udp.writeUInt16BE(2000, 2);
  udp.writeUInt16BE(udp.length, 4);
  const packet = ipv4Packet({ source: '10.244.1.2', destination: '10.244.2.2', protocol: 17, payload: udp });
  const expected = transportChecksum(packet);
  const pseudo = Buffer.alloc(12);
  packet.copy(pseudo, 0, 12, 20);
  pseudo[9] = 17;
  pseudo.writeUInt16BE(udp.length, 10);
  packet.writeUInt16BE(~internetChecksum(pseudo, 0, 12) & 0xffff, 26);
  const [out] = segmentFrame(vnetFrame({ flags: NEEDS_CSUM, csumStart: 20, csumOffset: 6 }, packet), 1500)!;
  assert.equal(out!.readUInt16BE(26), expected);
});

test('frames the cutter cannot honour are refused, not guessed at', () => {
  const tcp = superPacket(Buffer.alloc(3000));
  assert.equal(segmentFrame(vnetFrame({ gsoType: GSO_TCPV4, gsoSize: 0 }, tcp), 1500), null, 'gso_size 0');
  assert.equal(segmentFrame(vnetFrame({ gsoType: 3, gsoSize: 1400 }, tcp), 1500), null, 'UDP fragmentation offload');
  assert.equal(segmentFrame(vnetFrame({ gsoType: GSO_TCPV4, gsoSize: 1400 }, ipv4Packet({ source: '1.1.1.1', destination: '2.2.2.2', payload: Buffer.alloc(3000) })), 1500), null, 'not TCP');
  assert.equal(segmentFrame(vnetFrame({ gsoType: GSO_TCPV4, gsoSize: 1480 }, tcp), 1500), null, 'segments larger than a slot');
  assert.equal(segmentFrame(vnetFrame({ flags: NEEDS_CSUM, csumStart: 3050, csumOffset: 6 }, tcp), 3100), null, 'checksum field past the end');
});

const flow = (seq: number, payload: number, extra: Partial<Parameters<typeof tcpPacket>[0]> = {}) =>
  tcpPacket({ source: '10.244.2.2', destination: '10.244.1.2', seq, options: timestamps, payload: Buffer.alloc(payload, seq & 255), id: 100 + Math.floor(seq / 1000), ...extra });

test('consecutive segments of one flow are joined into one GSO frame, which cuts back into them', () => {
  const packets = Array.from({ length: 10 }, (_, i) => flow(i * 1000, 1000, { flags: i === 9 ? 0x18 : 0x10, id: 100 + i }));
  const { buffer, offsets, lengths, count } = arena(packets.map((p) => Buffer.from(p)));
  const frames = joinPackets(buffer, offsets, lengths, count);
  assert.equal(frames.length, 1);
  const frame = frames[0]!;
  assert.equal(frame[1], GSO_TCPV4);
  assert.equal(frame.readUInt16LE(4), 1000, 'gso_size is the MSS');
  assert.equal(frame.readUInt16LE(2), 52, 'hdr_len');
  assert.equal(frame.length - 10, 52 + 10_000);
  assert.deepEqual(segmentFrame(frame, 1500), packets);
});

test('segments are not joined across flows, gaps, flags, option changes, pure ACKs or a larger segment', () => {
  const cases: Record<string, Buffer[]> = {
    'another flow': [flow(0, 1000), flow(1000, 1000, { sourcePort: 40001 })],
    'a sequence gap': [flow(0, 1000), flow(2000, 1000)],
    FIN: [flow(0, 1000), flow(1000, 1000, { flags: 0x11 })],
    'PSH on the first': [flow(0, 1000, { flags: 0x18 }), flow(1000, 1000)],
    'different options': [flow(0, 1000), flow(1000, 1000, { options: Buffer.from([1, 1, 8, 10, 0, 0, 0, 8, 0, 0, 0, 9]) })],
    'a pure ACK': [flow(0, 0), flow(0, 1000)],
    'a larger second segment': [flow(0, 1000), flow(1000, 1200)],
    'another window': [flow(0, 1000), flow(1000, 1000, { window: 600 })],
    'IPv4 ids out of sequence': [flow(0, 1000, { id: 7 }), flow(1000, 1000, { id: 9 })],
    'one IPv4 id for both, no DF': [flow(0, 1000, { id: 7, dontFragment: false }), flow(1000, 1000, { id: 7, dontFragment: false })],
  };
  assertNotJoined(cases);
});

test('property: whatever is joined, cutting the frames gives back the original packets', () => {
  const step = fc.record({
    flow: fc.integer({ min: 0, max: 1 }),
    payload: fc.constantFrom(0, 200, 1000, 1000, 1000),
    gap: fc.boolean(),
    push: fc.boolean(),
  });
  fc.assert(
    fc.property(fc.array(step, { minLength: 1, maxLength: 80 }), (steps) => {
      const next = [0, 0];
      const ids = [0, 0];
      const packets = steps.map((s) => {
        if (s.gap) next[s.flow]! += 7;
        const packet = tcpPacket({
          source: '10.244.2.2', destination: '10.244.1.2', sourcePort: 40000 + s.flow, seq: next[s.flow]!,
          flags: s.push ? 0x18 : 0x10, options: timestamps, payload: Buffer.alloc(s.payload, 7), id: ids[s.flow]!++,
        });
        next[s.flow]! += s.payload;
        return packet;
      });
      const { buffer, offsets, lengths, count } = arena(packets.map((p) => Buffer.from(p)));
      const frames = joinPackets(buffer, offsets, lengths, count);
      const cut = frames.flatMap((frame) => segmentFrame(frame, 1500) ?? assert.fail('the cutter refused a joined frame'));
      // The joiner keeps IP ids only as the first id plus the position, which these flows have.
      assert.deepEqual(cut, packets);
    }),
    { numRuns: 500 },
  );
});
