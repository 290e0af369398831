// Runs inside a test namespace (iptables acts on the namespace of the
// process that runs it) and prints one JSON line for
// node-files.system.test.ts to check. The nat tables are read back with
// `iptables -S`, so the check does not trust the code it checks.
import { execFileSync } from 'node:child_process';
import { installMasquerade, MASQUERADE_IPV4, MASQUERADE_IPV6, masqueradeInstalled, removeMasquerade, type MasqueradeFamily } from '../../daemon/node/masquerade.js';

const SCOPE4 = { network: '10.98.0.0/16', subnet: '10.98.3.0/24' };
const SCOPE6 = { network: 'fd00:98::/48', subnet: 'fd00:98:0:3::/64' };

/** The nat table's rules of one family, without the built-in chains' policies. */
const natRules = ({ tool }: MasqueradeFamily) =>
  execFileSync(tool, ['-w', '5', '-t', 'nat', '-S'])
    .toString()
    .split('\n')
    .filter((line) => line !== '' && !line.startsWith('-P '));

async function both(): Promise<Record<string, unknown>> {
  const state = async () => ({ ipv4: natRules(MASQUERADE_IPV4), ipv6: natRules(MASQUERADE_IPV6), installed: [await masqueradeInstalled(MASQUERADE_IPV4), await masqueradeInstalled(MASQUERADE_IPV6)] });
  const before = await state();
  await installMasquerade(MASQUERADE_IPV4, SCOPE4);
  await installMasquerade(MASQUERADE_IPV6, SCOPE6);
  const installed = await state();
  // A restart installs again, over what the previous run left.
  await installMasquerade(MASQUERADE_IPV6, SCOPE6);
  const again = await state();
  await removeMasquerade(MASQUERADE_IPV6);
  const ipv6Removed = await state();
  await removeMasquerade(MASQUERADE_IPV6);
  await removeMasquerade(MASQUERADE_IPV4);
  const removed = await state();
  return { before, installed, again, ipv6Removed, removed };
}

process.stdout.write(`${JSON.stringify(await both())}\n`);
