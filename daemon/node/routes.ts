/**
 * Kernel routing for the overlay, over rtnetlink (native/netlink.h): the
 * whole cluster network goes into the TUN, and so does the IPv6 cluster
 * network when the network config enables IPv6; the node's own subnets stay
 * on the pod bridge (longer prefixes, so they win).
 */
import { access } from 'node:fs/promises';
import { loadNative } from '../native.js';
import type { Cidr } from '../net/ipv4.js';
import { formatIPv6, type Cidr6, type IPv6Address } from '../net/ipv6.js';

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
