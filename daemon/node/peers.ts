/**
 * From leases to peers: the lease watch's snapshot and changes become whole
 * peer tables for the data plane (flannel's route events, folded into
 * "here is every peer now"). This node's own lease going away, or passing
 * to another address, is reported as lost.
 */
import type { Logger } from 'pino';
import type { Peer } from '../dataplane/index.js';
import type { Lease, LeaseWatch } from '../lease/index.js';
import { parseCidr, tryParseIPv4 } from '../net/ipv4.js';

export interface LeaseFeedOptions {
  /** This node's subnet (CIDR text as stored) and public IP. */
  ownSubnet: string;
  ownPublicIp: string;
  subnetLength: number;
  /** Port to use when a lease does not say (flannel's udp backend data: {Port}). */
  defaultPort: number;
  logger: Logger;
  onPeers(peers: Peer[]): void;
  onOwnLeaseLost(reason: string): void;
}

/** The peer a lease describes, or why it is not one. */
export function peerFromLease(lease: Lease, subnetLength: number, defaultPort: number): Peer | string {
  if (lease.backendType !== 'udp') return `backend ${lease.backendType} is not udp`;
  const ip = tryParseIPv4(lease.publicIP);
  if (ip < 0) return `public IP ${lease.publicIP} is not IPv4`;
  const port = lease.backendData.Port ?? defaultPort;
  if (typeof port !== 'number' || !Number.isInteger(port) || port < 1 || port > 65535) return `port ${String(port)} is invalid`;
  const subnet = parseCidr(lease.subnet);
  if (subnet.prefixLength !== subnetLength) return `subnet is not a /${subnetLength}`;
  return { subnet, endpoint: { address: lease.publicIP, ip, port } };
}

/** Consumes the watch until it ends; resolves then, rejects if the watch fails for good. */
export async function feedPeersFromLeases(watch: LeaseWatch, options: LeaseFeedOptions): Promise<void> {
  const log = options.logger.child({ component: 'lease-feed' });
  const leases = new Map<string, Lease>();
  const publish = () => {
    const peers: Peer[] = [];
    for (const lease of leases.values()) {
      if (lease.subnet === options.ownSubnet) continue;
      const peer = peerFromLease(lease, options.subnetLength, options.defaultPort);
      if (typeof peer === 'string') log.warn({ subnet: lease.subnet, reason: peer }, 'lease skipped');
      else peers.push(peer);
    }
    options.onPeers(peers);
  };

  for await (const event of watch) {
    if (event.type === 'snapshot') {
      leases.clear();
      for (const lease of event.leases) leases.set(lease.subnet, lease);
      log.info({ leases: leases.size, seq: event.seq }, 'lease snapshot');
      if (!leases.has(options.ownSubnet)) return options.onOwnLeaseLost('the lease is missing from the snapshot');
      publish();
      continue;
    }
    const { lease } = event;
    if (event.type === 'renewed') {
      leases.set(lease.subnet, lease);
      continue; // Only the expiry moved: the peer table stays as it is.
    }
    log.info({ change: event.type, subnet: lease.subnet, publicIP: lease.publicIP, node: lease.nodeName, seq: event.seq }, 'lease changed');
    if (event.type === 'added') leases.set(lease.subnet, lease);
    else leases.delete(lease.subnet);
    if (lease.subnet === options.ownSubnet) {
      if (event.type !== 'added') return options.onOwnLeaseLost(`the lease was ${event.type}`);
      if (lease.publicIP !== options.ownPublicIp) return options.onOwnLeaseLost(`the subnet now belongs to ${lease.publicIP}`);
      continue;
    }
    publish();
  }
}
