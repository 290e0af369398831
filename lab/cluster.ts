/**
 * A sandbox cluster in network namespaces, for tests, benchmarks and the
 * `miniflannel sandbox` command:
 *
 *          underlay namespace: bridge br0, 198.18.0.254/24 (Redis lives here)
 *            |                 |                 |
 *   node n1 eth0       node n2 eth0       node n3 eth0      198.18.0.1, .2, .3 /24
 *     cni0 bridge        cni0 bridge        cni0 bridge     pods attached by the CNI bridge plugin
 *      pod p1 ...         pod p1 ...         pod p1 ...
 *
 * Addresses come from 198.18.0.0/15, the benchmarking range, and exist only
 * inside the namespaces; nothing is added to the root namespace. With
 * `underlay6`, the underlay also carries IPv6 from 2001:2::/64 (RFC 5180's
 * benchmarking range): 2001:2::fe on br0, 2001:2::1, ::2, ... on the nodes.
 */
import { mkdir, rm } from 'node:fs/promises';
import path from 'node:path';
import { createInterface } from 'node:readline';
import type { ChildProcess } from 'node:child_process';
import { Netns, runPrefix } from './netns.js';
import { cniAdd, cniDel, type CniRuntime } from './cni.js';
import { exited, stopProcess } from './exec.js';
import { redisServerArgs } from './redis.js';

export const UNDERLAY_SUBNET = '198.18.0.0/24';
export const UNDERLAY_GATEWAY = '198.18.0.254';
export const UNDERLAY6_GATEWAY = '2001:2::fe';
/** Where the sandbox's Redis listens: on the underlay, as a cluster's would, reachable before pod networking. */
export const SANDBOX_REDIS_URL = `redis://${UNDERLAY_GATEWAY}:6379`;
/** The same server over the IPv6 underlay (sandboxes with `underlay6`). */
export const SANDBOX_REDIS_URL6 = `redis://[${UNDERLAY6_GATEWAY}]:6379`;

export interface SandboxOptions {
  /** Workspace for host-local IPAM state, configs and logs; removed on destroy. */
  workDir: string;
  /** Namespace name prefix; defaults to this process's run prefix. */
  prefix?: string;
  /** MTU of the underlay links. */
  underlayMtu?: number;
  /** Also give the underlay IPv6 addresses. */
  underlay6?: boolean;
}

export interface SandboxNode {
  readonly index: number;
  readonly ns: Netns;
  /** Underlay address, e.g. 198.18.0.1. */
  readonly underlayIp: string;
  /** IPv6 underlay address, e.g. 2001:2::1, with `underlay6`. */
  readonly underlayIp6: string | undefined;
  readonly workDir: string;
  readonly pods: Pod[];
}

export interface Pod {
  readonly ns: Netns;
  readonly node: SandboxNode;
  /** The pod's IPv4 address, without prefix length; its IPv6 address in an IPv6-only network. */
  readonly ip: string;
  /** The pod's IPv6 address, without prefix length, when the conflist gives it one (dual-stack). */
  readonly ip6: string | undefined;
  readonly conflist: Parameters<typeof cniAdd>[0];
  readonly runtime: CniRuntime;
}

export class Sandbox {
  readonly nodes: SandboxNode[] = [];
  private readonly prefix: string;
  private readonly underlayMtu: number;
  private redis: ChildProcess | undefined;

  private constructor(
    readonly underlay: Netns,
    readonly options: SandboxOptions,
  ) {
    this.prefix = options.prefix ?? runPrefix();
    this.underlayMtu = options.underlayMtu ?? 1500;
  }

  static async create(options: SandboxOptions): Promise<Sandbox> {
    const prefix = options.prefix ?? runPrefix();
    await mkdir(options.workDir, { recursive: true });
    const underlay = await Netns.create(`${prefix}ul`);
    const sandbox = new Sandbox(underlay, options);
    try {
      await underlay.ip('link', 'add', 'br0', 'type', 'bridge');
      await underlay.ip('link', 'set', 'br0', 'mtu', String(sandbox.underlayMtu), 'up');
      await underlay.ip('addr', 'add', `${UNDERLAY_GATEWAY}/24`, 'dev', 'br0');
      // nodad: nothing else on this link can hold the address, and DAD would leave it unusable for a second.
      if (options.underlay6) await underlay.ip('-6', 'addr', 'add', `${UNDERLAY6_GATEWAY}/64`, 'dev', 'br0', 'nodad');
    } catch (err) {
      await sandbox.destroy();
      throw err;
    }
    return sandbox;
  }

