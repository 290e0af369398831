// A real redis-server for the tests and the benchmarks: a free loopback port
// kept across restarts, a temp dir, and cleanup of exactly the processes this
// harness started (by pid), also when the process exits early. A missing
// binary is an error, never a skip. redisServerArgs() is the one place that
// turns a configuration into redis-server's argv, also for the servers the lab
// starts inside network namespaces.

import { execFile, spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Redis } from 'ioredis';
import { stopProcess } from './exec.js';

const REDIS_SERVER = process.env['REDIS_SERVER'] ?? '/usr/bin/redis-server';
const REDIS_CLI = process.env['REDIS_CLI'] ?? '/usr/bin/redis-cli';

/** Every child still running, and every temp dir, cleaned up if the process (a test, a benchmark) exits without doing so. */
const running = new Set<ChildProcess>();
const tempDirs = new Set<string>();
process.once('exit', () => {
  for (const child of running) {
    if (child.pid !== undefined && child.exitCode === null) {
      try {
        process.kill(child.pid, 'SIGKILL');
      } catch {
        // already gone
      }
    }
  }
  for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
});

function makeTempDir(kind: string): string {
  const dir = mkdtempSync(join(tmpdir(), `miniflannel-${kind}-`));
  tempDirs.add(dir);
  return dir;
}

function removeTempDir(dir: string): void {
  rmSync(dir, { recursive: true, force: true });
  tempDirs.delete(dir);
}

/** What redis-server runs with: where it listens, where its files go, how it keeps them. */
export interface RedisServerConfig {
  /**
   * The address it binds. Protected mode is off: the server is reachable
   * only where that address is (loopback, or a namespace the lab created).
   */
  readonly host: string;
  /** Its plain TCP port; 0 for none (a TLS-only server, with --tls-port among `args`). */
  readonly port: number;
  /** Its working dir: the append-only file, nodes.conf. */
  readonly dir: string;
  /** An append-only file, so the data survives a restart. Default false: no AOF and no RDB (`--save ''`), so a restart comes back empty. */
  readonly persistence?: boolean;
  /** When the AOF is fsynced: after every write (default, so even a SIGKILL loses nothing) or once a second, as deployments run it. */
  readonly fsync?: 'always' | 'everysec';
  /** Require this password (requirepass). */
  readonly password?: string;
  /** Connections it accepts at most (maxclients). Default Redis's own, 10,000. */
  readonly maxClients?: number;
  /** Extra config directives, last so they win, e.g. ['--replicaof', host, port]. */
  readonly args?: readonly string[];
}

/** redis-server's argv (without the binary) for `config`. */
export function redisServerArgs(config: RedisServerConfig): string[] {
  const persistence = config.persistence === true;
  return [
    '--bind', config.host,
    '--port', String(config.port),
    '--dir', config.dir,
    '--protected-mode', 'no',
    '--save', '',
    '--appendonly', persistence ? 'yes' : 'no',
    ...(persistence ? ['--appendfsync', config.fsync ?? 'always'] : []),
    ...(config.maxClients !== undefined ? ['--maxclients', String(config.maxClients)] : []),
    ...(config.password !== undefined ? ['--requirepass', config.password] : []),
    ...(config.args ?? []),
  ];
}

export interface StartRedisOptions extends Omit<RedisServerConfig, 'host' | 'port' | 'dir'> {
  /** Run as a sentinel with this (writable) config file instead of as a data node; the data options are ignored. */
  readonly sentinelConfig?: string;
  /** Listen on this port instead of a free one picked at random. */
  readonly port?: number;
  /** The redis-server binary. Default $REDIS_SERVER or /usr/bin/redis-server. */
  readonly binary?: string;
}

/** How restart() changes the server; what it leaves out stays as before. */
export interface RestartOptions {
  /** Persistence of the new process (see RedisServerConfig.persistence). */
  readonly persistence?: boolean;
  /** Delete the files of the earlier processes first, so the new one starts with no data whatever its persistence. */
  readonly empty?: boolean;
}

/**
 * Redis lowers maxclients, with a warning in its log, when it cannot get the
 * file descriptors: a run that needs them would fail later, and less clearly.
 */
