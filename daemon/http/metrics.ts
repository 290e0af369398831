/**
 * Prometheus metrics, read from the daemon's state at scrape time so the
 * packet path never touches prom-client.
 */
import { Counter, Gauge, Registry, collectDefaultMetrics } from 'prom-client';
import { packetCounters, type CountersSnapshot, type PacketCounterKey } from '../dataplane/index.js';

export interface MetricsSource {
  counters(): CountersSnapshot;
  peers(): number;
  /** Lease expiry as a Unix time in seconds; undefined without a lease, 0 for a reservation (no expiry). */
  leaseExpiry(): number | undefined;
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

export function createMetrics(source: MetricsSource): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
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
  snapshotCounter(registry, 'miniflannel_log_lines_dropped_total', "Log lines dropped because the daemon's stdout reader stalled or went away", () => source.logLinesDropped());
  return {
    contentType: registry.contentType,
    scrape: () => {
      snapshot = source.counters();
      return registry.metrics();
    },
  };
}
