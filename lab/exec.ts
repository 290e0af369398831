// Running iproute2 and friends: a failure throws one line naming the
// command and what it printed, which is what a person debugging needs.
import { execFile, spawn, type ChildProcess, type SpawnOptions } from 'node:child_process';

export class CommandError extends Error {
  override name = 'CommandError';
  constructor(
    readonly command: readonly string[],
    readonly exitCode: number | null,
    readonly stderr: string,
    options?: ErrorOptions,
  ) {
    super(`\`${command.join(' ')}\` failed (exit ${exitCode}): ${stderr.trim().split('\n').pop() ?? ''}`, options);
  }
}

export interface RunOptions {
  input?: string;
  env?: NodeJS.ProcessEnv;
  timeoutMs?: number;
}

export function run(command: readonly string[], options: RunOptions = {}): Promise<string> {
  const [file, ...args] = command;
  return new Promise((resolve, reject) => {
    const child = execFile(
      file!,
      args,
      { env: options.env ?? process.env, timeout: options.timeoutMs ?? 60_000, maxBuffer: 64 * 1024 * 1024 },
      (err, stdout, stderr) => {
        if (err) {
          const code = typeof err.code === 'number' ? err.code : null;
          reject(new CommandError(command, code, stderr || stdout || err.message, { cause: err }));
        } else {
          resolve(stdout);
        }
      },
    );
    if (options.input !== undefined) child.stdin?.end(options.input);
  });
}

export interface Outcome {
  exitCode: number;
  stdout: string;
  stderr: string;
}

/** Runs a command that is expected to fail sometimes; returns what it printed either way. */
export function runForOutcome(command: readonly string[], options: RunOptions = {}): Promise<Outcome> {
  const [file, ...args] = command;
  return new Promise((resolve) => {
    const child = execFile(file!, args, { env: options.env ?? process.env, timeout: options.timeoutMs ?? 60_000 }, (err, stdout, stderr) => {
      const exitCode = err ? (typeof err.code === 'number' ? err.code : -1) : 0;
      resolve({ exitCode, stdout, stderr });
    });
    if (options.input !== undefined) child.stdin?.end(options.input);
  });
}

export function start(command: readonly string[], options: SpawnOptions = {}): ChildProcess {
  const [file, ...args] = command;
  return spawn(file!, args, { stdio: ['ignore', 'pipe', 'pipe'], ...options });
}

/** Resolves when the process has exited (at once if it already has). */
export function exited(child: ChildProcess): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return Promise.resolve(child.exitCode);
  return new Promise((resolve) => child.once('exit', (code) => resolve(code)));
}

/** Ends a process we started, by its pid: SIGTERM, then SIGKILL after a grace period. */
export async function stopProcess(child: ChildProcess, graceMs = 5000): Promise<number | null> {
  if (child.exitCode !== null || child.signalCode !== null) return child.exitCode;
  child.kill('SIGTERM');
  const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
  try {
    return await exited(child);
  } finally {
    clearTimeout(timer);
  }
}
