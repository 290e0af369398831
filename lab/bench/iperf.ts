// iperf3 and ping between two pods. The iperf3 server is started per
// measurement (--one-off: one test, then exit) and the client reports JSON.
import { createInterface } from 'node:readline';
import type { Pod } from '../cluster.js';
import { CommandError, stopProcess } from '../exec.js';
import { percentile } from './stats.js';
import type { MeasurementProcesses } from './processes.js';

export interface TcpResult {
  /** Payload bits per second at the receiver. */
  bitsPerSecond: number;
  /** Payload bytes the receiver got. */
  bytes: number;
  retransmits: number;
}

/** What a measurement needs of a pod: its namespace and addresses. */
export type Endpoint = Pick<Pod, 'ns' | 'ip' | 'ip6'>;

export interface RttResult {
  p50Micros: number;
  p99Micros: number;
  sent: number;
  received: number;
}

/** The pod address a measurement targets: its IPv4 one, or its IPv6 one on an IPv6 path. */
export function podAddress(pod: Endpoint, family: 4 | 6): string {
  if (family === 4) return pod.ip;
  if (pod.ip6 === undefined) throw new Error(`pod ${pod.ns.name} has no IPv6 address`);
  return pod.ip6;
}

/** Runs `client` against a fresh one-off iperf3 server in `server`; returns the client's JSON report. */
async function iperf(processes: MeasurementProcesses, client: Pod, server: Pod, family: 4 | 6, args: string[], seconds: number): Promise<any> {
  const address = podAddress(server, family);
  const daemon = processes.spawn(server.ns, ['iperf3', '--server', '--one-off', '--forceflush', '--bind', address]);
  try {
    await new Promise<void>((resolve, reject) => {
      const lines = createInterface({ input: daemon.stdout! });
      lines.on('line', (line) => line.includes('Server listening') && resolve());
      daemon.once('exit', (code) => reject(new Error(`iperf3 server in ${server.ns.name} exited with ${code}`)));
    });
    const out = await processes.run(client.ns, ['iperf3', '--client', address, '--time', String(seconds), '--json', ...args], (seconds + 30) * 1000);
    const report = JSON.parse(out);
    if (report.error) throw new Error(`iperf3 from ${podAddress(client, family)} to ${address}: ${report.error}`);
    return report;
  } finally {
    await stopProcess(daemon);
  }
}

export async function iperfTcp(processes: MeasurementProcesses, client: Pod, server: Pod, options: { seconds: number; streams: number; family?: 4 | 6 }): Promise<TcpResult> {
  const report = await iperf(processes, client, server, options.family ?? 4, ['--parallel', String(options.streams)], options.seconds);
  const received = report.end.sum_received;
  return { bitsPerSecond: received.bits_per_second, bytes: received.bytes, retransmits: report.end.sum_sent.retransmits ?? 0 };
}

/** `count` pings `intervalMs` apart (light load); every reply's RTT is parsed. */
export async function pingRtt(processes: MeasurementProcesses, client: Pod, server: Pod, options: { count: number; intervalMs: number; family?: 4 | 6 }): Promise<RttResult> {
  const family = options.family ?? 4;
  const command = ['ping', `-${family}`, '-n', '-c', String(options.count), '-i', String(options.intervalMs / 1000), '-W', '1', podAddress(server, family)];
  // ping exits 1 when some replies are missing; the replies that came still count.
  const { exitCode, stdout: out, stderr } = await processes.outcome(client.ns, command, options.count * options.intervalMs + 30_000);
  if (exitCode !== 0 && exitCode !== 1) throw new CommandError(command, exitCode, stderr || out);
  const rtts = [...out.matchAll(/time=([\d.]+) ms/g)].map((m) => Number(m[1]) * 1000);
  if (rtts.length === 0) throw new Error(`no ping replies from ${podAddress(server, family)} to ${podAddress(client, family)}`);
  return { p50Micros: percentile(rtts, 50), p99Micros: percentile(rtts, 99), sent: options.count, received: rtts.length };
}
