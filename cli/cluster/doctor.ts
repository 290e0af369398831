// What `miniflannel doctor` concludes from one look at a cluster: the
// stored network config and leases (listed before the survey and again
// after it), every lease's daemon's /status (the survey), and the counters
// of the previous look. Pure: the command reads and prints, this decides.
//
// Each finding names a stable check id, its severity and the nodes it is
// about. One cause seen by many nodes (a lease every daemon has the wrong
// endpoint for) is one finding that lists the nodes, so a thousand-node
// cluster with one bad lease reads as one line.

import type { Peer } from '../../daemon/dataplane/index.js';
import { LEASE_STORE_DEFAULTS, type Lease, type NetworkConfig } from '../../daemon/lease/index.js';
import { formatCidr } from '../../daemon/net/ipv4.js';
import { formatCidr6 } from '../../daemon/net/ipv6.js';
import { peerFromLease, underlayOf } from '../../daemon/node/peers.js';
import { formatEndpoint, type TransportFamily } from '../../daemon/transport/index.js';
import { humanDuration, isoTime } from '../output.js';
import { isObject, type NodeLook, type ReportedStatus } from './survey.js';

/** error and warning are problems (doctor exits 1); info is said and is not one. */
export type Severity = 'error' | 'warning' | 'info';

export type CheckId =
  | 'daemon-unreachable'
  | 'daemon-not-running'
  | 'reservation-unclaimed'
  | 'store-unreachable'
  | 'config-mismatch'
  | 'version-skew'
  | 'peer-missing'
  | 'peer-stale'
  | 'peer-endpoint'
  | 'peer-skipped'
  | 'peer-skipped-by-design'
  | 'peer-silent'
  | 'lease-renewal'
  | 'lease-expiring'
  | 'drops'
  | 'first-look';

export interface Finding {
  readonly check: CheckId;
  readonly severity: Severity;
  /** The nodes that show it (by node name, or subnet for a reservation without one). */
  readonly nodes: readonly string[];
  readonly message: string;
}

/** One peer entry's packets: sent to the peer, received from it, and of those received, dropped by ingress. */
export interface PeerCounts {
  readonly sent: number;
  readonly received: number;
  readonly drops: number;
}

/** A peer entry's counts and the endpoint it sends to: an entry for a peer that moved is new, and counts from zero. */
export interface PeerSample extends PeerCounts {
  readonly endpoint: string;
}

/** A node's counters at one look, kept until the next to turn totals into rates. */
export interface NodeCounters {
  /** When they were read (the Redis clock, ms). */
  readonly at: number;
  /**
   * When its daemon started, by the same clock: `at` less its uptime. Absent
   * when the daemon reports no uptime, and in a state file of an older
   * doctor: such a look tells no restart since, and is no baseline.
   */
  readonly startedAt?: number;
  /** Drops by "egress <reason>" / "ingress <reason>". */
  readonly drops: Readonly<Record<string, number>>;
  /** Per peer subnet. A state file of an older doctor lacks drops and endpoint: such an entry is no baseline. */
  readonly peers: Readonly<Record<string, PeerSample>>;
}

/** What the next look compares with: each node's counters, by its lease's subnet. */
export interface Look {
  readonly nodes: Readonly<Record<string, NodeCounters>>;
}

export type NodeState = 'running' | 'waiting' | 'starting' | 'unreachable' | 'unknown';

