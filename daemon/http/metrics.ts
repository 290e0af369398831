/**
 * Prometheus metrics, read from the daemon's state at scrape time so the
 * packet path never touches prom-client.
 */
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { packetCounters, type CountersSnapshot, type PacketCounterKey, type PeerTrafficView } from '../dataplane/index.js';

/** A peer's traffic as --peer-metrics labels it: by the peer's subnet and node. */
export interface PeerTrafficSample {
  readonly subnet: string;
  readonly node: string;
  readonly traffic: PeerTrafficView;
}

export interface MetricsSource {
  readonly version: string;
  /** Whether the node forwards with known peers (/readyz answers 200). */
  ready(): boolean;
  counters(): CountersSnapshot;
  peers(): number;
  /** Lease expiry as a Unix time in seconds; undefined without a lease, 0 for a reservation (no expiry). */
  leaseExpiry(): number | undefined;
  /** Whether the last attempt to renew the lease failed; undefined without a lease. */
  leaseRenewalFailing(): boolean | undefined;
  /** Leases in the store as last seen, this node's own included; undefined without a lease store or before the first listing. */
  leases(): number | undefined;
  /** Each peer's traffic, for --peer-metrics. */
  peerTraffic(): readonly PeerTrafficSample[];
  /** Whether the lease store's connection is up; undefined without a lease store (static mode). */
  storeConnected(): boolean | undefined;
  /** Times the lease store was found to have lost its data; undefined without a lease store. */
  storeResets(): number | undefined;
  /** Peers kept while their node has not yet re-asserted a lease the store forgot. */
  peersUnconfirmed(): number;
  /** Log lines dropped rather than wait for a stdout reader that stalled or went away. */
  logLinesDropped(): number;
}

/** A counter whose value is read from a snapshot when scraped. */
function snapshotCounter(registry: Registry, name: string, help: string, read: () => number): void {
  new Counter({
    name,
    help,
    registers: [registry],
    collect() {
      this.reset();
      this.inc(read());
    },
  });
}

export interface Metrics {
  readonly contentType: string;
  scrape(): Promise<string>;
}

/**
 * How often the event-loop lag (nodejs_eventloop_lag_*) is sampled. The
 * sampler is a timer on the daemon's own loop, so prom-client's default of
 * 10 ms woke an idle daemon 100 times a second; once a second still catches
 * any stall long enough to matter to the packet path's latency.
 */
export const EVENT_LOOP_SAMPLE_MS = 1000;

export interface MetricsOptions {
  /** Whether the node keeps a lease in a store (lease mode, the default): static mode has no lease or store series. */
  readonly leaseStore?: boolean;
  /**
   * Per-peer series (--peer-metrics): five counters and a gauge per peer,
   * so 30,000 series at 5,000 peers on every node. Off by default; /status
   * shows the same figures without the cost.
   */
  readonly peerMetrics?: boolean;
}

/** The per-peer series of --peer-metrics: the figure each reads from a peer's traffic. */
const peerSeries: readonly { name: string; help: string; read: (traffic: PeerTrafficView) => number; gauge?: true }[] = [
  { name: 'miniflannel_peer_sent_packets_total', help: 'Datagrams sent to the peer', read: (t) => t.packetsSent },
  { name: 'miniflannel_peer_sent_bytes_total', help: 'Bytes sent to the peer in datagrams', read: (t) => t.bytesSent },
  { name: 'miniflannel_peer_received_packets_total', help: 'Datagrams received from the peer', read: (t) => t.packetsReceived },
  { name: 'miniflannel_peer_received_bytes_total', help: 'Bytes received from the peer in datagrams', read: (t) => t.bytesReceived },
  { name: 'miniflannel_peer_dropped_packets_total', help: 'Datagrams from the peer that ingress refused (not authentic, replayed, spoofed, malformed, misaddressed)', read: (t) => t.drops },
  { name: 'miniflannel_peer_last_received_timestamp_seconds', help: 'Unix time of the last datagram received from the peer (0: never)', read: (t) => (t.lastReceivedAt ?? 0) / 1000, gauge: true },
];

