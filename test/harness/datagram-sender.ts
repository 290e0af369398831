// Sends many datagrams from inside a namespace, fast: the project's native
// UdpSocket (sendmmsg, UDP GSO) bound to the address and port given, so the
// receiving daemon sees exactly that endpoint.
//   fuzz <FuzzJob as JSON>    the hostile mix of hostile-datagrams.ts, paced;
//                             prints a FuzzReport as one JSON line
//   flood <FloodJob as JSON>  as fast as the kernel takes them, for a while;
//                             prints a FloodReport as one JSON line
//
// Pacing: a fuzz run compares the daemon's drop counters with what was sent
// per category, so no datagram may be lost before the daemon sees it. The
// sender keeps at most `window` datagrams unacknowledged, reading the
// daemon's udpPacketsReceived from its /status; a window below the kernel's
// per-CPU backlog (1000) and far below the socket buffer loses nothing.
import dgram from 'node:dgram';
import { setTimeout as sleep } from 'node:timers/promises';
import { loadNative, type NativeUdpSocket } from '../../daemon/native.js';
import { parseIPv4 } from '../../daemon/net/ipv4.js';
import { DatagramFactory, Rng, fuzzItems, type Category, type FuzzTarget } from './hostile-datagrams.js';
import { ipv4Packet } from './packets.js';

export interface FuzzJob {
  bind: string;
  bindPort: number;
  to: string;
  toPort: number;
  /** The target daemon's /status URL, reachable from the sender's namespace. */
  statusUrl: string;
  seed: number;
  counts: Partial<Record<Category, number>>;
  /** Empty datagrams, sent first through node:dgram (sendmmsg here skips empty ones). */
  empty: number;
  target: FuzzTarget;
  /** Datagrams sent but not yet counted by the daemon, at most. */
  window?: number;
}

export interface FuzzReport {
  sent: number;
  byCategory: Record<string, number>;
  /** Datagrams per reference verdict: 'delivered' or an ingress drop reason. */
  verdicts: Record<string, number>;
  /** Markers the pod's UDP listener must print, one per valid item. */
  podMarkers: string[];
  /** `<source>/<ip id>` of the packets that must reach the pod. */
  podKeys: string[];
  /** Datagrams the daemon had not counted when the sender gave up waiting (lost on the way). */
  unacknowledged: number;
  polls: number;
  elapsedMs: number;
}

export interface FloodJob {
  bind: string;
  bindPort: number;
  /** Where to send, round robin; `podIp` is the inner destination for 'valid' floods. */
  targets: Array<{ ip: string; port: number; podIp: string }>;
  seconds: number;
  /** 'valid': well-formed UDP packets from `sourceSubnet` to each target's pod; 'garbage': random bytes. */
  kind: 'valid' | 'garbage';
  sourceSubnet: string;
  podPort: number;
  seed: number;
}

export interface FloodReport {
  /** Datagrams the kernel took. */
  sent: number;
  /** Datagrams the sender's own socket refused (its buffer full). */
  refused: number;
  elapsedMs: number;
}

const CHUNK = 256;
const MAX_DATAGRAM = 1600;

class Outbox {
  readonly arena = Buffer.alloc(CHUNK * MAX_DATAGRAM);
  readonly offsets = new Uint32Array(CHUNK);
  readonly lengths = new Uint32Array(CHUNK);
  readonly ips: Uint32Array;
  readonly ports: Uint16Array;
  count = 0;

  constructor(ip: number, port: number) {
    this.ips = new Uint32Array(CHUNK).fill(ip);
    this.ports = new Uint16Array(CHUNK).fill(port);
    for (let i = 0; i < CHUNK; i++) this.offsets[i] = i * MAX_DATAGRAM;
  }

  push(datagram: Buffer): void {
    datagram.copy(this.arena, this.offsets[this.count]);
    this.lengths[this.count++] = datagram.length;
  }

  /** Sends everything queued, waiting while the socket's buffer is full. */
  async flush(socket: NativeUdpSocket): Promise<void> {
    let done = 0;
    let since = performance.now();
    while (done < this.count) {
      const rest = this.count - done;
      const n = socket.sendBatch(this.arena, this.offsets.subarray(done), this.lengths.subarray(done), this.ips.subarray(done), this.ports.subarray(done), rest);
      done += n;
      if (n > 0) since = performance.now();
      else if (performance.now() - since > 10_000) throw new Error(`the socket took none of ${rest} datagrams for 10 s`);
      if (done < this.count) await sleep(1);
    }
    this.count = 0;
  }
}

