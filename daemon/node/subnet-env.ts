/**
 * subnet.env: flannel's hand-off file. Tooling (flannel's CNI plugin,
 * scripts, operators) reads FLANNEL_NETWORK, FLANNEL_SUBNET, FLANNEL_MTU and
 * FLANNEL_IPMASQ from it, and FLANNEL_IPV6_NETWORK and FLANNEL_IPV6_SUBNET
 * when the network config enables IPv6 (an IPv6-only node writes no
 * FLANNEL_NETWORK or FLANNEL_SUBNET, as flannel does); miniflanneld reads its
 * previous FLANNEL_SUBNET back on restart to ask for the same subnet (the
 * IPv6 one is paired with it, so it comes back with it), or in an IPv6-only
 * network its FLANNEL_IPV6_SUBNET.
 */
import { readFile } from 'node:fs/promises';
import { formatCidr, formatIPv4, parseCidr, type Cidr } from '../net/ipv4.js';
import { formatCidr6, formatIPv6, parseCidr6, type Cidr6 } from '../net/ipv6.js';
import { writeFileAtomic } from './cni.js';

export interface SubnetEnv {
  /** The IPv4 cluster network and this node's subnet; absent in an IPv6-only network. */
  ipv4?: { network: Cidr; subnet: Cidr };
  /** The IPv6 cluster network and this node's IPv6 subnet; absent unless the network config enables IPv6. */
  ipv6?: { network: Cidr6; subnet: Cidr6 };
  mtu: number;
  ipMasq: boolean;
}

export function formatSubnetEnv(env: SubnetEnv): string {
  // As flannel: a subnet is written as its first host address (the bridge's) with the prefix length.
  const lines: string[] = [];
  if (env.ipv4) {
    const { network, subnet } = env.ipv4;
    lines.push(`FLANNEL_NETWORK=${formatCidr(network)}`, `FLANNEL_SUBNET=${formatIPv4(subnet.network + 1)}/${subnet.prefixLength}`);
  }
  if (env.ipv6) {
    const { network, subnet } = env.ipv6;
    // A subnet leaves at least one host bit, which is zero in its network address, so adding one never carries.
    const [w0, w1, w2, w3] = subnet.network;
    lines.push(`FLANNEL_IPV6_NETWORK=${formatCidr6(network)}`, `FLANNEL_IPV6_SUBNET=${formatIPv6([w0, w1, w2, w3 + 1])}/${subnet.prefixLength}`);
  }
  lines.push(`FLANNEL_MTU=${env.mtu}`, `FLANNEL_IPMASQ=${env.ipMasq}`, '');
  return lines.join('\n');
}

export function writeSubnetEnv(file: string, env: SubnetEnv): Promise<void> {
  return writeFileAtomic(file, formatSubnetEnv(env));
}

/**
 * The subnet a previous run recorded, if the file exists and says one: its
 * FLANNEL_SUBNET, or its FLANNEL_IPV6_SUBNET when it has none (an IPv6-only
 * node's). Anything else means none.
 */
export async function readPreviousSubnet(file: string): Promise<Cidr | Cidr6 | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    return undefined;
  }
  const ipv4 = /^FLANNEL_SUBNET=(\S+)$/m.exec(text)?.[1];
  const ipv6 = /^FLANNEL_IPV6_SUBNET=(\S+)$/m.exec(text)?.[1];
  try {
    if (ipv4) return parseCidr(ipv4, { allowHostBits: true });
    if (ipv6) return parseCidr6(ipv6, { allowHostBits: true });
  } catch {
    // A damaged file: start afresh.
  }
  return undefined;
}