export interface NodeReport {
  readonly node: string;
  readonly subnet: string;
  readonly publicIP: string | null;
  readonly publicIPv6: string | null;
  readonly url: string;
  readonly reserved: boolean;
  readonly expiresAt: number | null;
  /** null: the daemon did not say (an older one), or did not answer. */
  readonly version: string | null;
  readonly state: NodeState;
  /** Why it is not running, or why it did not answer. */
  readonly reason?: string;
  /** Whether the daemon reaches the lease store; null when unknown. */
  readonly storeConnected: boolean | null;
  /** Peer entries that match the store, of the leases that should be its peers; null when unknown, and for a daemon not running. */
  readonly peers: { readonly matching: number; readonly expected: number } | null;
  /**
   * Drops since the previous look (`seconds` ago, and per second), or since
   * the daemon started when there is none (`seconds` null); null when unknown.
   */
  readonly drops: { readonly total: number; readonly seconds: number | null; readonly perSecond: number | null; readonly byReason: Readonly<Record<string, number>> } | null;
  /** Each peer entry's packets (by the peer's subnet) since the entry was made, as the daemon reports them; null from a daemon that reports none (an older one). */
  readonly traffic: Readonly<Record<string, PeerCounts>> | null;
}

export interface Diagnosis {
  readonly nodes: readonly NodeReport[];
  readonly findings: readonly Finding[];
  /** The counters to keep for the next look. */
  readonly look: Look;
}

export interface DiagnoseInput {
  readonly network: NetworkConfig;
  /** The store's leases as listed before the survey, and what each one's daemon answered, in the same order. */
  readonly looks: readonly NodeLook[];
  /**
   * The leases listed again after the survey; when not given, the first
   * listing stands for both. A daemon may have seen either listing, so it is
   * faulted only for what disagrees with both: a node that joins or leaves
   * while the survey runs is no daemon's fault.
   */
  readonly relisted?: readonly Lease[];
  /** The previous look at this cluster, if any. */
  readonly previous?: Look;
  /**
   * The Redis clock (ms), which lease expiries are written with, when the
   * leases were listed again; also when a look that has no `readAt` was read.
   */
  readonly now: number;
}

/**
 * A healthy keeper renews its lease at least its --lease-renew-margin before
 * expiry, so a lease with less time left has missed its renewal. A daemon
 * reports its margin; for one that does not (an older one, or one not yet
 * following its lease) this default is assumed.
 */
const DEFAULT_RENEW_MARGIN_MS = LEASE_STORE_DEFAULTS.renewMarginMs;

/**
 * A daemon whose start (when its status was read, less its uptime) is later
 * than at the previous look by more than this has restarted since: every
 * count it reports is new. The daemon rounds its uptime to a whole second,
 * so each look's start is off by up to half a second, and later by the
 * moments its answer took to arrive; the margin covers both. A restart is
 * missed only when the daemon before it had run less than this at the
 * previous look.
 */
const RESTART_MARGIN_MS = 2_000;

/**
 * A pair's silence is judged only when the two daemons were read within this
 * of each other, at this look and at the previous one. What the sender sent
 * after the receiver was read is counted sent and not received: reads a
 * survey round apart (with silent nodes, each round waits out --timeout)
 * leave room for ten datagrams of a flow that began between them. Within
 * one round the reads are moments apart.
 */
const READ_SKEW_MS = 2_000;

/**
 * A pair's silence is judged only when the sender sent at least this many
 * datagrams since the previous look, not counting those its own node
 * refused at send. The two daemons' counts are read moments apart, so a
 * datagram sent between the reads is counted sent and not yet received, and
 * UDP may lose one: on a quiet pair, a few sent and none accepted is that,
 * not a silent path. Ten with not one accepted is beyond either.
 */
const SILENCE_MIN_SENT = 10;

/**
 * Drops of one reason faster than this (per second) are a problem; slower
 * ones are shown and are not. A healthy node drops next to nothing (a port
 * scan, a few packets towards a node that just left), far below it: the
 * threshold of the MiniflannelPacketDrops alert (deploy/prometheus/rules.yaml).
 */
const DROP_RATE_PROBLEM = 10;

/** A finding lists at most this many nodes by name. */
const NAMED_NODES = 5;

/** The value if it is a count (a finite number, 0 or more), else undefined: a status document or a state file is only trusted this far. */
const validCount = (value: unknown): number | undefined => (typeof value === 'number' && Number.isFinite(value) && value >= 0 ? value : undefined);
const textOr = (value: unknown): string | undefined => (typeof value === 'string' ? value : undefined);

