/**
 * Pod-to-pod data paths side by side, in one run, on the same two-node
 * namespace topology: miniflannel, kernel VXLAN (flannel's vxlan backend),
 * the bare underlay (no encapsulation), and OpenVPN without crypto when it
 * is installed. Every topology stays up for the whole run and the
 * measurements go round-robin over the paths, so drift on a shared machine
 * hits all of them alike. Per path and round:
 *   1. TCP, 1 stream, then 4 streams (iperf3), with the forwarders' CPU
 *      time read from /proc before and after;
 *   2. UDP at saturation (the bench's own generator, udp-load.ts): 1400-
 *      and 64-byte datagrams, and 1400-byte ones sent as UDP GSO
 *      super-packets, each at one offered rate the same on every path:
 *      sent, delivered to the receiving pod, lost;
 *   3. RTT under light load (ping every 10 ms): p50 and p99;
 *   4. RTT under load: the same pings while one TCP stream fills the path.
 * Each figure is the median over the rounds.
 */
import { randomBytes } from 'node:crypto';
import { SEAL_OVERHEAD } from '../../daemon/dataplane/sealing.js';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { availableParallelism, tmpdir } from 'node:os';
import { setTimeout as delay } from 'node:timers/promises';
import path from 'node:path';
import { removeStaleNamespaces, runPrefix } from '../netns.js';
import { leaseOverlay, miniflannelOverlay, openvpnOverlay, underlayOverlay, vxlanOverlay, type Overlay } from '../overlays.js';
import type { Pod } from '../cluster.js';
import { iperfTcp, pingRtt, podAddress, type RttResult, type TcpResult } from './iperf.js';
import { udpLoad, type UdpResult } from './udp-load.js';
import { cpuSeconds, MeasurementProcesses } from './processes.js';
import { gbps, median, medianOf } from './stats.js';

export interface E2eOptions {
  /** Rounds over all paths; medians are reported. */
  repeats: number;
  /** Length of each iperf3 run (TCP and UDP). */
  seconds: number;
  /**
   * Offered UDP load in packets per second, the same on every path; 'auto'
   * sets it per UDP load to what the generator sends unthrottled over the
   * underlay, the fastest path, at the start of the run: the kernel paths
   * carry less; a user-space path that carries all of it is only known to
   * carry at least that much.
   */
  udpPps: number | 'auto';
  /** Pings per RTT measurement, 10 ms apart. */
  pings: number;
  /** Also measure miniflannel with its speed-ups turned off, one at a time. */
  ablation: boolean;
  /** Also measure miniflannel with authenticated encapsulation, in both modes (--auth-key-file). */
  auth: boolean;
  /** Also measure IPv6 between dual-stack pods, through miniflannel and through kernel VXLAN. */
  ipv6: boolean;
  /** Measure OpenVPN (false when it is not installed). */
  openvpn: boolean;
  log: (line: string) => void;
  /** Aborts between measurements (Ctrl-C). */
  signal?: AbortSignal;
  /** Tracks iperf3 and ping so that an interrupt can end them. */
  processes?: MeasurementProcesses;
}

export const PATH_NAMES = {
  miniflannel: 'miniflannel',
  vxlan: 'kernel VXLAN',
  underlay: 'underlay',
  openvpn: 'OpenVPN',
  miniflannel6: 'miniflannel IPv6',
  vxlan6: 'kernel VXLAN IPv6',
} as const;

/** The UDP loads measured: plain datagrams of two sizes, and datagrams an application sends with UDP GSO, as QUIC stacks do. */
export const UDP_LOADS = {
  '1400': { payloadBytes: 1400, gso: false, title: 'UDP 1400 B' },
  '64': { payloadBytes: 64, gso: false, title: 'UDP 64 B' },
  gso1400: { payloadBytes: 1400, gso: true, title: 'UDP 1400 B GSO' },
} as const;
export type UdpLoadName = keyof typeof UDP_LOADS;
/** In the order the tables show them (an object keeps integer-like keys in numeric order). */
export const UDP_LOAD_NAMES: readonly UdpLoadName[] = ['1400', '64', 'gso1400'];
/**
 * One sending thread per core (the generator takes 64 at most): the kernel
 * forwards a datagram in its sender's system call, so fewer would cap the
 * kernel paths below what they carry.
 */
