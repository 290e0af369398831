/**
 * The path of one packet from a pod to a pod, hop by hop, as the store and
 * the two daemons' live state say it goes:
 *   1. the leases that hold the source and destination addresses;
 *   2. the source daemon, its route into its TUN, and the peer entry (the
 *      UDP endpoint) it sends the destination's subnet to;
 *   3. the overlay MTU of the two nodes;
 *   4. the destination daemon and its ingress checks: a known sender, a
 *      source inside that sender's subnet, a destination inside its own;
 *   5. the counters of both ends for this pair, and the node-wide drops
 *      whose reasons this path can meet.
 * Pure: the command reads the store and the daemons, this decides.
 *
 * A daemon older than the fields read here leaves them out; a hop that
 * needs one is "unknown", never guessed.
 */
import { holderOf, ownerAddress, subnetsOfLease, type Lease, type NetworkConfig } from '../../daemon/lease/index.js';
import type { EgressDropReason, IngressDropReason } from '../../daemon/dataplane/index.js';
import { cidrContains, formatCidr, parseCidr, tryParseIPv4 } from '../../daemon/net/ipv4.js';
import { cidr6Contains, formatCidr6, parseCidr6, parseIPv6, type IPv6Address } from '../../daemon/net/ipv6.js';
import { peerFromLease, underlayOf, type PeerView } from '../../daemon/node/peers.js';
import { formatEndpoint } from '../../daemon/transport/index.js';
import { humanBytes, humanDuration } from '../output.js';
import type { NodeLook, ReportedStatus } from './survey.js';

/** A pod address of either family, as given on the command line. */
export type PodAddress = { readonly family: 4; readonly text: string; readonly ip: number } | { readonly family: 6; readonly text: string; readonly ip: IPv6Address };

/** The address `text` names, or undefined if it is neither an IPv4 nor an IPv6 address. */
export function parsePodAddress(text: string): PodAddress | undefined {
  const ip = tryParseIPv4(text);
  if (ip >= 0) return { family: 4, text, ip };
  if (!text.includes(':')) return undefined;
  try {
    return { family: 6, text, ip: parseIPv6(text) };
  } catch {
    return undefined;
  }
}

/** The hops in the path's order; `same-node` replaces everything after the leases when both pods share a node. */
export const HOPS = [
  'source-lease',
  'destination-lease',
  'same-node',
  'source-daemon',
  'source-route',
  'source-peer',
  'path-mtu',
  'source-counters',
  'destination-daemon',
  'ingress-sender',
  'ingress-source',
  'ingress-destination',
  'destination-counters',
] as const;
export type HopName = (typeof HOPS)[number];

/** How a hop looks: `unknown` when a daemon did not answer, or is too old to report what the hop needs. */
export type HopStatus = 'ok' | 'broken' | 'unknown';

export interface Hop {
  readonly hop: HopName;
  readonly status: HopStatus;
  readonly detail: string;
}

/** The leases holding the two addresses, each absent when no lease does. */
export interface PathEnds {
  readonly source?: Lease;
  readonly destination?: Lease;
}

/** The lease whose subnet of the address's family holds it: with dual stack an IPv6 address lies in a lease's paired subnet. */
function leaseHolding(config: NetworkConfig, leases: readonly Lease[], address: PodAddress): Lease | undefined {
  return leases.find((lease) => {
    const subnets = subnetsOfLease(config, lease.cidr);
    if (address.family === 4) return subnets.ipv4 !== undefined && cidrContains(subnets.ipv4, address.ip);
    return subnets.ipv6 !== undefined && cidr6Contains(subnets.ipv6, address.ip);
  });
}

export function locate(config: NetworkConfig, leases: readonly Lease[], src: PodAddress, dst: PodAddress): PathEnds {
  const source = leaseHolding(config, leases, src);
  const destination = leaseHolding(config, leases, dst);
  return { ...(source ? { source } : {}), ...(destination ? { destination } : {}) };
}

/** The nodes whose daemons the trace asks: none unless the two addresses lie on two nodes. */
export function nodesToAsk(ends: PathEnds): Lease[] {
  const { source, destination } = ends;
  return source && destination && source !== destination ? [source, destination] : [];
}

