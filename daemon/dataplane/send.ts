/**
 * Egress: TUN -> UDP, one TUN wake-up's batch at a time.
 *   1. TUN read: the kernel routed a batch of packets for the cluster network into the device.
 *   2. Check: by its version nibble, a well-formed IPv4 or IPv6 packet to a unicast destination,
 *      no larger than the underlay carries. Each family needs this node to have a subnet of it.
 *   3. Route: the peer table names the node that leases the destination's subnet.
 *   4. No route, or too big (IPv4 with DF set; IPv6 always, having no DF): an ICMP or ICMPv6
 *      error is queued for the TUN, the two families sharing one rate limit.
 *   5. Seal (with a cluster key): packet i goes into slot i of the sealed buffer, so the
 *      datagrams of one batch never overlap while the transport holds them. Either family's
 *      packet is sealed as it is: the wire carries the bare IP packet.
 *   6. Transmit: each datagram is queued on the transport, the whole batch sent by one flush();
 *      the ones it refuses move from sent to the send-queue-full drops.
 *   7. ICMP errors: written back into the TUN in one batch.
 * Every packet read ends as sent or as exactly one drop (counters.ts).
 */
import { ReusableBatch, type PacketBatch } from '../net/packet-batch.js';
import type { PacketTransport } from '../transport/index.js';
import type { TunDevice } from '../tun/index.js';
import type { Counters, EgressDropReason } from './counters.js';
import { CODE_FRAGMENTATION_NEEDED, CODE_NET_UNREACHABLE, ICMP_ERROR_MAX, RateLimiter, mayAnswerWithError, writeDestinationUnreachable } from './icmp.js';
import { CODE_NO_ROUTE, ICMP6_DEST_UNREACHABLE, ICMP6_ERROR_MAX, ICMP6_PACKET_TOO_BIG, mayAnswerWithError6, writeDestinationUnreachable6, writePacketTooBig } from './icmp6.js';
import { checkIPv4, destinationAddress, dontFragment, isNonUnicast, isSubnetBroadcast, refuseWithoutIPv4, totalLength } from './ipv4-packet.js';
import { checkIPv6Header, IPV6_DESTINATION_OFFSET, IPV6_HEADER, isNonUnicast6, payloadLength } from './ipv6-packet.js';
import type { PeerEntry, PeerTable } from './peer-table.js';
import { SEAL_OVERHEAD, type Sealer } from './sealing.js';

/**
 * Decides where the IPv4 packet at buf[offset, offset+length) goes: the peer
 * to send it to, or why it is dropped. `maxPacket` is the largest IP packet
 * the underlay carries inside one UDP datagram. A packet of another version
 * is 'not-ipv4': the caller sends IPv6 to routeEgress6. A table without IPv4
 * subnets belongs to a node without one: an IPv4 packet is 'ipv4-disabled'.
 */
export function routeEgress(
  buf: Buffer,
  offset: number,
  length: number,
  peers: PeerTable,
  maxPacket: number,
): PeerEntry | EgressDropReason {
  const subnetLength = peers.subnetLength;
  if (subnetLength === undefined) return refuseWithoutIPv4(buf, offset, length);
  const malformed = checkIPv4(buf, offset, length);
  if (malformed !== null) return malformed;
  const destination = destinationAddress(buf, offset);
  if (isNonUnicast(destination) || isSubnetBroadcast(destination, subnetLength)) return 'non-unicast';
  if (totalLength(buf, offset) > maxPacket) return 'too-big';
  return peers.lookup(destination) ?? 'no-route';
}

/**
 * routeEgress for a packet whose version nibble is 6 (length at least 1).
 * A table without IPv6 subnets belongs to a node without one: 'ipv6-disabled'.
 */
export function routeEgress6(
  buf: Buffer,
  offset: number,
  length: number,
  peers: PeerTable,
  maxPacket: number,
): PeerEntry | EgressDropReason {
  if (peers.subnetLength6 === undefined) return 'ipv6-disabled';
  const malformed = checkIPv6Header(buf, offset, length);
  if (malformed !== null) return malformed;
  if (isNonUnicast6(buf, offset + IPV6_DESTINATION_OFFSET)) return 'non-unicast';
  if (IPV6_HEADER + payloadLength(buf, offset) > maxPacket) return 'too-big';
  return peers.lookup6(buf, offset + IPV6_DESTINATION_OFFSET) ?? 'no-route';
}

export interface EgressOptions {
  tun: TunDevice;
  transport: PacketTransport;
  /** Largest IP packet that fits one UDP datagram on the underlay. */
  maxPacket: number;
  /** The source of ICMP errors: this node's overlay address; undefined at a node without an IPv4 subnet. */
  overlayAddress: number | undefined;
  /** The source of ICMPv6 errors, 16 bytes; undefined at a node without an IPv6 subnet. */
  overlayAddress6: Uint8Array | undefined;
  /** ICMP errors written back into the TUN per second at most, both families together. */
  icmpRatePerSecond: number;
  sealer: Sealer | undefined;
}

/** ICMP errors in a burst at most, before the rate limit applies. */
const ICMP_BURST = 64;

/** RFC 8200 section 5: every IPv6 link carries 1280 bytes, so a Packet Too Big never names less (RFC 8201 would ignore it). */
const IPV6_MIN_MTU = 1280;

export class Egress {
  /** Read once per batch: a table swapped meanwhile applies from the next batch. */
  peers: PeerTable;
  private readonly icmpLimiter: RateLimiter;
  /** ICMP errors of one batch, one slot each of the largest error a family of this node writes. */
  private readonly icmpReplies: ReusableBatch;
  private readonly icmpSlot: number;
  /** Sealed datagrams of one batch, one slot of maxPacket + SEAL_OVERHEAD bytes per packet read. */
  private readonly sealed: Buffer;

