// `miniflannel status`: what a running miniflanneld reports on GET /status —
// its node, its lease, its peers, its packet and drop counters, its uptime.
// The document is the daemon's StatusDocument; fields a daemon does not
// report (an older one, or one still starting) are shown as absent rather
// than refused.

import { Command, Option } from 'commander';
import { packetCounters, type PacketCounter } from '../../daemon/dataplane/index.js';
import type { NodeInfo } from '../../daemon/node/status.js';
import { isObject, readStatus, type ReportedStatus } from '../cluster/survey.js';
import { DEFAULT_HEALTH_PORT, examples, outputOf, settingsOf } from '../conventions.js';
import { UsageError } from '../errors.js';
import { humanBytes, humanDuration, isoTime, type Cell, type Output } from '../output.js';

export const DEFAULT_DAEMON_URL = `http://127.0.0.1:${DEFAULT_HEALTH_PORT}`;

function daemonBase(text: string): URL {
  let url: URL;
  try {
    url = new URL(text);
  } catch (cause) {
    throw new UsageError(`--daemon "${text}" is not a URL such as ${DEFAULT_DAEMON_URL}`, { cause });
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:') throw new UsageError(`--daemon "${text}" must be an http:// or https:// URL`);
  return url;
}

function fetchStatus(base: URL, label: string, timeoutMs: number): Promise<ReportedStatus> {
  return readStatus(new URL(`${base.pathname.replace(/\/+$/, '')}/status`, base).href, label, timeoutMs);
}

function text(value: unknown): string {
  return typeof value === 'string' || typeof value === 'number' ? String(value) : '-';
}

function drops(table: Readonly<Record<string, number>> | undefined, direction: string): Array<[string, Cell]> {
  if (!isObject(table)) return [];
  return Object.entries(table)
    .filter(([, n]) => typeof n === 'number' && n > 0)
    .map(([reason, n]) => [`${direction} ${reason}`, { text: String(n), style: 'yellow' }]);
}

function render(out: Output, label: string, doc: ReportedStatus): void {
  const section = (title: string) => out.paint({ text: title, style: 'bold' });
  const node: Partial<NodeInfo> = doc.node ?? {};
  const uptime = typeof doc.uptimeSeconds === 'number' ? humanDuration(doc.uptimeSeconds * 1000) : '-';
  out.line(out.fields([
    ['Daemon', label],
    ['Uptime', uptime],
  ]));

  out.line(section('Node'));
  const tun = node.tun === undefined ? '-' : node.mtu === undefined ? text(node.tun) : `${text(node.tun)} (MTU ${text(node.mtu)})`;
  out.line(out.fields([
    // An older daemon spells it publicIp.
    ['Public IP', text(node.publicIP ?? (node as { publicIp?: string }).publicIp)],
    ['Subnet', text(node.subnet)],
    ['Network', text(node.network)],
    ...(node.ipv6Subnet === undefined ? [] : ([['IPv6 subnet', text(node.ipv6Subnet)], ['IPv6 network', text(node.ipv6Network)]] as const)),
    ['TUN', tun],
  ], '  '));

  const lease = doc.lease;
  if (lease === null) {
    out.line(`${section('Lease')}  none (static subnet, or not acquired yet)`);
  } else if (lease !== undefined) {
    const expiresAt = lease.expiresAt;
    // The daemon's expiry is on the Redis clock; this host's clock is the best guess here.
    const expires: Cell =
      expiresAt === null
        ? { text: 'never (reserved)', style: 'cyan' }
        : typeof expiresAt === 'number'
          ? `${isoTime(expiresAt)} (in ${humanDuration(expiresAt - Date.now())})`
          : '-';
    out.line(section('Lease'));
    out.line(out.fields([
      ['Subnet', text(lease.subnet)],
      ...(lease.ipv6Subnet === undefined ? [] : ([['IPv6 subnet', text(lease.ipv6Subnet)]] as const)),
      ['Public IP', text(lease.publicIP)],
      ...(lease.publicIPv6 === undefined ? [] : ([['Public IPv6', text(lease.publicIPv6)]] as const)),
      ['Node', text(lease.nodeName) || '-'],
      ['Expires', expires],
    ], '  '));
  }

  const store = doc.store;
  if (store) {
    out.line(section('Store'));
    out.line(out.fields([
      ['Address', text(store.address)],
      ['Connected', store.connected === true ? { text: 'yes', style: 'green' } : { text: 'no', style: 'red' }],
    ], '  '));
  }

  const peers = doc.peers ?? [];
  out.line(section(`Peers (${peers.length})`));
  if (peers.length > 0) {
    const table = peers.some((p) => p.ipv6Subnet !== undefined)
      ? out.table(['SUBNET', 'IPV6 SUBNET', 'ENDPOINT'], peers.map((p) => [text(p.subnet), text(p.ipv6Subnet) || '-', text(p.endpoint)]))
      : out.table(['SUBNET', 'ENDPOINT'], peers.map((p) => [text(p.subnet), text(p.endpoint)]));
    out.line(table.replace(/^/gm, '  '));
  }

  const counters = doc.counters;
  if (!counters) {
    out.line(`${section('Counters')}  none (the data plane has not started)`);
    return;
  }
  out.line(section('Counters'));
  const count = ({ key, bytes }: PacketCounter): string => {
    const value = counters[key];
    return bytes && typeof value === 'number' ? `${value} (${humanBytes(value)})` : text(value);
  };
  out.line(out.fields(packetCounters.map((counter) => [counter.title, count(counter)]), '  '));
  const dropped = [...drops(counters.egressDrops, 'egress'), ...drops(counters.ingressDrops, 'ingress')];
  if (dropped.length === 0) {
    out.line(`${section('Drops')}  none`);
  } else {
    out.line(section('Drops'));
    out.line(out.fields(dropped, '  '));
  }
}

/** `--peers`: one row per peer with its traffic, as the daemon counted it since the peer's entry was made. */
function renderPeerTraffic(out: Output, doc: ReportedStatus): void {
  const peers = doc.peers ?? [];
  if (peers.length === 0) return out.line('no peers');
  const now = Date.now();
  const figure = (value: number | undefined, bytes = false): string => (value === undefined ? '-' : bytes ? humanBytes(value) : String(value));
  const heard = (at: number | null | undefined): Cell =>
    at === undefined ? '-' : at === null ? { text: 'never', style: 'yellow' } : `${humanDuration(Math.max(0, now - at))} ago`;
  out.line(
    out.table(
      ['SUBNET', 'NODE', 'ENDPOINT', 'SENT', 'SENT BYTES', 'RECEIVED', 'RECEIVED BYTES', 'DROPS', 'LAST RECEIVED'],
      peers.map(({ subnet, node, endpoint, traffic }) => [
        text(subnet),
        text(node) || '-',
        text(endpoint),
        figure(traffic?.packetsSent),
        figure(traffic?.bytesSent, true),
        figure(traffic?.packetsReceived),
        figure(traffic?.bytesReceived, true),
        traffic !== undefined && traffic.drops > 0 ? { text: String(traffic.drops), style: 'yellow' } : figure(traffic?.drops),
        heard(traffic?.lastReceivedAt),
      ]),
    ),
  );
}

async function status(command: Command, opts: { daemon: string; peers?: boolean }): Promise<void> {
  const out = outputOf(command);
  const base = daemonBase(opts.daemon);
  const doc = await fetchStatus(base, opts.daemon, settingsOf(command).timeoutMs);
  if (opts.peers) {
    if (out.json) return out.document({ daemon: opts.daemon, peers: doc.peers ?? [] });
    return renderPeerTraffic(out, doc);
  }
  if (out.json) return out.document({ daemon: opts.daemon, ...doc });
  render(out, opts.daemon, doc);
}

export function statusCommand(): Command {
  return new Command('status')
    .description("a running miniflanneld's lease, peers, packet and drop counters, and uptime (from its GET /status)")
    .addOption(new Option('--daemon <url>', "the daemon's health/metrics endpoint (miniflanneld --healthz-port)").env('MINIFLANNEL_DAEMON').default(DEFAULT_DAEMON_URL))
    .option('--peers', "each peer's traffic instead: packets and bytes sent and received, drops, when it was last heard from")
    .addHelpText('after', examples('miniflannel status', 'miniflannel status --daemon http://198.18.0.2:8286 --json', 'miniflannel status --daemon http://198.18.0.2:8286 --peers'))
    .action((opts: { daemon: string; peers?: boolean }, command: Command) => status(command, opts));
}
