/**
 * Kernel routing for the overlay, through iproute2: the whole cluster
 * network goes into the TUN; the node's own subnet stays on the pod bridge
 * (a longer prefix, so it wins).
 */
import { execFile } from 'node:child_process';
import { writeFile } from 'node:fs/promises';
import { promisify } from 'node:util';

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

/**
 * ICMP errors the data plane writes into the TUN come from the TUN's own
 * address; without accept_local the kernel drops them as martians.
 */
export async function acceptLocalSource(device: string): Promise<void> {
  await writeFile(`/proc/sys/net/ipv4/conf/${device}/accept_local`, '1');
}
