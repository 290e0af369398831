/**
 * --ip-masq: the NAT rules flannel installs, in a chain of miniflannel's own
 * so that they can be replaced and removed as a unit:
 *   pod -> pod (inside the cluster network)           RETURN: never masqueraded
 *   pod -> outside the cluster network (not multicast) MASQUERADE
 *   outside -> this node's pods                        RETURN
 *   outside -> other nodes' pods                       MASQUERADE
 * Installing is idempotent: the chain is flushed and refilled, and the jump
 * from POSTROUTING is added only when missing.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';
import { formatCidr, type Cidr } from '../net/ipv4.js';

const execFileAsync = promisify(execFile);
export const MASQ_CHAIN = 'MINIFLANNEL-POSTRTG';
const COMMENT = ['-m', 'comment', '--comment', 'miniflannel masq'];

export class MasqueradeError extends Error {
  override name = 'MasqueradeError';
}

async function iptables(...args: string[]): Promise<void> {
  try {
    // -w: wait for the xtables lock that kube-proxy and others also take.
    await execFileAsync('iptables', ['-w', '5', '-t', 'nat', ...args]);
  } catch (err) {
    const stderr = (err as { stderr?: string }).stderr?.trim();
    throw new MasqueradeError(`\`iptables -t nat ${args.join(' ')}\` failed: ${stderr || (err as Error).message}`, { cause: err });
  }
}

async function succeeds(...args: string[]): Promise<boolean> {
  return iptables(...args).then(
    () => true,
    () => false,
  );
}

export function masqueradeRules(network: Cidr, subnet: Cidr): string[][] {
  const net = formatCidr(network);
  return [
    ['-s', net, '-d', net, ...COMMENT, '-j', 'RETURN'],
    ['-s', net, '!', '-d', '224.0.0.0/4', ...COMMENT, '-j', 'MASQUERADE', '--random-fully'],
    ['!', '-s', net, '-d', formatCidr(subnet), ...COMMENT, '-j', 'RETURN'],
    ['!', '-s', net, '-d', net, ...COMMENT, '-j', 'MASQUERADE', '--random-fully'],
  ];
}

export async function installMasquerade(network: Cidr, subnet: Cidr): Promise<void> {
  if (!(await succeeds('-L', MASQ_CHAIN, '-n'))) await iptables('-N', MASQ_CHAIN);
  await iptables('-F', MASQ_CHAIN);
  for (const rule of masqueradeRules(network, subnet)) await iptables('-A', MASQ_CHAIN, ...rule);
  const jump = ['POSTROUTING', ...COMMENT, '-j', MASQ_CHAIN];
  if (!(await succeeds('-C', ...jump))) await iptables('-A', ...jump);
}

/** Whether the chain or a jump to it exists (a crashed run leaves both). */
export async function masqueradeInstalled(): Promise<boolean> {
  return (await succeeds('-L', MASQ_CHAIN, '-n')) || (await succeeds('-C', 'POSTROUTING', ...COMMENT, '-j', MASQ_CHAIN));
}

/** Removes the jump and the chain; missing pieces are not an error (a second stop, or a crash before install). */
export async function removeMasquerade(): Promise<void> {
  while (await succeeds('-D', 'POSTROUTING', ...COMMENT, '-j', MASQ_CHAIN));
  if (await succeeds('-L', MASQ_CHAIN, '-n')) {
    await iptables('-F', MASQ_CHAIN);
    await iptables('-X', MASQ_CHAIN);
  }
}
