// UDP at saturation between two pods, with the bench's own generator
// (udp-generator.c): the same paced load offered on every path, plain
// datagrams or UDP GSO super-packets as QUIC stacks send them, and what
// reached the receiving pod counted by its kernel, not by the sink.
import { access, mkdir, stat } from 'node:fs/promises';
import { createInterface } from 'node:readline';
import path from 'node:path';
import { run, stopProcess } from '../exec.js';
import { packageRoot } from '../paths.js';
import { snmp, snmp6 } from '../snmp.js';
import { podAddress, type Endpoint } from './iperf.js';
import type { MeasurementProcesses } from './processes.js';

const SOURCE = path.join(packageRoot, 'lab/bench/udp-generator.c');
const BINARY = path.join(packageRoot, 'build/lab/udp-generator');
const SINK_PORT = 9000;
/** How long the counters may keep moving after the sender stops, while queues drain. */
const DRAIN_LIMIT_MS = 2000;
const DRAIN_POLL_MS = 100;

let built: Promise<string> | undefined;

/** The generator, compiled from its source when it is missing or older than the source. */
export function udpGenerator(): Promise<string> {
  built ??= (async () => {
    const [source, binary] = await Promise.all([stat(SOURCE), stat(BINARY).catch(() => undefined)]);
    if (binary === undefined || binary.mtimeMs < source.mtimeMs) {
      await mkdir(path.dirname(BINARY), { recursive: true });
      await run(['cc', '-O2', '-Wall', '-Wextra', '-pthread', '-o', BINARY, SOURCE]);
    }
    await access(BINARY);
    return BINARY;
  })();
  return built;
}

export interface UdpLoadOptions {
  seconds: number;
  payloadBytes: number;
  /** Datagrams per second offered; 0: as fast as the sender can. */
  pps: number;
  /** Send UDP GSO super-packets (UDP_SEGMENT) instead of one datagram per message. */
  gso: boolean;
  family: 4 | 6;
  /** Sending threads, each its own flow; the load is shared among them. */
  threads: number;
}

export interface UdpResult {
  /** UDP payload of each datagram. */
  payloadBytes: number;
  /** Whether the sender used UDP GSO. */
  gso: boolean;
  /** The offered load asked of the sender (0: unthrottled). */
  requestedPps: number;
  /** Datagrams the sender's kernel took, per second: short of the request when the sender lacked CPU. */
  sentPps: number;
  /** Datagrams that reached the receiving pod's UDP layer, per second: its InDatagrams and RcvbufErrors. */
  deliveredPps: number;
  /** Datagrams sent that never reached the receiving pod, in percent of those sent: the path's loss. */
  lossPercent: number;
  /** Datagrams that reached the pod but overflowed the sink's socket, in percent of those sent: the pod's loss, not the path's. */
  droppedAtReceiverPercent: number;
  /** Datagrams the receiving pod's kernel refused for a bad UDP checksum: always 0 on a correct path. */
  checksumErrors: number;
}

interface PodUdpCounters {
  arrived: number;
  overflowed: number;
  checksumErrors: number;
}

/** The UDP counters of the pod's namespace for `family`: the kernel counts IPv6 sockets' apart, in /proc/net/snmp6. */
async function podUdpCounters(pod: Endpoint, family: 4 | 6): Promise<PodUdpCounters> {
  const read = (value: number | undefined, name: string): number => {
    if (value === undefined) throw new Error(`no ${name} in the UDP counters of ${pod.ns.name}`);
    return value;
  };
  if (family === 4) {
    const udp = (await snmp(pod.ns)).Udp ?? {};
    const overflowed = read(udp.RcvbufErrors, 'RcvbufErrors');
    return { arrived: read(udp.InDatagrams, 'InDatagrams') + overflowed, overflowed, checksumErrors: read(udp.InCsumErrors, 'InCsumErrors') };
  }
  const udp = await snmp6(pod.ns);
  const overflowed = read(udp.Udp6RcvbufErrors, 'Udp6RcvbufErrors');
  return { arrived: read(udp.Udp6InDatagrams, 'Udp6InDatagrams') + overflowed, overflowed, checksumErrors: read(udp.Udp6InCsumErrors, 'Udp6InCsumErrors') };
}

/** Reads the counters until they stop moving (the queues on the path have drained), at most DRAIN_LIMIT_MS. */
async function settledCounters(pod: Endpoint, family: 4 | 6): Promise<PodUdpCounters> {
  let last = await podUdpCounters(pod, family);
  for (let waited = 0; waited < DRAIN_LIMIT_MS; waited += DRAIN_POLL_MS) {
    await new Promise((resolve) => setTimeout(resolve, DRAIN_POLL_MS));
    const next = await podUdpCounters(pod, family);
    if (next.arrived === last.arrived) return next;
    last = next;
  }
  return last;
}

/** One run of the generator from `client` to a sink in `server`. */
export async function udpLoad(processes: MeasurementProcesses, client: Endpoint, server: Endpoint, options: UdpLoadOptions): Promise<UdpResult> {
  const generator = await udpGenerator();
  const address = podAddress(server, options.family);
  const sink = processes.spawn(server.ns, [generator, 'sink', address, String(SINK_PORT)]);
  try {
    await new Promise<void>((resolve, reject) => {
      createInterface({ input: sink.stdout! }).once('line', () => resolve());
      sink.once('exit', (code) => reject(new Error(`the UDP sink in ${server.ns.name} exited with ${code}`)));
    });
    const before = await podUdpCounters(server, options.family);
    const command = [generator, 'send', address, String(SINK_PORT), '--payload', String(options.payloadBytes), '--seconds', String(options.seconds)];
    if (options.pps > 0) command.push('--pps', String(options.pps));
    if (options.gso) command.push('--gso');
    command.push('--threads', String(options.threads));
    const report = JSON.parse(await processes.run(client.ns, command, (options.seconds + 30) * 1000)) as { sent: number; seconds: number };
    const after = await settledCounters(server, options.family);
    const arrived = after.arrived - before.arrived;
    const sent = report.sent;
    return {
      payloadBytes: options.payloadBytes,
      gso: options.gso,
      requestedPps: options.pps,
      sentPps: sent / report.seconds,
      deliveredPps: arrived / report.seconds,
      lossPercent: sent > 0 ? (100 * Math.max(0, sent - arrived)) / sent : 100,
      droppedAtReceiverPercent: sent > 0 ? (100 * (after.overflowed - before.overflowed)) / sent : 0,
      checksumErrors: after.checksumErrors - before.checksumErrors,
    };
  } finally {
    await stopProcess(sink);
  }
}
