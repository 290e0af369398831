// What `miniflannel doctor` concludes from one look at a cluster: the
// stored network config and leases, every lease's daemon's /status (the
// survey), and the counters of the previous look. Pure: the command reads
// and prints, this decides.
//
// Each finding names a stable check id, its severity and the nodes it is
// about. One cause seen by many nodes (a lease every daemon has the wrong
// endpoint for) is one finding that lists the nodes, so a thousand-node
// cluster with one bad lease reads as one line.

import { LEASE_STORE_DEFAULTS, type Lease, type NetworkConfig } from '../../daemon/lease/index.js';
import { formatCidr } from '../../daemon/net/ipv4.js';
import { formatCidr6 } from '../../daemon/net/ipv6.js';
import { peerFromLease, underlayOf } from '../../daemon/node/peers.js';
import { formatEndpoint } from '../../daemon/transport/index.js';
import { humanDuration, isoTime } from '../output.js';
import type { NodeLook, ReportedStatus } from './survey.js';

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

/** A node's counters at one look, kept until the next to turn totals into rates. */
export interface NodeCounters {
  /** When they were read (the Redis clock, ms). */
  readonly at: number;
  /** Drops by "egress <reason>" / "ingress <reason>". */
  readonly drops: Readonly<Record<string, number>>;
  /** Per peer subnet: packets sent to it and received from it. */
  readonly peers: Readonly<Record<string, { readonly sent: number; readonly received: number }>>;
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
  /** null: the daemon did not say (before 0.2), or did not answer. */
  readonly version: string | null;
  readonly state: NodeState;
  /** Why it is not running, or why it did not answer. */
  readonly reason?: string;
  /** Whether the daemon reaches the lease store; null when unknown. */
  readonly storeConnected: boolean | null;
  /** Peer entries that match the store, of the leases that should be its peers; null when unknown. */
  readonly peers: { readonly matching: number; readonly expected: number } | null;
  /**
   * Drops since the previous look (`seconds` ago, and per second), or since
   * the daemon started when there is none (`seconds` null); null when unknown.
   */
  readonly drops: { readonly total: number; readonly seconds: number | null; readonly perSecond: number | null; readonly byReason: Readonly<Record<string, number>> } | null;
  /** Packets sent to and received from each peer (by its subnet) since its entry was made, as the daemon reports them; null from a daemon that reports none (before 0.2). */
  readonly traffic: Readonly<Record<string, { readonly sent: number; readonly received: number }>> | null;
}

export interface Diagnosis {
  readonly nodes: readonly NodeReport[];
  readonly findings: readonly Finding[];
  /** The counters to keep for the next look. */
  readonly look: Look;
}

export interface DiagnoseInput {
  readonly network: NetworkConfig;
  /** The store's leases, and what each one's daemon answered, in the same order. */
  readonly looks: readonly NodeLook[];
  /** The previous look at this cluster, if any. */
  readonly previous?: Look;
  /** The Redis clock (ms), which lease expiries are written with. */
  readonly now: number;
}

/**
 * A healthy keeper renews its lease this long before expiry (plus a random
 * spread), so a lease with less time left has missed its renewal. The daemon
 * does not report its --lease-renew-margin, so this is its default.
 */
const RENEW_MARGIN_MS = LEASE_STORE_DEFAULTS.renewMarginMs;

/**
 * Drops of one reason faster than this (per second) are a problem; slower
 * ones are shown and are not. A healthy node drops next to nothing (a port
 * scan, a few packets towards a node that just left), far below it: the
 * threshold of the MiniflannelPacketDrops alert (deploy/prometheus/rules.yaml).
 */
const DROP_RATE_PROBLEM = 10;

/** A finding lists at most this many nodes by name. */
const NAMED_NODES = 5;

type Json = Record<string, unknown>;

const isObject = (value: unknown): value is Json => typeof value === 'object' && value !== null && !Array.isArray(value);
const count = (value: unknown): number | undefined => (typeof value === 'number' && Number.isFinite(value) && value >= 0 ? value : undefined);
const textOr = (value: unknown): string | undefined => (typeof value === 'string' ? value : undefined);

export const isProblem = (finding: Finding): boolean => finding.severity !== 'info';

export function nameOf(lease: Lease): string {
  return lease.nodeName === '' ? lease.subnet : lease.nodeName;
}

