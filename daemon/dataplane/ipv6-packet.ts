/**
 * IPv6 header checks and field reads over (buffer, offset, length), the
 * twin of ipv4-packet.ts: the hot path never slices or allocates, and every
 * check is a plain function that runs without root in the unit tests.
 */
import type { MalformedReason } from './ipv4-packet.js';
import { readIPv6 } from '../net/ipv6.js';
import type { IPv6Address } from '../net/ipv6.js';

export const IPV6_HEADER = 40;
export const IPV6_SOURCE_OFFSET = 8;
export const IPV6_DESTINATION_OFFSET = 24;
export const PROTO_ICMPV6 = 58;

const NEXT_HOP_BY_HOP = 0;
const NEXT_ROUTING = 43;
const NEXT_FRAGMENT = 44;
const NEXT_AUTHENTICATION = 51;
const NEXT_DESTINATION_OPTIONS = 60;

/**
 * The longest extension-header chain walked. RFC 8200 expects at most one of
 * each kind (Destination Options twice), six in all; eight leaves room for a
 * repeat and still bounds the work a crafted packet can cost.
 */
export const MAX_EXTENSION_HEADERS = 8;

/**
 * Why a version-6 packet is not a well-formed IPv6 packet. 'truncated' is
 * shared with IPv4; the others are IPv6's own.
 */
export type IPv6MalformedReason = 'truncated' | 'bad-payload-length' | 'bad-extension-header';

/**
 * Why a packet the data plane read is malformed, whichever its family: IPv4's
 * reasons keep their names. The data plane picks the family by the version
 * nibble, so it never finds a packet "not IPv6"; a version that is neither
 * 4 nor 6 is 'not-ipv4'.
 */
export type PacketMalformedReason = MalformedReason | IPv6MalformedReason;

/** Where the upper-layer header starts; filled in by checkIPv6. */
export interface UpperLayer {
  /** The Next Header value that ends the chain: 6 TCP, 17 UDP, 58 ICMPv6, 59 none, 50 ESP... */
  protocol: number;
  /** Bytes from the start of the IPv6 header to the upper-layer header. */
  headerLength: number;
  /**
   * A fragment other than the first: the bytes at headerLength continue the
   * upper layer's payload, they are not its header.
   */
  laterFragment: boolean;
}

/** Scratch for callers that only want the verdict; JS is single-threaded, so sharing it is safe. */
const discarded: UpperLayer = { protocol: 0, headerLength: 0, laterFragment: false };

/**
 * Checks what the data plane relies on: version 6, a 40-byte header, a
 * payload length that fits in what was read, and an extension-header chain
 * that ends inside the packet within MAX_EXTENSION_HEADERS headers. On
 * success fills `upper`. Trailing bytes past the payload length are allowed,
 * as for IPv4; the chain is never read past the payload length.
 *
 * A payload length of 0 is refused: it means a jumbogram (RFC 2675), which a
 * UDP datagram of at most 65,535 bytes cannot carry, or an empty packet,
 * which carries nothing.
 */
export function checkIPv6(buf: Buffer, offset: number, length: number, upper: UpperLayer = discarded): IPv6MalformedReason | 'not-ipv6' | null {
  if (length < 1) return 'truncated';
  if (buf[offset]! >> 4 !== 6) return 'not-ipv6';
  return checkIPv6Header(buf, offset, length, upper);
}

/**
 * checkIPv6 for a packet whose version nibble has been read as 6, as the
 * data plane reads it to pick the family: the length fields and the
 * extension-header chain.
 */
export function checkIPv6Header(buf: Buffer, offset: number, length: number, upper: UpperLayer = discarded): IPv6MalformedReason | null {
  if (length < IPV6_HEADER) return 'truncated';
  const payload = payloadLength(buf, offset);
  if (payload === 0) return 'bad-payload-length';
  if (IPV6_HEADER + payload > length) return 'truncated';
  return walkExtensionHeaders(buf, offset, IPV6_HEADER + payload, upper);
}

/**
 * Follows Next Header from the fixed header through Hop-by-Hop, Routing,
 * Fragment, Destination Options and AH to the first other value, within
 * `packetLength` bytes of `offset`. Hop-by-Hop is only valid first
 * (RFC 8200 section 4.1), and a first fragment must hold the whole chain
 * (RFC 7112).
 */
function walkExtensionHeaders(buf: Buffer, offset: number, packetLength: number, upper: UpperLayer): IPv6MalformedReason | null {
  let next = buf[offset + 6]!;
  let position = IPV6_HEADER;
  for (let count = 0; ; count++) {
    let size: number;
    switch (next) {
      case NEXT_HOP_BY_HOP:
      case NEXT_ROUTING:
      case NEXT_DESTINATION_OPTIONS:
        if (next === NEXT_HOP_BY_HOP && count > 0) return 'bad-extension-header';
        if (position + 2 > packetLength) return 'bad-extension-header';
        size = (buf[offset + position + 1]! + 1) * 8;
        break;
      case NEXT_AUTHENTICATION:
        // RFC 4302: AH counts its length in 4-byte words, minus 2.
        if (position + 2 > packetLength) return 'bad-extension-header';
        size = (buf[offset + position + 1]! + 2) * 4;
        break;
      case NEXT_FRAGMENT:
        size = 8;
        break;
      default:
        upper.protocol = next;
        upper.headerLength = position;
        upper.laterFragment = false;
        return null;
    }
    if (count === MAX_EXTENSION_HEADERS) return 'bad-extension-header';
    if (position + size > packetLength) return 'bad-extension-header';
    const following = buf[offset + position]!;
    if (next === NEXT_FRAGMENT && (buf.readUInt16BE(offset + position + 2) & 0xfff8) !== 0) {
      upper.protocol = following;
      upper.headerLength = position + size;
      upper.laterFragment = true;
      return null;
    }
    next = following;
    position += size;
  }
}

export function payloadLength(buf: Buffer, offset: number): number {
  return buf.readUInt16BE(offset + 4);
}

export function sourceAddress6(buf: Buffer, offset: number): IPv6Address {
  return readIPv6(buf, offset + IPV6_SOURCE_OFFSET);
}

export function destinationAddress6(buf: Buffer, offset: number): IPv6Address {
  return readIPv6(buf, offset + IPV6_DESTINATION_OFFSET);
}

/**
 * Whether the address at `buf[at, at+16)` must not cross the overlay, which
 * carries unicast between two nodes that each route their own pods:
 * - multicast (ff00::/8): delivery needs group membership and copies to every
 *   member, which a point-to-point UDP tunnel has neither of (IPv4's 224/4
 *   is dropped for the same reason);
 * - unspecified (::): never a destination, and as a source it only appears
 *   before a host has an address (duplicate address detection), on its link;
 * - loopback (::1): RFC 4291 2.5.3, never sent outside a single node;
 * - link-local (fe80::/10): RFC 4291 2.5.6, routers must not forward it off
 *   its link, and each node's pod bridge is its own link.
 * Reads in place, so a header is checked without allocating.
 */
export function isNonUnicast6(buf: Buffer, at: number): boolean {
  const first = buf.readUInt32BE(at);
  if (first >>> 24 === 0xff) return true;
  if (first >>> 22 === 0xfe80 >>> 6) return true;
  if (first !== 0 || buf.readUInt32BE(at + 4) !== 0 || buf.readUInt32BE(at + 8) !== 0) return false;
  const last = buf.readUInt32BE(at + 12);
  return last === 0 || last === 1;
}
