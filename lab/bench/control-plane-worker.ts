/**
 * One worker process of `bench control-plane`: a share of the simulated
 * daemons, run in its own event loop (child_process.fork), driven over IPC
 * by the coordinator in control-plane.ts.
 *
 * Each simulated daemon does with the lease store what miniflanneld does
 * (daemon/node/node.ts, daemon/node/peers.ts), without the data plane:
 *   1. start    its own connectLeaseStore (backoff retry), then
 *               getNetworkConfig and acquireLease, retried with the daemon's
 *               start-up backoff while the store is unusable;
 *   2. follow   keepLease, then watchLeases, consumed to the end:
 *               - reset: keeper.reassert after a random 0-3 s, and
 *                 ensureNetworkConfig after a random 0-3 s;
 *               - config: ensureNetworkConfig at once (the two share one
 *                 timer, as the daemon's ConfigGuard does);
 *               - its own lease removed or expired, missing from a
 *                 snapshot, or named by another IP: keeper.reassert;
 *               - keeper `lost`, or the watch failing: the daemon exits.
 * What it keeps is a count, not a peer table: 10,000 daemons each holding
 * 10,000 peers would not fit in memory, and the bench needs only how many
 * leases each watcher was told of (the snapshot's, plus added, minus removed
 * and expired; zero again at a reset) and when the probe's changes arrived.
 * An `added` for a lease already counted would count twice; the bench never
 * changes a lease's attributes, and the lease store's sequence numbers keep
 * a change from being delivered twice.
 *
 * Watches start with bounded concurrency (watchStarts per worker between
 * their start and their snapshot), so that the listings, each holding every
 * lease until the consumer has counted it, do not all hold memory at once.
 */
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { pino } from 'pino';
import {
  connectLeaseStore,
  LeaseStoreError,
  OptionsError,
  StoreAccessError,
  type Lease,
  type LeaseKeeper,
  type LeaseWatch,
  type NetworkConfig,
  type SubnetManager,
  type WatchEvent,
} from '../../daemon/lease/index.js';
import {
  nodeIp,
  type ChangeArrival,
  type OperationName,
  type Operations,
  type Progress,
  type Reached,
  type ReplyMessage,
  type RequestMessage,
  type WorkerConfig,
  type WorkerStats,
} from './control-plane-protocol.js';

/** As daemon/node/node.ts: after a reset each node re-asserts within this long, at random. */
const REASSERT_SPREAD_MS = 3_000;
/** As daemon/node/node.ts: waiting for a usable store at start-up, 1 s doubling to 30 s, with jitter. */
const START_BACKOFF = { initialDelayMs: 1_000, maxDelayMs: 30_000 };
const EXIT_REASONS_KEPT = 5;

const logger = pino({ level: 'silent' });
/** Wall-clock ms with a fraction, on the clock Redis stamps stream IDs with (same host). */
const wallClockMillis = () => performance.timeOrigin + performance.now();
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

function startBackoff(attempt: number): number {
  const base = Math.min(START_BACKOFF.maxDelayMs, START_BACKOFF.initialDelayMs * 2 ** Math.min(attempt - 1, 30));
  return Math.round(base * (0.75 + Math.random() * 0.5));
}

/** At most `limit` holders at once; the others wait in order. */
class Slots {
  private free: number;
  private readonly waiting: Array<() => void> = [];

  constructor(limit: number) {
    this.free = limit;
  }

  async take(): Promise<() => void> {
    if (this.free > 0) this.free--;
    else await new Promise<void>((resolve) => this.waiting.push(resolve));
    let released = false;
    return () => {
      if (released) return;
      released = true;
      const next = this.waiting.shift();
      if (next !== undefined) next();
      else this.free++;
    };
  }
}

type DaemonState = 'starting' | 'running' | 'killed' | 'exited';

class SimulatedDaemon {
  readonly ip: string;
  readonly name: string;
  state: DaemonState = 'starting';
  store: SubnetManager | undefined;
  lease: Lease | undefined;
  keeper: LeaseKeeper | undefined;
  watch: LeaseWatch | undefined;
  acquiredAt = 0;
  snapshotAt = 0;
  /** Leases the watch told of: the snapshot's, + added, − removed and expired; 0 again at a reset. */
  leaseCount = 0;
  resetsSeen = 0;
  /** Since the last mark(): when the first reset arrived, when the keeper first put the lease back (epoch ms, 0: not yet), and how often it did. */
  resetSeenAt = 0;
  restoredAt = 0;
  restores = 0;
  /** Taken by mark(). */
  markedResets = 0;
  markedReconnects = 0;
  private config: NetworkConfig | undefined;
  private configTimer: NodeJS.Timeout | undefined;
  private releaseSlot: (() => void) | undefined;