export class RedisMaxClientsError extends Error {
  override readonly name = 'RedisMaxClientsError';
  constructor(
    readonly wanted: number,
    readonly granted: number,
  ) {
    super(
      `redis-server got maxclients ${granted}, not the ${wanted} asked for, for lack of file descriptors; ` +
        `raise the hard limit (ulimit -Hn ${wanted + 32}) or run as root`,
    );
  }
}

export interface RedisServer {
  /** redis://127.0.0.1:<port> (with the password when one is set). */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly dir: string;
  /** pid of the current process, undefined while it is down. */
  readonly pid: number | undefined;
  /** The version the current process reported at start, e.g. 7.0.15. */
  readonly version: string;
  /** When the current process first answered PING (epoch ms): with its data loaded, unless a password is set (Redis says NOAUTH while still loading). */
  readonly readyAt: number;
  /** Graceful shutdown (SIGTERM), then removes the temp dir. Final. */
  stop(): Promise<void>;
  /** SIGTERM (graceful: AOF flushed), then a new process on the same port and dir. */
  restart(options?: RestartOptions): Promise<void>;
  /** SIGKILL: a crash. The dir stays, so restart() brings the data back (with persistence). */
  kill(): Promise<void>;
  /** Runs redis-cli against this server and returns its stdout. */
  cli(...args: string[]): string;
}

/** Throws (never skips) when the binary is missing: these tests need a real Redis. */
export function assertRedisInstalled(binary = REDIS_SERVER): void {
  if (!existsSync(binary)) {
    throw new Error(`redis-server not found at ${binary}: install it (apt-get install redis-server) or set REDIS_SERVER`);
  }
}

/** A port that was free a moment ago on 127.0.0.1. */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      server.close(() => (typeof address === 'object' && address !== null ? resolve(address.port) : reject(new Error('no port'))));
    });
  });
}

/**
 * Resolves once `PING` on host:port gets a reply (+PONG, or -NOAUTH) other
 * than -LOADING: the data is in memory. (Redis answers NOAUTH before LOADING,
 * so with a password this may be before the AOF is loaded.)
 */