export interface TraceInput {
  readonly config: NetworkConfig;
  readonly src: PodAddress;
  readonly dst: PodAddress;
  readonly ends: PathEnds;
  /** What the daemons of nodesToAsk(ends) answered. */
  readonly looks: readonly NodeLook[];
  /** The clock "last received" is measured against (epoch ms). */
  readonly now: number;
}

const nodeOf = (lease: Lease): string => lease.nodeName || ownerAddress(lease);

/** Whether the subnet text (either family) holds the address; false for text that is not a subnet of its family. */
function subnetHolds(text: string | undefined, address: PodAddress): boolean {
  if (text === undefined || text.includes(':') !== (address.family === 6)) return false;
  try {
    return address.family === 4 ? cidrContains(parseCidr(text, { allowHostBits: true }), address.ip) : cidr6Contains(parseCidr6(text, { allowHostBits: true }), address.ip);
  } catch {
    return false;
  }
}

/** A peer entry's subnets: its key, and with dual stack the paired IPv6 subnet. */
const subnetsOfEntry = (entry: PeerView): string[] => [entry.subnet, ...(entry.ipv6Subnet !== undefined ? [entry.ipv6Subnet] : [])];
const entryHolds = (entry: PeerView, address: PodAddress): boolean => subnetsOfEntry(entry).some((subnet) => subnetHolds(subnet, address));
/** A peer entry's subnet of the address's family (the one a packet of that family is checked against), as text. */
const entrySubnetOf = (entry: PeerView, address: PodAddress): string => subnetsOfEntry(entry).find((subnet) => subnet.includes(':') === (address.family === 6)) ?? `no IPv${address.family} subnet`;

/** The lease's subnet of the address's family, as text: leaseHolding found the lease by it, so it has one. */
function subnetText(config: NetworkConfig, lease: Lease, family: 4 | 6): string {
  const subnets = subnetsOfLease(config, lease.cidr);
  return family === 4 ? formatCidr(subnets.ipv4!) : formatCidr6(subnets.ipv6!);
}

function leaseHop(hop: 'source-lease' | 'destination-lease', config: NetworkConfig, address: PodAddress, lease: Lease | undefined): Hop {
  if (lease) return { hop, status: 'ok', detail: `${address.text} lies in ${subnetText(config, lease, address.family)}, leased by ${holderOf(lease)}` };
  const network = address.family === 4 ? config.ipv4?.network && formatCidr(config.ipv4.network) : config.ipv6?.network && formatCidr6(config.ipv6.network);
  const where = network === undefined ? `the network config carries no IPv${address.family}` : subnetHolds(network, address) ? `it lies in the cluster network ${network}, but in no node's subnet` : `it lies outside the cluster network ${network}`;
  return { hop, status: 'broken', detail: `no lease holds ${address.text}: ${where}` };
}

/** One end of the path: the lease holding its pod, and what its node's daemon said. */
interface End {
  readonly lease: Lease;
  readonly look: NodeLook;
  /** The node's name, or its address for a reservation nobody claimed. */
  readonly node: string;
  readonly status?: ReportedStatus;
}

function endOf(looks: readonly NodeLook[], lease: Lease): End {
  const look = looks.find((candidate) => candidate.lease.subnet === lease.subnet);
  if (look === undefined) throw new Error(`no look at the daemon of ${lease.subnet}: the caller must ask nodesToAsk(ends)`);
  return { lease, look, node: nodeOf(lease), ...(look.status ? { status: look.status } : {}) };
}

/** Why a daemon gave no status. */
const silence = (end: End): string => `${end.node}: ${end.look.error ?? `no status from ${end.look.url}`}`;

/** The hop, unknown because the daemon it needs did not answer. */
const unheard = (hop: HopName, end: End): Hop => ({ hop, status: 'unknown', detail: `not known: ${end.node}'s daemon did not answer` });

