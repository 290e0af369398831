/**
 * What the daemon reports on /readyz, /status and /metrics: one object that
 * each start-up step tells what it made (the store, the lease, the data
 * path, the lease watch), and that reads the current figures from those
 * parts whenever it is asked: the lease as the keeper last renewed it, the
 * data plane's counters, the feed's peers. Nothing is copied, so nothing
 * goes stale.
 */
import type { CountersSnapshot, DataPlane, PeerEntry, PeerTraffic, PeerTrafficView } from '../dataplane/index.js';
import type { MetricsSource, PeerTrafficSample } from '../http/metrics.js';
import type { StatusSource } from '../http/server.js';
import type { Lease, LeaseKeeper, LeaseWatch, SubnetManager } from '../lease/index.js';
import { emptyCounters } from '../dataplane/index.js';
import { formatCidr } from '../net/ipv4.js';
import { formatCidr6, type Cidr6 } from '../net/ipv6.js';
import { packageVersion } from '../version.js';
import type { PeerFeed, PeerView, SkippedLease } from './peers.js';
import { routesThrough } from './routes.js';

export interface NodeInfo {
  readonly name: string;
  /**
   * Absent on a node with no IPv4 underlay address (IPv6-only, IPv6 underlay).
   * Spelled as in the lease section; daemons before 2026-12 called it publicIp.
   */
  readonly publicIP?: string;
  readonly iface: string;
  /** This node's IPv4 subnet and the IPv4 cluster network; absent in an IPv6-only network. */
  readonly subnet?: string;
  readonly network?: string;
  /** This node's IPv6 subnet and the IPv6 cluster network, when the network config enables IPv6. */
  readonly ipv6Subnet?: string;
  readonly ipv6Network?: string;
  readonly tun: string;
  readonly mtu: number;
  readonly port: number;
  /**
   * The routes through the TUN in the node's main routing table, read from
   * the kernel at each request (/proc/net/route, /proc/net/ipv6_route): the
   * cluster networks, unless someone removed them. Absent before the data
   * path is open.
   */
  readonly routes?: readonly string[];
}

/** starting: before the first attempt; waiting: for a usable store (see reason); running: forwarding with known peers. */
export type NodeState = 'starting' | 'waiting' | 'running';

/**
 * The JSON document of GET /status: what `miniflannel status` and the test
 * lab read. Fields are only ever added, so an older CLI reads a newer daemon.
 */
export interface StatusDocument {
  /** The daemon's version (package.json); absent from older daemons. */
  readonly version?: string;
  readonly state: NodeState;
  /** Why the node is not running yet. */
  readonly reason?: string;
  readonly node: NodeInfo | null;
  /** null in static mode, and until the lease is acquired. */
  readonly lease: {
    /** The lease's key: the IPv4 subnet, or the IPv6 one in an IPv6-only network. */
    readonly subnet: string;
    /** The node's IPv6 subnet (paired with `subnet`, or `subnet` itself), when the network config enables IPv6. */
    readonly ipv6Subnet?: string;
    /** Absent on a node with no IPv4 underlay address. */
    readonly publicIP?: string;
    /** Set when the node published an IPv6 underlay address (--public-ipv6). */
    readonly publicIPv6?: string;
    readonly nodeName: string;
    readonly expiresAt: number | null;
    /** Renewals fall at least this long before expiry (--lease-renew-margin); absent until the node follows its lease, and from older daemons. */
    readonly renewMarginMs?: number;
    /** Set while renewing the lease fails (Redis unreachable): since when (epoch ms), how many attempts, the last error. */
    readonly renewalFailure?: { readonly since: number; readonly attempts: number; readonly error: string };
  } | null;
  /** null in static mode. */
  readonly store: {
    readonly address: string;
    readonly connected: boolean;
    /** Times the store was found to have lost its data. */
    readonly resets: number;
    /** Times this node put its lease back after the store lost it. */
    readonly leaseRestored: number;
    /** Full listings after the watch missed changes. */
    readonly resyncs: number;
    /** Leases in the store as this node last saw them, its own included; absent before the first listing. */
    readonly leases?: number;
  } | null;
  /** Every other node's peer entry, with its traffic (PeerView.traffic). */
  readonly peers: readonly PeerView[];
  /** Leases this node saw and left out of its peer table, each with the reason (logged as 'lease skipped'). */
  readonly skippedLeases?: readonly SkippedLease[];
  /** null until the data path is open. */
  readonly counters: CountersSnapshot | null;
  readonly uptimeSeconds: number;
}

