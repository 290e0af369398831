/**
 * The control plane at scale: up to 10,000 simulated daemons against one
 * real redis-server that this run starts on loopback, and restarts.
 *
 * The daemons run in --workers processes (child_process.fork of
 * control-plane-worker.ts), so that no single event loop is the limit. Each
 * does with the lease store what miniflanneld does, without the data plane
 * (the worker's header says exactly what): its own connectLeaseStore, the
 * config, a lease, then keepLease and a watch whose events a light consumer
 * reacts to as the daemon does. The consumer keeps no peer table (10,000 x
 * 10,000 entries would not fit in memory): it counts leases and records when
 * the probe's changes arrive.
 *
 *   1. bring-up   all N started at once; the time until every lease is held,
 *                 and until every watch delivered its snapshot (watches start
 *                 right after their daemon's acquire, a bounded number per
 *                 worker at a time);
 *   2. changes    a probe adds a lease, then revokes it, over and over; each
 *                 change timed from its commit (its stream ID's ms) to its
 *                 arrival at each watcher;
 *   3. steady     a few daemons are stopped without revoking, so their leases
 *                 expire and are reaped inside the window; then Redis's own
 *                 counters over the window (INFO commandstats, which include
 *                 the commands scripts run, and INFO cpu), with the short
 *                 --lease-ttl so that renewals happen in it;
 *   4. idle       every keeper paused (shorter than the renew margin, so no
 *                 lease lapses): what N idle watches cost Redis; then one
 *                 renewal and one reap from a cold connection, counted
 *                 command by command; from these, the cost at the default
 *                 24 h TTL (derived, and said so);
 *   5. memory     per lease (used_memory without client buffers, against a
 *                 baseline before any lease) and per connection;
 *   6. restarts   redis-server restarted on the same port with its AOF: no
 *                 watch may list again or see a reset; then restarted
 *                 without persistence: every daemon must put its lease back
 *                 with its old subnet, and the config, and none may exit.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { readFile } from 'node:fs/promises';
import { pino } from 'pino';
import type { Redis } from 'ioredis';
import { connectLeaseStore, defaultReapInterval, LEASE_STORE_DEFAULTS, type Lease, type SubnetManager } from '../../daemon/lease/index.js';
import { stopProcess } from '../exec.js';
import { RedisMaxClientsError, startRedis, type RedisServer } from '../redis.js';
import {
  commandDeltas,
  cpuSeconds,
  infoNumber,
  monitorClient,
  parseInfo,
  storeBytes,
  microsPerCall,
  type Info,
} from './control-plane-redis.js';
import type { OperationName, Operations, Reached, ReplyMessage, RequestMessage, WorkerConfig, WorkerStats } from './control-plane-protocol.js';
// Internal to the lease store, read here only to tell the commands its scripts run inside Redis from those sent over the wire.
import * as leaseScripts from '../../daemon/lease/scripts.js';
import { openFileLimit, PrerequisiteError, which } from './prerequisites.js';
import { percentile } from './stats.js';

export interface ControlPlaneOptions {
  nodes: number;
  /** Worker processes the daemons are spread over. */
  workers: number;
  /** Lease changes to time (half adds, half revocations). */
  changes: number;
  /** Length of the steady-state window. */
  steadySeconds: number;
  /** Length of the window with every keeper paused; must stay below half the renew margin. */
  idleSeconds: number;
  /** The daemons' lease TTL and renew margin: short, so that renewals and expiries fall in the window. */
  leaseTtlMs: number;
  renewMarginMs: number;
  /** Daemons stopped without revoking before the window, whose leases expire in it. */
  kill: number;
  log: (line: string) => void;
  signal?: AbortSignal;
}

export interface Distribution {
  p50: number;
  p99: number;
  max: number;
  samples: number;
}

/** Per node per hour, with the commands by name (lower case, as INFO commandstats names them). */
export interface CommandRate {
  commandsPerNodePerHour: number;
  byCommand: Record<string, number>;
}

export interface RedisCpu {
  secondsPerHour: number;
  percentOfCore: number;
}

export interface Target {
  name: string;
  target: string;
  value: string;
  pass: boolean;
}