export const isProblem = (finding: Finding): boolean => finding.severity !== 'info';

export function nameOf(lease: Lease): string {
  return lease.nodeName === '' ? lease.subnet : lease.nodeName;
}

function listNodes(names: readonly string[]): string {
  const shown = names.slice(0, NAMED_NODES).join(', ');
  return names.length > NAMED_NODES ? `${shown} and ${names.length - NAMED_NODES} more` : shown;
}

/** Growth of a counter since the previous reading; a counter that went back was reset, so all of it is new. */
function since(current: number, previous: unknown): number {
  const before = validCount(previous);
  return before === undefined || current < before ? current : current - before;
}

interface Found {
  readonly check: CheckId;
  readonly severity: Severity;
  readonly nodes: string[];
  readonly message: string;
  /** Seen alike by several nodes: the message is prefixed with their names. */
  readonly shared: boolean;
}

/** Collects findings, merging those with one cause (check, severity and message) seen by several nodes. */
class Findings {
  private readonly found: Found[] = [];
  private readonly byCause = new Map<string, Found>();

  /** A finding in its own words. */
  add(check: CheckId, severity: Severity, nodes: readonly string[], message: string): void {
    this.found.push({ check, severity, nodes: [...nodes], message, shared: false });
  }

  /** A finding several nodes may share: the message is what each one shows, and the nodes that show it are named before it. */
  seenBy(node: string, check: CheckId, severity: Severity, message: string): void {
    const key = `${check}\n${severity}\n${message}`;
    const known = this.byCause.get(key);
    if (known) return void known.nodes.push(node);
    const found: Found = { check, severity, nodes: [node], message, shared: true };
    this.byCause.set(key, found);
    this.found.push(found);
  }

  /** Errors first, then warnings, then the rest; in the order found within each. */
  list(): Finding[] {
    const rank: Readonly<Record<Severity, number>> = { error: 0, warning: 1, info: 2 };
    return this.found
      .map(({ check, severity, nodes, message, shared }) => ({ check, severity, nodes, message: shared ? `${listNodes(nodes)}: ${message}` : message }))
      .sort((a, b) => rank[a.severity] - rank[b.severity]);
  }
}

function flatDrops(status: ReportedStatus): Record<string, number> | undefined {
  const counters = status.counters;
  if (!counters) return undefined;
  const drops: Record<string, number> = {};
  for (const [direction, table] of [['egress', counters.egressDrops], ['ingress', counters.ingressDrops]] as const) {
    if (!isObject(table)) continue;
    for (const [reason, n] of Object.entries(table)) {
      const value = validCount(n);
      if (value !== undefined) drops[`${direction} ${reason}`] = value;
    }
  }
  return drops;
}

/** Each peer entry's counts and endpoint, by the peer's subnet; absent entries and older daemons have none. */
function peerSamples(status: ReportedStatus): Map<string, PeerSample> {
  const samples = new Map<string, PeerSample>();
  for (const peer of status.peers ?? []) {
    const figures: unknown = peer.traffic;
    if (typeof peer.subnet !== 'string' || typeof peer.endpoint !== 'string' || !isObject(figures)) continue;
    const sent = validCount(figures['packetsSent']);
    const received = validCount(figures['packetsReceived']);
    const drops = validCount(figures['drops']);
    if (sent !== undefined && received !== undefined && drops !== undefined) samples.set(peer.subnet, { sent, received, drops, endpoint: peer.endpoint });
  }
  return samples;
}

function stateOf(look: NodeLook): NodeState {
  if (look.status === undefined) return 'unreachable';
  const state = look.status.state;
  return state === 'running' || state === 'waiting' || state === 'starting' ? state : 'unknown';
}