const UDP_SENDER_THREADS = Math.min(availableParallelism(), 64);
const PING_INTERVAL_MS = 10;
/** Under load, the pings start this long after the TCP stream's server and end at least this long before the stream, so that all of them share the path with it. */
const UNDER_LOAD_MARGIN_MS = 1000;

/** miniflannel configurations beside the default one, slowest first. */
const ABLATIONS: Array<{ name: string; description: string; args: string[] }> = [
  { name: 'mf dgram', description: 'miniflannel with --transport dgram --tun-offload off', args: ['--transport', 'dgram', '--tun-offload', 'off'] },
  { name: 'mf mmsg', description: 'miniflannel with --transport mmsg --tun-offload off', args: ['--transport', 'mmsg', '--tun-offload', 'off'] },
  // Not slower, but the TUN queue the under-load RTT is weighed against: see docs/benchmarks.md.
  { name: 'mf txq 100', description: 'miniflannel with --tun-txqueuelen 100 (default 2000)', args: ['--tun-txqueuelen', '100'] },
];

export interface RoundFigures {
  tcp1Stream: TcpResult;
  tcp4Streams: TcpResult;
  udp: Record<UdpLoadName, UdpResult>;
  rtt: RttResult;
  /** Pings while one TCP stream runs on the same path. */
  rttUnderLoad: RttResult;
  /** CPU of the forwarders over both TCP runs; null when the kernel forwards. */
  cpu: { seconds: number; bytes: number; secondsPerGB: number } | null;
}

/** A UDP run's figures, each the median over the rounds. */
export type UdpMedians = UdpResult;

export interface PathMedians {
  tcp1StreamBitsPerSecond: number;
  tcp4StreamsBitsPerSecond: number;
  udp: Record<UdpLoadName, UdpMedians>;
  rttP50Micros: number;
  rttP99Micros: number;
  rttUnderLoadP50Micros: number;
  rttUnderLoadP99Micros: number;
  /** Forwarder CPU seconds (user + system, both nodes) per 10^9 bytes of TCP payload; null for kernel paths. */
  cpuSecondsPerGB: number | null;
}

/** One path against a reference path: throughput ratios, latency added, CPU ratio. */
export interface Comparison {
  reference: string;
  tcp1Stream: number;
  tcp4Streams: number;
  /** Delivered packet rate at saturation over the reference's, per UDP load. */
  udpDeliveredPps: Record<UdpLoadName, number>;
  rttP50AddedMicros: number;
  rttP99AddedMicros: number;
  /** RTT p99 under load over the reference's. */
  rttUnderLoadP99: number;
  /** This path's CPU per GB over the reference's; null unless both run in user space. */
  cpuPerGB: number | null;
}

export interface PathResult {
  name: string;
  description: string;
  /** The user-space processes timed for CPU, e.g. "miniflanneld x2"; empty for kernel paths. */
  forwarders: string;
  rounds: RoundFigures[];
  median: PathMedians;
  comparisons: Comparison[];
}

export interface E2eResult {
  options: {
    repeats: number;
    seconds: number;
    /** The offered UDP load per UDP load, in packets per second, the same on every path. */
    udpOfferedPps: Record<UdpLoadName, number>;
    /** How it was chosen. */
    udpRate: string;
    /** The generator's sending threads, one flow each. */
    udpSenderThreads: number;
    pings: number;
    pingIntervalMs: number;
    ablation: boolean;
    auth: boolean;
    ipv6: boolean;
  };
  paths: PathResult[];
  /** Paths not measured, and why. */
  skipped: Array<{ name: string; reason: string }>;
}

interface PathUnderTest {
  overlay: Overlay;
  description: string;
  forwarders: string;
}