  constructor(
    readonly index: number,
    private readonly worker: BenchWorker,
  ) {
    this.ip = nodeIp(index);
    this.name = `sim-${index + 1}`;
  }

  /** As miniflanneld starts: open the store, then the config and a lease, waiting with backoff while the store is unusable. */
  async start(config: WorkerConfig): Promise<void> {
    const store = await connectLeaseStore({
      url: config.url,
      logger,
      leaseTtlMs: config.leaseTtlMs,
      renewMarginMs: config.renewMarginMs,
      retry: { mode: 'backoff' },
    });
    this.store = store;
    for (let attempt = 1; ; attempt++) {
      if (this.state !== 'starting') return;
      try {
        this.config = await store.getNetworkConfig();
        this.lease = (await store.acquireLease({ publicIP: this.ip, nodeName: this.name })).lease;
        break;
      } catch (err) {
        if (!(err instanceof LeaseStoreError) || err instanceof StoreAccessError || err instanceof OptionsError) throw err;
        this.worker.counters.acquireRetries++;
        await sleep(startBackoff(attempt));
      }
    }
    this.acquiredAt = Date.now();
    this.state = 'running';
    // As follow() in node.ts: the keeper first, then the watch.
    this.keep(this.lease);
    this.releaseSlot = await this.worker.watchSlots.take();
    if (this.state !== 'running') return this.releaseSlot();
    const watch = store.watchLeases();
    this.watch = watch;
    void this.consume(watch).catch((err: Error) => this.exit(`lease watch failed: ${err.message}`));
  }

  keep(lease: Lease): void {
    const keeper = this.store!.keepLease(lease);
    const counters = this.worker.counters;
    keeper.on('renewed', () => counters.renewals++);
    keeper.on('restored', () => {
      counters.restored++;
      this.restores++;
      if (this.restoredAt === 0) this.restoredAt = Date.now();
    });
    keeper.on('renewFailed', (err) => {
      counters.renewFailed++;
      this.worker.failure(`renewal: ${err.message}`);
    });
    keeper.on('lost', (err) => void this.exit(`lease ${lease.subnet} lost: ${err.message}`));
    this.keeper = keeper;
  }

  private reassert(reason: string, delayMs = 0): void {
    this.worker.counters.reassertions++;
    this.keeper?.reassert(reason, delayMs);
  }

  /** The daemon's ConfigGuard: one pending check, a later request replacing it. */
  private checkConfig(delayMs: number, attempt = 1): void {
    if (this.configTimer !== undefined) clearTimeout(this.configTimer);
    this.configTimer = setTimeout(() => void this.ensureConfig(attempt), delayMs);
    this.configTimer.unref();
  }

  private async ensureConfig(attempt: number): Promise<void> {
    if (this.state !== 'running') return;
    const counters = this.worker.counters;
    counters.configChecks++;
    try {
      const check = await this.store!.ensureNetworkConfig(this.config!);
      if (check.status === 'stored') counters.configStored++;
    } catch (err) {
      counters.configFailures++;
      this.worker.failure(`ensureNetworkConfig: ${(err as Error).message}`);
      this.checkConfig(Math.min(30_000, 1_000 * 2 ** attempt), attempt + 1);
    }
  }

  private async consume(watch: LeaseWatch): Promise<void> {
    for await (const event of watch) this.handle(event);
  }

