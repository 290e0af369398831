/**
 * The control plane at scale: N simulated daemons against one real
 * redis-server that this run starts on loopback.
 *
 * Each simulated daemon does what miniflanneld does with the lease store,
 * minus the data plane: its own connectLeaseStore (backoff retry, as the
 * daemon), getNetworkConfig, acquireLease for its own public IP, a lease
 * watch it consumes (snapshot, then every change), and keepLease. So each
 * holds two Redis connections (commands, and the blocking XREAD of its
 * watch), reaps on the watch's timer and renews as the daemon would. What it
 * skips: the peer table, the TUN and the routes. All N share this one Node
 * process (one core), so the watch latencies include queueing in the
 * simulator that a real cluster spreads over N machines.
 *
 *   1. start    all N at once; time until every lease is acquired; then
 *               the N watches, and the time until each has its snapshot
 *               (a real daemon starts watching right after its acquire;
 *               here the watches wait, or one core would have to process
 *               the bring-up's N x N "added" events);
 *   2. changes  a probe node adds a lease, then revokes it, over and over;
 *               for each change, the time until each watcher sees it;
 *   3. steady   nothing changes for a window; Redis's command counters over
 *               that window, per node per hour.
 */
import { setMaxListeners } from 'node:events';
import { mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { ChildProcess } from 'node:child_process';
import { pino } from 'pino';
import { Redis } from 'ioredis';
import { connectLeaseStore, type Lease, type LeaseKeeper, type LeaseWatch, type SubnetManager } from '../../daemon/lease/index.js';
import { exited, start, stopProcess } from '../sandbox/exec.js';
import { formatIPv4 } from '../../daemon/net/ipv4.js';
// Internal to the lease store, read here only to tell the commands its scripts run inside Redis from those sent over the wire.
import * as leaseScripts from '../../daemon/lease/scripts.js';
import { openFileLimit, PrerequisiteError } from './prerequisites.js';
import { percentile } from './stats.js';

export interface ControlPlaneOptions {
  nodes: number;
  /** Lease changes to time (half adds, half revocations). */
  changes: number;
  /** Length of the steady-state window. */
  steadySeconds: number;
  log: (line: string) => void;
  signal?: AbortSignal;
}

export interface Distribution {
  p50: number;
  p99: number;
  max: number;
  samples: number;
}

export interface ControlPlaneResult {
  options: { nodes: number; changes: number; steadySeconds: number };
  redis: { version: string; persistence: string };
  /** What one simulated daemon does, in words. */
  simulatedDaemon: string;
  /** From starting all N daemons at once (connect, config, acquire) until the last one holds its lease. */
  acquireAllSeconds: number;
  /** From starting the N watches (once all leases are held) until every one has delivered its snapshot. */
  allWatchingSeconds: number;
  /**
   * Per change, from its commit in Redis (the stream entry's ID, 1 ms
   * resolution) until the last of the N watchers had it.
   */
  convergenceMillis: Distribution;
  /** Per change and watcher, from the commit until that watcher had it. */
  deliveryMillis: Distribution;
  /** Watchers that never saw a change within the timeout, summed over changes. */
  missedDeliveries: number;
  /**
   * Commands the daemons sent over the wire in the steady-state window, per
   * node per hour: a script invocation (EVALSHA) counts once.
   */
  requestsPerNodePerHour: number;
  /** Every command Redis ran in that window per node per hour, including the ones inside the Lua scripts (total_commands_processed). */
  commandsPerNodePerHour: number;
  /** The commands by name (INFO commandstats), per node per hour, e.g. {evalsha: 360, xread: 360, time: 360}. */
  commandsPerNodePerHourByCommand: Record<string, number>;
  /** Redis's own figures at the end of the window. */
  redisClients: number;
  redisUsedMemoryBytes: number;
}

/** Commands the lease store's Lua scripts call (lower case, as commandstats names them). */
const SCRIPT_COMMANDS = new Set(
  Object.values(leaseScripts)
    .filter((v): v is leaseScripts.LuaScript => typeof v === 'object' && v !== null && 'lua' in v)
    .flatMap((script) => [...script.lua.matchAll(/redis\.p?call\(\s*'([A-Za-z]+)'/g)].map((m) => m[1]!.toLowerCase())),
);

// Room for 4095 nodes, a quarter of it used at 1000. (A /8 of /24s makes every acquire enumerate 65k subnets in
// the allocation policy: about 10 ms of CPU per daemon, which one process simulating all of them would pay N times.)
const NETWORK_CONFIG = { Network: '10.0.0.0/12', SubnetLen: 24, Backend: { Type: 'udp' } };
const CHANGE_TIMEOUT_MS = 30_000;
/** Node i's public IP: 198.18.0.1, 198.18.0.2, ... within 198.18.0.0/15. */
const nodeIp = (i: number) => formatIPv4((0xc6120000 + i + 1) >>> 0);
const PROBE_IP = '198.19.255.254';

interface LocalRedis {
  url: string;
  version: string;
  stop(): Promise<void>;
}

function freeLoopbackPort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address !== null ? resolve(address.port) : reject(new Error('no free port on 127.0.0.1'))));
    });
  });
}