/** The leases as listed before the survey and after it, by subnet. */
interface Listings {
  readonly before: ReadonlyMap<string, Lease>;
  readonly after: ReadonlyMap<string, Lease>;
}

/** What a subnet's leases make of it for a node on one underlay: the peer or the refusal from each listing, and the endpoints among them. */
interface Expected {
  readonly made: readonly (Peer | string)[];
  readonly endpoints: readonly string[];
}

/**
 * The peer entries nodes should hold, worked out once per underlay and
 * subnet rather than once per node and subnet: every node on one underlay
 * expects the same entry for a lease, and at 1,000 nodes the difference is
 * a thousand peerFromLease calls against a million.
 */
class ExpectedPeers {
  private readonly byUnderlay = new Map<TransportFamily, Map<string, Expected>>();

  constructor(
    private readonly listings: Listings,
    private readonly network: NetworkConfig,
  ) {}

  of(subnet: string, underlay: TransportFamily): Expected {
    let bySubnet = this.byUnderlay.get(underlay);
    if (bySubnet === undefined) this.byUnderlay.set(underlay, (bySubnet = new Map()));
    let expected = bySubnet.get(subnet);
    if (expected === undefined) {
      const made = leasesOn(this.listings, subnet).map((lease) => peerFromLease(lease, this.network, underlay));
      expected = { made, endpoints: made.flatMap((peer) => (typeof peer === 'string' ? [] : [formatEndpoint(peer.endpoint)])) };
      bySubnet.set(subnet, expected);
    }
    return expected;
  }
}

/** The subnet's lease in each listing that holds one, the later last. */
function leasesOn(listings: Listings, subnet: string): Lease[] {
  return [listings.before.get(subnet), listings.after.get(subnet)].filter((lease) => lease !== undefined);
}

/** The port a lease's peers send to: its BackendData's, else the config's. */
function portOf(lease: Lease, network: NetworkConfig): unknown {
  return lease.backendData['Port'] ?? network.backend.port;
}

function checkConfig(findings: Findings, name: string, leases: readonly Lease[], status: ReportedStatus, network: NetworkConfig): void {
  const node = status.node;
  if (!node) return;
  const differences: string[] = [];
  const stored4 = network.ipv4 ? formatCidr(network.ipv4.network) : undefined;
  const stored6 = network.ipv6 ? formatCidr6(network.ipv6.network) : undefined;
  if (textOr(node.network) !== stored4) differences.push(`Network ${textOr(node.network) ?? 'none'} (stored: ${stored4 ?? 'none'})`);
  if (textOr(node.ipv6Network) !== stored6) differences.push(`IPv6Network ${textOr(node.ipv6Network) ?? 'none'} (stored: ${stored6 ?? 'none'})`);
  const ports = leases.map((lease) => portOf(lease, network));
  if (!ports.includes(node.port)) differences.push(`port ${String(node.port ?? 'unknown')} (its lease tells peers ${String(ports.at(-1))})`);
  if (differences.length > 0) findings.add('config-mismatch', 'error', [name], `${name} runs with ${differences.join(', ')}`);
}

/**
 * Compares a running daemon's peer table with what the leases make of it,
 * in either listing; returns matching/expected. A lease that came, went or
 * changed between the listings is expected only when the daemon has it.
 */