const DESCRIPTIONS: Record<string, string> = {
  [PATH_NAMES.miniflannel]: 'miniflanneld on each node, static peers, default flags (mmsg transport, TUN offloads), TUN MTU 1472',
  [PATH_NAMES.vxlan]: "the kernel's VXLAN device as flannel's vxlan backend sets it up (flannel.1, VNI 1, port 8472, MTU 1450)",
  [PATH_NAMES.underlay]: 'pod subnets routed to the peer node over the underlay, no encapsulation (flannel host-gw), pod MTU 1500',
  [PATH_NAMES.openvpn]: 'openvpn point-to-point over UDP, no TLS, --cipher none --auth none, --fast-io, 2 MiB socket buffers, txqueuelen 1000, TUN MTU 1472',
  [PATH_NAMES.miniflannel6]: 'IPv6 between dual-stack pods: miniflanneld on each node, leases and the dual-stack network config in Redis, default flags, IPv4 underlay, TUN MTU 1472',
  [PATH_NAMES.vxlan6]: 'IPv6 between dual-stack pods over the same kernel VXLAN device (IPv6 VTEP addresses, onlink routes), IPv4 underlay, MTU 1450',
};

async function buildPaths(options: E2eOptions, root: string, built: PathUnderTest[]): Promise<void> {
  const prefix = runPrefix();
  const add = async (make: () => Promise<Overlay>, description?: string) => {
    options.signal?.throwIfAborted();
    const overlay = await make();
    // spawnargs: ip netns exec <ns> <command> ...
    const kind = overlay.daemons.length > 0 ? 'miniflanneld' : path.basename(overlay.forwarders[0]?.process.spawnargs[4] ?? '');
    built.push({
      overlay,
      description: description ?? DESCRIPTIONS[overlay.name] ?? overlay.name,
      forwarders: overlay.forwarders.length === 0 ? '' : `${kind} x${overlay.forwarders.length}`,
    });
    options.log(`  ${overlay.name}: pods ${overlay.pods.map((p) => podAddress(p, overlay.family)).join(' -> ')}`);
  };
  await add(() => miniflannelOverlay({ workDir: path.join(root, 'mf'), prefix: `${prefix}b` }));
  await add(() => vxlanOverlay({ workDir: path.join(root, 'vx'), prefix: `${prefix}v` }));
  await add(() => underlayOverlay({ workDir: path.join(root, 'ul'), prefix: `${prefix}u` }));
  if (options.openvpn) await add(() => openvpnOverlay({ workDir: path.join(root, 'ov'), prefix: `${prefix}o` }));
  if (options.ipv6) {
    await add(() => leaseOverlay({ workDir: path.join(root, 'mf6'), prefix: `${prefix}6m`, nodes: 2, name: PATH_NAMES.miniflannel6, dualStack: true }));
    await add(() => vxlanOverlay({ workDir: path.join(root, 'vx6'), prefix: `${prefix}6v`, name: PATH_NAMES.vxlan6, dualStack: true }));
  }
  if (options.ablation) {
    for (const [i, variant] of ABLATIONS.entries()) {
      await add(
        async () => ({ ...(await miniflannelOverlay({ workDir: path.join(root, `a${i}`), prefix: `${prefix}a${i}`, extraArgs: variant.args })), name: variant.name }),
        variant.description,
      );
    }
  }
  if (options.auth) {
    const keyFile = path.join(root, 'auth-key');
    await writeFile(keyFile, `${randomBytes(32).toString('base64')}\n`, { mode: 0o600 });
    for (const mode of ['mac', 'encrypt'] as const) {
      await add(
        async () => ({
          ...(await miniflannelOverlay({ workDir: path.join(root, `auth-${mode}`), prefix: `${prefix}k${mode[0]}`, extraArgs: ['--auth-key-file', keyFile, '--auth-mode', mode], podMtu: 1500 - 28 - SEAL_OVERHEAD })),
          name: `mf auth ${mode}`,
        }),
        `miniflannel with --auth-key-file --auth-mode ${mode} (AES-256-GCM ${mode === 'mac' ? 'tag, packet in clear' : 'encryption'}; 26 bytes per datagram), TUN MTU ${1500 - 28 - SEAL_OVERHEAD}`,
      );
    }
  }
}

type OfferedPps = E2eResult['options']['udpOfferedPps'];

