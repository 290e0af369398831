/**
 * The peer table: which node's underlay endpoint leases the subnet a packet
 * is for. Every subnet has the network's fixed subnet length, so a lookup is
 * one mask and one Map probe, and a change is one Map write: a lease event
 * costs the same whether the cluster has ten nodes or ten thousand. A batch
 * is processed synchronously, so it never sees half an update.
 *
 * A peer of a dual-stack cluster also leases an IPv6 subnet (paired with its
 * IPv4 one by the lease store); the table indexes both, and the IPv4 subnet
 * stays the peer's key.
 */
import type { Endpoint } from '../transport/index.js';
import { maskOf, formatCidr, type Cidr } from '../net/ipv4.js';
import { formatCidr6, type Cidr6 } from '../net/ipv6.js';

export interface Peer {
  readonly subnet: Cidr;
  /** Absent for a peer that carries IPv4 only. */
  readonly subnet6?: Cidr6;
  readonly endpoint: Endpoint;
}

function endpointKey(ip: number, port: number): number {
  return ip * 65536 + port;
}

/** A level of the IPv6 index: children by one masked word, peers at the last level. */
type Level6 = Map<number, Level6 | Peer>;

/**
 * Peers by IPv6 subnet, for any prefix length 1..126: one Map level per
 * 32-bit word the prefix covers (two for a /64), each keyed by that word
 * masked. A key is the whole word, so no two subnets share a path, and a
 * lookup is at most four probes whatever the table holds. 128 bits fit no
 * single exact JS number, so one key could not do this without hashing.
 *
 * Keys are the words as signed 32-bit integers: V8 keeps those unboxed
 * (as small integers), where an unsigned word of 2^31 or more (every fd00::/8
 * address) would be boxed into a heap number on each probe.
 */
class SubnetIndex6 {
  private readonly root: Level6 = new Map();
  /** Words the prefix covers; the last may be partly masked. */
  private readonly depth: number;
  private readonly lastMask: number;

  constructor(prefixLength: number) {
    this.depth = Math.ceil(prefixLength / 32);
    this.lastMask = maskOf(prefixLength - 32 * (this.depth - 1)) | 0;
  }

  /** The peer whose subnet holds the address at buf[offset, offset+16). */
  lookup(buf: Buffer, offset: number): Peer | undefined {
    let level = this.root;
    const last = this.depth - 1;
    for (let word = 0; word < last; word++) {
      const next = level.get(buf.readInt32BE(offset + 4 * word)) as Level6 | undefined;
      if (next === undefined) return undefined;
      level = next;
    }
    return level.get(buf.readInt32BE(offset + 4 * last) & this.lastMask) as Peer | undefined;
  }

  set(subnet: Cidr6, peer: Peer): void {
    let level = this.root;
    for (let word = 0; word < this.depth - 1; word++) {
      const key = subnet.network[word]! | 0;
      let next = level.get(key) as Level6 | undefined;
      if (next === undefined) {
        next = new Map();
        level.set(key, next);
      }
      level = next;
    }
    level.set(this.lastKey(subnet), peer);
  }

  /** Removes the entry for `subnet` if it is `peer`, and the levels that leaves empty. */
  deleteIf(subnet: Cidr6, peer: Peer): void {
    const path: Level6[] = [this.root];
    for (let word = 0; word < this.depth - 1; word++) {
      const next = path[word]!.get(subnet.network[word]! | 0) as Level6 | undefined;
      if (next === undefined) return;
      path.push(next);
    }
    const leaf = path[this.depth - 1]!;
    const key = this.lastKey(subnet);
    if (leaf.get(key) !== peer) return;
    leaf.delete(key);
    for (let word = this.depth - 2; word >= 0 && path[word + 1]!.size === 0; word--) path[word]!.delete(subnet.network[word]! | 0);
  }

  private lastKey(subnet: Cidr6): number {
    return subnet.network[this.depth - 1]! & this.lastMask;
  }
}

export class PeerTable {
  private readonly bySubnet = new Map<number, Peer>();
  private readonly byEndpoint = new Map<number, Peer>();
  private readonly bySubnet6: SubnetIndex6 | undefined;
  private readonly subnetMask: number;

  /** `subnetLength6` is the IPv6 subnet length; without it the table (and the node) carries IPv4 only. */
  constructor(
    readonly subnetLength: number,
    peers: Iterable<Peer> = [],
    readonly subnetLength6?: number,
  ) {
    this.subnetMask = maskOf(subnetLength);
    if (subnetLength6 !== undefined) {
      if (!Number.isInteger(subnetLength6) || subnetLength6 < 1 || subnetLength6 > 126) {
        throw new RangeError(`IPv6 subnet length ${subnetLength6} is not an integer in 1..126`);
      }
      this.bySubnet6 = new SubnetIndex6(subnetLength6);
    }
    for (const peer of peers) this.set(peer);
  }

  /** Adds the peer, or replaces the one on its subnet. */
  set(peer: Peer): void {
    if (peer.subnet.prefixLength !== this.subnetLength) {
      throw new RangeError(`peer subnet ${formatCidr(peer.subnet)} is not a /${this.subnetLength}`);
    }
    const { subnet6 } = peer;
    if (subnet6 !== undefined && subnet6.prefixLength !== this.subnetLength6) {
      const expected = this.subnetLength6 === undefined ? 'this node carries IPv4 only' : `it is not a /${this.subnetLength6}`;
      throw new RangeError(`peer IPv6 subnet ${formatCidr6(subnet6)} of ${formatCidr(peer.subnet)} is refused: ${expected}`);
    }
    this.delete(peer.subnet);
    this.bySubnet.set(peer.subnet.network, peer);
    this.byEndpoint.set(endpointKey(peer.endpoint.ip, peer.endpoint.port), peer);
    if (subnet6 !== undefined) this.bySubnet6!.set(subnet6, peer);
  }

  /** Removes the peer on `subnet`; false if there was none. */
  delete(subnet: Cidr): boolean {
    const peer = this.bySubnet.get(subnet.network);
    if (peer === undefined) return false;
    this.bySubnet.delete(subnet.network);
    const key = endpointKey(peer.endpoint.ip, peer.endpoint.port);
    // Two leases naming one endpoint (or one IPv6 subnet) is an operator's mistake; the indexes keep the newer.
    if (this.byEndpoint.get(key) === peer) this.byEndpoint.delete(key);
    if (peer.subnet6 !== undefined) this.bySubnet6!.deleteIf(peer.subnet6, peer);
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

  /** The peer whose IPv6 subnet holds the address at buf[offset, offset+16), if any; reads it in place. */
  lookup6(buf: Buffer, offset: number): Peer | undefined {
    return this.bySubnet6?.lookup(buf, offset);
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
