// The bench results as people read them: aligned tables on stdout.
import type { Output } from '../output.js';
import type { ControlPlaneResult } from './control-plane.js';
import type { E2eResult, UdpMedians } from './e2e.js';
import type { EncapFigure } from './encap.js';

const fixed = (value: number, digits: number) => (Number.isFinite(value) ? value.toFixed(digits) : 'n/a');
const gbit = (bps: number) => `${fixed(bps / 1e9, 2)} Gbit/s`;
const kpps = (udp: UdpMedians) => `${fixed(udp.deliveredPps / 1000, 1)} kpps, ${fixed(udp.lossPercent, 1)} % lost`;
const micros = (us: number) => `${fixed(us, 0)} µs`;
const ratio = (r: number) => `${fixed(r, 2)}×`;
const added = (us: number) => `${us >= 0 ? '+' : ''}${fixed(us, 0)} µs`;

export function e2eReport(out: Output, result: E2eResult): string {
  const o = result.options;
  const lines: string[] = [];
  lines.push(`pod-to-pod, medians of ${o.repeats} round(s); iperf3 runs of ${o.seconds} s; ${o.pings} pings ${o.pingIntervalMs} ms apart`);
  lines.push(`UDP offered on every path: ${fixed(o.udpOfferedPps['1400'] / 1000, 0)} kpps at 1400 B, ${fixed(o.udpOfferedPps['64'] / 1000, 0)} kpps at 64 B (${o.udpRate})`);
  lines.push('');
  lines.push(
    out.table(
      ['path', 'TCP 1 stream', 'TCP 4 streams', 'UDP 1400 B delivered', 'UDP 64 B delivered', 'RTT p50', 'RTT p99', 'CPU per GB'],
      result.paths.map((p) => [
        { text: p.name, style: p.name === 'miniflannel' ? 'bold' : 'cyan' },
        gbit(p.median.tcp1StreamBitsPerSecond),
        gbit(p.median.tcp4StreamsBitsPerSecond),
        kpps(p.median.udp1400),
        kpps(p.median.udp64),
        micros(p.median.rttP50Micros),
        micros(p.median.rttP99Micros),
        p.median.cpuSecondsPerGB === null ? 'n/a (kernel)' : `${fixed(p.median.cpuSecondsPerGB, 2)} s`,
      ]),
    ),
  );
  lines.push('');
  const rows = result.paths.flatMap((p) =>
    p.comparisons.map((c) => [
      `${p.name} vs ${c.reference}`,
      ratio(c.tcp1Stream),
      ratio(c.tcp4Streams),
      ratio(c.udp1400DeliveredPps),
      ratio(c.udp64DeliveredPps),
      added(c.rttP50AddedMicros),
      added(c.rttP99AddedMicros),
      c.cpuPerGB === null ? 'n/a' : ratio(c.cpuPerGB),
    ]),
  );
  lines.push(out.table(['ratio', 'TCP 1', 'TCP 4', 'UDP 1400 B', 'UDP 64 B', 'RTT p50 added', 'RTT p99 added', 'CPU per GB'], rows));
  const sent = result.paths.map((p) => `${p.name} ${fixed(p.median.udp1400.sentPps / 1000, 0)}/${fixed(p.median.udp64.sentPps / 1000, 0)}`).join(', ');
  lines.push('');
  lines.push(`UDP kpps the sender managed (1400 B / 64 B): ${sent}`);
  const atReceiver = result.paths.map((p) => `${p.name} ${fixed(p.median.udp1400.droppedAtReceiverPercent, 1)}/${fixed(p.median.udp64.droppedAtReceiverPercent, 1)}`).join(', ');
  lines.push(`UDP % of the loss dropped at the receiving pod's socket, not on the path (1400 B / 64 B): ${atReceiver}`);
  for (const s of result.skipped) lines.push(`${s.name}: skipped, ${s.reason}`);
  return lines.join('\n');
}

export function encapReport(out: Output, figures: readonly EncapFigure[], repeats: number): string {
  return [
    `hot path in process (egress checks, peer lookup, framing, ingress checks), median of ${repeats} repeat(s)`,
    '',
    out.table(
      ['packet', 'peers', 'Mpps', 'Gbit/s', 'repeats (Mpps)'],
      figures.map((f) => [
        `${f.packetBytes} B`,
        String(f.peers),
        fixed(f.packetsPerSecond / 1e6, 2),
        fixed(f.bitsPerSecond / 1e9, 2),
        f.repeatsPacketsPerSecond.map((r) => fixed(r / 1e6, 2)).join(', '),
      ]),
    ),
  ].join('\n');
}

export function controlPlaneReport(out: Output, r: ControlPlaneResult): string {
  const ms = (d: { p50: number; p99: number; max: number; samples: number }) => `p50 ${fixed(d.p50, 1)} ms, p99 ${fixed(d.p99, 1)} ms, max ${fixed(d.max, 1)} ms (${d.samples} samples)`;
  const byCommand = Object.entries(r.commandsPerNodePerHourByCommand)
    .sort((a, b) => b[1] - a[1])
    .map(([command, n]) => `${command} ${fixed(n, 0)}`)
    .join(', ');
  return [
    `${r.options.nodes} simulated daemons against one redis-server ${r.redis.version} on loopback`,
    '',
    out.fields([
      ['all leases acquired', `${fixed(r.acquireAllSeconds, 2)} s (all ${r.options.nodes} started at once)`],
      ['all watches running', `${fixed(r.allWatchingSeconds, 2)} s from starting them, once every lease was held`],
      ['watch convergence', `${ms(r.convergenceMillis)}: from a lease change until all ${r.options.nodes} watchers saw it`],
      ['watch delivery', `${ms(r.deliveryMillis)}: per watcher`],
      ['missed deliveries', String(r.missedDeliveries)],
      ['steady state', `${fixed(r.requestsPerNodePerHour, 0)} Redis requests per node per hour; ${fixed(r.commandsPerNodePerHour, 0)} commands with those the scripts run (${byCommand || 'none'})`],
      ['redis', `${r.redisClients} clients, ${fixed(r.redisUsedMemoryBytes / 2 ** 20, 1)} MiB used`],
    ]),
  ].join('\n');
}
