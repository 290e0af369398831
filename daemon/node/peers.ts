/**
 * From leases to peers: each lease event becomes one change to the data
 * plane's peer table (flannel's setRoute and removeRoute), so an event costs
 * the same at ten nodes as at ten thousand, and the log says what changed,
 * not the whole table.
 *
 * The store is soft state. A peer the store says was removed or expired goes
 * at once. A peer the store merely forgot (it lost its data, or a listing
 * after a gap no longer shows it) stays, unconfirmed, for the grace period:
 * its node re-asserts its lease within seconds, and only a peer that never
 * does is dropped. This node's own lease going away, or another node naming
 * its subnet, is handed to the lease keeper, which re-asserts it and decides
 * whether it is truly lost (revoked, or taken).
 */
import type { Logger } from 'pino';
import type { Peer, PeerTrafficView } from '../dataplane/index.js';
import { ownerAddress, ownerLogFields, subnetsOfLease, type Lease, type NetworkConfig, type WatchEvent } from '../lease/index.js';
import { tryParseIPv4, type Cidr } from '../net/ipv4.js';
import { formatCidr6, isCidr6, type Cidr6 } from '../net/ipv6.js';
import { formatEndpoint, parseEndpoint, type Endpoint, type TransportFamily } from '../transport/index.js';

/** Where the peers go: the data plane. */
export interface PeerSink {
  setPeer(peer: Peer): void;
  removePeer(subnet: Cidr | Cidr6): boolean;
}

export interface PeerFeedOptions {
  /** This node's subnet (CIDR text as stored) and the address its lease belongs to (ownerAddress). */
  readonly ownSubnet: string;
  readonly ownOwner: string;
  /** The network config this node runs with: peers' subnet length, their default port, their paired IPv6 subnets. */
  readonly network: NetworkConfig;
  /** What this node's datagrams travel over: IPv4, IPv6 (to each peer's PublicIPv6), or both (each peer over the family both nodes listen on). */
  readonly underlay: TransportFamily;
  /**
   * This node's sender ID (sealerIdOf its lease) when a cluster key seals the
   * datagrams: a peer whose seals would name the same sender as this node, or
   * as another peer, is left out, since two senders under one key with one ID
   * would repeat nonces. Absent without a cluster key.
   */
  readonly ownSealerId?: number;
  /** How long a peer the store forgot is kept while its node re-asserts its lease. */
  readonly graceMs: number;
  readonly logger: Logger;
  readonly sink: PeerSink;
  /** The first listing is applied: the node knows its peers. */
  onReady(): void;
  /** This node's lease went away, or another node names its subnet: re-assert it. */
  onOwnLeaseInDoubt(reason: string): void;
  /** The store lost its data: re-assert this node's lease and the network config. */
  onStoreReset(): void;
  /** The stored network config was written or deleted. */
  onConfigChanged(): void;
}

/** The underlay a node listens on, as its lease's BackendData names it ("Underlay"). */
const UNDERLAY_NAMES: ReadonlyMap<unknown, TransportFamily> = new Map<unknown, TransportFamily>([
  ['ipv4', 4],
  ['ipv6', 6],
  ['dual', 'dual'],
]);

const UNDERLAY_FLAGS: Readonly<Record<string, string>> = { 4: 'ipv4', 6: 'ipv6', dual: 'dual' };

/**
 * The BackendData a node publishes: its port, and which underlay it listens
 * on whenever a peer could guess wrong (it publishes a PublicIPv6, or sends
 * over more than IPv4), so that peers on other underlays choose the family
 * it listens on. A node with IPv4 alone publishes flannel's record.
 */
export function backendDataFor(port: number, underlay: TransportFamily, publishesIPv6: boolean): Record<string, unknown> | undefined {
  if (underlay === 4 && !publishesIPv6) return undefined;
  return { Port: port, Underlay: UNDERLAY_FLAGS[underlay] };
}

