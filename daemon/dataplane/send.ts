/**
 * Egress: TUN -> UDP.
 *   1. TUN read: the kernel routed a batch of packets for the cluster network into the device.
 *   2. Check: a well-formed IPv4 packet to a unicast destination, no larger than the underlay carries.
 *   3. Route: the peer table names the node that leases the destination's subnet.
 *   4. No route, or too big with DF set: an ICMP error goes back into the TUN (rate-limited).
 *   5. Transmit: the bare IP packet becomes one UDP datagram to the peer (flannel's UDP wire format).
 */
import type { EgressDropReason } from './counters.js';
import { checkIPv4, destinationAddress, isNonUnicast, isSubnetBroadcast, totalLength } from './ipv4-packet.js';
import type { Peer, PeerTable } from './peer-table.js';

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
