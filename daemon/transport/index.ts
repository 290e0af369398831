/**
 * The packet transport: the underlay side of the data plane. It carries
 * bare IP packets (of either family) as UDP datagrams between nodes
 * (flannel's UDP wire format: the payload is the packet, nothing else).
 *
 * The underlay is IPv4 or IPv6. A socket transport is one family, its bind
 * address's, and reaches only endpoints of that family; a dual one (dual.ts)
 * joins one of each, and reaches both.
 */
import { tryParseIPv4 } from '../net/ipv4.js';
import { formatIPv6, parseIPv6, type IPv6Address } from '../net/ipv6.js';
import type { PacketBatch } from '../net/packet-batch.js';

/** The IP version of an underlay address. */
export type UnderlayFamily = 4 | 6;

/** What a transport reaches: endpoints of one family, or of both. */
export type TransportFamily = UnderlayFamily | 'dual';

export interface Endpoint {
  /** The address as the socket API wants it: a dotted quad, or an IPv6 address in RFC 5952 form. */
  readonly address: string;
  /** An IPv4 address as an unsigned 32-bit number, as the hot path compares it; 0 for an IPv6 endpoint. */
  readonly ip: number;
  /** An IPv6 address's words, as the hot path compares them; present exactly when the endpoint is IPv6. */
  readonly ip6?: IPv6Address;
  readonly port: number;
}

/**
 * Received datagrams: packet i came from port sourcePorts[i] of sourceIps[i]
 * on an IPv4 transport, of sourceIps6[4i, 4i+4) on an IPv6 one.
 */
export interface DatagramBatch extends PacketBatch {
  /** IPv4 senders, host order; empty on an IPv6 transport. */
  readonly sourceIps: Uint32Array;
  /** IPv6 senders, four words per datagram (an IPv6Address's); present exactly on an IPv6 transport. */
  readonly sourceIps6?: Uint32Array;
  readonly sourcePorts: Uint16Array;
}

/** The family of an address literal: 4 for a dotted quad, else 6; throws InvalidAddressError if it is neither. */
export function addressFamily(address: string): UnderlayFamily {
  if (tryParseIPv4(address) >= 0) return 4;
  parseIPv6(address);
  return 6;
}

/** The endpoint at `address` (a dotted quad or any IPv6 text form) and `port`; throws InvalidAddressError or RangeError. */
export function parseEndpoint(address: string, port: number): Endpoint {
  if (!Number.isInteger(port) || port < 0 || port > 65535) throw new RangeError(`endpoint port ${port} is not an integer in 0..65535`);
  const ip = tryParseIPv4(address);
  if (ip >= 0) return { address, ip, port };
  const ip6 = parseIPv6(address);
  return { address: formatIPv6(ip6), ip: 0, ip6, port };
}

export function endpointFamily(endpoint: Endpoint): UnderlayFamily {
  return endpoint.ip6 === undefined ? 4 : 6;
}

/** "198.18.0.1:8285", "[2001:2::1]:8285". */
export function formatEndpoint(endpoint: Endpoint): string {
  return endpoint.ip6 === undefined ? `${endpoint.address}:${endpoint.port}` : `[${endpoint.address}]:${endpoint.port}`;
}

/** Whether a transport of `family` reaches `endpoint`. */
export function reaches(family: TransportFamily, endpoint: Endpoint): boolean {
  return family === 'dual' || endpointFamily(endpoint) === family;
}

/** The error a transport throws when asked to send to an endpoint of the other family. */
export function unreachableFamily(to: Endpoint, family: UnderlayFamily): RangeError {
  return new RangeError(`endpoint ${formatEndpoint(to)} is not reachable over this IPv${family} transport`);
}

export interface PacketTransport {
  /** The bound UDP port. */
  readonly port: number;
  /** The underlay family, the bind address's: send() takes endpoints of this family only ('dual': of either). */
  readonly family: TransportFamily;
  /** Datagrams one received batch holds at most. */
  readonly batchCapacity: number;
  /**
   * Starts receiving. `onBatch` gets the datagrams of one wake-up in one
   * call; the batch is reused afterwards. `onError` reports socket errors
   * that are not about a single datagram.
   */
  start(onBatch: (batch: DatagramBatch) => void, onError: (err: Error) => void): void;
  /**
   * Queues buffer[offset, offset+length) for `to`. It is sent no later than
   * the next flush(); until then the caller must leave those bytes alone.
   * Returns false if the datagram was dropped at once (the socket is
   * backed up). An endpoint of the other family is a caller's bug: RangeError. A zero-length slot is dropped and counted, not sent as an
   * empty datagram: either refused here or reported by flush().
   */
  send(buffer: Buffer, offset: number, length: number, to: Endpoint): boolean;
  /**
   * Sends what is queued. Returns how many queued datagrams were not sent
   * (refused by the kernel, a full socket buffer say, or zero-length); the
   * caller counts them as dropped.
   */
  flush(): number;
  /**
   * Datagrams the socket reported failing after it had accepted them
   * (node:dgram reports these late). Absent where failures are known at
   * flush() and counted there.
   */
  readonly sendErrors?: number;
  /**
   * Datagrams the socket received but could not hand on: the segments of a
   * UDP GRO message beyond the room its read has (see segmentsPerMessage in
   * mmsg.ts). The caller counts them as received and dropped. Absent where
   * every datagram received is handed on.
   */
  readonly segmentsOverflowed?: number;
  close(): Promise<void>;
}