  private handle(event: WatchEvent): void {
    const own = this.lease!;
    switch (event.type) {
      case 'snapshot': {
        this.leaseCount = event.leases.length;
        this.worker.counters.snapshots[event.cause]++;
        const listed = event.leases.find((lease) => lease.subnet === own.subnet);
        if (listed === undefined) this.reassert('the lease is missing from the store');
        else if (listed.publicIP !== own.publicIP) this.reassert(`the store says the subnet belongs to ${listed.publicIP}`);
        if (this.snapshotAt === 0) {
          this.snapshotAt = Date.now();
          this.releaseSlot?.();
        }
        return;
      }
      case 'added':
        this.leaseCount++;
        if (event.lease.subnet === own.subnet && event.lease.publicIP !== own.publicIP) this.reassert(`the subnet now belongs to ${event.lease.publicIP}`);
        if (event.lease.publicIP === this.worker.probeIp) this.worker.probeArrived(event.seq);
        return;
      case 'removed':
      case 'expired':
        this.leaseCount--;
        if (event.lease.subnet === own.subnet) this.reassert(`the lease was ${event.type}`);
        if (event.lease.publicIP === this.worker.probeIp) this.worker.probeArrived(event.seq);
        if (event.type === 'expired' && !this.worker.expired.has(event.lease.subnet)) this.worker.expired.set(event.lease.subnet, Date.now());
        return;
      case 'reset':
        this.leaseCount = 0;
        this.resetsSeen++;
        if (this.resetSeenAt === 0) this.resetSeenAt = Date.now();
        this.reassert('the store lost its data', Math.random() * REASSERT_SPREAD_MS);
        this.checkConfig(Math.random() * REASSERT_SPREAD_MS);
        return;
      case 'config':
        this.checkConfig(0);
        return;
    }
  }

  /** Ends as miniflanneld does when its lease is lost or its watch fails. */
  async exit(reason: string): Promise<void> {
    if (this.state === 'exited' || this.state === 'killed') return;
    this.state = 'exited';
    this.worker.exited(reason);
    await this.close();
  }

  /** SIGKILL, as far as the store can tell: no revocation; the lease expires. */
  async kill(): Promise<void> {
    this.state = 'killed';
    await this.close();
  }

  async close(): Promise<void> {
    if (this.configTimer !== undefined) clearTimeout(this.configTimer);
    this.releaseSlot?.();
    this.keeper?.stop();
    await this.store?.close().catch(() => undefined);
  }
}

class BenchWorker {
  config: WorkerConfig | undefined;
  daemons: SimulatedDaemon[] = [];
  watchSlots = new Slots(1);
  probeIp = '';
  readonly counters = {
    acquireRetries: 0,
    renewals: 0,
    restored: 0,
    renewFailed: 0,
    reassertions: 0,
    configChecks: 0,
    configStored: 0,
    configFailures: 0,
    snapshots: { start: 0, gap: 0, reset: 0 },
  };
  readonly expired = new Map<string, number>();
  private exitCount = 0;
  private readonly exitReasons: string[] = [];
  /** Arrival latencies of the probe's changes, by stream ID, until the coordinator collects them. */
  private readonly arrivals = new Map<string, number[]>();
  private readonly changeWaiters = new Map<string, () => void>();
  private readonly loopDelay = monitorEventLoopDelay({ resolution: 10 });

  constructor() {
    this.loopDelay.enable();
  }

  /** The first few distinct failures (retried, not fatal), for the report. */
  readonly failures = new Map<string, number>();

  failure(message: string): void {
    // Addresses and numbers vary; the kind of failure is what matters.
    const kind = message.replace(/\d+(\.\d+)*/g, 'N');
    if (this.failures.has(kind) || this.failures.size < EXIT_REASONS_KEPT) this.failures.set(kind, (this.failures.get(kind) ?? 0) + 1);
  }

  exited(reason: string): void {
    this.exitCount++;
    if (this.exitReasons.length < EXIT_REASONS_KEPT) this.exitReasons.push(reason);
  }

  probeArrived(seq: string): void {
    const latency = Math.max(0, wallClockMillis() - Number(seq.split('-')[0]));
    let list = this.arrivals.get(seq);
    if (list === undefined) this.arrivals.set(seq, (list = []));
    list.push(latency);
    this.changeWaiters.get(seq)?.();
  }

  private watching(): SimulatedDaemon[] {
    return this.daemons.filter((d) => d.state === 'running' && d.snapshotAt > 0);
  }

  private running(): SimulatedDaemon[] {
    return this.daemons.filter((d) => d.state === 'running');
  }

  start(config: WorkerConfig): null {
    this.config = config;
    this.probeIp = config.probeIp;
    this.watchSlots = new Slots(config.watchStarts);
    this.daemons = Array.from({ length: config.count }, (_, i) => new SimulatedDaemon(config.first + i, this));
    for (const daemon of this.daemons) {
      void daemon.start(config).catch((err: Error) => daemon.exit(`start-up failed: ${err.message}`));
    }
    return null;
  }

