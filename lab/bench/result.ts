// The JSON result file every bench command writes: what ran, where, when,
// with which versions and how loaded the machine was, then the figures.
import { writeFile } from 'node:fs/promises';
import os from 'node:os';
import { execFileSync } from 'node:child_process';
import { versionOf } from './prerequisites.js';
import { packageRoot } from '../paths.js';

export interface Machine {
  cpuModel: string;
  cpus: number;
  memoryBytes: number;
  kernel: string;
  node: string;
  iperf3: string | null;
  openvpn: string | null;
  redis: string | null;
  /** 1, 5 and 15 minute load averages when the run started and ended: other work on a shared machine shows here. */
  loadAverageAtStart: number[];
  loadAverageAtEnd?: number[];
}

export interface BenchDocument<R> {
  tool: 'miniflannel bench';
  command: string;
  miniflannel: string;
  startedAt: string;
  finishedAt: string;
  durationSeconds: number;
  machine: Machine;
  result: R;
}

function gitCommit(): string | undefined {
  try {
    return execFileSync('git', ['describe', '--always', '--dirty'], { cwd: packageRoot, stdio: ['ignore', 'pipe', 'ignore'] }).toString().trim();
  } catch {
    return undefined;
  }
}

export async function describeMachine(): Promise<Machine> {
  const round = (values: number[]) => values.map((v) => Math.round(v * 100) / 100);
  return {
    cpuModel: os.cpus()[0]?.model.trim() ?? 'unknown',
    cpus: os.cpus().length,
    memoryBytes: os.totalmem(),
    kernel: os.release(),
    node: process.version,
    iperf3: (await versionOf('iperf3'))?.replace(/^iperf\s+/, '') ?? null,
    openvpn: (await versionOf('openvpn'))?.split(' ').slice(0, 2).join(' ') ?? null,
    redis: (await versionOf('redis-server'))?.match(/v=(\S+)/)?.[1] ?? null,
    loadAverageAtStart: round(os.loadavg()),
  };
}

/** Wraps `run`'s result with the run's metadata. */
export async function document<R>(command: string, version: string, run: () => Promise<R>): Promise<BenchDocument<R>> {
  const machine = await describeMachine();
  const started = Date.now();
  const result = await run();
  const finished = Date.now();
  machine.loadAverageAtEnd = os.loadavg().map((v) => Math.round(v * 100) / 100);
  const commit = gitCommit();
  return {
    tool: 'miniflannel bench',
    command,
    miniflannel: commit ? `${version} (${commit})` : version,
    startedAt: new Date(started).toISOString(),
    finishedAt: new Date(finished).toISOString(),
    durationSeconds: Math.round((finished - started) / 100) / 10,
    machine,
    result,
  };
}

export async function writeJson(file: string, value: unknown): Promise<void> {
  await writeFile(file, `${JSON.stringify(value, null, 2)}\n`);
}
