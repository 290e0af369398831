// Real DataPlanes over the in-memory TUN and transport: nodes that can be
// cross-wired in one process, and a way to feed one node's ingress any
// datagram from any sender, through the production path.
import assert from 'node:assert/strict';
import pino from 'pino';
import { DataPlane, type CountersSnapshot, type Peer } from '../../daemon/dataplane/index.js';
import type { Sealer } from '../../daemon/dataplane/sealing.js';
import { formatIPv4, parseCidr, type Cidr } from '../../daemon/net/ipv4.js';
import { parseCidr6, parseIPv6, type Cidr6 } from '../../daemon/net/ipv6.js';
import { parseEndpoint, type DatagramBatch } from '../../daemon/transport/index.js';
import { MemoryNetwork, MemoryTransport } from '../../daemon/transport/memory.js';
import { MemoryTun } from '../../daemon/tun/memory.js';
import { ipv4Packet } from '../harness/packets.js';
import { udp6 } from './ipv6-packets.js';

export const PORT = 8285;
export const MAX_PACKET = 1472;

export interface MemoryNode {
  readonly plane: DataPlane;
  readonly tun: MemoryTun;
  readonly transport: MemoryTransport;
  readonly subnet?: Cidr;
  readonly subnet6?: Cidr6;
  /** This node as its peers see it. */
  readonly peer: Peer;
}

export interface MemoryNodeOptions {
  /** The node's IPv4 subnet; without it the node carries IPv6 only. It or subnet6 is required. */
  subnet?: string;
  /** The node's IPv6 subnet (dual-stack or IPv6-only); without it the node carries IPv4 only. */
  subnet6?: string;
  /** The source of its ICMPv6 errors; default the data plane's. */
  overlayAddress6?: string;
  /** The node's IPv4 underlay address; with ip6 given, only the id its seals name (its peers' sealerId). */
  ip: number;
  /** The node's IPv6 underlay address: its transport, and so its peers' endpoints, are IPv6. */
  ip6?: string;
  port?: number;
  maxPacket?: number;
  /** The TUN's MTU, the largest packet it reads; default maxPacket, as in the daemon. */
  tunMtu?: number;
  sealer?: Sealer;
  tunBatchCapacity?: number;
  transportBatchCapacity?: number;
  icmpRatePerSecond?: number;
}

export function memoryNode(network: MemoryNetwork, options: MemoryNodeOptions): MemoryNode {
  const subnet = options.subnet === undefined ? undefined : parseCidr(options.subnet);
  const subnet6 = options.subnet6 === undefined ? undefined : parseCidr6(options.subnet6);
  const port = options.port ?? PORT;
  const tun = new MemoryTun({ batchCapacity: options.tunBatchCapacity ?? 64, mtu: options.tunMtu ?? options.maxPacket ?? MAX_PACKET });
  const ip6 = options.ip6 === undefined ? undefined : parseIPv6(options.ip6);
  const transport = network.open(ip6 ? { ip6, port } : { ip: options.ip, port }, { batchCapacity: options.transportBatchCapacity ?? 256 });
  const plane = new DataPlane({
    tun,
    transport,
    ...(subnet ? { localSubnet: subnet, overlayAddress: subnet.network } : {}),
    ...(subnet6 ? { localSubnet6: subnet6 } : {}),
    ...(options.overlayAddress6 !== undefined ? { overlayAddress6: parseIPv6(options.overlayAddress6) } : {}),
    maxPacket: options.maxPacket ?? MAX_PACKET,
    logger: pino({ level: 'silent' }),
    ...(options.icmpRatePerSecond !== undefined ? { icmpRatePerSecond: options.icmpRatePerSecond } : {}),
    ...(options.sealer ? { sealer: options.sealer } : {}),
  });
  plane.start((err) => {
    throw err;
  });
  const endpoint = parseEndpoint(options.ip6 ?? formatIPv4(options.ip), port);
  const subnets = { ...(subnet ? { subnet } : {}), ...(subnet6 ? { subnet6 } : {}) };
  const peer: Peer = { ...subnets, endpoint, sealerId: options.ip };
  return { plane, tun, transport, ...subnets, peer };
}

/** Each node knows every other as its peer. */
export function meshed(...nodes: MemoryNode[]): void {
  for (const node of nodes) node.plane.setPeers(nodes.filter((n) => n !== node).map((n) => n.peer));
}

const sum = (drops: Readonly<Record<string, number>>) => Object.values(drops).reduce((a, b) => a + b, 0);

/** The two identities every snapshot must satisfy: all read is forwarded or dropped with a reason. */
export function unaccounted(c: CountersSnapshot): { egress: number; ingress: number } {
  return {
    egress: c.tunPacketsRead - c.udpPacketsSent - sum(c.egressDrops),
    ingress: c.udpPacketsReceived - c.tunPacketsWritten - sum(c.ingressDrops),
  };
}

/** A received datagram's sender: an IPv4 address (host order) or, for an IPv6 underlay, ip6's text. */
export type DatagramSource = { ip: number; ip6?: undefined; port: number } | { ip?: undefined; ip6: string; port: number };

