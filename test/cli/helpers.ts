// Runs the built CLI (dist/cli/main.js) as a subprocess, the way an operator
// or a script does, with an environment free of the caller's MINIFLANNEL_*,
// NO_COLOR and FORCE_COLOR settings so results do not depend on who runs the tests.

import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { pino } from 'pino';
import { connectLeaseStore, toNetConf, type NetConf, type SubnetManager } from '../../daemon/lease/index.js';
import { cliBin } from '../../lab/paths.js';
import type { RedisServer } from '../../lab/redis.js';

export interface CliResult {
  readonly code: number | null;
  readonly stdout: string;
  readonly stderr: string;
}

export interface RunOptions {
  /** Extra environment variables (the base is the test's environment without MINIFLANNEL_*, NO_COLOR, FORCE_COLOR). */
  readonly env?: Readonly<Record<string, string>>;
  /** Written to stdin, which is then closed. Default: stdin closed at once. */
  readonly input?: string;
  /** Kill the CLI after this long (a hang is a failure). Default 15 s. */
  readonly timeoutMs?: number;
}

export function cleanEnv(extra: Readonly<Record<string, string>> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) {
    if (!key.startsWith('MINIFLANNEL') && key !== 'NO_COLOR' && key !== 'FORCE_COLOR') env[key] = value;
  }
  return { ...env, ...extra };
}

/** Collects a child's output and resolves when it exits. */
export function outcomeOf(child: ChildProcess, timeoutMs: number, what: string): Promise<CliResult> {
  let stdout = '';
  let stderr = '';
  child.stdout?.on('data', (d: Buffer) => (stdout += d.toString()));
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`${what} did not exit within ${timeoutMs} ms\nstdout: ${stdout}\nstderr: ${stderr}`));
    }, timeoutMs);
    child.once('error', reject);
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    });
  });
}

export function runCli(args: readonly string[], options: RunOptions = {}): Promise<CliResult> {
  const child = spawn(process.execPath, [cliBin, ...args], { env: cleanEnv(options.env), stdio: ['pipe', 'pipe', 'pipe'] });
  child.stdin.end(options.input ?? '');
  return outcomeOf(child, options.timeoutMs ?? 15_000, `miniflannel ${args.join(' ')}`);
}

/** A CLI bound to one Redis and one key prefix, so tests sharing a server do not see each other. */
export interface BoundCli {
  readonly url: string;
  readonly prefix: string;
  run(args: readonly string[], options?: RunOptions): Promise<CliResult>;
  /** Runs and asserts exit 0, returning stdout. */
  ok(args: readonly string[], options?: RunOptions): Promise<string>;
  /** The store under the same prefix, as a node (or another operator) would use it; closed by closeStores(). */
  store(): Promise<SubnetManager>;
  /** Stores a network config directly, for tests whose subject is something else. */
  setConfig(netConf: Readonly<Record<string, unknown>>): Promise<void>;
  /** The stored network config in net-conf form, read directly. */
  storedConfig(): Promise<ReturnType<typeof toNetConf>>;
}

let prefixes = 0;
const openStores = new Set<SubnetManager>();

/** Closes every store opened through a BoundCli (call it from `after`). */
export async function closeStores(): Promise<void> {
  await Promise.all([...openStores].map((store) => store.close()));
  openStores.clear();
}

export function bindCli(redis: RedisServer, name: string): BoundCli {
  const prefix = `cli-${process.pid}-${name}-${++prefixes}`;
  const target = ['--redis-url', redis.url, '--prefix', prefix];
  const run = (args: readonly string[], options?: RunOptions) => runCli([...args, ...target], options);
  let store: Promise<SubnetManager> | undefined;
  const shared = (): Promise<SubnetManager> =>
    (store ??= connectLeaseStore({ url: redis.url, keyPrefix: prefix, logger: pino({ level: 'silent' }) }).then((s) => {
      openStores.add(s);
      return s;
    }));
  return {
    url: redis.url,
    prefix,
    run,
    async ok(args, options) {
      const result = await run(args, options);
      if (result.code !== 0) throw new Error(`miniflannel ${args.join(' ')} exited with ${result.code}: ${result.stderr}`);
      return result.stdout;
    },
    store: shared,
    async setConfig(netConf) {
      await (await shared()).setNetworkConfig(netConf as unknown as NetConf);
    },
    async storedConfig() {
      return toNetConf(await (await shared()).getNetworkConfig());
    },
  };
}

/** Asserts the failure shape every command shares: exactly one line on stderr, `miniflannel: ...`, no stack. */
export function oneLineError(result: CliResult): string {
  const lines = result.stderr.split('\n').filter((line) => line !== '');
  if (lines.length !== 1 || !lines[0]!.startsWith('miniflannel: ') || /\n\s+at /.test(result.stderr)) {
    throw new Error(`expected one line "miniflannel: ..." on stderr, got:\n${result.stderr}`);
  }
  return lines[0]!;
}

/** A long-running CLI (lease list --watch) whose stdout is read line by line. */
export interface RunningCli {
  readonly child: ChildProcess;
  /** Resolves with the exit code once the CLI has exited. */
  readonly exited: Promise<number | null>;
  /** The next stdout line, or a failure after `timeoutMs`. */
  nextLine(timeoutMs?: number): Promise<string>;
  /** Sends `signal` and resolves with the exit outcome. */
  stop(signal?: NodeJS.Signals): Promise<{ code: number | null; stderr: string }>;
}

export function startCli(args: readonly string[]): RunningCli {
  const child = spawn(process.execPath, [cliBin, ...args], { env: cleanEnv(), stdio: ['ignore', 'pipe', 'pipe'] });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => (stderr += d.toString()));
  const exited = new Promise<number | null>((resolve) => child.once('close', (code) => resolve(code)));
  const lines = createInterface({ input: child.stdout! })[Symbol.asyncIterator]();
  return {
    child,
    exited,
    async nextLine(timeoutMs = 10_000) {
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`no line from miniflannel ${args.join(' ')} within ${timeoutMs} ms; stderr: ${stderr}`)), timeoutMs);
      });
      try {
        const next = await Promise.race([lines.next(), timeout]);
        if (next.done === true) throw new Error(`miniflannel ${args.join(' ')} ended its output; stderr: ${stderr}`);
        return next.value;
      } finally {
        clearTimeout(timer);
      }
    },
    async stop(signal = 'SIGINT') {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
      const code = await exited;
      return { code, stderr };
    },
  };
}