async function measureRound(options: E2eOptions, offered: OfferedPps, processes: MeasurementProcesses, target: PathUnderTest, label: string): Promise<RoundFigures> {
  const { overlay } = target;
  const [client, server] = overlay.pods as [Pod, Pod];
  const { family } = overlay;
  const pids = overlay.forwarders.map((f) => f.process.pid!);
  const step = () => options.signal?.throwIfAborted();

  step();
  const cpuBefore = pids.length > 0 ? await cpuSeconds(pids) : 0;
  const tcp1Stream = await iperfTcp(processes, client, server, { seconds: options.seconds, streams: 1, family });
  options.log(`${label} TCP 1 stream   ${gbps(tcp1Stream.bitsPerSecond)} Gbit/s (${tcp1Stream.retransmits} retransmits)`);
  step();
  const tcp4Streams = await iperfTcp(processes, client, server, { seconds: options.seconds, streams: 4, family });
  const cpuAfter = pids.length > 0 ? await cpuSeconds(pids) : 0;
  options.log(`${label} TCP 4 streams  ${gbps(tcp4Streams.bitsPerSecond)} Gbit/s (${tcp4Streams.retransmits} retransmits)`);
  const bytes = tcp1Stream.bytes + tcp4Streams.bytes;
  const cpu = pids.length > 0 ? { seconds: cpuAfter - cpuBefore, bytes, secondsPerGB: (cpuAfter - cpuBefore) / (bytes / 1e9) } : null;
  if (cpu) options.log(`${label} CPU            ${cpu.secondsPerGB.toFixed(2)} s/GB (${cpu.seconds.toFixed(2)} s for ${(bytes / 1e9).toFixed(2)} GB)`);

  const udp = {} as Record<UdpLoadName, UdpResult>;
  for (const name of UDP_LOAD_NAMES) {
    step();
    const load = UDP_LOADS[name];
    const result = await udpLoad(processes, client, server, { seconds: options.seconds, payloadBytes: load.payloadBytes, gso: load.gso, pps: offered[name], family, threads: UDP_SENDER_THREADS });
    udp[name] = result;
    const k = (pps: number) => (pps / 1000).toFixed(1);
    options.log(
      `${label} ${load.title.padEnd(15)}${k(result.deliveredPps)} kpps delivered of ${k(result.sentPps)} sent, ${result.lossPercent.toFixed(2)} % lost` +
        ` (${result.droppedAtReceiverPercent.toFixed(2)} % more at the receiving socket)${result.checksumErrors > 0 ? `, ${result.checksumErrors} UDP CHECKSUM ERRORS` : ''}` +
        (result.sendErrors > 0 ? `, ${result.sendErrors} failed sends (${result.lastSendError})` : ''),
    );
  }
  step();
  const rtt = await pingRtt(processes, client, server, { count: options.pings, intervalMs: PING_INTERVAL_MS, family });
  options.log(`${label} RTT            p50 ${rtt.p50Micros.toFixed(0)} µs, p99 ${rtt.p99Micros.toFixed(0)} µs (${rtt.received}/${rtt.sent} replies)`);
  step();
  const rttUnderLoad = await pingUnderLoad(options, processes, client, server, family);
  options.log(`${label} RTT under load p50 ${rttUnderLoad.p50Micros.toFixed(0)} µs, p99 ${rttUnderLoad.p99Micros.toFixed(0)} µs (${rttUnderLoad.received}/${rttUnderLoad.sent} replies, one TCP stream beside them)`);
  return { tcp1Stream, tcp4Streams, udp, rtt, rttUnderLoad, cpu };
}

/**
 * Pings while one TCP stream fills the path: what the queues on it (socket
 * buffers, the TUN's, the forwarder's batches) add to a packet that has to
 * wait behind bulk traffic.
 */
async function pingUnderLoad(options: E2eOptions, processes: MeasurementProcesses, client: Pod, server: Pod, family: 4 | 6): Promise<RttResult> {
  // As many pings as alone, so the two p99s rest on as many samples; iperf3 takes whole seconds.
  const pingsMs = options.pings * PING_INTERVAL_MS;
  const streamSeconds = Math.max(Math.ceil(options.seconds), Math.ceil((2 * UNDER_LOAD_MARGIN_MS + pingsMs) / 1000));
  // A stream that fails (or Ctrl-C) before the pings start must not let them start late, after the cleanup.
  const streamEnded = new AbortController();
  const stream = iperfTcp(processes, client, server, { seconds: streamSeconds, streams: 1, family }).finally(() => streamEnded.abort());
  const signal = options.signal ? AbortSignal.any([streamEnded.signal, options.signal]) : streamEnded.signal;
  const pings = delay(UNDER_LOAD_MARGIN_MS, undefined, { signal }).then(() => pingRtt(processes, client, server, { count: options.pings, intervalMs: PING_INTERVAL_MS, family }));
  const [, rtt] = await Promise.all([stream, pings]);
  return rtt;
}

