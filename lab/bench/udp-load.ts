// UDP at saturation between two pods, with the bench's own generator
// (udp-generator.c): the same paced load offered on every path, plain
// datagrams or UDP GSO super-packets as QUIC stacks send them, and what
// reached the receiving pod counted by its kernel: the datagrams the sink
// read and those its socket refused, once its queue has drained.
import { access, mkdir, rename, rm, stat } from 'node:fs/promises';
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
/** How long the path's queues and the sink's socket may take to drain after the sender stops. */
const DRAIN_LIMIT_MS = 10_000;
const DRAIN_POLL_MS = 100;

let built: Promise<string> | undefined;

/** The generator, compiled from its source when it is missing or older than the source. */
export function udpGenerator(): Promise<string> {
  built ??= (async () => {
    const [source, binary] = await Promise.all([stat(SOURCE), stat(BINARY).catch(() => undefined)]);
    if (binary === undefined || binary.mtimeMs < source.mtimeMs) {
      // Built beside and renamed into place, so an interrupted build never leaves a truncated binary behind.
      const partial = `${BINARY}.${process.pid}`;
      try {
        await mkdir(path.dirname(BINARY), { recursive: true });
        await run(['cc', '-O2', '-Wall', '-Wextra', '-pthread', '-o', partial, SOURCE]);
        await rename(partial, BINARY);
      } catch (err) {
        await rm(partial, { force: true });
        throw new Error(`compiling the UDP generator (${SOURCE}) into ${BINARY} failed: ${(err as Error).message}`, { cause: err });
      }
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
  /** System calls of the sender that failed (ENOBUFS, ECONNREFUSED, ...), and the last one's error. */
  sendErrors: number;
  lastSendError: string;
}

interface PodUdpCounters {
  arrived: number;
  overflowed: number;
  checksumErrors: number;
  /** Bytes waiting in the sink's socket: the kernel counts a datagram in InDatagrams only when it is read. */
  sinkQueued: number;
}

/** The receive queue, in bytes, of the pod's UDP socket bound to `port` (/proc/net/udp or udp6). */
async function receiveQueue(pod: Endpoint, family: 4 | 6, port: number): Promise<number> {
  const table = await pod.ns.exec(['cat', family === 4 ? '/proc/net/udp' : '/proc/net/udp6']);
  const suffix = `:${port.toString(16).toUpperCase().padStart(4, '0')}`;
  for (const line of table.split('\n').slice(1)) {
    const fields = line.trim().split(/\s+/);
    if (fields[1]?.endsWith(suffix)) return parseInt(fields[4]!.split(':')[1]!, 16);
  }
  throw new Error(`no UDP socket on port ${port} in ${pod.ns.name}`);
}

/** The UDP counters of the pod's namespace for `family`: the kernel counts IPv6 sockets' apart, in /proc/net/snmp6. */
async function podUdpCounters(pod: Endpoint, family: 4 | 6): Promise<PodUdpCounters> {
  const read = (value: number | undefined, name: string): number => {
    if (value === undefined) throw new Error(`no ${name} in the UDP counters of ${pod.ns.name}`);
    return value;
  };
  const sinkQueued = await receiveQueue(pod, family, SINK_PORT);
  // A full receive buffer and the protocol's memory limit both refuse a datagram that reached the pod.
  if (family === 4) {
    const udp = (await snmp(pod.ns)).Udp ?? {};
    const overflowed = read(udp.RcvbufErrors, 'RcvbufErrors') + read(udp.MemErrors, 'MemErrors');
    return { arrived: read(udp.InDatagrams, 'InDatagrams') + overflowed, overflowed, checksumErrors: read(udp.InCsumErrors, 'InCsumErrors'), sinkQueued };
  }
  const udp = await snmp6(pod.ns);
  const overflowed = read(udp.Udp6RcvbufErrors, 'Udp6RcvbufErrors') + read(udp.Udp6MemErrors, 'Udp6MemErrors');
  return { arrived: read(udp.Udp6InDatagrams, 'Udp6InDatagrams') + overflowed, overflowed, checksumErrors: read(udp.Udp6InCsumErrors, 'Udp6InCsumErrors'), sinkQueued };
}

/** Reads the counters until the sink's queue is empty and they stop moving (the queues on the path have drained too). */
async function settledCounters(pod: Endpoint, family: 4 | 6): Promise<PodUdpCounters> {
  let last = await podUdpCounters(pod, family);
  for (let waited = 0; waited < DRAIN_LIMIT_MS; waited += DRAIN_POLL_MS) {
    await new Promise((resolve) => setTimeout(resolve, DRAIN_POLL_MS));
    const next = await podUdpCounters(pod, family);
    if (next.sinkQueued === 0 && next.arrived === last.arrived) return next;
    last = next;
  }
  throw new Error(`the UDP sink in ${pod.ns.name} still had ${last.sinkQueued} bytes queued ${DRAIN_LIMIT_MS / 1000} s after the load ended`);
}

/** One run of the generator from `client` to a sink in `server`. */
export async function udpLoad(processes: MeasurementProcesses, client: Endpoint, server: Endpoint, options: UdpLoadOptions): Promise<UdpResult> {
  const generator = await udpGenerator();
  const address = podAddress(server, options.family);
  const sink = processes.spawn(server.ns, [generator, 'sink', address, String(SINK_PORT)]);
  let sinkErrors = '';
  sink.stderr!.setEncoding('utf8').on('data', (chunk: string) => (sinkErrors += chunk));
  try {
    await new Promise<void>((resolve, reject) => {
      createInterface({ input: sink.stdout! }).once('line', () => resolve());
      sink.once('exit', (code) => reject(new Error(`the UDP sink in ${server.ns.name} exited with ${code}: ${sinkErrors.trim()}`)));
    });
    const before = await podUdpCounters(server, options.family);
    const command = [generator, 'send', address, String(SINK_PORT), '--payload', String(options.payloadBytes), '--seconds', String(options.seconds)];
    if (options.pps > 0) command.push('--pps', String(options.pps));
    if (options.gso) command.push('--gso');
    command.push('--threads', String(options.threads));
    const report = JSON.parse(await processes.run(client.ns, command, (options.seconds + 30) * 1000)) as { sent: number; seconds: number; errors: number; lastError: string };
    if (report.sent === 0) throw new Error(`the UDP generator in ${client.ns.name} sent nothing to ${address}: ${report.lastError || 'no error given'}`);
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
      sendErrors: report.errors,
      lastSendError: report.lastError,
    };
  } finally {
    await stopProcess(sink);
  }
}
