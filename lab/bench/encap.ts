/**
 * The hot path without the kernel: one real DataPlane over the in-memory
 * TUN and transport (daemon/tun/memory.ts, daemon/transport/memory.ts),
 * driven through both of its loops. Per round, the TUN hands it a batch of
 * packets for pods spread over every peer (egress: checks, peer lookup,
 * queueing on the transport, one flush), and the transport hands it a batch
 * of those packets as the peers would send them back (ingress: sender,
 * checks, one TUN write). Nothing is copied: the fakes replay their batch.
 * IPv6 packets go through a dual-stack plane whose peers each lease a /64
 * beside their /24. Runs in-process, needs no root, and reports medians
 * over repeats.
 */
import pino from 'pino';
import { DataPlane, type Peer } from '../../daemon/dataplane/index.js';
import { internetChecksum } from '../../daemon/dataplane/ipv4-packet.js';
import { nthSubnet6, parseCidr6, writeIPv6, type Cidr6 } from '../../daemon/net/ipv6.js';
import type { DatagramBatch } from '../../daemon/transport/index.js';
import { MemoryNetwork } from '../../daemon/transport/memory.js';
import { MemoryTun } from '../../daemon/tun/memory.js';
import { median } from './stats.js';

/** The inner packets' IP version. */
export type Family = 4 | 6;

export interface EncapOptions {
  families: Family[];
  sizes: number[];
  peerCounts: number[];
  repeats: number;
  /** How long each repeat runs. */
  millisPerRepeat: number;
  log?: (line: string) => void;
}

export interface EncapFigure {
  family: Family;
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
/** The IPv6 network whose k-th /64 pairs with the k-th /24 of 10.0.0.0/8. */
const NETWORK6 = parseCidr6('fd00:10::/40');
const LOCAL6 = nthSubnet6(NETWORK6, 64, 0);

/** Peer i; on an IPv6 run it leases a /64 too, and this node is dual-stack, while an IPv4 run measures an IPv4-only node. */
function peerAt(i: number, family: Family): Peer {
  const ip = (0xc6120000 + 1 + i) >>> 0; // 198.18.x.y
  const subnet = { network: (0x0a000000 + (i + 1) * 256) >>> 0, prefixLength: 24 };
  const endpoint = { address: '', ip, port: PORT };
  return family === 6 ? { subnet, subnet6: nthSubnet6(NETWORK6, 64, i + 1), endpoint } : { subnet, endpoint };
}

/** A host in a subnet of either family: its fifth address, or its second for our own pod. */
type Host = { family: 4; subnet: number; host: number } | { family: 6; subnet: Cidr6; host: number };

/** A UDP packet of `size` bytes between two hosts of one family, the IPv4 header checksummed. */
function packet(size: number, source: Host, destination: Host): Buffer {
  const p = Buffer.alloc(size);
  if (source.family === 6 && destination.family === 6) {
    p[0] = 0x60;
    p.writeUInt16BE(size - 40, 4);
    p[6] = 17;
    p[7] = 64;
    writeIPv6(p, 8, source.subnet.network);
    p[23] = source.host;
    writeIPv6(p, 24, destination.subnet.network);
    p[39] = destination.host;
    return p;
  }
  if (source.family !== 4 || destination.family !== 4) throw new Error('a packet is of one family');
  p[0] = 0x45;
  p.writeUInt16BE(size, 2);
  p[8] = 64;
  p[9] = 17;
  p.writeUInt32BE((source.subnet + source.host) >>> 0, 12);
  p.writeUInt32BE((destination.subnet + destination.host) >>> 0, 16);
  p.writeUInt16BE(internetChecksum(p, 0, 20), 10);
  return p;
}

const ourPod = (family: Family): Host => (family === 4 ? { family, subnet: LOCAL.network, host: 2 } : { family, subnet: LOCAL6, host: 2 });
const podOf = (peer: Peer, family: Family): Host => (family === 4 ? { family, subnet: peer.subnet!.network, host: 5 } : { family, subnet: peer.subnet6!, host: 5 });

/** Packets from our subnet to pods spread over every peer. */
function egressPackets(family: Family, size: number, peers: Peer[]): Buffer[] {
  return Array.from({ length: BATCH }, (_, i) => packet(size, ourPod(family), podOf(peers[(i * 7919) % peers.length]!, family)));
}

/** The same packets as this node receives them: from each peer's subnet and endpoint to ours. */
function ingressBatch(family: Family, size: number, peers: Peer[]): DatagramBatch {
  const buffer = Buffer.alloc(BATCH * MTU);
  const offsets = new Uint32Array(BATCH);
  const sourceIps = new Uint32Array(BATCH);
  const sourcePorts = new Uint16Array(BATCH).fill(PORT);
  for (let i = 0; i < BATCH; i++) {
    const peer = peers[(i * 7919) % peers.length]!;
    offsets[i] = i * MTU;
    packet(size, podOf(peer, family), ourPod(family)).copy(buffer, offsets[i]);
    sourceIps[i] = peer.endpoint.ip;
  }
  return { buffer, offsets, lengths: new Uint32Array(BATCH).fill(size), sourceIps, sourcePorts, count: BATCH };
}

export function benchEncap(options: EncapOptions): EncapFigure[] {
  const figures: EncapFigure[] = [];
  const logger = pino({ level: 'silent' });
  for (const family of options.families) {
    for (const peerCount of options.peerCounts) {
      const peers = Array.from({ length: peerCount }, (_, i) => peerAt(i, family));
      for (const size of options.sizes) {
        // The peers' endpoints are bound to nothing: the network counts the egress datagrams as lost, which costs a Map probe each.
        const tun = new MemoryTun({ batchCapacity: BATCH, mtu: MTU, keepWritten: false });
        const transport = new MemoryNetwork().open({ ip: LOCAL_IP, port: PORT }, { batchCapacity: BATCH });
        const plane = new DataPlane({ tun, transport, localSubnet: LOCAL, overlayAddress: LOCAL.network, ...(family === 6 ? { localSubnet6: LOCAL6 } : {}), maxPacket: MTU, logger });
        plane.setPeers(peers);
        plane.start((err) => {
          throw err;
        });
        tun.send(egressPackets(family, size, peers));
        const ingress = ingressBatch(family, size, peers);
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
        figures.push({ family, packetBytes: size, peers: peerCount, packetsPerSecond, bitsPerSecond: packetsPerSecond * size * 8, repeatsPacketsPerSecond: rates });
        options.log?.(`encap IPv${family} ${String(size).padStart(4)} B, ${String(peerCount).padStart(5)} peers: ${(packetsPerSecond / 1e6).toFixed(2)} Mpps`);
      }
    }
  }
  return figures;
}
