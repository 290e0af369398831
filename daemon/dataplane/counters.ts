/**
 * Packet counters. Every packet that enters the data plane leaves it either
 * forwarded or as exactly one drop with a reason, so the figures add up:
 *   tunPacketsRead      = udpPacketsSent    + sum(egressDrops)
 *   udpPacketsReceived  = tunPacketsWritten + sum(ingressDrops)
 */
import type { MalformedReason } from './ipv4-packet.js';

export type EgressDropReason =
  | MalformedReason
  | 'non-unicast'
  | 'no-route'
  | 'too-big'
  | 'send-queue-full';

export type IngressDropReason =
  | MalformedReason
  | 'unknown-sender'
  | 'unauthenticated'
  | 'replayed'
  | 'spoofed-source'
  | 'wrong-destination'
  | 'tun-write-failed';

const malformedReasons: readonly MalformedReason[] = ['not-ipv4', 'truncated', 'bad-header-length', 'bad-total-length'];

export const egressDropReasons: readonly EgressDropReason[] = [
  ...malformedReasons,
  'non-unicast',
  'no-route',
  'too-big',
  'send-queue-full',
];

export const ingressDropReasons: readonly IngressDropReason[] = [
  ...malformedReasons,
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
  /** Send failures the socket reported after accepting a datagram (e.g. EMSGSIZE, ENETUNREACH). */
  udpSendErrors = 0;
  udpPacketsReceived = 0;
  tunPacketsWritten = 0;
  tunBytesWritten = 0;
  icmpErrorsSent = 0;
  readonly egressDrops = zeroed(egressDropReasons);
  readonly ingressDrops = zeroed(ingressDropReasons);

  snapshot(): CountersSnapshot {
    return { ...this, egressDrops: { ...this.egressDrops }, ingressDrops: { ...this.ingressDrops } };
  }
}

export type CountersSnapshot = Omit<Counters, 'snapshot'>;

/** All zero: the figures of a data plane that has not started. */
export function emptyCounters(): CountersSnapshot {
  return new Counters().snapshot();
}
