/**
 * What one look of `miniflannel doctor` costs the CLI at N nodes: the survey
 * (cli/cluster/survey.ts) reading every daemon's /status, and the checks
 * (cli/cluster/doctor.ts) over what they say. The network is left out: the
 * survey's fetcher hands back each node's /status as JSON text parsed as it
 * would be off the wire, so what is timed is the parsing and the checks.
 * Each simulated node runs, with every other node as a peer whose traffic
 * grows between looks, so the cluster is healthy and every check runs its
 * full course; a finding that is a problem fails the bench, since it would
 * mean the figures are of some other path. The first look has no previous
 * one to compare with; the later ones compare with the look before, as
 * doctor run again does.
 */
import { diagnose, isProblem, type Look } from '../../cli/cluster/doctor.js';
import { DEFAULT_CONCURRENCY, lookAtNodes, statusUrl } from '../../cli/cluster/survey.js';
import type { PeerView } from '../../daemon/node/peers.js';
import type { StatusDocument } from '../../daemon/node/status.js';
import { emptyCounters } from '../../daemon/dataplane/index.js';
import { DEFAULT_HEALTHZ_PORT } from '../../daemon/flags.js';
import { DEFAULT_UDP_PORT, parseNetworkConfig, type Lease } from '../../daemon/lease/index.js';
import { parseCidr } from '../../daemon/net/ipv4.js';
import v8 from 'node:v8';
import vm from 'node:vm';
import { median } from './stats.js';

export interface DoctorOptions {
  nodes: number;
  /** Looks in a row; the first has no previous look to compare with. */
  looks: number;
  log?: (line: string) => void;
}

export interface DoctorLookFigure {
  seconds: number;
  /** The /status JSON the survey parsed in this look. */
  statusBytes: number;
  /** The heap in use when the look began, after a collection: the look's /status texts and the leases. */
  heapUsedAtStartBytes: number;
  /** The largest heap in use, read after the survey and after the checks (what is not yet collected included). */
  peakHeapUsedBytes: number;
}

export interface DoctorResult {
  options: { nodes: number; looks: number; peersPerNode: number; concurrency: number };
  looks: DoctorLookFigure[];
  firstLookSeconds: number;
  /** The median of the looks after the first; null with one look. */
  laterLooksMedianSeconds: number | null;
  peakHeapUsedBytes: number;
  /** The process's peak resident set over the whole run, the simulated /status texts included. */
  peakRssBytes: number;
}

/** The simulated cluster's network: 10.0.0.0/8 in /24s, so at most DOCTOR_MAX_NODES (cli/lab.ts) nodes. */
const NETWORK = parseNetworkConfig({ Network: '10.0.0.0/8', SubnetLen: 24 });
/** Doctor run once a minute, as a cron job would. */
const LOOK_INTERVAL_MS = 60_000;
/** Datagrams each node sends every peer, and receives from it, between looks. */
const PACKETS_PER_LOOK = 100;
const PACKET_BYTES = 100;
const UPTIME_AT_FIRST_LOOK_S = 86_400;

/**
 * doctor runs each look in a fresh process; collecting before each look
 * keeps the bench's own garbage (the earlier looks, the texts built for this
 * one) out of its time and heap.
 */
function collectGarbage(): void {
  v8.setFlagsFromString('--expose-gc');
  (vm.runInNewContext('gc') as () => void)();
}

function simulatedLeases(nodes: number, now: number): Lease[] {
  return Array.from({ length: nodes }, (_, i) => {
    const subnet = `10.${i >> 8}.${i & 255}.0/24`;
    return {
      subnet,
      cidr: parseCidr(subnet),
      publicIP: `198.${18 + (i >> 16)}.${(i >> 8) & 255}.${i & 255}`,
      nodeName: `node-${i}`,
      backendType: 'udp',
      backendData: {},
      expiresAt: now + 20 * 3_600_000,
    };
  });
}

