// The SNMP counters the kernel keeps per network namespace (/proc/net/snmp).
import type { Netns } from './netns.js';

/** /proc/net/snmp as read inside `ns`: e.g. snmp.Udp.RcvbufErrors, snmp.Ip.InHdrErrors. */
export async function snmp(ns: Netns): Promise<Record<string, Record<string, number>>> {
  const lines = (await ns.exec(['cat', '/proc/net/snmp'])).trim().split('\n');
  const result: Record<string, Record<string, number>> = {};
  for (let i = 0; i + 1 < lines.length; i += 2) {
    const [group, ...names] = lines[i]!.split(/\s+/);
    const values = lines[i + 1]!.split(/\s+/).slice(1).map(Number);
    result[group!.replace(/:$/, '')] = Object.fromEntries(names.map((name, k) => [name, values[k]!]));
  }
  return result;
}

/** /proc/net/snmp6 as read inside `ns`, one counter per line: e.g. snmp6.Udp6OutDatagrams. */
export async function snmp6(ns: Netns): Promise<Record<string, number>> {
  const lines = (await ns.exec(['cat', '/proc/net/snmp6'])).trim().split('\n');
  return Object.fromEntries(lines.map((line) => line.trim().split(/\s+/)).map(([name, value]) => [name!, Number(value)]));
}