async function waitForPing(port: number, child: ChildProcess, deadlineMs: number): Promise<void> {
  const deadline = Date.now() + deadlineMs;
  for (;;) {
    if (child.exitCode !== null) throw new Error(`redis-server exited with code ${child.exitCode} during startup`);
    const answered = await new Promise<boolean>((resolve) => {
      const socket = new Socket();
      const done = (ok: boolean): void => {
        socket.destroy();
        resolve(ok);
      };
      socket.setTimeout(500, () => done(false));
      socket.once('error', () => done(false));
      socket.once('data', (data) => done(/^[+-]/.test(data.toString()) && !data.toString().startsWith('-LOADING')));
      socket.connect(port, '127.0.0.1', () => socket.write('PING\r\n'));
    });
    if (answered) return;
    if (Date.now() > deadline) throw new Error(`redis-server on port ${port} did not answer PING within ${deadlineMs} ms`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function waitForExit(child: ChildProcess): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve();
  return new Promise((resolve) => child.once('exit', () => resolve()));
}

/** The number CONFIG GET returns for `parameter` on a running server. */
async function configNumber(host: string, port: number, password: string | undefined, parameter: string): Promise<number> {
  const client = new Redis({ host, port, password, maxRetriesPerRequest: 1, enableReadyCheck: false, retryStrategy: () => null });
  try {
    const [, value] = (await client.config('GET', parameter)) as string[];
    return Number(value);
  } finally {
    client.disconnect();
  }
}

export async function startRedis(options: StartRedisOptions = {}): Promise<RedisServer> {
  const binary = options.binary ?? REDIS_SERVER;
  assertRedisInstalled(binary);
  const dir = makeTempDir('redis');
  const host = '127.0.0.1';
  let port = options.port ?? (await freePort());
  let persistence = options.persistence;
  let child: ChildProcess | undefined;
  let output = '';
  let version = 'unknown';
  let readyAt = Number.NaN;

  const launch = async (): Promise<void> => {
    // Warnings only, which include the version line.
    const quiet = ['--loglevel', 'warning'];
    const args =
      options.sentinelConfig !== undefined
        ? [options.sentinelConfig, '--sentinel', ...quiet, '--bind', host, '--port', String(port), '--dir', dir]
        : [...quiet, ...redisServerArgs({ ...options, host, port, dir, persistence })];
    output = '';
    const proc = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    proc.stdout?.on('data', (d: Buffer) => (output += d.toString()));
    proc.stderr?.on('data', (d: Buffer) => (output += d.toString()));
    running.add(proc);
    proc.once('exit', () => running.delete(proc));
    child = proc;
    try {
      // A long deadline: loading a large AOF is part of the start.
      await waitForPing(port, proc, 60_000);
    } catch (err) {
      proc.kill('SIGKILL');
      await waitForExit(proc);
      throw new Error(`${(err as Error).message}\n${output}`, { cause: err });
    }
    readyAt = Date.now();
    version = /Redis version=([\d.]+)/.exec(output)?.[1] ?? 'unknown';
  };

  const shutdown = async (signal: NodeJS.Signals): Promise<void> => {
    const proc = child;
    child = undefined;
    if (proc === undefined) return;
    // A graceful stop flushes the AOF; a server stuck in it is killed after a while.
    if (signal === 'SIGTERM') await stopProcess(proc, 30_000);
    else if (proc.exitCode === null && proc.signalCode === null) {
      proc.kill(signal);
      await waitForExit(proc);
    }
  };

  const checkMaxClients = async (): Promise<void> => {
    if (options.maxClients === undefined) return;
    const granted = await configNumber(host, port, options.password, 'maxclients');
    if (granted < options.maxClients) {
      await shutdown('SIGTERM');
      throw new RedisMaxClientsError(options.maxClients, granted);
    }
  };

  try {
    // The port was free when probed; another process may grab it first, so try a few.
    for (let attempt = 1; ; attempt++) {
      try {
        await launch();
        break;
      } catch (err) {
        if (attempt >= 5 || options.port !== undefined) throw err;
        port = await freePort();
      }
    }
    await checkMaxClients();
  } catch (err) {
    removeTempDir(dir);
    throw err;
  }

  const auth = options.password !== undefined ? `:${encodeURIComponent(options.password)}@` : '';
  return {
    url: `redis://${auth}${host}:${port}`,
    host,
    get port() {
      return port;
    },
    dir,
    get pid() {
      return child?.exitCode === null ? child.pid : undefined;
    },
    get version() {
      return version;
    },
    get readyAt() {
      return readyAt;
    },
    async stop() {
      await shutdown('SIGTERM');
      removeTempDir(dir);
    },
    async restart(change = {}) {
      await shutdown('SIGTERM');
      if (change.empty === true) {
        rmSync(dir, { recursive: true, force: true });
        mkdirSync(dir);
      }
      persistence = change.persistence ?? persistence;
      await launch();
      await checkMaxClients();
    },
    async kill() {
      await shutdown('SIGKILL');
    },
    cli(...args: string[]) {
      const result = spawnSync(REDIS_CLI, ['-h', host, '-p', String(port), ...(options.password !== undefined ? ['--no-auth-warning', '-a', options.password] : []), ...args], { encoding: 'utf8' });
      if (result.status !== 0) throw new Error(`redis-cli ${args.join(' ')} failed: ${result.stderr}`);
      return result.stdout;
    },
  };
}

export interface StartRedisClusterOptions {
  /** Masters, among which `redis-cli --cluster create` divides the 16384 slots. Default 3, the fewest it accepts. */
  readonly masters?: number;
  /** Replicas of each master. Default 0. */
  readonly replicasPerMaster?: number;
  /**
   * cluster-node-timeout: how long a master may be unreachable before the
   * others mark it failed and its replica takes over. Default 2000 ms, so a
   * failover takes a few seconds rather than the 15 s of Redis's default.
   */
  readonly nodeTimeoutMs?: number;
}

export interface RedisCluster {
  /** redis+cluster://127.0.0.1:p1,127.0.0.1:p2,... (every node the harness started) */
  readonly url: string;
  /** Every node the harness started, masters and replicas alike. Roles change with failovers: ask masterOf/replicasOf. */
  readonly nodes: readonly RedisServer[];
  /** The hash slot of `key` (CLUSTER KEYSLOT). */
  keySlot(key: string): Promise<number>;
  /** The node serving `key`'s slot as master right now, as a live node sees it (CLUSTER KEYSLOT, CLUSTER NODES). */
  masterOf(key: string): Promise<RedisServer>;
  /** The live nodes replicating `master`, as `master` sees them. */
  replicasOf(master: RedisServer): Promise<RedisServer[]>;
  /**
   * SIGKILL of the process the harness started for `node`: a crash. Its dir
   * (and nodes.conf) stays, so `node.restart()` brings it back into the
   * cluster, as a replica of whichever node took its slots meanwhile.
   */
  kill(node: RedisServer): Promise<void>;
  /**
   * Waits until a node other than `failed` serves `key`'s slot as master, in
   * the view of every live node, and every live node reports
   * cluster_state:ok. Returns that node (the promoted replica).
   */
  waitForFailover(failed: RedisServer, key: string, timeoutMs?: number): Promise<RedisServer>;
  /**
   * Waits until every live node reports cluster_state:ok and knows every
   * node, every live replica has finished its sync (master_link_status:up),
   * and every live node sees every slot served and every other live node
   * running in the role it has.
   */
  waitUntilHealthy(timeoutMs?: number): Promise<void>;
  /** Stops every node (also those killed) and removes their dirs. */
  stop(): Promise<void>;
}

/** One line of CLUSTER NODES. */
interface ClusterNodeLine {
  readonly id: string;
  readonly port: number;
  readonly flags: ReadonlySet<string>;
  /** The master's node ID, for a replica. */
  readonly masterId: string | undefined;
  readonly slots: ReadonlyArray<readonly [number, number]>;
}

/** CLUSTER NODES: "<id> <ip:port@cport[,hostname]> <flags> <master|-> <ping> <pong> <epoch> <link> <slot or range>...". */
function parseClusterNodes(text: string): ClusterNodeLine[] {
  const lines: ClusterNodeLine[] = [];
  for (const line of text.split('\n')) {
    const fields = line.trim().split(' ');
    if (fields.length < 8) continue;
    const [id, address, flags, master] = fields as [string, string, string, string];
    const port = Number(/:(\d+)@/.exec(address)?.[1]);
    const slots: Array<readonly [number, number]> = [];
    // Slots being imported or migrated are shown in brackets; the harness never migrates.
    for (const range of fields.slice(8)) {
      const match = /^(\d+)(?:-(\d+))?$/.exec(range);
      if (match !== null) slots.push([Number(match[1]), Number(match[2] ?? match[1])]);
    }
    lines.push({ id, port, flags: new Set(flags.split(',')), masterId: master === '-' ? undefined : master, slots });
  }
  return lines;
}

const sleep = (ms: number): Promise<void> => new Promise((resolve) => setTimeout(resolve, ms));

/**
 * redis-cli against host:port, without blocking the event loop (the clients
 * under test keep running while the harness watches a failover).
 */
async function cliAsync(server: Pick<RedisServer, 'host' | 'port'>, args: readonly string[], timeoutMs = 5_000): Promise<string> {
  return new Promise((resolve, reject) => {
    execFile(REDIS_CLI, ['-h', server.host, '-p', String(server.port), ...args], { encoding: 'utf8', timeout: timeoutMs }, (err, stdout, stderr) => {
      if (err !== null) reject(new Error(`redis-cli -p ${server.port} ${args.join(' ')} failed: ${stderr || err.message}`, { cause: err }));
      else resolve(stdout);
    });
  });
}

/** Calls `probe` until it returns a value; the last reason it gave is in the timeout's message. */
async function waitFor<T>(what: string, timeoutMs: number, probe: () => Promise<T | string>): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    let reason: string;
    try {
      const result = await probe();
      if (typeof result !== 'string') return result;
      reason = result;
    } catch (err) {
      reason = (err as Error).message;
    }
    if (Date.now() > deadline) throw new Error(`${what}: not within ${timeoutMs} ms (last: ${reason})`);
    await sleep(50);
  }
}

