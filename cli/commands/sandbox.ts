import { Command, InvalidArgumentError, Option } from 'commander';
import { examples, positiveInteger } from '../conventions.js';
import { loadLab } from '../lab.js';

function nodeCount(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 2 || n > 50) throw new InvalidArgumentError('expected 2 to 50 nodes');
  return n;
}

const sandboxLab = () => loadLab('sandbox', 'miniflannel sandbox');

export function sandboxCommand(): Command {
  const sandbox = new Command('sandbox').description('a local miniflannel cluster in network namespaces (needs root)');
  sandbox
    .command('up')
    .description('build nodes with pods, show traffic between pods on different nodes, and keep running until Ctrl-C')
    .addOption(new Option('--nodes <n>', 'number of nodes').default(3).argParser(nodeCount))
    .option('--exit', 'tear down right after the demonstration instead of waiting for Ctrl-C')
    .option('--detach', 'keep running in the background once ready; stop it with `sandbox down`')
    .option('--prometheus', "also run Prometheus (Debian's prometheus) scraping every daemon, with deploy/prometheus/rules.yaml")
    .addHelpText('after', examples('sudo miniflannel sandbox up --nodes 3', 'sudo miniflannel sandbox up --detach && sudo miniflannel sandbox status', 'sudo miniflannel sandbox up --prometheus'))
    .action(async (opts: { nodes: number; exit?: boolean; detach?: boolean; prometheus?: boolean }) => {
      const lab = await sandboxLab();
      await (opts.detach && !opts.exit ? lab.upDetached(opts) : lab.up(opts));
    });
  sandbox
    .command('status')
    .description('list running sandboxes, their nodes and whether each daemon is ready')
    .addHelpText('after', examples('sudo miniflannel sandbox status --json'))
    .action(async (_opts, command: Command) => (await sandboxLab()).status(command.optsWithGlobals<{ json?: boolean }>().json === true));
  sandbox
    .command('down')
    .description('tear down the running sandboxes, and namespaces left by crashed runs')
    .addOption(new Option('--pid <pid>', 'only the sandbox of this `sandbox up` process').argParser(positiveInteger))
    .addHelpText('after', examples('sudo miniflannel sandbox down', 'sudo miniflannel sandbox down --pid 4242'))
    .action(async (opts: { pid?: number }) => (await sandboxLab()).down(opts.pid));
  return sandbox;
}