  progress(): Progress {
    let acquired = 0;
    let watching = 0;
    for (const d of this.daemons) {
      if (d.acquiredAt > 0) acquired++;
      if (d.snapshotAt > 0) watching++;
    }
    return { acquired, watching, exited: this.exitCount };
  }

  /** Polls `count` every 50 ms until it reaches `expected` (recomputed each time) or the timeout. */
  private async until(timeoutMs: number, check: () => { reached: number; expected: number; at: number }): Promise<Reached> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const { reached, expected, at } = check();
      if (reached >= expected) return { at, reached, expected };
      if (Date.now() > deadline) return { at: null, reached, expected };
      await sleep(50);
    }
  }

  awaitAcquired(timeoutMs: number): Promise<Reached> {
    return this.until(timeoutMs, () => {
      const alive = this.daemons.filter((d) => d.state !== 'exited');
      const acquired = alive.filter((d) => d.acquiredAt > 0);
      return { reached: acquired.length, expected: alive.length, at: Math.max(0, ...acquired.map((d) => d.acquiredAt)) };
    });
  }

  awaitWatching(timeoutMs: number): Promise<Reached> {
    return this.until(timeoutMs, () => {
      const alive = this.daemons.filter((d) => d.state !== 'exited');
      const watching = alive.filter((d) => d.snapshotAt > 0);
      return { reached: watching.length, expected: alive.length, at: Math.max(0, ...watching.map((d) => d.snapshotAt)) };
    });
  }

  async awaitChange(seq: string, timeoutMs: number): Promise<ChangeArrival> {
    const expected = this.watching().length;
    const seen = () => this.arrivals.get(seq)?.length ?? 0;
    if (seen() < expected) {
      await new Promise<void>((resolve) => {
        const timer = setTimeout(done, timeoutMs);
        function done(): void {
          clearTimeout(timer);
          resolve();
        }
        this.changeWaiters.set(seq, () => seen() >= expected && done());
      });
      this.changeWaiters.delete(seq);
    }
    const latencies = this.arrivals.get(seq) ?? [];
    this.arrivals.delete(seq);
    return { latencies, expected };
  }

  async kill(count: number, from: number, to: number): Promise<{ killed: Array<{ subnet: string; expiresAt: number }> }> {
    const candidates = this.running()
      .filter((d) => d.keeper !== undefined && d.keeper.lease.expiresAt !== null)
      .map((d) => ({ d, expiresAt: d.keeper!.lease.expiresAt! }))
      .filter(({ expiresAt }) => expiresAt >= from)
      .sort((a, b) => a.expiresAt - b.expiresAt);
    // Within the range if it holds enough; otherwise the soonest after `from`.
    const inRange = candidates.filter(({ expiresAt }) => expiresAt <= to);
    const chosen = (inRange.length >= count ? inRange : candidates).slice(0, count);
    await Promise.all(chosen.map(({ d }) => d.kill()));
    return { killed: chosen.map(({ d, expiresAt }) => ({ subnet: d.lease!.subnet, expiresAt })) };
  }

  pauseKeepers(): null {
    for (const d of this.running()) d.keeper?.stop();
    return null;
  }

  resumeKeepers(): null {
    for (const d of this.running()) if (d.keeper !== undefined) d.keep(d.keeper.lease);
    return null;
  }

  stats(resetLoopDelay: boolean): WorkerStats {
    const sums = { delivered: 0, resyncs: 0, resets: 0, reconnects: 0, corruptEvents: 0 };
    for (const d of this.daemons) {
      if (d.watch === undefined) continue;
      const s = d.watch.stats;
      sums.delivered += s.delivered;
      sums.resyncs += s.resyncs;
      sums.resets += s.resets;
      sums.reconnects += s.reconnects;
      sums.corruptEvents += s.corruptEvents;
    }
    const watching = this.watching();
    const counts = watching.map((d) => d.leaseCount);
    const stats: WorkerStats = {
      daemons: this.daemons.length,
      running: this.running().length,
      watching: watching.length,
      killed: this.daemons.filter((d) => d.state === 'killed').length,
      exited: this.exitCount,
      exitReasons: [...this.exitReasons],
      failures: [...this.failures],
      ...this.counters,
      snapshots: { ...this.counters.snapshots },
      ...sums,
      expired: [...this.expired],
      minLeaseCount: counts.length ? Math.min(...counts) : 0,
      maxLeaseCount: counts.length ? Math.max(...counts) : 0,
      loopDelayP99Ms: this.loopDelay.percentile(99) / 1e6,
      loopDelayMaxMs: this.loopDelay.max / 1e6,
      rssBytes: process.memoryUsage.rss(),
      peakRssBytes: process.resourceUsage().maxRSS * 1024,
    };
    if (resetLoopDelay) this.loopDelay.reset();
    return stats;
  }

  leases(): Array<[string, string]> {
    return this.running().map((d) => [d.keeper?.lease.subnet ?? d.lease!.subnet, d.ip]);
  }

  mark(): null {
    for (const d of this.daemons) {
      d.resetSeenAt = 0;
      d.restoredAt = 0;
      d.restores = 0;
      d.markedResets = d.resetsSeen;
      d.markedReconnects = d.watch?.stats.reconnects ?? 0;
    }
    return null;
  }

  awaitReconnected(timeoutMs: number): Promise<Reached> {
    return this.until(timeoutMs, () => {
      const running = this.running();
      const back = running.filter((d) => d.watch !== undefined && d.watch.stats.reconnects > d.markedReconnects && d.watch.connected);
      return { reached: back.length, expected: running.length, at: Date.now() };
    });
  }

  async awaitRecovered(expected: number, timeoutMs: number): Promise<Operations['await-recovered'][1]> {
    const reached = await this.until(timeoutMs, () => {
      const running = this.running();
      const done = running.filter((d) => d.resetsSeen > d.markedResets && d.leaseCount >= expected);
      return { reached: done.length, expected: running.length, at: Date.now() };
    });
    const running = this.running();
    return {
      ...reached,
      resetSeen: running.filter((d) => d.resetsSeen > d.markedResets).length,
      resetSeenAt: running.filter((d) => d.resetSeenAt > 0).map((d) => d.resetSeenAt),
      restoredAt: running.filter((d) => d.restoredAt > 0).map((d) => d.restoredAt),
      restores: running.reduce((n, d) => n + d.restores, 0),
    };
  }

  async stop(): Promise<null> {
    await Promise.all(this.daemons.map((d) => d.close()));
    return null;
  }
}

