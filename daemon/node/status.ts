/**
 * What the daemon reports on /readyz and /status: one object that the
 * wiring fills in as the node comes up, read by the HTTP server on demand.
 */
import type { CountersSnapshot, DataPlane } from '../dataplane/index.js';
import type { StatusSource } from '../http/server.js';
import type { Lease, LeaseWatch, SubnetManager } from '../lease/index.js';
import { formatCidr } from '../net/ipv4.js';
import type { PeerFeed, PeerView } from './peers.js';

export interface NodeInfo {
  readonly name: string;
  readonly publicIp: string;
  readonly iface: string;
  readonly subnet: string;
  readonly network: string;
  readonly tun: string;
  readonly mtu: number;
  readonly port: number;
}

/** starting: before the first attempt; waiting: for a usable store (see reason); running: forwarding with known peers. */
export type NodeState = 'starting' | 'waiting' | 'running';

/** The JSON document of GET /status. */
export interface StatusDocument {
  readonly state: NodeState;
  /** Why the node is not running yet. */
  readonly reason?: string;
  readonly node: NodeInfo | null;
  readonly lease: { readonly subnet: string; readonly publicIP: string; readonly nodeName: string; readonly expiresAt: number | null } | null;
  readonly store: {
    readonly address: string;
    readonly connected: boolean;
    /** Times the store was found to have lost its data. */
    readonly resets: number;
    /** Times this node put its lease back after the store lost it. */
    readonly leaseRestored: number;
    /** Full listings after the watch missed changes. */
    readonly resyncs: number;
  } | null;
  readonly peers: readonly PeerView[];
  readonly counters: CountersSnapshot | null;
  readonly uptimeSeconds: number;
}

export class NodeStatus implements StatusSource {
  node: NodeInfo | undefined;
  lease: Lease | undefined;
  store: SubnetManager | undefined;
  plane: DataPlane | undefined;
  feed: PeerFeed | undefined;
  watch: LeaseWatch | undefined;
  resets = 0;
  restored = 0;
  private state: NodeState = 'starting';
  private reason: string | undefined;
  private readonly startedAt = Date.now();

  waiting(reason: string): void {
    this.state = 'waiting';
    this.reason = reason;
  }

  running(): void {
    this.state = 'running';
    this.reason = undefined;
  }

  readiness(): { ready: boolean; reason?: string } {
    if (this.state === 'running') return { ready: true };
    return { ready: false, reason: this.reason ?? 'starting' };
  }

  status(): StatusDocument {
    const lease = this.lease;
    const store = this.store;
    const peers =
      this.feed?.view() ??
      (this.plane ? [...this.plane.peerTable.peers()].map((p) => ({ subnet: formatCidr(p.subnet), endpoint: `${p.endpoint.address}:${p.endpoint.port}`, node: '' })) : []);
    return {
      state: this.state,
      ...(this.reason !== undefined ? { reason: this.reason } : {}),
      node: this.node ?? null,
      lease: lease ? { subnet: lease.subnet, publicIP: lease.publicIP, nodeName: lease.nodeName, expiresAt: lease.expiresAt } : null,
      store: store
        ? { address: store.address, connected: store.connected, resets: this.resets, leaseRestored: this.restored, resyncs: this.watch?.stats.resyncs ?? 0 }
        : null,
      peers,
      counters: this.plane?.snapshot() ?? null,
      uptimeSeconds: Math.round((Date.now() - this.startedAt) / 1000),
    };
  }
}
