// A sandbox cluster in lease mode, as the integration tests build it: the
// network config stored through the CLI, then each node's daemon started
// with the DaemonSet's flags and a pod made from the conflist it wrote.
import { writeFile } from 'node:fs/promises';
import path from 'node:path';
import { SANDBOX_REDIS_URL, type Pod, type Sandbox, type SandboxNode } from '../../lab/cluster.js';
import { cliIn, startDaemon, writtenConflist, type RunningDaemon } from '../../lab/daemon.js';
import { destroyTestSandbox } from './namespaces.js';

/** Stores `netConf` (net-conf.json as an operator writes it) with `miniflannel config set`, from the underlay. */
export async function storeNetworkConfig(sandbox: Sandbox, netConf: object): Promise<void> {
  const file = path.join(sandbox.options.workDir, 'net-conf.json');
  await writeFile(file, JSON.stringify(netConf));
  await cliIn(sandbox.underlay, ['config', 'set', '--file', file, '--redis-url', SANDBOX_REDIS_URL]);
}

/** Starts `node`'s daemon with `args` and, once it is ready, a pod networked by the conflist it wrote. */
export async function joinNode(sandbox: Sandbox, node: SandboxNode, args: string[], options: { healthzIp?: string } = {}): Promise<{ daemon: RunningDaemon; pod: Pod }> {
  const daemon = await startDaemon(node, args, options);
  return { daemon, pod: await sandbox.addPod(node, await writtenConflist(node)) };
}

/** Stops the daemons, then destroys the sandbox (if it was made) and checks nothing is left: a test file's `after`. */
export async function tearDown(sandbox: Sandbox | undefined, daemons: readonly RunningDaemon[]): Promise<void> {
  for (const daemon of daemons) await daemon.stop();
  if (sandbox) await destroyTestSandbox(sandbox);
}