async function fuzz(job: FuzzJob): Promise<FuzzReport> {
  const started = performance.now();
  const window = job.window ?? 768;
  let polls = 0;
  const received = async (): Promise<number> => {
    polls++;
    const response = await fetch(job.statusUrl);
    return ((await response.json()) as { counters: { udpPacketsReceived: number } }).counters.udpPacketsReceived;
  };
  const base = await received();
  let sent = 0;
  let acknowledged = 0;
  /** Waits until at most `allowed` datagrams are unacknowledged; false if the daemon stopped counting for `patienceMs`. */
  const settle = async (allowed: number, patienceMs: number): Promise<boolean> => {
    let last = acknowledged;
    let since = performance.now();
    while (sent - acknowledged > allowed) {
      acknowledged = (await received()) - base;
      if (acknowledged !== last) {
        last = acknowledged;
        since = performance.now();
      } else if (performance.now() - since > patienceMs) {
        return false;
      } else {
        await sleep(2);
      }
    }
    return true;
  };

  const report: FuzzReport = { sent: 0, byCategory: {}, verdicts: {}, podMarkers: [], podKeys: [], unacknowledged: 0, polls: 0, elapsedMs: 0 };
  const tally = (record: Record<string, number>, key: string, n = 1) => (record[key] = (record[key] ?? 0) + n);

  if (job.empty > 0) {
    const socket = dgram.createSocket('udp4');
    await new Promise<void>((resolve) => socket.bind(job.bindPort, job.bind, resolve));
    for (let i = 0; i < job.empty; i++) {
      await new Promise<void>((resolve, reject) => socket.send(Buffer.alloc(0), job.toPort, job.to, (err) => (err ? reject(err) : resolve())));
      sent++;
      if (sent - acknowledged >= window) await settle(window / 2, 5000);
    }
    await new Promise<void>((resolve) => socket.close(resolve));
    tally(report.byCategory, 'empty', job.empty);
    tally(report.verdicts, job.target.known ? 'truncated' : 'unknown-sender', job.empty);
  }

  const factory = new DatagramFactory(job.seed, job.target);
  const { UdpSocket } = loadNative();
  const socket = new UdpSocket(job.bind, job.bindPort, 8 << 20);
  const outbox = new Outbox(parseIPv4(job.to), job.toPort);
  try {
    for (const item of fuzzItems(factory, job.counts, job.seed)) {
      if (outbox.count + item.datagrams.length > CHUNK) {
        if (sent - acknowledged > window) await settle(window, 5000);
        await outbox.flush(socket);
      }
      for (const datagram of item.datagrams) {
        outbox.push(datagram);
        sent++;
        tally(report.verdicts, factory.verdict(datagram));
      }
      tally(report.byCategory, item.category, item.datagrams.length);
      if (item.podMarker !== undefined) report.podMarkers.push(item.podMarker);
      if (item.podKey !== undefined) report.podKeys.push(item.podKey);
    }
    // `sent` already counts what sits in the outbox.
    await settle(window, 5000);
    await outbox.flush(socket);
    await settle(0, 10_000);
  } finally {
    socket.close();
  }
  report.sent = sent;
  report.unacknowledged = sent - acknowledged;
  report.polls = polls;
  report.elapsedMs = Math.round(performance.now() - started);
  return report;
}

async function flood(job: FloodJob): Promise<FloodReport> {
  const rng = new Rng(job.seed);
  const { UdpSocket } = loadNative();
  const socket = new UdpSocket(job.bind, job.bindPort, 8 << 20);
  const source = parseIPv4(job.sourceSubnet.split('/')[0]!);
  // A ring of datagrams of varied sizes, so that GSO cannot pack them and every one costs the receiver a datagram.
  const ring = 1024;
  const arena = Buffer.alloc(ring * MAX_DATAGRAM);
  const offsets = new Uint32Array(ring);
  const lengths = new Uint32Array(ring);
  const ips = new Uint32Array(ring);
  const ports = new Uint16Array(ring);
  for (let i = 0; i < ring; i++) {
    const target = job.targets[i % job.targets.length]!;
    const size = rng.int(64, 1400);
    let datagram: Buffer;
    if (job.kind === 'valid') {
      const udp = Buffer.alloc(size - 20);
      udp.writeUInt16BE(rng.int(1024, 65535), 0);
      udp.writeUInt16BE(job.podPort, 2);
      udp.writeUInt16BE(udp.length, 4);
      const host = (source + rng.int(1, 254)) >>> 0;
      datagram = ipv4Packet({ source: `${host >>> 24}.${(host >>> 16) & 255}.${(host >>> 8) & 255}.${host & 255}`, destination: target.podIp, payload: udp });
    } else {
      datagram = rng.fill(Buffer.alloc(size));
    }
    offsets[i] = i * MAX_DATAGRAM;
    datagram.copy(arena, offsets[i]);
    lengths[i] = datagram.length;
    ips[i] = parseIPv4(target.ip);
    ports[i] = target.port;
  }
  const started = performance.now();
  const deadline = started + job.seconds * 1000;
  let sent = 0;
  let refused = 0;
  try {
    while (performance.now() < deadline) {
      const n = socket.sendBatch(arena, offsets, lengths, ips, ports, ring);
      sent += n;
      refused += ring - n;
      if (n < ring) await sleep(0);
    }
  } finally {
    socket.close();
  }
  return { sent, refused, elapsedMs: Math.round(performance.now() - started) };
}

const [mode, json] = process.argv.slice(2);
if ((mode !== 'fuzz' && mode !== 'flood') || json === undefined) {
  process.stderr.write('usage: datagram-sender fuzz <FuzzJob JSON> | flood <FloodJob JSON>\n');
  process.exit(2);
}
const result = mode === 'fuzz' ? await fuzz(JSON.parse(json) as FuzzJob) : await flood(JSON.parse(json) as FloodJob);
process.stdout.write(`${JSON.stringify(result)}\n`);
// fetch keeps its connection to the daemon alive for a while; nothing is left to do.
process.exit(0);