/**
 * Lays datagrams out in one buffer, at uneven offsets, as a transport's read hands them over;
 * as an IPv6 transport's if the first sender is IPv6 (then all must be).
 */
export function datagramBatch(datagrams: ReadonlyArray<{ data: Buffer } & DatagramSource>): DatagramBatch {
  const offsets = new Uint32Array(datagrams.length);
  const lengths = new Uint32Array(datagrams.length);
  let size = 0;
  for (const [i, d] of datagrams.entries()) {
    offsets[i] = size + 3;
    lengths[i] = d.data.length;
    size += d.data.length + 3 + 24;
  }
  const buffer = Buffer.alloc(size, 0x45);
  for (const [i, d] of datagrams.entries()) d.data.copy(buffer, offsets[i]);
  return {
    buffer,
    offsets,
    lengths,
    ...(datagrams[0]?.ip6 === undefined
      ? { sourceIps: Uint32Array.from(datagrams, (d) => d.ip!) }
      : { sourceIps: new Uint32Array(0), sourceIps6: Uint32Array.from(datagrams.flatMap((d) => parseIPv6(d.ip6!))) }),
    sourcePorts: Uint16Array.from(datagrams, (d) => d.port),
    count: datagrams.length,
  };
}

/**
 * What the node's ingress did with one datagram from ip:port (an IPv4
 * address in host order, or an IPv6 one's text over an IPv6 underlay): null
 * if it wrote the packet to the TUN (which is then returned in `delivered`),
 * else the one drop reason it counted.
 */
export function ingressVerdict(node: MemoryNode, data: Buffer, ip: number | string, port: number): { verdict: string | null; delivered?: Buffer } {
  const before = node.plane.snapshot();
  node.transport.receive(datagramBatch([typeof ip === 'number' ? { data, ip, port } : { data, ip6: ip, port }]));
  const after = node.plane.snapshot();
  const written = after.tunPacketsWritten - before.tunPacketsWritten;
  const reasons = Object.keys(after.ingressDrops).filter(
    (r) => after.ingressDrops[r as keyof typeof after.ingressDrops] !== before.ingressDrops[r as keyof typeof before.ingressDrops],
  );
  if (after.udpPacketsReceived - before.udpPacketsReceived !== 1 || written + reasons.length !== 1) {
    throw new Error(`one datagram was not counted exactly once: written ${written}, drops ${reasons.join(',')}`);
  }
  if (written === 1) return { verdict: null, delivered: node.tun.takeWritten()[0]! };
  return { verdict: reasons[0]! };
}

export { MemoryNetwork };

/** Pods on the two nodes of a pair (10.244.1.0/24 + fd00:10:244:1::/64, and 10.244.2.0/24 + fd00:10:244:2::/64). */
export const podA4 = '10.244.1.7';
export const podB4 = '10.244.2.9';
export const podA6 = 'fd00:10:244:1::7';
export const podB6 = 'fd00:10:244:2::9';

/** A UDP packet of `size` bytes between the pods of A and B, of either family, numbered in its body. */
export function podPacket(family: 4 | 6, fromA: boolean, n: number, size = 80): Buffer {
  const body = Buffer.alloc(size - (family === 4 ? 28 : 48), n & 0xff);
  body.writeUInt32BE(n, 0);
  if (family === 6) return fromA ? udp6(podA6, podB6, body) : udp6(podB6, podA6, body);
  const udp = Buffer.concat([Buffer.alloc(8), body]);
  udp.writeUInt16BE(udp.length, 4);
  return fromA ? ipv4Packet({ source: podA4, destination: podB4, payload: udp }) : ipv4Packet({ source: podB4, destination: podA4, payload: udp });
}

/**
 * Sends `fromA` into a's TUN and `fromB` into b's and asserts that each
 * arrives at the other's TUN byte for byte, that every datagram was the bare
 * packet, and that both nodes' counters add up.
 */
export function assertCarriedBothWays(a: MemoryNode, b: MemoryNode, fromA: Buffer[], fromB: Buffer[]): void {
  a.tun.send(fromA);
  b.tun.send(fromB);
  assert.deepEqual(b.tun.takeWritten(), fromA);
  assert.deepEqual(a.tun.takeWritten(), fromB);
  const [sa, sb] = [a.plane.snapshot(), b.plane.snapshot()];
  assert.equal(sa.udpPacketsSent, fromA.length);
  assert.equal(sb.udpPacketsReceived, fromA.length);
  assert.equal(sb.tunPacketsWritten, fromA.length);
  assert.equal(sa.udpBytesSent, fromA.reduce((n, p) => n + p.length, 0), 'the datagram is the bare packet');
  assert.equal(sb.tunBytesWritten, sa.udpBytesSent);
  assert.equal(sb.udpPacketsSent, fromB.length);
  assert.equal(sa.tunPacketsWritten, fromB.length);
  for (const s of [sa, sb]) assert.deepEqual(unaccounted(s), { egress: 0, ingress: 0 });
}
