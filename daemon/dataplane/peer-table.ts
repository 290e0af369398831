/**
 * The peer table: which node's underlay endpoint leases the subnet a packet
 * is for. Every subnet has the network's fixed subnet length, so a lookup is
 * one mask and one Map probe. Tables are immutable; the data plane swaps in
 * a new one when leases change, so a batch never sees half an update.
 */
import type { Endpoint } from '../transport/index.js';
import { maskOf, formatCidr, type Cidr } from '../net/ipv4.js';

export interface Peer {
  readonly subnet: Cidr;
  readonly endpoint: Endpoint;
}

function endpointKey(ip: number, port: number): number {
  return ip * 65536 + port;
}

export class PeerTable {
  private readonly bySubnet = new Map<number, Peer>();
  private readonly byEndpoint = new Map<number, Peer>();
  private readonly subnetMask: number;

  constructor(
    readonly subnetLength: number,
    peers: Iterable<Peer> = [],
  ) {
    this.subnetMask = maskOf(subnetLength);
    for (const peer of peers) {
      if (peer.subnet.prefixLength !== subnetLength) {
        throw new RangeError(`peer subnet ${formatCidr(peer.subnet)} is not a /${subnetLength}`);
      }
      this.bySubnet.set(peer.subnet.network, peer);
      this.byEndpoint.set(endpointKey(peer.endpoint.ip, peer.endpoint.port), peer);
    }
  }

  /** The peer whose subnet holds `destination`, if any. */
  lookup(destination: number): Peer | undefined {
    return this.bySubnet.get((destination & this.subnetMask) >>> 0);
  }

  /** The peer that sends from this underlay endpoint, if any. */
  fromEndpoint(ip: number, port: number): Peer | undefined {
    return this.byEndpoint.get(endpointKey(ip, port));
  }

  get size(): number {
    return this.bySubnet.size;
  }

  peers(): IterableIterator<Peer> {
    return this.bySubnet.values();
  }
}