/**
 * One cluster node. The cluster bus port is picked free like the data port:
 * by default it is the data port + 10000, which does not exist for the upper
 * part of the ephemeral range (Redis refuses data ports above 55535).
 */
async function startClusterNode(args: readonly string[]): Promise<RedisServer> {
  for (let attempt = 1; ; attempt++) {
    const busPort = await freePort();
    try {
      return await startRedis({ args: [...args, '--cluster-port', String(busPort)] });
    } catch (err) {
      // startRedis already tried other data ports; the bus port may be the one taken.
      if (attempt >= 3) throw err;
    }
  }
}

/**
 * A Redis Cluster of `masters` masters with `replicasPerMaster` replicas
 * each, all slots assigned, ready (state ok, replicas synced) when it
 * resolves. A number is the count of masters (no replicas), as before.
 */
export async function startRedisCluster(options: StartRedisClusterOptions | number = {}): Promise<RedisCluster> {
  const { masters = 3, replicasPerMaster = 0, nodeTimeoutMs = 2_000 } = typeof options === 'number' ? { masters: options } : options;
  const args = [
    '--cluster-enabled', 'yes',
    '--cluster-config-file', 'nodes.conf',
    '--cluster-node-timeout', String(nodeTimeoutMs),
    // A replica's first sync starts at once, not after the default 5 s of waiting for others.
    '--repl-diskless-sync-delay', '0',
  ];
  const count = masters * (1 + replicasPerMaster);
  const started = await Promise.allSettled(Array.from({ length: count }, () => startClusterNode(args)));
  const nodes = started.flatMap((result) => (result.status === 'fulfilled' ? [result.value] : []));
  const stop = async (): Promise<void> => {
    await Promise.all(nodes.map((n) => n.stop()));
  };
  const live = (): RedisServer[] => nodes.filter((n) => n.pid !== undefined);
  const byPort = (port: number): RedisServer => {
    const node = nodes.find((n) => n.port === port);
    if (node === undefined) throw new Error(`port ${port} is not a node of this cluster`);
    return node;
  };
  const anyLive = (): RedisServer => {
    const node = live()[0];
    if (node === undefined) throw new Error('no node of the cluster is running');
    return node;
  };
  const keySlot = async (key: string): Promise<number> => Number((await cliAsync(anyLive(), ['cluster', 'keyslot', key])).trim());
  /** The master of `slot` in `view` (CLUSTER NODES of one node), unless that node sees it failed. */
  const masterIn = (view: readonly ClusterNodeLine[], slot: number): ClusterNodeLine | undefined =>
    view.find((n) => n.flags.has('master') && !n.flags.has('fail') && n.slots.some(([from, to]) => from <= slot && slot <= to));

  const cluster: RedisCluster = {
    url: `redis+cluster://${nodes.map((n) => `${n.host}:${n.port}`).join(',')}`,
    nodes,
    keySlot,
    async masterOf(key) {
      const slot = await keySlot(key);
      const master = masterIn(parseClusterNodes(await cliAsync(anyLive(), ['cluster', 'nodes'])), slot);
      if (master === undefined) throw new Error(`no live master serves slot ${slot}`);
      return byPort(master.port);
    },
    async replicasOf(master) {
      const view = parseClusterNodes(await cliAsync(master, ['cluster', 'nodes']));
      const id = view.find((n) => n.flags.has('myself'))?.id;
      return view.filter((n) => n.masterId === id && !n.flags.has('fail')).map((n) => byPort(n.port)).filter((n) => n.pid !== undefined);
    },
    async kill(node) {
      if (!nodes.includes(node)) throw new Error(`port ${node.port} is not a node of this cluster`);
      await node.kill();
    },
    async waitForFailover(failed, key, timeoutMs = 30_000) {
      const slot = await keySlot(key);
      return waitFor(`a replica of port ${failed.port} to take over slot ${slot}`, timeoutMs, async () => {
        const promoted = new Set<number>();
        for (const node of live()) {
          if (!/^cluster_state:ok\r?$/m.test(await cliAsync(node, ['cluster', 'info'], 1_000))) return `port ${node.port} says the cluster is not ok`;
          const master = masterIn(parseClusterNodes(await cliAsync(node, ['cluster', 'nodes'], 1_000)), slot);
          if (master === undefined || master.port === failed.port) return `port ${node.port} sees port ${master?.port ?? 'none'} serving slot ${slot}`;
          promoted.add(master.port);
        }
        if (promoted.size !== 1) return `the nodes disagree on the master of slot ${slot}: ports ${[...promoted].join(', ')}`;
        return byPort([...promoted][0]!);
      });
    },
    async waitUntilHealthy(timeoutMs = 30_000) {
      await waitFor('the Redis Cluster to be healthy', timeoutMs, async () => {
        const running = live();
        const replicas = new Set<number>();
        for (const node of running) {
          const info = await cliAsync(node, ['cluster', 'info'], 1_000);
          if (!/^cluster_state:ok\r?$/m.test(info)) return `port ${node.port}: cluster_state is not ok`;
          if (Number(/^cluster_known_nodes:(\d+)/m.exec(info)?.[1]) !== nodes.length) return `port ${node.port} does not know every node yet`;
          const replication = await cliAsync(node, ['info', 'replication'], 1_000);
          if (/^role:slave\r?$/m.test(replication)) {
            if (!/^master_link_status:up\r?$/m.test(replication)) return `replica on port ${node.port} has not synced yet`;
            replicas.add(node.port);
          }
        }
        // Every live node sees every other as running, in the role it has: failovers and rejoins have spread.
        for (const node of running) {
          const view = parseClusterNodes(await cliAsync(node, ['cluster', 'nodes'], 1_000));
          const served = view.filter((n) => n.flags.has('master') && !n.flags.has('fail')).reduce((sum, n) => sum + n.slots.reduce((total, [from, to]) => total + to - from + 1, 0), 0);
          if (served !== 16384) return `port ${node.port} sees ${served} of 16384 slots served`;
          for (const other of running) {
            const line = view.find((n) => n.port === other.port);
            const role = replicas.has(other.port) ? 'slave' : 'master';
            if (line === undefined || !line.flags.has(role) || line.flags.has('fail') || line.flags.has('fail?')) {
              return `port ${node.port} does not see port ${other.port} as a running ${role} yet`;
            }
          }
        }
        return undefined;
      });
    },
    stop,
  };

  try {
    const failed = started.find((result) => result.status === 'rejected');
    if (failed !== undefined) throw (failed as PromiseRejectedResult).reason;
    await cliAsync(nodes[0]!, ['--cluster', 'create', ...nodes.map((n) => `${n.host}:${n.port}`), '--cluster-replicas', String(replicasPerMaster), '--cluster-yes'], 30_000);
    await cluster.waitUntilHealthy();
    // Replicas as the cluster create assigned them (it may mix the start order).
    const replicas = (await Promise.all(live().map((n) => cliAsync(n, ['info', 'replication'], 1_000)))).filter((text) => /^role:slave\r?$/m.test(text)).length;
    if (replicas !== masters * replicasPerMaster) throw new Error(`the cluster has ${replicas} replicas, not ${masters * replicasPerMaster}`);
    return cluster;
  } catch (err) {
    await stop();
    throw err;
  }
}

