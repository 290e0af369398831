/**
 * The peer table: which node's underlay endpoint leases the subnet a packet
 * is for. Every subnet has the network's fixed subnet length, so a lookup is
 * one mask and one Map probe, and a change is one Map write: a lease event
 * costs the same whether the cluster has ten nodes or ten thousand. A batch
 * is processed synchronously, so it never sees half an update.
 *
 * A peer of a dual-stack cluster also leases an IPv6 subnet (paired with its
 * IPv4 one by the lease store); the table indexes both, and the IPv4 subnet
 * stays the peer's key. A node of an IPv6-only cluster carries no IPv4: its
 * table holds peers with an IPv6 subnet alone, which is then their key. So a
 * table's key family is fixed: IPv4 if it carries IPv4, else IPv6.
 *
 * The underlay is the transport's family: a table for an IPv6 underlay
 * holds IPv6 endpoints only and finds a datagram's sender by its IPv6
 * address and port, exactly; one for a dual underlay holds either.
 */
import { formatEndpoint, reaches, type Endpoint, type TransportFamily } from '../transport/index.js';
import { maskOf, formatCidr, type Cidr } from '../net/ipv4.js';
import { formatCidr6, isCidr6, type Cidr6 } from '../net/ipv6.js';

/**
 * What the data plane counted for one peer entry. Drops are what the peer
 * sent that ingress refused once the sender was known (unauthenticated,
 * replayed, spoofed, malformed, a family this node lacks, a wrong
 * destination), so that received less drops is what this node accepted
 * from it. This node's own refusals (a full send queue) and the batch-wide
 * tun-write-failed stay in the node's counters alone.
 */
export interface PeerTraffic {
  packetsSent: number;
  /** Bytes of the datagrams, sealed or not. */
  bytesSent: number;
  packetsReceived: number;
  bytesReceived: number;
  drops: number;
  /** Epoch ms of the last datagram received from the peer (whatever became of it); 0 for never. */
  lastReceivedAt: number;
}

/** PeerTraffic as /status shows it. */
export interface PeerTrafficView {
  readonly packetsSent: number;
  readonly bytesSent: number;
  readonly packetsReceived: number;
  readonly bytesReceived: number;
  readonly drops: number;
  /** Epoch ms, null for never. */
  readonly lastReceivedAt: number | null;
}

/** A peer has at least one subnet: its IPv4 one, its IPv6 one, or both. */
export interface Peer {
  /** Absent for a peer of an IPv6-only cluster. */
  readonly subnet?: Cidr;
  /** Absent for a peer that carries IPv4 only. */
  readonly subnet6?: Cidr6;
  readonly endpoint: Endpoint;
  /**
   * The 32 bits the peer's seals name as their sender, unique in the
   * cluster: its lease's IPv4 PublicIP, or for a node without one an id the
   * wiring derives from its lease. Default: its endpoint's address, which is
   * the PublicIP on an IPv4 underlay; over an IPv6 one it keeps the nodes'
   * nonces apart, so a sealing data plane requires it there.
   */
  readonly sealerId?: number;
}

/**
 * A peer as the table holds it: the peer's fields and the traffic counted
 * for it, on the one object a lookup finds, so that counting is a field
 * increment on an object already in cache. One class, so that every entry
 * has one shape whichever optional fields its peer came with, and the loops'
 * property reads stay monomorphic.
 */
export class PeerEntry implements Peer, PeerTraffic {
  readonly subnet: Cidr | undefined;
  readonly subnet6: Cidr6 | undefined;
  readonly endpoint: Endpoint;
  readonly sealerId: number | undefined;
  packetsSent = 0;
  bytesSent = 0;
  packetsReceived = 0;
  bytesReceived = 0;
  drops = 0;
  lastReceivedAt = 0;

  /** `carried`: the figures of the entry this one replaces, for the same node. */
  constructor(peer: Peer, carried?: PeerTraffic) {
    this.subnet = peer.subnet;
    this.subnet6 = peer.subnet6;
    this.endpoint = peer.endpoint;
    this.sealerId = peer.sealerId;
    if (carried !== undefined) {
      this.packetsSent = carried.packetsSent;
      this.bytesSent = carried.bytesSent;
      this.packetsReceived = carried.packetsReceived;
      this.bytesReceived = carried.bytesReceived;
      this.drops = carried.drops;
      this.lastReceivedAt = carried.lastReceivedAt;
    }
  }
}

