/**
 * Pod-to-pod data paths over a sandbox underlay, built side by side so a
 * benchmark can compare them in one run:
 *   - miniflannel: the real miniflanneld on every node, static peers;
 *   - kernel VXLAN: configured exactly as flannel's vxlan backend does it
 *     (flannel.1, VNI 1, port 8472, /32 on the device, onlink routes,
 *     permanent neighbour and FDB entries).
 */
import { cniConflist } from '../../daemon/node/cni.js';
import { SANDBOX_REDIS_URL, Sandbox, type Pod, type SandboxNode } from './cluster.js';
import { cliIn, leaseModeArgs, startDaemon, writtenConflist, type RunningDaemon } from './daemon.js';

export const OVERLAY_NETWORK = '10.244.0.0/16';
export const subnetOf = (node: SandboxNode) => `10.244.${node.index}.0/24`;

export interface Overlay {
  readonly name: string;
  readonly sandbox: Sandbox;
  /** One pod per node, in node order. */
  readonly pods: Pod[];
  readonly daemons: RunningDaemon[];
  destroy(): Promise<void>;
}

async function buildOverlay(
  name: string,
  options: { workDir: string; prefix: string; nodes: number; podMtu: number },
  configureNode: (node: SandboxNode, all: SandboxNode[]) => Promise<RunningDaemon | undefined>,
  prepare: (sandbox: Sandbox) => Promise<void> = async () => undefined,
  conflistFor: (node: SandboxNode) => Promise<unknown> = async (node) =>
    cniConflist({ subnet: subnetOf(node), network: OVERLAY_NETWORK, mtu: options.podMtu, ipamDataDir: `${node.workDir}/ipam` }),
): Promise<Overlay> {
  const sandbox = await Sandbox.create({ workDir: options.workDir, prefix: options.prefix });
  const daemons: RunningDaemon[] = [];
  const overlay: Overlay = {
    name,
    sandbox,
    pods: [],
    daemons,
    destroy: async () => {
      for (const daemon of daemons) await daemon.stop();
      await sandbox.destroy();
    },
  };
  try {
    await prepare(sandbox);
    for (let i = 0; i < options.nodes; i++) await sandbox.addNode();
    for (const node of sandbox.nodes) {
      const daemon = await configureNode(node, sandbox.nodes);
      if (daemon) daemons.push(daemon);
      overlay.pods.push(await sandbox.addPod(node, (await conflistFor(node)) as never));
    }
  } catch (err) {
    await overlay.destroy();
    throw err;
  }
  return overlay;
}

/**
 * The cluster as it runs for real: Redis on the underlay, the network config
 * set with the CLI, every daemon leasing its subnet, and pods networked with
 * the conflist each daemon wrote.
 */
export function leaseOverlay(options: { workDir: string; prefix: string; nodes?: number }): Promise<Overlay> {
  return buildOverlay(
    'miniflannel',
    { ...options, nodes: options.nodes ?? 3, podMtu: 1500 - 28 },
    (node) => startDaemon(node, leaseModeArgs(node, SANDBOX_REDIS_URL)),
    async (sandbox) => {
      await sandbox.startRedis();
      await cliIn(sandbox.underlay, ['config', 'init', '--network', OVERLAY_NETWORK, '--redis-url', SANDBOX_REDIS_URL]);
    },
    writtenConflist,
  );
}

export function miniflannelOverlay(options: { workDir: string; prefix: string; nodes?: number; extraArgs?: string[] }): Promise<Overlay> {
  return buildOverlay('miniflannel', { ...options, nodes: options.nodes ?? 2, podMtu: 1500 - 28 }, (node, all) =>
    startDaemon(node, [
      '--iface', 'eth0',
      '--static-network', OVERLAY_NETWORK,
      '--static-subnet', subnetOf(node),
      ...all.filter((n) => n !== node).flatMap((n) => ['--static-peer', `${subnetOf(n)}=${n.underlayIp}`]),
      ...(options.extraArgs ?? []),
    ]),
  );
}

const vxlanMac = (node: SandboxNode) => `02:00:00:00:00:${node.index.toString(16).padStart(2, '0')}`;
const vtepAddress = (node: SandboxNode) => `10.244.${node.index}.0`;

export function vxlanOverlay(options: { workDir: string; prefix: string; nodes?: number }): Promise<Overlay> {
  return buildOverlay('kernel VXLAN', { ...options, nodes: options.nodes ?? 2, podMtu: 1500 - 50 }, async (node, all) => {
    const ip = (...args: string[]) => node.ns.ip(...args);
    await ip('link', 'add', 'flannel.1', 'address', vxlanMac(node), 'type', 'vxlan', 'id', '1', 'local', node.underlayIp, 'dev', 'eth0', 'dstport', '8472', 'nolearning');
    await ip('link', 'set', 'flannel.1', 'mtu', '1450', 'up');
    await ip('addr', 'add', `${vtepAddress(node)}/32`, 'dev', 'flannel.1');
    for (const peer of all.filter((n) => n !== node)) {
      await ip('route', 'add', subnetOf(peer), 'via', vtepAddress(peer), 'dev', 'flannel.1', 'onlink');
      await ip('neigh', 'add', vtepAddress(peer), 'lladdr', vxlanMac(peer), 'dev', 'flannel.1', 'nud', 'permanent');
      await node.ns.exec(['bridge', 'fdb', 'append', vxlanMac(peer), 'dev', 'flannel.1', 'dst', peer.underlayIp]);
    }
    return undefined;
  });
}
