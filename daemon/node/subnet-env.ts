/**
 * subnet.env: flannel's hand-off file. Tooling (flannel's CNI plugin,
 * scripts, operators) reads FLANNEL_NETWORK, FLANNEL_SUBNET, FLANNEL_MTU and
 * FLANNEL_IPMASQ from it; miniflanneld reads its previous FLANNEL_SUBNET
 * back on restart to ask for the same subnet.
 */
import { readFile } from 'node:fs/promises';
import { formatCidr, formatIPv4, parseCidr, type Cidr } from '../net/ipv4.js';
import { writeFileAtomic } from './cni.js';

export interface SubnetEnv {
  network: Cidr;
  subnet: Cidr;
  mtu: number;
  ipMasq: boolean;
}

export function formatSubnetEnv(env: SubnetEnv): string {
  // As flannel: the subnet is written as its first host address (the bridge's) with the prefix length.
  return [
    `FLANNEL_NETWORK=${formatCidr(env.network)}`,
    `FLANNEL_SUBNET=${formatIPv4(env.subnet.network + 1)}/${env.subnet.prefixLength}`,
    `FLANNEL_MTU=${env.mtu}`,
    `FLANNEL_IPMASQ=${env.ipMasq}`,
    '',
  ].join('\n');
}

export function writeSubnetEnv(file: string, env: SubnetEnv): Promise<void> {
  return writeFileAtomic(file, formatSubnetEnv(env));
}

/** The subnet a previous run recorded, if the file exists and says one; anything else means none. */
export async function readPreviousSubnet(file: string): Promise<Cidr | undefined> {
  let text: string;
  try {
    text = await readFile(file, 'utf8');
  } catch {
    return undefined;
  }
  const value = /^FLANNEL_SUBNET=(\S+)$/m.exec(text)?.[1];
  if (!value) return undefined;
  try {
    return parseCidr(value, { allowHostBits: true });
  } catch {
    return undefined;
  }
}