function udpMedians(rounds: readonly UdpResult[]): UdpMedians {
  return {
    payloadBytes: rounds[0]!.payloadBytes,
    gso: rounds[0]!.gso,
    requestedPps: rounds[0]!.requestedPps,
    sentPps: median(rounds.map((r) => r.sentPps)),
    deliveredPps: median(rounds.map((r) => r.deliveredPps)),
    lossPercent: median(rounds.map((r) => r.lossPercent)),
    droppedAtReceiverPercent: median(rounds.map((r) => r.droppedAtReceiverPercent)),
    // Not medians: one bad checksum in any round is one too many, and a send error is worth knowing of.
    checksumErrors: rounds.reduce((sum, r) => sum + r.checksumErrors, 0),
    sendErrors: rounds.reduce((sum, r) => sum + r.sendErrors, 0),
    lastSendError: rounds.map((r) => r.lastSendError).filter((e) => e !== '').at(-1) ?? '',
  };
}

/** A record of `value` for every UDP load. */
function perUdpLoad<T>(value: (name: UdpLoadName) => T): Record<UdpLoadName, T> {
  return Object.fromEntries(UDP_LOAD_NAMES.map((name) => [name, value(name)])) as Record<UdpLoadName, T>;
}

function mediansOf(rounds: readonly RoundFigures[]): PathMedians {
  return {
    tcp1StreamBitsPerSecond: median(rounds.map((r) => r.tcp1Stream.bitsPerSecond)),
    tcp4StreamsBitsPerSecond: median(rounds.map((r) => r.tcp4Streams.bitsPerSecond)),
    udp: perUdpLoad((name) => udpMedians(rounds.map((r) => r.udp[name]))),
    rttP50Micros: median(rounds.map((r) => r.rtt.p50Micros)),
    rttP99Micros: median(rounds.map((r) => r.rtt.p99Micros)),
    rttUnderLoadP50Micros: median(rounds.map((r) => r.rttUnderLoad.p50Micros)),
    rttUnderLoadP99Micros: median(rounds.map((r) => r.rttUnderLoad.p99Micros)),
    cpuSecondsPerGB: medianOf(rounds, (r) => r.cpu?.secondsPerGB ?? null),
  };
}

export function compare(path: PathMedians, reference: PathMedians, referenceName: string): Comparison {
  return {
    reference: referenceName,
    tcp1Stream: path.tcp1StreamBitsPerSecond / reference.tcp1StreamBitsPerSecond,
    tcp4Streams: path.tcp4StreamsBitsPerSecond / reference.tcp4StreamsBitsPerSecond,
    udpDeliveredPps: perUdpLoad((name) => path.udp[name].deliveredPps / reference.udp[name].deliveredPps),
    rttP50AddedMicros: path.rttP50Micros - reference.rttP50Micros,
    rttP99AddedMicros: path.rttP99Micros - reference.rttP99Micros,
    rttUnderLoadP99: path.rttUnderLoadP99Micros / reference.rttUnderLoadP99Micros,
    cpuPerGB: path.cpuSecondsPerGB !== null && reference.cpuSecondsPerGB !== null ? path.cpuSecondsPerGB / reference.cpuSecondsPerGB : null,
  };
}

/**
 * Every IPv4 encapsulating path against kernel VXLAN and the underlay,
 * kernel VXLAN against the underlay (the limit, compared with nothing), and
 * miniflannel also against OpenVPN, its user-space peer. An IPv6 path is
 * compared with kernel VXLAN carrying IPv6.
 */