export interface RedisSentinel {
  /** redis+sentinel://127.0.0.1:<sentinel port>/<master name> */
  readonly url: string;
  readonly master: RedisServer;
  readonly sentinel: RedisServer;
  stop(): Promise<void>;
}

/** One master watched by one sentinel (quorum 1), named `masterName`. */
export async function startRedisSentinel(masterName = 'mymaster'): Promise<RedisSentinel> {
  const master = await startRedis();
  const sentinelDir = makeTempDir('sentinel');
  const conf = join(sentinelDir, 'sentinel.conf');
  writeFileSync(conf, `sentinel monitor ${masterName} ${master.host} ${master.port} 1\nsentinel down-after-milliseconds ${masterName} 2000\n`);
  try {
    // A sentinel is redis-server in sentinel mode with a writable config file.
    const sentinel = await startRedis({ sentinelConfig: conf });
    const deadline = Date.now() + 10_000;
    while (!sentinel.cli('sentinel', 'get-master-addr-by-name', masterName).includes(String(master.port))) {
      if (Date.now() > deadline) throw new Error('sentinel did not learn its master within 10 s');
      await new Promise((r) => setTimeout(r, 50));
    }
    return {
      url: `redis+sentinel://${sentinel.host}:${sentinel.port}/${masterName}`,
      master,
      sentinel,
      async stop() {
        await Promise.all([master.stop(), sentinel.stop()]);
        removeTempDir(sentinelDir);
      },
    };
  } catch (err) {
    await master.stop();
    removeTempDir(sentinelDir);
    throw err;
  }
}