/** redis-server on 127.0.0.1 and a free port, its files in a temp dir; stop() ends it by pid and removes the dir. */
async function startLocalRedis(maxClients: number): Promise<LocalRedis> {
  const dir = await mkdtemp(path.join(tmpdir(), 'miniflannel-bench-redis-'));
  let child: ChildProcess | undefined;
  try {
    const port = await freeLoopbackPort();
    // As the sandbox runs it: an append-only file, fsync every second.
    child = start(['redis-server', '--bind', '127.0.0.1', '--port', String(port), '--dir', dir, '--save', '', '--appendonly', 'yes', '--maxclients', String(maxClients), '--protected-mode', 'yes']);
    const redis = child;
    let output = '';
    await new Promise<void>((resolve, reject) => {
      const timer = setTimeout(() => reject(new Error(`redis-server on 127.0.0.1:${port} was not ready within 10 s: ${output.trim().split('\n').pop() ?? ''}`)), 10_000);
      createInterface({ input: redis.stdout! }).on('line', (line) => {
        output += `${line}\n`;
        if (line.includes('Ready to accept connections')) {
          clearTimeout(timer);
          resolve();
        }
      });
      void exited(redis).then((code) => {
        clearTimeout(timer);
        reject(new Error(`redis-server exited with ${code}: ${output.trim().split('\n').pop() ?? ''}`));
      });
    });
    const version = /v=([\d.]+)/.exec(output)?.[1] ?? /Redis version=([\d.]+)/.exec(output)?.[1] ?? 'unknown';
    return {
      url: `redis://127.0.0.1:${port}`,
      version,
      stop: async () => {
        await stopProcess(redis);
        await rm(dir, { recursive: true, force: true });
      },
    };
  } catch (err) {
    if (child) await stopProcess(child);
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}

/** A change the probe made and how long each watcher took to see it (NaN: not yet). */
interface PendingChange {
  type: 'added' | 'removed';
  latencyMillis: Float64Array;
  seen: number;
  done: () => void;
}

/** Wall-clock milliseconds with a fractional part, on the clock Redis stamps stream IDs with (same host). */
const wallClockMillis = () => performance.timeOrigin + performance.now();

class SimulatedDaemon {
  store: SubnetManager | undefined;
  lease: Lease | undefined;
  watch: LeaseWatch | undefined;
  renewer: LeaseKeeper | undefined;
  consumed: Promise<void> | undefined;

  constructor(readonly index: number) {}

  /** As the daemon starts: connect, read the network config, acquire a lease. */
  async acquire(url: string, signal: AbortSignal): Promise<void> {
    this.store = await connectLeaseStore({ url, logger: pino({ level: 'silent' }), retry: { mode: 'backoff' } });
    signal.throwIfAborted();
    await this.store.getNetworkConfig();
    this.lease = (await this.store.acquireLease({ publicIP: nodeIp(this.index), nodeName: `sim-${this.index + 1}` })).lease;
  }

  /** Then, as the daemon does: watch the leases (consumed to the end) and keep its own. */
  follow(onSnapshot: () => void, onEvent: (daemon: number, type: string, lease: Lease, seq: string) => void): void {
    const watch = this.store!.watchLeases();
    this.watch = watch;
    this.consumed = (async () => {
      for await (const event of watch) {
        if (event.type === 'snapshot') onSnapshot();
        else if ('lease' in event) onEvent(this.index, event.type, event.lease, event.seq);
      }
    })();
    this.renewer = this.store!.keepLease(this.lease!);
  }

  async stop(): Promise<void> {
    this.renewer?.stop();
    await this.store?.close();
    await this.consumed?.catch(() => undefined);
  }
}

function distribution(values: readonly number[]): Distribution {
  return { p50: percentile(values, 50), p99: percentile(values, 99), max: values.length ? Math.max(...values) : Number.NaN, samples: values.length };
}

function parseInfo(text: string): Map<string, string> {
  const fields = new Map<string, string>();
  for (const line of text.split('\r\n')) {
    const at = line.indexOf(':');
    if (at > 0 && !line.startsWith('#')) fields.set(line.slice(0, at), line.slice(at + 1));
  }
  return fields;
}

/** calls per command from INFO commandstats: cmdstat_evalsha:calls=12,... */
function commandCalls(info: Map<string, string>): Map<string, number> {
  const calls = new Map<string, number>();
  for (const [key, value] of info) {
    if (!key.startsWith('cmdstat_')) continue;
    const match = /calls=(\d+)/.exec(value);
    if (match) calls.set(key.slice('cmdstat_'.length), Number(match[1]));
  }
  return calls;
}

const sleep = (ms: number, signal: AbortSignal) =>
  new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, ms);
    signal.addEventListener('abort', () => (clearTimeout(timer), resolve()), { once: true });
  });

