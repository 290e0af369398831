import { Command, InvalidArgumentError, Option } from 'commander';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { removeStaleNamespaces, runPrefix } from '../sandbox/netns.js';
import { SANDBOX_REDIS_URL } from '../sandbox/cluster.js';
import { cliIn, HEALTHZ_PORT } from '../sandbox/daemon.js';
import { leaseOverlay } from '../sandbox/overlays.js';

function nodeCount(value: string): number {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 2 || n > 50) throw new InvalidArgumentError('expected 2 to 50 nodes');
  return n;
}

export function sandboxCommand(): Command {
  const sandbox = new Command('sandbox').description('a local miniflannel cluster in network namespaces (needs root)');
  sandbox
    .command('up')
    .description('build nodes with pods, show traffic between pods on different nodes, and keep running until Ctrl-C')
    .addOption(new Option('--nodes <n>', 'number of nodes').default(3).argParser(nodeCount))
    .option('--exit', 'tear down right after the demonstration instead of waiting for Ctrl-C')
    .addHelpText('after', '\nExample:\n  sudo miniflannel sandbox up --nodes 3')
    .action(async (opts: { nodes: number; exit?: boolean }) => {
      const say = (line: string) => process.stdout.write(`${line}\n`);
      await removeStaleNamespaces();
      const workDir = await mkdtemp(path.join(tmpdir(), 'miniflannel-sandbox-'));
      say(`building ${opts.nodes} nodes on the 198.18.0.0/24 underlay with Redis at ${SANDBOX_REDIS_URL},`);
      say('setting the network config with `miniflannel config init`, then one miniflanneld and one pod per node ...');
      const overlay = await leaseOverlay({ workDir, prefix: `${runPrefix()}sb`, nodes: opts.nodes });
      let stopping = false;
      const teardown = async () => {
        if (stopping) return;
        stopping = true;
        say('\ntearing down the sandbox ...');
        await overlay.destroy();
        say('done: namespaces, devices and daemons are gone');
      };
      try {
        say('');
        for (const pod of overlay.pods) {
          const status = await overlay.daemons[pod.node.index - 1]!.status();
          say(`  node ${pod.node.ns.name}  underlay ${pod.node.underlayIp}  subnet ${status.lease.subnet}  pod ${pod.ip}`);
        }
        say('\npod-to-pod traffic across nodes (ping through miniflannel):');
        for (const from of overlay.pods) {
          for (const to of overlay.pods) {
            if (from === to) continue;
            const out = await from.ns.exec(['ping', '-c', '1', '-W', '2', to.ip]);
            const rtt = /time=([\d.]+ ms)/.exec(out)?.[1] ?? '?';
            say(`  ${from.ip} -> ${to.ip}  ok  ${rtt}`);
          }
        }
        say('\nminiflannel lease list:');
        say((await cliIn(overlay.sandbox.underlay, ['lease', 'list', '--redis-url', SANDBOX_REDIS_URL])).trimEnd().replace(/^/gm, '  '));
        const first = overlay.daemons[0]!;
        const cli = `ip netns exec ${overlay.sandbox.underlay.name} ${process.argv[1]}`;
        say('\nwhere to look next:');
        say(`  metrics: ip netns exec ${first.node.ns.name} curl -s http://${first.node.underlayIp}:${HEALTHZ_PORT}/metrics`);
        say(`  status:  ip netns exec ${first.node.ns.name} ${process.argv[1]} status --daemon http://${first.node.underlayIp}:${HEALTHZ_PORT}`);
        say(`  leases:  ${cli} lease list --watch --redis-url ${SANDBOX_REDIS_URL}`);
        say(`  logs:    ${overlay.daemons.map((d) => d.logFile).join('\n           ')}`);
        say(`  a pod:   ip netns exec ${overlay.pods[0]!.ns.name} ping ${overlay.pods[1]!.ip}`);
      } catch (err) {
        await teardown();
        throw err;
      }
      if (opts.exit) return teardown();
      say('\nrunning; press Ctrl-C to tear down');
      await new Promise<void>((resolve) => {
        for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => void teardown().then(resolve));
      });
    });
  return sandbox;
}
