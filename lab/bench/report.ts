// The bench results as people read them: aligned tables on stdout.
import type { Output } from '../../cli/output.js';
import { CONTROL_PLANE_TARGETS, type ControlPlaneResult } from './control-plane.js';
import type { DoctorResult } from './doctor.js';
import { UDP_LOAD_NAMES, UDP_LOADS, type E2eResult, type UdpMedians } from './e2e.js';
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
  const loads = UDP_LOAD_NAMES.map((name) => ({ name, ...UDP_LOADS[name] }));
  lines.push(`pod-to-pod, medians of ${o.repeats} round(s); runs of ${o.seconds} s; ${o.pings} pings ${o.pingIntervalMs} ms apart, and as many beside one TCP stream`);
  lines.push(`UDP offered on every path: ${loads.map((l) => `${l.title} ${fixed(o.udpOfferedPps[l.name] / 1000, 0)} kpps`).join(', ')} by ${o.udpSenderThreads} sending threads (${o.udpRate})`);
  lines.push('');
  lines.push(
    out.table(
      ['path', 'TCP 1 stream', 'TCP 4 streams', ...loads.map((l) => `${l.title} delivered`), 'CPU per GB'],
      result.paths.map((p) => [
        { text: p.name, style: p.name === 'miniflannel' ? 'bold' : 'cyan' },
        gbit(p.median.tcp1StreamBitsPerSecond),
        gbit(p.median.tcp4StreamsBitsPerSecond),
        ...loads.map((l) => kpps(p.median.udp[l.name])),
        p.median.cpuSecondsPerGB === null ? 'n/a (kernel)' : `${fixed(p.median.cpuSecondsPerGB, 2)} s`,
      ]),
    ),
  );
  lines.push('');
  lines.push(
    out.table(
      ['path', 'RTT p50', 'RTT p99', 'under load p50', 'under load p99'],
      result.paths.map((p) => [
        { text: p.name, style: p.name === 'miniflannel' ? 'bold' : 'cyan' },
        micros(p.median.rttP50Micros),
        micros(p.median.rttP99Micros),
        micros(p.median.rttUnderLoadP50Micros),
        micros(p.median.rttUnderLoadP99Micros),
      ]),
    ),
  );
  lines.push('');
  const rows = result.paths.flatMap((p) =>
    p.comparisons.map((c) => [
      `${p.name} vs ${c.reference}`,
      ratio(c.tcp1Stream),
      ratio(c.tcp4Streams),
      ...loads.map((l) => ratio(c.udpDeliveredPps[l.name])),
      added(c.rttP50AddedMicros),
      added(c.rttP99AddedMicros),
      ratio(c.rttUnderLoadP99),
      c.cpuPerGB === null ? 'n/a' : ratio(c.cpuPerGB),
    ]),
  );
  lines.push(out.table(['ratio', 'TCP 1', 'TCP 4', ...loads.map((l) => l.title), 'RTT p50 added', 'RTT p99 added', 'loaded p99', 'CPU per GB'], rows));
  lines.push('');
  for (const l of loads) {
    const sent = result.paths.map((p) => `${p.name} ${fixed(p.median.udp[l.name].sentPps / 1000, 0)}`).join(', ');
    const atReceiver = result.paths.map((p) => `${p.name} ${fixed(p.median.udp[l.name].droppedAtReceiverPercent, 1)} %`).join(', ');
    lines.push(`${l.title}: kpps the sender managed: ${sent}; dropped at the receiving pod's socket after delivery: ${atReceiver}`);
  }
  const checksumErrors = result.paths.flatMap((p) => loads.filter((l) => p.median.udp[l.name].checksumErrors > 0).map((l) => `${p.name} ${l.title}: ${p.median.udp[l.name].checksumErrors}`));
  lines.push(checksumErrors.length === 0 ? 'UDP checksum errors at the receiving pods: none' : `UDP CHECKSUM ERRORS at the receiving pods: ${checksumErrors.join(', ')}`);
  for (const s of result.skipped) lines.push(`${s.name}: skipped, ${s.reason}`);
  return lines.join('\n');
}