function listNodes(names: readonly string[]): string {
  const shown = names.slice(0, NAMED_NODES).join(', ');
  return names.length > NAMED_NODES ? `${shown} and ${names.length - NAMED_NODES} more` : shown;
}

/** Growth of a counter since the previous reading; a counter that went back was reset (the daemon restarted, or the entry was made anew), so all of it is new. */
function since(current: number, previous: number | undefined): number {
  return previous === undefined || current < previous ? current : current - previous;
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
      const value = count(n);
      if (value !== undefined) drops[`${direction} ${reason}`] = value;
    }
  }
  return drops;
}

/** Each peer entry's traffic, by the peer's subnet; absent entries and daemons before 0.2 have none. */
function peerTraffic(status: ReportedStatus): Map<string, { sent: number; received: number }> {
  const traffic = new Map<string, { sent: number; received: number }>();
  for (const peer of status.peers ?? []) {
    const figures: unknown = peer.traffic;
    if (typeof peer.subnet !== 'string' || !isObject(figures)) continue;
    const sent = count(figures['packetsSent']);
    const received = count(figures['packetsReceived']);
    if (sent !== undefined && received !== undefined) traffic.set(peer.subnet, { sent, received });
  }
  return traffic;
}

function stateOf(look: NodeLook): NodeState {
  if (look.status === undefined) return 'unreachable';
  const state = look.status.state;
  return state === 'running' || state === 'waiting' || state === 'starting' ? state : 'unknown';
}

/** The port a lease's peers send to: its BackendData's, else the config's. */
function portOf(lease: Lease, network: NetworkConfig): unknown {
  return lease.backendData['Port'] ?? network.backend.port;
}

function checkConfig(findings: Findings, name: string, lease: Lease, status: ReportedStatus, network: NetworkConfig): void {
  const node = status.node;
  if (!node) return;
  const differences: string[] = [];
  const stored4 = network.ipv4 ? formatCidr(network.ipv4.network) : undefined;
  const stored6 = network.ipv6 ? formatCidr6(network.ipv6.network) : undefined;
  if (textOr(node.network) !== stored4) differences.push(`Network ${textOr(node.network) ?? 'none'} (stored: ${stored4 ?? 'none'})`);
  if (textOr(node.ipv6Network) !== stored6) differences.push(`IPv6Network ${textOr(node.ipv6Network) ?? 'none'} (stored: ${stored6 ?? 'none'})`);
  const port = portOf(lease, network);
  if (node.port !== port) differences.push(`port ${String(node.port ?? 'unknown')} (its lease tells peers ${String(port)})`);
  if (differences.length > 0) findings.add('config-mismatch', 'error', [name], `${name} runs with ${differences.join(', ')}`);
}

/** Compares a daemon's peer table with what the store's leases make of it; returns matching/expected. */
function checkPeers(findings: Findings, name: string, own: Lease, status: ReportedStatus, leases: readonly Lease[], network: NetworkConfig): NodeReport['peers'] {
  const underlay = underlayOf(own);
  if (underlay === undefined || status.peers === undefined) return null;
  const entries = new Map(status.peers.filter((p) => typeof p.subnet === 'string').map((p) => [p.subnet, p]));
  const skipped = new Map((status.skippedLeases ?? []).filter((s) => typeof s.subnet === 'string').map((s) => [s.subnet, s]));
  const stored = new Set(leases.map((l) => l.subnet));
  let matching = 0;
  let expected = 0;
  for (const lease of leases) {
    if (lease.subnet === own.subnet) continue;
    const peer = peerFromLease(lease, network, underlay);
    const entry = entries.get(lease.subnet);
    const who = `${nameOf(lease)} (${lease.subnet})`;
    if (typeof peer === 'string') {
      if (entry) findings.seenBy(name, 'peer-stale', 'error', `a peer entry for ${who} at ${String(entry.endpoint)}, which its stored lease does not make a peer: ${peer}`);
      continue;
    }
    expected++;
    const endpoint = formatEndpoint(peer.endpoint);
    const skip = skipped.get(lease.subnet);
    if (entry?.endpoint === endpoint) matching++;
    else if (entry) findings.seenBy(name, 'peer-endpoint', 'error', `send to ${who} at ${String(entry.endpoint)}, but its lease says ${endpoint}`);
    else if (skip) findings.seenBy(name, 'peer-skipped', 'warning', `left out ${who}: ${String(skip.reason)}`);
    else findings.seenBy(name, 'peer-missing', 'error', `no peer entry for ${who}`);
  }
  for (const entry of entries.values()) {
    if (stored.has(entry.subnet) || entry.subnet === own.subnet) continue;
    const forgottenAt = count(entry.unconfirmedSince);
    const kept = forgottenAt === undefined ? '' : ` (kept since ${isoTime(forgottenAt)} while its node re-asserts its lease)`;
    findings.seenBy(name, 'peer-stale', 'error', `a peer entry for ${textOr(entry.node) || entry.subnet} (${entry.subnet}) at ${String(entry.endpoint)}, which the store has no lease for${kept}`);
  }
  return { matching, expected };
}

