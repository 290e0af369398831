// The redis-server that `bench control-plane` starts, stops and restarts on
// one loopback port, and the INFO fields the bench reads from it. Only this
// server is ever queried: it is the one the run started.
import { mkdir, mkdtemp, rm } from 'node:fs/promises';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { ChildProcess } from 'node:child_process';
import { Redis } from 'ioredis';
import { exited, start, stopProcess } from '../exec.js';
import { PrerequisiteError } from './prerequisites.js';

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

/** How a start of the server keeps its data. */
export type Persistence = 'aof' | 'none';

/**
 * redis-server on 127.0.0.1 and one port for the whole run, its files in a
 * temp dir. Each start() runs a new process on that port; stop() ends the
 * current one by its pid (SIGTERM: with the AOF on, Redis flushes it first).
 */
export class LocalRedis {
  readonly url: string;
  version = 'unknown';
  private child: ChildProcess | undefined;
  private starts = 0;

  private constructor(
    readonly port: number,
    readonly dir: string,
    readonly maxClients: number,
  ) {
    this.url = `redis://127.0.0.1:${port}`;
  }

  static async create(maxClients: number): Promise<LocalRedis> {
    const dir = await mkdtemp(path.join(tmpdir(), 'miniflannel-bench-redis-'));
    return new LocalRedis(await freeLoopbackPort(), dir, maxClients);
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  /**
   * Starts a server and resolves once it accepts connections (epoch ms).
   * `aof`: an append-only file fsynced every second, as the sandbox runs it,
   * in the run's data dir, so a restart finds the data. `none`: no AOF, no
   * RDB, and a fresh dir, so a restart finds nothing.
   */
  async start(persistence: Persistence): Promise<number> {
    const dataDir = persistence === 'aof' ? path.join(this.dir, 'aof') : path.join(this.dir, `empty-${++this.starts}`);
    await mkdir(dataDir, { recursive: true });
    const child = start([
      'redis-server',
      '--bind', '127.0.0.1',
      '--port', String(this.port),
      '--dir', dataDir,
      '--save', '',
      '--appendonly', persistence === 'aof' ? 'yes' : 'no',
      '--appendfsync', 'everysec',
      '--maxclients', String(this.maxClients),
      '--protected-mode', 'yes',
    ]);
    this.child = child;
    let output = '';
    try {
      await new Promise<void>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error(`redis-server on 127.0.0.1:${this.port} was not ready within 60 s: ${lastLine(output)}`)), 60_000);
        createInterface({ input: child.stdout! }).on('line', (line) => {
          output += `${line}\n`;
          if (line.includes('Ready to accept connections')) {
            clearTimeout(timer);
            resolve();
          }
        });
        void exited(child).then((code) => {
          clearTimeout(timer);
          reject(new Error(`redis-server exited with ${code}: ${lastLine(output)}`));
        });
      });
    } catch (err) {
      await stopProcess(child);
      throw err;
    }
    const readyAt = Date.now();
    this.version = /v=([\d.]+)/.exec(output)?.[1] ?? /Redis version=([\d.]+)/.exec(output)?.[1] ?? this.version;
    await this.checkMaxClients();
    return readyAt;
  }

  /** Redis lowers maxclients, with a warning, when it cannot get the file descriptors: that would fail the run later. */
  private async checkMaxClients(): Promise<void> {
    const client = this.client();
    try {
      const reply = (await client.config('GET', 'maxclients')) as string[];
      const granted = Number(reply[1]);
      if (granted < this.maxClients) {
        throw new PrerequisiteError(
          `redis-server got maxclients ${granted}, not the ${this.maxClients} this run needs, for lack of file descriptors; ` +
            `raise the hard limit (ulimit -Hn ${this.maxClients + 32}) or run as root, or use fewer --nodes`,
        );
      }
    } finally {
      client.disconnect();
    }
  }

  /** A plain client of this server, for INFO and checks; its commands are the bench's, not the daemons'. */
  client(): Redis {
    return new Redis(this.url, { maxRetriesPerRequest: 1, connectionName: 'bench-monitor', enableReadyCheck: false });
  }

  async stop(): Promise<void> {
    if (this.child !== undefined) await stopProcess(this.child, 30_000);
    this.child = undefined;
  }

  async remove(): Promise<void> {
    await this.stop();
    await rm(this.dir, { recursive: true, force: true });
  }
}

const lastLine = (text: string) => text.trim().split('\n').pop() ?? '';

export type Info = ReadonlyMap<string, string>;

export function parseInfo(text: string): Info {
  const fields = new Map<string, string>();
  for (const line of text.split('\r\n')) {
    const at = line.indexOf(':');
    if (at > 0 && !line.startsWith('#')) fields.set(line.slice(0, at), line.slice(at + 1));
  }
  return fields;
}

export const infoNumber = (info: Info, field: string) => Number(info.get(field) ?? Number.NaN);

/** calls per command from INFO commandstats: cmdstat_evalsha:calls=12,... ("client|setname" for subcommands). */
export function commandCalls(info: Info): Map<string, number> {
  const calls = new Map<string, number>();
  for (const [key, value] of info) {
    if (!key.startsWith('cmdstat_')) continue;
    const match = /calls=(\d+)/.exec(value);
    if (match) calls.set(key.slice('cmdstat_'.length), Number(match[1]));
  }
  return calls;
}

/** Redis's CPU time so far, user + system, of the server process itself (not of AOF rewrite children). */
export const cpuSeconds = (info: Info) => infoNumber(info, 'used_cpu_user') + infoNumber(info, 'used_cpu_sys');

/** Memory the data set takes: used_memory without the clients' buffers, the AOF buffer and the script cache. */
export function storeBytes(info: Info): number {
  return (
    infoNumber(info, 'used_memory') -
    infoNumber(info, 'mem_clients_normal') -
    (infoNumber(info, 'mem_clients_slaves') || 0) -
    (infoNumber(info, 'mem_aof_buffer') || 0) -
    (infoNumber(info, 'used_memory_scripts') || 0)
  );
}

/** Commands between two INFO readings, by name; the bench's own INFO calls (`ownInfos` of them) taken out. */
export function commandDeltas(before: Info, after: Info, ownInfos: number): { total: number; byCommand: Map<string, number> } {
  const callsBefore = commandCalls(before);
  const byCommand = new Map<string, number>();
  let total = 0;
  for (const [command, calls] of commandCalls(after)) {
    const delta = calls - (callsBefore.get(command) ?? 0) - (command === 'info' ? ownInfos : 0);
    if (delta <= 0) continue;
    byCommand.set(command, delta);
    total += delta;
  }
  return { total, byCommand };
}

/**
 * Microseconds per call of each command between two readings (INFO commandstats usec / calls), for the
 * commands called; INFO is left out, since the bench's own readings are among its calls.
 */
export function microsPerCall(before: Info, after: Info): Record<string, number> {
  const read = (info: Info) => {
    const stats = new Map<string, { calls: number; usec: number }>();
    for (const [key, value] of info) {
      const match = /calls=(\d+),usec=(\d+)/.exec(value);
      if (key.startsWith('cmdstat_') && match) stats.set(key.slice('cmdstat_'.length), { calls: Number(match[1]), usec: Number(match[2]) });
    }
    return stats;
  };
  const was = read(before);
  const result: Record<string, number> = {};
  for (const [command, now] of read(after)) {
    if (command === 'info') continue;
    const calls = now.calls - (was.get(command)?.calls ?? 0);
    if (calls > 0) result[command] = Math.round(((now.usec - (was.get(command)?.usec ?? 0)) / calls) * 10) / 10;
  }
  return result;
}