/** What the status reads from each part: narrow, so that a test can hand in plain objects. */
export type StoreView = Pick<SubnetManager, 'address' | 'connected'>;
/** The lease as acquired, or the keeper, whose `lease` is the one it last renewed. */
export type LeaseView = { readonly lease: Lease } & Partial<Pick<LeaseKeeper, 'renewalFailure' | 'renewMarginMs'>>;
export type PlaneView = Pick<DataPlane, 'snapshot'> & { readonly peerTable: Pick<DataPlane['peerTable'], 'size' | 'peers'> };
export type FeedView = Pick<PeerFeed, 'view' | 'unconfirmedCount' | 'leaseCount' | 'skippedLeases'>;
export type WatchView = Pick<LeaseWatch, 'stats'>;

export interface NodeStatusOptions {
  /** Log lines the logger's destination dropped, for /metrics; 0 when not given. */
  readonly logLinesDropped?: () => number;
  /** The clock of the uptime; Date.now when not given. */
  readonly now?: () => number;
  /** The version reported; package.json's when not given. */
  readonly version?: string;
  /** The routes through a device, as the kernel holds them; routesThrough when not given. */
  readonly routesThrough?: (device: string) => string[];
}

export class NodeStatus implements StatusSource, MetricsSource {
  private state: NodeState = 'starting';
  private reason: string | undefined;
  private store: StoreView | undefined;
  private leaseView: LeaseView | undefined;
  private leaseIPv6Subnet: string | undefined;
  private info: NodeInfo | undefined;
  private plane: PlaneView | undefined;
  private feed: FeedView | undefined;
  private watch: WatchView | undefined;
  private restored = 0;
  private readonly now: () => number;
  private readonly startedAt: number;
  private readonly droppedLogLines: () => number;
  private readonly routes: (device: string) => string[];
  readonly version: string;

  constructor(options: NodeStatusOptions = {}) {
    this.now = options.now ?? Date.now;
    this.startedAt = this.now();
    this.droppedLogLines = options.logLinesDropped ?? (() => 0);
    this.routes = options.routesThrough ?? routesThrough;
    this.version = options.version ?? packageVersion();
  }

  // What the start-up steps made, in their order.

  storeOpened(store: StoreView): void {
    this.store = store;
  }

  /** `ipv6Subnet`: the IPv6 subnet paired with the lease's, when the network config enables IPv6. */
  leaseAcquired(lease: LeaseView, ipv6Subnet?: Cidr6): void {
    this.leaseView = lease;
    this.leaseIPv6Subnet = ipv6Subnet && formatCidr6(ipv6Subnet);
  }

  dataPathOpened(info: NodeInfo, plane: PlaneView): void {
    this.info = info;
    this.plane = plane;
  }

  /** The keeper replaces the lease as acquired: from now on the status shows each renewal. */
  following(parts: { keeper: LeaseView; feed: FeedView; watch: WatchView }): void {
    this.leaseView = parts.keeper;
    this.feed = parts.feed;
    this.watch = parts.watch;
  }

  // What happened since.

  waiting(reason: string): void {
    this.state = 'waiting';
    this.reason = reason;
  }

  running(): void {
    this.state = 'running';
    this.reason = undefined;
  }

  leaseRestored(): void {
    this.restored++;
  }

  // What the HTTP server reads.

  readiness(): { ready: boolean; reason?: string } {
    if (this.state === 'running') return { ready: true };
    return { ready: false, reason: this.reason ?? 'starting' };
  }