export function createMetrics(source: MetricsSource, options: MetricsOptions = {}): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry, eventLoopMonitoringPrecision: EVENT_LOOP_SAMPLE_MS });
  new Gauge({
    name: 'miniflannel_build_info',
    help: "The daemon's version, as a label; always 1",
    labelNames: ['version'],
    registers: [registry],
  }).set({ version: source.version }, 1);
  new Gauge({
    name: 'miniflannel_ready',
    help: 'Whether the node forwards with known peers (1), or is starting or waiting for the lease store (0)',
    registers: [registry],
    collect() {
      this.set(source.ready() ? 1 : 0);
    },
  });
  // One snapshot per scrape, so the drop counters and the totals agree.
  let snapshot = source.counters();
  const read = (key: PacketCounterKey) => () => snapshot[key];
  for (const { metric, key, help } of packetCounters) snapshotCounter(registry, metric, help, read(key));

  new Counter({
    name: 'miniflannel_dropped_packets_total',
    help: 'Packets dropped, by direction and reason',
    labelNames: ['direction', 'reason'],
    registers: [registry],
    collect() {
      this.reset();
      for (const [reason, value] of Object.entries(snapshot.egressDrops)) this.inc({ direction: 'egress', reason }, value);
      for (const [reason, value] of Object.entries(snapshot.ingressDrops)) this.inc({ direction: 'ingress', reason }, value);
    },
  });
  new Gauge({
    name: 'miniflannel_peers',
    help: 'Peers in the peer table',
    registers: [registry],
    collect() {
      this.set(source.peers());
    },
  });
  if (options.leaseStore !== false) addLeaseStoreSeries(registry, source);
  // One reading of the peers per scrape, as of the counters.
  let peers: readonly PeerTrafficSample[] = [];
  if (options.peerMetrics) addPeerSeries(registry, () => peers);
  snapshotCounter(registry, 'miniflannel_log_lines_dropped_total', "Log lines dropped because the daemon's stdout reader stalled or went away", () => source.logLinesDropped());
  return {
    contentType: registry.contentType,
    scrape: () => {
      snapshot = source.counters();
      if (options.peerMetrics) peers = source.peerTraffic();
      return registry.metrics();
    },
  };
}

/** The lease's and the store's series: a static node has neither, and must not look like one whose store is down. */
function addLeaseStoreSeries(registry: Registry, source: MetricsSource): void {
  new Gauge({
    name: 'miniflannel_lease_expiry_timestamp_seconds',
    help: "Unix time at which this node's lease expires unless renewed (0: a reservation, never)",
    registers: [registry],
    collect() {
      const expiry = source.leaseExpiry();
      if (expiry !== undefined) this.set(expiry);
    },
  });
  new Gauge({
    name: 'miniflannel_lease_renewal_failing',
    help: 'Whether the last attempt to renew the lease failed (1), as while the lease store is unreachable',
    registers: [registry],
    collect() {
      const failing = source.leaseRenewalFailing();
      if (failing !== undefined) this.set(failing ? 1 : 0);
    },
  });
  new Gauge({
    name: 'miniflannel_leases',
    help: "Leases in the store as this node last saw them, its own included: every other one should be a peer (miniflannel_peers)",
    registers: [registry],
    collect() {
      const leases = source.leases();
      if (leases !== undefined) this.set(leases);
    },
  });
  new Gauge({
    name: 'miniflannel_store_connected',
    help: 'Whether the connection to the lease store (Redis) is up',
    registers: [registry],
    collect() {
      const connected = source.storeConnected();
      if (connected !== undefined) this.set(connected ? 1 : 0);
    },
  });
  new Counter({
    name: 'miniflannel_store_resets_total',
    help: 'Times the lease store was found to have lost its data (restart without persistence, empty replica, flush); the node re-asserted its lease each time',
    registers: [registry],
    collect() {
      const resets = source.storeResets();
      this.reset();
      if (resets !== undefined) this.inc(resets);
    },
  });
  new Gauge({
    name: 'miniflannel_peers_unconfirmed',
    help: 'Peers still forwarded to although the lease store forgot their lease, until their node re-asserts it or --peer-grace passes',
    registers: [registry],
    collect() {
      this.set(source.peersUnconfirmed());
    },
  });
}

function addPeerSeries(registry: Registry, samples: () => readonly PeerTrafficSample[]): void {
  const labelNames = ['peer_subnet', 'peer_node'] as const;
  const labels = (sample: PeerTrafficSample) => ({ peer_subnet: sample.subnet, peer_node: sample.node });
  for (const { name, help, read, gauge } of peerSeries) {
    const common = { name, help, labelNames, registers: [registry] };
    if (gauge) {
      new Gauge({
        ...common,
        collect() {
          this.reset();
          for (const sample of samples()) this.set(labels(sample), read(sample.traffic));
        },
      });
    } else {
      new Counter({
        ...common,
        collect() {
          this.reset();
          for (const sample of samples()) this.inc(labels(sample), read(sample.traffic));
        },
      });
    }
  }
}