function daemonHop(hop: 'source-daemon' | 'destination-daemon', end: End): Hop {
  const { status, look, node } = end;
  if (status === undefined) return { hop, status: 'broken', detail: silence(end) };
  const version = status.version !== undefined ? ` (version ${status.version})` : '';
  if (status.state !== 'running') return { hop, status: 'broken', detail: `${node} answers at ${look.url}${version} but is ${status.state ?? 'in no state it names'}${status.reason !== undefined ? `: ${status.reason}` : ''}` };
  return { hop, status: 'ok', detail: `${node} answers at ${look.url}${version}: running` };
}

function routeHop(from: End, status: ReportedStatus, dst: PodAddress): Hop {
  const hop = 'source-route';
  const routes = status.node?.routes;
  if (routes === undefined) return { hop, status: 'unknown', detail: `${from.node} does not report its TUN routes (an older daemon, or its data path is not open)` };
  const tun = status.node?.tun ?? 'its TUN';
  // A route may be reported with more than its destination ("10.244.0.0/16 dev flannel0"): the first word is the destination.
  const route = routes.find((text) => subnetHolds(text.split(/\s+/)[0], dst));
  if (route !== undefined) return { hop, status: 'ok', detail: `${from.node} routes ${dst.text} into ${tun} (${route})` };
  return { hop, status: 'broken', detail: `${from.node} has no route into ${tun} that holds ${dst.text} (its TUN routes: ${routes.join(', ') || 'none'}): the kernel does not hand the packet to miniflannel` };
}

/** The peer entry whose subnets hold the address: the one a data plane routes it to. */
const peerHolding = (status: ReportedStatus, address: PodAddress): PeerView | undefined => (status.peers ?? []).find((peer) => entryHolds(peer, address));

/** Why the daemon left the lease out of its peer table, if it did. */
const skippedReason = (status: ReportedStatus, lease: Lease): string | undefined => status.skippedLeases?.find((skipped) => skipped.subnet === lease.subnet)?.reason;

function unconfirmed(entry: PeerView, now: number): string {
  return entry.unconfirmedSince === undefined ? '' : `; the store has forgotten its lease for ${humanDuration(now - entry.unconfirmedSince)} and it is kept until its node re-asserts it`;
}

/** The endpoint `from` sends to `to` at, by the lease of `to` and the underlays both listen on, or why `to` is no peer of `from`. */
function endpointFor(config: NetworkConfig, from: End, to: End): string | { readonly endpoint: string; readonly port: number } {
  const underlay = underlayOf(from.lease);
  if (underlay === undefined) return `the source's lease names an underlay that is not "ipv4", "ipv6" or "dual" (BackendData.Underlay ${JSON.stringify(from.lease.backendData['Underlay'])})`;
  const peer = peerFromLease(to.lease, config, underlay);
  return typeof peer === 'string' ? peer : { endpoint: formatEndpoint(peer.endpoint), port: peer.endpoint.port };
}

function peerHop(input: TraceInput, from: End, to: End, status: ReportedStatus, entry: PeerView | undefined): Hop {
  const hop = 'source-peer';
  const { dst } = input;
  if (entry === undefined) {
    const skipped = skippedReason(status, to.lease);
    const why = skipped !== undefined ? `it left ${to.lease.subnet} of ${to.node} out: ${skipped}` : `it has no peer entry for ${to.lease.subnet} of ${to.node}`;
    return { hop, status: 'broken', detail: `${from.node} cannot send to ${dst.text}: ${why} (counted as no-route)` };
  }
  const expected = endpointFor(input.config, from, to);
  if (typeof expected === 'string') return { hop, status: 'broken', detail: `${from.node} sends ${entrySubnetOf(entry, dst)} to ${entry.endpoint}, but by its lease ${to.node} is no peer: ${expected}` };
  if (entry.endpoint !== expected.endpoint) return { hop, status: 'broken', detail: `${from.node} sends ${entrySubnetOf(entry, dst)} to UDP ${entry.endpoint}, but the lease of ${to.node} says ${expected.endpoint}: a stale peer entry` };
  return { hop, status: 'ok', detail: `${from.node} sends ${entrySubnetOf(entry, dst)} to UDP ${expected.endpoint} (${to.node}), as its lease says${unconfirmed(entry, input.now)}` };
}