  status(): StatusDocument {
    const lease = this.leaseView?.lease;
    const store = this.store;
    const leases = this.feed?.leaseCount;
    const skipped = this.feed?.skippedLeases() ?? [];
    return {
      version: this.version,
      state: this.state,
      ...(this.reason !== undefined ? { reason: this.reason } : {}),
      node: this.info ? { ...this.info, routes: this.routes(this.info.tun) } : null,
      lease: lease ? this.leaseSection(lease) : null,
      store: store
        ? {
            address: store.address,
            connected: store.connected,
            resets: this.watch?.stats.resets ?? 0,
            leaseRestored: this.restored,
            resyncs: this.watch?.stats.resyncs ?? 0,
            ...(leases !== undefined ? { leases } : {}),
          }
        : null,
      peers: this.peerViews(),
      ...(skipped.length > 0 ? { skippedLeases: skipped } : {}),
      counters: this.plane?.snapshot() ?? null,
      uptimeSeconds: Math.round((this.now() - this.startedAt) / 1000),
    };
  }

  private leaseSection(lease: Lease): NonNullable<StatusDocument['lease']> {
    const renewMarginMs = this.leaseView?.renewMarginMs;
    const renewalFailure = this.leaseView?.renewalFailure;
    return {
      subnet: lease.subnet,
      ...(this.leaseIPv6Subnet !== undefined ? { ipv6Subnet: this.leaseIPv6Subnet } : {}),
      ...(lease.publicIP !== undefined ? { publicIP: lease.publicIP } : {}),
      ...(lease.publicIPv6 !== undefined ? { publicIPv6: lease.publicIPv6 } : {}),
      nodeName: lease.nodeName,
      expiresAt: lease.expiresAt,
      ...(renewMarginMs !== undefined ? { renewMarginMs } : {}),
      ...(renewalFailure !== undefined ? { renewalFailure } : {}),
    };
  }

  /**
   * The feed's view in lease mode, in static mode the peer table's (whose
   * peers have no node name); each with the traffic of its table entry.
   */
  private peerViews(): PeerView[] {
    const fed = this.feed?.view();
    if (!this.plane) return fed ?? [];
    const entries = new Map<string, PeerEntry>();
    for (const p of this.plane.peerTable.peers()) entries.set(p.subnet ? formatCidr(p.subnet) : formatCidr6(p.subnet6!), p);
    const views: PeerView[] =
      fed ??
      [...entries].map(([subnet, p]) => ({
        subnet,
        ...(p.subnet6 ? { ipv6Subnet: formatCidr6(p.subnet6) } : {}),
        endpoint: `${p.endpoint.address}:${p.endpoint.port}`,
        node: '',
      }));
    return views.map((view) => {
      const entry = entries.get(view.subnet);
      return entry ? { ...view, traffic: trafficView(entry) } : view;
    });
  }

  ready(): boolean {
    return this.state === 'running';
  }

  leaseRenewalFailing(): boolean | undefined {
    return this.leaseView && this.leaseView.renewalFailure !== undefined;
  }

  leases(): number | undefined {
    return this.feed?.leaseCount;
  }

  peerTraffic(): PeerTrafficSample[] {
    return this.peerViews().flatMap((view) => (view.traffic ? [{ subnet: view.subnet, node: view.node, traffic: view.traffic }] : []));
  }

  counters(): CountersSnapshot {
    return this.plane?.snapshot() ?? emptyCounters();
  }

  peers(): number {
    return this.plane?.peerTable.size ?? 0;
  }

  leaseExpiry(): number | undefined {
    const lease = this.leaseView?.lease;
    return lease ? (lease.expiresAt ?? 0) / 1000 : undefined;
  }

  storeConnected(): boolean | undefined {
    return this.store?.connected;
  }

  storeResets(): number | undefined {
    return this.store ? (this.watch?.stats.resets ?? 0) : undefined;
  }

  peersUnconfirmed(): number {
    return this.feed?.unconfirmedCount ?? 0;
  }

  logLinesDropped(): number {
    return this.droppedLogLines();
  }
}

function trafficView(traffic: PeerTraffic): PeerTrafficView {
  const { packetsSent, bytesSent, packetsReceived, bytesReceived, drops, lastReceivedAt } = traffic;
  return { packetsSent, bytesSent, packetsReceived, bytesReceived, drops, lastReceivedAt: lastReceivedAt === 0 ? null : lastReceivedAt };
}