function comparisons(paths: Array<Omit<PathResult, 'comparisons'>>): PathResult[] {
  const byName = new Map(paths.map((p) => [p.name, p]));
  const referencesOf = (name: string): string[] => {
    if (name === PATH_NAMES.underlay || name === PATH_NAMES.vxlan6) return [];
    if (name === PATH_NAMES.miniflannel6) return [PATH_NAMES.vxlan6];
    if (name === PATH_NAMES.miniflannel) return [PATH_NAMES.vxlan, PATH_NAMES.underlay, PATH_NAMES.openvpn];
    return [PATH_NAMES.vxlan, PATH_NAMES.underlay];
  };
  return paths.map((p) => {
    const references = referencesOf(p.name);
    const list = references
      .filter((name) => name !== p.name && byName.has(name))
      .map((name) => compare(p.median, byName.get(name)!.median, name));
    return { ...p, comparisons: list };
  });
}

/**
 * The offered UDP load for 'auto', per UDP load: what the generator sends
 * unthrottled over the underlay, the fastest path.
 */
async function calibrateUdp(options: E2eOptions, processes: MeasurementProcesses, built: PathUnderTest[]): Promise<OfferedPps> {
  const underlay = built.find((b) => b.overlay.name === PATH_NAMES.underlay)!.overlay;
  const [client, server] = underlay.pods as [Pod, Pod];
  const offered = {} as OfferedPps;
  for (const name of UDP_LOAD_NAMES) {
    options.signal?.throwIfAborted();
    const load = UDP_LOADS[name];
    const unthrottled = await udpLoad(processes, client, server, { seconds: Math.min(options.seconds, 5), payloadBytes: load.payloadBytes, gso: load.gso, pps: 0, family: 4, threads: UDP_SENDER_THREADS });
    offered[name] = Math.max(1000, Math.round(unthrottled.sentPps / 1000) * 1000);
    options.log(`${load.title}: the generator sends ${(unthrottled.sentPps / 1000).toFixed(1)} kpps unthrottled over the underlay; offering ${(offered[name] / 1000).toFixed(0)} kpps on every path`);
  }
  return offered;
}

export async function benchE2e(options: E2eOptions): Promise<E2eResult> {
  const processes = options.processes ?? new MeasurementProcesses();
  const skipped: E2eResult['skipped'] = [];
  if (!options.openvpn) skipped.push({ name: PATH_NAMES.openvpn, reason: 'openvpn is not installed (apt-get install openvpn)' });
  await removeStaleNamespaces();
  const root = await mkdtemp(path.join(tmpdir(), 'miniflannel-bench-'));
  const built: PathUnderTest[] = [];
  try {
    options.log(`building the topologies: two nodes each on a 198.18.0.0/24 underlay in namespaces ${runPrefix()}*`);
    await buildPaths(options, root, built);
    const fixedPps = options.udpPps;
    const offered = fixedPps === 'auto' ? await calibrateUdp(options, processes, built) : perUdpLoad(() => fixedPps);
    const udpRate = fixedPps === 'auto' ? 'auto: what the generator sent unthrottled over the underlay at the start of the run' : 'fixed: --udp-pps';
    const rounds = new Map<PathUnderTest, RoundFigures[]>(built.map((b) => [b, []]));
    for (let round = 1; round <= options.repeats; round++) {
      for (const target of built) {
        const label = `round ${round}/${options.repeats}  ${target.overlay.name.padEnd(12)}`;
        rounds.get(target)!.push(await measureRound(options, offered, processes, target, label));
      }
    }
    const paths = built.map((b) => ({
      name: b.overlay.name,
      description: b.description,
      forwarders: b.forwarders,
      rounds: rounds.get(b)!,
      median: mediansOf(rounds.get(b)!),
    }));
    return {
      options: {
        repeats: options.repeats,
        seconds: options.seconds,
        udpOfferedPps: offered,
        udpRate,
        udpSenderThreads: UDP_SENDER_THREADS,
        pings: options.pings,
        pingIntervalMs: PING_INTERVAL_MS,
        ablation: options.ablation,
        auth: options.auth,
        ipv6: options.ipv6,
      },
      paths: comparisons(paths),
      skipped,
    };
  } finally {
    processes.killAll();
    for (const b of built) await b.overlay.destroy().catch((err: Error) => options.log(`cleanup of ${b.overlay.name} failed: ${err.message}`));
    await rm(root, { recursive: true, force: true });
  }
}