export interface ControlPlaneResult {
  options: {
    nodes: number;
    workers: number;
    changes: number;
    steadySeconds: number;
    idleSeconds: number;
    leaseTtlSeconds: number;
    renewMarginSeconds: number;
    kill: number;
    watchStartsPerWorker: number;
  };
  redis: { version: string; maxclients: number; persistence: string };
  /** What one simulated daemon does, in words. */
  simulatedDaemon: string;
  bringUp: {
    /** From starting all N at once until the last one holds its lease. */
    acquireAllSeconds: number;
    /** From the same start until the last watch delivered its snapshot. */
    allWatchingSeconds: number;
    /** Attempts at start-up that failed and were retried. */
    acquireRetries: number;
    /** Events other than snapshots the watches delivered during bring-up (the other daemons' leases arriving). */
    eventsDelivered: number;
    redisCpuSeconds: number;
    simulatorLoopDelayP99Millis: number;
  };
  /** Per change, from its commit in Redis (stream ID, 1 ms resolution) until the last watcher had it. */
  convergenceMillis: Distribution;
  /** Per change and watcher. */
  deliveryMillis: Distribution;
  missedDeliveries: number;
  /** The workers' event-loop delay while the changes were timed: queueing in the simulator, which a real cluster spreads over N machines. */
  simulatorLoopDelayP99Millis: number;
  steady: {
    windowSeconds: number;
    /** Daemons running in the window (after the kills); the "per node" divides by this. */
    nodes: number;
    /** Measured in the window, at --lease-ttl. */
    measured: CommandRate & {
      /** Commands other than those the scripts run inside Redis: what the daemons sent. */
      requestsPerNodePerHour: number;
      redisCpu: RedisCpu;
      /** Renewals the keepers reported (renewed + restored). */
      renewals: number;
      /** Expected from the renewal schedule: nodes x window / mean renewal period. */
      renewalsExpected: number;
      /** Script calls that ran no ZADD (EVALSHA − ZADD at the server): reaps. */
      reaps: number;
      reapsExpected: number;
      /** Leases of the killed daemons that expired and were reaped (an "expired" event seen) inside the window. */
      leasesExpired: number;
      connectionsOpened: number;
      /** Redis's own time executing each command (commandstats usec / calls) in the window; a script's includes the commands it runs. */
      microsPerCall: Record<string, number>;
    };
    /** Every keeper paused: N watches and nothing else. */
    idle: CommandRate & { windowSeconds: number; redisCpu: RedisCpu; connectedClients: number };
    /** One renewal, and one reap, from a cold connection (as at the default TTL, where the command connection has long closed). */
    perRenewal: { commands: number; byCommand: Record<string, number> };
    perReap: { commands: number; byCommand: Record<string, number> };
    /** Redis CPU per renewal or reap: (window CPU − idle CPU rate × window) / (renewals + reaps). */
    cpuMillisPerOperation: number;
    /** Derived, not measured: the formula is in `formula`. */
    atDefaultTtl: {
      leaseTtlHours: number;
      renewMarginHours: number;
      renewalPeriodHours: number;
      reapsPerHour: number;
      commandsPerNodePerHour: number;
      redisCpu: RedisCpu;
      formula: string;
    };
  };
  memory: {
    leases: number;
    streamEntries: number;
    /** The store's keys (MEMORY USAGE of each, every element sampled) over the leases: the data, its change stream and the bitmap included. */
    bytesPerLease: number;
    /** (used_memory − client buffers − AOF buffer − script cache) over the baseline before any lease, per lease: also holds what each connection costs outside its buffers. */
    usedMemoryBytesPerLease: number;
    connections: number;
    /** mem_clients_normal / connected_clients: the client structures and their buffers. */
    bytesPerConnection: number;
    /** (used_memory growth − the store's keys) / connections: what a connection costs outside mem_clients_normal (subscriptions, tracking). */
    otherBytesPerConnection: number;
    usedMemoryBytes: number;
    /** used_memory_peak of the server until then (bring-up included), client buffers included. */
    peakUsedMemoryBytes: number;
  };
  restartWithPersistence: {
    /** From SIGTERM to the new server accepting connections, its AOF loaded. */
    downSeconds: number;
    /** From the new server accepting connections until every watch reconnected. */
    watchesBackSeconds: number | null;
    resyncs: number;
    resets: number;
    leasesKept: boolean;
    daemonsExited: number;
  };
  restartWithoutPersistence: {
    /** Why this phase was cut short (the machine running out of memory), or null. */
    stoppedBecause: string | null;
    downSeconds: number;
    /** From the new (empty) server accepting connections until it held every running daemon's lease, with its old subnet, and the config, all at once (null: not within 5 min of the next figure, or 30 min). */
    leasesBackSeconds: number | null;
    /** Until every lease had been seen back at least once: lower than the above when some lapsed again before their renewal got through. */
    eachLeaseBackSeconds: number | null;
    leasesBack: number;
    leasesExpected: number;
    configBack: boolean;
    /** Until every watcher had been told of every lease again; null if not within 5 min of the store holding them all. */
    watchersBackSeconds: number | null;
    daemonsExited: number;
    /** Resets the watches reported, and the daemons that saw one. */
    watchResets: number;
    daemonsThatSawAReset: number;
    /** Per daemon, seconds from the new server accepting connections until its watch first reported the reset, and until its keeper first put the lease back. */
    resetSeenSeconds: Distribution;
    leaseRestoredSeconds: Distribution;
    /** Leases the keepers put back: above the daemons' number when leases lapsed again before their renewal got through. */
    leasesPutBack: number;
    /** Watchers told of every lease again when the wait ended (all of them if watchersBackSeconds is not null). */
    watchersBack: number;
    /** Claims that failed (and were retried), and ensureNetworkConfig calls (and failures), during the recovery. */
    renewFailed: number;
    configChecks: number;
    configFailures: number;
    /** Those failures by kind (numbers replaced by N), with counts. */
    failures: Record<string, number>;
    /** The new server's rejected_connections (maxclients reached) and total_connections_received until the end of the recovery. */
    rejectedConnections: number;
    connectionsReceived: number;
    resyncs: number;
    leasesRestored: number;
    /** The new server's CPU time until it held every lease again. */
    redisCpuSecondsUntilLeasesBack: number;
    configStored: number;
    /** The new server's CPU time until the end of the wait for the watchers. */
    redisCpuSeconds: number;
    /** used_memory_peak of the new server, client buffers included. */
    redisPeakMemoryBytes: number;
    /** The workers' event-loop delay during the recovery: how far the simulator itself fell behind. */
    simulatorLoopDelayP99Millis: number;
  };
  daemonsExited: number;
  exitReasons: string[];
  /** The largest worker process's peak resident memory. */
  simulatorPeakRssBytes: number;
  targets: Target[];
}

/** Commands the lease store's Lua scripts call (lower case, as commandstats names them). */
const SCRIPT_COMMANDS = new Set(
  Object.values(leaseScripts)
    .filter((v): v is leaseScripts.LuaScript => typeof v === 'object' && v !== null && 'lua' in v)
    .flatMap((script) => [...script.lua.matchAll(/redis\.p?call\(\s*'([A-Za-z]+)'/g)].map((m) => m[1]!.toLowerCase())),
);

/** A /8 of /24s: 65,535 subnets, room for 10,000 nodes and more. */
const NETWORK_CONFIG = { Network: '10.0.0.0/8', SubnetLen: 24, Backend: { Type: 'udp' } };
const PROBE_IP = '198.19.255.254';
const CALIBRATION_IP = '198.19.255.253';
/** Connections beyond 2 per daemon: the bench's own, and the calibration's. */
const CLIENT_MARGIN = 100;
/** Watches per worker between their start and their snapshot at once. */
const WATCH_STARTS_PER_WORKER = 16;
const CALIBRATION_ROUNDS = 20;
const CHANGE_TIMEOUT_MS = 30_000;
const ACQUIRE_TIMEOUT_MS = 15 * 60_000;
const WATCH_TIMEOUT_MS = 45 * 60_000;
const RECOVERY_TIMEOUT_MS = 30 * 60_000;
/**
 * After the store holds every lease again, how long the watchers may take to
 * have been told of them all: N re-assertions pushed to N watchers are N²
 * deliveries, which a real cluster spreads over N machines and this
 * simulator pushes through a few processes.
 */
const WATCHERS_WAIT_MS = 5 * 60_000;
/** The run stops when the machine has less memory than this available: the simulator must not take it all. */
const MIN_AVAILABLE_BYTES = 1.5 * 2 ** 30;
const HOUR_MS = 3_600_000;

/** The targets, set for 10,000 nodes. */
export const CONTROL_PLANE_TARGETS = Object.freeze({
  nodes: 10_000,
  acquireAllSeconds: 60,
  convergenceP99Millis: 1_000,
  commandsPerNodePerHour: 10,
  redisPercentOfCore: 5,
});

/** Mean time between a keeper's renewals: it renews at expiry − margin − U(0, spread). */
export function renewalPeriodMs(leaseTtlMs: number, renewMarginMs: number): number {
  const spread = Math.max(0, Math.min(renewMarginMs, leaseTtlMs - renewMarginMs) / 2);
  return leaseTtlMs - renewMarginMs - spread / 2;
}

const silent = pino({ level: 'silent' });
const sum = (values: readonly number[]) => values.reduce((a, b) => a + b, 0);
const round = (value: number, digits = 1) => Math.round(value * 10 ** digits) / 10 ** digits;

function distribution(values: readonly number[]): Distribution {
  let max = Number.NaN;
  for (const v of values) if (!(v <= max)) max = v;
  return { p50: round(percentile(values, 50), 2), p99: round(percentile(values, 99), 2), max: round(max, 2), samples: values.length };
}

function perNodeHour(counts: ReadonlyMap<string, number>, total: number, nodes: number, seconds: number): CommandRate {
  const rate = (n: number) => (n / nodes / seconds) * 3600;
  const byCommand: Record<string, number> = {};
  for (const [command, n] of [...counts].sort((a, b) => b[1] - a[1])) byCommand[command] = round(rate(n), 2);
  return { commandsPerNodePerHour: round(rate(total), 2), byCommand };
}

const cpuRate = (cpuSecondsUsed: number, seconds: number): RedisCpu => ({
  secondsPerHour: round((cpuSecondsUsed / seconds) * 3600, 2),
  percentOfCore: round((cpuSecondsUsed / seconds) * 100, 3),
});

function sleep(ms: number, signal: AbortSignal): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal.aborted) return reject(signal.reason);
    const onAbort = () => {
      clearTimeout(timer);
      reject(signal.reason);
    };
    const timer = setTimeout(() => {
      signal.removeEventListener('abort', onAbort);
      resolve();
    }, ms);
    signal.addEventListener('abort', onAbort, { once: true });
  });
}