function checkPeers(findings: Findings, name: string, own: Lease, status: ReportedStatus, listings: Listings, expectedPeers: ExpectedPeers): NodeReport['peers'] {
  const underlay = underlayOf(own);
  if (underlay === undefined || status.peers === undefined) return null;
  const entries = new Map(status.peers.filter((p) => typeof p.subnet === 'string').map((p) => [p.subnet, p]));
  const skipped = new Map((status.skippedLeases ?? []).filter((s) => typeof s.subnet === 'string').map((s) => [s.subnet, s]));
  const subnets = new Set([...listings.before.keys(), ...listings.after.keys(), ...entries.keys()]);
  subnets.delete(own.subnet);
  let matching = 0;
  let expected = 0;
  for (const subnet of subnets) {
    const { made, endpoints } = expectedPeers.of(subnet, underlay);
    const entry = entries.get(subnet);
    const latest = listings.after.get(subnet) ?? listings.before.get(subnet);
    const who = `${latest ? nameOf(latest) : textOr(entry?.node) || subnet} (${subnet})`;
    const refusal = made.at(-1);
    if (entry === undefined) {
      const skip = skipped.get(subnet);
      // Its lease makes no peer of it in either listing, and the daemon says it left it out: a node it shares no underlay family with, say. Its peer count stays below the leases' for good, which MiniflannelPeersMismatch sees.
      if (skip && typeof refusal === 'string' && endpoints.length === 0) findings.seenBy(name, 'peer-skipped-by-design', 'info', `leaves out ${who}, as its lease makes no peer of it: ${refusal}`);
      // A peer in one listing only came or went while the survey ran: the daemon may have seen either.
      if (endpoints.length < 2) continue;
      expected++;
      if (skip) findings.seenBy(name, 'peer-skipped', 'warning', `left out ${who}: ${String(skip.reason)}`);
      else findings.seenBy(name, 'peer-missing', 'error', `no peer entry for ${who}`);
      continue;
    }
    if (endpoints.length > 0) {
      expected++;
      if (endpoints.includes(String(entry.endpoint))) matching++;
      else findings.seenBy(name, 'peer-endpoint', 'error', `send to ${who} at ${String(entry.endpoint)}, but its lease says ${endpoints.at(-1)}`);
      continue;
    }
    const forgottenAt = validCount(entry.unconfirmedSince);
    if (forgottenAt !== undefined) findings.seenBy(name, 'peer-stale', 'warning', `a peer entry for ${who} at ${String(entry.endpoint)}, kept since ${isoTime(forgottenAt)} while its node re-asserts the lease the store lost (miniflanneld --peer-grace)`);
    else if (typeof refusal === 'string') findings.seenBy(name, 'peer-stale', 'error', `a peer entry for ${who} at ${String(entry.endpoint)}, which its stored lease does not make a peer: ${refusal}`);
    else findings.seenBy(name, 'peer-stale', 'error', `a peer entry for ${who} at ${String(entry.endpoint)}, which the store has no lease for`);
  }
  return { matching, expected };
}

/** How long before expiry the node renews its lease: what its daemon reports, else the default, and how the finding says which. */
function renewMarginOf(status: ReportedStatus | undefined): { readonly ms: number; readonly said: string } {
  const reported = validCount(status?.lease?.renewMarginMs);
  if (reported !== undefined) return { ms: reported, said: `${humanDuration(reported)} before expiry (its --lease-renew-margin)` };
  return { ms: DEFAULT_RENEW_MARGIN_MS, said: `${humanDuration(DEFAULT_RENEW_MARGIN_MS)} before expiry, the default --lease-renew-margin (its daemon does not report its own)` };
}

function checkLease(findings: Findings, name: string, lease: Lease, status: ReportedStatus | undefined, now: number): void {
  if (lease.expiresAt === null) return;
  const left = lease.expiresAt - now;
  const margin = renewMarginOf(status);
  const failure: unknown = status?.lease?.renewalFailure;
  if (isObject(failure)) {
    const failingSince = validCount(failure['since']);
    const late = left < margin.ms;
    const attempts = validCount(failure['attempts']) ?? 'several';
    const from = failingSince === undefined ? '' : ` since ${isoTime(failingSince)}`;
    const lateness = late ? `, though its node renews it ${margin.said}` : '';
    findings.add('lease-renewal', late ? 'error' : 'warning', [name], `${name} has failed to renew its lease ${lease.subnet} ${attempts} times${from} (${textOr(failure['error']) ?? 'no reason given'}); it expires in ${humanDuration(left)}${lateness}`);
  } else if (left < margin.ms) {
    findings.add('lease-expiring', 'warning', [name], `the lease ${lease.subnet} of ${name} expires in ${humanDuration(left)}, though its node renews it ${margin.said}`);
  }
}

