/**
 * Network namespaces this process creates and owns. Each run's names start
 * with `mf<pid>x` so that parallel runs never collide, and a run can tell
 * namespaces left behind by a dead run (its pid is gone) from live ones.
 */
import { existsSync } from 'node:fs';
import { readdir } from 'node:fs/promises';
import type { ChildProcess, SpawnOptions } from 'node:child_process';
import { run, runForOutcome, start, type Outcome, type RunOptions } from './exec.js';

const NETNS_DIR = '/run/netns';
const OWNED = /^mf(\d+)x/;

export function runPrefix(pid = process.pid): string {
  return `mf${pid}x`;
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}

/** Whether `name` (a namespace, a container, an image tag or label value) starts with the prefix of a miniflannel run that is no longer alive. */
export function leftByDeadRun(name: string): boolean {
  const match = OWNED.exec(name);
  return match !== null && !alive(Number(match[1]));
}

/** Deletes namespaces that a miniflannel run which is no longer alive created. */
export async function removeStaleNamespaces(): Promise<string[]> {
  if (!existsSync(NETNS_DIR)) return [];
  const stale = (await readdir(NETNS_DIR)).filter(leftByDeadRun);
  for (const name of stale) await run(['ip', 'netns', 'delete', name]).catch(() => undefined);
  return stale;
}

export class Netns {
  private constructor(readonly name: string) {}

  static async create(name: string): Promise<Netns> {
    await run(['ip', 'netns', 'add', name]);
    const ns = new Netns(name);
    await ns.exec(['ip', 'link', 'set', 'lo', 'up']);
    return ns;
  }

  /** A namespace that already exists, such as one another process of ours owns. */
  static named(name: string): Netns {
    return new Netns(name);
  }

  get path(): string {
    return `${NETNS_DIR}/${this.name}`;
  }

  /** Runs a command inside the namespace and returns its stdout. */
  exec(command: readonly string[], options?: RunOptions): Promise<string> {
    return run(['ip', 'netns', 'exec', this.name, ...command], options);
  }

  execForOutcome(command: readonly string[], options?: RunOptions): Promise<Outcome> {
    return runForOutcome(['ip', 'netns', 'exec', this.name, ...command], options);
  }

  /** `ip -n <ns> …`, cheaper than exec for iproute2 itself. */
  ip(...args: string[]): Promise<string> {
    return run(['ip', '-n', this.name, ...args]);
  }

  spawn(command: readonly string[], options?: SpawnOptions): ChildProcess {
    return start(['ip', 'netns', 'exec', this.name, ...command], options);
  }

  async destroy(): Promise<void> {
    await run(['ip', 'netns', 'delete', this.name]).catch(() => undefined);
  }
}
