/**
 * Packet counters. Every packet that enters the data plane leaves it either
 * forwarded or as exactly one drop with a reason, so the figures add up:
 *   tunPacketsRead      = udpPacketsSent    + sum(egressDrops)
 *   udpPacketsReceived  = tunPacketsWritten + sum(ingressDrops)
 * Both families count in the same figures; the reasons of one family that
 * the other lacks are its own names in the one list.
 */
import type { PacketTransport } from '../transport/index.js';
import type { PacketMalformedReason } from './ipv6-packet.js';

// 'ipv4-disabled': an IPv4 packet at a node without an IPv4 subnet (an IPv6-only cluster: EnableIPv4 is false).
// 'ipv6-disabled': an IPv6 packet at a node without an IPv6 subnet (the network config has no EnableIPv6).
export type EgressDropReason =
  | PacketMalformedReason
  | 'ipv4-disabled'
  | 'ipv6-disabled'
  | 'non-unicast'
  | 'no-route'
  | 'too-big'
  | 'send-queue-full';

// 'segments-overflow': datagrams the socket received but had no room to hand on, the segments of a UDP GRO
// message (a local sender's GSO train) beyond its read's room; the transport counts them, ingress never sees them.
export type IngressDropReason =
  | PacketMalformedReason
  | 'ipv4-disabled'
  | 'ipv6-disabled'
  | 'segments-overflow'
  | 'unknown-sender'
  | 'unauthenticated'
  | 'replayed'
  | 'spoofed-source'
  | 'wrong-destination'
  | 'tun-write-failed';

// IPv4's first, in their old order; 'truncated' is both families'.
const malformedReasons: readonly PacketMalformedReason[] = [
  'not-ipv4',
  'truncated',
  'bad-header-length',
  'bad-total-length',
  'bad-payload-length',
  'bad-extension-header',
];

export const egressDropReasons: readonly EgressDropReason[] = [
  ...malformedReasons,
  'ipv4-disabled',
  'ipv6-disabled',
  'non-unicast',
  'no-route',
  'too-big',
  'send-queue-full',
];

export const ingressDropReasons: readonly IngressDropReason[] = [
  ...malformedReasons,
  'ipv4-disabled',
  'ipv6-disabled',
  'segments-overflow',
  'unknown-sender',
  'unauthenticated',
  'replayed',
  'spoofed-source',
  'wrong-destination',
  'tun-write-failed',
];

function zeroed<K extends string>(keys: readonly K[]): Record<K, number> {
  return Object.fromEntries(keys.map((k) => [k, 0])) as Record<K, number>;
}

export class Counters {
  tunPacketsRead = 0;
  udpPacketsSent = 0;
  /** Bytes handed to the socket, including the few a full socket buffer then refused. */
  udpBytesSent = 0;
  udpPacketsReceived = 0;
  tunPacketsWritten = 0;
  tunBytesWritten = 0;
  icmpErrorsSent = 0;
  readonly egressDrops = zeroed(egressDropReasons);
  readonly ingressDrops = zeroed(ingressDropReasons);

  /**
   * The figures with the transport's counts merged in: its send errors, and
   * the datagrams it received but never handed on, which count as received
   * and as dropped ('segments-overflow'), so the identities hold.
   */
  snapshot(transport: TransportCounts): CountersSnapshot {
    const overflowed = transport.segmentsOverflowed ?? 0;
    const figures: Partial<Record<PacketCounterKey, number>> = {};
    for (const { key } of packetCounters) figures[key] = key === 'udpSendErrors' ? (transport.sendErrors ?? 0) : this[key];
    figures.udpPacketsReceived = this.udpPacketsReceived + overflowed;
    const ingressDrops = { ...this.ingressDrops, 'segments-overflow': this.ingressDrops['segments-overflow'] + overflowed };
    return { ...(figures as Record<PacketCounterKey, number>), egressDrops: { ...this.egressDrops }, ingressDrops };
  }
}

/** What a snapshot takes from the transport: counts of datagrams that never reached the data plane's loops. */
export type TransportCounts = Pick<PacketTransport, 'sendErrors' | 'segmentsOverflowed'>;

/** The packet counters a snapshot reports: the data plane's own, and the transport's send errors. */
export type PacketCounterKey = Exclude<keyof Counters, 'egressDrops' | 'ingressDrops' | 'snapshot'> | 'udpSendErrors';

export type CountersSnapshot = { readonly [K in PacketCounterKey]: number } & {
  readonly egressDrops: Readonly<Record<EgressDropReason, number>>;
  readonly ingressDrops: Readonly<Record<IngressDropReason, number>>;
};

/** All zero: the figures of a data plane that has not started. */
export function emptyCounters(): CountersSnapshot {
  return new Counters().snapshot({});
}

export interface PacketCounter {
  readonly key: PacketCounterKey;
  /** The Prometheus counter (GET /metrics). */
  readonly metric: string;
  readonly help: string;
  /** The label `miniflannel status` prints. */
  readonly title: string;
  /** Counts bytes, not packets. */
  readonly bytes?: true;
}

/** The packet counters in the order of the packet path, outbound then inbound: the one list metrics and `miniflannel status` read. */
export const packetCounters: readonly PacketCounter[] = [
  { key: 'tunPacketsRead', metric: 'miniflannel_tun_read_packets_total', title: 'TUN packets read', help: 'Packets read from the TUN device (after cutting offloaded super-packets)' },
  { key: 'udpPacketsSent', metric: 'miniflannel_udp_sent_packets_total', title: 'UDP packets sent', help: 'Datagrams sent to peers' },
  { key: 'udpBytesSent', metric: 'miniflannel_udp_sent_bytes_total', title: 'UDP bytes sent', help: 'Bytes handed to the UDP socket', bytes: true },
  { key: 'udpSendErrors', metric: 'miniflannel_udp_send_errors_total', title: 'UDP send errors', help: 'Datagrams the socket reported failing after accepting them' },
  { key: 'udpPacketsReceived', metric: 'miniflannel_udp_received_packets_total', title: 'UDP packets received', help: 'Datagrams received on the overlay port' },
  { key: 'tunPacketsWritten', metric: 'miniflannel_tun_written_packets_total', title: 'TUN packets written', help: 'Packets delivered into the TUN device' },
  { key: 'tunBytesWritten', metric: 'miniflannel_tun_written_bytes_total', title: 'TUN bytes written', help: 'Bytes delivered into the TUN device', bytes: true },
  { key: 'icmpErrorsSent', metric: 'miniflannel_icmp_errors_sent_total', title: 'ICMP errors sent', help: 'ICMP and ICMPv6 errors written back into the TUN (no route, fragmentation needed, packet too big)' },
];