/**
 * A map keyed by a fixed-length path of integers: one Map level per key,
 * values at the last. Exact and collision-free for keys too wide for one JS
 * number (IPv6 addresses), at a probe per level. Lookups walk `root` inline,
 * reading their keys in place; set and deleteIf take the path as an array.
 */
type Level<V> = Map<number, Level<V> | V>;

class KeyPathIndex<V> {
  readonly root: Level<V> = new Map();

  set(path: readonly number[], value: V): void {
    let level = this.root;
    const last = path.length - 1;
    for (let i = 0; i < last; i++) {
      let next = level.get(path[i]!) as Level<V> | undefined;
      if (next === undefined) {
        next = new Map();
        level.set(path[i]!, next);
      }
      level = next;
    }
    level.set(path[last]!, value);
  }

  get(path: readonly number[]): V | undefined {
    let level: Level<V> | V | undefined = this.root;
    for (const key of path) {
      if (level === undefined) return undefined;
      level = (level as Level<V>).get(key);
    }
    return level as V | undefined;
  }

  /** Removes the entry at `path` if it is `value`, and the levels that leaves empty. */
  deleteIf(path: readonly number[], value: V): void {
    const levels: Level<V>[] = [this.root];
    const last = path.length - 1;
    for (let i = 0; i < last; i++) {
      const next = levels[i]!.get(path[i]!) as Level<V> | undefined;
      if (next === undefined) return;
      levels.push(next);
    }
    const leaf = levels[last]!;
    if (leaf.get(path[last]!) !== value) return;
    leaf.delete(path[last]!);
    for (let i = last - 1; i >= 0 && levels[i + 1]!.size === 0; i--) levels[i]!.delete(path[i]!);
  }
}

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
  private readonly index = new KeyPathIndex<PeerEntry>();
  /** Words the prefix covers; the last may be partly masked. */
  private readonly depth: number;
  private readonly lastMask: number;

  constructor(prefixLength: number) {
    this.depth = Math.ceil(prefixLength / 32);
    this.lastMask = maskOf(prefixLength - 32 * (this.depth - 1)) | 0;
  }

  /** The peer whose subnet holds the address at buf[offset, offset+16). */
  lookup(buf: Buffer, offset: number): PeerEntry | undefined {
    let level = this.index.root;
    const last = this.depth - 1;
    for (let word = 0; word < last; word++) {
      const next = level.get(buf.readInt32BE(offset + 4 * word)) as Level<PeerEntry> | undefined;
      if (next === undefined) return undefined;
      level = next;
    }
    return level.get(buf.readInt32BE(offset + 4 * last) & this.lastMask) as PeerEntry | undefined;
  }

  /** The peer on exactly this subnet (of the index's prefix length), if any. */
  get(subnet: Cidr6): PeerEntry | undefined {
    return this.index.get(this.subnetPath(subnet));
  }

  set(subnet: Cidr6, peer: PeerEntry): void {
    this.index.set(this.subnetPath(subnet), peer);
  }

  deleteIf(subnet: Cidr6, peer: PeerEntry): void {
    this.index.deleteIf(this.subnetPath(subnet), peer);
  }

  private subnetPath(subnet: Cidr6): number[] {
    const path = subnet.network.slice(0, this.depth).map((word) => word | 0);
    path[this.depth - 1] = path[this.depth - 1]! & this.lastMask;
    return path;
  }
}

/**
 * Peers by IPv6 endpoint: the address's four words (signed, as in
 * SubnetIndex6), then the port. Exact: the same address with another port
 * is another endpoint.
 */
class EndpointIndex6 {
  private readonly index = new KeyPathIndex<PeerEntry>();

  /** The peer sending from port `port` of the address at words[at, at+4). */
  lookup(words: Uint32Array, at: number, port: number): PeerEntry | undefined {
    let level = this.index.root;
    for (let word = 0; word < 4; word++) {
      const next = level.get(words[at + word]! | 0) as Level<PeerEntry> | undefined;
      if (next === undefined) return undefined;
      level = next;
    }
    return level.get(port) as PeerEntry | undefined;
  }

  set(endpoint: Endpoint, peer: PeerEntry): void {
    this.index.set(endpointPath(endpoint), peer);
  }

