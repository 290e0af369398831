/**
 * Kernel routing for the overlay, over rtnetlink (native/netlink.h): the
 * whole cluster network goes into the TUN, and so does the IPv6 cluster
 * network when the network config enables IPv6; the node's own subnets stay
 * on the pod bridge (longer prefixes, so they win).
 */
import { readFileSync } from 'node:fs';
import { access } from 'node:fs/promises';
import { loadNative } from '../native.js';
import { formatCidr, type Cidr } from '../net/ipv4.js';
import { formatCidr6, formatIPv6, readIPv6, type Cidr6, type IPv6Address } from '../net/ipv6.js';

/** A route, interface or interface-option change the kernel refused; `code` is its errno name (`EPERM`, `ENODEV`, …). */
export class RouteError extends Error {
  override name = 'RouteError';
  readonly code: string | undefined;

  constructor(message: string, options: { cause: unknown }) {
    super(message, options);
    this.code = (options.cause as NodeJS.ErrnoException).code;
  }
}

/** Runs one netlink change; the native message already names the change, the errno and what to grant. */
function asRouteError(change: () => void): void {
  try {
    change();
  } catch (err) {
    throw new RouteError((err as Error).message, { cause: err });
  }
}

/** Routes `network` into `device`; replaces any earlier route, so a restart is idempotent. */
export function routeNetworkInto(network: Cidr, device: string): void {
  asRouteError(() => loadNative().replaceRoute(device, network.network, network.prefixLength));
}

/** Routes the IPv6 block `network` into `device`; replaces any earlier route, so a restart is idempotent. */
export function routeNetwork6Into(network: Cidr6, device: string): void {
  asRouteError(() => loadNative().replaceRoute6(device, formatIPv6(network.network), network.prefixLength));
}

/** Gives `device` the IPv6 address as a /128, usable at once (no duplicate address detection); giving it again is not an error. */
export function addHostAddress6(device: string, address: IPv6Address): void {
  asRouteError(() => loadNative().addAddress6(device, formatIPv6(address), 128));
}

/** IPV4_DEVCONF_ACCEPT_LOCAL in <linux/ip.h>. */
const DEVCONF_ACCEPT_LOCAL = 23;

/**
 * ICMP errors the data plane writes into the TUN come from the TUN's own
 * address; without accept_local the kernel drops them as martians. Set over
 * rtnetlink because a container that is not privileged sees /proc/sys
 * read-only, while CAP_NET_ADMIN is enough for netlink.
 */
export function acceptLocalSource(device: string): void {
  asRouteError(() => loadNative().setIPv4DevConf(device, DEVCONF_ACCEPT_LOCAL, 1));
}

/** Whether a TUN device of this name exists (sysfs shows tun_flags only for TUN/TAP devices). */
export async function tunDeviceExists(device: string): Promise<boolean> {
  return access(`/sys/class/net/${device}/tun_flags`).then(
    () => true,
    () => false,
  );
}

/** Deletes a TUN device; the kernel drops the routes through it. */
export function deleteTunDevice(device: string): void {
  asRouteError(() => loadNative().deleteLink(device));
}

/** RTF_LOCAL in <linux/ipv6_route.h>: a route to one of the node's own addresses. */
const RTF_LOCAL = 0x80000000;

/**
 * The routes through `device`, as the kernel holds them now, in CIDR text:
 * IPv4 from /proc/net/route (the main table), IPv6 from /proc/net/ipv6_route
 * less the device's own addresses, and the link-local and multicast routes
 * every interface has.
 * What /status shows, so that an operator sees a route someone removed.
 * `readText` is for tests; a file that cannot be read gives no routes.
 */
export function routesThrough(device: string, readText: (file: string) => string = (file) => readFileSync(file, 'utf8')): string[] {
  const read = (file: string) => {
    try {
      return readText(file).split('\n');
    } catch {
      return [];
    }
  };
  const routes: string[] = [];
  for (const line of read('/proc/net/route').slice(1)) {
    const [iface, destination, , , , , , mask] = line.trim().split(/\s+/);
    if (iface !== device || destination === undefined || mask === undefined) continue;
    // Little-endian hex: the first byte of the address is the last pair of digits.
    const network = Buffer.from(destination, 'hex').readUInt32LE(0);
    const prefixLength = [...Buffer.from(mask, 'hex')].reduce((bits, byte) => bits + popcount(byte), 0);
    routes.push(formatCidr({ network, prefixLength }));
  }
  for (const line of read('/proc/net/ipv6_route')) {
    const fields = line.trim().split(/\s+/);
    if (fields.length < 10 || fields[9] !== device) continue;
    const prefixLength = parseInt(fields[1]!, 16);
    const flags = parseInt(fields[8]!, 16);
    const network = readIPv6(Buffer.from(fields[0]!, 'hex'), 0);
    if (flags & RTF_LOCAL || prefixLength === 128 || isMulticastOrLinkLocal(network[0])) continue;
    routes.push(formatCidr6({ network, prefixLength }));
  }
  return routes;
}

/** ff00::/8 and fe80::/10, which the kernel routes through every interface that has IPv6. */
function isMulticastOrLinkLocal(firstWord: number): boolean {
  return firstWord >>> 24 === 0xff || firstWord >>> 22 === 0xfe80 >>> 6;
}

function popcount(byte: number): number {
  let bits = 0;
  for (let b = byte; b !== 0; b >>= 1) bits += b & 1;
  return bits;
}