function checkLease(findings: Findings, name: string, lease: Lease, status: ReportedStatus | undefined, now: number): void {
  if (lease.expiresAt === null) return;
  const left = lease.expiresAt - now;
  const failure: unknown = status?.lease?.renewalFailure;
  if (isObject(failure)) {
    const failingSince = count(failure['since']);
    const severity = left < RENEW_MARGIN_MS ? 'error' : 'warning';
    const attempts = count(failure['attempts']) ?? 'several';
    const from = failingSince === undefined ? '' : ` since ${isoTime(failingSince)}`;
    findings.add('lease-renewal', severity, [name], `${name} has failed to renew its lease ${lease.subnet} ${attempts} times${from} (${textOr(failure['error']) ?? 'no reason given'}); it expires in ${humanDuration(left)}`);
  } else if (left < RENEW_MARGIN_MS) {
    findings.add('lease-expiring', 'warning', [name], `the lease ${lease.subnet} of ${name} expires in ${humanDuration(left)}, though a node renews it ${humanDuration(RENEW_MARGIN_MS)} before (miniflanneld --lease-renew-margin, default)`);
  }
}

function checkVersions(findings: Findings, looks: readonly NodeLook[]): void {
  const byVersion = new Map<string, string[]>();
  for (const look of looks) {
    if (look.status === undefined) continue;
    const version = textOr(look.status.version) ?? 'unknown (before 0.2)';
    byVersion.set(version, [...(byVersion.get(version) ?? []), nameOf(look.lease)]);
  }
  if (byVersion.size < 2) return;
  const groups = [...byVersion.entries()].sort((a, b) => b[1].length - a[1].length);
  const behind = groups.slice(1).flatMap(([, nodes]) => nodes);
  const described = groups.map(([version, nodes]) => `${version} on ${nodes.length} (${listNodes(nodes)})`).join('; ');
  findings.add('version-skew', 'warning', behind, `daemons run ${groups.length} versions: ${described}`);
}

/**
 * "A hears nothing from B": B's entry for A counts packets sent since the
 * previous look (or ever, on the first), and A's entry for B counts none
 * received in that time.
 */
function checkSilence(findings: Findings, looks: readonly NodeLook[], traffic: ReadonlyMap<string, Map<string, { sent: number; received: number }>>, previous: Look | undefined): void {
  const names = new Map(looks.map((look) => [look.lease.subnet, nameOf(look.lease)]));
  for (const [sender, entries] of traffic) {
    for (const [receiver, { sent }] of entries) {
      const back = traffic.get(receiver)?.get(sender);
      if (back === undefined) continue;
      const sentSince = since(sent, previous?.nodes[sender]?.peers[receiver]?.sent);
      const receivedSince = since(back.received, previous?.nodes[receiver]?.peers[sender]?.received);
      if (sentSince === 0 || receivedSince > 0) continue;
      const a = names.get(receiver)!;
      const b = names.get(sender)!;
      const when = previous?.nodes[sender]?.peers[receiver] === undefined ? 'since their entries were made' : 'since the last look';
      findings.add('peer-silent', 'error', [a, b], `${a} hears nothing from ${b}: ${b} sent it ${sentSince} packets ${when}, and ${a} received none from ${b}`);
    }
  }
}