  deleteIf(endpoint: Endpoint, peer: PeerEntry): void {
    this.index.deleteIf(endpointPath(endpoint), peer);
  }
}

function endpointPath(endpoint: Endpoint): number[] {
  return [...endpoint.ip6!.map((word) => word | 0), endpoint.port];
}

/**
 * Peers by IPv4 endpoint: the address (signed, as in SubnetIndex6), then the
 * port. One number could hold both (address * 65536 + port), but past 2^31
 * it is a heap number, boxed on every probe of every datagram.
 */
class EndpointIndex4 {
  private readonly index = new KeyPathIndex<PeerEntry>();

  /** The peer sending from `ip`:`port`. */
  lookup(ip: number, port: number): PeerEntry | undefined {
    return (this.index.root.get(ip | 0) as Level<PeerEntry> | undefined)?.get(port) as PeerEntry | undefined;
  }

  set(endpoint: Endpoint, peer: PeerEntry): void {
    this.index.set([endpoint.ip | 0, endpoint.port], peer);
  }

  deleteIf(endpoint: Endpoint, peer: PeerEntry): void {
    this.index.deleteIf([endpoint.ip | 0, endpoint.port], peer);
  }
}

export class PeerTable {
  /**
   * Peers by their key: the IPv4 subnet's network as a signed number (which
   * V8 keeps unboxed, where an unsigned one past 2^31 would be boxed on each
   * lookup), or in a table without IPv4 the IPv6 subnet's text.
   */
  private readonly byKey = new Map<number | string, PeerEntry>();
  private readonly byEndpoint = new EndpointIndex4();
  private readonly byEndpoint6 = new EndpointIndex6();
  private readonly bySubnet6: SubnetIndex6 | undefined;
  private readonly subnetMask: number;

  /**
   * `subnetLength` is the IPv4 subnet length; without it the table (and the node) carries IPv6 only.
   * `subnetLength6` is the IPv6 subnet length; without it the table (and the node) carries IPv4 only.
   * `underlay` is the transport's family: the family of every peer's endpoint ('dual': either).
   */
  constructor(
    readonly subnetLength: number | undefined,
    peers: Iterable<Peer> = [],
    readonly subnetLength6?: number,
    readonly underlay: TransportFamily = 4,
  ) {
    if (subnetLength === undefined && subnetLength6 === undefined) {
      throw new RangeError('a peer table needs an IPv4 or an IPv6 subnet length: the node carries no family');
    }
    this.subnetMask = subnetLength === undefined ? 0 : maskOf(subnetLength);
    if (subnetLength6 !== undefined) {
      if (!Number.isInteger(subnetLength6) || subnetLength6 < 1 || subnetLength6 > 126) {
        throw new RangeError(`IPv6 subnet length ${subnetLength6} is not an integer in 1..126`);
      }
      this.bySubnet6 = new SubnetIndex6(subnetLength6);
    }
    for (const peer of peers) this.set(peer);
  }

  /**
   * Adds the peer, or replaces the one with its key. The traffic counted so
   * far stays with the entry while the key and endpoint stay the same; a
   * peer moved to a new endpoint is another node's, and starts from zero.
   */
  set(newPeer: Peer): void {
    this.check(newPeer);
    const key = peerKey(newPeer);
    const old = this.byKey.get(key);
    if (old !== undefined) this.remove(old);
    const sameNode = old !== undefined && formatEndpoint(old.endpoint) === formatEndpoint(newPeer.endpoint);
    const peer = new PeerEntry(newPeer, sameNode ? old : undefined);
    this.byKey.set(key, peer);
    if (peer.endpoint.ip6 === undefined) {
      this.byEndpoint.set(peer.endpoint, peer);
    } else {
      this.byEndpoint6.set(peer.endpoint, peer);
    }
    if (peer.subnet6 !== undefined) this.bySubnet6!.set(peer.subnet6, peer);
  }