function checkVersions(findings: Findings, looks: readonly NodeLook[]): void {
  const byVersion = new Map<string, string[]>();
  for (const look of looks) {
    if (look.status === undefined) continue;
    const version = textOr(look.status.version) ?? 'unknown (an older daemon)';
    byVersion.set(version, [...(byVersion.get(version) ?? []), nameOf(look.lease)]);
  }
  if (byVersion.size < 2) return;
  const groups = [...byVersion.entries()].sort((a, b) => b[1].length - a[1].length);
  const offMajority = groups.slice(1).flatMap(([, nodes]) => nodes);
  const described = groups.map(([version, nodes]) => `${version} on ${nodes.length} (${listNodes(nodes)})`).join('; ');
  findings.add('version-skew', 'warning', offMajority, `daemons run ${groups.length} versions: ${described}`);
}

/** A node's counters at the previous look, what its counts now are compared with. */
interface Baseline {
  readonly counters: NodeCounters;
  /** Seconds the counts since then span: since the previous look, or since the restart. */
  readonly seconds: number;
  /** Its daemon started after the previous look: every count is new, whether or not it went down. */
  readonly restarted: boolean;
}

/** The previous look's counters as a baseline for counts read at `readAt` from a daemon started at `startedAt`; none when either start is unknown. */
function baselineOf(previous: NodeCounters | undefined, startedAt: number | undefined, readAt: number): Baseline | undefined {
  const startedBefore = validCount(previous?.startedAt);
  if (previous === undefined || startedAt === undefined || startedBefore === undefined) return undefined;
  const elapsedMs = Math.max(1, readAt - previous.at);
  const restarted = startedAt > startedBefore + RESTART_MARGIN_MS;
  return { counters: previous, seconds: (restarted ? Math.max(1000, Math.min(elapsedMs, readAt - startedAt)) : elapsedMs) / 1000, restarted };
}

/** An entry's counts since the previous look; undefined when there is no telling: no previous look, a restart since, or an entry made anew (its peer moved). */
function countsSince(sample: PeerSample, baseline: Baseline | undefined, subnet: string): PeerCounts | undefined {
  if (baseline === undefined || baseline.restarted) return undefined;
  const before: unknown = baseline.counters.peers[subnet];
  if (!isObject(before) || before['endpoint'] !== sample.endpoint) return undefined;
  const sent = sample.sent - (validCount(before['sent']) ?? Infinity);
  const received = sample.received - (validCount(before['received']) ?? Infinity);
  const drops = sample.drops - (validCount(before['drops']) ?? Infinity);
  return sent >= 0 && received >= 0 && drops >= 0 ? { sent, received, drops } : undefined;
}

/** What checkSilence needs of a node. */
interface NodeTraffic {
  readonly name: string;
  readonly baseline: Baseline | undefined;
  readonly samples: ReadonlyMap<string, PeerSample>;
  /** When its status was read. */
  readonly readAt: number;
  /** Datagrams its own node refused at send since the previous look (egress send-queue-full), to any peer: each peer entry still counts its own as sent. */
  readonly refused: number;
}

/** Whether the two daemons were read within READ_SKEW_MS of each other at this look and at the previous one. */
function readTogether(a: NodeTraffic, b: NodeTraffic): boolean {
  const apart = (x: number, y: number): boolean => Math.abs(x - y) > READ_SKEW_MS;
  return a.baseline !== undefined && b.baseline !== undefined && !apart(a.readAt, b.readAt) && !apart(a.baseline.counters.at, b.baseline.counters.at);
}

