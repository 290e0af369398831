#!/usr/bin/env node
import { Command, CommanderError } from 'commander';
import { benchCommand } from './commands/bench.js';
import { sandboxCommand } from './commands/sandbox.js';

const program = new Command('miniflannel')
  .description("operate a miniflannel overlay: leases, network config, status and benchmarks")
  .showHelpAfterError()
  .exitOverride()
  .addCommand(benchCommand())
  .addCommand(sandboxCommand());

try {
  await program.parseAsync(process.argv);
} catch (err) {
  if (err instanceof CommanderError) process.exit(err.exitCode === 0 ? 0 : 2);
  process.stderr.write(`miniflannel: ${(err as Error).message}\n`);
  process.exit(1);
}
