/**
 * The peer table: which node's underlay endpoint leases the subnet a packet
 * is for. Every subnet has the network's fixed subnet length, so a lookup is
 * one mask and one Map probe, and a change is one Map write: a lease event
 * costs the same whether the cluster has ten nodes or ten thousand. A batch
 * is processed synchronously, so it never sees half an update.
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
    for (const peer of peers) this.set(peer);
  }

  /** Adds the peer, or replaces the one on its subnet. */
  set(peer: Peer): void {
    if (peer.subnet.prefixLength !== this.subnetLength) {
      throw new RangeError(`peer subnet ${formatCidr(peer.subnet)} is not a /${this.subnetLength}`);
    }
    this.delete(peer.subnet);
    this.bySubnet.set(peer.subnet.network, peer);
    this.byEndpoint.set(endpointKey(peer.endpoint.ip, peer.endpoint.port), peer);
  }

  /** Removes the peer on `subnet`; false if there was none. */
  delete(subnet: Cidr): boolean {
    const peer = this.bySubnet.get(subnet.network);
    if (peer === undefined) return false;
    this.bySubnet.delete(subnet.network);
    const key = endpointKey(peer.endpoint.ip, peer.endpoint.port);
    // Two leases naming one endpoint is an operator's mistake; the index keeps the newer.
    if (this.byEndpoint.get(key) === peer) this.byEndpoint.delete(key);
    return true;
  }

  /** The peer on exactly this subnet, if any. */
  get(subnet: Cidr): Peer | undefined {
    return this.bySubnet.get(subnet.network);
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