  /** Throws a RangeError naming what this node cannot carry: a subnet of a family it lacks or of another length, or an endpoint off the underlay. */
  private check(peer: Peer): void {
    const { subnet, subnet6, endpoint } = peer;
    if (subnet === undefined && subnet6 === undefined) {
      throw new RangeError(`peer at ${formatEndpoint(endpoint)} is refused: it has neither an IPv4 nor an IPv6 subnet`);
    }
    if (subnet !== undefined && subnet.prefixLength !== this.subnetLength) {
      const expected = this.subnetLength === undefined ? 'is refused: this node carries IPv6 only' : `is not a /${this.subnetLength}`;
      throw new RangeError(`peer subnet ${formatCidr(subnet)} ${expected}`);
    }
    if (subnet === undefined && this.subnetLength !== undefined) {
      throw new RangeError(`peer IPv6 subnet ${formatCidr6(subnet6!)} is refused: it has no IPv4 subnet, and this node carries IPv4`);
    }
    if (subnet6 !== undefined && subnet6.prefixLength !== this.subnetLength6) {
      const expected = this.subnetLength6 === undefined ? 'this node carries IPv4 only' : `it is not a /${this.subnetLength6}`;
      const of = subnet === undefined ? '' : ` of ${formatCidr(subnet)}`;
      throw new RangeError(`peer IPv6 subnet ${formatCidr6(subnet6)}${of} is refused: ${expected}`);
    }
    if (!reaches(this.underlay, endpoint)) {
      throw new RangeError(`peer ${describePeer(peer)} is refused: its endpoint is not on the IPv${this.underlay} underlay`);
    }
  }

  /** Removes the peer on `subnet`, of either family; false if there was none. */
  delete(subnet: Cidr | Cidr6): boolean {
    const peer = this.get(subnet);
    if (peer === undefined) return false;
    this.remove(peer);
    return true;
  }

  private remove(peer: PeerEntry): void {
    this.byKey.delete(peerKey(peer));
    // Two leases naming one endpoint (or one IPv6 subnet) is an operator's mistake; the indexes keep the newer.
    if (peer.endpoint.ip6 === undefined) {
      this.byEndpoint.deleteIf(peer.endpoint, peer);
    } else {
      this.byEndpoint6.deleteIf(peer.endpoint, peer);
    }
    if (peer.subnet6 !== undefined) this.bySubnet6!.deleteIf(peer.subnet6, peer);
  }

  /** The peer on exactly this subnet, of either family, if any. By an IPv6 subnet two peers claim, the newer. */
  get(subnet: Cidr | Cidr6): PeerEntry | undefined {
    if (isCidr6(subnet)) return subnet.prefixLength === this.subnetLength6 ? this.bySubnet6!.get(subnet) : undefined;
    return subnet.prefixLength === this.subnetLength ? this.byKey.get(subnet.network | 0) : undefined;
  }

  /** The peer whose subnet holds `destination`, if any. */
  lookup(destination: number): PeerEntry | undefined {
    // A node without IPv4 has no IPv4 subnets to find (its keys are IPv6 subnets' text).
    if (this.subnetLength === undefined) return undefined;
    return this.byKey.get(destination & this.subnetMask);
  }

  /** The peer whose IPv6 subnet holds the address at buf[offset, offset+16), if any; reads it in place. */
  lookup6(buf: Buffer, offset: number): PeerEntry | undefined {
    return this.bySubnet6?.lookup(buf, offset);
  }

  /** The peer that sends from this IPv4 underlay endpoint, if any. */
  fromEndpoint(ip: number, port: number): PeerEntry | undefined {
    return this.byEndpoint.lookup(ip, port);
  }

  /** The peer that sends from port `port` of the IPv6 address at words[at, at+4) (a DatagramBatch's sourceIps6), if any. */
  fromEndpoint6(words: Uint32Array, at: number, port: number): PeerEntry | undefined {
    return this.byEndpoint6.lookup(words, at, port);
  }

  get size(): number {
    return this.byKey.size;
  }

  peers(): IterableIterator<PeerEntry> {
    return this.byKey.values();
  }
}

/** A peer's key: its IPv4 subnet's network (signed), or without one its IPv6 subnet's canonical text (as the lease store keys it). */
function peerKey(peer: Peer): number | string {
  return peer.subnet === undefined ? formatCidr6(peer.subnet6!) : peer.subnet.network | 0;
}

/** The peer as logs name it: its subnets, then its endpoint (10.244.2.0/24+fd00:10:244:2::/64=198.18.0.2:8285). */
export function describePeer(peer: Peer): string {
  const subnets = [peer.subnet && formatCidr(peer.subnet), peer.subnet6 && formatCidr6(peer.subnet6)].filter((text) => text !== undefined);
  return `${subnets.join('+')}=${formatEndpoint(peer.endpoint)}`;
}
