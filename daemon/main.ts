#!/usr/bin/env node
import { CommanderError } from 'commander';
import { pino } from 'pino';
import { parseDaemonFlags } from './flags.js';
import { stdoutLogDestination } from './log-destination.js';
import { startNode } from './node/node.js';
import { UsageError } from './usage.js';

function fail(message: string, code: number): never {
  process.stderr.write(`miniflanneld: ${message}\n`);
  process.exit(code);
}

async function main(): Promise<void> {
  let config;
  try {
    config = parseDaemonFlags(process.argv);
  } catch (err) {
    if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? 0 : 2);
    if (err instanceof UsageError) fail(err.message, 2);
    throw err;
  }
  // Not pino's default destination: its exit hook retries a failed flush
  // forever, so a daemon whose stdout reader stalled, then died, could not
  // exit. This one drops what it cannot write at once, and registers no exit
  // hook.
  const logDestination = stdoutLogDestination();
  const logger = pino({ level: config.logLevel, base: { component: 'miniflanneld' } }, logDestination);
  // Until the node is up, a signal aborts start-up (which may be waiting for Redis).
  const starting = new AbortController();
  const abortStart = (signal: NodeJS.Signals) => starting.abort(signal);
  process.once('SIGTERM', abortStart);
  process.once('SIGINT', abortStart);
  let node;
  try {
    node = await startNode(config, logger, { signal: starting.signal, logLinesDropped: () => logDestination.droppedLines });
  } catch (err) {
    if (starting.signal.aborted) {
      logger.info({ reason: starting.signal.reason }, 'start-up aborted');
      process.exit(0);
    }
    logger.fatal({ err }, 'start-up failed');
    fail((err as Error).message, 1);
  }
  process.off('SIGTERM', abortStart);
  process.off('SIGINT', abortStart);

  const shutdown = async (reason: string, code: number) => {
    if (code === 0) logger.info({ reason }, 'shutting down; the lease is kept');
    else logger.fatal({ reason }, 'stopping');
    await node.stop();
    process.exit(code);
  };
  process.once('SIGTERM', () => void shutdown('SIGTERM', 0));
  process.once('SIGINT', () => void shutdown('SIGINT', 0));
  void node.failed.then((reason) => shutdown(reason, 1));
}

void main();
