/**
 * Kernel routing for the overlay, through iproute2: the whole cluster
 * network goes into the TUN; the node's own subnet stays on the pod bridge
 * (a longer prefix, so it wins).
 */
import { execFile } from 'node:child_process';
import { access } from 'node:fs/promises';
import { promisify } from 'node:util';
import { loadNative } from '../native.js';

const execFileAsync = promisify(execFile);

export class RouteError extends Error {
  override name = 'RouteError';
}

async function ip(...args: string[]): Promise<void> {
  try {
    await execFileAsync('ip', args);
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr?.trim();
    throw new RouteError(`\`ip ${args.join(' ')}\` failed: ${stderr || (err as Error).message}`, { cause: err });
  }
}

/** Routes `network` (CIDR) into `device`; replaces any earlier route, so a restart is idempotent. */
export function routeNetworkInto(network: string, device: string): Promise<void> {
  return ip('route', 'replace', network, 'dev', device);
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
  loadNative().setIPv4DevConf(device, DEVCONF_ACCEPT_LOCAL, 1);
}

/** Whether a TUN device of this name exists (sysfs shows tun_flags only for TUN/TAP devices). */
export async function tunDeviceExists(device: string): Promise<boolean> {
  return access(`/sys/class/net/${device}/tun_flags`).then(
    () => true,
    () => false,
  );
}

/** Deletes a TUN device; the kernel drops the routes through it. */
export function deleteTunDevice(device: string): Promise<void> {
  return ip('link', 'delete', device);
}
