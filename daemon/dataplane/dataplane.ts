/**
 * The data plane: a TUN device and a packet transport, joined by the peer
 * table. This file is the wiring; the loops are the stages, egress in
 * send.ts and ingress in receive.ts. It knows nothing of leases or Redis;
 * the daemon's wiring feeds it peers with setPeer() and removePeer() (or a
 * fixed list with setPeers()).
 *
 * The underlay is the transport's family; peers must have endpoints of it.
 * The node carries IPv4, IPv6 or both, as its subnets say: a packet of a
 * family it lacks is dropped as 'ipv4-disabled' or 'ipv6-disabled'.
 */
import type { Logger } from 'pino';
import type { TunDevice } from '../tun/index.js';
import type { PacketTransport } from '../transport/index.js';
import { formatCidr, type Cidr } from '../net/ipv4.js';
import { formatCidr6, writeIPv6, type Cidr6, type IPv6Address } from '../net/ipv6.js';
import { Counters, type CountersSnapshot } from './counters.js';
import { describePeer, PeerTable, type Peer } from './peer-table.js';
import { Egress } from './send.js';
import { Ingress } from './receive.js';
import type { Sealer } from './sealing.js';

export interface DataPlaneOptions {
  tun: TunDevice;
  transport: PacketTransport;
  /**
   * This node's IPv4 subnet: the only IPv4 destinations ingress delivers to. Without it (an IPv6-only
   * cluster) IPv4 is dropped as 'ipv4-disabled'. It or localSubnet6 is required.
   */
  localSubnet?: Cidr;
  /** This node's overlay address (the TUN's), the source of ICMP errors; given exactly when localSubnet is. */
  overlayAddress?: number;
  /** This node's IPv6 subnet (dual-stack or IPv6-only): the only IPv6 destinations ingress delivers to. Without it IPv6 is dropped as 'ipv6-disabled'. */
  localSubnet6?: Cidr6;
  /** This node's IPv6 overlay address, the source of ICMPv6 errors; default the first address of localSubnet6. */
  overlayAddress6?: IPv6Address;
  /** Largest IP packet that fits one UDP datagram on the underlay: underlay MTU - 28. */
  maxPacket: number;
  logger: Logger;
  /** ICMP errors written back into the TUN per second at most. */
  icmpRatePerSecond?: number;
  /**
   * Authenticated encapsulation; without it datagrams are bare packets (flannel's format). maxPacket must leave room for SEAL_OVERHEAD.
   * Its nonce holds a 32-bit sender id: over an IPv6 underlay each peer must name its own (Peer.sealerId).
   */
  sealer?: Sealer;
}

const defaults = {
  icmpRatePerSecond: 100,
} as const;

export class DataPlane {
  private readonly counters = new Counters();
  private readonly egress: Egress;
  private readonly ingress: Ingress;
  private readonly log: Logger;

  constructor(private readonly options: DataPlaneOptions) {
    const { tun, transport, sealer, localSubnet, localSubnet6 } = options;
    if (localSubnet === undefined && localSubnet6 === undefined) {
      throw new RangeError('a data plane needs localSubnet, localSubnet6 or both: this node carries no family');
    }
    if ((localSubnet === undefined) !== (options.overlayAddress === undefined)) {
      throw new RangeError('localSubnet and overlayAddress go together: give both (the node carries IPv4) or neither');
    }
    const peers = this.emptyTable();
    let overlayAddress6: Buffer | undefined;
    if (localSubnet6) {
      overlayAddress6 = Buffer.alloc(16);
      writeIPv6(overlayAddress6, 0, options.overlayAddress6 ?? localSubnet6.network);
    }
    this.egress = new Egress(this.counters, peers, {
      tun,
      transport,
      maxPacket: options.maxPacket,
      overlayAddress: options.overlayAddress,
      overlayAddress6,
      icmpRatePerSecond: options.icmpRatePerSecond ?? defaults.icmpRatePerSecond,
      sealer,
    });
    this.ingress = new Ingress(this.counters, peers, { tun, batchCapacity: transport.batchCapacity, localSubnet, localSubnet6, sealer });
    this.log = options.logger.child({ component: 'dataplane' });
  }

  /** Replaces the whole peer table at once (static mode); the next batch sees the new one. */
  setPeers(peers: Iterable<Peer>): void {
    const list = [...peers];
    for (const peer of list) this.checkSealable(peer);
    const next = this.emptyTable(list);
    this.log.info({ peers: [...next.peers()].map(describePeer) }, 'peer table replaced');
    this.egress.peers = next;
    this.ingress.peers = next;
  }

  /** Adds a peer, or moves its subnet to a new endpoint. O(1): the next batch sees it. */
  setPeer(peer: Peer): void {
    this.checkSealable(peer);
    this.egress.peers.set(peer);
  }

  /** With a cluster key, a peer over an IPv6 underlay must say which 32-bit id its seals name. */
  private checkSealable(peer: Peer): void {
    if (this.options.sealer && peer.sealerId === undefined && peer.endpoint.ip6 !== undefined) {
      throw new RangeError(`peer ${describePeer(peer)} is refused: sealing over an IPv6 underlay needs the peer's sealerId`);
    }
  }

  /** Removes the peer on `subnet`, of either family; false if there was none. */
  removePeer(subnet: Cidr | Cidr6): boolean {
    return this.egress.peers.delete(subnet);
  }

  get peerTable(): PeerTable {
    return this.egress.peers;
  }

  start(onFatal: (err: Error) => void): void {
    const { tun, transport } = this.options;
    tun.start((batch) => this.egress.forward(batch), onFatal);
    transport.start((batch) => this.ingress.deliver(batch), onFatal);
    const { localSubnet, localSubnet6 } = this.options;
    const subnets = { ...(localSubnet ? { subnet: formatCidr(localSubnet) } : {}), ...(localSubnet6 ? { subnet6: formatCidr6(localSubnet6) } : {}) };
    this.log.info({ tun: tun.name, port: transport.port, underlay: transport.family === 'dual' ? 'IPv4+IPv6' : `IPv${transport.family}`, ...subnets }, 'data plane started');
  }

  async stop(): Promise<void> {
    this.options.tun.close();
    await this.options.transport.close();
    this.log.info({ counters: this.snapshot() }, 'data plane stopped');
  }

  snapshot(): CountersSnapshot {
    return this.counters.snapshot(this.options.transport);
  }

  /** A table for this node's subnet lengths and underlay: it carries each family the node has a subnet of. */
  private emptyTable(peers: Iterable<Peer> = []): PeerTable {
    const { localSubnet, localSubnet6, transport } = this.options;
    return new PeerTable(localSubnet?.prefixLength, peers, localSubnet6?.prefixLength, transport.family);
  }
}