/** `promise`, or the abort's reason as soon as the signal fires. */
function abortable<T>(promise: Promise<T>, signal: AbortSignal): Promise<T> {
  if (signal.aborted) return Promise.reject(signal.reason);
  return new Promise<T>((resolve, reject) => {
    const onAbort = () => reject(signal.reason);
    signal.addEventListener('abort', onAbort, { once: true });
    promise.then(
      (value) => {
        signal.removeEventListener('abort', onAbort);
        resolve(value);
      },
      (err: unknown) => {
        signal.removeEventListener('abort', onAbort);
        reject(err);
      },
    );
  });
}

/** A worker process and its request/reply channel. */
class WorkerHandle {
  private nextId = 1;
  private readonly pending = new Map<number, { resolve: (value: unknown) => void; reject: (err: Error) => void }>();
  private gone: Error | undefined;
  readonly ready: Promise<void>;

  constructor(
    readonly index: number,
    readonly child: ChildProcess,
  ) {
    let ready!: () => void;
    this.ready = new Promise<void>((resolve) => (ready = resolve));
    child.on('message', (message: ReplyMessage) => {
      if (message.id === 0) return ready();
      const call = this.pending.get(message.id);
      if (call === undefined) return;
      this.pending.delete(message.id);
      if (message.ok) call.resolve(message.value);
      else call.reject(new Error(`worker ${index}: ${message.error}`));
    });
    child.once('exit', (code, signal) => {
      this.gone = new Error(`worker ${index} (pid ${child.pid}) exited (${code ?? signal})`);
      for (const call of this.pending.values()) call.reject(this.gone);
      this.pending.clear();
    });
  }

  call<K extends OperationName>(op: K, arg: Operations[K][0]): Promise<Operations[K][1]> {
    if (this.gone !== undefined) return Promise.reject(this.gone);
    const id = this.nextId++;
    const message: RequestMessage<K> = { id, op, arg };
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve: resolve as (value: unknown) => void, reject });
      this.child.send(message);
    });
  }

  /** Asks the worker to close its stores and exit; ends it by pid if it does not within the grace period. */
  async stop(): Promise<void> {
    if (this.gone === undefined) {
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([this.call('stop', null).catch(() => undefined), new Promise((resolve) => (timer = setTimeout(resolve, 30_000)))]);
      clearTimeout(timer);
    }
    await stopProcess(this.child, 5_000);
  }
}

/** The workers as one: each call goes to all of them. */
class Workers {
  constructor(readonly handles: readonly WorkerHandle[]) {}

  all<K extends OperationName>(op: K, arg: Operations[K][0], signal: AbortSignal): Promise<Array<Operations[K][1]>> {
    return abortable(Promise.all(this.handles.map((w) => w.call(op, arg))), signal);
  }

  async stats(signal: AbortSignal, resetLoopDelay = false): Promise<TotalStats> {
    return totalStats(await this.all('stats', { resetLoopDelay }, signal));
  }
}

type TotalStats = Omit<WorkerStats, 'expired' | 'snapshots' | 'failures' | 'minLeaseCount' | 'maxLeaseCount' | 'loopDelayP99Ms' | 'loopDelayMaxMs' | 'rssBytes' | 'peakRssBytes' | 'exitReasons'> & {
  expired: Map<string, number>;
  exitReasons: string[];
  failures: Map<string, number>;
  loopDelayP99Ms: number;
  rssBytes: number;
  /** The largest worker's peak resident memory. */
  peakRssBytes: number;
  minLeaseCount: number;
  maxLeaseCount: number;
};

function totalStats(all: readonly WorkerStats[]): TotalStats {
  const add = (pick: (s: WorkerStats) => number) => sum(all.map(pick));
  const expired = new Map<string, number>();
  for (const s of all) for (const [subnet, at] of s.expired) expired.set(subnet, Math.min(at, expired.get(subnet) ?? Infinity));
  return {
    daemons: add((s) => s.daemons),
    running: add((s) => s.running),
    watching: add((s) => s.watching),
    killed: add((s) => s.killed),
    exited: add((s) => s.exited),
    exitReasons: all.flatMap((s) => s.exitReasons),
    failures: mergeCounts(all.map((s) => s.failures)),
    acquireRetries: add((s) => s.acquireRetries),
    renewals: add((s) => s.renewals),
    restored: add((s) => s.restored),
    renewFailed: add((s) => s.renewFailed),
    reassertions: add((s) => s.reassertions),
    configChecks: add((s) => s.configChecks),
    configStored: add((s) => s.configStored),
    configFailures: add((s) => s.configFailures),
    delivered: add((s) => s.delivered),
    resyncs: add((s) => s.resyncs),
    resets: add((s) => s.resets),
    reconnects: add((s) => s.reconnects),
    corruptEvents: add((s) => s.corruptEvents),
    expired,
    loopDelayP99Ms: Math.max(0, ...all.map((s) => s.loopDelayP99Ms)),
    rssBytes: add((s) => s.rssBytes),
    peakRssBytes: Math.max(0, ...all.map((s) => s.peakRssBytes)),
    minLeaseCount: Math.min(...all.map((s) => (s.watching > 0 ? s.minLeaseCount : Infinity))),
    maxLeaseCount: Math.max(0, ...all.map((s) => s.maxLeaseCount)),
  };
}

function mergeCounts(lists: ReadonlyArray<ReadonlyArray<readonly [string, number]>>): Map<string, number> {
  const merged = new Map<string, number>();
  for (const list of lists) for (const [kind, n] of list) merged.set(kind, (merged.get(kind) ?? 0) + n);
  return merged;
}

/** Every worker reached the state; the last of them at `at` (null if any did not). */
function lastReached(all: readonly Reached[]): { at: number | null; reached: number; expected: number } {
  const reached = sum(all.map((r) => r.reached));
  const expected = sum(all.map((r) => r.expected));
  if (all.some((r) => r.at === null)) return { at: null, reached, expected };
  return { at: Math.max(...all.map((r) => r.at!)), reached, expected };
}

/** MemAvailable from /proc/meminfo, in bytes (Infinity if unreadable). */
async function availableMemory(): Promise<number> {
  const text = await readFile('/proc/meminfo', 'utf8').catch(() => '');
  const match = /^MemAvailable:\s+(\d+) kB/m.exec(text);
  return match === null ? Number.POSITIVE_INFINITY : Number(match[1]) * 1024;
}

