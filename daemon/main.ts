#!/usr/bin/env node
import { CommanderError } from 'commander';
import { pino } from 'pino';
import { parseDaemonFlags, UsageError } from './flags.js';
import { startNode } from './node/node.js';

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
  const logger = pino({ level: config.logLevel, base: { component: 'miniflanneld' } });
  let node;
  try {
    node = await startNode(config, logger);
  } catch (err) {
    logger.fatal({ err }, 'start-up failed');
    fail((err as Error).message, 1);
  }
  const shutdown = async (signal: string) => {
    logger.info({ signal }, 'shutting down');
    await node.stop();
    process.exit(0);
  };
  process.once('SIGTERM', () => void shutdown('SIGTERM'));
  process.once('SIGINT', () => void shutdown('SIGINT'));
}

void main();
