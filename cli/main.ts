#!/usr/bin/env node
// The operator CLI. Commands print and throw; this file alone turns a
// failure into one line on stderr and an exit code (cli/errors.ts), and it
// always exits explicitly: a store may leave timers behind (ioredis keeps
// one after a failed Sentinel lookup) that would hold the process open.
import { Command } from 'commander';
import { benchCommand } from './commands/bench.js';
import { completionCommand } from './commands/completion.js';
import { configCommand } from './commands/config.js';
import { doctorCommand } from './commands/doctor.js';
import { leaseCommand } from './commands/lease.js';
import { sandboxCommand } from './commands/sandbox.js';
import { statusCommand } from './commands/status.js';
import { traceCommand } from './commands/trace.js';
import { packageVersion } from '../daemon/version.js';
import { versionCommand } from './commands/version.js';
import { addGlobalOptions, applyConventions, examples } from './conventions.js';
import { describeFailure, EXIT_OK, exitCodeOf } from './errors.js';

const program = addGlobalOptions(new Command('miniflannel'))
  .description('operate a miniflannel overlay: leases, network config, status and benchmarks')
  .version(packageVersion(), '-V, --version', 'print the version (`miniflannel version --json` for more)')
  .addHelpText('after', examples('miniflannel config init --network 10.244.0.0/16', 'miniflannel lease list --redis-url redis://10.0.0.5:6379', 'miniflannel status --daemon http://198.18.0.2:8286'))
  .addCommand(leaseCommand())
  .addCommand(configCommand())
  .addCommand(statusCommand())
  .addCommand(doctorCommand())
  .addCommand(traceCommand())
  .addCommand(versionCommand())
  .addCommand(completionCommand())
  // Their subcommands carry the examples; the groups get them here.
  .addCommand(benchCommand().addHelpText('after', examples('sudo miniflannel bench e2e --repeats 5 --seconds 10')))
  .addCommand(sandboxCommand().addHelpText('after', examples('sudo miniflannel sandbox up --nodes 3')));
applyConventions(program);

// `miniflannel lease list --watch | head` closes the pipe: that is the reader's way of saying "enough".
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code === 'EPIPE') process.exit(EXIT_OK);
});

let code = EXIT_OK;
try {
  await program.parseAsync(process.argv);
} catch (err) {
  code = exitCodeOf(err);
  process.stderr.write(describeFailure(err, program.opts<{ debug?: boolean }>().debug === true));
}
// Written to pipes synchronously on Linux, but let any buffered output drain before exiting.
await new Promise<void>((resolve) => process.stdout.write('', () => resolve()));
process.exit(code);
