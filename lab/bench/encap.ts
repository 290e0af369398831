/**
 * The hot path without the kernel: per packet, the egress decision (IPv4
 * checks, peer lookup), the framing a send batch needs (offset, length and
 * endpoint into the transport's arrays: the datagram is the packet itself,
 * so nothing is copied), and the ingress checks on the receiving side.
 * Runs in-process, needs no root, and reports medians over repeats.
 */
import { PeerTable, type Peer } from '../../daemon/dataplane/index.js';
import { checkIngress } from '../../daemon/dataplane/receive.js';
import { routeEgress } from '../../daemon/dataplane/send.js';
import { internetChecksum } from '../../daemon/dataplane/ipv4-packet.js';
import { median } from './stats.js';

export interface EncapOptions {
  sizes: number[];
  peerCounts: number[];
  repeats: number;
  /** How long each repeat runs. */
  millisPerRepeat: number;
  log?: (line: string) => void;
}

export interface EncapFigure {
  packetBytes: number;
  peers: number;
  /** Median packets per second through egress + ingress decisions. */
  packetsPerSecond: number;
  /** The same, in bits of packet per second. */
  bitsPerSecond: number;
  repeatsPacketsPerSecond: number[];
}

const BATCH = 256;
const MTU = 1472;
const LOCAL = { network: 0x0a000000, prefixLength: 24 }; // 10.0.0.0/24 of 10.0.0.0/8

function peerAt(i: number): Peer {
  const ip = (0xc6120000 + 1 + i) >>> 0; // 198.18.x.y
  return { subnet: { network: (0x0a000000 + (i + 1) * 256) >>> 0, prefixLength: 24 }, endpoint: { address: '', ip, port: 8285 } };
}

/** A batch of UDP packets from our subnet to pods spread over every peer. */
function egressBatch(size: number, peers: Peer[]): { buffer: Buffer; offsets: Uint32Array; lengths: Uint32Array } {
  const buffer = Buffer.alloc(BATCH * MTU);
  const offsets = new Uint32Array(BATCH);
  const lengths = new Uint32Array(BATCH).fill(size);
  for (let i = 0; i < BATCH; i++) {
    const at = i * MTU;
    offsets[i] = at;
    buffer[at] = 0x45;
    buffer.writeUInt16BE(size, at + 2);
    buffer[at + 8] = 64;
    buffer[at + 9] = 17;
    buffer.writeUInt32BE((LOCAL.network + 2) >>> 0, at + 12);
    buffer.writeUInt32BE((peers[(i * 7919) % peers.length]!.subnet.network + 5) >>> 0, at + 16);
    buffer.writeUInt16BE(internetChecksum(buffer, at, 20), at + 10);
  }
  return { buffer, offsets, lengths };
}

/** The same packets as the receiving peer sees them: from the peer's subnet to ours. */
function ingressBatch(egress: ReturnType<typeof egressBatch>, table: PeerTable) {
  const buffer = Buffer.from(egress.buffer);
  const sourceIps = new Uint32Array(BATCH);
  for (let i = 0; i < BATCH; i++) {
    const at = egress.offsets[i]!;
    const peer = table.lookup(buffer.readUInt32BE(at + 16))!;
    buffer.writeUInt32BE((peer.subnet.network + 5) >>> 0, at + 12);
    buffer.writeUInt32BE((LOCAL.network + 2) >>> 0, at + 16);
    sourceIps[i] = peer.endpoint.ip;
  }
  return { buffer, offsets: egress.offsets, lengths: egress.lengths, sourceIps };
}

export function benchEncap(options: EncapOptions): EncapFigure[] {
  const figures: EncapFigure[] = [];
  // The transport's send arrays, as the batched transport fills them.
  const sendOffsets = new Uint32Array(BATCH);
  const sendLengths = new Uint32Array(BATCH);
  const sendIps = new Uint32Array(BATCH);
  const sendPorts = new Uint16Array(BATCH);
  for (const peerCount of options.peerCounts) {
    const peers = Array.from({ length: peerCount }, (_, i) => peerAt(i));
    const table = new PeerTable(24, peers);
    for (const size of options.sizes) {
      const egress = egressBatch(size, peers);
      const ingress = ingressBatch(egress, table);
      const rates: number[] = [];
      // Pass -1 is a warm-up, not counted: it pays for the JIT compiling the hot functions.
      for (let r = -1; r < options.repeats; r++) {
        let packets = 0;
        let rejected = 0;
        const start = performance.now();
        const deadline = start + options.millisPerRepeat;
        let now = start;
        while (now < deadline) {
          for (let i = 0; i < BATCH; i++) {
            const verdict = routeEgress(egress.buffer, egress.offsets[i]!, egress.lengths[i]!, table, MTU);
            if (typeof verdict === 'string') {
              rejected++;
              continue;
            }
            sendOffsets[i] = egress.offsets[i]!;
            sendLengths[i] = egress.lengths[i]!;
            sendIps[i] = verdict.endpoint.ip;
            sendPorts[i] = verdict.endpoint.port;
          }
          for (let i = 0; i < BATCH; i++) {
            if (checkIngress(ingress.buffer, ingress.offsets[i]!, ingress.lengths[i]!, ingress.sourceIps[i]!, 8285, table, LOCAL) !== null) rejected++;
          }
          packets += BATCH;
          now = performance.now();
        }
        if (rejected !== 0) throw new Error(`the benchmark's own packets were rejected ${rejected} times`);
        if (r >= 0) rates.push(packets / ((now - start) / 1000));
      }
      const packetsPerSecond = median(rates);
      figures.push({ packetBytes: size, peers: peerCount, packetsPerSecond, bitsPerSecond: packetsPerSecond * size * 8, repeatsPacketsPerSecond: rates });
      options.log?.(`encap ${String(size).padStart(4)} B, ${String(peerCount).padStart(5)} peers: ${(packetsPerSecond / 1e6).toFixed(2)} Mpps`);
    }
  }
  return figures;
}
