// What a benchmark needs before it starts, checked up front so a run never
// fails minutes in: root, the tools it runs, enough file descriptors.
import { constants } from 'node:fs';
import { access, readFile } from 'node:fs/promises';
import path from 'node:path';
import { runForOutcome } from '../exec.js';

/** Something the benchmark needs is missing; the message says what to install or change. */
export class PrerequisiteError extends Error {
  override readonly name = 'PrerequisiteError';
}

/** The absolute path of `binary` on PATH, or undefined: what the benchmark would run. */
export async function which(binary: string): Promise<string | undefined> {
  const dirs = (process.env['PATH'] ?? '').split(':').filter((d) => d !== '');
  for (const dir of dirs) {
    const candidate = path.join(dir, binary);
    try {
      await access(candidate, constants.X_OK);
      return candidate;
    } catch {
      // not here
    }
  }
  return undefined;
}

export function requireRoot(command: string): void {
  if (process.getuid?.() !== 0) {
    throw new PrerequisiteError(`${command} needs root to build network namespaces; run it with sudo`);
  }
}

export async function requireBinaries(command: string, needs: ReadonlyArray<{ binary: string; pkg: string }>): Promise<void> {
  for (const { binary, pkg } of needs) {
    if ((await which(binary)) === undefined) throw new PrerequisiteError(`${command} needs ${binary}, which is not on PATH; install it (apt-get install ${pkg})`);
  }
}

/** The soft limit on open files of this process, from /proc/self/limits. */
export async function openFileLimit(): Promise<number> {
  const text = await readFile('/proc/self/limits', 'utf8').catch(() => '');
  const match = /^Max open files\s+(\d+|unlimited)/m.exec(text);
  if (match === null || match[1] === 'unlimited') return Number.POSITIVE_INFINITY;
  return Number(match[1]);
}

/** The first line `binary --version` prints, or undefined when it is not installed. */
export async function versionOf(binary: string, args = ['--version']): Promise<string | undefined> {
  if ((await which(binary)) === undefined) return undefined;
  const out = await runForOutcome([binary, ...args]);
  const line = `${out.stdout}\n${out.stderr}`.split('\n').find((l) => l.trim() !== '');
  return line?.trim();
}
