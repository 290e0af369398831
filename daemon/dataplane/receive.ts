/**
 * Ingress: UDP -> TUN.
 *   1. UDP receive: a batch of datagrams, each with its sender's endpoint.
 *   2. Sender: it must be a known peer's endpoint; a stranger's datagram is dropped.
 *      With a cluster key, the datagram is then opened (sealing.ts): authentic, fresh, not a replay.
 *   3. Check: the payload is a well-formed IPv4 packet.
 *   4. Spoofing: the inner source lies in that peer's subnet, the inner destination in ours.
 *   5. Deliver: accepted packets are written to the TUN in one batch; the kernel routes them to the pod.
 */
import { cidrContains as contains, type Cidr } from '../net/ipv4.js';
import type { IngressDropReason } from './counters.js';
import { checkIPv4, destinationAddress, isSubnetBroadcast, sourceAddress } from './ipv4-packet.js';
import type { Peer, PeerTable } from './peer-table.js';

/**
 * Decides whether the datagram payload at buf[offset, offset+length), sent
 * from senderIp:senderPort, may be delivered to this node's pods: `null` if
 * so, else why not.
 */
export function checkIngress(
  buf: Buffer,
  offset: number,
  length: number,
  senderIp: number,
  senderPort: number,
  peers: PeerTable,
  localSubnet: Cidr,
): IngressDropReason | null {
  const peer = peers.fromEndpoint(senderIp, senderPort);
  return peer === undefined ? 'unknown-sender' : checkFromPeer(buf, offset, length, peer, localSubnet);
}

/** The checks after the sender is known to be `peer` (and, with a cluster key, its datagram opened). */
export function checkFromPeer(buf: Buffer, offset: number, length: number, peer: Peer, localSubnet: Cidr): IngressDropReason | null {
  const malformed = checkIPv4(buf, offset, length);
  if (malformed !== null) return malformed;
  if (!contains(peer.subnet, sourceAddress(buf, offset))) return 'spoofed-source';
  const destination = destinationAddress(buf, offset);
  // Our subnet's broadcast would reach every socket on this node: no peer sends there (see send.ts).
  if (!contains(localSubnet, destination) || isSubnetBroadcast(destination, localSubnet.prefixLength)) return 'wrong-destination';
  return null;
}
