// A static-mode cluster for tests that play the part of other nodes: the
// first nodes run the real miniflanneld (one transport each) with a pod;
// the rest run nothing. "Peer" players are listed as static peers of every
// daemon, so a process bound to a player's underlay address:8285 speaks as
// a known node; "stranger" players are known to nobody.
//
//   node i: underlay 198.18.0.i, subnet 10.244.i.0/24
import assert from 'node:assert/strict';
import { cniConflist } from '../../daemon/node/cni.js';
import type { Pod, Sandbox, SandboxNode } from '../../lab/cluster.js';
import { HEALTHZ_PORT, startDaemon, type RunningDaemon } from '../../lab/daemon.js';
import { createTestSandbox, destroyTestSandbox } from './namespaces.js';

export const NETWORK = '10.244.0.0/16';
export const TUN_MTU = 1500 - 28;
export const OVERLAY_PORT = 8285;
export const subnetOf = (node: SandboxNode) => `10.244.${node.index}.0/24`;
export const statusUrlOf = (node: SandboxNode) => `http://${node.underlayIp}:${HEALTHZ_PORT}/status`;

export interface StaticCluster {
  readonly sandbox: Sandbox;
  /** One per entry of `transports`, in order, on nodes 1, 2, … */
  readonly daemons: RunningDaemon[];
  /** One pod per daemon node, in the same order. */
  readonly pods: Pod[];
  /** Nodes every daemon knows as peers; nothing runs on them. */
  readonly peers: SandboxNode[];
  /** Nodes no daemon knows. */
  readonly strangers: SandboxNode[];
  /** Stops the daemons and deletes every namespace; asserts nothing is left behind. */
  destroy(): Promise<void>;
}

export async function staticCluster(spec: { transports: Array<'mmsg' | 'dgram'>; peers: number; strangers: number }): Promise<StaticCluster> {
  const sandbox = await createTestSandbox(spec.transports.length + spec.peers + spec.strangers);
  const nodes = sandbox.nodes;
  const daemonNodes = nodes.slice(0, spec.transports.length);
  const peers = nodes.slice(spec.transports.length, spec.transports.length + spec.peers);
  const strangers = nodes.slice(spec.transports.length + spec.peers);
  const daemons: RunningDaemon[] = [];
  const pods: Pod[] = [];
  const cluster: StaticCluster = {
    sandbox,
    daemons,
    pods,
    peers,
    strangers,
    destroy: async () => {
      for (const daemon of daemons) await daemon.stop();
      await destroyTestSandbox(sandbox);
      for (const daemon of daemons) assert.notEqual(daemon.process.exitCode ?? daemon.process.signalCode, null, 'daemon still running');
    },
  };
  try {
    for (const [i, node] of daemonNodes.entries()) {
      const known = [...daemonNodes, ...peers].filter((n) => n !== node);
      daemons.push(
        await startDaemon(node, [
          '--iface', 'eth0',
          '--transport', spec.transports[i]!,
          '--static-network', NETWORK,
          '--static-subnet', subnetOf(node),
          ...known.flatMap((n) => ['--static-peer', `${subnetOf(n)}=${n.underlayIp}`]),
        ]),
      );
      const conflist = cniConflist({ ipv4: { subnet: subnetOf(node), network: NETWORK }, mtu: TUN_MTU, ipamDataDir: `${node.workDir}/ipam` });
      pods.push(await sandbox.addPod(node, conflist as never));
    }
  } catch (err) {
    await cluster.destroy().catch(() => undefined);
    throw err;
  }
  return cluster;
}