/**
 * "A accepted nothing from B": since the previous look, B's entry for A
 * counts at least SILENCE_MIN_SENT sent beyond what B's own node refused at
 * send (its own firewall, a full socket buffer: B's problem, which its
 * drops show), and A's entry for B counts every datagram received also
 * dropped (a wrong cluster key: all refused as unauthenticated), or none
 * received. A pair whose counts since then cannot be told on both sides, or
 * whose daemons were read too far apart, is not judged.
 */
function checkSilence(findings: Findings, nodes: ReadonlyMap<string, NodeTraffic>): void {
  for (const [receiverSubnet, receiver] of nodes) {
    for (const [senderSubnet, fromSender] of receiver.samples) {
      const sender = nodes.get(senderSubnet);
      const toReceiver = sender?.samples.get(receiverSubnet);
      if (sender === undefined || toReceiver === undefined) continue;
      const sent = countsSince(toReceiver, sender.baseline, receiverSubnet)?.sent;
      const heard = countsSince(fromSender, receiver.baseline, senderSubnet);
      if (sent === undefined || heard === undefined || sent - sender.refused < SILENCE_MIN_SENT || heard.received > heard.drops || !readTogether(sender, receiver)) continue;
      const [a, b] = [receiver.name, sender.name];
      const refused = sender.refused > 0 ? ` (its own node refused ${sender.refused} datagrams at send, to any peer)` : '';
      findings.add('peer-silent', 'error', [a, b], `${a} accepted nothing from ${b}: ${b} sent ${sent} since the last look${refused}; ${a} received ${heard.received} and dropped ${heard.drops}`);
    }
  }
}

/** The node's drops since its baseline, or since it started when there is none (`unknownUptime`: there was a previous look, but the daemon reports no uptime to tell a restart by). */
function dropsOf(findings: Findings, name: string, drops: Record<string, number>, baseline: Baseline | undefined, unknownUptime: boolean): NonNullable<NodeReport['drops']> {
  const byReason: Record<string, number> = {};
  for (const [reason, n] of Object.entries(drops)) {
    const grown = baseline === undefined || baseline.restarted ? n : since(n, baseline.counters.drops[reason]);
    if (grown > 0) byReason[reason] = grown;
  }
  const total = Object.values(byReason).reduce((a, b) => a + b, 0);
  const listed = Object.entries(byReason).map(([reason, n]) => `${reason} ${n}`).join(', ');
  if (baseline === undefined) {
    const which = unknownUptime ? '; its daemon reports no uptime, so how many are since the last look is unknown' : '';
    if (total > 0) findings.add('drops', 'info', [name], `${name} has dropped ${total} packets since it started: ${listed}${which}`);
    return { total, seconds: null, perSecond: null, byReason };
  }
  const { seconds } = baseline;
  const perSecond = total / seconds;
  const severity = Object.values(byReason).some((n) => n / seconds > DROP_RATE_PROBLEM) ? 'warning' : 'info';
  if (total > 0) findings.add('drops', severity, [name], `${name} dropped ${total} packets in the last ${humanDuration(seconds * 1000)} (${perSecond.toFixed(2)}/s): ${listed}`);
  return { total, seconds, perSecond, byReason };
}

