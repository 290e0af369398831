/**
 * Pod-to-pod data paths over a sandbox underlay, built side by side so a
 * benchmark can compare them in one run:
 *   - miniflannel: the real miniflanneld on every node, static peers;
 *   - kernel VXLAN: configured exactly as flannel's vxlan backend does it
 *     (flannel.1, VNI 1, port 8472, /32 on the device, onlink routes,
 *     permanent neighbour and FDB entries);
 *   - underlay: pod subnets routed to the peer node's underlay address, no
 *     encapsulation at all (flannel's host-gw backend), the limit of the
 *     topology;
 *   - OpenVPN: one point-to-point openvpn per node, UDP, no TLS, no cipher,
 *     no auth: a user-space C TUN-over-UDP forwarder whose wire format is
 *     flannel's UDP backend's (the bare IP packet in a datagram).
 */
import { createWriteStream } from 'node:fs';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { ChildProcess } from 'node:child_process';
import { cniConflist } from '../daemon/node/cni.js';
import { SANDBOX_REDIS_URL, Sandbox, type Pod, type SandboxNode } from './cluster.js';
import { cliIn, leaseModeArgs, startDaemon, writtenConflist, type RunningDaemon } from './daemon.js';
import { exited, stopProcess } from './exec.js';

export const OVERLAY_NETWORK = '10.244.0.0/16';
export const subnetOf = (node: SandboxNode) => `10.244.${node.index}.0/24`;
/** The IPv6 cluster network of the dual-stack paths; node k's /64 pairs with its IPv4 /24, as the store pairs them. */
export const OVERLAY_NETWORK6 = 'fd00:10:244::/56';
const subnet6Of = (node: SandboxNode) => `fd00:10:244:${node.index.toString(16)}::/64`;

/** A user-space process that carries an overlay's packets on one node. */
export interface Forwarder {
  readonly process: ChildProcess;
  readonly node: SandboxNode;
  readonly logFile: string;
  /** Ends the process by its pid; resolves with its exit code. */
  stop(): Promise<number | null>;
}

export interface Overlay {
  readonly name: string;
  /** The family of the pod addresses measured: a dual-stack path is measured over IPv6. */
  readonly family: 4 | 6;
  readonly sandbox: Sandbox;
  /** One pod per node, in node order. */
  readonly pods: Pod[];
  /** miniflanneld on each node, for the overlays that run it. */
  readonly daemons: RunningDaemon[];
  /** Every user-space forwarder (miniflanneld, openvpn), for CPU accounting; empty when the kernel forwards. */
  readonly forwarders: Forwarder[];
  destroy(): Promise<void>;
}

const isDaemon = (forwarder: Forwarder): forwarder is RunningDaemon => 'status' in forwarder;

