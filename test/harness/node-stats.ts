// Figures the kernel keeps about a namespace and a process: the SNMP
// counters of /proc/net/snmp (per namespace, shared with the bench), a UDP
// socket's queue, and a process's resident memory.
import { readFile } from 'node:fs/promises';
import type { Netns } from '../../lab/netns.js';

export { snmp } from '../../lab/snmp.js';

export interface UdpSocketState {
  /** Bytes waiting in the receive queue. */
  rxQueue: number;
  /** Datagrams the socket dropped (a full buffer), since it was opened. */
  drops: number;
}

/** The state of the UDP socket bound to `port` in `ns` (from /proc/net/udp), if there is one. */
export async function udpSocket(ns: Netns, port: number): Promise<UdpSocketState | undefined> {
  const rows = (await ns.exec(['cat', '/proc/net/udp'])).trim().split('\n').slice(1);
  for (const row of rows) {
    const fields = row.trim().split(/\s+/);
    const [, local, , , queues] = fields;
    if (Number.parseInt(local!.split(':')[1]!, 16) !== port) continue;
    return { rxQueue: Number.parseInt(queues!.split(':')[1]!, 16), drops: Number(fields[fields.length - 1]) };
  }
  return undefined;
}

/** Resident and peak resident memory of a process, in bytes. */
export async function memoryOf(pid: number): Promise<{ rss: number; peak: number }> {
  const status = await readFile(`/proc/${pid}/status`, 'utf8');
  const kib = (field: string) => Number(new RegExp(`^${field}:\\s+(\\d+) kB`, 'm').exec(status)?.[1] ?? Number.NaN) * 1024;
  return { rss: kib('VmRSS'), peak: kib('VmHWM') };
}

export const mib = (bytes: number) => `${(bytes / (1024 * 1024)).toFixed(1)} MiB`;

/** Packets an interface in `ns` dropped on the way out (a full queue) and on the way in. */
export async function linkDrops(ns: Netns, device: string): Promise<{ tx: number; rx: number }> {
  const [link] = JSON.parse(await ns.exec(['ip', '-s', '-j', 'link', 'show', device])) as Array<{ stats64: { tx: { dropped: number }; rx: { dropped: number } } }>;
  return { tx: link!.stats64.tx.dropped, rx: link!.stats64.rx.dropped };
}
