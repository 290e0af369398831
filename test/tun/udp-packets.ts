// UDP packets and UDP super-packets for the USO tests (offload-udp.test.ts,
// uso.system.test.ts), with checksums computed and judged here, apart from
// the native code under test.
import { internetChecksum } from '../../daemon/dataplane/ipv4-packet.js';
import { ipv4Packet, transportChecksum, vnetFrame } from '../harness/packets.js';
import { PROTO_UDP, udp6, upperChecksumHolds } from '../dataplane/ipv6-packets.js';

export const NEEDS_CSUM = 1;
export const GSO_UDP_L4 = 5;

export interface Udp4Spec {
  source?: string;
  destination?: string;
  sourcePort?: number;
  destinationPort?: number;
  payload: Buffer;
  id?: number;
  tos?: number;
  ttl?: number;
  /** DF; default set, as Linux sends UDP with path MTU discovery. */
  dontFragment?: boolean;
  moreFragments?: boolean;
  /** IPv4 options, a multiple of 4 bytes. */
  options?: Buffer;
  /** Send checksum 0, IPv4's "no checksum". */
  noChecksum?: boolean;
}

/** The IPv4 pseudo-header (RFC 768) of a packet's addresses and a UDP length. */
function pseudoHeader4(packet: Buffer, udpLength: number): Buffer {
  const pseudo = Buffer.alloc(12);
  packet.copy(pseudo, 0, 12, 20);
  pseudo[9] = PROTO_UDP;
  pseudo.writeUInt16BE(udpLength, 10);
  return pseudo;
}

/** A UDP/IPv4 packet with correct IP and UDP checksums (a computed 0 sent as 0xffff). */
export function udp4(spec: Udp4Spec): Buffer {
  const udp = Buffer.alloc(8 + spec.payload.length);
  udp.writeUInt16BE(spec.sourcePort ?? 40000, 0);
  udp.writeUInt16BE(spec.destinationPort ?? 53, 2);
  udp.writeUInt16BE(udp.length, 4);
  spec.payload.copy(udp, 8);
  const packet = ipv4Packet({
    source: spec.source ?? '10.244.2.2',
    destination: spec.destination ?? '10.244.1.2',
    protocol: PROTO_UDP,
    payload: udp,
    ttl: spec.ttl,
    dontFragment: spec.dontFragment ?? true,
    options: spec.options,
  });
  const ihl = (packet[0]! & 15) * 4;
  packet[1] = spec.tos ?? 0;
  packet.writeUInt16BE(spec.id ?? 0x1234, 4);
  if (spec.moreFragments) packet[6]! |= 0x20;
  packet.writeUInt16BE(0, 10);
  packet.writeUInt16BE(internetChecksum(packet, 0, ihl), 10);
  if (!spec.noChecksum) packet.writeUInt16BE(transportChecksum(packet) || 0xffff, ihl + 6);
  return packet;
}

export interface Udp6Spec {
  source?: string;
  destination?: string;
  sourcePort?: number;
  destinationPort?: number;
  payload: Buffer;
  /** The first 32 bits: version 6, traffic class, flow label. */
  firstWord?: number;
  hopLimit?: number;
}

/** A UDP/IPv6 packet with a correct checksum (neither is in the pseudo-header: the first word and hop limit may change after). */
export function udp6Packet(spec: Udp6Spec): Buffer {
  const packet = udp6(spec.source ?? 'fd00:10:0:2::2', spec.destination ?? 'fd00:10:0:1::2', spec.payload, [spec.sourcePort ?? 40000, spec.destinationPort ?? 53]);
  if (spec.firstWord !== undefined) packet.writeUInt32BE(spec.firstWord >>> 0, 0);
  if (spec.hopLimit !== undefined) packet[7] = spec.hopLimit;
  return packet;
}

const isIPv6 = (packet: Buffer) => packet[0]! >> 4 === 6;
export const ipHeaderLength = (packet: Buffer) => (isIPv6(packet) ? 40 : (packet[0]! & 15) * 4);

/** Whether the UDP checksum is present and holds over the pseudo-header. */
export function udpChecksumHolds(packet: Buffer): boolean {
  const at = ipHeaderLength(packet);
  if (packet.readUInt16BE(at + 6) === 0) return false;
  if (isIPv6(packet)) return upperChecksumHolds(packet);
  return packet.readUInt16BE(at + 6) === (transportChecksum(packet) || 0xffff);
}

/** The pseudo-header sum (uncomplemented) a NEEDS_CSUM packet carries in its UDP checksum field. */
export function seededChecksum(packet: Buffer): number {
  const udpLength = packet.length - ipHeaderLength(packet);
  if (!isIPv6(packet)) return ~internetChecksum(pseudoHeader4(packet, udpLength), 0, 12) & 0xffff;
  const pseudo = Buffer.alloc(40);
  packet.copy(pseudo, 0, 8, 40);
  pseudo.writeUInt32BE(udpLength, 32);
  pseudo[39] = PROTO_UDP;
  return ~internetChecksum(pseudo, 0, 40) & 0xffff;
}

/**
 * A UDP super-packet as the kernel reads it out of a TUN with USO: one IP
 * and UDP header over the whole payload, the UDP checksum field seeded with
 * the pseudo-header sum, behind a UDP_L4 virtio header.
 */
export function usoFrame(packet: Buffer, gsoSize: number): Buffer {
  const seeded = Buffer.from(packet);
  const at = ipHeaderLength(seeded);
  seeded.writeUInt16BE(seededChecksum(seeded), at + 6);
  return vnetFrame({ flags: NEEDS_CSUM, gsoType: GSO_UDP_L4, hdrLen: at + 8, gsoSize, csumStart: at, csumOffset: 6 }, seeded);
}

/** The UDP payload of a packet. */
export const udpPayloadOf = (packet: Buffer) => packet.subarray(ipHeaderLength(packet) + 8);

/** The system test's flow, per family: the TUN's address and the far end's, which the TUN routes to. */
export const ENDS = {
  4: { tun: '10.99.0.1', far: '10.99.0.2' },
  6: { tun: 'fd00:99::1', far: 'fd00:99::2' },
} as const;
export type Family = keyof typeof ENDS;
export const TUN_PORT = 7777;
export const FAR_PORT = 5555;
/** The size of each datagram a sender cuts its buffer into (UDP_SEGMENT), and the buffer: ten of them and an odd rest. */
export const SEGMENT = 1000;
export const SENT_BYTES = 10 * SEGMENT + 333;

/** Bytes that tell every position within a segment apart. */
export const pattern = (length: number, seed: number) => Buffer.from(Array.from({ length }, (_, i) => (i * 7 + seed) % 251));