/**
 * The underlay a lease's node listens on: the one its BackendData names, or
 * for a lease from before the marker, IPv4 with a PublicIP and IPv6 without;
 * undefined for a name that is none of the three.
 */
export function underlayOf(lease: Pick<Lease, 'backendData' | 'publicIP'>): TransportFamily | undefined {
  const named = lease.backendData['Underlay'];
  if (named === undefined) return lease.publicIP === undefined ? 6 : 4;
  return UNDERLAY_NAMES.get(named);
}

/**
 * The endpoint this node reaches the lease's node at, or why there is none.
 * Each node sends over the family both listen on, IPv4 first, so both ends
 * of a pair make the same choice, and each finds the other's datagrams on
 * the endpoint it sends to. A lease from before the Underlay marker names
 * none: its node listens on IPv4, or, without a PublicIP, on IPv6; and a
 * node on IPv6 alone reaches it at its PublicIPv6, as it did before the
 * marker existed.
 */
function endpointOf(lease: Lease, port: number, underlay: TransportFamily): Endpoint | string {
  const named = lease.backendData['Underlay'];
  const theirs = underlayOf(lease);
  if (theirs === undefined) return `BackendData.Underlay ${JSON.stringify(named)} is not "ipv4", "ipv6" or "dual"`;
  // The lease decoder has checked that PublicIP and PublicIPv6 are addresses of their families.
  if (lease.publicIP !== undefined && underlay !== 6 && theirs !== 6) return { address: lease.publicIP, ip: tryParseIPv4(lease.publicIP), port };
  const over6 = lease.publicIPv6 !== undefined && underlay !== 4 && (theirs !== 4 || (underlay === 6 && named === undefined));
  if (over6) return parseEndpoint(lease.publicIPv6!, port);
  if (underlay === 6 && lease.publicIPv6 === undefined) return 'its node publishes no PublicIPv6, and this node sends over an IPv6 underlay (--underlay ipv6)';
  if (underlay === 4 && lease.publicIP === undefined) return 'its node publishes no PublicIP, and this node sends over an IPv4 underlay';
  const listens = theirs === 'dual' ? 'both families' : `IPv${theirs}`;
  const publishes = [lease.publicIP && 'a PublicIP', lease.publicIPv6 && 'a PublicIPv6'].filter(Boolean).join(' and ') || 'neither address';
  return `it shares no underlay family with this node (--underlay ${UNDERLAY_FLAGS[underlay]}): it listens on ${listens} and publishes ${publishes}`;
}

/**
 * The peer a lease describes under `network`, or why it is not one. With
 * dual stack the peer also routes the IPv6 subnet paired with its IPv4 one;
 * a lease outside the Network (left from before a forced config change) has
 * no pair and keeps its IPv4 route only. In an IPv6-only network the lease's
 * subnet is an IPv6 one.
 */
export function peerFromLease(lease: Lease, network: NetworkConfig, underlay: TransportFamily = 4): Peer | string {
  if (lease.backendType !== 'udp') return `backend ${lease.backendType} is not udp`;
  const port = lease.backendData.Port ?? network.backend.port;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) return `port ${String(port)} is invalid`;
  const subnets = subnetsOfLease(network, lease.cidr);
  const keyLength = isCidr6(lease.cidr) ? network.ipv6?.subnetLen : network.ipv4?.subnetLen;
  if (keyLength === undefined) return `subnet is IPv${isCidr6(lease.cidr) ? 6 : 4}, which the network config ${isCidr6(lease.cidr) ? 'keys no leases by (it has IPv4)' : 'does not carry (EnableIPv4 is false)'}`;
  if (lease.cidr.prefixLength !== keyLength) return `subnet is not a /${keyLength}`;
  const endpoint = endpointOf(lease, port, underlay);
  if (typeof endpoint === 'string') return endpoint;
  return { ...(subnets.ipv4 ? { subnet: subnets.ipv4 } : {}), ...(subnets.ipv6 ? { subnet6: subnets.ipv6 } : {}), endpoint, sealerId: sealerIdOf(lease) };
}