function dropsOf(findings: Findings, name: string, drops: Record<string, number>, previous: NodeCounters | undefined, now: number): NonNullable<NodeReport['drops']> {
  const byReason: Record<string, number> = {};
  for (const [reason, n] of Object.entries(drops)) {
    const grown = since(n, previous?.drops[reason]);
    if (grown > 0) byReason[reason] = grown;
  }
  const total = Object.values(byReason).reduce((a, b) => a + b, 0);
  const listed = Object.entries(byReason).map(([reason, n]) => `${reason} ${n}`).join(', ');
  if (previous === undefined) {
    if (total > 0) findings.add('drops', 'info', [name], `${name} has dropped ${total} packets since it started: ${listed}`);
    return { total, seconds: null, perSecond: null, byReason };
  }
  const seconds = Math.max(0.001, (now - previous.at) / 1000);
  const perSecond = total / seconds;
  const severity = Object.values(byReason).some((n) => n / seconds > DROP_RATE_PROBLEM) ? 'warning' : 'info';
  if (total > 0) findings.add('drops', severity, [name], `${name} dropped ${total} packets in the last ${humanDuration(seconds * 1000)} (${perSecond.toFixed(2)}/s): ${listed}`);
  return { total, seconds, perSecond, byReason };
}

export function diagnose(input: DiagnoseInput): Diagnosis {
  const { network, looks, previous, now } = input;
  const findings = new Findings();
  const leases = looks.map((look) => look.lease);
  const kept: Record<string, NodeCounters> = {};
  const traffic = new Map<string, Map<string, { sent: number; received: number }>>();
  const nodes: NodeReport[] = [];
  let firstLook = false;

  for (const look of looks) {
    const { lease, status } = look;
    const name = nameOf(lease);
    const state = stateOf(look);
    let reason: string | undefined;
    let peers: NodeReport['peers'] = null;
    let drops: NodeReport['drops'] = null;
    let peerFigures: Map<string, { sent: number; received: number }> | undefined;
    if (status === undefined) {
      reason = look.error;
      if (lease.expiresAt === null && lease.nodeName === '') findings.add('reservation-unclaimed', 'info', [name], `the reservation ${lease.subnet} for ${lease.publicIP ?? lease.publicIPv6} has no daemon answering (no node has claimed it yet): ${look.error}`);
      else findings.add('daemon-unreachable', 'error', [name], `${name}: ${look.error}`);
      // Keep its counters for when it answers again.
      const before = previous?.nodes[lease.subnet];
      if (before) kept[lease.subnet] = before;
    } else {
      if (state !== 'running') {
        reason = textOr(status.reason) ?? (state === 'unknown' ? 'its status names no state' : undefined);
        findings.add('daemon-not-running', 'error', [name], `${name} is ${state === 'unknown' ? 'in an unknown state' : state}${reason ? `: ${reason}` : ''}`);
      }
      if (status.store?.connected === false) findings.add('store-unreachable', 'error', [name], `${name} cannot reach the lease store at ${textOr(status.store.address) ?? 'its --redis-url'}`);
      checkConfig(findings, name, lease, status, network);
      peers = checkPeers(findings, name, lease, status, leases, network);
      const counters = flatDrops(status);
      peerFigures = peerTraffic(status);
      traffic.set(lease.subnet, peerFigures);
      if (counters) {
        const before = previous?.nodes[lease.subnet];
        firstLook ||= before === undefined;
        drops = dropsOf(findings, name, counters, before, now);
        kept[lease.subnet] = { at: now, drops: counters, peers: Object.fromEntries(peerFigures) };
      }
    }
    checkLease(findings, name, lease, status, now);
    const version = status === undefined ? null : (textOr(status.version) ?? null);
    nodes.push({
      node: name,
      subnet: lease.subnet,
      publicIP: lease.publicIP ?? null,
      publicIPv6: lease.publicIPv6 ?? null,
      url: look.url,
      reserved: lease.expiresAt === null,
      expiresAt: lease.expiresAt,
      version,
      state,
      ...(reason !== undefined ? { reason } : {}),
      storeConnected: typeof status?.store?.connected === 'boolean' ? status.store.connected : null,
      peers,
      drops,
      traffic: peerFigures === undefined || (peerFigures.size === 0 && (status?.peers?.length ?? 0) > 0) ? null : Object.fromEntries(peerFigures),
    });
  }
  checkVersions(findings, looks);
  checkSilence(findings, looks, traffic, previous);
  if (firstLook) {
    findings.add('first-look', 'info', [], previous === undefined || Object.keys(previous.nodes).length === 0
      ? 'no earlier look at this cluster: drops are totals since each daemon started; run doctor again for rates'
      : 'no earlier look at some nodes: their drops are totals since their daemon started');
  }
  return { nodes, findings: findings.list(), look: { nodes: kept } };
}