export function diagnose(input: DiagnoseInput): Diagnosis {
  const { network, looks, previous, now } = input;
  const findings = new Findings();
  const before = new Map(looks.map((look) => [look.lease.subnet, look.lease]));
  const listings: Listings = { before, after: input.relisted ? new Map(input.relisted.map((lease) => [lease.subnet, lease])) : before };
  const expectedPeers = new ExpectedPeers(listings, network);
  const kept: Record<string, NodeCounters> = {};
  const traffic = new Map<string, NodeTraffic>();
  const nodes: NodeReport[] = [];
  let firstLook = false;

  for (const look of looks) {
    const { lease, status } = look;
    const name = nameOf(lease);
    const state = stateOf(look);
    const relisted = listings.after.get(lease.subnet);
    const readAt = look.readAt ?? now;
    let reason: string | undefined;
    let peers: NodeReport['peers'] = null;
    let drops: NodeReport['drops'] = null;
    let samples: Map<string, PeerSample> | undefined;
    if (status === undefined) {
      reason = look.error;
      if (lease.expiresAt === null && lease.nodeName === '') findings.add('reservation-unclaimed', 'info', [name], `the reservation ${lease.subnet} for ${lease.publicIP ?? lease.publicIPv6} has no daemon answering (no node has claimed it yet): ${look.error}`);
      else if (relisted === undefined) findings.add('daemon-unreachable', 'info', [name], `${name}: ${look.error}; its lease is gone since, so the node has left`);
      else findings.add('daemon-unreachable', 'error', [name], `${name}: ${look.error}`);
      // Keep its counters for when it answers again.
      const counters = previous?.nodes[lease.subnet];
      if (counters) kept[lease.subnet] = counters;
    } else {
      if (state !== 'running') {
        reason = textOr(status.reason) ?? (state === 'unknown' ? 'its status names no state' : undefined);
        findings.add('daemon-not-running', 'error', [name], `${name} is ${state === 'unknown' ? 'in an unknown state' : state}${reason ? `: ${reason}` : ''}`);
      }
      if (status.store?.connected === false) findings.add('store-unreachable', 'error', [name], `${name} cannot reach the lease store at ${textOr(status.store.address) ?? 'its --redis-url'}`);
      checkConfig(findings, name, leasesOn(listings, lease.subnet), status, network);
      // Until it runs, a daemon's peer table is being built: only what it says of itself is judged.
      if (state === 'running') peers = checkPeers(findings, name, lease, status, listings, expectedPeers);
      const counters = flatDrops(status);
      samples = peerSamples(status);
      if (counters) {
        const before = previous?.nodes[lease.subnet];
        const uptimeSeconds = validCount(status.uptimeSeconds);
        const startedAt = uptimeSeconds === undefined ? undefined : readAt - uptimeSeconds * 1000;
        const baseline = baselineOf(before, startedAt, readAt);
        const unknownUptime = before !== undefined && startedAt === undefined;
        // A previous look that kept no start (an older doctor's) is as good as none.
        firstLook ||= baseline === undefined && !unknownUptime;
        drops = dropsOf(findings, name, counters, baseline, unknownUptime);
        traffic.set(lease.subnet, { name, baseline, samples, readAt, refused: drops.byReason['egress send-queue-full'] ?? 0 });
        kept[lease.subnet] = { at: readAt, ...(startedAt === undefined ? {} : { startedAt }), drops: counters, peers: Object.fromEntries(samples) };
      }
    }
    if (relisted !== undefined) checkLease(findings, name, relisted, status, now);
    const version = status === undefined ? null : (textOr(status.version) ?? null);
    nodes.push({
      node: name,
      subnet: lease.subnet,
      publicIP: lease.publicIP ?? null,
      publicIPv6: lease.publicIPv6 ?? null,
      url: look.url,
      reserved: lease.expiresAt === null,
      expiresAt: (relisted ?? lease).expiresAt,
      version,
      state,
      ...(reason !== undefined ? { reason } : {}),
      storeConnected: typeof status?.store?.connected === 'boolean' ? status.store.connected : null,
      peers,
      drops,
      traffic: samples === undefined || (samples.size === 0 && (status?.peers?.length ?? 0) > 0) ? null : Object.fromEntries([...samples].map(([subnet, { sent, received, drops }]) => [subnet, { sent, received, drops }])),
    });
  }
  checkVersions(findings, looks);
  checkSilence(findings, traffic);
  if (firstLook) {
    findings.add('first-look', 'info', [], previous === undefined || Object.keys(previous.nodes).length === 0
      ? 'no earlier look at this cluster: drops are totals since each daemon started; run doctor again for rates'
      : 'no earlier look at some nodes: their drops are totals since their daemon started');
  }
  return { nodes, findings: findings.list(), look: { nodes: kept } };
}