async function buildOverlay(
  name: string,
  options: { workDir: string; prefix: string; nodes: number; podMtu: number; family?: 4 | 6 },
  configureNode: (node: SandboxNode, all: SandboxNode[]) => Promise<Forwarder | undefined>,
  prepare: (sandbox: Sandbox) => Promise<void> = async () => undefined,
  conflistFor: (node: SandboxNode) => Promise<unknown> = async (node) =>
    cniConflist({
      ipv4: { subnet: subnetOf(node), network: OVERLAY_NETWORK },
      ...(options.family === 6 ? { ipv6: { subnet: subnet6Of(node), network: OVERLAY_NETWORK6 } } : {}),
      mtu: options.podMtu,
      ipamDataDir: `${node.workDir}/ipam`,
    }),
): Promise<Overlay> {
  const sandbox = await Sandbox.create({ workDir: options.workDir, prefix: options.prefix });
  const daemons: RunningDaemon[] = [];
  const forwarders: Forwarder[] = [];
  const overlay: Overlay = {
    name,
    family: options.family ?? 4,
    sandbox,
    pods: [],
    daemons,
    forwarders,
    destroy: async () => {
      for (const forwarder of forwarders) await forwarder.stop();
      await sandbox.destroy();
    },
  };
  try {
    await prepare(sandbox);
    for (let i = 0; i < options.nodes; i++) await sandbox.addNode();
    for (const node of sandbox.nodes) {
      const forwarder = await configureNode(node, sandbox.nodes);
      if (forwarder) forwarders.push(forwarder);
      if (forwarder && isDaemon(forwarder)) daemons.push(forwarder);
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
export function leaseOverlay(options: { workDir: string; prefix: string; nodes?: number; name?: string; dualStack?: boolean }): Promise<Overlay> {
  const ipv6 = options.dualStack ? ['--ipv6-network', OVERLAY_NETWORK6] : [];
  return buildOverlay(
    options.name ?? 'miniflannel',
    { ...options, nodes: options.nodes ?? 3, podMtu: 1500 - 28, family: options.dualStack ? 6 : 4 },
    (node) => startDaemon(node, leaseModeArgs(node, SANDBOX_REDIS_URL)),
    async (sandbox) => {
      await sandbox.startRedis();
      await cliIn(sandbox.underlay, ['config', 'init', '--network', OVERLAY_NETWORK, ...ipv6, '--redis-url', SANDBOX_REDIS_URL]);
    },
    writtenConflist,
  );
}

export function miniflannelOverlay(options: { workDir: string; prefix: string; nodes?: number; extraArgs?: string[]; podMtu?: number }): Promise<Overlay> {
  return buildOverlay('miniflannel', { ...options, nodes: options.nodes ?? 2, podMtu: options.podMtu ?? 1500 - 28 }, (node, all) =>
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
const vtepAddress6 = (node: SandboxNode) => `fd00:10:244:${node.index.toString(16)}::`;

/**
 * With `dualStack`, the same device also carries IPv6 between the pods, as
 * flannel's vxlan backend does over an IPv4 underlay: the node's IPv6 subnet
 * address on flannel.1, and onlink routes to the peers' IPv6 subnets via
 * their VTEP addresses, whose neighbour entries name the same MACs.
 */
export function vxlanOverlay(options: { workDir: string; prefix: string; nodes?: number; name?: string; dualStack?: boolean }): Promise<Overlay> {
  const family = options.dualStack ? 6 : 4;
  return buildOverlay(options.name ?? 'kernel VXLAN', { ...options, nodes: options.nodes ?? 2, podMtu: 1500 - 50, family }, async (node, all) => {
    const ip = (...args: string[]) => node.ns.ip(...args);
    await ip('link', 'add', 'flannel.1', 'address', vxlanMac(node), 'type', 'vxlan', 'id', '1', 'local', node.underlayIp, 'dev', 'eth0', 'dstport', '8472', 'nolearning');
    await ip('link', 'set', 'flannel.1', 'mtu', '1450', 'up');
    await ip('addr', 'add', `${vtepAddress(node)}/32`, 'dev', 'flannel.1');
    if (family === 6) await ip('-6', 'addr', 'add', `${vtepAddress6(node)}/128`, 'dev', 'flannel.1', 'nodad');
    for (const peer of all.filter((n) => n !== node)) {
      await ip('route', 'add', subnetOf(peer), 'via', vtepAddress(peer), 'dev', 'flannel.1', 'onlink');
      await ip('neigh', 'add', vtepAddress(peer), 'lladdr', vxlanMac(peer), 'dev', 'flannel.1', 'nud', 'permanent');
      if (family === 6) {
        await ip('-6', 'route', 'add', subnet6Of(peer), 'via', vtepAddress6(peer), 'dev', 'flannel.1', 'onlink');
        await ip('-6', 'neigh', 'add', vtepAddress6(peer), 'lladdr', vxlanMac(peer), 'dev', 'flannel.1', 'nud', 'permanent');
      }
      await node.ns.exec(['bridge', 'fdb', 'append', vxlanMac(peer), 'dev', 'flannel.1', 'dst', peer.underlayIp]);
    }
    return undefined;
  });
}

/** Pod subnets routed straight over the underlay, as flannel's host-gw backend does: no encapsulation, full 1500-byte pod MTU. */
export function underlayOverlay(options: { workDir: string; prefix: string; nodes?: number }): Promise<Overlay> {
  return buildOverlay('underlay', { ...options, nodes: options.nodes ?? 2, podMtu: 1500 }, async (node, all) => {
    for (const peer of all.filter((n) => n !== node)) await node.ns.ip('route', 'add', subnetOf(peer), 'via', peer.underlayIp, 'dev', 'eth0');
    return undefined;
  });
}

const OPENVPN_PORT = 1194;
/** The TUN MTU that keeps each datagram within a 1500-byte underlay: 1500 - 20 (IP) - 8 (UDP), as for miniflannel. */
const OPENVPN_TUN_MTU = 1500 - 28;

/**
 * The flags of each openvpn: static point-to-point over UDP without TLS,
 * cipher or auth, so a datagram carries the bare IP packet (checked with
 * tcpdump: a 1472-byte packet makes a 1500-byte datagram). --mssfix 0
 * because the TUN MTU already fits the underlay. The rest is the tuning an
 * operator would give it, so the peer is not handicapped: --fast-io
 * (OpenVPN's advice for UDP on Linux: write without polling first), socket
 * buffers as large as miniflannel's (the kernel doubles the 2 MiB asked for,
 * up to rmem_max/wmem_max), and a TUN queue of 1000 instead of OpenVPN's 100;
 * in trials they cut the retransmits of one TCP stream through it from
 * thousands to about none.
 * The no-TLS mode is deprecated in 2.6 but still supported there.
 */
export function openvpnArgs(node: SandboxNode, peer: SandboxNode): string[] {
  return [
    'openvpn',
    '--dev', 'tun0', '--dev-type', 'tun',
    '--proto', 'udp',
    '--local', node.underlayIp, '--lport', String(OPENVPN_PORT),
    '--remote', peer.underlayIp, '--rport', String(OPENVPN_PORT),
    '--ifconfig', `10.245.0.${node.index}`, `10.245.0.${peer.index}`,
    '--cipher', 'none', '--auth', 'none',
    '--tun-mtu', String(OPENVPN_TUN_MTU), '--mssfix', '0',
    '--fast-io', '--sndbuf', '2097152', '--rcvbuf', '2097152', '--txqueuelen', '1000',
    '--verb', '3',
  ];
}

/**
 * Starts openvpn in the node. `ready` settles once its tunnel is up (which
 * in point-to-point mode waits for the peer's openvpn) and the peer's pod
 * subnet is routed into it.
 */
function startOpenvpn(node: SandboxNode, peer: SandboxNode): { forwarder: Forwarder; ready: Promise<void> } {
  const logFile = path.join(node.workDir, 'openvpn.log');
  const log = createWriteStream(logFile);
  const child = node.ns.spawn(openvpnArgs(node, peer));
  child.stderr?.pipe(log);
  const forwarder: Forwarder = { process: child, node, logFile, stop: () => stopProcess(child) };
  const tunnelUp = new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`openvpn on ${node.ns.name} did not come up within 15 s; log: ${logFile}`)), 15_000);
    const lines = createInterface({ input: child.stdout! });
    lines.on('line', (line) => {
      log.write(`${line}\n`);
      if (line.includes('Initialization Sequence Completed')) {
        clearTimeout(timer);
        resolve();
      }
    });
    void exited(child).then((code) => {
      clearTimeout(timer);
      reject(new Error(`openvpn on ${node.ns.name} exited with ${code}; log: ${logFile}`));
    });
  });
  const ready = tunnelUp.then(async () => {
    await node.ns.ip('route', 'add', subnetOf(peer), 'dev', 'tun0');
  });
  // Awaited once both ends run; until then a failure must not count as unhandled.
  ready.catch(() => undefined);
  return { forwarder, ready };
}

/** Two nodes joined by OpenVPN in UDP mode without crypto: the nearest user-space peer of flannel's UDP backend. */
export async function openvpnOverlay(options: { workDir: string; prefix: string }): Promise<Overlay> {
  const tunnels: Promise<void>[] = [];
  const overlay = await buildOverlay('OpenVPN', { ...options, nodes: 2, podMtu: OPENVPN_TUN_MTU }, async (node, all) => {
    const { forwarder, ready } = startOpenvpn(node, all.find((n) => n !== node)!);
    tunnels.push(ready);
    return forwarder;
  });
  try {
    await Promise.all(tunnels);
  } catch (err) {
    await overlay.destroy();
    throw err;
  }
  return overlay;
}