/** Sender IDs of nodes without a PublicIP: 0.0.0.0/8. */
const SENDER_ID_MASK = 0xffffff;

/**
 * The 32 bits that tell this lease's node apart in the nonces of its seals:
 * its PublicIP, unique in the store. A node without one (no IPv4 underlay
 * address) is told apart by its subnet instead: the low 24 bits of the
 * subnet's number among all subnets of its length (its address shifted
 * right by the host bits). Those lie in 0.0.0.0/8, where no PublicIP can,
 * and differ for any two subnets less than 2^24 apart, so for any two of
 * the allocatable range; PeerFeed leaves out a peer whose ID clashes anyway.
 */
export function sealerIdOf(lease: Pick<Lease, 'publicIP' | 'cidr'>): number {
  if (lease.publicIP !== undefined) return tryParseIPv4(lease.publicIP);
  const { cidr } = lease;
  if (!isCidr6(cidr)) return (cidr.network >>> (32 - cidr.prefixLength)) & SENDER_ID_MASK;
  // The subnet's number ends at bit prefixLength of the address; its low 32 bits span at most two words.
  const end = cidr.prefixLength;
  const word = Math.ceil(end / 32) - 1;
  const shift = 32 * (word + 1) - end;
  const low = cidr.network[word]! >>> shift;
  const high = word > 0 && shift > 0 ? cidr.network[word - 1]! << (32 - shift) : 0;
  return (high | low) & SENDER_ID_MASK;
}


/** A peer as /status shows it. */
export interface PeerView {
  readonly subnet: string;
  /** The paired IPv6 subnet, when the network config enables IPv6. */
  readonly ipv6Subnet?: string;
  readonly endpoint: string;
  readonly node: string;
  /** Set while the store has forgotten this peer's lease: since when (epoch ms). */
  readonly unconfirmedSince?: number;
  /** The data plane's figures for this peer since its entry was made (absent from older daemons). */
  readonly traffic?: PeerTrafficView;
}

/** A lease the feed left out of the peer table, and why. */
export interface SkippedLease {
  readonly subnet: string;
  readonly node: string;
  readonly reason: string;
}

export class PeerFeed {
  private readonly options: PeerFeedOptions;
  private readonly log: Logger;
  /** The peers in the table, by subnet text, with the lease each came from. */
  private readonly peers = new Map<string, { readonly peer: Peer; readonly lease: Lease }>();
  /** With a cluster key, the subnet of the peer that names each sender ID (see ownSealerId). */
  private readonly senders = new Map<number, string>();
  /** Peers the store forgot, and since when: dropped once graceMs has passed without their lease. */
  private readonly unconfirmed = new Map<string, number>();
  /** Leases left out of the table, by subnet, with why: what /status shows an operator. */
  private readonly skipped = new Map<string, SkippedLease>();
  /** Every subnet the store holds a lease on as last seen, this node's own included; undefined before the first listing. */
  private leased: Set<string> | undefined;
  private graceTimer: NodeJS.Timeout | undefined;
  private ready = false;

  constructor(options: PeerFeedOptions) {
    this.options = options;
    this.log = options.logger.child({ component: 'lease-feed' });
  }

  get size(): number {
    return this.peers.size;
  }

  get unconfirmedCount(): number {
    return this.unconfirmed.size;
  }

  /** Leases in the store as last seen, this node's own included; undefined before the first listing. */
  get leaseCount(): number | undefined {
    return this.leased?.size;
  }

  skippedLeases(): SkippedLease[] {
    return [...this.skipped.values()];
  }

  view(): PeerView[] {
    return [...this.peers.entries()].map(([subnet, { peer, lease }]) => {
      const since = this.unconfirmed.get(subnet);
      return {
        subnet,
        ...(peer.subnet6 ? { ipv6Subnet: formatCidr6(peer.subnet6) } : {}),
        endpoint: formatEndpoint(peer.endpoint),
        node: lease.nodeName,
        ...(since !== undefined ? { unconfirmedSince: since } : {}),
      };
    });
  }

