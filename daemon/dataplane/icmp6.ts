/**
 * ICMPv6 errors the data plane writes back into the TUN (RFC 4443): Packet
 * Too Big, without which IPv6 path MTU discovery breaks because nothing on
 * the path fragments, and Destination Unreachable for a destination that
 * has no lease. The IPv4 twin is icmp.ts, whose RateLimiter bounds both.
 *
 * Addresses are the 16 network-order bytes, read straight from the packet.
 */
import { internetChecksum } from './ipv4-packet.js';
import { checkIPv6, IPV6_DESTINATION_OFFSET as DESTINATION_AT, IPV6_HEADER, IPV6_SOURCE_OFFSET as SOURCE_AT, PROTO_ICMPV6, type UpperLayer } from './ipv6-packet.js';

export const ICMP6_DEST_UNREACHABLE = 1;
export const ICMP6_PACKET_TOO_BIG = 2;
export const CODE_NO_ROUTE = 0;

/**
 * RFC 4443 2.4(c): an error quotes as much of the offending packet as fits
 * without the reply exceeding the IPv6 minimum MTU.
 */
export const ICMP6_ERROR_MAX = 1280;

const ICMP6_HEADER = 8;
// As the kernel sends its own errors (the route's default hop limit); 255 only
// matters to Neighbor Discovery, which checks that a message never crossed a router.
const HOP_LIMIT = 64;

// Types below 128 are errors (RFC 4443 2.1); a redirect must not be answered either (2.4(e.2)).
const INFORMATIONAL_TYPES_FROM = 128;
const ICMP6_REDIRECT = 137;

/** Scratch for the header walk; JS is single-threaded, so sharing it is safe. */
const upper: UpperLayer = { protocol: 0, headerLength: 0, laterFragment: false };

/**
 * Whether RFC 4443 2.4(e) allows an ICMPv6 error of `errorType` in reply to
 * the packet at buf[offset..offset+length]. Never for an ICMPv6 error or
 * redirect, a source that names no single node (unspecified or multicast),
 * or a multicast destination — except Packet Too Big, which multicast path
 * MTU discovery needs (2.4(e.3)). A packet whose upper layer the bounded
 * walk cannot see (a later fragment, a cut or overlong header chain) could
 * be an ICMPv6 error, so it gets none.
 */
export function mayAnswerWithError6(buf: Buffer, offset: number, length: number, errorType: number): boolean {
  if (checkIPv6(buf, offset, length, upper) !== null || upper.laterFragment) return false;
  const source = offset + SOURCE_AT;
  if (isUnspecified(buf, source) || isMulticast(buf, source)) return false;
  if (isMulticast(buf, offset + DESTINATION_AT) && errorType !== ICMP6_PACKET_TOO_BIG) return false;
  if (upper.protocol !== PROTO_ICMPV6) return true;
  const typeAt = offset + upper.headerLength;
  if (typeAt >= offset + length) return false;
  const type = buf[typeAt]!;
  return type >= INFORMATIONAL_TYPES_FROM && type !== ICMP6_REDIRECT;
}

/**
 * Writes a Packet Too Big for the packet at packet[offset..offset+length]
 * into out[outOffset..] (which needs ICMP6_ERROR_MAX bytes) and returns its
 * length. `mtu` is the largest packet the path takes (RFC 8201 ignores one
 * below 1280); `source` is this node's overlay address, 16 bytes.
 */
export function writePacketTooBig(
  out: Buffer,
  outOffset: number,
  packet: Buffer,
  offset: number,
  length: number,
  mtu: number,
  source: Uint8Array,
): number {
  return writeError(out, outOffset, packet, offset, length, ICMP6_PACKET_TOO_BIG, 0, mtu, source);
}

/** As writePacketTooBig, for a Destination Unreachable with `code` (CODE_NO_ROUTE: no lease). */
export function writeDestinationUnreachable6(
  out: Buffer,
  outOffset: number,
  packet: Buffer,
  offset: number,
  length: number,
  code: number,
  source: Uint8Array,
): number {
  return writeError(out, outOffset, packet, offset, length, ICMP6_DEST_UNREACHABLE, code, 0, source);
}

function writeError(
  out: Buffer,
  outOffset: number,
  packet: Buffer,
  offset: number,
  length: number,
  type: number,
  code: number,
  word: number,
  source: Uint8Array,
): number {
  const quoted = Math.min(length, ICMP6_ERROR_MAX - IPV6_HEADER - ICMP6_HEADER);
  const icmpLength = ICMP6_HEADER + quoted;

  out.writeUInt32BE(0x60000000, outOffset); // version 6, traffic class 0, flow label 0
  out.writeUInt16BE(icmpLength, outOffset + 4);
  out[outOffset + 6] = PROTO_ICMPV6;
  out[outOffset + 7] = HOP_LIMIT;
  out.set(source, outOffset + SOURCE_AT);
  packet.copy(out, outOffset + DESTINATION_AT, offset + SOURCE_AT, offset + SOURCE_AT + 16);

  const icmp = outOffset + IPV6_HEADER;
  out[icmp] = type;
  out[icmp + 1] = code;
  out.writeUInt16BE(0, icmp + 2);
  out.writeUInt32BE(word >>> 0, icmp + 4);
  packet.copy(out, icmp + ICMP6_HEADER, offset, offset + quoted);
  out.writeUInt16BE(checksum(out, outOffset, icmpLength), icmp + 2);
  return IPV6_HEADER + icmpLength;
}

/**
 * RFC 8200 8.1: the sum covers a pseudo-header of both addresses, the
 * upper-layer length and next header 58. The addresses already sit right in
 * front of the message, so one pass covers them; the other two fields are
 * added to the uncomplemented sum.
 */
function checksum(out: Buffer, ipOffset: number, icmpLength: number): number {
  let sum = ~internetChecksum(out, ipOffset + SOURCE_AT, 32 + icmpLength) & 0xffff;
  sum += icmpLength + PROTO_ICMPV6;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}

function isUnspecified(buf: Buffer, at: number): boolean {
  for (let i = 0; i < 16; i++) if (buf[at + i] !== 0) return false;
  return true;
}

function isMulticast(buf: Buffer, at: number): boolean {
  return buf[at] === 0xff;
}
