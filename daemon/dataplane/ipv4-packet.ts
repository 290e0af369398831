/**
 * IPv4 header checks and field reads over (buffer, offset, length), so the
 * hot path never slices or allocates. Every check here is a plain function
 * and runs without root in the unit tests.
 */

export const IPV4_MIN_HEADER = 20;
export const PROTO_ICMP = 1;

/** Why a packet is not a well-formed IPv4 packet; `null` means it is. */
export type MalformedReason = 'not-ipv4' | 'truncated' | 'bad-header-length' | 'bad-total-length';

/**
 * Checks what the data plane relies on: version 4, a header length of at
 * least 20 bytes that fits, and a total length that covers the header and
 * fits in what was read. Trailing bytes past the total length (Ethernet
 * padding, say) are allowed; the total length is the packet.
 */
export function checkIPv4(buf: Buffer, offset: number, length: number): MalformedReason | null {
  if (length < 1) return 'truncated';
  const versionIhl = buf[offset]!;
  if (versionIhl >> 4 !== 4) return 'not-ipv4';
  if (length < IPV4_MIN_HEADER) return 'truncated';
  const headerLength = (versionIhl & 0x0f) << 2;
  if (headerLength < IPV4_MIN_HEADER) return 'bad-header-length';
  const totalLength = (buf[offset + 2]! << 8) | buf[offset + 3]!;
  if (totalLength < headerLength) return 'bad-total-length';
  if (totalLength > length) return 'truncated';
  return null;
}

/**
 * Why a node that carries no IPv4 drops the packet at buf[offset, offset+length):
 * one whose version nibble says IPv4 for that, before its header is read (as
 * IPv6 at a node without IPv6); anything else as checkIPv4 would.
 */
export function refuseWithoutIPv4(buf: Buffer, offset: number, length: number): 'ipv4-disabled' | 'not-ipv4' | 'truncated' {
  if (length < 1) return 'truncated';
  return buf[offset]! >> 4 === 4 ? 'ipv4-disabled' : 'not-ipv4';
}

export function headerLength(buf: Buffer, offset: number): number {
  return (buf[offset]! & 0x0f) << 2;
}

export function totalLength(buf: Buffer, offset: number): number {
  return (buf[offset + 2]! << 8) | buf[offset + 3]!;
}

export function protocol(buf: Buffer, offset: number): number {
  return buf[offset + 9]!;
}

export function sourceAddress(buf: Buffer, offset: number): number {
  return buf.readUInt32BE(offset + 12);
}

export function destinationAddress(buf: Buffer, offset: number): number {
  return buf.readUInt32BE(offset + 16);
}

export function dontFragment(buf: Buffer, offset: number): boolean {
  return (buf[offset + 6]! & 0x40) !== 0;
}

/** True for any fragment but the first: they carry no transport header. */
export function isLaterFragment(buf: Buffer, offset: number): boolean {
  return (((buf[offset + 6]! & 0x1f) << 8) | buf[offset + 7]!) !== 0;
}

/** Multicast (224.0.0.0/4), limited broadcast and "this network" (0.0.0.0/8) never cross the overlay. */
export function isNonUnicast(address: number): boolean {
  const first = address >>> 24;
  return first >= 224 || first === 0;
}

/**
 * The directed broadcast of a subnet of this length that holds `address`:
 * all host bits set. /31 and /32 have none (RFC 3021). The kernel routes a
 * peer subnet's broadcast into the TUN as unicast, but the node that leases
 * the subnet takes it as a broadcast on its pod bridge.
 */
export function isSubnetBroadcast(address: number, prefixLength: number): boolean {
  if (prefixLength >= 31) return false;
  const hostMask = 0xffffffff >>> prefixLength;
  return ((address & hostMask) >>> 0) === hostMask;
}

/** RFC 1071 Internet checksum of buf[offset, offset+length). */
export function internetChecksum(buf: Buffer, offset: number, length: number): number {
  let sum = 0;
  const end = offset + (length & ~1);
  for (let i = offset; i < end; i += 2) sum += (buf[i]! << 8) | buf[i + 1]!;
  if (length & 1) sum += buf[offset + length - 1]! << 8;
  while (sum > 0xffff) sum = (sum & 0xffff) + (sum >>> 16);
  return ~sum & 0xffff;
}