  stop(): void {
    if (this.graceTimer !== undefined) clearTimeout(this.graceTimer);
  }

  handle(event: WatchEvent): void {
    switch (event.type) {
      case 'snapshot':
        return this.applyListing(event.leases, event.cause, event.seq);
      case 'added':
        return this.added(event.lease, event.seq);
      case 'removed':
      case 'expired':
        return this.gone(event.lease, event.type, event.seq);
      case 'reset': {
        const now = Date.now();
        for (const subnet of this.peers.keys()) if (!this.unconfirmed.has(subnet)) this.unconfirmed.set(subnet, now);
        this.armGraceTimer();
        this.log.warn({ peers: this.peers.size, graceMs: this.options.graceMs }, 'the lease store lost its data: forwarding to every known peer until it re-asserts its lease');
        this.options.onStoreReset();
        return;
      }
      case 'config':
        this.options.onConfigChanged();
        return;
    }
  }

  private applyListing(leases: readonly Lease[], cause: string, seq: string): void {
    const { ownSubnet, ownOwner } = this.options;
    const listed = new Set<string>();
    this.leased = listed;
    let own: Lease | undefined;
    let changed = 0;
    for (const lease of leases) {
      listed.add(lease.subnet);
      if (lease.subnet === ownSubnet) own = lease;
      else if (this.upsert(lease, seq, cause === 'start' ? undefined : 'listed')) changed++;
    }
    for (const subnet of this.skipped.keys()) if (!listed.has(subnet)) this.skipped.delete(subnet);
    // Absent from a listing is not the same as removed: keep them for the grace period.
    const now = Date.now();
    let forgotten = 0;
    for (const subnet of this.peers.keys()) {
      if (listed.has(subnet) || this.unconfirmed.has(subnet)) continue;
      this.unconfirmed.set(subnet, now);
      forgotten++;
    }
    this.armGraceTimer();
    this.log.info({ cause, leases: leases.length, peers: this.peers.size, changed, unconfirmed: this.unconfirmed.size, forgotten, seq }, 'lease listing applied');
    if (own === undefined) this.options.onOwnLeaseInDoubt('the lease is missing from the store');
    else if (ownerAddress(own) !== ownOwner) this.options.onOwnLeaseInDoubt(`the store says the subnet belongs to ${ownerAddress(own)}`);
    if (!this.ready) {
      this.ready = true;
      this.options.onReady();
    }
  }

  private added(lease: Lease, seq: string): void {
    this.leased?.add(lease.subnet);
    if (lease.subnet === this.options.ownSubnet) {
      // This node's own re-assertion coming back, or another node claiming the subnet.
      if (ownerAddress(lease) !== this.options.ownOwner) this.options.onOwnLeaseInDoubt(`the subnet now belongs to ${ownerAddress(lease)}`);
      return;
    }
    this.upsert(lease, seq, 'added');
  }

  private gone(lease: Lease, type: 'removed' | 'expired', seq: string): void {
    this.leased?.delete(lease.subnet);
    this.skipped.delete(lease.subnet);
    if (lease.subnet === this.options.ownSubnet) return this.options.onOwnLeaseInDoubt(`the lease was ${type}`);
    const known = this.peers.get(lease.subnet);
    if (known === undefined) return;
    this.drop(lease.subnet);
    this.log.info({ change: type, subnet: lease.subnet, ...ownerLogFields(known.lease), node: known.lease.nodeName, seq, peers: this.peers.size }, 'peer removed');
  }

