/**
 * Egress: TUN -> UDP, one TUN wake-up's batch at a time.
 *   1. TUN read: the kernel routed a batch of packets for the cluster network into the device.
 *   2. Check: a well-formed IPv4 packet to a unicast destination, no larger than the underlay carries.
 *   3. Route: the peer table names the node that leases the destination's subnet.
 *   4. No route, or too big with DF set: an ICMP error is queued for the TUN (rate-limited).
 *   5. Seal (with a cluster key): packet i goes into slot i of the sealed buffer, so the
 *      datagrams of one batch never overlap while the transport holds them.
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
import { checkIPv4, destinationAddress, dontFragment, isNonUnicast, isSubnetBroadcast, totalLength } from './ipv4-packet.js';
import type { Peer, PeerTable } from './peer-table.js';
import { SEAL_OVERHEAD, type Sealer } from './sealing.js';

/**
 * Decides where the packet at buf[offset, offset+length) goes: the peer to
 * send it to, or why it is dropped. `maxPacket` is the largest IP packet the
 * underlay carries inside one UDP datagram.
 */
export function routeEgress(
  buf: Buffer,
  offset: number,
  length: number,
  peers: PeerTable,
  maxPacket: number,
): Peer | EgressDropReason {
  const malformed = checkIPv4(buf, offset, length);
  if (malformed !== null) return malformed;
  const destination = destinationAddress(buf, offset);
  if (isNonUnicast(destination) || isSubnetBroadcast(destination, peers.subnetLength)) return 'non-unicast';
  if (totalLength(buf, offset) > maxPacket) return 'too-big';
  return peers.lookup(destination) ?? 'no-route';
}

export interface EgressOptions {
  tun: TunDevice;
  transport: PacketTransport;
  /** Largest IP packet that fits one UDP datagram on the underlay. */
  maxPacket: number;
  /** The source of ICMP errors: this node's overlay address. */
  overlayAddress: number;
  /** ICMP errors written back into the TUN per second at most. */
  icmpRatePerSecond: number;
  sealer: Sealer | undefined;
}

/** ICMP errors in a burst at most, before the rate limit applies. */
const ICMP_BURST = 64;

export class Egress {
  /** Read once per batch: a table swapped meanwhile applies from the next batch. */
  peers: PeerTable;
  private readonly icmpLimiter: RateLimiter;
  /** ICMP errors of one batch, ICMP_ERROR_MAX bytes each. */
  private readonly icmpReplies: ReusableBatch;
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
    this.icmpReplies = new ReusableBatch(capacity, Buffer.alloc(capacity * ICMP_ERROR_MAX));
    this.sealed = Buffer.alloc(options.sealer ? capacity * (options.maxPacket + SEAL_OVERHEAD) : 0);
  }

  /** Steps 2 to 7 for one TUN batch. */
  forward(batch: PacketBatch): void {
    const { transport, maxPacket, sealer } = this.options;
    const { buffer, offsets, lengths, count } = batch;
    const counters = this.counters;
    const peers = this.peers;
    const slot = maxPacket + SEAL_OVERHEAD;
    counters.tunPacketsRead += count;
    for (let i = 0; i < count; i++) {
      const offset = offsets[i]!;
      const verdict = routeEgress(buffer, offset, lengths[i]!, peers, maxPacket);
      if (typeof verdict !== 'string') {
        let datagram = buffer;
        let at = offset;
        let length = totalLength(buffer, offset);
        if (sealer) {
          datagram = this.sealed;
          at = i * slot;
          length = sealer.seal(buffer, offset, length, datagram, at);
        }
        if (transport.send(datagram, at, length, verdict.endpoint)) {
          counters.udpPacketsSent++;
          counters.udpBytesSent += length;
        } else {
          counters.egressDrops['send-queue-full']++;
        }
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

  private answerWithError(buffer: Buffer, offset: number, code: number, nextHopMtu: number): void {
    if (!mayAnswerWithError(buffer, offset) || !this.icmpLimiter.tryTake()) return;
    const replies = this.icmpReplies;
    const at = replies.count * ICMP_ERROR_MAX;
    const length = writeDestinationUnreachable(replies.buffer, at, buffer, offset, code, this.options.overlayAddress, nextHopMtu);
    replies.push(at, length);
  }

  private writeIcmpReplies(): void {
    if (this.icmpReplies.count === 0) return;
    this.counters.icmpErrorsSent += this.options.tun.write(this.icmpReplies);
    this.icmpReplies.clear();
  }
}