function mtuHop(ends: readonly End[]): Hop {
  const hop = 'path-mtu';
  const shown = ends.map((end) => `${end.status?.node?.mtu ?? 'unknown'} on ${end.node}`).join(', ');
  const known = ends.map((end) => end.status?.node?.mtu).filter((mtu): mtu is number => mtu !== undefined);
  if (known.length < ends.length) return { hop, status: 'unknown', detail: `overlay MTU ${shown}` };
  return { hop, status: 'ok', detail: `overlay MTU ${shown}: the path carries packets of up to ${Math.min(...known)} bytes` };
}

function dropFigures<R extends string>(drops: Readonly<Record<R, number>> | undefined, reasons: readonly R[]): string {
  return `node-wide drops ${reasons.map((reason) => `${reason} ${drops?.[reason] ?? 'unknown'}`).join(', ')}`;
}

/**
 * The node-wide drops this path can meet: at the source, for want of a peer
 * or of room, or refused at its own send (a full socket buffer, its own
 * firewall), which its peer entry still counts as sent; at the destination,
 * by its ingress checks.
 */
const SOURCE_DROPS: readonly EgressDropReason[] = ['no-route', 'too-big', 'send-queue-full'];
const DESTINATION_DROPS: readonly IngressDropReason[] = ['unknown-sender', 'spoofed-source', 'wrong-destination', 'unauthenticated'];

function sentHop(from: End, to: End, status: ReportedStatus, entry: PeerView | undefined): Hop {
  const hop = 'source-counters';
  const nodeWide = dropFigures(status.counters?.egressDrops, SOURCE_DROPS);
  const traffic = entry?.traffic;
  if (traffic === undefined) return { hop, status: 'unknown', detail: `${from.node} reports no traffic to ${to.node}; ${nodeWide}` };
  return { hop, status: 'ok', detail: `${from.node} sent ${to.node} ${traffic.packetsSent} packets (${humanBytes(traffic.bytesSent)}); ${nodeWide}` };
}

function receivedHop(from: End, to: End, status: ReportedStatus, entry: PeerView | undefined, now: number): Hop {
  const hop = 'destination-counters';
  const nodeWide = dropFigures(status.counters?.ingressDrops, DESTINATION_DROPS);
  const traffic = entry?.traffic;
  if (traffic === undefined) return { hop, status: 'unknown', detail: `${to.node} reports no traffic from ${from.node}; ${nodeWide}` };
  const last = traffic.lastReceivedAt === null ? 'never' : `${humanDuration(now - traffic.lastReceivedAt)} ago`;
  return { hop, status: 'ok', detail: `${to.node} received ${traffic.packetsReceived} packets (${humanBytes(traffic.bytesReceived)}) from ${from.node}, the last ${last}, ${traffic.drops} dropped; ${nodeWide}` };
}

/**
 * The destination's ingress checks on the source's datagrams, in its data
 * plane's order: the sender must be a peer (else unknown-sender), the inner
 * source must lie in that peer's subnets (spoofed-source), and the inner
 * destination in this node's own subnet (wrong-destination). Also returns
 * the peer entry the sender matched, whose traffic the counters hop shows.
 */
function ingressHops(input: TraceInput, from: End, to: End, status: ReportedStatus): { hops: Hop[]; entry?: PeerView } {
  // The source sends from its own endpoint, the one the destination reaches it at.
  const sender = endpointFor(input.config, to, from);
  const entry = typeof sender === 'string' ? undefined : (status.peers ?? []).find((peer) => peer.endpoint === sender.endpoint);
  return {
    hops: [senderHop(input, from, to, status, sender, entry), sourceHop(input, from, to, sender, entry), destinationHop(input, to, status)],
    ...(entry ? { entry } : {}),
  };
}

