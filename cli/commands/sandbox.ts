import { Command, InvalidArgumentError, Option } from 'commander';
import { mkdtemp } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { removeStaleNamespaces, runPrefix } from '../sandbox/netns.js';
import { miniflannelOverlay, subnetOf } from '../sandbox/overlays.js';

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
      say(`building ${opts.nodes} nodes on the 198.18.0.0/24 underlay, one miniflanneld and one pod each ...`);
      const overlay = await miniflannelOverlay({ workDir, prefix: `${runPrefix()}sb`, nodes: opts.nodes });
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
          say(`  node ${pod.node.ns.name}  underlay ${pod.node.underlayIp}  subnet ${subnetOf(pod.node)}  pod ${pod.ip}  log ${overlay.daemons[pod.node.index - 1]!.logFile}`);
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
        say('\nwhere to look next:');
        const first = overlay.daemons[0]!;
        say(`  status:  ip netns exec ${first.node.ns.name} curl -s http://${first.node.underlayIp}:8286/status`);
        say(`  logs:    ${first.logFile}`);
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
