// What `bench control-plane` reads from the redis-server it started (with
// lab/redis.ts's startRedis): INFO fields, and a client to read them with.
// Only that server is ever queried.
import { Redis } from 'ioredis';

/** A plain client of the bench's server, for INFO and checks; its commands are the bench's, not the daemons'. */
export function monitorClient(url: string): Redis {
  return new Redis(url, { maxRetriesPerRequest: 1, connectionName: 'bench-monitor', enableReadyCheck: false });
}

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