  /**
   * Puts the lease's peer in the table (confirming it if the store had
   * forgotten it). Logs `how` it came unless it is unchanged; true if the
   * table changed.
   */
  private upsert(lease: Lease, seq: string, how: string | undefined): boolean {
    const known = this.peers.get(lease.subnet);
    const wasUnconfirmed = this.unconfirmed.delete(lease.subnet);
    const found = peerFromLease(lease, this.options.network, this.options.underlay);
    const peer = typeof found === 'string' ? found : (this.senderClash(found, lease.subnet) ?? found);
    if (typeof peer === 'string') {
      this.skipped.set(lease.subnet, { subnet: lease.subnet, node: lease.nodeName, reason: peer });
      this.log.warn({ subnet: lease.subnet, reason: peer, seq }, 'lease skipped');
      if (known !== undefined) this.drop(lease.subnet);
      return known !== undefined;
    }
    this.skipped.delete(lease.subnet);
    // A new sender ID (the lease gained or changed its PublicIP) is a change too: ingress opens seals with it.
    const same = known !== undefined && formatEndpoint(known.peer.endpoint) === formatEndpoint(peer.endpoint) && known.peer.sealerId === peer.sealerId;
    if (known !== undefined) this.forgetSender(known.peer, lease.subnet);
    if (this.options.ownSealerId !== undefined) this.senders.set(peer.sealerId!, lease.subnet);
    this.peers.set(lease.subnet, { peer, lease });
    if (same) {
      if (wasUnconfirmed) this.log.info({ subnet: lease.subnet, node: lease.nodeName, seq }, 'peer re-asserted its lease');
      return false;
    }
    this.options.sink.setPeer(peer);
    if (how !== undefined) {
      const endpoint = formatEndpoint(peer.endpoint);
      const ipv6Subnet = peer.subnet6 && formatCidr6(peer.subnet6);
      this.log.info({ change: known === undefined ? how : 'moved', subnet: lease.subnet, ipv6Subnet, endpoint, node: lease.nodeName, seq, peers: this.peers.size }, known === undefined ? 'peer added' : 'peer moved to a new endpoint');
    }
    return true;
  }

  /** Why `peer` may not be sealed to (its sender ID is this node's or another peer's), or undefined. */
  private senderClash(peer: Peer, subnet: string): string | undefined {
    const { ownSealerId } = this.options;
    if (ownSealerId === undefined) return undefined;
    const id = peer.sealerId!;
    const holder = id === ownSealerId ? 'this node' : this.senders.get(id);
    if (holder === undefined || holder === subnet) return undefined;
    return `its seals would name the same sender (ID ${id}) as ${holder === 'this node' ? holder : `the node on ${holder}`}, which would repeat nonces under the cluster key`;
  }

  private forgetSender(peer: Peer, subnet: string): void {
    if (this.senders.get(peer.sealerId!) === subnet) this.senders.delete(peer.sealerId!);
  }

  private drop(subnet: string): void {
    const known = this.peers.get(subnet);
    if (known === undefined) return;
    this.forgetSender(known.peer, subnet);
    this.peers.delete(subnet);
    this.unconfirmed.delete(subnet);
    this.options.sink.removePeer(known.peer.subnet ?? known.peer.subnet6!);
  }

  private armGraceTimer(): void {
    if (this.graceTimer !== undefined) clearTimeout(this.graceTimer);
    this.graceTimer = undefined;
    let oldest = Infinity;
    for (const since of this.unconfirmed.values()) oldest = Math.min(oldest, since);
    if (oldest === Infinity) return;
    this.graceTimer = setTimeout(() => this.dropForgotten(), Math.max(0, oldest + this.options.graceMs - Date.now()));
    this.graceTimer.unref();
  }

  private dropForgotten(): void {
    const now = Date.now();
    for (const [subnet, since] of this.unconfirmed) {
      if (since + this.options.graceMs > now) continue;
      const known = this.peers.get(subnet);
      this.drop(subnet);
      this.log.warn({ subnet, ...(known && ownerLogFields(known.lease)), node: known?.lease.nodeName, graceMs: this.options.graceMs }, 'peer dropped: its lease was not re-asserted within the grace period');
    }
    this.armGraceTimer();
  }
}