  constructor(
    private readonly counters: Counters,
    peers: PeerTable,
    private readonly options: EgressOptions,
  ) {
    this.peers = peers;
    const capacity = options.tun.batchCapacity;
    this.icmpLimiter = new RateLimiter(options.icmpRatePerSecond, ICMP_BURST);
    this.icmpSlot = Math.max(options.overlayAddress === undefined ? 0 : ICMP_ERROR_MAX, options.overlayAddress6 ? ICMP6_ERROR_MAX : 0);
    this.icmpReplies = new ReusableBatch(capacity, Buffer.alloc(capacity * this.icmpSlot));
    this.sealed = Buffer.alloc(options.sealer ? capacity * (options.maxPacket + SEAL_OVERHEAD) : 0);
  }

  /** Steps 2 to 7 for one TUN batch. */
  forward(batch: PacketBatch): void {
    const { transport, maxPacket } = this.options;
    const { buffer, offsets, lengths, count } = batch;
    const counters = this.counters;
    const peers = this.peers;
    counters.tunPacketsRead += count;
    for (let i = 0; i < count; i++) {
      const offset = offsets[i]!;
      const length = lengths[i]!;
      if (length !== 0 && buffer[offset]! >> 4 === 6) {
        const verdict = routeEgress6(buffer, offset, length, peers, maxPacket);
        if (typeof verdict !== 'string') {
          this.transmit(buffer, offset, IPV6_HEADER + payloadLength(buffer, offset), i, verdict);
          continue;
        }
        counters.egressDrops[verdict]++;
        if (verdict === 'no-route') {
          this.answerWithError6(buffer, offset, ICMP6_DEST_UNREACHABLE);
        } else if (verdict === 'too-big') {
          this.answerWithError6(buffer, offset, ICMP6_PACKET_TOO_BIG);
        }
        continue;
      }
      const verdict = routeEgress(buffer, offset, length, peers, maxPacket);
      if (typeof verdict !== 'string') {
        this.transmit(buffer, offset, totalLength(buffer, offset), i, verdict);
        continue;
      }
      counters.egressDrops[verdict]++;
      if (verdict === 'no-route') {
        this.answerWithError(buffer, offset, CODE_NET_UNREACHABLE, 0);
      } else if (verdict === 'too-big' && dontFragment(buffer, offset)) {
        this.answerWithError(buffer, offset, CODE_FRAGMENTATION_NEEDED, maxPacket);
      }
    }
    const refused = transport.flush();
    counters.udpPacketsSent -= refused;
    counters.egressDrops['send-queue-full'] += refused;
    this.writeIcmpReplies();
  }

  /** Steps 5 and 6 for packet `index` of the batch, `length` bytes at buffer[offset]. */
  private transmit(buffer: Buffer, offset: number, length: number, index: number, peer: PeerEntry): void {
    const { transport, maxPacket, sealer } = this.options;
    const counters = this.counters;
    let datagram = buffer;
    let at = offset;
    let size = length;
    if (sealer) {
      datagram = this.sealed;
      at = index * (maxPacket + SEAL_OVERHEAD);
      size = sealer.seal(buffer, offset, length, datagram, at);
    }
    if (transport.send(datagram, at, size, peer.endpoint)) {
      counters.udpPacketsSent++;
      counters.udpBytesSent += size;
      peer.packetsSent++;
      peer.bytesSent += size;
    } else {
      counters.egressDrops['send-queue-full']++;
    }
  }

  private answerWithError(buffer: Buffer, offset: number, code: number, nextHopMtu: number): void {
    if (!mayAnswerWithError(buffer, offset) || !this.icmpLimiter.tryTake()) return;
    const replies = this.icmpReplies;
    const at = replies.count * this.icmpSlot;
    // Set whenever the table routes IPv4, which is the only way here: the data plane builds both from localSubnet.
    const length = writeDestinationUnreachable(replies.buffer, at, buffer, offset, code, this.options.overlayAddress!, nextHopMtu);
    replies.push(at, length);
  }

  /** For the well-formed IPv6 packet at buffer[offset]: a Packet Too Big names what the underlay carries, an unreachable says no route. */
  private answerWithError6(buffer: Buffer, offset: number, type: typeof ICMP6_DEST_UNREACHABLE | typeof ICMP6_PACKET_TOO_BIG): void {
    const length = IPV6_HEADER + payloadLength(buffer, offset);
    if (!mayAnswerWithError6(buffer, offset, length, type) || !this.icmpLimiter.tryTake()) return;
    const replies = this.icmpReplies;
    const at = replies.count * this.icmpSlot;
    // Set whenever the table routes IPv6, which is the only way here: the data plane builds both from localSubnet6.
    const source = this.options.overlayAddress6!;
    const written =
      type === ICMP6_PACKET_TOO_BIG
        ? writePacketTooBig(replies.buffer, at, buffer, offset, length, Math.max(IPV6_MIN_MTU, this.options.maxPacket), source)
        : writeDestinationUnreachable6(replies.buffer, at, buffer, offset, length, CODE_NO_ROUTE, source);
    replies.push(at, written);
  }

  private writeIcmpReplies(): void {
    if (this.icmpReplies.count === 0) return;
    this.counters.icmpErrorsSent += this.options.tun.write(this.icmpReplies);
    this.icmpReplies.clear();
  }
}
