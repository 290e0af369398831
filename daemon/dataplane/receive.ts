/**
 * Ingress: UDP -> TUN, one transport wake-up's batch at a time.
 *   1. UDP receive: a batch of datagrams, each with its sender's endpoint (IPv4 or IPv6, the
 *      underlay's family).
 *   2. Sender: it must be a known peer's endpoint; a stranger's datagram is dropped
 *      before any parsing or crypto is spent on it.
 *   3. Open (with a cluster key, sealing.ts): authentic, fresh, not a replay; the packet
 *      is then in clear SEAL_HEADER_BYTES into the datagram.
 *   4. Check: by its version nibble, the payload is a well-formed IPv4 or IPv6 packet, of a
 *      family this node has a subnet of.
 *   5. Spoofing: the inner source lies in that peer's subnet of the packet's family, the inner
 *      destination in ours. A peer may send no family it has no subnet of.
 *   6. Deliver: accepted packets are written to the TUN in one batch, in place in the
 *      transport's buffer; the kernel routes them to the pod. Packets it refuses are
 *      counted as tun-write-failed.
 * Every datagram received ends as written or as exactly one drop (counters.ts).
 */
import { cidrContains as contains, type Cidr } from '../net/ipv4.js';
import { cidr6ContainsAt, type Cidr6 } from '../net/ipv6.js';
import { ReusableBatch } from '../net/packet-batch.js';
import type { DatagramBatch } from '../transport/index.js';
import type { TunDevice } from '../tun/index.js';
import type { Counters, IngressDropReason } from './counters.js';
import { checkIPv4, destinationAddress, isSubnetBroadcast, refuseWithoutIPv4, sourceAddress, totalLength } from './ipv4-packet.js';
import { checkIPv6Header, IPV6_DESTINATION_OFFSET, IPV6_HEADER, IPV6_SOURCE_OFFSET, payloadLength } from './ipv6-packet.js';
import type { Peer, PeerTable } from './peer-table.js';
import { OPEN_REPLAYED, SEAL_HEADER_BYTES, type Sealer } from './sealing.js';

/** Steps 4 and 5 for IPv4, once the sender is known to be `peer` (and, with a cluster key, its datagram opened): `null` to deliver, else why not. */
function checkFromPeer(buf: Buffer, offset: number, length: number, peer: Peer, localSubnet: Cidr | undefined): IngressDropReason | null {
  if (localSubnet === undefined) return refuseWithoutIPv4(buf, offset, length);
  const malformed = checkIPv4(buf, offset, length);
  if (malformed !== null) return malformed;
  if (peer.subnet === undefined || !contains(peer.subnet, sourceAddress(buf, offset))) return 'spoofed-source';
  const destination = destinationAddress(buf, offset);
  // Our subnet's broadcast would reach every socket on this node: no peer sends there (see send.ts).
  if (!contains(localSubnet, destination) || isSubnetBroadcast(destination, localSubnet.prefixLength)) return 'wrong-destination';
  return null;
}

/** checkFromPeer for a packet whose version nibble is 6 (length at least 1). */
function checkFromPeer6(buf: Buffer, offset: number, length: number, peer: Peer, localSubnet6: Cidr6 | undefined): IngressDropReason | null {
  if (localSubnet6 === undefined) return 'ipv6-disabled';
  const malformed = checkIPv6Header(buf, offset, length);
  if (malformed !== null) return malformed;
  if (peer.subnet6 === undefined || !cidr6ContainsAt(peer.subnet6, buf, offset + IPV6_SOURCE_OFFSET)) return 'spoofed-source';
  // Multicast and link-local lie outside any subnet a node leases, so this is all IPv6 needs (it has no broadcast).
  if (!cidr6ContainsAt(localSubnet6, buf, offset + IPV6_DESTINATION_OFFSET)) return 'wrong-destination';
  return null;
}

export interface IngressOptions {
  tun: TunDevice;
  /** Datagrams one received batch holds at most (the transport's batchCapacity). */
  batchCapacity: number;
  /** This node's IPv4 subnet, the only IPv4 destinations delivered to; without it no IPv4 is. */
  localSubnet: Cidr | undefined;
  /** This node's IPv6 subnet, the only IPv6 destinations delivered to; without it no IPv6 is. */
  localSubnet6: Cidr6 | undefined;
  sealer: Sealer | undefined;
}

export class Ingress {
  /** Read once per batch: a table swapped meanwhile applies from the next batch. */
  peers: PeerTable;
  /** The accepted packets of one batch, listed over the transport's buffer. */
  private readonly deliveries: ReusableBatch;

  constructor(
    private readonly counters: Counters,
    peers: PeerTable,
    private readonly options: IngressOptions,
  ) {
    this.peers = peers;
    this.deliveries = new ReusableBatch(options.batchCapacity);
  }

  /** Steps 2 to 6 for one received batch. */
  deliver(batch: DatagramBatch): void {
    const { localSubnet, localSubnet6, tun, sealer } = this.options;
    const { buffer, offsets, lengths, sourceIps, sourceIps6, sourcePorts, count } = batch;
    const counters = this.counters;
    const peers = this.peers;
    const deliveries = this.deliveries;
    deliveries.buffer = buffer;
    deliveries.clear();
    counters.udpPacketsReceived += count;
    // One clock read per batch: its datagrams arrived in one wake-up.
    const receivedAt = count > 0 ? Date.now() : 0;
    for (let i = 0; i < count; i++) {
      let offset = offsets[i]!;
      let length = lengths[i]!;
      const peer = sourceIps6 === undefined ? peers.fromEndpoint(sourceIps[i]!, sourcePorts[i]!) : peers.fromEndpoint6(sourceIps6, 4 * i, sourcePorts[i]!);
      if (peer === undefined) {
        counters.ingressDrops['unknown-sender']++;
        continue;
      }
      peer.packetsReceived++;
      peer.bytesReceived += length;
      peer.lastReceivedAt = receivedAt;
      if (sealer) {
        // The sender the seal must name is the peer this endpoint belongs to, whatever the underlay's family.
        const opened = sealer.open(buffer, offset, length, peer.sealerId ?? peer.endpoint.ip);
        if (opened < 0) {
          counters.ingressDrops[opened === OPEN_REPLAYED ? 'replayed' : 'unauthenticated']++;
          peer.drops++;
          continue;
        }
        offset += SEAL_HEADER_BYTES;
        length = opened;
      }
      const ipv6 = length !== 0 && buffer[offset]! >> 4 === 6;
      const reason = ipv6 ? checkFromPeer6(buffer, offset, length, peer, localSubnet6) : checkFromPeer(buffer, offset, length, peer, localSubnet);
      if (reason !== null) {
        counters.ingressDrops[reason]++;
        peer.drops++;
        continue;
      }
      deliveries.push(offset, ipv6 ? IPV6_HEADER + payloadLength(buffer, offset) : totalLength(buffer, offset));
    }
    if (deliveries.count === 0) return;
    const written = tun.write(deliveries);
    counters.tunPacketsWritten += written;
    counters.ingressDrops['tun-write-failed'] += deliveries.count - written;
    // Bytes are counted for the batch as a whole; a failed write is rare enough not to track per packet.
    for (let i = 0; i < deliveries.count; i++) counters.tunBytesWritten += deliveries.lengths[i]!;
  }
}
