// Builds IPv4 packets for tests, with a correct header checksum.
import { internetChecksum } from '../../daemon/dataplane/ipv4-packet.js';
import { parseIPv4 } from '../../daemon/net/ipv4.js';

export interface PacketSpec {
  source: string;
  destination: string;
  protocol?: number;
  payload?: Buffer;
  ttl?: number;
  dontFragment?: boolean;
  fragmentOffset?: number;
  /** Extra header bytes (IPv4 options), a multiple of 4. */
  options?: Buffer;
}

export function ipv4Packet(spec: PacketSpec): Buffer {
  const options = spec.options ?? Buffer.alloc(0);
  const payload = spec.payload ?? Buffer.from('hello');
  const headerLength = 20 + options.length;
  const packet = Buffer.alloc(headerLength + payload.length);
  packet[0] = 0x40 | (headerLength >> 2);
  packet.writeUInt16BE(packet.length, 2);
  packet.writeUInt16BE(0x1234, 4);
  packet.writeUInt16BE((spec.dontFragment ? 0x4000 : 0) | ((spec.fragmentOffset ?? 0) & 0x1fff), 6);
  packet[8] = spec.ttl ?? 64;
  packet[9] = spec.protocol ?? 17;
  packet.writeUInt32BE(parseIPv4(spec.source), 12);
  packet.writeUInt32BE(parseIPv4(spec.destination), 16);
  options.copy(packet, 20);
  packet.writeUInt16BE(internetChecksum(packet, 0, headerLength), 10);
  payload.copy(packet, headerLength);
  return packet;
}

/** An ICMP echo request as an IP payload, checksummed. */
export function icmpEcho(type = 8, body = Buffer.from('ping')): Buffer {
  const icmp = Buffer.alloc(8 + body.length);
  icmp[0] = type;
  icmp.writeUInt16BE(0x42, 4);
  body.copy(icmp, 8);
  icmp.writeUInt16BE(internetChecksum(icmp, 0, icmp.length), 2);
  return icmp;
}

export interface TcpSpec {
  source: string;
  destination: string;
  sourcePort?: number;
  destinationPort?: number;
  seq: number;
  ack?: number;
  /** TCP flag bits: ACK 0x10, PSH 0x08, FIN 0x01, SYN 0x02. */
  flags?: number;
  window?: number;
  /** TCP options, a multiple of 4 bytes (e.g. a timestamp option). */
  options?: Buffer;
  payload?: Buffer;
  id?: number;
  dontFragment?: boolean;
}

/** A TCP/IPv4 packet with correct IP and TCP checksums. */
export function tcpPacket(spec: TcpSpec): Buffer {
  const options = spec.options ?? Buffer.alloc(0);
  const payload = spec.payload ?? Buffer.alloc(0);
  const tcp = Buffer.alloc(20 + options.length + payload.length);
  tcp.writeUInt16BE(spec.sourcePort ?? 40000, 0);
  tcp.writeUInt16BE(spec.destinationPort ?? 5201, 2);
  tcp.writeUInt32BE(spec.seq >>> 0, 4);
  tcp.writeUInt32BE((spec.ack ?? 1) >>> 0, 8);
  tcp[12] = ((20 + options.length) / 4) << 4;
  tcp[13] = spec.flags ?? 0x10;
  tcp.writeUInt16BE(spec.window ?? 502, 14);
  options.copy(tcp, 20);
  payload.copy(tcp, 20 + options.length);
  const packet = ipv4Packet({ source: spec.source, destination: spec.destination, protocol: 6, payload: tcp, dontFragment: spec.dontFragment ?? true });
  packet.writeUInt16BE(spec.id ?? 0x1234, 4);
  packet.writeUInt16BE(0, 10);
  packet.writeUInt16BE(internetChecksum(packet, 0, 20), 10);
  packet.writeUInt16BE(transportChecksum(packet), 20 + 16);
  return packet;
}

/** The TCP or UDP checksum the packet should carry (computed with the field taken as zero). */
export function transportChecksum(packet: Buffer): number {
  const ihl = (packet[0]! & 15) * 4;
  const total = packet.readUInt16BE(2);
  const field = ihl + (packet[9] === 6 ? 16 : 6);
  const copy = Buffer.from(packet.subarray(0, total));
  copy.writeUInt16BE(0, field);
  const pseudo = Buffer.alloc(12 + total - ihl);
  packet.copy(pseudo, 0, 12, 20);
  pseudo[9] = packet[9]!;
  pseudo.writeUInt16BE(total - ihl, 10);
  copy.copy(pseudo, 12, ihl);
  return internetChecksum(pseudo, 0, pseudo.length);
}

/** A virtio_net_hdr (host byte order, little-endian) in front of a packet, as a TUN with IFF_VNET_HDR reads and writes it. */
export function vnetFrame(header: { flags?: number; gsoType?: number; hdrLen?: number; gsoSize?: number; csumStart?: number; csumOffset?: number }, packet: Buffer): Buffer {
  const vnet = Buffer.alloc(10);
  vnet[0] = header.flags ?? 0;
  vnet[1] = header.gsoType ?? 0;
  vnet.writeUInt16LE(header.hdrLen ?? 0, 2);
  vnet.writeUInt16LE(header.gsoSize ?? 0, 4);
  vnet.writeUInt16LE(header.csumStart ?? 0, 6);
  vnet.writeUInt16LE(header.csumOffset ?? 0, 8);
  return Buffer.concat([vnet, packet]);
}

/** A UDP header and body as an IP payload; checksum 0 (none), which IPv4 allows. */
export function udpPayload(text: string, sourcePort: number, destinationPort: number): Buffer {
  const body = Buffer.from(text);
  const udp = Buffer.alloc(8 + body.length);
  udp.writeUInt16BE(sourcePort, 0);
  udp.writeUInt16BE(destinationPort, 2);
  udp.writeUInt16BE(udp.length, 4);
  body.copy(udp, 8);
  return udp;
}

/** Packs packets into one buffer (with gaps, as a receive arena has) for joinPackets. */
export function arena(packets: Buffer[]): { buffer: Buffer; offsets: Uint32Array; lengths: Uint32Array; count: number } {
  const offsets = new Uint32Array(packets.length);
  const lengths = new Uint32Array(packets.length);
  let at = 0;
  packets.forEach((p, i) => {
    offsets[i] = at + 3;
    lengths[i] = p.length;
    at += p.length + 3;
  });
  const buffer = Buffer.alloc(at + 3);
  packets.forEach((p, i) => p.copy(buffer, offsets[i]));
  return { buffer, offsets, lengths, count: packets.length };
}