const worker = new BenchWorker();

async function perform(message: RequestMessage): Promise<unknown> {
  const op: OperationName = message.op;
  const arg = message.arg as never;
  switch (op) {
    case 'start':
      return worker.start(arg as Operations['start'][0]);
    case 'progress':
      return worker.progress();
    case 'await-acquired':
      return worker.awaitAcquired((arg as Operations['await-acquired'][0]).timeoutMs);
    case 'await-watching':
      return worker.awaitWatching((arg as Operations['await-watching'][0]).timeoutMs);
    case 'await-change': {
      const { seq, timeoutMs } = arg as Operations['await-change'][0];
      return worker.awaitChange(seq, timeoutMs);
    }
    case 'kill': {
      const { count, from, to } = arg as Operations['kill'][0];
      return worker.kill(count, from, to);
    }
    case 'pause-keepers':
      return worker.pauseKeepers();
    case 'resume-keepers':
      return worker.resumeKeepers();
    case 'stats':
      return worker.stats((arg as Operations['stats'][0]).resetLoopDelay);
    case 'leases':
      return worker.leases();
    case 'mark':
      return worker.mark();
    case 'await-reconnected':
      return worker.awaitReconnected((arg as Operations['await-reconnected'][0]).timeoutMs);
    case 'await-recovered': {
      const { expected, timeoutMs } = arg as Operations['await-recovered'][0];
      return worker.awaitRecovered(expected, timeoutMs);
    }
    case 'stop':
      return worker.stop();
  }
}

function reply(message: ReplyMessage): void {
  if (process.connected) process.send!(message);
}

// Ctrl-C reaches the whole process group: the coordinator decides when this worker stops.
process.on('SIGINT', () => undefined);
// The coordinator is gone (it exited, or was killed): nothing is left to report to.
process.on('disconnect', () => process.exit(0));
process.on('message', (message: RequestMessage) => {
  perform(message).then(
    (value) => {
      reply({ id: message.id, ok: true, value });
      if (message.op === 'stop') setImmediate(() => process.exit(0));
    },
    (err: unknown) => reply({ id: message.id, ok: false, error: err instanceof Error ? err.message : String(err) }),
  );
});
// Listening: the coordinator may send.
reply({ id: 0, ok: true, value: 'ready' });