/** The hard limit on open files (the soft one is what Node raised itself to, at most this). */
async function hardFileLimit(): Promise<number> {
  const text = await readFile('/proc/self/limits', 'utf8').catch(() => '');
  const match = /^Max open files\s+\S+\s+(\d+|unlimited)/m.exec(text);
  if (match === null || match[1] === 'unlimited') return Number.POSITIVE_INFINITY;
  return Number(match[1]);
}

/** Whether this process may raise its hard limits (CAP_SYS_RESOURCE, bit 24 of CapEff), which redis-server then inherits. */
async function mayRaiseLimits(): Promise<boolean> {
  const text = await readFile('/proc/self/status', 'utf8').catch(() => '');
  const match = /^CapEff:\s+([0-9a-f]+)/m.exec(text);
  return match !== null && (BigInt(`0x${match[1]}`) & (1n << 24n)) !== 0n;
}

/**
 * File descriptors: each worker holds two connections per daemon at most
 * (the watch's, and the command connection while in use); redis-server
 * needs maxclients + 32, under the hard limit it inherits unless it may
 * raise it (CAP_SYS_RESOURCE). Checked before anything starts; redis-server's
 * own maxclients is checked again after each start.
 */
async function checkFileLimits(nodes: number, workers: number, maxClients: number): Promise<void> {
  const perWorker = 2 * Math.ceil(nodes / workers) + 64;
  const soft = await openFileLimit();
  if (soft < perWorker) {
    throw new PrerequisiteError(
      `bench control-plane --nodes ${nodes} --workers ${workers} needs ${perWorker} open files per worker, but the limit is ${soft}; ` +
        `raise it (ulimit -n ${perWorker}), or use more --workers or fewer --nodes`,
    );
  }
  const redisNeeds = maxClients + 32;
  const hard = await hardFileLimit();
  if (hard < redisNeeds && !(await mayRaiseLimits())) {
    const most = Math.floor((hard - 32 - CLIENT_MARGIN) / 2);
    throw new PrerequisiteError(
      `bench control-plane --nodes ${nodes} starts redis-server with maxclients ${maxClients} (2 per daemon + ${CLIENT_MARGIN}), which needs ${redisNeeds} open files, ` +
        `but the hard limit is ${hard} and this process may not raise it; raise it (ulimit -Hn ${redisNeeds} as root with CAP_SYS_RESOURCE), or use at most --nodes ${most}`,
    );
  }
}

function splitEvenly(total: number, parts: number): Array<{ first: number; count: number }> {
  const shares: Array<{ first: number; count: number }> = [];
  let first = 0;
  for (let i = 0; i < parts; i++) {
    const count = Math.floor(total / parts) + (i < total % parts ? 1 : 0);
    shares.push({ first, count });
    first += count;
  }
  return shares.filter((s) => s.count > 0);
}

async function forkWorkers(count: number, signal: AbortSignal): Promise<Workers> {
  const module = new URL('./control-plane-worker.js', import.meta.url);
  const handles: WorkerHandle[] = [];
  for (let i = 0; i < count; i++) {
    const child = fork(module, [], { stdio: ['ignore', 'ignore', 'inherit', 'ipc'] });
    handles.push(new WorkerHandle(i, child));
  }
  const workers = new Workers(handles);
  await abortable(Promise.all(handles.map((h) => h.ready)), signal);
  return workers;
}

/** The stream ID of the newest change of `type` on `subnet`: the probe's change just made. */
async function streamIdOf(monitor: Redis, stream: string, type: string, subnet: string): Promise<string> {
  const entries = (await monitor.xrevrange(stream, '+', '-', 'COUNT', 50)) as Array<[string, string[]]>;
  for (const [id, fields] of entries) {
    const values = new Map<string, string>();
    for (let i = 0; i + 1 < fields.length; i += 2) values.set(fields[i]!, fields[i + 1]!);
    if (values.get('t') === type && values.get('s') === subnet) return id;
  }
  throw new Error(`the change stream ${stream} holds no "${type}" of ${subnet} among its last 50 entries`);
}

