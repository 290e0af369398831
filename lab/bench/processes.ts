// The processes a benchmark starts for its measurements (iperf3, ping),
// tracked so that Ctrl-C can end each of them by its pid, and the CPU time
// of the forwarders, read from /proc.
import { readFile } from 'node:fs/promises';
import type { ChildProcess } from 'node:child_process';
import { CommandError, exited, run, type Outcome } from '../exec.js';
import type { Netns } from '../netns.js';

export class MeasurementProcesses {
  private readonly live = new Set<ChildProcess>();

  /** Starts `command` in `ns`; it is tracked until it exits. */
  spawn(ns: Netns, command: readonly string[]): ChildProcess {
    const child = ns.spawn(command);
    this.live.add(child);
    void exited(child).then(() => this.live.delete(child));
    return child;
  }

  /** Runs `command` in `ns` to the end and returns what it printed, whatever its exit code; killed after `timeoutMs`. */
  outcome(ns: Netns, command: readonly string[], timeoutMs: number): Promise<Outcome> {
    const child = this.spawn(ns, command);
    let stdout = '';
    let stderr = '';
    child.stdout!.setEncoding('utf8').on('data', (chunk: string) => (stdout += chunk));
    child.stderr!.setEncoding('utf8').on('data', (chunk: string) => (stderr += chunk));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    return new Promise((resolve, reject) => {
      child.once('error', (err) => reject(new CommandError(command, null, err.message, { cause: err })));
      child.once('close', (code, signal) => {
        clearTimeout(timer);
        resolve({ exitCode: code ?? -1, stdout, stderr: signal === null ? stderr : `${stderr}killed by ${signal} (after ${timeoutMs} ms, or interrupted)` });
      });
    });
  }

  /** Runs `command` in `ns` and returns its stdout; a non-zero exit throws CommandError. */
  async run(ns: Netns, command: readonly string[], timeoutMs: number): Promise<string> {
    const result = await this.outcome(ns, command, timeoutMs);
    if (result.exitCode !== 0) throw new CommandError(command, result.exitCode, result.stderr || result.stdout);
    return result.stdout;
  }

  /** SIGKILL to every tracked process, by pid: for Ctrl-C, when waiting is not an option. */
  killAll(): void {
    for (const child of this.live) child.kill('SIGKILL');
  }
}

let clockTicks: number | undefined;

/** USER_HZ, the unit of utime and stime in /proc/<pid>/stat. */
async function ticksPerSecond(): Promise<number> {
  if (clockTicks === undefined) {
    const text = await run(['getconf', 'CLK_TCK']).catch(() => '100');
    clockTicks = Number(text.trim()) || 100;
  }
  return clockTicks;
}

/**
 * CPU seconds (user + system, all threads) the processes have used so far.
 * `ip netns exec` execs its command, so a forwarder's pid is the forwarder's own.
 */
export async function cpuSeconds(pids: readonly number[]): Promise<number> {
  const hz = await ticksPerSecond();
  let ticks = 0;
  for (const pid of pids) {
    const stat = await readFile(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which may hold spaces, start at field 3 (state); utime and stime are 14 and 15.
    const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    ticks += Number(fields[11]) + Number(fields[12]);
  }
  return ticks / hz;
}
