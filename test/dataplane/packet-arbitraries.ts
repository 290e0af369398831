// Random packets for the property tests of both directions.
import fc from 'fast-check';
import { ipv4Packet } from '../harness/packets.js';
import { authenticationHeader, EXT_DESTINATION_OPTIONS, EXT_HOP_BY_HOP, EXT_ROUTING, fragmentHeader, ipv6Packet, optionsHeader } from './ipv6-packets.js';
import { podA4, podA6, podB4, podB6 } from './memory-plane.js';

/** Near-valid packets: a valid one with a few bytes of the header overwritten and a random length. */
export const nearValid = fc
  .record({
    src: fc.constantFrom('10.244.2.5', '10.244.3.5', '10.244.1.5', '10.9.9.9'),
    dst: fc.constantFrom('10.244.1.7', '10.244.2.7', '8.8.8.8', '10.244.1.255'),
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

export const anyBytes = fc.uint8Array({ maxLength: 80 }).map((b) => Buffer.from(b));

/** Extension headers of any kind the walk knows, Fragment at a random offset: chains to and past the bound. */
const extensionChain = fc.array(
  fc.oneof(
    fc.constantFrom(EXT_HOP_BY_HOP, EXT_ROUTING, EXT_DESTINATION_OPTIONS).map((kind) => optionsHeader(kind)),
    fc.tuple(fc.nat(3), fc.boolean()).map(([offset, more]) => fragmentHeader(offset, more)),
    fc.constantFrom(0, 1, 4).map(authenticationHeader),
  ),
  { maxLength: 10 },
);

/**
 * Near-valid IPv6 packets: sources and destinations in and out of the test
 * nodes' fd00:10:244:N::/64 subnets (and multicast, link-local), extension
 * chains, a few bytes of the headers overwritten, cut short or padded.
 */
export const nearValid6 = fc
  .record({
    src: fc.constantFrom('fd00:10:244:2::5', 'fd00:10:244:3::5', 'fd00:10:244:4::5', 'fd00:10:244:1::5', 'fd00:99::9', 'fe80::5'),
    dst: fc.constantFrom('fd00:10:244:1::7', 'fd00:10:244:1::', 'fd00:10:244:2::7', 'ff02::1', 'fe80::1', '2001:db8::1'),
    extensions: extensionChain,
    upper: fc.uint8Array({ maxLength: 64 }),
    edits: fc.array(fc.tuple(fc.integer({ min: 0, max: 55 }), fc.integer({ min: 0, max: 255 })), { maxLength: 3 }),
    cut: fc.integer({ min: -8, max: 8 }),
  })
  .map(({ src, dst, extensions, upper, edits, cut }) => {
    const packet = ipv6Packet({ source: src, destination: dst, extensions, upper: Buffer.from(upper) });
    for (const [at, value] of edits) if (at < packet.length) packet[at] = value;
    // Cut short, or with trailing bytes past the payload length (which are not the packet's).
    return cut > 0 ? Buffer.concat([packet, Buffer.alloc(cut, 0xab)]) : packet.subarray(0, Math.max(0, packet.length + cut));
  });

/**
 * What a pod of the memory pair might send into its TUN: IPv6 packets to and from the pods and
 * beyond (no route, multicast, link-local), cut short or with extension chains past the bound;
 * IPv4 packets with DF set, up to the TUN's 1500 bytes; and random bytes.
 */
export const podTraffic = fc.oneof(
  fc
    .record({
      src: fc.constantFrom(podA6, podB6, 'fd00:10:244:9::4', 'ff02::1', 'fe80::1', '::1', '2001:db8::1'),
      dst: fc.constantFrom(podA6, podB6, 'fd00:10:244:9::4', 'ff02::1', 'fe80::1', '::1', '2001:db8::1'),
      size: fc.integer({ min: 0, max: 1500 }),
      headers: fc.nat(10),
      cut: fc.integer({ min: -50, max: 0 }),
    })
    .map(({ src, dst, size, headers, cut }) => {
      const p = ipv6Packet({ source: src, destination: dst, extensions: Array.from({ length: headers }, () => optionsHeader(EXT_DESTINATION_OPTIONS)), upper: Buffer.alloc(size, 5) });
      return p.subarray(0, Math.max(0, Math.min(p.length + cut, 1500)));
    }),
  fc
    .record({ src: fc.constantFrom(podA4, podB4, '10.244.3.4', '224.0.0.5'), dst: fc.constantFrom(podA4, podB4, '10.244.3.4', '224.0.0.5'), size: fc.integer({ min: 0, max: 1480 }) })
    .map(({ src, dst, size }) => ipv4Packet({ source: src, destination: dst, dontFragment: true, payload: Buffer.alloc(size, 4) })),
  fc.uint8Array({ maxLength: 60 }).map((bytes) => Buffer.from(bytes)),
);
