/**
 * The hot path without the kernel: one real DataPlane over the in-memory
 * TUN and transport (daemon/tun/memory.ts, daemon/transport/memory.ts),
 * driven through both of its loops. Per round, the TUN hands it a batch of
 * packets for pods spread over every peer (egress: checks, peer lookup,
 * queueing on the transport, one flush), and the transport hands it a batch
 * of those packets as the peers would send them back (ingress: sender,
 * checks, one TUN write). Nothing is copied: the fakes replay their batch.
 * Runs in-process, needs no root, and reports medians over repeats.
 */
import pino from 'pino';
import { DataPlane, type Peer } from '../../daemon/dataplane/index.js';
import { internetChecksum } from '../../daemon/dataplane/ipv4-packet.js';
import type { DatagramBatch } from '../../daemon/transport/index.js';
import { MemoryNetwork } from '../../daemon/transport/memory.js';
import { MemoryTun } from '../../daemon/tun/memory.js';
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
  /** Median packets per second through the data plane, each packet once out (egress) and once in (ingress). */
  packetsPerSecond: number;
  /** The same, in bits of packet per second. */
  bitsPerSecond: number;
  repeatsPacketsPerSecond: number[];
}

const BATCH = 256;
const MTU = 1472;
const PORT = 8285;
const LOCAL = { network: 0x0a000000, prefixLength: 24 }; // 10.0.0.0/24 of 10.0.0.0/8
const LOCAL_IP = 0xc6120000; // 198.18.0.0

function peerAt(i: number): Peer {
  const ip = (0xc6120000 + 1 + i) >>> 0; // 198.18.x.y
  return { subnet: { network: (0x0a000000 + (i + 1) * 256) >>> 0, prefixLength: 24 }, endpoint: { address: '', ip, port: PORT } };
}

/** A UDP packet of `size` bytes from `source` to `destination`, header checksummed. */
function packet(size: number, source: number, destination: number): Buffer {
  const p = Buffer.alloc(size);
  p[0] = 0x45;
  p.writeUInt16BE(size, 2);
  p[8] = 64;
  p[9] = 17;
  p.writeUInt32BE(source, 12);
  p.writeUInt32BE(destination, 16);
  p.writeUInt16BE(internetChecksum(p, 0, 20), 10);
  return p;
}

/** Packets from our subnet to pods spread over every peer. */
function egressPackets(size: number, peers: Peer[]): Buffer[] {
  return Array.from({ length: BATCH }, (_, i) => packet(size, (LOCAL.network + 2) >>> 0, (peers[(i * 7919) % peers.length]!.subnet.network + 5) >>> 0));
}

/** The same packets as this node receives them: from each peer's subnet and endpoint to ours. */
function ingressBatch(size: number, peers: Peer[]): DatagramBatch {
  const buffer = Buffer.alloc(BATCH * MTU);
  const offsets = new Uint32Array(BATCH);
  const sourceIps = new Uint32Array(BATCH);
  const sourcePorts = new Uint16Array(BATCH).fill(PORT);
  for (let i = 0; i < BATCH; i++) {
    const peer = peers[(i * 7919) % peers.length]!;
    offsets[i] = i * MTU;
    packet(size, (peer.subnet.network + 5) >>> 0, (LOCAL.network + 2) >>> 0).copy(buffer, offsets[i]);
    sourceIps[i] = peer.endpoint.ip;
  }
  return { buffer, offsets, lengths: new Uint32Array(BATCH).fill(size), sourceIps, sourcePorts, count: BATCH };
}

export function benchEncap(options: EncapOptions): EncapFigure[] {
  const figures: EncapFigure[] = [];
  const logger = pino({ level: 'silent' });
  for (const peerCount of options.peerCounts) {
    const peers = Array.from({ length: peerCount }, (_, i) => peerAt(i));
    for (const size of options.sizes) {
      // The peers' endpoints are bound to nothing: the network counts the egress datagrams as lost, which costs a Map probe each.
      const tun = new MemoryTun({ batchCapacity: BATCH, mtu: MTU, keepWritten: false });
      const transport = new MemoryNetwork().open({ ip: LOCAL_IP, port: PORT }, { batchCapacity: BATCH });
      const plane = new DataPlane({ tun, transport, localSubnet: LOCAL, overlayAddress: LOCAL.network, maxPacket: MTU, logger });
      plane.setPeers(peers);
      plane.start((err) => {
        throw err;
      });
      tun.send(egressPackets(size, peers));
      const ingress = ingressBatch(size, peers);
      const rates: number[] = [];
      // Pass -1 is a warm-up, not counted: it pays for the JIT compiling the hot functions.
      for (let r = -1; r < options.repeats; r++) {
        let packets = 0;
        const start = performance.now();
        const deadline = start + options.millisPerRepeat;
        let now = start;
        while (now < deadline) {
          tun.replay();
          transport.receive(ingress);
          packets += BATCH;
          now = performance.now();
        }
        if (r >= 0) rates.push(packets / ((now - start) / 1000));
      }
      const counters = plane.snapshot();
      const dropped = [...Object.values(counters.egressDrops), ...Object.values(counters.ingressDrops)].reduce((a, b) => a + b, 0);
      if (dropped !== 0) {
        throw new Error(`the benchmark's own packets were dropped: ${JSON.stringify(counters)}`);
      }
      const packetsPerSecond = median(rates);
      figures.push({ packetBytes: size, peers: peerCount, packetsPerSecond, bitsPerSecond: packetsPerSecond * size * 8, repeatsPacketsPerSecond: rates });
      options.log?.(`encap ${String(size).padStart(4)} B, ${String(peerCount).padStart(5)} peers: ${(packetsPerSecond / 1e6).toFixed(2)} Mpps`);
    }
  }
  return figures;
}
