// A packet capture on a namespace's interface (a pod's eth0, say): tcpdump
// writes pcap to its stdout and this parses the IPv4 packets out of it. It
// sees what the interface received, before the kernel judges it, so a packet
// the node should never have forwarded shows up here even if the pod's
// stack would then throw it away.
import type { ChildProcess } from 'node:child_process';
import type { Netns } from '../../lab/netns.js';
import { exited } from '../../lab/exec.js';

export interface CapturedPacket {
  source: string;
  destination: string;
  protocol: number;
  /** The IP id. */
  id: number;
  /** The flags and fragment offset field. */
  fragment: number;
  totalLength: number;
  /** The IP packet. */
  packet: Buffer;
}

export interface CaptureResult {
  packets: CapturedPacket[];
  /** What tcpdump reported the kernel dropped before it could read. */
  droppedByKernel: number;
}

export interface Capture {
  readonly process: ChildProcess;
  /** Stops tcpdump (by its pid) and parses what it captured. */
  stop(): Promise<CaptureResult>;
}

/** Starts capturing IPv4 packets arriving on `iface` in `ns`; resolves once tcpdump listens. */
export async function captureIPv4(ns: Netns, iface = 'eth0'): Promise<Capture> {
  const child = ns.spawn(['tcpdump', '-i', iface, '-nn', '-U', '-Q', 'in', '-B', '8192', '-w', '-', 'ip']);
  const chunks: Buffer[] = [];
  let stderr = '';
  child.stdout!.on('data', (chunk: Buffer) => chunks.push(chunk));
  child.stderr!.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
  await new Promise<void>((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`tcpdump in ${ns.name} did not start within 10 s: ${stderr}`)), 10_000);
    const check = () => {
      if (stderr.includes('listening on')) {
        clearTimeout(timer);
        resolve();
      }
    };
    child.stderr!.on('data', check);
    void exited(child).then((code) => {
      clearTimeout(timer);
      reject(new Error(`tcpdump in ${ns.name} exited with ${code}: ${stderr}`));
    });
  });
  return {
    process: child,
    stop: async () => {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGINT');
      const timer = setTimeout(() => child.kill('SIGKILL'), 5000);
      await exited(child);
      clearTimeout(timer);
      const dropped = /(\d+) packets? dropped by kernel/.exec(stderr);
      return { packets: parsePcap(Buffer.concat(chunks)), droppedByKernel: dropped ? Number(dropped[1]) : 0 };
    },
  };
}

const fmt = (b: Buffer, at: number) => `${b[at]}.${b[at + 1]}.${b[at + 2]}.${b[at + 3]}`;

/** The IPv4 packets of a pcap file of Ethernet frames. */
export function parsePcap(file: Buffer): CapturedPacket[] {
  if (file.length < 24) throw new Error(`not a pcap file: ${file.length} bytes`);
  const magic = file.readUInt32LE(0);
  const littleEndian = magic === 0xa1b2c3d4 || magic === 0xa1b23c4d;
  if (!littleEndian && magic !== 0xd4c3b2a1 && magic !== 0x4d3cb2a1) throw new Error(`not a pcap file: magic ${magic.toString(16)}`);
  const u32 = (at: number) => (littleEndian ? file.readUInt32LE(at) : file.readUInt32BE(at));
  const linkType = u32(20);
  if (linkType !== 1) throw new Error(`pcap link type ${linkType}, not Ethernet`);
  const packets: CapturedPacket[] = [];
  for (let at = 24; at + 16 <= file.length; ) {
    const captured = u32(at + 8);
    const frame = file.subarray(at + 16, at + 16 + captured);
    at += 16 + captured;
    if (frame.length < 34 || frame.readUInt16BE(12) !== 0x0800) continue;
    const packet = frame.subarray(14);
    packets.push({
      source: fmt(packet, 12),
      destination: fmt(packet, 16),
      protocol: packet[9]!,
      id: packet.readUInt16BE(4),
      fragment: packet.readUInt16BE(6),
      totalLength: packet.readUInt16BE(2),
      packet,
    });
  }
  return packets;
}