export async function benchControlPlane(options: ControlPlaneOptions): Promise<ControlPlaneResult> {
  // Ctrl-C, or the memory watchdog below, ends the run.
  const stop = new AbortController();
  options.signal?.addEventListener('abort', () => stop.abort(options.signal!.reason), { once: true });
  const signal = stop.signal;
  // The recovery after the store lost its data can take the most memory (N re-assertions pushed to N watchers):
  // there the watchdog stops only that phase, and the figures of the others are kept.
  let recovery: AbortController | undefined;
  const watchdog = setInterval(() => {
    void availableMemory().then((bytes) => {
      if (bytes >= MIN_AVAILABLE_BYTES || signal.aborted || recovery?.signal.aborted) return;
      const why = new Error(`the machine had only ${(bytes / 2 ** 30).toFixed(1)} GiB of memory left; stopped before the simulated daemons took it all (use fewer --nodes)`);
      if (recovery !== undefined) recovery.abort(why);
      else stop.abort(why);
    });
  }, 2_000);
  watchdog.unref();
  const { nodes, log } = options;
  const workerCount = Math.min(options.workers, nodes);
  const maxClients = 2 * nodes + CLIENT_MARGIN;
  await checkFileLimits(nodes, workerCount, maxClients);
  const storeOptions = { leaseTtlMs: options.leaseTtlMs, renewMarginMs: options.renewMarginMs };

  log(`starting redis-server on 127.0.0.1 (a free port, maxclients ${maxClients}, AOF fsync every second, its files in a temp dir)`);
  const redis = await startBenchRedis(maxClients);
  let workers: Workers | undefined;
  let monitor: Redis | undefined;
  let admin: SubnetManager | undefined;
  try {
    monitor = monitorClient(redis.url);
    const info = async () => parseInfo(await monitor!.info('all'));
    const baseline = await info();
    admin = await connectLeaseStore({ url: redis.url, logger: silent, retry: { mode: 'fail-fast' }, ...storeOptions });
    await admin.setNetworkConfig(NETWORK_CONFIG);
    const keys = admin.keys;

    log(`forking ${workerCount} worker processes`);
    workers = await forkWorkers(workerCount, signal);
    const w = workers;

    // 1. Bring-up: every daemon at once, as the nodes of a new cluster that boot together.
    log(`starting ${nodes} simulated daemons at once: connect, config, lease, then keeper and watch (${WATCH_STARTS_PER_WORKER} watch starts at a time per worker)`);
    const cpuAtStart = cpuSeconds(await info());
    const startedAt = Date.now();
    const shares = splitEvenly(nodes, workerCount);
    await abortable(
      Promise.all(
        w.handles.map((h, i) => {
          const config: WorkerConfig = { url: redis.url, ...shares[i]!, ...storeOptions, watchStarts: WATCH_STARTS_PER_WORKER, probeIp: PROBE_IP };
          return h.call('start', config);
        }),
      ),
      signal,
    );
    const progress = setInterval(() => {
      void w.all('progress', null, signal).then(
        (all) => log(`  ${sum(all.map((p) => p.acquired))}/${nodes} leases, ${sum(all.map((p) => p.watching))}/${nodes} watching, ${sum(all.map((p) => p.exited))} exited`),
        () => undefined,
      );
    }, 5_000);
    let acquired: ReturnType<typeof lastReached>;
    let watching: ReturnType<typeof lastReached>;
    let cpuAtWatching: number;
    try {
      acquired = lastReached(await w.all('await-acquired', { timeoutMs: ACQUIRE_TIMEOUT_MS }, signal));
      if (acquired.at === null) throw new Error(`only ${acquired.reached} of ${acquired.expected} simulated daemons held a lease after ${ACQUIRE_TIMEOUT_MS / 60_000} min`);
      log(`all ${nodes} leases acquired ${((acquired.at - startedAt) / 1000).toFixed(2)} s after the start`);
      watching = lastReached(await w.all('await-watching', { timeoutMs: WATCH_TIMEOUT_MS }, signal));
      if (watching.at === null) throw new Error(`only ${watching.reached} of ${watching.expected} watches delivered a snapshot after ${WATCH_TIMEOUT_MS / 60_000} min`);
      cpuAtWatching = cpuSeconds(await info());
    } finally {
      clearInterval(progress);
    }
    const afterBringUp = await w.stats(signal, true);
    if (afterBringUp.exited > 0) throw new Error(`${afterBringUp.exited} simulated daemons exited during bring-up: ${afterBringUp.exitReasons.join('; ')}`);
    const bringUp = {
      acquireAllSeconds: round((acquired.at - startedAt) / 1000, 2),
      allWatchingSeconds: round((watching.at - startedAt) / 1000, 2),
      acquireRetries: afterBringUp.acquireRetries,
      eventsDelivered: afterBringUp.delivered - afterBringUp.watching,
      redisCpuSeconds: round(cpuAtWatching - cpuAtStart, 2),
      simulatorLoopDelayP99Millis: round(afterBringUp.loopDelayP99Ms, 1),
    };
    log(`all ${nodes} watches delivered their snapshot ${bringUp.allWatchingSeconds} s after the start (Redis used ${bringUp.redisCpuSeconds} s of CPU)`);

    // 2. Changes, one at a time: each is awaited at every watcher (or the timeout).
    const convergence: number[] = [];
    const delivery: number[] = [];
    let missed = 0;
    let probe: Lease | undefined;
    for (let i = 0; i < options.changes; i++) {
      await sleep(50 + Math.random() * 100, signal);
      let type: 'added' | 'removed';
      let subnet: string;
      if (probe === undefined) {
        probe = (await admin.acquireLease({ publicIP: PROBE_IP, nodeName: 'probe' })).lease;
        type = 'added';
        subnet = probe.subnet;
      } else {
        await admin.revokeLease(probe.subnet);
        type = 'removed';
        subnet = probe.subnet;
        probe = undefined;
      }
      const seq = await streamIdOf(monitor, keys.events, type, subnet);
      const arrivals = await w.all('await-change', { seq, timeoutMs: CHANGE_TIMEOUT_MS }, signal);
      const latencies = arrivals.flatMap((a) => a.latencies);
      const expected = sum(arrivals.map((a) => a.expected));
      missed += Math.max(0, expected - latencies.length);
      for (const l of latencies) delivery.push(l);
      let last = 0;
      for (const l of latencies) last = Math.max(last, l);
      if (latencies.length >= expected) convergence.push(last);
      if (i % 10 === 9 || i === options.changes - 1) log(`  ${i + 1}/${options.changes} changes; the last one reached ${latencies.length}/${expected} watchers, the last of them after ${last.toFixed(1)} ms`);
    }
    if (probe !== undefined) await admin.revokeLease(probe.subnet);
    const afterChanges = await w.stats(signal, true);

    // 3. Steady state, with a few daemons gone without revoking: their leases expire and are reaped in the window.
    const windowMs = options.steadySeconds * 1000;
    const windowStartsAt = Date.now() + 2_000;
    const killFrom = windowStartsAt + Math.min(10_000, windowMs / 6);
    const killTo = windowStartsAt + windowMs - Math.min(20_000, windowMs / 3);
    const killShares = splitEvenly(options.kill, workerCount);
    const killed = (
      await abortable(
        Promise.all(killShares.map((share, i) => w.handles[i]!.call('kill', { count: share.count, from: killFrom, to: killTo }))),
        signal,
      )
    ).flatMap((k) => k.killed);
    log(`stopped ${killed.length} daemons without revoking; their leases expire ${killed.map((k) => `${((k.expiresAt - windowStartsAt) / 1000).toFixed(0)} s`).join(', ')} into the window`);
    await sleep(Math.max(0, windowStartsAt - Date.now()), signal);
    log(`steady state: counting Redis commands and CPU for ${options.steadySeconds} s (lease TTL ${options.leaseTtlMs / 1000} s, renew margin ${options.renewMarginMs / 1000} s)`);
    const statsBefore = await w.stats(signal);
    const before = await info();
    const windowStart = performance.now();
    const windowStartWall = Date.now();
    await sleep(windowMs, signal);
    const after = await info();
    const windowSeconds = (performance.now() - windowStart) / 1000;
    const windowEndWall = Date.now();
    const statsAfter = await w.stats(signal);
    const liveNodes = statsAfter.running;
    const window = commandDeltas(before, after, 1);
    const scriptCalls = (window.byCommand.get('evalsha') ?? 0) + (window.byCommand.get('eval') ?? 0);
    const zadds = window.byCommand.get('zadd') ?? 0;
    const renewals = statsAfter.renewals + statsAfter.restored - statsBefore.renewals - statsBefore.restored;
    const reaps = Math.max(0, scriptCalls - zadds);
    const windowCpu = cpuSeconds(after) - cpuSeconds(before);
    let requests = 0;
    for (const [command, n] of window.byCommand) if (!SCRIPT_COMMANDS.has(command)) requests += n;
    const period = renewalPeriodMs(options.leaseTtlMs, options.renewMarginMs);
    const benchReapInterval = defaultReapInterval(options.leaseTtlMs);
    const leasesExpired = [...statsAfter.expired.values()].filter((at) => at >= windowStartWall && at <= windowEndWall).length;
    const measured = {
      ...perNodeHour(window.byCommand, window.total, liveNodes, windowSeconds),
      requestsPerNodePerHour: round((requests / liveNodes / windowSeconds) * 3600, 2),
      redisCpu: cpuRate(windowCpu, windowSeconds),
      renewals,
      renewalsExpected: Math.round((liveNodes * windowSeconds * 1000) / period),
      reaps,
      reapsExpected: Math.round((windowSeconds * 1000) / benchReapInterval),
      leasesExpired,
      connectionsOpened: infoNumber(after, 'total_connections_received') - infoNumber(before, 'total_connections_received'),
      microsPerCall: microsPerCall(before, after),
    };
    log(
      `steady state: ${measured.commandsPerNodePerHour.toFixed(1)} commands per node per hour, Redis at ${measured.redisCpu.percentOfCore.toFixed(2)} % of a core; ` +
        `${renewals} renewals, ${reaps} reaps, ${leasesExpired} of ${killed.length} killed leases expired and reaped in the window`,
    );

    // 4. Idle: every keeper paused, for less than the renew margin, so no lease lapses: N watches and nothing else.
    log(`idle: every keeper paused for ${options.idleSeconds} s; then one renewal and one reap from a cold connection, ${CALIBRATION_ROUNDS} times each`);
    await w.all('pause-keepers', null, signal);
    let idle: ControlPlaneResult['steady']['idle'];
    let idleCpuPerSecond: number;
    let perRenewal: ControlPlaneResult['steady']['perRenewal'];
    let perReap: ControlPlaneResult['steady']['perReap'];
    let memoryInfo: Info;
    try {
      await sleep(1_000, signal);
      const idleBefore = await info();
      const idleStart = performance.now();
      await sleep(options.idleSeconds * 1000, signal);
      const idleAfter = await info();
      const idleSeconds = (performance.now() - idleStart) / 1000;
      const idleCommands = commandDeltas(idleBefore, idleAfter, 1);
      idleCpuPerSecond = (cpuSeconds(idleAfter) - cpuSeconds(idleBefore)) / idleSeconds;
      idle = {
        windowSeconds: round(idleSeconds, 1),
        ...perNodeHour(idleCommands.byCommand, idleCommands.total, liveNodes, idleSeconds),
        redisCpu: cpuRate(idleCpuPerSecond, 1),
        connectedClients: infoNumber(idleAfter, 'connected_clients'),
      };
      memoryInfo = idleAfter;
      // One renewal (and one reap) per fresh store: a connection opened for it, as at the default TTL.
      const calibration = (await admin.acquireLease({ publicIP: CALIBRATION_IP, nodeName: 'calibration' })).lease;
      const cold = async (use: (store: SubnetManager) => Promise<unknown>) => {
        const store = await connectLeaseStore({ url: redis.url, logger: silent, retry: { mode: 'backoff' }, ...storeOptions });
        try {
          await use(store);
        } finally {
          await store.close();
        }
      };
      const c0 = await info();
      for (let i = 0; i < CALIBRATION_ROUNDS; i++) await cold((store) => store.renewLease(calibration));
      const c1 = await info();
      for (let i = 0; i < CALIBRATION_ROUNDS; i++) await cold((store) => store.reap());
      const c2 = await info();
      await admin.revokeLease(calibration.subnet);
      const perRound = (d: { total: number; byCommand: Map<string, number> }) => ({
        commands: round(d.total / CALIBRATION_ROUNDS, 2),
        byCommand: Object.fromEntries([...d.byCommand].map(([c, n]) => [c, round(n / CALIBRATION_ROUNDS, 2)])),
      });
      perRenewal = perRound(commandDeltas(c0, c1, 1));
      perReap = perRound(commandDeltas(c1, c2, 1));
    } finally {
      await w.all('resume-keepers', null, signal);
    }
    const operations = renewals + reaps;
    const cpuPerOperation = operations > 0 ? Math.max(0, windowCpu - idleCpuPerSecond * windowSeconds) / operations : 0;
    const defaultTtl = LEASE_STORE_DEFAULTS.leaseTtlMs;
    const defaultMargin = LEASE_STORE_DEFAULTS.renewMarginMs;
    const defaultPeriod = renewalPeriodMs(defaultTtl, defaultMargin);
    const defaultReapsPerHour = HOUR_MS / defaultReapInterval(defaultTtl);
    const renewalsPerNodeHour = HOUR_MS / defaultPeriod;
    const defaultCpuPerHour = idleCpuPerSecond * 3600 + (liveNodes * renewalsPerNodeHour + defaultReapsPerHour) * cpuPerOperation;
    const atDefaultTtl = {
      leaseTtlHours: defaultTtl / HOUR_MS,
      renewMarginHours: defaultMargin / HOUR_MS,
      renewalPeriodHours: round(defaultPeriod / HOUR_MS, 3),
      reapsPerHour: defaultReapsPerHour,
      commandsPerNodePerHour: round(
        idle.commandsPerNodePerHour + renewalsPerNodeHour * perRenewal.commands + (defaultReapsPerHour / liveNodes) * perReap.commands,
        3,
      ),
      redisCpu: { secondsPerHour: round(defaultCpuPerHour, 2), percentOfCore: round((defaultCpuPerHour / 3600) * 100, 3) },
      formula:
        'per node per hour = idle commands per node per hour + (1 / renewal period) x commands per renewal + (reaps per hour / nodes) x commands per reap; ' +
        'Redis CPU per hour = idle CPU per hour + (nodes / renewal period + reaps per hour) x CPU per renewal or reap; ' +
        'renewal period = TTL − margin − spread / 2 with spread = min(margin, TTL − margin) / 2; reaps per hour = 1 h / (TTL / 48, between 1 s and 30 min)',
    };
    const steady: ControlPlaneResult['steady'] = {
      windowSeconds: round(windowSeconds, 1),
      nodes: liveNodes,
      measured,
      idle,
      perRenewal,
      perReap,
      cpuMillisPerOperation: round(cpuPerOperation * 1000, 4),
      atDefaultTtl,
    };
    log(
      `at the default TTL (derived): ${atDefaultTtl.commandsPerNodePerHour} commands per node per hour, Redis at ${atDefaultTtl.redisCpu.percentOfCore} % of a core ` +
        `(idle ${idle.redisCpu.percentOfCore} %, ${perRenewal.commands} commands and ${steady.cpuMillisPerOperation} ms of CPU per renewal)`,
    );

    // 5. Memory, read in the idle window: per lease against the baseline, per connection.
    const leasesNow = Number(await monitor.hlen(keys.leases));
    let keyBytes = 0;
    // Every key of the layout; the channel is not a key.
    for (const [name, key] of Object.entries(keys)) {
      if (name === 'channel') continue;
      keyBytes += Number((await monitor.call('MEMORY', 'USAGE', key, 'SAMPLES', '0')) ?? 0);
    }
    const usedMemoryGrowth = storeBytes(memoryInfo) - storeBytes(baseline);
    const connections = infoNumber(memoryInfo, 'connected_clients');
    const memory = {
      leases: leasesNow,
      streamEntries: Number(await monitor.xlen(keys.events)),
      bytesPerLease: Math.round(keyBytes / leasesNow),
      usedMemoryBytesPerLease: Math.round(usedMemoryGrowth / leasesNow),
      connections,
      bytesPerConnection: Math.round(infoNumber(memoryInfo, 'mem_clients_normal') / connections),
      otherBytesPerConnection: Math.round((usedMemoryGrowth - keyBytes) / connections),
      usedMemoryBytes: infoNumber(memoryInfo, 'used_memory'),
      peakUsedMemoryBytes: infoNumber(memoryInfo, 'used_memory_peak'),
    };
    await admin.close();
    admin = undefined;

    // 6a. Restart with persistence: the data comes back from the AOF; nothing may list again or reset.
    log('restarting redis-server on the same port with its AOF');
    await w.all('mark', null, signal);
    const beforePersistent = await w.stats(signal);
    monitor.disconnect();
    monitor = undefined;
    const persistentStoppedAt = Date.now();
    await redis.restart();
    const persistentReadyAt = redis.readyAt;
    monitor = monitorClient(redis.url);
    const back = lastReached(await w.all('await-reconnected', { timeoutMs: RECOVERY_TIMEOUT_MS }, signal));
    const afterPersistent = await w.stats(signal);
    const restartWithPersistence = {
      downSeconds: round((persistentReadyAt - persistentStoppedAt) / 1000, 2),
      watchesBackSeconds: back.at === null ? null : round((back.at - persistentReadyAt) / 1000, 2),
      resyncs: afterPersistent.resyncs - beforePersistent.resyncs,
      resets: afterPersistent.resets - beforePersistent.resets,
      leasesKept: Number(await monitor.hlen(keys.leases)) === leasesNow,
      daemonsExited: afterPersistent.exited - beforePersistent.exited,
    };
    log(
      `  ${back.reached}/${back.expected} watches back ${restartWithPersistence.watchesBackSeconds ?? 'never'} s after Redis was; ` +
        `${restartWithPersistence.resyncs} resyncs, ${restartWithPersistence.resets} resets, ${restartWithPersistence.daemonsExited} daemons exited`,
    );

    // 6b. Restart without persistence: an empty store; the daemons put back their leases and the config.
    log('restarting redis-server on the same port without persistence: the store comes back empty');
    const expectedLeases = new Map((await w.all('leases', null, signal)).flat().map(([subnet, ip]) => [subnet, ip] as const));
    await w.all('mark', null, signal);
    const beforeLoss = await w.stats(signal, true);
    monitor.disconnect();
    monitor = undefined;
    const stoppedAt = Date.now();
    await redis.restart({ persistence: false, empty: true });
    const emptyReadyAt = redis.readyAt;
    monitor = monitorClient(redis.url);
    log(`  redis-server back (empty) after ${((emptyReadyAt - stoppedAt) / 1000).toFixed(2)} s; waiting for every lease`);
    recovery = new AbortController();
    const recoverySignal = AbortSignal.any([signal, recovery.signal]);
    let leasesBack: LeasesBack = { eachOnceAt: null, allAt: null, matching: 0, config: false };
    let cpuUntilLeasesBack = Number.NaN;
    let recovered: Array<Operations['await-recovered'][1]> = [];
    let recoveryInfo: Info = new Map();
    let stoppedBecause: string | null = null;
    try {
      leasesBack = await abortable(waitForLeases(monitor, keys.leases, keys.config, expectedLeases, RECOVERY_TIMEOUT_MS, WATCHERS_WAIT_MS, log), recoverySignal);
      cpuUntilLeasesBack = cpuSeconds(parseInfo(await monitor.info('cpu')));
      // Then every watcher told of every lease again, for a bounded time, with progress.
      const watchersDeadline = Date.now() + WATCHERS_WAIT_MS;
      for (;;) {
        recovered = await w.all('await-recovered', { expected: expectedLeases.size, timeoutMs: 10_000 }, recoverySignal);
        const done = lastReached(recovered);
        if (done.at !== null || Date.now() > watchersDeadline) break;
        log(`  ${done.reached}/${done.expected} watchers told of every lease again`);
      }
      recoveryInfo = parseInfo(await monitor.info('all'));
    } catch (err) {
      if (signal.aborted || !recovery.signal.aborted) throw err;
      // Out of memory: end this phase (Redis's output buffers go with the server), keep the rest.
      stoppedBecause = (recovery.signal.reason as Error).message;
      log(`  ${stoppedBecause}`);
      recoveryInfo = await abortable(monitor.info('all').then(parseInfo), signal).catch(() => new Map());
      await redis.stop();
    }
    recovery = undefined;
    const watchersBack = lastReached(recovered);
    const sinceReady = (times: readonly number[]) => distribution(times.map((t) => (t - emptyReadyAt) / 1000));
    const afterLoss = await w.stats(signal);
    const restartWithoutPersistence = {
      stoppedBecause,
      downSeconds: round((emptyReadyAt - stoppedAt) / 1000, 2),
      leasesBackSeconds: leasesBack.allAt === null ? null : round((leasesBack.allAt - emptyReadyAt) / 1000, 2),
      eachLeaseBackSeconds: leasesBack.eachOnceAt === null ? null : round((leasesBack.eachOnceAt - emptyReadyAt) / 1000, 2),
      leasesBack: leasesBack.matching,
      leasesExpected: expectedLeases.size,
      configBack: leasesBack.config,
      watchersBackSeconds: watchersBack.at === null || recovered.length === 0 ? null : round((watchersBack.at - emptyReadyAt) / 1000, 2),
      daemonsExited: afterLoss.exited - beforeLoss.exited,
      watchResets: afterLoss.resets - beforeLoss.resets,
      daemonsThatSawAReset: sum(recovered.map((r) => r.resetSeen)),
      resetSeenSeconds: sinceReady(recovered.flatMap((r) => r.resetSeenAt)),
      leaseRestoredSeconds: sinceReady(recovered.flatMap((r) => r.restoredAt)),
      leasesPutBack: sum(recovered.map((r) => r.restores)),
      watchersBack: watchersBack.reached,
      renewFailed: afterLoss.renewFailed - beforeLoss.renewFailed,
      configChecks: afterLoss.configChecks - beforeLoss.configChecks,
      configFailures: afterLoss.configFailures - beforeLoss.configFailures,
      failures: Object.fromEntries([...afterLoss.failures].map(([kind, n]) => [kind, n - (beforeLoss.failures.get(kind) ?? 0)]).filter(([, n]) => (n as number) > 0)),
      rejectedConnections: infoNumber(recoveryInfo, 'rejected_connections'),
      connectionsReceived: infoNumber(recoveryInfo, 'total_connections_received'),
      resyncs: afterLoss.resyncs - beforeLoss.resyncs,
      leasesRestored: afterLoss.restored - beforeLoss.restored,
      configStored: afterLoss.configStored - beforeLoss.configStored,
      redisCpuSecondsUntilLeasesBack: round(cpuUntilLeasesBack, 2),
      redisCpuSeconds: round(cpuSeconds(recoveryInfo), 2),
      redisPeakMemoryBytes: infoNumber(recoveryInfo, 'used_memory_peak'),
      simulatorLoopDelayP99Millis: round(afterLoss.loopDelayP99Ms, 1),
    };
    log(
      `  ${restartWithoutPersistence.leasesBack}/${expectedLeases.size} leases back with their subnets ${restartWithoutPersistence.leasesBackSeconds ?? 'never'} s after Redis was, ` +
        `config ${restartWithoutPersistence.configBack ? 'back' : 'missing'}; every watcher told of them after ${restartWithoutPersistence.watchersBackSeconds ?? 'never'} s; ` +
        `${restartWithoutPersistence.daemonsExited} daemons exited`,
    );

    const final = afterLoss;
    const result: ControlPlaneResult = {
      options: {
        nodes,
        workers: workerCount,
        changes: options.changes,
        steadySeconds: options.steadySeconds,
        idleSeconds: options.idleSeconds,
        leaseTtlSeconds: options.leaseTtlMs / 1000,
        renewMarginSeconds: options.renewMarginMs / 1000,
        kill: killed.length,
        watchStartsPerWorker: WATCH_STARTS_PER_WORKER,
      },
      redis: { version: redis.version, maxclients: maxClients, persistence: 'AOF, fsync every second, until the restart without persistence' },
      simulatedDaemon:
        'connectLeaseStore (backoff retry), getNetworkConfig, acquireLease; then keepLease and watchLeases, consumed by a counter that reacts as miniflanneld does ' +
        '(reset: reassert within 0-3 s and ensureNetworkConfig; config: ensureNetworkConfig; own lease gone: reassert; lost: exit); ' +
        `no peer table, TUN or routes; ${workerCount} worker processes`,
      bringUp,
      convergenceMillis: distribution(convergence),
      deliveryMillis: distribution(delivery),
      missedDeliveries: missed,
      simulatorLoopDelayP99Millis: round(afterChanges.loopDelayP99Ms, 1),
      steady,
      memory,
      restartWithPersistence,
      restartWithoutPersistence,
      daemonsExited: final.exited,
      exitReasons: final.exitReasons,
      simulatorPeakRssBytes: final.peakRssBytes,
      targets: [],
    };
    result.targets = targetsOf(result);
    return result;
  } finally {
    clearInterval(watchdog);
    log(`stopping the workers and redis-server`);
    await admin?.close().catch(() => undefined);
    monitor?.disconnect();
    await Promise.all((workers?.handles ?? []).map((h) => h.stop().catch(() => undefined)));
    await redis.stop();
  }
}

