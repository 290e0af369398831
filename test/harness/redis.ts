// A real redis-server for tests: a free loopback port, a temp dir, and
// cleanup of exactly the processes this harness started (by pid), also when
// the test process exits early. A missing binary is an error, never a skip.

import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

const REDIS_SERVER = process.env['REDIS_SERVER'] ?? '/usr/bin/redis-server';
const REDIS_CLI = process.env['REDIS_CLI'] ?? '/usr/bin/redis-cli';

/** Every child still running, and every temp dir, cleaned up if the test process exits without doing so. */
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

export interface StartRedisOptions {
  /** appendonly yes (fsync every write) so data survives restart() and kill(). Default false (`--save ''`, no AOF). */
  readonly persistence?: boolean;
  /** Extra config directives, e.g. ['--stream-node-max-entries', '4']. */
  readonly args?: readonly string[];
  /** Require this password (requirepass). */
  readonly password?: string;
  /** Run as a sentinel with this (writable) config file instead of as a data node. */
  readonly sentinelConfig?: string;
  /** Listen on this port instead of a free one picked at random. */
  readonly port?: number;
  /** The redis-server binary. Default $REDIS_SERVER or /usr/bin/redis-server. */
  readonly binary?: string;
}

export interface RedisServer {
  /** redis://127.0.0.1:<port> (with the password when one is set). */
  readonly url: string;
  readonly host: string;
  readonly port: number;
  readonly dir: string;
  /** pid of the current process, undefined while it is down. */
  readonly pid: number | undefined;
  /** Graceful shutdown (SIGTERM), then removes the temp dir. Final. */
  stop(): Promise<void>;
  /** SIGTERM (graceful: AOF flushed), then a new process on the same port and dir. */
  restart(): Promise<void>;
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

/** Resolves once `PING` on host:port gets a reply (any reply: +PONG or -NOAUTH). */
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
      socket.once('data', (data) => done(/^[+-]/.test(data.toString())));
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

export async function startRedis(options: StartRedisOptions = {}): Promise<RedisServer> {
  const binary = options.binary ?? REDIS_SERVER;
  assertRedisInstalled(binary);
  const dir = makeTempDir('redis');
  const host = '127.0.0.1';
  let port = options.port ?? (await freePort());
  let child: ChildProcess | undefined;
  let output = '';

  const launch = async (): Promise<void> => {
    const common = ['--port', String(port), '--bind', host, '--dir', dir, '--daemonize', 'no', '--loglevel', 'warning'];
    const args =
      options.sentinelConfig !== undefined
        ? [options.sentinelConfig, '--sentinel', ...common]
        : [
            ...common,
            '--save', '',
            '--appendonly', options.persistence === true ? 'yes' : 'no',
            '--appendfsync', 'always',
            ...(options.password !== undefined ? ['--requirepass', options.password] : []),
            ...(options.args ?? []),
          ];
    output = '';
    const proc = spawn(binary, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    proc.stdout?.on('data', (d: Buffer) => (output += d.toString()));
    proc.stderr?.on('data', (d: Buffer) => (output += d.toString()));
    running.add(proc);
    proc.once('exit', () => running.delete(proc));
    child = proc;
    try {
      await waitForPing(port, proc, 10_000);
    } catch (err) {
      proc.kill('SIGKILL');
      await waitForExit(proc);
      throw new Error(`${(err as Error).message}\n${output}`, { cause: err });
    }
  };

  // The port was free when probed; another process may grab it first, so try a few.
  for (let attempt = 1; ; attempt++) {
    try {
      await launch();
      break;
    } catch (err) {
      if (attempt >= 5 || options.port !== undefined) {
        removeTempDir(dir);
        throw err;
      }
      port = await freePort();
    }
  }

  const shutdown = async (signal: NodeJS.Signals): Promise<void> => {
    const proc = child;
    child = undefined;
    if (proc === undefined || proc.exitCode !== null || proc.signalCode !== null) return;
    proc.kill(signal);
    await waitForExit(proc);
  };

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
    async stop() {
      await shutdown('SIGTERM');
      removeTempDir(dir);
    },
    async restart() {
      await shutdown('SIGTERM');
      await launch();
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

export interface RedisCluster {
  /** redis+cluster://127.0.0.1:p1,127.0.0.1:p2,... */
  readonly url: string;
  readonly nodes: readonly RedisServer[];
  stop(): Promise<void>;
}

/** A Redis Cluster of `size` masters (no replicas), all slots assigned. */
export async function startRedisCluster(size = 3): Promise<RedisCluster> {
  const nodes: RedisServer[] = [];
  try {
    for (let i = 0; i < size; i++) {
      nodes.push(await startRedis({ args: ['--cluster-enabled', 'yes', '--cluster-config-file', 'nodes.conf', '--cluster-node-timeout', '2000'] }));
    }
    const addresses = nodes.map((n) => `${n.host}:${n.port}`);
    nodes[0]!.cli('--cluster', 'create', ...addresses, '--cluster-replicas', '0', '--cluster-yes');
    const deadline = Date.now() + 15_000;
    for (;;) {
      const states = nodes.map((n) => /cluster_state:ok/.test(n.cli('cluster', 'info')));
      if (states.every(Boolean)) break;
      if (Date.now() > deadline) throw new Error('Redis Cluster did not reach cluster_state:ok within 15 s');
      await new Promise((r) => setTimeout(r, 100));
    }
    return {
      url: `redis+cluster://${addresses.join(',')}`,
      nodes,
      async stop() {
        await Promise.all(nodes.map((n) => n.stop()));
      },
    };
  } catch (err) {
    await Promise.all(nodes.map((n) => n.stop()));
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
