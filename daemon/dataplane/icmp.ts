/**
 * ICMP errors the data plane writes back into the TUN, so that a sender
 * learns quickly that a destination has no lease (net unreachable) or that
 * its packet does not fit the underlay (fragmentation needed, for path MTU
 * discovery), as flannel's UDP proxy does.
 */
import { IPV4_MIN_HEADER, PROTO_ICMP, headerLength, internetChecksum, isLaterFragment, isNonUnicast, protocol, sourceAddress, totalLength } from './ipv4-packet.js';

export const ICMP_DEST_UNREACHABLE = 3;
export const CODE_NET_UNREACHABLE = 0;
export const CODE_FRAGMENTATION_NEEDED = 4;

const ICMP_HEADER = 8;
/** RFC 1812 4.3.2.3: an ICMP error quotes as much as fits in 576 bytes. */
export const ICMP_ERROR_MAX = 576;

// ICMP types that are themselves errors: RFC 1122 3.2.2 forbids answering them.
const ICMP_ERROR_TYPES = new Set([3, 4, 5, 11, 12]);

/** Whether RFC 1122 allows an ICMP error in reply to this (well-formed) packet. */
export function mayAnswerWithError(buf: Buffer, offset: number): boolean {
  if (isLaterFragment(buf, offset)) return false;
  if (isNonUnicast(sourceAddress(buf, offset))) return false;
  if (protocol(buf, offset) === PROTO_ICMP) {
    const icmpOffset = offset + headerLength(buf, offset);
    if (icmpOffset >= offset + totalLength(buf, offset)) return false;
    if (ICMP_ERROR_TYPES.has(buf[icmpOffset]!)) return false;
  }
  return true;
}

/**
 * Writes an ICMP destination-unreachable for the well-formed packet at
 * buf[offset..] into out[outOffset..] (which needs ICMP_ERROR_MAX bytes) and
 * returns its length. `from` is the address the error comes from: this
 * node's overlay address. `nextHopMtu` is set for fragmentation-needed.
 */
export function writeDestinationUnreachable(
  out: Buffer,
  outOffset: number,
  buf: Buffer,
  offset: number,
  code: number,
  from: number,
  nextHopMtu = 0,
): number {
  const quoted = Math.min(totalLength(buf, offset), ICMP_ERROR_MAX - IPV4_MIN_HEADER - ICMP_HEADER);
  const length = IPV4_MIN_HEADER + ICMP_HEADER + quoted;

  out[outOffset] = 0x45;
  out[outOffset + 1] = 0xc0; // precedence "internetwork control", as the kernel uses for ICMP errors
  out.writeUInt16BE(length, outOffset + 2);
  out.writeUInt32BE(0, outOffset + 4); // id 0, no flags, offset 0
  out[outOffset + 8] = 64;
  out[outOffset + 9] = PROTO_ICMP;
  out.writeUInt16BE(0, outOffset + 10);
  out.writeUInt32BE(from, outOffset + 12);
  out.writeUInt32BE(sourceAddress(buf, offset), outOffset + 16);
  out.writeUInt16BE(internetChecksum(out, outOffset, IPV4_MIN_HEADER), outOffset + 10);

  const icmp = outOffset + IPV4_MIN_HEADER;
  out[icmp] = ICMP_DEST_UNREACHABLE;
  out[icmp + 1] = code;
  out.writeUInt16BE(0, icmp + 2);
  out.writeUInt16BE(0, icmp + 4);
  out.writeUInt16BE(nextHopMtu, icmp + 6);
  buf.copy(out, icmp + ICMP_HEADER, offset, offset + quoted);
  out.writeUInt16BE(internetChecksum(out, icmp, ICMP_HEADER + quoted), icmp + 2);
  return length;
}

/** A token bucket: `ratePerSecond` tokens a second, holding at most `burst`. */
export class RateLimiter {
  private tokens: number;
  private last: number;

  constructor(
    private readonly ratePerSecond: number,
    private readonly burst: number,
    private readonly now: () => number = () => performance.now(),
  ) {
    this.tokens = burst;
    this.last = now();
  }

  tryTake(): boolean {
    const now = this.now();
    this.tokens = Math.min(this.burst, this.tokens + ((now - this.last) / 1000) * this.ratePerSecond);
    this.last = now;
    if (this.tokens < 1) return false;
    this.tokens -= 1;
    return true;
  }
}