/**
 * redis-server on a free loopback port kept for the whole run, its files in
 * a temp dir, with an append-only file fsynced every second, as the sandbox
 * and deployments run it; the binary on PATH, the one the prerequisites
 * checked.
 */
async function startBenchRedis(maxClients: number): Promise<RedisServer> {
  try {
    return await startRedis({ persistence: true, fsync: 'everysec', maxClients, binary: await which('redis-server') });
  } catch (err) {
    if (err instanceof RedisMaxClientsError) throw new PrerequisiteError(`${err.message}, or use fewer --nodes`, { cause: err });
    throw err;
  }
}

/** What the polls of the store saw while the daemons put their leases back. */
interface LeasesBack {
  /** When every expected lease had been seen with its owner at least once (epoch ms), or null. */
  eachOnceAt: number | null;
  /** When the store held them all at once, and the config (epoch ms), or null. */
  allAt: number | null;
  /** Leases present with their owner at the last poll, and whether the config was. */
  matching: number;
  config: boolean;
}

/**
 * Polls the store (the whole table each time) until it holds every expected
 * lease (subnet → public IP) and the network config at once; gives up
 * `afterEachOnceMs` after every lease had been seen at least once (a lease
 * whose renewal does not get through lapses again), or at the timeout.
 */
async function waitForLeases(
  monitor: Redis,
  leasesKey: string,
  configKey: string,
  expected: ReadonlyMap<string, string>,
  timeoutMs: number,
  afterEachOnceMs: number,
  log: (line: string) => void,
): Promise<LeasesBack> {
  const deadline = Date.now() + timeoutMs;
  const seen = new Set<string>();
  let eachOnceAt: number | null = null;
  let matching = 0;
  let config = false;
  let lastLog = Date.now();
  for (;;) {
    const now = Date.now();
    try {
      config = (await monitor.exists(configKey)) === 1;
      const stored = await monitor.hgetall(leasesKey);
      matching = 0;
      for (const [subnet, ip] of expected) {
        const attrs = stored[subnet];
        if (attrs === undefined || (JSON.parse(attrs) as { PublicIP?: string }).PublicIP !== ip) continue;
        matching++;
        seen.add(subnet);
      }
      if (eachOnceAt === null && seen.size === expected.size) eachOnceAt = now;
      if (matching === expected.size && config) return { eachOnceAt: eachOnceAt ?? now, allAt: now, matching, config };
      if (now - lastLog > 5_000) {
        lastLog = now;
        log(`  ${matching}/${expected.size} leases back (${seen.size} seen at least once), config ${config ? 'back' : 'missing'}`);
      }
    } catch {
      // The server is loading or busy: ask again.
    }
    if (Date.now() > deadline || (eachOnceAt !== null && Date.now() > eachOnceAt + afterEachOnceMs)) return { eachOnceAt, allAt: null, matching, config };
    // Each poll reads the whole table: less often for a large one.
    await new Promise((resolve) => setTimeout(resolve, Math.max(100, expected.size / 20)));
  }
}

