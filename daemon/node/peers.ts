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
import type { Peer } from '../dataplane/index.js';
import { ipv6SubnetOf, type Lease, type NetworkConfig, type WatchEvent } from '../lease/index.js';
import { tryParseIPv4, type Cidr } from '../net/ipv4.js';
import { formatCidr6 } from '../net/ipv6.js';
import { formatEndpoint, parseEndpoint, type Endpoint, type UnderlayFamily } from '../transport/index.js';

/** Where the peers go: the data plane. */
export interface PeerSink {
  setPeer(peer: Peer): void;
  removePeer(subnet: Cidr): boolean;
}

export interface PeerFeedOptions {
  /** This node's subnet (CIDR text as stored) and public IP. */
  readonly ownSubnet: string;
  readonly ownPublicIp: string;
  /** The network config this node runs with: peers' subnet length, their default port, their paired IPv6 subnets. */
  readonly network: NetworkConfig;
  /** What this node's datagrams travel over: an IPv6 underlay sends to each peer's PublicIPv6. */
  readonly underlay: UnderlayFamily;
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

/**
 * The peer a lease describes under `network`, or why it is not one. With
 * IPv6 enabled the peer also routes the IPv6 subnet paired with its IPv4
 * one; a lease outside the Network (left from before a forced config change)
 * has no pair and keeps its IPv4 route only.
 */
export function peerFromLease(lease: Lease, network: NetworkConfig, underlay: UnderlayFamily = 4): Peer | string {
  if (lease.backendType !== 'udp') return `backend ${lease.backendType} is not udp`;
  const ip = tryParseIPv4(lease.publicIP);
  if (ip < 0) return `public IP ${lease.publicIP} is not IPv4`;
  const port = lease.backendData.Port ?? network.backend.port;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) return `port ${String(port)} is invalid`;
  if (lease.cidr.prefixLength !== network.subnetLen) return `subnet is not a /${network.subnetLen}`;
  const subnet6 = ipv6SubnetOf(network, lease.cidr);
  let endpoint: Endpoint = { address: lease.publicIP, ip, port };
  if (underlay === 6) {
    // The lease decoder has checked PublicIPv6 is an IPv6 address.
    if (lease.publicIPv6 === undefined) return 'its node publishes no PublicIPv6, and this node sends over an IPv6 underlay (--underlay ipv6)';
    endpoint = parseEndpoint(lease.publicIPv6, port);
  }
  return { subnet: lease.cidr, ...(subnet6 ? { subnet6 } : {}), endpoint, sealerId: ip };
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
}

export class PeerFeed {
  private readonly options: PeerFeedOptions;
  private readonly log: Logger;
  /** The peers in the table, by subnet text, with the lease each came from. */
  private readonly peers = new Map<string, { readonly peer: Peer; readonly lease: Lease }>();
  /** Peers the store forgot, and since when: dropped once graceMs has passed without their lease. */
  private readonly unconfirmed = new Map<string, number>();
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
    const { ownSubnet, ownPublicIp } = this.options;
    const listed = new Set<string>();
    let own: Lease | undefined;
    let changed = 0;
    for (const lease of leases) {
      listed.add(lease.subnet);
      if (lease.subnet === ownSubnet) own = lease;
      else if (this.upsert(lease, seq, cause === 'start' ? undefined : 'listed')) changed++;
    }
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
    else if (own.publicIP !== ownPublicIp) this.options.onOwnLeaseInDoubt(`the store says the subnet belongs to ${own.publicIP}`);
    if (!this.ready) {
      this.ready = true;
      this.options.onReady();
    }
  }

  private added(lease: Lease, seq: string): void {
    if (lease.subnet === this.options.ownSubnet) {
      // This node's own re-assertion coming back, or another node claiming the subnet.
      if (lease.publicIP !== this.options.ownPublicIp) this.options.onOwnLeaseInDoubt(`the subnet now belongs to ${lease.publicIP}`);
      return;
    }
    this.upsert(lease, seq, 'added');
  }

  private gone(lease: Lease, type: 'removed' | 'expired', seq: string): void {
    if (lease.subnet === this.options.ownSubnet) return this.options.onOwnLeaseInDoubt(`the lease was ${type}`);
    const known = this.peers.get(lease.subnet);
    if (known === undefined) return;
    this.drop(lease.subnet);
    this.log.info({ change: type, subnet: lease.subnet, publicIP: known.lease.publicIP, node: known.lease.nodeName, seq, peers: this.peers.size }, 'peer removed');
  }

  /**
   * Puts the lease's peer in the table (confirming it if the store had
   * forgotten it). Logs `how` it came unless it is unchanged; true if the
   * table changed.
   */
  private upsert(lease: Lease, seq: string, how: string | undefined): boolean {
    const known = this.peers.get(lease.subnet);
    const wasUnconfirmed = this.unconfirmed.delete(lease.subnet);
    const peer = peerFromLease(lease, this.options.network, this.options.underlay);
    if (typeof peer === 'string') {
      this.log.warn({ subnet: lease.subnet, reason: peer, seq }, 'lease skipped');
      if (known !== undefined) this.drop(lease.subnet);
      return known !== undefined;
    }
    const same = known !== undefined && formatEndpoint(known.peer.endpoint) === formatEndpoint(peer.endpoint);
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

  private drop(subnet: string): void {
    const known = this.peers.get(subnet);
    if (known === undefined) return;
    this.peers.delete(subnet);
    this.unconfirmed.delete(subnet);
    this.options.sink.removePeer(known.peer.subnet);
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
      this.log.warn({ subnet, publicIP: known?.lease.publicIP, node: known?.lease.nodeName, graceMs: this.options.graceMs }, 'peer dropped: its lease was not re-asserted within the grace period');
    }
    this.armGraceTimer();
  }
}