export async function benchControlPlane(options: ControlPlaneOptions): Promise<ControlPlaneResult> {
  const signal = options.signal ?? new AbortController().signal;
  const { nodes } = options;
  // Every daemon's store listens on the one signal, to stop retrying on Ctrl-C.
  setMaxListeners(nodes + 16, signal);
  // Two connections per daemon, a few of our own, and headroom for Node's own descriptors.
  const neededFds = 2 * nodes + 64;
  const limit = await openFileLimit();
  if (limit < neededFds) {
    throw new PrerequisiteError(`bench control-plane --nodes ${nodes} needs ${neededFds} open files, but the limit is ${limit}; raise it (ulimit -n ${neededFds}) or use fewer --nodes`);
  }
  options.log(`starting redis-server on 127.0.0.1 (a free port, its files in a temp dir)`);
  const redis = await startLocalRedis(Math.max(10_000, neededFds));
  const daemons = Array.from({ length: nodes }, (_, i) => new SimulatedDaemon(i));
  let admin: SubnetManager | undefined;
  let monitor: Redis | undefined;
  try {
    admin = await connectLeaseStore({ url: redis.url, logger: pino({ level: 'silent' }), retry: { mode: 'fail-fast' } });
    await admin.setNetworkConfig(NETWORK_CONFIG);
    monitor = new Redis(redis.url, { lazyConnect: true, maxRetriesPerRequest: 1 });
    await monitor.connect();

    // 1. Start every daemon at once, as the nodes of a new cluster that boot together: the worst case for allocation races.
    let pending: PendingChange | undefined;
    let snapshots = 0;
    let allWatching!: () => void;
    const watching = new Promise<void>((resolve) => (allWatching = resolve));
    const onSnapshot = () => ++snapshots === nodes && allWatching();
    // A change's stream ID is Redis's clock (ms) when it was written: the latency runs from the commit, not from
    // the writer's call, which also lists leases and reads the config first.
    const onEvent = (daemon: number, type: string, lease: Lease, seq: string) => {
      const change = pending;
      if (change === undefined || lease.publicIP !== PROBE_IP || type !== change.type || !Number.isNaN(change.latencyMillis[daemon]!)) return;
      change.latencyMillis[daemon] = Math.max(0, wallClockMillis() - Number(seq.split('-')[0]));
      if (++change.seen === nodes) change.done();
    };
    options.log(`starting ${nodes} simulated daemons at once: connect, read the config, acquire a lease`);
    const startedAt = performance.now();
    let acquired = 0;
    let lastAcquired = startedAt;
    const progress = setInterval(() => options.log(`  ${acquired}/${nodes} leases, ${snapshots}/${nodes} watching`), 2_000);
    let acquireAllSeconds: number;
    let allWatchingSeconds: number;
    try {
      // allSettled: on a failure, no daemon is left half-started when the cleanup runs.
      const outcomes = await Promise.allSettled(
        daemons.map(async (daemon) => {
          await daemon.acquire(redis.url, signal);
          acquired++;
          lastAcquired = Math.max(lastAcquired, performance.now());
        }),
      );
      const failed = outcomes.find((o): o is PromiseRejectedResult => o.status === 'rejected');
      if (failed) throw new Error(`a simulated daemon failed to acquire its lease: ${(failed.reason as Error).message}`, { cause: failed.reason });
      acquireAllSeconds = (lastAcquired - startedAt) / 1000;
      options.log(`all ${nodes} leases acquired in ${acquireAllSeconds.toFixed(2)} s; starting the ${nodes} watches and renewers`);
      // The watches start once every lease is held. A real daemon starts its own right after its acquire and so
      // also receives the bring-up's N "added" events: N of them on its own CPU, but N x N here on one core.
      const watchesStarted = performance.now();
      for (const daemon of daemons) daemon.follow(onSnapshot, onEvent);
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([
        watching,
        new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`only ${snapshots} of ${nodes} watches delivered a snapshot within 120 s`)), 120_000))),
      ]).finally(() => clearTimeout(timer));
      allWatchingSeconds = (performance.now() - watchesStarted) / 1000;
    } finally {
      clearInterval(progress);
    }
    signal.throwIfAborted();
    options.log(`all ${nodes} watches delivered their snapshot ${allWatchingSeconds.toFixed(2)} s after they started`);

    // 2. Changes, one at a time: each waits until every watcher has it (or the timeout).
    const convergence: number[] = [];
    const delivery: number[] = [];
    let missed = 0;
    let probeLease: Lease | undefined;
    for (let i = 0; i < options.changes; i++) {
      signal.throwIfAborted();
      await sleep(50 + Math.random() * 100, signal);
      const type = probeLease === undefined ? 'added' : 'removed';
      let done!: () => void;
      const allSeen = new Promise<void>((resolve) => (done = resolve));
      const change: PendingChange = { type, latencyMillis: new Float64Array(nodes).fill(Number.NaN), seen: 0, done };
      pending = change;
      if (probeLease === undefined) probeLease = (await admin.acquireLease({ publicIP: PROBE_IP, nodeName: 'probe' })).lease;
      else {
        await admin.revokeLease(probeLease.subnet);
        probeLease = undefined;
      }
      let timer: NodeJS.Timeout | undefined;
      await Promise.race([allSeen, new Promise<void>((resolve) => (timer = setTimeout(resolve, CHANGE_TIMEOUT_MS)))]);
      clearTimeout(timer);
      pending = undefined;
      const seen = Array.from(change.latencyMillis).filter((t) => !Number.isNaN(t));
      missed += nodes - seen.length;
      delivery.push(...seen);
      if (seen.length === nodes) convergence.push(Math.max(...seen));
      if (i % 10 === 9 || i === options.changes - 1) options.log(`  ${i + 1}/${options.changes} changes; last one seen by all ${nodes} after ${Math.max(...seen).toFixed(1)} ms`);
    }
    if (probeLease !== undefined) await admin.revokeLease(probeLease.subnet);

    // 3. Steady state: no changes, only what the daemons do on their own.
    options.log(`steady state: counting Redis commands for ${options.steadySeconds} s`);
    await sleep(1_000, signal);
    const before = parseInfo(await monitor.info('all'));
    const windowStart = performance.now();
    await sleep(options.steadySeconds * 1000, signal);
    signal.throwIfAborted();
    const after = parseInfo(await monitor.info('all'));
    const windowSeconds = (performance.now() - windowStart) / 1000;
    const perNodeHour = (count: number) => (count / nodes / windowSeconds) * 3600;
    // Our own INFO call between the two readings is in the total; nothing else of ours is.
    const total = Number(after.get('total_commands_processed')) - Number(before.get('total_commands_processed')) - 1;
    const callsBefore = commandCalls(before);
    const byCommand: Record<string, number> = {};
    let requests = 0;
    for (const [command, calls] of commandCalls(after)) {
      const delta = calls - (callsBefore.get(command) ?? 0) - (command === 'info' ? 1 : 0);
      if (delta <= 0) continue;
      byCommand[command] = Math.round(perNodeHour(delta) * 10) / 10;
      if (!SCRIPT_COMMANDS.has(command)) requests += delta;
    }
    const result: ControlPlaneResult = {
      options: { nodes, changes: options.changes, steadySeconds: options.steadySeconds },
      redis: { version: after.get('redis_version') ?? redis.version, persistence: 'appendonly yes, appendfsync everysec' },
      simulatedDaemon:
        'connectLeaseStore (backoff retry), getNetworkConfig, acquireLease; once all leases are held, watchLeases consumed to the end ' +
        'and keepLease; two Redis connections; no peer table, TUN or routes; all daemons in one Node process',
      acquireAllSeconds,
      allWatchingSeconds,
      convergenceMillis: distribution(convergence),
      deliveryMillis: distribution(delivery),
      missedDeliveries: missed,
      requestsPerNodePerHour: perNodeHour(requests),
      commandsPerNodePerHour: perNodeHour(total),
      commandsPerNodePerHourByCommand: byCommand,
      redisClients: Number(after.get('connected_clients')),
      redisUsedMemoryBytes: Number(after.get('used_memory')),
    };
    options.log(`steady state: ${result.requestsPerNodePerHour.toFixed(0)} requests (${result.commandsPerNodePerHour.toFixed(0)} commands with those inside scripts) per node per hour`);
    return result;
  } finally {
    options.log(`stopping ${nodes} simulated daemons and redis-server`);
    await Promise.all(daemons.map((d) => d.stop().catch(() => undefined)));
    await admin?.close().catch(() => undefined);
    monitor?.disconnect();
    await redis.stop();
  }
}