function targetsOf(r: ControlPlaneResult): Target[] {
  const t = CONTROL_PLANE_TARGETS;
  const s = r.steady.atDefaultTtl;
  return [
    { name: 'bring-up: all leases acquired', target: `≤ ${t.acquireAllSeconds} s`, value: `${r.bringUp.acquireAllSeconds} s`, pass: r.bringUp.acquireAllSeconds <= t.acquireAllSeconds },
    {
      name: 'convergence p99',
      target: `< ${t.convergenceP99Millis} ms`,
      value: `${r.convergenceMillis.p99} ms`,
      pass: r.convergenceMillis.p99 < t.convergenceP99Millis && r.missedDeliveries === 0,
    },
    {
      name: 'commands per node per hour, steady, default TTL (derived)',
      target: `≤ ${t.commandsPerNodePerHour}`,
      value: String(s.commandsPerNodePerHour),
      pass: s.commandsPerNodePerHour <= t.commandsPerNodePerHour,
    },
    {
      name: 'Redis CPU, steady, default TTL (derived)',
      target: `< ${t.redisPercentOfCore} % of a core`,
      value: `${s.redisCpu.percentOfCore} %`,
      pass: s.redisCpu.percentOfCore < t.redisPercentOfCore,
    },
    {
      name: 'daemons exited (restart without persistence included)',
      target: '0',
      value: String(r.daemonsExited),
      pass: r.daemonsExited === 0,
    },
    {
      name: 'leases back after a restart without persistence',
      target: 'all, old subnets, config',
      value: `${r.restartWithoutPersistence.leasesBack}/${r.restartWithoutPersistence.leasesExpected}, config ${r.restartWithoutPersistence.configBack ? 'back' : 'missing'}`,
      pass: r.restartWithoutPersistence.leasesBack === r.restartWithoutPersistence.leasesExpected && r.restartWithoutPersistence.configBack,
    },
    {
      name: 'resyncs and resets after a restart with persistence',
      target: '0 and 0',
      value: `${r.restartWithPersistence.resyncs} and ${r.restartWithPersistence.resets}`,
      pass: r.restartWithPersistence.resyncs === 0 && r.restartWithPersistence.resets === 0,
    },
  ];
}