  /**
   * Starts redis-server in the underlay namespace on SANDBOX_REDIS_URL, with
   * its files in the workspace. Resolves once it accepts connections.
   */
  async startRedis(options: { persistence?: boolean } = { persistence: true }): Promise<void> {
    const dir = path.join(this.options.workDir, 'redis');
    await mkdir(dir, { recursive: true });
    // The AOF fsynced every second, as deployments run it (deploy/redis).
    // With an IPv6 underlay it listens on both families, so nodes without IPv4 reach it too (SANDBOX_REDIS_URL6).
    const bind6 = this.options.underlay6 ? ['--bind', UNDERLAY_GATEWAY, UNDERLAY6_GATEWAY] : [];
    const redis = this.underlay.spawn(['redis-server', ...redisServerArgs({ host: UNDERLAY_GATEWAY, port: 6379, dir, persistence: options.persistence, fsync: 'everysec', args: bind6 })]);
    this.redis = redis;
    await new Promise<void>((resolve, reject) => {
      const lines = createInterface({ input: redis.stdout! });
      lines.on('line', (line) => line.includes('Ready to accept connections') && resolve());
      void exited(redis).then((code) => reject(new Error(`redis-server in ${this.underlay.name} exited with ${code}`)));
    });
  }

  /** Stops the sandbox's Redis (by its pid); startRedis() brings it back with the same files. */
  async stopRedis(): Promise<void> {
    if (this.redis) await stopProcess(this.redis);
    this.redis = undefined;
  }

  /** Adds a node namespace wired to the underlay bridge. */
  async addNode(): Promise<SandboxNode> {
    const index = this.nodes.length + 1;
    const name = `${this.prefix}n${index}`;
    const ns = await Netns.create(name);
    const node: SandboxNode = {
      index,
      ns,
      underlayIp: `198.18.0.${index}`,
      underlayIp6: this.options.underlay6 ? `2001:2::${index.toString(16)}` : undefined,
      workDir: path.join(this.options.workDir, `n${index}`),
      pods: [],
    };
    this.nodes.push(node);
    await mkdir(node.workDir, { recursive: true });
    const port = `n${index}`;
    await this.underlay.ip('link', 'add', port, 'mtu', String(this.underlayMtu), 'type', 'veth', 'peer', 'name', 'eth0', 'netns', name);
    await this.underlay.ip('link', 'set', port, 'master', 'br0', 'up');
    await ns.ip('link', 'set', 'eth0', 'mtu', String(this.underlayMtu), 'up');
    await ns.ip('addr', 'add', `${node.underlayIp}/24`, 'dev', 'eth0');
    if (node.underlayIp6) await ns.ip('-6', 'addr', 'add', `${node.underlayIp6}/64`, 'dev', 'eth0', 'nodad');
    return node;
  }

  /** Creates a pod namespace on `node` and networks it by calling the CNI plugins with `conflist`, as kubelet does. */
  async addPod(node: SandboxNode, conflist: Pod['conflist']): Promise<Pod> {
    const ns = await Netns.create(`${node.ns.name}p${node.pods.length + 1}`);
    // The plugins act on the namespace they run in: the node's, where the bridge goes.
    const runtime: CniRuntime = { containerId: ns.name, netns: ns.path, ifName: 'eth0', launcher: ['ip', 'netns', 'exec', node.ns.name] };
    try {
      const result = await cniAdd(conflist, runtime);
      const addresses = (result.ips ?? []).map((entry) => entry.address.split('/')[0]!);
      const ip6 = addresses.find((address) => address.includes(':'));
      const ip = addresses.find((address) => !address.includes(':')) ?? ip6;
      if (!ip) throw new Error(`CNI ADD for ${ns.name} returned no address: ${JSON.stringify(result)}`);
      const pod: Pod = { ns, node, ip, ip6, conflist, runtime };
      node.pods.push(pod);
      return pod;
    } catch (err) {
      await ns.destroy();
      throw err;
    }
  }

  async removePod(pod: Pod): Promise<void> {
    await cniDel(pod.conflist, pod.runtime).catch(() => undefined);
    await pod.ns.destroy();
    pod.node.pods.splice(pod.node.pods.indexOf(pod), 1);
  }

  /** Deletes every namespace of the sandbox and its workspace; safe to call twice. */
  async destroy(): Promise<void> {
    await this.stopRedis();
    for (const node of this.nodes) {
      for (const pod of node.pods) await pod.ns.destroy();
      await node.ns.destroy();
    }
    this.nodes.length = 0;
    await this.underlay.destroy();
    await rm(this.options.workDir, { recursive: true, force: true });
  }
}