export function encapReport(out: Output, figures: readonly EncapFigure[], repeats: number): string {
  return [
    `hot path in process (egress checks, peer lookup, framing, ingress checks), median of ${repeats} repeat(s)`,
    '',
    out.table(
      ['family', 'packet', 'peers', 'Mpps', 'Gbit/s', 'repeats (Mpps)'],
      figures.map((f) => [
        `IPv${f.family}`,
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
  const commands = (byCommand: Record<string, number>, digits: number) =>
    Object.entries(byCommand)
      .sort((a, b) => b[1] - a[1])
      .map(([command, n]) => `${command} ${fixed(n, digits)}`)
      .join(', ') || 'none';
  const seconds = (s: number | null) => (s === null ? 'never' : `${fixed(s, 2)} s`);
  const o = r.options;
  const s = r.steady;
  const m = s.measured;
  const d = s.atDefaultTtl;
  const lost = r.restartWithoutPersistence;
  const kept = r.restartWithPersistence;
  return [
    `${o.nodes} simulated daemons in ${o.workers} worker processes against one redis-server ${r.redis.version} on loopback (maxclients ${r.redis.maxclients}); ` +
      `lease TTL ${o.leaseTtlSeconds} s, renew margin ${o.renewMarginSeconds} s`,
    '',
    out.fields([
      ['all leases acquired', `${fixed(r.bringUp.acquireAllSeconds, 2)} s from starting all ${o.nodes} at once (${r.bringUp.acquireRetries} start-up retries)`],
      [
        'all watches running',
        `${fixed(r.bringUp.allWatchingSeconds, 2)} s from the same start (${o.watchStartsPerWorker} watch starts at a time per worker; ${r.bringUp.eventsDelivered} bring-up events delivered; ` +
          `Redis CPU ${fixed(r.bringUp.redisCpuSeconds, 1)} s; simulator event-loop delay p99 ${fixed(r.bringUp.simulatorLoopDelayP99Millis, 0)} ms)`,
      ],
      ['watch convergence', `${ms(r.convergenceMillis)}: from a change's commit until all watchers had it`],
      ['watch delivery', `${ms(r.deliveryMillis)}: per watcher; ${r.missedDeliveries} missed; simulator event-loop delay p99 ${fixed(r.simulatorLoopDelayP99Millis, 1)} ms`],
      [
        `steady, measured (${fixed(s.windowSeconds, 0)} s, TTL ${o.leaseTtlSeconds} s)`,
        `${fixed(m.commandsPerNodePerHour, 1)} commands per node per hour (${commands(m.byCommand, 1)}); ${fixed(m.requestsPerNodePerHour, 1)} sent by the daemons; ` +
          `Redis ${fixed(m.redisCpu.secondsPerHour, 1)} CPU s per hour, ${fixed(m.redisCpu.percentOfCore, 2)} % of a core`,
      ],
      [
        '  in the window',
        `${m.renewals} renewals (${m.renewalsExpected} expected), ${m.reaps} reaps (${m.reapsExpected} expected), ${m.leasesExpired} leases expired and reaped, ${m.connectionsOpened} connections opened; ` +
          `Redis's time per call: ${['evalsha', 'info', 'client|setname'].filter((c) => c in m.microsPerCall).map((c) => `${c} ${fixed(m.microsPerCall[c]!, 1)} µs`).join(', ')}`,
      ],
      [
        `idle, measured (${fixed(s.idle.windowSeconds, 0)} s, keepers paused)`,
        `${fixed(s.idle.commandsPerNodePerHour, 2)} commands per node per hour (${commands(s.idle.byCommand, 2)}); Redis ${fixed(s.idle.redisCpu.percentOfCore, 2)} % of a core with ${s.idle.connectedClients} clients`,
      ],
      ['one renewal, cold connection', `${fixed(s.perRenewal.commands, 1)} commands (${commands(s.perRenewal.byCommand, 0)})`],
      ['one reap, cold connection', `${fixed(s.perReap.commands, 1)} commands (${commands(s.perReap.byCommand, 0)})`],
      ['Redis CPU per renewal or reap', `${fixed(s.cpuMillisPerOperation, 3)} ms (window CPU less the idle rate, over renewals + reaps)`],
      [
        `steady, derived for TTL ${d.leaseTtlHours} h, margin ${d.renewMarginHours} h`,
        `${fixed(d.commandsPerNodePerHour, 2)} commands per node per hour; Redis ${fixed(d.redisCpu.secondsPerHour, 1)} CPU s per hour, ${fixed(d.redisCpu.percentOfCore, 2)} % of a core ` +
          `(a renewal every ${fixed(d.renewalPeriodHours, 2)} h per node, ${d.reapsPerHour} reaps per hour in all)`,
      ],
      [
        'memory',
        `${r.memory.bytesPerLease} B per lease in the store's keys (${r.memory.leases} leases, ${r.memory.streamEntries} stream entries; ${r.memory.usedMemoryBytesPerLease} B by used_memory growth); ` +
          `${r.memory.bytesPerConnection} B per connection in client buffers, ${r.memory.otherBytesPerConnection} B outside them (${r.memory.connections} connections); ` +
          `peak ${fixed(r.memory.peakUsedMemoryBytes / 2 ** 20, 0)} MiB; largest worker peak RSS ${fixed(r.simulatorPeakRssBytes / 2 ** 20, 0)} MiB`,
      ],
      [
        'restart with persistence',
        `every watch back ${seconds(kept.watchesBackSeconds)} after Redis (down ${fixed(kept.downSeconds, 2)} s); ${kept.resyncs} resyncs, ${kept.resets} resets, leases ${kept.leasesKept ? 'kept' : 'NOT kept'}, ${kept.daemonsExited} daemons exited`,
      ],
      [
        'restart without persistence',
        `${lost.leasesBack}/${lost.leasesExpected} leases back with their subnets ${seconds(lost.leasesBackSeconds)} after Redis (down ${fixed(lost.downSeconds, 2)} s; each seen back once by ${seconds(lost.eachLeaseBackSeconds)}), config ${lost.configBack ? 'back' : 'missing'}; ` +
          `every watcher told of them after ${lost.watchersBackSeconds === null ? `more than 5 min (${lost.watchersBack} of ${lost.leasesExpected} by then)` : seconds(lost.watchersBackSeconds)}; ${lost.daemonsExited} daemons exited; ${lost.watchResets} watch resets, ${lost.resyncs} resyncs; ` +
          `Redis CPU ${fixed(lost.redisCpuSecondsUntilLeasesBack, 1)} s until the leases were back (${fixed(lost.redisCpuSeconds, 1)} s in all), peak ${fixed(lost.redisPeakMemoryBytes / 2 ** 20, 0)} MiB`,
      ],
      [
        '  per daemon',
        `reset seen p50 ${fixed(lost.resetSeenSeconds.p50, 2)} s, max ${fixed(lost.resetSeenSeconds.max, 2)} s; lease put back p50 ${fixed(lost.leaseRestoredSeconds.p50, 2)} s, ` +
          `p99 ${fixed(lost.leaseRestoredSeconds.p99, 2)} s, max ${fixed(lost.leaseRestoredSeconds.max, 2)} s (${lost.leaseRestoredSeconds.samples} by the keepers, ${lost.leasesPutBack} put back in all); ` +
          `${lost.renewFailed} claims failed and were retried; ${lost.configChecks} config checks (${lost.configFailures} failed); ` +
          `simulator event-loop delay p99 ${fixed(lost.simulatorLoopDelayP99Millis, 0)} ms`,
      ],
      ...(lost.stoppedBecause !== null ? ([['  stopped', lost.stoppedBecause]] as Array<[string, string]>) : []),
      ['daemons exited', r.daemonsExited === 0 ? '0' : `${r.daemonsExited}: ${r.exitReasons.join('; ')}`],
    ]),
    '',
    `targets (set for ${CONTROL_PLANE_TARGETS.nodes.toLocaleString('en')} nodes; this run has ${o.nodes.toLocaleString('en')})`,
    out.table(
      ['target', 'goal', 'this run', ''],
      r.targets.map((t) => [t.name, t.target, t.value, { text: t.pass ? 'pass' : 'FAIL', style: t.pass ? 'green' : 'red' }]),
    ),
    '',
    `derived: ${d.formula}`,
  ].join('\n');
}

export function doctorReport(out: Output, r: DoctorResult): string {
  const o = r.options;
  const mib = (bytes: number) => `${fixed(bytes / 2 ** 20, 0)} MiB`;
  const mb = (bytes: number) => `${fixed(bytes / 1e6, 1)} MB`;
  return [
    `doctor's side of a look at ${o.nodes.toLocaleString('en')} nodes of ${o.peersPerNode.toLocaleString('en')} peers each: the survey parsing every daemon's /status (${o.concurrency} at once) and the checks; the network left out`,
    '',
    out.fields([
      ['first look', `${fixed(r.firstLookSeconds, 2)} s (no earlier look to compare with)`],
      ['later looks', r.laterLooksMedianSeconds === null ? 'none (--looks 1)' : `${fixed(r.laterLooksMedianSeconds, 2)} s, median of ${o.looks - 1} (each against the look before)`],
      ['/status JSON per look', mb(r.looks[0]!.statusBytes)],
      ['memory', `peak heap used ${mib(r.peakHeapUsedBytes)}, ${mib(r.looks[0]!.heapUsedAtStartBytes)} at the first look's start (the simulated /status texts); peak RSS ${mib(r.peakRssBytes)}`],
    ]),
    '',
    out.table(
      ['look', 'seconds', '/status JSON', 'heap used at start', 'peak heap used'],
      r.looks.map((l, i) => [String(i + 1), fixed(l.seconds, 2), mb(l.statusBytes), mib(l.heapUsedAtStartBytes), mib(l.peakHeapUsedBytes)]),
    ),
  ].join('\n');
}