/** Every node's /status at look `look` (taken at `now`), as JSON text by its URL. */
function statusTexts(leases: readonly Lease[], look: number, now: number): Map<string, string> {
  const packets = PACKETS_PER_LOOK * (look + 1);
  const traffic = { packetsSent: packets, bytesSent: packets * PACKET_BYTES, packetsReceived: packets, bytesReceived: packets * PACKET_BYTES, drops: 0, lastReceivedAt: now - 1000 };
  const peerOf = (l: Lease): PeerView => ({ subnet: l.subnet, endpoint: `${l.publicIP}:${DEFAULT_UDP_PORT}`, node: l.nodeName, traffic });
  const peers = leases.map(peerOf);
  return new Map(
    leases.map((own, i) => {
      const status: StatusDocument = {
        version: '0.1.0',
        state: 'running',
        node: { name: own.nodeName, publicIP: own.publicIP!, iface: 'eth0', subnet: own.subnet, network: '10.0.0.0/8', tun: 'flannel0', mtu: 1472, port: DEFAULT_UDP_PORT, routes: ['10.0.0.0/8'] },
        lease: { subnet: own.subnet, publicIP: own.publicIP!, nodeName: own.nodeName, expiresAt: own.expiresAt, renewMarginMs: 3_600_000 },
        store: { address: 'redis://198.18.255.254:6379', connected: true, resets: 0, leaseRestored: 0, resyncs: 0, leases: leases.length },
        peers: [...peers.slice(0, i), ...peers.slice(i + 1)],
        counters: emptyCounters(),
        uptimeSeconds: UPTIME_AT_FIRST_LOOK_S + (look * LOOK_INTERVAL_MS) / 1000,
      };
      return [statusUrl(own, DEFAULT_HEALTHZ_PORT), JSON.stringify(status)];
    }),
  );
}

export async function benchDoctor(options: DoctorOptions): Promise<DoctorResult> {
  const started = Date.now();
  const leases = simulatedLeases(options.nodes, started);
  const looks: DoctorLookFigure[] = [];
  let previous: Look | undefined;
  for (let look = 0; look < options.looks; look++) {
    const now = started + look * LOOK_INTERVAL_MS;
    // Built before the clock starts: the texts stand for what the daemons would send.
    const texts = statusTexts(leases, look, now);
    const statusBytes = [...texts.values()].reduce((n, text) => n + text.length, 0);
    const fetchStatus = async (url: string): Promise<unknown> => JSON.parse(texts.get(url)!);
    collectGarbage();
    const heapUsedAtStartBytes = process.memoryUsage().heapUsed;
    const start = performance.now();
    const surveyed = await lookAtNodes(leases, { port: DEFAULT_HEALTHZ_PORT, timeoutMs: 60_000, concurrency: DEFAULT_CONCURRENCY, fetchStatus, clock: () => now });
    const heapAfterSurvey = process.memoryUsage().heapUsed;
    const diagnosis = diagnose({ network: NETWORK, looks: surveyed, now, ...(previous ? { previous } : {}) });
    const seconds = (performance.now() - start) / 1000;
    const peakHeapUsedBytes = Math.max(heapAfterSurvey, process.memoryUsage().heapUsed);
    const problems = diagnosis.findings.filter(isProblem);
    if (problems.length > 0) throw new Error(`doctor found problems in the simulated cluster, so the figures would not be of a healthy look: ${problems.map((f) => f.check).join(', ')}`);
    previous = diagnosis.look;
    looks.push({ seconds, statusBytes, heapUsedAtStartBytes, peakHeapUsedBytes });
    options.log?.(`doctor look ${look + 1} of ${options.looks} at ${options.nodes} nodes: ${seconds.toFixed(2)} s, ${(statusBytes / 1e6).toFixed(0)} MB of /status JSON`);
  }
  const later = looks.slice(1).map((l) => l.seconds);
  return {
    options: { nodes: options.nodes, looks: options.looks, peersPerNode: options.nodes - 1, concurrency: DEFAULT_CONCURRENCY },
    looks,
    firstLookSeconds: looks[0]!.seconds,
    laterLooksMedianSeconds: later.length > 0 ? median(later) : null,
    peakHeapUsedBytes: Math.max(...looks.map((l) => l.peakHeapUsedBytes)),
    // maxRSS is in KiB.
    peakRssBytes: process.resourceUsage().maxRSS * 1024,
  };
}
