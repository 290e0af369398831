/**
 * The CNI network config this node's pods get: the standard `bridge` plugin
 * with `host-local` addresses from this node's subnet (and from its IPv6
 * subnet, when the network config enables IPv6: one range per family, so
 * each pod gets one address of each; an IPv6-only node has the IPv6 range
 * only), then `portmap`. With it, kubelet
 * gives pods addresses with no CNI plugin of miniflannel's own.
 */
import { rename, writeFile, mkdir } from 'node:fs/promises';
import path from 'node:path';

export const CNI_VERSION = '1.0.0';
export const CNI_CONFLIST_NAME = '10-miniflannel.conflist';

export interface CniNetwork {
  /**
   * This node's subnet, e.g. 10.244.3.0/24, and the whole cluster network,
   * e.g. 10.244.0.0/16, which pods get a route to; absent in an IPv6-only network.
   */
  ipv4?: { subnet: string; network: string };
  /** This node's IPv6 subnet and the IPv6 cluster network; absent unless the network config enables IPv6. */
  ipv6?: { subnet: string; network: string };
  /** Pod interface MTU: the TUN's, so pod packets fit the overlay. */
  mtu: number;
  /** Linux bridge the pods hang off. */
  bridge?: string;
  /** Where host-local records assigned addresses; its own default when unset. */
  ipamDataDir?: string;
}

export function cniConflist(net: CniNetwork): Record<string, unknown> {
  const families = [net.ipv4, net.ipv6].filter((family) => family !== undefined);
  return {
    cniVersion: CNI_VERSION,
    name: 'miniflannel',
    plugins: [
      {
        type: 'bridge',
        bridge: net.bridge ?? 'cni0',
        isGateway: true,
        isDefaultGateway: true,
        // The node masquerades (--ip-masq) with rules that spare the cluster network;
        // the bridge plugin's own masquerading would also hide pod addresses from peers.
        ipMasq: false,
        hairpinMode: true,
        mtu: net.mtu,
        ipam: {
          type: 'host-local',
          ranges: families.map(({ subnet }) => [{ subnet }]),
          routes: families.map(({ network }) => ({ dst: network })),
          ...(net.ipamDataDir ? { dataDir: net.ipamDataDir } : {}),
        },
      },
      { type: 'portmap', capabilities: { portMappings: true } },
    ],
  };
}

/** Writes the file through a temporary name and a rename, so kubelet never reads half of it. */
export async function writeFileAtomic(file: string, contents: string): Promise<void> {
  await mkdir(path.dirname(file), { recursive: true });
  const temporary = `${file}.${process.pid}.tmp`;
  await writeFile(temporary, contents, { mode: 0o644 });
  await rename(temporary, file);
}
