// SIGTERM must end miniflanneld promptly whatever became of the process that
// reads its stdout: gone (a pipe with no reader) or stalled (a full pipe).
// The daemon runs in the root namespace, waiting at start-up for a Redis that
// never answers: the one state with no devices, and one in which it logs
// every failed attempt and aborts on SIGTERM.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { ChildProcess } from 'node:child_process';
import { waitFor } from '../../lab/daemon.js';
import { exited, start, stopProcess } from '../../lab/exec.js';
import { openFifo } from '../harness/fifo.js';
import { daemonBin } from '../../lab/paths.js';
import { freePort } from '../../lab/redis.js';

/** A hung daemon never exits; a healthy one exits in milliseconds. */
const PROMPT_EXIT_MS = 3000;

async function daemonCommand(healthzPort: number): Promise<string[]> {
  // A port that was just free: nothing answers there, so the daemon keeps retrying, logging each attempt.
  const redisUrl = `redis://127.0.0.1:${await freePort()}`;
  return [process.execPath, daemonBin, '--redis-url', redisUrl, '--iface', 'lo', '--public-ip', '127.0.0.1', '--healthz-ip', '127.0.0.1', '--healthz-port', String(healthzPort)];
}

/** GETs a path of the daemon's HTTP endpoint; a daemon whose event loop is held answers never, so the wait is bounded. */
function get(healthzPort: number, path: string): Promise<Response> {
  return fetch(`http://127.0.0.1:${healthzPort}${path}`, { signal: AbortSignal.timeout(1000) });
}

async function droppedLogLines(healthzPort: number): Promise<number | undefined> {
  const body = await (await get(healthzPort, '/metrics')).text();
  const match = /^miniflannel_log_lines_dropped_total (\d+)$/m.exec(body);
  return match ? Number(match[1]) : undefined;
}

/** Sends SIGTERM; resolves with the exit code, or 'hung' if the daemon outlives PROMPT_EXIT_MS. */
async function terminate(child: ChildProcess): Promise<number | null | 'hung'> {
  child.kill('SIGTERM');
  let timer: NodeJS.Timeout | undefined;
  const deadline = new Promise<'hung'>((resolve) => (timer = setTimeout(() => resolve('hung'), PROMPT_EXIT_MS)));
  try {
    return await Promise.race([exited(child), deadline]);
  } finally {
    clearTimeout(timer);
  }
}

function stderrOf(child: ChildProcess): () => string {
  let text = '';
  child.stderr?.on('data', (chunk: Buffer) => (text = `${text}${chunk}`.slice(-2000)));
  return () => text;
}

test('SIGTERM ends the daemon promptly after the reader of its stdout has gone', { timeout: 10_000 }, async () => {
  const healthzPort = await freePort();
  const child = start(await daemonCommand(healthzPort));
  const stderr = stderrOf(child);
  try {
    await once(child.stdout!, 'data', { signal: AbortSignal.timeout(3000) });
    // The test is the reader; with its end closed, every write the daemon makes fails with EPIPE.
    child.stdout!.destroy();
    await waitFor('the daemon to log, and drop, a line after its stdout reader went away', async () => ((await droppedLogLines(healthzPort)) ?? 0) > 0, 5000);
    assert.equal(await terminate(child), 0, `stderr: ${stderr()}`);
  } finally {
    await stopProcess(child, 1000);
  }
});

test('a stalled reader of its stdout neither blocks the daemon nor keeps SIGTERM from ending it', { timeout: 10_000 }, async () => {
  const fifo = openFifo();
  const healthzPort = await freePort();
  // A blocking write end, as a supervisor's pipe would be: the daemon has to make it non-blocking itself.
  const stdout = fifo.openWriter();
  fifo.fill();
  const child = start(await daemonCommand(healthzPort), { stdio: ['ignore', stdout, 'pipe'] });
  const stderr = stderrOf(child);
  try {
    // /healthz answers only if no log write holds the event loop.
    await waitFor('/healthz to answer while stdout is full', async () => {
      if (child.exitCode !== null) throw new Error(`the daemon exited with ${child.exitCode}: ${stderr()}`);
      return (await get(healthzPort, '/healthz').catch(() => undefined))?.status === 200;
    }, 5000);
    const dropped = await droppedLogLines(healthzPort);
    assert.equal(await terminate(child), 0, `stderr: ${stderr()}`);
    assert.ok(dropped !== undefined && dropped > 0, `dropped log lines: ${dropped}`);
  } finally {
    await stopProcess(child, 1000);
    fifo.close();
  }
});
