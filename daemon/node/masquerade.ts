/**
 * --ip-masq: the NAT rules flannel installs, in a chain of miniflannel's own
 * so that they can be replaced and removed as a unit:
 *   pod -> pod (inside the cluster network)           RETURN: never masqueraded
 *   pod -> outside the cluster network (not multicast) MASQUERADE
 *   outside -> this node's pods                        RETURN
 *   outside -> other nodes' pods                       MASQUERADE
 * The same four rules go into ip6tables for the IPv6 cluster network when
 * the network config enables IPv6; each family has its own nat table, so
 * the chain has the same name in both.
 * Installing is idempotent: the chain is flushed and refilled, and the jump
 * from POSTROUTING is added only when missing.
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);
export const MASQ_CHAIN = 'MINIFLANNEL-POSTRTG';
const COMMENT = ['-m', 'comment', '--comment', 'miniflannel masq'];

/** An address family's rule tool, and its multicast block, which is never masqueraded. */
export interface MasqueradeFamily {
  readonly tool: 'iptables' | 'ip6tables';
  readonly multicast: string;
}

export const MASQUERADE_IPV4: MasqueradeFamily = { tool: 'iptables', multicast: '224.0.0.0/4' };
export const MASQUERADE_IPV6: MasqueradeFamily = { tool: 'ip6tables', multicast: 'ff00::/8' };

/** The blocks the rules name, as CIDR text of the family: the cluster network and this node's subnet in it. */
export interface MasqueradeScope {
  readonly network: string;
  readonly subnet: string;
}

export class MasqueradeError extends Error {
  override name = 'MasqueradeError';
}

async function nat({ tool }: MasqueradeFamily, ...args: string[]): Promise<void> {
  try {
    // -w: wait for the xtables lock that kube-proxy and others also take.
    await execFileAsync(tool, ['-w', '5', '-t', 'nat', ...args]);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') {
      throw new MasqueradeError(`--ip-masq needs ${tool}, which is not installed (Debian's iptables package has both tools); install it, or run without --ip-masq`, { cause: err });
    }
    const stderr = (err as { stderr?: string }).stderr?.trim();
    throw new MasqueradeError(`\`${tool} -t nat ${args.join(' ')}\` failed: ${stderr || (err as Error).message}`, { cause: err });
  }
}

async function succeeds(family: MasqueradeFamily, ...args: string[]): Promise<boolean> {
  return nat(family, ...args).then(
    () => true,
    () => false,
  );
}

export function masqueradeRules(family: MasqueradeFamily, { network, subnet }: MasqueradeScope): string[][] {
  return [
    ['-s', network, '-d', network, ...COMMENT, '-j', 'RETURN'],
    ['-s', network, '!', '-d', family.multicast, ...COMMENT, '-j', 'MASQUERADE', '--random-fully'],
    ['!', '-s', network, '-d', subnet, ...COMMENT, '-j', 'RETURN'],
    ['!', '-s', network, '-d', network, ...COMMENT, '-j', 'MASQUERADE', '--random-fully'],
  ];
}

export async function installMasquerade(family: MasqueradeFamily, scope: MasqueradeScope): Promise<void> {
  if (!(await succeeds(family, '-L', MASQ_CHAIN, '-n'))) await nat(family, '-N', MASQ_CHAIN);
  await nat(family, '-F', MASQ_CHAIN);
  for (const rule of masqueradeRules(family, scope)) await nat(family, '-A', MASQ_CHAIN, ...rule);
  const jump = ['POSTROUTING', ...COMMENT, '-j', MASQ_CHAIN];
  if (!(await succeeds(family, '-C', ...jump))) await nat(family, '-A', ...jump);
}

/** Whether the chain or a jump to it exists (a crashed run leaves both). */
export async function masqueradeInstalled(family: MasqueradeFamily): Promise<boolean> {
  return (await succeeds(family, '-L', MASQ_CHAIN, '-n')) || (await succeeds(family, '-C', 'POSTROUTING', ...COMMENT, '-j', MASQ_CHAIN));
}

/** Removes the jump and the chain; missing pieces are not an error (a second stop, or a crash before install). */
export async function removeMasquerade(family: MasqueradeFamily): Promise<void> {
  while (await succeeds(family, '-D', 'POSTROUTING', ...COMMENT, '-j', MASQ_CHAIN));
  if (await succeeds(family, '-L', MASQ_CHAIN, '-n')) {
    await nat(family, '-F', MASQ_CHAIN);
    await nat(family, '-X', MASQ_CHAIN);
  }
}