function senderHop(input: TraceInput, from: End, to: End, status: ReportedStatus, sender: ReturnType<typeof endpointFor>, entry: PeerView | undefined): Hop {
  const hop = 'ingress-sender';
  const dropped = `${from.node}'s datagrams are dropped as unknown-sender`;
  if (typeof sender === 'string') return { hop, status: 'broken', detail: `by its lease ${from.node} is no peer of ${to.node}: ${sender}; ${dropped}` };
  const listening = from.status?.node?.port;
  if (listening !== undefined && listening !== sender.port) return { hop, status: 'broken', detail: `${from.node} sends from port ${listening}, but its lease says ${sender.endpoint}, where ${to.node} expects it: ${dropped}` };
  if (entry !== undefined) return { hop, status: 'ok', detail: `${to.node} knows ${sender.endpoint} as its peer ${entry.node || entry.subnet}${unconfirmed(entry, input.now)}` };
  const elsewhere = peerHolding(status, input.src);
  if (elsewhere !== undefined) return { hop, status: 'broken', detail: `${to.node} knows ${elsewhere.subnet} at ${elsewhere.endpoint}, not at ${sender.endpoint} where ${from.node} sends from: ${dropped} (a stale peer entry)` };
  const skipped = skippedReason(status, from.lease);
  if (skipped !== undefined) return { hop, status: 'broken', detail: `${to.node} left ${from.lease.subnet} of ${from.node} out: ${skipped}; ${dropped}` };
  return { hop, status: 'broken', detail: `${to.node} has no peer at ${sender.endpoint}: ${dropped}` };
}

function sourceHop(input: TraceInput, from: End, to: End, sender: ReturnType<typeof endpointFor>, entry: PeerView | undefined): Hop {
  const hop = 'ingress-source';
  const { src } = input;
  if (typeof sender === 'string' || entry === undefined) return { hop, status: 'unknown', detail: `${to.node} has no peer for ${from.node}'s datagrams to check ${src.text} against` };
  if (entryHolds(entry, src)) return { hop, status: 'ok', detail: `${src.text} lies in ${entrySubnetOf(entry, src)}, the subnet ${to.node} holds for ${sender.endpoint}` };
  return { hop, status: 'broken', detail: `${src.text} lies outside the subnets ${to.node} holds for ${sender.endpoint} (${subnetsOfEntry(entry).join(', ')}): dropped as spoofed-source` };
}

function destinationHop(input: TraceInput, to: End, status: ReportedStatus): Hop {
  const hop = 'ingress-destination';
  const { dst } = input;
  if (!status.node) return { hop, status: 'unknown', detail: `${to.node} reports no node section (its data path is not open)` };
  const own = dst.family === 4 ? status.node.subnet : status.node.ipv6Subnet;
  if (subnetHolds(own, dst)) return { hop, status: 'ok', detail: `${dst.text} lies in ${to.node}'s own subnet ${own}` };
  return { hop, status: 'broken', detail: `${dst.text} lies outside ${to.node}'s own IPv${dst.family} subnet (${own ?? 'none'}): dropped as wrong-destination` };
}

export function tracePath(input: TraceInput): Hop[] {
  const { config, src, dst, ends } = input;
  const hops = [leaseHop('source-lease', config, src, ends.source), leaseHop('destination-lease', config, dst, ends.destination)];
  if (!ends.source || !ends.destination) return hops;
  if (ends.source === ends.destination) {
    return [...hops, { hop: 'same-node', status: 'ok', detail: `both lie on ${nodeOf(ends.source)}: the packet never leaves its bridge, and miniflannel does not carry it` }];
  }
  const from = endOf(input.looks, ends.source);
  const to = endOf(input.looks, ends.destination);

  hops.push(daemonHop('source-daemon', from));
  if (from.status === undefined) {
    hops.push(unheard('source-route', from), unheard('source-peer', from), mtuHop([from, to]), unheard('source-counters', from));
  } else {
    const entry = peerHolding(from.status, dst);
    hops.push(routeHop(from, from.status, dst), peerHop(input, from, to, from.status, entry), mtuHop([from, to]), sentHop(from, to, from.status, entry));
  }

  hops.push(daemonHop('destination-daemon', to));
  if (to.status === undefined) {
    for (const hop of ['ingress-sender', 'ingress-source', 'ingress-destination', 'destination-counters'] as const) hops.push(unheard(hop, to));
    return hops;
  }
  const ingress = ingressHops(input, from, to, to.status);
  hops.push(...ingress.hops, receivedHop(from, to, to.status, ingress.entry, input.now));
  return hops;
}
