/**
 * The underlay: the node's real interface, whose address peers send to and
 * whose MTU bounds every datagram.
 */
import { networkInterfaces } from 'node:os';
import { readFile } from 'node:fs/promises';
import type { TransportFamily, UnderlayFamily } from '../transport/index.js';

/** IPv4 + UDP headers that wrap every overlay packet on the wire. */
export const ENCAPSULATION_OVERHEAD = 28;
/** The same over an IPv6 underlay: its header is 40 bytes. */
export const ENCAPSULATION_OVERHEAD_IPV6 = 48;

export interface Underlay {
  iface: string;
  /**
   * The IPv4 address published as the lease's PublicIP. Absent only on an
   * IPv6 underlay whose interface has none (and no --public-ip): the node's
   * lease then belongs to its PublicIPv6.
   */
  address?: string;
  /** What datagrams travel over: one family, or both. */
  family: TransportFamily;
  /** The addresses the transport binds and peers send to, by family: `address`, the IPv6 one, or both. */
  bindAddresses: Partial<Record<UnderlayFamily, string>>;
  mtu: number;
}

/** The headers around each overlay packet on this underlay: a dual one may carry any packet over IPv6. */
export function encapsulationOverhead(underlay: Pick<Underlay, 'family'>): number {
  return underlay.family === 4 ? ENCAPSULATION_OVERHEAD : ENCAPSULATION_OVERHEAD_IPV6;
}

export class UnderlayError extends Error {
  override name = 'UnderlayError';
}

/** The interface holding the default route, as flannel picks when --iface is not given. */
async function defaultRouteInterface(): Promise<string> {
  const routes = await readFile('/proc/net/route', 'utf8');
  for (const line of routes.split('\n').slice(1)) {
    const [iface, destination] = line.split('\t');
    if (iface && destination === '00000000') return iface;
  }
  throw new UnderlayError('no default route to pick an underlay interface from; pass --iface or --public-ip');
}

function interfaceWithAddress(address: string): string | undefined {
  for (const [name, addresses] of Object.entries(networkInterfaces())) {
    if (addresses?.some((a) => a.address === address)) return name;
  }
  return undefined;
}

async function interfaceMtu(iface: string): Promise<number> {
  return Number((await readFile(`/sys/class/net/${iface}/mtu`, 'utf8')).trim());
}

/**
 * Resolves the underlay from --iface and --public-ip: either may be given;
 * with neither, the default route's interface. The public IP may belong to
 * another interface (behind NAT, say) only when --iface names the interface.
 */
export async function resolveUnderlay(options: { iface?: string; publicIp?: string; publicIpv6?: string; underlay?: TransportFamily }): Promise<Underlay> {
  const family = options.underlay ?? 4;
  // An IPv6 underlay's interface is the one that holds --public-ipv6: its MTU bounds the datagrams.
  const named = family === 6 ? options.publicIpv6 : options.publicIp;
  const iface = options.iface ?? (named ? interfaceWithAddress(named) : undefined) ?? (await defaultRouteInterface());
  const addresses = networkInterfaces()[iface];
  if (!addresses) throw new UnderlayError(`underlay interface ${iface} does not exist; check --iface`);
  const address = options.publicIp ?? addresses.find((a) => a.family === 'IPv4' && !a.internal)?.address;
  if (!address && family !== 6) throw new UnderlayError(`underlay interface ${iface} has no IPv4 address; pass --public-ip${family === 'dual' ? ', or use --underlay ipv6' : ''}`);
  let mtu = await interfaceMtu(iface);
  // A dual underlay's IPv6 address may sit on another interface: the narrower of the two bounds every datagram.
  const iface6 = family === 'dual' && options.iface === undefined ? interfaceWithAddress(options.publicIpv6!) : undefined;
  if (iface6 !== undefined && iface6 !== iface) mtu = Math.min(mtu, await interfaceMtu(iface6));
  const bindAddresses = {
    ...(family !== 6 ? { 4: address! } : {}),
    ...(family !== 4 ? { 6: options.publicIpv6! } : {}),
  };
  return { iface, ...(address ? { address } : {}), family, bindAddresses, mtu };
}
